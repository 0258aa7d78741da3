package alert_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

var detector = detect.New(detect.Options{EventKeys: []string{"log", "message"}})

// alertsOf scans a chunk and makes the alerts of its findings, with the
// original event included.
func alertsOf(t testing.TB, chunk []byte) []alert.Alert {
	t.Helper()
	findings, _ := detector.Scan(chunk, nil)
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
	js, err := a.AppendJSON(nil, alert.Native)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rule", "title", "event_id", "event_time", "account_id", "region", "event_name", "event_source", "source_ip", "user_agent", "actor", "target", "policy", "event"} {
		if _, ok := m[k]; !ok {
			t.Errorf("alert JSON lacks %q", k)
		}
	}
	mp, err := a.AppendMsgpack(nil, alert.Native)
	if err != nil {
		t.Fatal(err)
	}
	if m2 := asJSON(t, mp); !reflect.DeepEqual(m, m2) {
		t.Errorf("msgpack and JSON forms differ:\n%v\n%v", m, m2)
	}
}

// FuzzEncode: whatever a chunk holds, every alert of it encodes in every
// format, as valid JSON and as msgpack.
func FuzzEncode(f *testing.F) {
	ev := corpus.Fixture(f, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
	js, _ := value.ToJSON(ev)
	f.Add(fbchunk.AppendV2(nil, t0, nil, ev))
	f.Add(fbchunk.AppendV2(nil, t0, nil, map[string]any{"Records": []any{ev}}))
	f.Add(fbchunk.AppendLegacy(nil, 1.5, map[string]any{"log": string(js)}))
	f.Add(fbchunk.AppendV2(nil, t0, nil, map[string]any{"event.action": "AttachUserPolicy",
		"aws.cloudtrail.request_parameters": "{userName=a, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, a := range alertsOf(t, b) {
			for _, format := range []alert.Format{alert.Native, alert.ECS} {
				js, err := a.AppendJSON(nil, format)
				if err != nil || !json.Valid(js) {
					t.Fatalf("alert does not encode: %v %q", err, js)
				}
				if _, err := a.AppendMsgpack(nil, format); err != nil {
					t.Fatalf("alert does not encode: %v", err)
				}
			}
		}
	})
}
