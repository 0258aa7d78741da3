// Package alert is the alert schema and its formats: the plugin's own
// (native) as JSON and msgpack, and Elastic Common Schema. detect finds;
// this package says what an alert of a finding looks like on the wire.
package alert

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Alert is one rule firing on one CloudTrail event. AppendJSON and
// AppendMsgpack write the alert schema documented in the README; both are
// generated from one field list (fields), so they cannot drift apart.
type Alert struct {
	Rule         *RuleRef
	Title        string
	EventID      string
	EventTime    string
	AccountID    string
	Region       string
	EventName    string
	EventSource  string
	SourceIP     string
	UserAgent    string
	Actor        Actor
	Target       rules.Target
	Policy       rules.Policy
	ErrorCode    string // omitted when empty
	ErrorMessage string // omitted when empty
	// AuthorizationID is the id an access-denied message gives for IAM's
	// GetRequestAuthorizationDetails; omitted when empty.
	AuthorizationID string
	// Commands are the response, ready to paste (rules.Commands); omitted
	// when the alert has none.
	Commands []string
	Shape    string
	// Event is the original event (map[string]any, or value.Raw msgpack
	// that may alias the scanned chunk); nil when not included.
	Event any
	// EventTruncated says the event was dropped from an alert too big for
	// its receiver (Truncated); written only when true.
	EventTruncated bool
	// AccessKey is what the lifecycle knows of the exposed key; Use how
	// many calls a use alert stands for. Nil when none.
	AccessKey *rules.Key
	Use       *rules.Use

	// Time is the alert record's timestamp: the event's eventTime, or the
	// record's time when eventTime is missing or unreadable.
	Time time.Time
	// Key identifies the alert for deduplication: rule id and event id.
	Key string
}

// Actor is who made the call.
type Actor struct {
	Type        string
	ARN         string
	UserName    string
	AccessKeyID string
}

// RuleRef is the rule metadata every alert carries, encoded once per rule.
type RuleRef struct {
	ID, Name, Severity string
	Description        string
	RiskScore          int
	MITRE              []rules.Technique
	Runbook            string
	References         []string
	Equivalents        []string

	json, msgpack []byte
}

// refs holds each rule's RuleRef, built once: its encodings are shared by
// every alert of the rule.
var refs = sync.OnceValue(func() map[*rules.Rule]*RuleRef {
	m := map[*rules.Rule]*RuleRef{}
	for _, r := range rules.All() {
		m[r] = newRuleRef(r)
	}
	return m
})

// New is the alert of a finding. With includeEvent the original event is
// carried along; it may alias the scanned chunk, so encode the alert before
// the chunk is released.
func New(f detect.Finding, includeEvent bool) Alert {
	e := f.Event
	a := Alert{
		Rule:        ruleRef(f.Rule, f.Match.Severity),
		Title:       f.Rule.Title(e, f.Match),
		EventID:     e.ID,
		EventTime:   e.Time,
		AccountID:   e.Account,
		Region:      e.Region,
		EventName:   e.Name,
		EventSource: e.Source,
		SourceIP:    e.SourceIP,
		UserAgent:   e.UserAgent,
		Actor: Actor{
			Type:        e.Actor.Type,
			ARN:         e.Actor.ARN,
			UserName:    e.Actor.UserName,
			AccessKeyID: e.Actor.AccessKeyID,
		},
		Target:       f.Match.Target,
		Policy:       f.Match.Policy,
		AccessKey:    f.Match.Key,
		Use:          f.Match.Use,
		ErrorCode:    e.ErrorCode,
		ErrorMessage: e.ErrorMessage,
		Shape:        string(e.Shape),
		Time:         f.Time,
		Key:          f.Key,

		AuthorizationID: e.AuthorizationID(),
		Commands:        rules.Commands(f.Rule.ID, rules.FactsOf(e, f.Match)),
	}
	if includeEvent {
		a.Event = e.Raw
	}
	return a
}

func newRuleRef(r *rules.Rule) *RuleRef {
	ref := &RuleRef{
		ID: r.ID, Name: r.Name, Severity: r.Severity, Description: r.Description, RiskScore: r.RiskScore, MITRE: r.MITRE,
		Runbook: r.Runbook, References: r.References, Equivalents: r.Equivalents,
	}
	ref.encodeOnce()
	return ref
}

// encodeOnce keeps the rule's JSON and msgpack forms for every alert.
func (r *RuleRef) encodeOnce() {
	var j jsonEncoder
	r.fields(&j)
	var m msgpackEncoder
	r.fields(&m)
	r.json, r.msgpack = j.b, m.b
}

// severities are Elastic's risk scores of the severities (its detection
// rules' scale, also ECS's event.severity): the score of a variant whose
// severity is not the rule's own (a use of a key that failed: medium).
var severities = map[string]int{"low": 21, "medium": 47, "high": 73, "critical": 99}

var variants sync.Map // rule id + "/" + severity [+ "\x00" + runbook base] -> *RuleRef

