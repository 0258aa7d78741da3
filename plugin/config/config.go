// Package config declares the plugin's options once, as a table, the way
// Fluent Bit's C plugins declare a config_map. The table drives parsing,
// validation, the effective-configuration line logged at Init and the
// README's reference, so the four cannot drift apart. It reads keys through
// a Getter, so it is tested without cgo or Fluent Bit.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Getter looks a key up the way Fluent Bit does for Go plugins:
// case-insensitively, "" when unset. Fluent Bit cannot list the keys a user
// set, so unknown (misspelt) keys cannot be detected here.
type Getter interface {
	Get(key string) string
}

// Config is the parsed configuration of one plugin instance.
type Config struct {
	AlertOutput          string
	AlertFormat          string
	AlertTag             string
	FilePath             string
	ForwardHost          string
	ForwardPort          int
	ForwardUnixPath      string
	ForwardTimeout       time.Duration
	ForwardSharedKey     string
	ForwardSelfHostname  string
	ForwardTLS           bool
	ForwardTLSVerify     bool
	ForwardTLSCAFile     string
	ForwardTLSCrtFile    string
	ForwardTLSKeyFile    string
	ForwardTLSVhost      string
	EventKey             []string
	IncludeEvent         bool
	DedupCacheSize       int
	StatsInterval        time.Duration // 0: off
	SpoolDir             string
	SpoolMaxSize         Size
	HTTPURL              string
	HTTPFormat           string
	HTTPHeaders          string
	HTTPTimeout          time.Duration
	HTTPUser             string
	HTTPPasswd           string
	HTTPBearerToken      string
	HTTPSplunkToken      string
	HTTPSplunkSource     string
	HTTPSplunkSourcetype string
	HTTPSplunkIndex      string
	HTTPESIndex          string
	HTTPTLSVerify        bool
	HTTPTLSCAFile        string
	HTTPTLSCrtFile       string
	HTTPTLSKeyFile       string
}

// Size is a number of bytes, written like Fluent Bit's sizes: 512K, 100M, 1G.
type Size int64

// Kind is how an option's text is parsed.
type Kind string

const (
	String   Kind = "string"
	Enum     Kind = "enum"
	Bool     Kind = "bool"
	Int      Kind = "int"
	List     Kind = "list"
	Duration Kind = "duration"
	Bytes    Kind = "size"
)

// Option is one row of the table.
type Option struct {
	Name        string
	Kind        Kind
	Default     string
	Values      []string // for Enum
	Min, Max    int      // for Int
	Off         bool     // for Duration: "off" (or 0) is accepted and means 0
	Secret      bool     // never logged: the effective config says only whether it is set
	Description string
	// field points at where the parsed value goes; its type matches Kind.
	field func(*Config) any
}

