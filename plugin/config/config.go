// Package config declares the plugin's options once, as a table, the way
// Fluent Bit's C plugins declare a config_map. The table drives parsing,
// validation, the effective-configuration line logged at Init and the
// README's reference, so the four cannot drift apart. It reads keys through
// a Getter, so it is tested without cgo or Fluent Bit.
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
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
	MetricsListen        string        // "": no listener
	StateDir             string
	QueueMaxSize         Size
	DeadLetterTTL        time.Duration
	DedupTTL             time.Duration
	ForwardMaxBatchSize  Size
	HTTPMaxBatchSize     Size
	WatchTTL             time.Duration
	WatchMaxKeys         int
	UseAlertWindow       time.Duration
	QuarantineGrace      time.Duration
	EventDelay           time.Duration
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
	RunbookBaseURL       string
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
	Name     string
	Kind     Kind
	Default  string
	Values   []string // for Enum
	Min, Max int      // for Int
	Off      bool     // for Duration: "off" (or 0) is accepted and means 0
	// Redact is how the effective configuration shows the value, when the
	// value holds a secret.
	Redact Redaction
	// Aliases are older names of the option, still accepted.
	Aliases     []string
	Description string
	// field points at where the parsed value goes; its type matches Kind.
	field func(*Config) any
}

// Redaction says which part of a value is secret.
type Redaction int