// SetRunbookBase makes the alert's rule.runbook an absolute link: base
// is the URL of the page that holds the runbooks (the README, or the
// operator's own copy), and the runbook its anchor there. "" keeps the
// link relative to the README.
func (a *Alert) SetRunbookBase(base string) {
	if base == "" {
		return
	}
	r := a.Rule
	key := r.ID + "/" + r.Severity + "\x00" + base
	if v, ok := variants.Load(key); ok && rules.ByID(r.ID) != nil {
		a.Rule = v.(*RuleRef)
		return
	}
	c := *r
	c.Runbook = RunbookURL(base, r.Runbook)
	c.encodeOnce()
	if rules.ByID(r.ID) == nil {
		// A rule this version lacks (read back from the store) carries its
		// own metadata: not shared with another alert's.
		a.Rule = &c
		return
	}
	v, _ := variants.LoadOrStore(key, &c)
	a.Rule = v.(*RuleRef)
}

// DefaultRunbookBase is the README as the project publishes it: a
// placeholder for the operator's own copy of the runbooks (the plugin's
// Runbook_Base_URL, the scan's --runbook-base-url).
const DefaultRunbookBase = "https://github.com/cloudtrail-quarantine/cloudtrail_quarantine/blob/main/README.md"

// CheckRunbookBase accepts an absolute http(s) URL with a host and no
// fragment (the runbook's anchor is added as one).
func CheckRunbookBase(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	case strings.Contains(s, "#"):
		return fmt.Errorf("%q has a #fragment: give the page, the runbook's anchor is added to it", s)
	}
	return nil
}

// RunbookURL is the runbook link of a rule whose runbook is the README
// anchor (or a link) runbook, on the page at base.
func RunbookURL(base, runbook string) string {
	_, anchor, ok := strings.Cut(runbook, "#")
	if !ok {
		return runbook
	}
	return base + "#" + anchor
}

// ruleRef is the rule's RuleRef, or its variant with another severity.
func ruleRef(r *rules.Rule, severity string) *RuleRef {
	ref := refs()[r]
	if severity == "" || severity == r.Severity {
		return ref
	}
	if v, ok := variants.Load(r.ID + "/" + severity); ok {
		return v.(*RuleRef)
	}
	c := *ref
	c.Severity, c.RiskScore = severity, severities[severity]
	c.encodeOnce()
	v, _ := variants.LoadOrStore(r.ID+"/"+severity, &c)
	return v.(*RuleRef)
}

func (r *RuleRef) fields(e encoder) {
	e.begin(8)
	e.str("id", r.ID)
	e.str("name", r.Name)
	e.str("severity", r.Severity)
	e.int("risk_score", r.RiskScore)
	e.key("mitre")
	e.array(len(r.MITRE))
	for _, t := range r.MITRE {
		e.begin(4)
		e.str("tactic_id", t.TacticID)
		e.str("tactic", t.TacticName)
		e.str("technique_id", t.TechniqueID)
		e.str("technique", t.TechniqueName)
		e.end()
	}
	e.endArray()
	e.str("runbook", r.Runbook)
	e.strs("references", r.References)
	e.strs("equivalents", r.Equivalents)
	e.end()
}

func (a *Alert) fields(e encoder) {
	n := 13
	for _, present := range []bool{a.Target.Type != "", a.Policy.Name != "", a.AccessKey != nil, a.Use != nil, len(a.lifecycle()) > 0,
		a.ErrorCode != "", a.ErrorMessage != "", a.AuthorizationID != "", len(a.Commands) > 0, a.Event != nil, a.EventTruncated} {
		if present {
			n++
		}
	}
	e.begin(n)
	e.key("rule")
	e.raw(a.Rule.json, a.Rule.msgpack)
	e.str("title", a.Title)
	e.str("event_id", a.EventID)
	e.str("event_time", a.EventTime)
	e.str("account_id", a.AccountID)
	e.str("region", a.Region)
	e.str("event_name", a.EventName)
	e.str("event_source", a.EventSource)
	e.str("source_ip", a.SourceIP)
	e.str("user_agent", a.UserAgent)
	e.key("actor")
	e.begin(4)
	e.str("type", a.Actor.Type)
	e.str("arn", a.Actor.ARN)
	e.str("user_name", a.Actor.UserName)
	e.str("access_key_id", a.Actor.AccessKeyID)
	e.end()
	a.targetAndPolicy(e)
	a.lifecycleFields(e)
	if a.ErrorCode != "" {
		e.str("error_code", a.ErrorCode)
	}
	if a.ErrorMessage != "" {
		e.str("error_message", a.ErrorMessage)
	}
	if a.AuthorizationID != "" {
		e.str("authorization_id", a.AuthorizationID)
	}
	if len(a.Commands) > 0 {
		e.key("response")
		e.begin(1)
		e.strs("commands", a.Commands)
		e.end()
	}
	e.str("record_shape", a.Shape)
	e.str("schema_version", SchemaVersion)
	if a.Event != nil {
		e.key("event")
		e.value(a.Event)
	}
	a.truncation(e)
	e.end()
}

