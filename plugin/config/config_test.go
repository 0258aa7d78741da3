package config_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/config"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// keys mimics Fluent Bit's lookup: case-insensitive, "" when unset.
type keys map[string]string

func (k keys) Get(key string) string {
	for name, v := range k {
		if strings.EqualFold(name, key) {
			return v
		}
	}
	return ""
}

func TestDefaults(t *testing.T) {
	c, err := config.Load(keys{})
	if err != nil {
		t.Fatal(err)
	}
	if c.AlertOutput != "stdout" || c.AlertTag != "aws.cloudtrail.quarantine" || c.ForwardPort != 24224 ||
		c.ForwardHost != "127.0.0.1" || c.ForwardTimeout != 10*time.Second || !c.IncludeEvent ||
		strings.Join(c.EventKey, ",") != "log,message" || c.DedupCacheSize != 100000 || c.StatsInterval != 0 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestValuesAndCase(t *testing.T) {
	c, err := config.Load(keys{"alert_output": "FORWARD", "FORWARD_PORT": "24225", "include_event": "No",
		"Event_Key": " log , , payload ", "Forward_Timeout": "1.5", "forward_unix_path": "/run/fb.sock", "stats_interval": "30s"})
	if err != nil {
		t.Fatal(err)
	}
	if c.AlertOutput != "forward" || c.ForwardPort != 24225 || c.IncludeEvent || strings.Join(c.EventKey, ",") != "log,payload" ||
		c.ForwardTimeout != 1500*time.Millisecond || c.ForwardUnixPath != "/run/fb.sock" || c.StatsInterval != 30*time.Second {
		t.Fatalf("%+v", c)
	}
	for _, b := range []string{"on", "true", "yes", "ON", "Yes"} {
		if c, err := config.Load(keys{"Include_Event": b}); err != nil || !c.IncludeEvent {
			t.Errorf("%q: %v", b, err)
		}
	}
}

// Every bad value fails with one line that names the key.
func TestBadValues(t *testing.T) {
	cases := []struct{ key, val, want string }{
		{"Alert_Output", "splunk", "Alert_Output: \"splunk\" is not one of stdout, file, forward, http"},
		{"Include_Event", "maybe", "Include_Event: \"maybe\" is not a boolean"},
		{"Forward_Port", "0", "Forward_Port: \"0\" is not a whole number from 1 to 65535"},
		{"Forward_Port", "http", "Forward_Port"},
		{"Forward_Timeout", "-1s", "Forward_Timeout: \"-1s\" is not a positive duration"},
		{"Dedup_Cache_Size", "many", "Dedup_Cache_Size"},
		{"Event_Key", ",,", "Event_Key: needs at least one key"},
		{"Stats_Interval", "sometimes", "Stats_Interval: \"sometimes\" is not off or a positive duration"},
	}
	for _, c := range cases {
		_, err := config.Load(keys{c.key: c.val})
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s=%q: got %v, want prefix %q", c.key, c.val, err, c.want)
		}
	}
	if _, err := config.Load(keys{"Alert_Output": "file"}); err == nil || !strings.HasPrefix(err.Error(), "File_Path:") {
		t.Errorf("file without File_Path: %v", err)
	}
	if _, err := config.Load(keys{"Forward_TLS_Crt_File": "/etc/c.pem"}); err == nil || !strings.HasPrefix(err.Error(), "Forward_TLS_Crt_File:") {
		t.Errorf("certificate without key: %v", err)
	}
	if _, err := config.Load(keys{"Alert_Tag": "  "}); err != nil {
		t.Errorf("blank Alert_Tag reads as unset, so the default: %v", err)
	}
}

func TestEffectiveNamesEveryOptionButNoSecret(t *testing.T) {
	c, _ := config.Load(keys{"Forward_Shared_Key": "hunter2"})
	line := c.Effective()
	if strings.Contains(line, "hunter2") || !strings.Contains(line, "Forward_Shared_Key=(set)") {
		t.Errorf("shared key logged: %s", line)
	}
	if c.ForwardSelfHostname == "" || !c.ForwardTLSVerify || c.ForwardTLS {
		t.Errorf("TLS/hostname defaults: %+v", c)
	}
	for _, o := range config.Options {
		if !strings.Contains(line, o.Name+"=") {
			t.Errorf("effective config lacks %s: %s", o.Name, line)
		}
	}
	if strings.Contains(line, "\n") {
		t.Error("effective config is not one line")
	}
}

// The README's reference is the table: it must hold config.Markdown()
// verbatim, between the markers.
func TestREADMEReference(t *testing.T) {
	readme, err := os.ReadFile(paths.Repo("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- config:begin -->\n", "<!-- config:end -->"
	s := string(readme)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatal("README lacks the config markers")
	}
	if got, want := s[i+len(begin):j], config.Markdown(); got != want {
		t.Fatalf("README config reference is stale; replace it with:\n%s", want)
	}
}