const (
	Clear        Redaction = iota
	Secret                 // the whole value: shown as (set)
	HeaderValues           // Name: value pairs: the values
	URLUserInfo            // a URL: its user and password
)

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
	{Name: "Forward_Max_Batch_Size", Kind: Bytes, Default: "4M",
		Description: "Largest Forward message: alerts are sent in messages of at most this size (one alert larger than it goes alone). `in_forward` closes the connection on a message over its `buffer_max_size` (6,144,000 bytes by default); raise both together.",
		field:       func(c *Config) any { return &c.ForwardMaxBatchSize }},
	{Name: "Forward_Shared_Key", Kind: String, Redact: Secret,
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
	{Name: "HTTP_URL", Kind: String, Redact: URLUserInfo,
		Description: "Endpoint for `Alert_Output http`, e.g. `https://splunk:8088/services/collector/event` or `https://es:9200/_bulk`. A user and password in it are never logged.",
		field:       func(c *Config) any { return &c.HTTPURL }},
	{Name: "HTTP_Format", Kind: Enum, Default: "json", Values: []string{"json", "ndjson", "splunk_hec", "es_bulk"},
		Description: "Body: a JSON array of alerts, one alert per line, Splunk HEC event envelopes, or Elasticsearch bulk `create` actions whose `_id` is the alert key (a retried alert is a 409, not a duplicate).",
		field:       func(c *Config) any { return &c.HTTPFormat }},
	{Name: "HTTP_Headers", Kind: String, Redact: HeaderValues,
		Description: "Extra headers as `Name: value` pairs separated by `;` (Fluent Bit hands a Go plugin only the first of a repeated key). Their values are never logged.",
		field:       func(c *Config) any { return &c.HTTPHeaders }},
	{Name: "HTTP_Timeout", Kind: Duration, Default: "10s",
		Description: "Longest a request may take, answer included.",
		field:       func(c *Config) any { return &c.HTTPTimeout }},
	{Name: "HTTP_Max_Batch_Size", Kind: Bytes, Default: "4M",
		Description: "Largest request body: alerts are posted in bodies of at most this size (one alert larger than it goes alone). Keep it under the receiver's limit (Splunk HEC's `max_content_length`, Elasticsearch's `http.max_content_length`).",
		field:       func(c *Config) any { return &c.HTTPMaxBatchSize }},
	{Name: "HTTP_User", Kind: String,
		Description: "Basic auth user.",
		field:       func(c *Config) any { return &c.HTTPUser }},
	{Name: "HTTP_Passwd", Kind: String, Redact: Secret,
		Description: "Basic auth password. Give secrets as `${ENV_VAR}`; they are never logged.",
		field:       func(c *Config) any { return &c.HTTPPasswd }},
	{Name: "HTTP_Bearer_Token", Kind: String, Redact: Secret,
		Description: "Sent as `Authorization: Bearer <token>`.",
		field:       func(c *Config) any { return &c.HTTPBearerToken }},
	{Name: "HTTP_Splunk_Token", Kind: String, Redact: Secret,
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
		Description: "Comma-separated record keys that may hold a CloudTrail event (or log file, or EventBridge or AWS Health event) as a JSON string; matched regardless of case, as Fluent Bit's own keys are (`message` also reads `Message`).",
		field:       func(c *Config) any { return &c.EventKey }},
	{Name: "Runbook_Base_URL", Kind: String, Default: alert.DefaultRunbookBase,
		Description: "The page that holds the runbooks, so each alert's `rule.runbook` is a link a SIEM can open: `<this>#runbook-<rule>`. The default is this README as published, a placeholder: set it to your own copy (an internal wiki page with the same anchors, or a fork's README). An `http://` or `https://` URL without a `#` fragment.",
		field:       func(c *Config) any { return &c.RunbookBaseURL }},
	{Name: "Include_Event", Kind: Bool, Default: "on",
		Description: "Copy the original CloudTrail event into each alert under `event`.",
		field:       func(c *Config) any { return &c.IncludeEvent }},
	{Name: "Dedup_Cache_Size", Kind: Int, Default: "100000", Min: 1, Max: 10000000,
		Description: "How many delivered alert keys (rule + eventID) each instance remembers, so a re-read file or a re-delivered chunk does not alert again; the oldest are forgotten first. About 100 bytes each, in memory or in `State_Dir`.",
		field:       func(c *Config) any { return &c.DedupCacheSize }},
	{Name: "Dedup_TTL", Kind: Duration, Default: "30d",
		Description: "How long a delivered alert key is remembered; past it, an event read again (a file re-read from its start, say) alerts again. A Go duration, or days as `30d`.",
		field:       func(c *Config) any { return &c.DedupTTL }},
	{Name: "State_Dir", Kind: String, Aliases: []string{"Spool_Dir"},
		Description: "Directory of the instance's durable store (one bbolt file, `state.db`): undelivered alerts wait there, in order, and a background sender delivers them with capped exponential backoff; the keys of delivered alerts and the lifecycle's watch list are kept there too, so neither a restart nor a re-read file alerts twice or forgets a key. A flush returns OK once its alerts are stored (fsync'd). Unset: delivery happens in the flush, which returns RETRY when it fails, and delivered keys and the watch list are kept in memory only. One directory per instance. `Spool_Dir` is its old name; a spool of the old format is taken over at start.",
		field:       func(c *Config) any { return &c.StateDir }},
	{Name: "Queue_Max_Size", Kind: Bytes, Default: "100M", Aliases: []string{"Spool_Max_Size"},
		Description: "Most undelivered alert bytes the store holds (and, apart from them, most bytes of alerts set aside). A flush stores what fits; when the rest does not, it returns RETRY and a warning says how much was stored: a chunk's alerts bigger than the queue are stored in parts as the sender makes room. `Spool_Max_Size` is its old name.",
		field:       func(c *Config) any { return &c.QueueMaxSize }},
	{Name: "Dead_Letter_TTL", Kind: Duration, Default: "30d",
		Description: "How long an alert its receiver refused for good (an HTTP 400, an Elasticsearch item refused for its content, an alert too big for the receiver even alone) is kept in `State_Dir`, set aside so that the alerts behind it go on; it is logged with its key when set aside. At most `Queue_Max_Size` of them are kept, the oldest dropped first.",
		field:       func(c *Config) any { return &c.DeadLetterTTL }},
	{Name: "Watch_TTL", Kind: Duration, Default: "30d",
		Description: "How long an exposed key (or its user, while the key is not known) stays on the watch list after it was last seen, in event time.",
		field:       func(c *Config) any { return &c.WatchTTL }},
	{Name: "Watch_Max_Keys", Kind: Int, Default: "100000", Min: 1, Max: 10000000,
		Description: "Most cases on the watch list (keys and users); past it the least recently seen goes, cases opened only by denied calls first, with a warning. A case takes about 700 bytes, at most 48 KiB whatever the records hold: memory for the watch list is at most Watch_Max_Keys x 48 KiB (100,000: 70 MB typically, 4.8 GB at the very worst).",
		field:       func(c *Config) any { return &c.WatchMaxKeys }},
	{Name: "Use_Alert_Window", Kind: Duration, Default: "1h",
		Description: "A watched key's uses alert once per service, action and outcome per window, in event time; the calls folded into an alert are counted (the next alert says how many).",
		field:       func(c *Config) any { return &c.UseAlertWindow }},
	{Name: "Quarantine_Grace", Kind: Duration, Default: "15m",
		Description: "How long after an exposure (AWS Health notice, or a quarantine AWS failed to apply) a quarantine of the key's user may come; a quarantine up to this long before the notice counts too.",
		field:       func(c *Config) any { return &c.QuarantineGrace }},
	{Name: "Event_Delay", Kind: Duration, Default: "15m",
		Description: "How late an event may arrive behind the latest one seen (CloudTrail log files arrive about 5 minutes after the call, AWS Health notices within a minute): an exposure is reported not quarantined only `Quarantine_Grace` plus this after it.",
		field:       func(c *Config) any { return &c.EventDelay }},
	{Name: "Stats_Interval", Kind: Duration, Default: "off", Off: true,
		Description: "How often each instance logs its counters (records, events, alerts by rule, delivered, retried, duplicates dropped, records skipped by reason) at info level; they are always logged at exit.",
		field:       func(c *Config) any { return &c.StatsInterval }},
	{Name: "Metrics_Listen", Kind: String,
		Description: "Address (`host:port`, e.g. `127.0.0.1:2021`) to serve Prometheus metrics on, at `/metrics`: the same counters as the stats line, per instance (label `name`), plus store size, pending alerts and delivery latency. Unset: no listener. The plugin is loaded once per Fluent Bit process, so there is one listener for every instance: the first instance that sets this opens it, an instance naming another address gets a warning and shares it, and it closes with the last instance. It has no authentication: keep it on loopback or a private network. An address that cannot be bound fails Init.",
		field:       func(c *Config) any { return &c.MetricsListen }},
}

