package alert_test

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

var detector = detect.New(detect.Options{EventKeys: []string{"log", "message"}})

// alertsOf scans a chunk and makes the alerts of its findings, with the
// original event included.
func alertsOf(t testing.TB, chunk []byte) []alert.Alert {
	t.Helper()
	obs, _ := detector.Scan(chunk, nil, nil)
	findings := detect.Findings(obs)
	var out []alert.Alert
	for _, f := range findings {
		out = append(out, alert.New(f, true))
	}
	return out
}

// asJSON decodes a msgpack document through its JSON form.
func asJSON(t testing.TB, mp []byte) map[string]any {
	t.Helper()
	var back bytes.Buffer
	if _, err := msgp.UnmarshalAsJSON(&back, mp); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(back.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAlertContent(t *testing.T) {
	alerts := alertsOf(t, fbchunk.AppendV2(nil, t0, nil, corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", "put_user_legacy_inline")))
	if len(alerts) != 1 {
		t.Fatalf("got %d alerts", len(alerts))
	}
	a := alerts[0]
	if !a.Time.Equal(time.Date(2026, 11, 20, 8, 15, 42, 0, time.UTC)) {
		t.Errorf("alert time %v is not the eventTime", a.Time)
	}
	if a.Title != "AWS quarantined exposed access key AKIAEXAMPLEEXPOSED01 of IAM user ci-deployer in account 111122223333 (AWSExposedCredentialPolicy_DO_NOT_REMOVE)" {
		t.Errorf("title %q", a.Title)
	}
	if a.Policy.Version != "legacy" || a.Policy.ARN != "" || a.Target.Type != "user" || a.Actor.AccessKeyID != "AKIAEXAMPLEEXPOSED01" {
		t.Errorf("alert %+v", a)
	}
	js := a.AppendJSON(nil, alert.Native)
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rule", "title", "event_id", "event_time", "account_id", "region", "event_name", "event_source", "source_ip", "user_agent", "actor", "target", "policy", "event"} {
		if _, ok := m[k]; !ok {
			t.Errorf("alert JSON lacks %q", k)
		}
	}
	mp := a.AppendMsgpack(nil, alert.Native)
	if m2 := asJSON(t, mp); !reflect.DeepEqual(m, m2) {
		t.Errorf("msgpack and JSON forms differ:\n%v\n%v", m, m2)
	}
}

// FuzzEncode: whatever a chunk holds, every alert of it encodes in every
// format, as valid JSON and as msgpack.
func FuzzEncode(f *testing.F) {
	ev := corpus.Fixture(f, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
	js := value.ToJSON(ev)
	f.Add(fbchunk.AppendV2(nil, t0, nil, ev))
	f.Add(fbchunk.AppendV2(nil, t0, nil, map[string]any{"Records": []any{ev}}))
	f.Add(fbchunk.AppendLegacy(nil, 1.5, map[string]any{"log": string(js)}))
	f.Add(fbchunk.AppendV2(nil, t0, nil, map[string]any{"event.action": "AttachUserPolicy",
		"aws.cloudtrail.request_parameters": "{userName=a, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, a := range alertsOf(t, b) {
			for _, format := range []alert.Format{alert.Native, alert.ECS, alert.OCSF} {
				if js := a.AppendJSON(nil, format); !json.Valid(js) {
					t.Fatalf("alert encodes to invalid JSON %q", js)
				}
				if _, err := msgp.Skip(a.AppendMsgpack(nil, format)); err != nil {
					t.Fatalf("alert encodes to invalid msgpack: %v", err)
				}
			}
		}
	})
}

// everyAlert is the alert of every stateless rule's positive examples and
// of the lifecycle's example sequences, with the original event.
func everyAlert(t *testing.T) []alert.Alert {
	var all []alert.Alert
	for _, rule := range rules.Stateless() {
		for _, ev := range corpus.Fixtures(t, rule.ID, "positive") {
			all = append(all, alertsOf(t, fbchunk.AppendV2(nil, t0, nil, ev))...)
		}
	}
	for _, f := range sequence.Findings(t) {
		all = append(all, alert.New(f, true))
	}
	return all
}

// An alert read back from its native msgpack (as the state store keeps
// it) encodes to the same bytes, in every format.
func TestDecodeRoundTrips(t *testing.T) {
	all := everyAlert(t)
	for _, a := range all[:len(all)/2] {
		all = append(all, a.Truncated())
	}
	checked := 0
	for _, a := range all {
		stored := a.AppendMsgpack(nil, alert.Native)
		back, err := alert.Decode(stored, a.Time, a.Key)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []alert.Format{alert.Native, alert.ECS, alert.OCSF} {
			if !bytes.Equal(back.AppendMsgpack(nil, f), a.AppendMsgpack(nil, f)) || !bytes.Equal(back.AppendJSON(nil, f), a.AppendJSON(nil, f)) {
				t.Errorf("%s format %d: decoded alert encodes differently:\n%s\n%s", a.Key, f, back.AppendJSON(nil, f), a.AppendJSON(nil, f))
			}
		}
		checked++
	}
	if checked < 40 {
		t.Fatalf("checked %d alerts", checked)
	}
	for _, bad := range [][]byte{nil, {0x81}, msgp.AppendMapHeader(nil, 0), msgp.AppendString(nil, "x")} {
		if _, err := alert.Decode(bad, t0, "k"); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
}

// An alert cut down for its receiver (Truncated) says so in every format,
// where each format's schema allows it: event_truncated in the native
// document, cloudtrail_quarantine.event_truncated in ECS,
// unmapped.event_truncated in OCSF, each checked as the format's own tests
// check it, and carries no event.
func TestTruncatedAlertsSaySo(t *testing.T) {
	ref := ecsReference(t)
	all := everyAlert(t)
	for _, full := range all {
		a := full.Truncated()
		if full.EventTruncated || a.Event != nil {
			t.Fatal("Truncated changed the alert it was called on, or kept the event")
		}
		native := asJSON(t, a.AppendMsgpack(nil, alert.Native))
		if native["event_truncated"] != true || native["event"] != nil {
			t.Errorf("%s native: event_truncated %v, event %v", a.Key, native["event_truncated"], native["event"] != nil)
		}
		if fields := checkECS(t, ref, a); fields["cloudtrail_quarantine.event_truncated"] != true || fields["event.original"] != nil {
			t.Errorf("%s ECS: %v", a.Key, fields["cloudtrail_quarantine.event_truncated"])
		}
		if doc := ocsfDoc(t, &a); at(doc, "unmapped", "event_truncated") != true || doc["raw_data"] != nil {
			t.Errorf("%s OCSF: %v", a.Key, at(doc, "unmapped", "event_truncated"))
		}
		if full.Event != nil && len(a.AppendJSON(nil, alert.Native)) >= len(full.AppendJSON(nil, alert.Native)) {
			t.Errorf("%s: the truncated alert is no smaller", a.Key)
		}
		// An alert that was not cut says nothing of it.
		if doc := asJSON(t, full.AppendMsgpack(nil, alert.Native)); doc["event_truncated"] != nil {
			t.Errorf("%s: event_truncated on a whole alert", a.Key)
		}
	}
	if len(all) < 40 {
		t.Fatalf("checked %d alerts", len(all))
	}
}

// NaN and infinities in an event read through the map path (ECS here) or
// in place: the alert is made, in every format, with null for them.
func TestOddValuesBecomeNull(t *testing.T) {
	ecs := map[string]any{"event.action": "AttachUserPolicy", "event.id": "nan-1", "score": math.NaN(), "big": math.Inf(1),
		"aws.cloudtrail.request_parameters": "{userName=a, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}"}
	plain := corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
	plain["responseElements"] = map[string]any{"x": math.Inf(-1)}
	for body, want := range map[*map[string]any][]string{&ecs: {`"score":null`, `"big":null`}, &plain: {`"x":null`}} {
		alerts := alertsOf(t, fbchunk.AppendV2(nil, t0, nil, *body))
		if len(alerts) != 1 {
			t.Fatalf("%d alerts", len(alerts))
		}
		for _, f := range []alert.Format{alert.Native, alert.ECS, alert.OCSF} {
			if js := alerts[0].AppendJSON(nil, f); !json.Valid(js) {
				t.Errorf("format %d: %s", f, js)
			}
		}
		native := alerts[0].AppendJSON(nil, alert.Native)
		for _, w := range want {
			if !bytes.Contains(native, []byte(w)) {
				t.Errorf("alert lacks %s: %s", w, native)
			}
		}
	}
}