// Truncated is the alert without its original event, marked as such: what
// is sent when the whole alert is more than its receiver takes. The event
// goes first because it is the bulk of an alert and the fields keep what
// it says that the rules read.
func (a Alert) Truncated() Alert {
	a.Event, a.EventTruncated = nil, true
	return a
}

// truncation writes event_truncated when the event was dropped.
func (a *Alert) truncation(e encoder) {
	if a.EventTruncated {
		e.key("event_truncated")
		e.value(true)
	}
}

// SizeHint is a buffer size that holds the encoded alert in most cases, so
// encoding does not grow its buffer: the fields and rule take about 1.5 KB,
// the response commands up to 1 KB, the event about its own size (more in
// JSON, for escapes).
func (a *Alert) SizeHint() int {
	n := 3072
	if raw, ok := a.Event.(value.Raw); ok {
		n += len(raw) + len(raw)/4
	}
	return n
}

// SchemaVersion is the native schema's version: 2 added key, use and
// lifecycle, and made target and policy optional; 3 added response and
// authorization_id.
const SchemaVersion = "3"

// targetAndPolicy writes the target and policy objects both formats carry,
// when the alert has them.
func (a *Alert) targetAndPolicy(e encoder) {
	if a.Target.Type != "" {
		e.key("target")
		e.begin(2)
		e.str("type", a.Target.Type)
		e.str("name", a.Target.Name)
		e.end()
	}
	if a.Policy.Name == "" {
		return
	}
	e.key("policy")
	if a.Policy.ARN != "" {
		e.begin(3)
		e.str("name", a.Policy.Name)
		e.str("arn", a.Policy.ARN)
	} else {
		e.begin(2)
		e.str("name", a.Policy.Name)
	}
	e.str("version", a.Policy.Version)
	e.end()
}

// AppendJSON appends the alert in format f as one compact JSON object.
// It cannot fail: a value JSON cannot hold (NaN, say) is written as null.
func (a *Alert) AppendJSON(b []byte, f Format) []byte {
	e := jsonEncoder{b: b}
	a.encode(&e, f)
	return e.b
}

// AppendMsgpack appends the alert in format f as one msgpack map; a
// msgpack event is copied in as it is, without decoding.
func (a *Alert) AppendMsgpack(b []byte, f Format) []byte {
	e := msgpackEncoder{b: b}
	a.encode(&e, f)
	return e.b
}

func (a *Alert) encode(e encoder, f Format) {
	switch f {
	case ECS:
		a.ecsFields(e)
	case OCSF:
		a.ocsfFields(e)
	default:
		a.fields(e)
	}
}

// keyFields are the key object's fields the alert has, in order.
func (a *Alert) keyFields() []field {
	k := a.AccessKey
	if k == nil {
		return nil
	}
	return present(
		field{"id", k.ID}, field{"user", k.User}, field{"account", k.Account}, field{"exposed_url", k.ExposedURL},
		field{"first_seen", stamp(k.FirstSeen)}, field{"exposed_at", stamp(k.ExposedAt)},
		field{"quarantined_at", stamp(k.QuarantinedAt)}, field{"retired_at", stamp(k.RetiredAt)})
}

// lifecycle is how long after the exposure and after the quarantine the
// alert's event came: for a retirement, the time to remediate.
func (a *Alert) lifecycle() []numField {
	k := a.AccessKey
	if k == nil {
		return nil
	}
	var out []numField
	for _, f := range []struct {
		name string
		from time.Time
	}{{"seconds_from_exposure", k.ExposedAt}, {"seconds_from_quarantine", k.QuarantinedAt}} {
		if !f.from.IsZero() && !a.Time.Before(f.from) {
			out = append(out, numField{f.name, int(a.Time.Sub(f.from) / time.Second)})
		}
	}
	if k.Waited > 0 {
		out = append(out, numField{"seconds_waited", int(k.Waited / time.Second)})
	}
	return out
}

// lifecycleFields writes key, use and lifecycle, when the alert has them.
func (a *Alert) lifecycleFields(e encoder) {
	if fs := a.keyFields(); a.AccessKey != nil {
		e.key("key")
		e.begin(len(fs))
		for _, f := range fs {
			e.str(f.k, f.v)
		}
		e.end()
	}
	if u := a.Use; u != nil {
		e.key("use")
		e.begin(3)
		e.int("calls", int(u.Calls))
		e.int("total_calls", int(u.Total))
		e.str("window_start", stamp(u.WindowStart))
		e.end()
	}
	if ls := a.lifecycle(); len(ls) > 0 {
		e.key("lifecycle")
		e.begin(len(ls))
		for _, f := range ls {
			e.int(f.k, f.v)
		}
		e.end()
	}
}

type field struct{ k, v string }

type numField struct {
	k string
	v int
}

// present keeps the fields that have a value.
func present(fs ...field) []field {
	out := fs[:0]
	for _, f := range fs {
		if f.v != "" {
			out = append(out, f)
		}
	}
	return out
}

// stamp is an RFC 3339 UTC time, "" for the zero time.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
