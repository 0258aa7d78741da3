package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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

// classicSections reads the [INPUT] or [OUTPUT] sections (kind) of a
// classic config.
func classicSections(text, kind string) []map[string]string {
	var sections []map[string]string
	var cur map[string]string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "@"):
		case strings.HasPrefix(line, "["):
			cur = nil
			if strings.EqualFold(line, "["+kind+"]") {
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

// yamlSections reads pipeline.inputs or pipeline.outputs (kind) of a YAML
// config.
func yamlSections(t *testing.T, text, kind string) []map[string]string {
	var doc struct {
		Pipeline map[string][]map[string]any `yaml:"pipeline"`
	}
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("YAML: %v\n%s", err, text)
	}
	var out []map[string]string
	for _, o := range doc.Pipeline[strings.ToLower(kind)+"s"] {
		m := map[string]string{}
		for k, v := range o {
			m[strings.ToLower(k)] = fmt.Sprint(v)
		}
		out = append(out, m)
	}
	return out
}

// sections reads the inputs or outputs of a config file, classic or YAML.
func sections(t *testing.T, path, kind string) []map[string]string {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Ext(path) == ".conf" {
		return classicSections(string(raw), kind)
	}
	return yamlSections(t, string(raw), kind)
}

// configFiles are the Fluent Bit configs in conf/.
func configFiles(t *testing.T) []string {
	var out []string
	files, _ := filepath.Glob(paths.Repo("conf", "*"))
	for _, f := range files {
		switch filepath.Ext(f) {
		case ".conf", ".yaml", ".yml":
			if len(sections(t, f, "OUTPUT")) > 0 {
				out = append(out, f)
			}
		}
	}
	return out
}

// matchTag is Fluent Bit's Match: * stands for any run of characters.
func matchTag(pattern, tag string) bool {
	before, after, wild := strings.Cut(pattern, "*")
	if !wild {
		return pattern == tag
	}
	if !strings.HasPrefix(tag, before) {
		return false
	}
	rest := tag[len(before):]
	for i := 0; i <= len(rest); i++ {
		if matchTag(after, rest[i:]) {
			return true
		}
	}
	return false
}

// sectionConfig is one of our output sections as the plugin would read
// it: case-insensitive, ${VARS} expanded (to a stand-in value).
type sectionConfig map[string]string

func (s sectionConfig) Get(key string) string {
	v := s[strings.ToLower(key)]
	return regexp.MustCompile(`\$\{[A-Za-z0-9_]+\}`).ReplaceAllString(v, "from-the-environment")
}

// checkOutputs checks our output sections: only keys we know, values the
// plugin's parser takes, and a Match that does not catch the alerts the
// section sends back into Fluent Bit.
func checkOutputs(t *testing.T, where string, outputs []map[string]string) int {
	seen := 0
	for _, o := range outputs {
		if o["name"] != "cloudtrail_quarantine" {
			continue
		}
		seen++
		for k := range o {
			if !knownKey(k) {
				t.Errorf("%s: the plugin does not know key %q", where, k)
			}
		}
		cfg, err := config.Load(sectionConfig(o))
		if err != nil {
			t.Errorf("%s: the plugin would not start: %v", where, err)
			continue
		}
		if matchTag(o["match"], cfg.AlertTag) {
			t.Errorf("%s: Match %q catches the output's own alerts (tag %q)", where, o["match"], cfg.AlertTag)
		}
	}
	return seen
}

// Every config in conf/ gives our plugin only keys it knows, so the
// examples cannot drift from the code; and every one that tails files sets
// the buffer sizes a CloudTrail log file needs.
func TestShippedConfigsUseKnownKeys(t *testing.T) {
	seen := 0
	for _, f := range configFiles(t) {
		seen += checkOutputs(t, filepath.Base(f), sections(t, f, "OUTPUT"))
		for _, in := range sections(t, f, "INPUT") {
			if in["name"] != "tail" {
				continue
			}
			if in["buffer_chunk_size"] == "" || in["buffer_max_size"] == "" {
				t.Errorf("%s tails files without buffer_chunk_size/buffer_max_size", filepath.Base(f))
			}
			// Without DB, tail reads every file again from its head after a
			// restart, and the store would drop the repeats, but only
			// within Dedup_TTL and Dedup_Cache_Size.
			if in["db"] == "" && in["exit_on_eof"] != "true" && in["exit_on_eof"] != "on" {
				t.Errorf("%s tails files without DB: a restart reads them all again", filepath.Base(f))
			}
		}
	}
	if seen < 4 {
		t.Fatalf("checked %d cloudtrail_quarantine outputs, want at least 4", seen)
	}
}
