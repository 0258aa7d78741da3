package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
)

func batch(prefix string, n int) []sink.Alert {
	var out []sink.Alert
	for i := range n {
		out = append(out, sink.Alert{Time: time.Unix(1763626542, int64(i)), Key: fmt.Sprintf("%s-%d", prefix, i), JSON: []byte(`{"a":1}`)})
	}
	return out
}

func keys(as []sink.Alert) string {
	s := ""
	for _, a := range as {
		s += a.Key + " "
	}
	return s
}

func TestOrderDeliveryAndRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(batch("a", 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(batch("b", 2)); err != nil {
		t.Fatal(err)
	}
	got, off, err := s.Next(4)
	if err != nil || keys(got) != "a-0 a-1 a-2 b-0 " || !got[1].Time.Equal(time.Unix(1763626542, 1)) {
		t.Fatalf("%q %v", keys(got), err)
	}
	if err := s.Delivered(off); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, 1<<20); err == nil {
		t.Fatal("a second instance opened a locked spool")
	}
	s.Close()

	// A restart finds what is left, and a record torn by a crash is cut.
	f, _ := os.OpenFile(filepath.Join(dir, logName), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0, 0, 1, 0, 9, 9})
	f.Close()
	s, err = Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, off, err = s.Next(10)
	if err != nil || keys(got) != "b-1 " {
		t.Fatalf("after restart: %q %v", keys(got), err)
	}
	if err := s.Delivered(off); err != nil || s.Pending() != 0 {
		t.Fatalf("pending %d: %v", s.Pending(), err)
	}
	if st, _ := os.Stat(filepath.Join(dir, logName)); st.Size() != 0 {
		t.Fatalf("delivered log not emptied: %d bytes", st.Size())
	}
}

func TestFull(t *testing.T) {
	s, err := Open(t.TempDir(), 100)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(batch("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(batch("b", 5)); !errors.Is(err, ErrFull) {
		t.Fatalf("got %v, want ErrFull", err)
	}
	if got, _, _ := s.Next(10); len(got) != 1 {
		t.Fatalf("a refused batch left %d records", len(got))
	}
}

func TestUnusableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Open(file, 1<<20); err == nil {
		t.Fatal("opened a spool in a regular file")
	}
}