// Options is the table, in the order the README and the log show it.
var Options = []Option{
	{Name: "Alert_Output", Kind: Enum, Default: "stdout", Values: []string{"stdout", "file", "forward", "http"},
		Description: "Where alerts go: JSON lines on Fluent Bit's stdout, JSON lines appended to `File_Path`, the Fluent forward protocol to an `in_forward` input, or HTTP POSTs to `HTTP_URL` (webhook, Splunk HEC, Elasticsearch bulk).",
		field:       func(c *Config) any { return &c.AlertOutput }},
	{Name: "Alert_Format", Kind: Enum, Default: "native", Values: []string{"native", "ecs", "ocsf"},
		Description: "Alert schema: the plugin's own (see Alert schema in the README), `ecs`: Elastic Common Schema 9.4 documents that index into an ECS index with no ingest pipeline, or `ocsf`: OCSF 1.1.0 Detection Findings (class 2004), the version Amazon Security Lake takes from custom sources.",
		field:       func(c *Config) any { return &c.AlertFormat }},
	{Name: "Alert_Tag", Kind: String, Default: "aws.cloudtrail.quarantine",
		Description: "Tag of the alert records sent with `forward`; route it with `Match` in Fluent Bit (an `in_forward` that sets `tag` overrides it).",
		field:       func(c *Config) any { return &c.AlertTag }},
	{Name: "File_Path", Kind: String,
		Description: "File alerts are appended to, one JSON object per line, fsync'd per batch. Required with `Alert_Output file`.",
		field:       func(c *Config) any { return &c.FilePath }},
	{Name: "Forward_Host", Kind: String, Default: "127.0.0.1",
		Description: "Host of the `in_forward` input that receives alerts. (Fluent Bit keeps `Host` for itself, hence the prefix.)",
		field:       func(c *Config) any { return &c.ForwardHost }},
	{Name: "Forward_Port", Kind: Int, Default: "24224", Min: 1, Max: 65535,
		Description: "TCP port of that `in_forward` input.",
		field:       func(c *Config) any { return &c.ForwardPort }},
	{Name: "Forward_Unix_Path", Kind: String,
		Description: "Unix socket of an `in_forward` input (its `unix_path`); when set, used instead of host and port.",
		field:       func(c *Config) any { return &c.ForwardUnixPath }},
	{Name: "Forward_Timeout", Kind: Duration, Default: "10s",
		Description: "Longest a delivery may take, connect, write and ack together; past it the flush returns RETRY instead of hanging. Go duration (`500ms`, `10s`) or seconds.",
		field:       func(c *Config) any { return &c.ForwardTimeout }},
	{Name: "Forward_Shared_Key", Kind: String, Secret: true,
		Description: "Shared key of an `in_forward` that sets `shared_key`: the plugin answers its HELO with the PING digest. Give it as `${ENV_VAR}`; it is never logged.",
		field:       func(c *Config) any { return &c.ForwardSharedKey }},
	{Name: "Forward_Self_Hostname", Kind: String, Default: "(the host name)",
		Description: "Host name sent in the shared-key handshake.",
		field:       func(c *Config) any { return &c.ForwardSelfHostname }},
	{Name: "Forward_TLS", Kind: Bool, Default: "off",
		Description: "Speak TLS to the `in_forward` (which then needs `tls on`). Fluent Bit keeps `tls.*` for itself, hence the prefix.",
		field:       func(c *Config) any { return &c.ForwardTLS }},
	{Name: "Forward_TLS_Verify", Kind: Bool, Default: "on",
		Description: "Verify the receiver's certificate and name.",
		field:       func(c *Config) any { return &c.ForwardTLSVerify }},
	{Name: "Forward_TLS_CA_File", Kind: String,
		Description: "PEM file of the CA(s) to trust instead of the system's.",
		field:       func(c *Config) any { return &c.ForwardTLSCAFile }},
	{Name: "Forward_TLS_Crt_File", Kind: String,
		Description: "PEM client certificate, for receivers that require one (with `Forward_TLS_Key_File`).",
		field:       func(c *Config) any { return &c.ForwardTLSCrtFile }},
	{Name: "Forward_TLS_Key_File", Kind: String,
		Description: "PEM private key of `Forward_TLS_Crt_File`.",
		field:       func(c *Config) any { return &c.ForwardTLSKeyFile }},
	{Name: "Forward_TLS_Vhost", Kind: String,
		Description: "Name expected in the receiver's certificate (and sent as SNI); defaults to `Forward_Host`.",
		field:       func(c *Config) any { return &c.ForwardTLSVhost }},
	{Name: "HTTP_URL", Kind: String,
		Description: "Endpoint for `Alert_Output http`, e.g. `https://splunk:8088/services/collector/event` or `https://es:9200/_bulk`.",
		field:       func(c *Config) any { return &c.HTTPURL }},
	{Name: "HTTP_Format", Kind: Enum, Default: "json", Values: []string{"json", "ndjson", "splunk_hec", "es_bulk"},
		Description: "Body: a JSON array of alerts, one alert per line, Splunk HEC event envelopes, or Elasticsearch bulk `create` actions whose `_id` is the alert key (a retried alert is a 409, not a duplicate).",
		field:       func(c *Config) any { return &c.HTTPFormat }},
	{Name: "HTTP_Headers", Kind: String,
		Description: "Extra headers as `Name: value` pairs separated by `;` (Fluent Bit hands a Go plugin only the first of a repeated key).",
		field:       func(c *Config) any { return &c.HTTPHeaders }},
	{Name: "HTTP_Timeout", Kind: Duration, Default: "10s",
		Description: "Longest a request may take, answer included.",
		field:       func(c *Config) any { return &c.HTTPTimeout }},
	{Name: "HTTP_User", Kind: String,
		Description: "Basic auth user.",
		field:       func(c *Config) any { return &c.HTTPUser }},
	{Name: "HTTP_Passwd", Kind: String, Secret: true,
		Description: "Basic auth password. Give secrets as `${ENV_VAR}`; they are never logged.",
		field:       func(c *Config) any { return &c.HTTPPasswd }},
	{Name: "HTTP_Bearer_Token", Kind: String, Secret: true,
		Description: "Sent as `Authorization: Bearer <token>`.",
		field:       func(c *Config) any { return &c.HTTPBearerToken }},
	{Name: "HTTP_Splunk_Token", Kind: String, Secret: true,
		Description: "HEC token, sent as `Authorization: Splunk <token>`.",
		field:       func(c *Config) any { return &c.HTTPSplunkToken }},
	{Name: "HTTP_Splunk_Sourcetype", Kind: String, Default: "aws:cloudtrail:quarantine",
		Description: "HEC `sourcetype`.",
		field:       func(c *Config) any { return &c.HTTPSplunkSourcetype }},
	{Name: "HTTP_Splunk_Source", Kind: String, Default: "cloudtrail_quarantine",
		Description: "HEC `source`.",
		field:       func(c *Config) any { return &c.HTTPSplunkSource }},
	{Name: "HTTP_Splunk_Index", Kind: String,
		Description: "HEC `index`; unset: the token's default index.",
		field:       func(c *Config) any { return &c.HTTPSplunkIndex }},
	{Name: "HTTP_ES_Index", Kind: String,
		Description: "Index named in each bulk action; unset: the index in `HTTP_URL` (`/<index>/_bulk`).",
		field:       func(c *Config) any { return &c.HTTPESIndex }},
	{Name: "HTTP_TLS_Verify", Kind: Bool, Default: "on",
		Description: "Verify an `https` endpoint's certificate and name.",
		field:       func(c *Config) any { return &c.HTTPTLSVerify }},
	{Name: "HTTP_TLS_CA_File", Kind: String,
		Description: "PEM file of the CA(s) to trust for `https` instead of the system's.",
		field:       func(c *Config) any { return &c.HTTPTLSCAFile }},
	{Name: "HTTP_TLS_Crt_File", Kind: String,
		Description: "PEM client certificate (with `HTTP_TLS_Key_File`).",
		field:       func(c *Config) any { return &c.HTTPTLSCrtFile }},
	{Name: "HTTP_TLS_Key_File", Kind: String,
		Description: "PEM private key of `HTTP_TLS_Crt_File`.",
		field:       func(c *Config) any { return &c.HTTPTLSKeyFile }},
	{Name: "Event_Key", Kind: List, Default: "log,message",
		Description: "Comma-separated record keys that may hold a CloudTrail event (or log file, or EventBridge event) as a JSON string.",
		field:       func(c *Config) any { return &c.EventKey }},
	{Name: "Include_Event", Kind: Bool, Default: "on",
		Description: "Copy the original CloudTrail event into each alert under `event`.",
		field:       func(c *Config) any { return &c.IncludeEvent }},
	{Name: "Dedup_Cache_Size", Kind: Int, Default: "100000", Min: 1, Max: 10000000,
		Description: "How many delivered alert keys (rule + eventID) each instance remembers to drop duplicates from re-delivered chunks; the oldest are forgotten first. About 100 bytes each.",
		field:       func(c *Config) any { return &c.DedupCacheSize }},
	{Name: "Spool_Dir", Kind: String,
		Description: "Directory where alerts that could not be delivered are kept (fsync'd) and from where a background sender delivers them, in order, with capped exponential backoff; they survive a restart. Unset: the flush returns RETRY instead. One directory per instance.",
		field:       func(c *Config) any { return &c.SpoolDir }},
	{Name: "Spool_Max_Size", Kind: Bytes, Default: "100M",
		Description: "Most undelivered alert bytes the spool holds; when full, the flush returns RETRY and a warning says so.",
		field:       func(c *Config) any { return &c.SpoolMaxSize }},
	{Name: "Stats_Interval", Kind: Duration, Default: "off", Off: true,
		Description: "How often each instance logs its counters (records, events, alerts by rule, delivered, retried, duplicates dropped, records skipped by reason) at info level; they are always logged at exit.",
		field:       func(c *Config) any { return &c.StatsInterval }},
}

