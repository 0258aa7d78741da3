package sink

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestFileAppendsAndSurvivesRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.jsonl")
	s, err := File(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), []Alert{{Doc: []byte(`{"a":1}`)}, {Doc: []byte(`{"a":2}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil { // logrotate
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), []Alert{{Doc: []byte(`{"a":3}`)}}); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if string(old) != "{\"a\":1}\n{\"a\":2}\n" || string(cur) != "{\"a\":3}\n" {
		t.Fatalf("rotated %q current %q", old, cur)
	}
}

func TestFileErrors(t *testing.T) {
	if _, err := File(filepath.Join(t.TempDir(), "no", "such", "dir.jsonl")); err == nil {
		t.Fatal("opened a file in a missing directory")
	}
	path := filepath.Join(t.TempDir(), "alerts.jsonl")
	s, err := File(path)
	if err != nil {
		t.Fatal(err)
	}
	// The file is replaced by a directory: even root cannot append to it.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Deliver(context.Background(), []Alert{{Doc: []byte(`{}`)}}); err == nil {
		t.Fatal("delivered into a directory")
	}
}
