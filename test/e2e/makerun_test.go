package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// `make run | jq` works: make run's stdout is the sample stream's nine
// alerts, one JSON document a line, and nothing else (the build's command
// lines and the runner's own go to stderr). With the harness, and with the
// real Fluent Bit when one is on the PATH (its banner and log go to
// stderr).
func TestMakeRunPrintsAlertsOnly(t *testing.T) {
	run := func(t *testing.T, path string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "make", "run")
		cmd.Dir = paths.Root()
		// As from a shell: not as a sub-make of `make test` (which would
		// print "Entering directory" lines on stdout, as make -C does).
		cmd.Env = []string{"PATH=" + path}
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); k != "PATH" && k != "MAKEFLAGS" && k != "MAKELEVEL" && k != "MFLAGS" {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("make run: %v\n%s", err, stderr.String())
		}
		lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
		for _, line := range lines {
			var a struct {
				Rule struct{ ID string } `json:"rule"`
			}
			if err := json.Unmarshal([]byte(line), &a); err != nil || a.Rule.ID == "" {
				t.Fatalf("stdout line is not an alert: %q (%v)\nstderr:\n%s", line, err, stderr.String())
			}
		}
		if len(lines) != 9 {
			t.Fatalf("%d alerts on stdout, want the sample's 9", len(lines))
		}
		if !strings.Contains(stderr.String(), "replaying conf/sample through ") {
			t.Fatalf("make run's own line is not on stderr:\n%s", stderr.String())
		}
	}
	// A target make must build (the sample's chunk, which nothing else
	// reads) makes it print a command line: that must not reach stdout.
	if err := os.Remove(paths.Repo("build", "sample.chunk")); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	t.Run("harness", func(t *testing.T) { run(t, withoutFluentBit(t, os.Getenv("PATH"))) })
	t.Run("fluent-bit", func(t *testing.T) {
		if _, err := exec.LookPath("fluent-bit"); err != nil {
			t.Skip("no fluent-bit on the PATH (CI has none; the harness case above runs everywhere)")
		}
		run(t, os.Getenv("PATH"))
	})
}

// withoutFluentBit is PATH with every fluent-bit on it hidden: a directory
// that holds one is replaced by one of links to its other programs.
func withoutFluentBit(t *testing.T, path string) string {
	var dirs []string
	for _, dir := range filepath.SplitList(path) {
		if _, err := os.Stat(filepath.Join(dir, "fluent-bit")); err != nil {
			dirs = append(dirs, dir)
			continue
		}
		shadow := t.TempDir()
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), "fluent-bit") {
				if err := os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(shadow, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
		dirs = append(dirs, shadow)
	}
	return strings.Join(dirs, string(filepath.ListSeparator))
}