// Load reads, parses and validates every option. The error is one line
// naming the key and what it accepts.
func Load(g Getter) (*Config, error) {
	c := &Config{}
	for i := range Options {
		o := &Options[i]
		raw := strings.TrimSpace(g.Get(o.Name))
		name := o.Name // as the user wrote it, for the error
		for _, alias := range o.Aliases {
			old := strings.TrimSpace(g.Get(alias))
			switch {
			case old == "":
			case raw == "":
				raw, name = old, alias
			case old != raw:
				return nil, fmt.Errorf("%s: set also as %s, its old name, to another value: keep one", o.Name, alias)
			}
		}
		if raw == "" {
			raw = o.defaultValue()
		}
		if err := o.set(c, raw); err != nil {
			return nil, fmt.Errorf("%s: %q %s", name, raw, err.Error())
		}
	}
	return c, c.validate()
}

// Headers parses HTTP_Headers: "Name: value; Name2: value2".
func (c *Config) Headers() ([][2]string, error) {
	var out [][2]string
	pairs := strings.Split(c.HTTPHeaders, ";")
	for i, pair := range pairs {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		name, val, ok := strings.Cut(pair, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			// Not quoted: a malformed pair may be all secret.
			return nil, fmt.Errorf("HTTP_Headers: pair %d of %d is not a \"Name: value\" pair (separate pairs with ;)", i+1, len(pairs))
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

// minBatch is the smallest batch cap that leaves room for an alert's
// framing.
const minBatch = 1 << 10

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
	case c.ForwardMaxBatchSize < minBatch:
		return fmt.Errorf("Forward_Max_Batch_Size: %d is too small for one message: use at least 1K", c.ForwardMaxBatchSize)
	case c.HTTPMaxBatchSize < minBatch:
		return fmt.Errorf("HTTP_Max_Batch_Size: %d is too small for one request: use at least 1K", c.HTTPMaxBatchSize)
	case c.AlertOutput == "http" && !strings.HasPrefix(c.HTTPURL, "http://") && !strings.HasPrefix(c.HTTPURL, "https://"):
		return fmt.Errorf("HTTP_URL: %q is not an http:// or https:// URL (required when Alert_Output is http)", optionNamed("HTTP_URL").redact(c.HTTPURL))
	}
	if _, err := c.Headers(); err != nil {
		return err
	}
	if err := alert.CheckRunbookBase(c.RunbookBaseURL); err != nil {
		return fmt.Errorf("Runbook_Base_URL: %v", err)
	}
	if c.MetricsListen != "" {
		if _, port, err := net.SplitHostPort(c.MetricsListen); err != nil || !validPort(port) {
			return fmt.Errorf("Metrics_Listen: %q is not a host:port address such as 127.0.0.1:2021", c.MetricsListen)
		}
	}
	return nil
}

// validPort accepts 0 too: the system picks a free port, which the
// listener's log line then names.
func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= 65535
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
		d, err := parseDuration(raw)
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

// parseDuration is time.ParseDuration plus whole days ("30d"), the unit
// retention is usually given in.
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n > 100000 {
			return 0, errors.New("bad days")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
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
			s = strconv.Quote(o.redact(*p))
			if o.Redact == Secret && *p != "" {
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
			if *p >= 24*time.Hour && *p%(24*time.Hour) == 0 {
				s = strconv.Itoa(int(*p/(24*time.Hour))) + "d"
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

func optionNamed(name string) *Option {
	for i := range Options {
		if Options[i].Name == name {
			return &Options[i]
		}
	}
	panic("no option " + name)
}

// redact hides the secret part of v, as o.Redact says.
func (o *Option) redact(v string) string {
	if v == "" {
		return v
	}
	switch o.Redact {
	case Secret:
		return "(set)"
	case HeaderValues:
		var parts []string
		for _, pair := range strings.Split(v, ";") {
			if name, _, ok := strings.Cut(pair, ":"); ok {
				parts = append(parts, strings.TrimSpace(name)+": (redacted)")
			} else if strings.TrimSpace(pair) != "" {
				parts = append(parts, "(redacted)")
			}
		}
		return strings.Join(parts, "; ")
	case URLUserInfo:
		if u, err := url.Parse(v); err == nil {
			if u.User != nil {
				u.User = url.User("(redacted)")
				return strings.Replace(u.String(), "%28redacted%29", "(redacted)", 1)
			}
			return v
		}
		return "(unparsable URL, not shown)"
	}
	return v
}

// Secrets are the configured values that must never appear in a log
// line: whole secrets, header values and URL user-info.
func (c *Config) Secrets() []string {
	var out []string
	for i := range Options {
		o := &Options[i]
		v, ok := o.field(c).(*string)
		if !ok || *v == "" {
			continue
		}
		switch o.Redact {
		case Secret:
			out = append(out, *v)
		case HeaderValues:
			headers, _ := c.Headers()
			for _, h := range headers {
				if h[1] != "" {
					out = append(out, h[1])
				}
				// "ApiKey <key>", "Basic <b64>": the credential alone too.
				if f := strings.Fields(h[1]); len(f) > 1 {
					for _, w := range f {
						if len(w) >= 8 {
							out = append(out, w)
						}
					}
				}
			}
		case URLUserInfo:
			if u, err := url.Parse(*v); err == nil && u.User != nil {
				out = append(out, u.User.Username())
				if pw, ok := u.User.Password(); ok {
					out = append(out, pw, basicAuth(u.User.Username(), pw))
				}
			}
		}
	}
	if c.HTTPPasswd != "" {
		out = append(out, basicAuth(c.HTTPUser, c.HTTPPasswd))
	}
	return out
}

// basicAuth is the credential of an HTTP Basic Authorization header, the
// form a receiver echoes the user and password in.
func basicAuth(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// Warnings are settings of the configured output that are allowed but
// probably not meant: TLS settings while TLS is off, and certificate
// verification turned off.
func (c *Config) Warnings() []string {
	type setting struct {
		key string
		set bool
	}
	check := func(tlsOn bool, off string, verifyKey string, verify bool, settings []setting) []string {
		var w []string
		for _, s := range settings {
			if s.set && !tlsOn {
				w = append(w, s.key+" is set but "+off+": it is not used")
			}
		}
		switch {
		case !verify && !tlsOn:
			w = append(w, verifyKey+" is set but "+off+": it is not used")
		case !verify:
			w = append(w, verifyKey+" is off: the receiver's certificate is not checked, so anyone on the path can read and forge alerts")
		}
		return w
	}
	switch c.AlertOutput {
	case "forward":
		return check(c.ForwardTLS, "Forward_TLS is off", "Forward_TLS_Verify", c.ForwardTLSVerify, []setting{
			{"Forward_TLS_CA_File", c.ForwardTLSCAFile != ""}, {"Forward_TLS_Crt_File", c.ForwardTLSCrtFile != ""},
			{"Forward_TLS_Key_File", c.ForwardTLSKeyFile != ""}, {"Forward_TLS_Vhost", c.ForwardTLSVhost != ""}})
	case "http":
		return check(strings.HasPrefix(strings.ToLower(c.HTTPURL), "https://"), "HTTP_URL is not https://", "HTTP_TLS_Verify", c.HTTPTLSVerify, []setting{
			{"HTTP_TLS_CA_File", c.HTTPTLSCAFile != ""}, {"HTTP_TLS_Crt_File", c.HTTPTLSCrtFile != ""}, {"HTTP_TLS_Key_File", c.HTTPTLSKeyFile != ""}})
	}
	return nil
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
