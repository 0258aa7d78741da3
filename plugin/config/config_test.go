package config_test

import (
	"encoding/base64"
	"os"
	"slices"
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
		strings.Join(c.EventKey, ",") != "log,message" || c.DedupCacheSize != 100000 || c.StatsInterval != 0 || c.MetricsListen != "" {
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
	for _, addr := range []string{"127.0.0.1:2021", ":2021", "[::1]:2021", "localhost:0"} {
		if c, err := config.Load(keys{"metrics_listen": addr}); err != nil || c.MetricsListen != addr {
			t.Errorf("Metrics_Listen %q: %v", addr, err)
		}
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
		{"Metrics_Listen", "2021", "Metrics_Listen: \"2021\" is not a host:port address such as 127.0.0.1:2021"},
		{"Metrics_Listen", "127.0.0.1:http", "Metrics_Listen: \"127.0.0.1:http\" is not a host:port address"},
		{"Metrics_Listen", "127.0.0.1:70000", "Metrics_Listen: \"127.0.0.1:70000\" is not a host:port address"},
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
		if os.Getenv("UPDATE_README") != "" {
			os.WriteFile(paths.Repo("README.md"), []byte(s[:i+len(begin)]+want+s[j:]), 0o644)
			return
		}
		t.Fatalf("README config reference is stale (UPDATE_README=1 go test ./plugin/config rewrites it); it should be:\n%s", want)
	}
}

// Every secret-bearing key set at once: the effective configuration shows
// none of the secrets, and Secrets lists each for the logger to scrub.
func TestSecretsAreRedacted(t *testing.T) {
	c, err := config.Load(keys{
		"Alert_Output": "http", "HTTP_URL": "https://alice:pw-in-url@es.example:9200/_bulk",
		"HTTP_Headers": "Authorization: ApiKey c2VjcmV0LWFwaS1rZXk=; X-Team: secops",
		"HTTP_Passwd":  "basic-pw", "HTTP_Bearer_Token": "bearer-tok", "HTTP_Splunk_Token": "hec-tok", "Forward_Shared_Key": "shared-k",
	})
	if err != nil {
		t.Fatal(err)
	}
	line := c.Effective()
	secrets := []string{"alice", "pw-in-url", "c2VjcmV0LWFwaS1rZXk=", "secops", "basic-pw", "bearer-tok", "hec-tok", "shared-k"}
	// The Basic credentials the HTTP sink sends (HTTP_User is empty) and
	// net/http derives from the URL, as a receiver may echo them.
	basic := []string{base64.StdEncoding.EncodeToString([]byte(":basic-pw")), base64.StdEncoding.EncodeToString([]byte("alice:pw-in-url"))}
	for _, s := range secrets {
		if strings.Contains(line, s) {
			t.Errorf("effective configuration shows %q: %s", s, line)
		}
	}
	for _, want := range []string{`HTTP_URL="https://(redacted)@es.example:9200/_bulk"`, `HTTP_Headers="Authorization: (redacted); X-Team: (redacted)"`, "HTTP_Passwd=(set)"} {
		if !strings.Contains(line, want) {
			t.Errorf("effective configuration lacks %s: %s", want, line)
		}
	}
	got := c.Secrets()
	for _, s := range append(secrets, basic...) {
		if !slices.Contains(got, s) {
			t.Errorf("Secrets() lacks %q: %q", s, got)
		}
	}
}

// A value Init refuses is named in its error line, which is logged before
// the logger knows the secrets: the line must not show them either.
func TestRefusedSecretsAreNotEchoed(t *testing.T) {
	for _, c := range []struct {
		k       keys
		secrets []string
	}{
		{keys{"Alert_Output": "http", "HTTP_URL": "ftp://alice:pw-in-url@es.example/_bulk"}, []string{"alice", "pw-in-url"}},
		{keys{"Alert_Output": "http", "HTTP_URL": "https://es.example/_bulk", "HTTP_Headers": "X-Team: ok; ApiKey c2VjcmV0"}, []string{"ApiKey", "c2VjcmV0"}},
	} {
		_, err := config.Load(c.k)
		if err == nil {
			t.Fatalf("%v loaded", c.k)
		}
		for _, s := range c.secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("the error shows %q: %v", s, err)
			}
		}
	}
}

func TestWarnings(t *testing.T) {
	for _, c := range []struct {
		set  keys
		want []string
	}{
		{keys{"Alert_Output": "forward", "Forward_TLS_CA_File": "/ca.pem"}, []string{"Forward_TLS_CA_File is set but Forward_TLS is off: it is not used"}},
		{keys{"Alert_Output": "forward", "Forward_TLS": "on", "Forward_TLS_Verify": "off"}, []string{"Forward_TLS_Verify is off: the receiver's certificate is not checked, so anyone on the path can read and forge alerts"}},
		{keys{"Alert_Output": "http", "HTTP_URL": "http://h/", "HTTP_TLS_Verify": "off"}, []string{"HTTP_TLS_Verify is set but HTTP_URL is not https://: it is not used"}},
		{keys{"Alert_Output": "http", "HTTP_URL": "https://h/", "HTTP_TLS_CA_File": "/ca.pem"}, nil},
		{keys{"Alert_Output": "stdout", "Forward_TLS_CA_File": "/ca.pem"}, nil},
	} {
		cfg, err := config.Load(c.set)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Warnings(); !slices.Equal(got, c.want) {
			t.Errorf("%v: warnings %q, want %q", c.set, got, c.want)
		}
	}
}

// Spool_Dir and Spool_Max_Size, the old names, still work; both names
// with different values is an error naming the key.
func TestAliasesAndDays(t *testing.T) {
	c, err := config.Load(keys{"Spool_Dir": "/var/lib/ctq", "spool_max_size": "5M", "Dedup_TTL": "7d"})
	if err != nil || c.StateDir != "/var/lib/ctq" || c.QueueMaxSize != 5<<20 || c.DedupTTL != 7*24*time.Hour {
		t.Fatalf("%+v: %v", c, err)
	}
	if !strings.Contains(c.Effective(), "Dedup_TTL=7d") {
		t.Errorf("effective: %s", c.Effective())
	}
	if _, err := config.Load(keys{"State_Dir": "/a", "Spool_Dir": "/a"}); err != nil {
		t.Errorf("the same value under both names: %v", err)
	}
	if _, err := config.Load(keys{"State_Dir": "/a", "Spool_Dir": "/b"}); err == nil || !strings.HasPrefix(err.Error(), "State_Dir: set also as Spool_Dir") {
		t.Errorf("two values: %v", err)
	}
	for _, bad := range []string{"d", "-3d", "1.5d", "3w"} {
		if _, err := config.Load(keys{"Dedup_TTL": bad}); err == nil || !strings.HasPrefix(err.Error(), "Dedup_TTL:") {
			t.Errorf("Dedup_TTL=%s: %v", bad, err)
		}
	}
	if _, err := config.Load(keys{"Forward_Max_Batch_Size": "100"}); err == nil || !strings.HasPrefix(err.Error(), "Forward_Max_Batch_Size:") {
		t.Errorf("tiny batch: %v", err)
	}
}