// Load reads, parses and validates every option. The error is one line
// naming the key and what it accepts.
func Load(g Getter) (*Config, error) {
	c := &Config{}
	for i := range Options {
		o := &Options[i]
		raw := strings.TrimSpace(g.Get(o.Name))
		if raw == "" {
			raw = o.defaultValue()
		}
		if err := o.set(c, raw); err != nil {
			return nil, fmt.Errorf("%s: %q %s", o.Name, raw, err.Error())
		}
	}
	return c, c.validate()
}

// Headers parses HTTP_Headers: "Name: value; Name2: value2".
func (c *Config) Headers() ([][2]string, error) {
	var out [][2]string
	for _, pair := range strings.Split(c.HTTPHeaders, ";") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		name, val, ok := strings.Cut(pair, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("HTTP_Headers: %q is not a \"Name: value\" pair (separate pairs with ;)", strings.TrimSpace(pair))
		}
		out = append(out, [2]string{name, strings.TrimSpace(val)})
	}
	return out, nil
}

// defaultValue is Default, except where the default is computed.
func (o *Option) defaultValue() string {
	if o.Name == "Forward_Self_Hostname" {
		h, _ := os.Hostname()
		return h
	}
	return o.Default
}

func (c *Config) validate() error {
	switch {
	case c.AlertOutput == "file" && c.FilePath == "":
		return fmt.Errorf("File_Path: required when Alert_Output is file")
	case c.AlertOutput == "forward" && c.ForwardUnixPath == "" && c.ForwardHost == "":
		return fmt.Errorf("Forward_Host: required when Alert_Output is forward and Forward_Unix_Path is not set")
	case c.AlertTag == "":
		return fmt.Errorf("Alert_Tag: must not be empty")
	case len(c.EventKey) == 0:
		return fmt.Errorf("Event_Key: needs at least one key")
	case (c.ForwardTLSCrtFile == "") != (c.ForwardTLSKeyFile == ""):
		return fmt.Errorf("Forward_TLS_Crt_File: needs Forward_TLS_Key_File, and the other way round")
	case (c.HTTPTLSCrtFile == "") != (c.HTTPTLSKeyFile == ""):
		return fmt.Errorf("HTTP_TLS_Crt_File: needs HTTP_TLS_Key_File, and the other way round")
	case c.AlertOutput == "http" && !strings.HasPrefix(c.HTTPURL, "http://") && !strings.HasPrefix(c.HTTPURL, "https://"):
		return fmt.Errorf("HTTP_URL: %q is not an http:// or https:// URL (required when Alert_Output is http)", c.HTTPURL)
	}
	if _, err := c.Headers(); err != nil {
		return err
	}
	return nil
}

