package e2e

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/config"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// Keys Fluent Bit's core takes for any output (DESIGN.md §2); everything
// else in our output's section must be one of our options.
func coreKey(k string) bool {
	switch k {
	case "name", "match", "match_regex", "alias", "log_level", "host", "port", "ipv6", "retry_limit", "workers", "tls":
		return true
	}
	for _, p := range []string{"net.", "tls.", "storage.", "oauth2"} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func knownKey(k string) bool {
	k = strings.ToLower(k)
	if coreKey(k) {
		return true
	}
	for _, o := range config.Options {
		if strings.EqualFold(o.Name, k) {
			return true
		}
		for _, alias := range o.Aliases {
			if strings.EqualFold(alias, k) {
				return true
			}
		}
	}
	return false
}

// classicOutputs reads the [OUTPUT] sections of a classic config.
func classicOutputs(t *testing.T, path string) []map[string]string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sections []map[string]string
	var cur map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "@"):
		case strings.HasPrefix(line, "["):
			cur = nil
			if strings.EqualFold(line, "[OUTPUT]") {
				cur = map[string]string{}
				sections = append(sections, cur)
			}
		case cur != nil:
			k, v, _ := strings.Cut(line, " ")
			cur[strings.ToLower(k)] = strings.TrimSpace(v)
		}
	}
	return sections
}

// yamlOutputs reads pipeline.outputs of a YAML config.
func yamlOutputs(t *testing.T, path string) []map[string]string {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Pipeline struct {
			Outputs []map[string]any `yaml:"outputs"`
		} `yaml:"pipeline"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []map[string]string
	for _, o := range doc.Pipeline.Outputs {
		m := map[string]string{}
		for k, v := range o {
			s, _ := v.(string)
			m[strings.ToLower(k)] = s
		}
		out = append(out, m)
	}
	return out
}

// Every config in conf/ gives our plugin only keys it knows, so the
// examples cannot drift from the code; and every one that tails files sets
// the buffer sizes a CloudTrail log file needs.
func TestShippedConfigsUseKnownKeys(t *testing.T) {
	files, _ := filepath.Glob(paths.Repo("conf", "*"))
	seen := 0
	for _, f := range files {
		var outputs []map[string]string
		switch filepath.Ext(f) {
		case ".conf":
			outputs = classicOutputs(t, f)
		case ".yaml", ".yml":
			outputs = yamlOutputs(t, f)
		default:
			continue
		}
		for _, o := range outputs {
			if o["name"] != "cloudtrail_quarantine" {
				continue
			}
			seen++
			for k := range o {
				if !knownKey(k) {
					t.Errorf("%s: the plugin does not know key %q", filepath.Base(f), k)
				}
			}
		}
		raw, _ := os.ReadFile(f)
		text := strings.ToLower(string(raw))
		if strings.Contains(text, "tail") && !(strings.Contains(text, "buffer_max_size") && strings.Contains(text, "buffer_chunk_size")) {
			t.Errorf("%s tails files without buffer_chunk_size/buffer_max_size", filepath.Base(f))
		}
	}
	if seen < 3 {
		t.Fatalf("found the plugin's output in %d configs, want at least 3", seen)
	}
}
