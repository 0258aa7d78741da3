package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// The README's claims that a program can check: its example configs load,
// the keys it names exist, the tests, benchmarks and files it cites are
// there.

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(paths.Repo("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var fenceRe = regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")

// Every Fluent Bit config in the README, classic or YAML, gives our output
// only keys it knows, values it takes, and a Match that misses its alerts.
func TestREADMEConfigsLoad(t *testing.T) {
	seen := 0
	for i, m := range fenceRe.FindAllStringSubmatch(readme(t), -1) {
		block := m[1]
		switch {
		case strings.Contains(block, "[OUTPUT]"):
			seen += checkOutputs(t, "README block "+strconv.Itoa(i), classicSections(block, "OUTPUT"))
		case strings.Contains(block, "pipeline:"):
			seen += checkOutputs(t, "README block "+strconv.Itoa(i), yamlSections(t, block, "OUTPUT"))
		}
	}
	if seen < 3 {
		t.Fatalf("checked %d cloudtrail_quarantine outputs in the README, want at least 3", seen)
	}
}

// fluentBitKeys are keys of Fluent Bit itself (its inputs, service and
// other outputs) that the README names beside ours.
var fluentBitKeys = map[string]bool{
	"buffer_chunk_size": true, "buffer_max_size": true, "retry_limit": true, "plugins_file": true, "read_from_head": true,
	"exit_on_eof": true, "mem_buf_limit": true, "refresh_interval": true, "rotate_wait": true, "http_server": true,
	"http_listen": true, "log_file": true, "http_port": true, "log_level": true, "storage_path": true, "buffer_max_size_bytes": true,
	"splunk_token": true, "json_date_key": true, "use_put_object": true, "s3_key_format": true, "role_arn": true,
	"external_id": true, "total_file_size": true, "upload_timeout": true, "unix_path": true, "shared_key": true,
}

var keyRe = regexp.MustCompile("`([A-Z][a-z0-9]+(?:_[A-Za-z0-9]+)+)`")

// Every configuration key the README names in backticks is one of ours
// (or its old name), a key Fluent Bit's core keeps, or one of Fluent
// Bit's own that the README names on purpose.
func TestREADMENamesKnownKeys(t *testing.T) {
	n := 0
	for _, m := range keyRe.FindAllStringSubmatch(readme(t), -1) {
		n++
		if !knownKey(m[1]) && !fluentBitKeys[strings.ToLower(m[1])] {
			t.Errorf("the README names %s, which is no configuration key", m[1])
		}
	}
	if n < 40 {
		t.Fatalf("found %d key names in the README, want at least 40", n)
	}
}

var testNameRe = regexp.MustCompile(`\b((?:Test|Benchmark|Fuzz)[A-Z][A-Za-z0-9_]*)`)

// Every test, benchmark and fuzz target the README cites exists.
func TestREADMENamesRealTests(t *testing.T) {
	defined := map[string]bool{}
	funcRe := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Fuzz)[A-Za-z0-9_]+)\(`)
	filepath.WalkDir(paths.Repo(), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() && (d.Name() == "build" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, "_test.go") {
			src, _ := os.ReadFile(path)
			for _, m := range funcRe.FindAllStringSubmatch(string(src), -1) {
				defined[m[1]] = true
			}
		}
		return nil
	})
	cited := 0
	for _, m := range testNameRe.FindAllStringSubmatch(readme(t), -1) {
		name := strings.SplitN(m[1], "/", 2)[0]
		cited++
		if !defined[name] {
			t.Errorf("the README cites %s, which no test file defines", name)
		}
	}
	if cited < 20 {
		t.Fatalf("the README cites %d tests, want at least 20", cited)
	}
}

var pathRe = regexp.MustCompile("`((?:plugin|detect|alert|internal|test|conf|cmd|scan|build)/[A-Za-z0-9_./-]*)`")

// Every file or directory of the repository the README names exists (build
// outputs: the Makefile makes them).
func TestREADMEPathsExist(t *testing.T) {
	makefile, err := os.ReadFile(paths.Repo("Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range pathRe.FindAllStringSubmatch(readme(t), -1) {
		p := strings.TrimSuffix(m[1], "/")
		n++
		if _, err := os.Stat(paths.Repo(p)); err == nil {
			continue
		}
		if strings.HasPrefix(p, "build/") && strings.Contains(string(makefile), p) {
			continue
		}
		t.Errorf("the README names %s, which is not in the repository", p)
	}
	if n < 20 {
		t.Fatalf("found %d paths in the README, want at least 20", n)
	}
}