func (o *Option) set(c *Config, raw string) error {
	switch p := o.field(c).(type) {
	case *string:
		if o.Kind == Enum {
			for _, v := range o.Values {
				if strings.EqualFold(raw, v) {
					*p = v
					return nil
				}
			}
			return fmt.Errorf("is not one of %s", strings.Join(o.Values, ", "))
		}
		*p = raw
	case *bool:
		switch strings.ToLower(raw) {
		case "on", "true", "yes":
			*p = true
		case "off", "false", "no":
			*p = false
		default:
			return fmt.Errorf("is not a boolean: use on/off, true/false or yes/no")
		}
	case *int:
		n, err := strconv.Atoi(raw)
		if err != nil || n < o.Min || n > o.Max {
			return fmt.Errorf("is not a whole number from %d to %d", o.Min, o.Max)
		}
		*p = n
	case *time.Duration:
		if o.Off && (strings.EqualFold(raw, "off") || raw == "0") {
			*p = 0
			return nil
		}
		d, err := time.ParseDuration(raw)
		if err != nil {
			var secs float64
			secs, err = strconv.ParseFloat(raw, 64)
			d = time.Duration(secs * float64(time.Second))
		}
		if err != nil || d <= 0 {
			if o.Off {
				return fmt.Errorf("is not off or a positive duration such as 500ms, 10s or 10")
			}
			return fmt.Errorf("is not a positive duration such as 500ms, 10s or 10")
		}
		*p = d
	case *Size:
		n, err := parseSize(raw)
		if err != nil || n <= 0 {
			return fmt.Errorf("is not a size such as 512K, 100M or 1G")
		}
		*p = Size(n)
	case *[]string:
		var keys []string
		for _, k := range strings.Split(raw, ",") {
			if k = strings.TrimSpace(k); k != "" {
				keys = append(keys, k)
			}
		}
		*p = keys
	default:
		panic(fmt.Sprintf("config: option %s has no parser for %T", o.Name, p))
	}
	return nil
}

// parseSize reads bytes with an optional K, M or G (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > (1<<62)/mult {
		return 0, errors.New("bad size")
	}
	return n * mult, nil
}

// Effective renders the parsed configuration as one log line, every option
// in table order, so a misspelt key shows up as its default.
func (c *Config) Effective() string {
	parts := make([]string, 0, len(Options))
	for i := range Options {
		o := &Options[i]
		var s string
		switch p := o.field(c).(type) {
		case *string:
			s = strconv.Quote(*p)
			if o.Secret && *p != "" {
				s = "(set)"
			}
		case *bool:
			s = map[bool]string{true: "on", false: "off"}[*p]
		case *int:
			s = strconv.Itoa(*p)
		case *time.Duration:
			s = p.String()
			if *p == 0 && o.Off {
				s = "off"
			}
		case *[]string:
			s = strconv.Quote(strings.Join(*p, ","))
		case *Size:
			s = strconv.FormatInt(int64(*p), 10)
		}
		parts = append(parts, o.Name+"="+s)
	}
	return strings.Join(parts, " ")
}

// Markdown renders the table for the README's configuration reference.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| Key | Default | Accepted | Description |\n|---|---|---|---|\n")
	for _, o := range Options {
		def := "(none)"
		if o.Default != "" {
			def = "`" + o.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", o.Name, def, o.accepted(), o.Description)
	}
	return b.String()
}

func (o *Option) accepted() string {
	switch o.Kind {
	case Enum:
		return "`" + strings.Join(o.Values, "` \\| `") + "`"
	case Bool:
		return "`on`/`off`, `true`/`false`, `yes`/`no`"
	case Int:
		return fmt.Sprintf("%d to %d", o.Min, o.Max)
	case List:
		return "comma-separated names"
	case Bytes:
		return "bytes, or with K, M, G"
	case Duration:
		if o.Off {
			return "`off` or a duration"
		}
		return "duration"
	}
	return "text"
}
