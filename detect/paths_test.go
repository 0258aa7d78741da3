package detect_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/hostile"
)

// pathSeeds are record bodies of every shape the fast path reads, as
// msgpack, plus the odd values the two paths must read alike.
func pathSeeds(f *testing.F) {
	for _, rule := range []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_attempt_failed", "aws.iam.quarantine_removed"} {
		for _, kind := range []string{"positive", "negative"} {
			for _, ev := range corpus.Fixtures(f, rule, kind) {
				f.Add(value.AppendMsgpack(nil, ev))
				f.Add(value.AppendMsgpack(nil, map[string]any{"Records": []any{ev, ev}}))
				f.Add(value.AppendMsgpack(nil, map[string]any{"detail-type": "AWS API Call via CloudTrail", "detail": ev}))
			}
		}
	}
	// AWS Health in every detail-type and partition, as SNS delivers it
	// (HTTP and Lambda envelopes), keys re-cased, accounts that are none.
	for _, kind := range []string{"positive", "negative"} {
		for _, ev := range corpus.Fixtures(f, "aws.health.credentials_exposed", kind) {
			f.Add(value.AppendMsgpack(nil, ev))
		}
	}
	for _, ev := range shapeSeeds(f) {
		f.Add(value.AppendMsgpack(nil, ev))
	}
	odd := map[string]any{"eventName": "AttachUserPolicy", "eventSource": true, "recipientAccountId": 1.5, "eventID": int64(-3),
		"awsRegion": nil, "userIdentity": map[string]any{"accountId": uint64(1 << 63), "type": []any{"x"}},
		"requestParameters": map[string]any{"userName": "u", "policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2", "n": 1e308}}
	f.Add(value.AppendMsgpack(nil, odd))
	f.Add(value.AppendMsgpack(nil, map[string]any{"eventName": nil, "detail": odd}))
	f.Add(value.AppendMsgpack(nil, map[string]any{"Records": []any{odd, map[string]any{"eventName": nil}}}))
	for _, ev := range overLong(f) {
		f.Add(value.AppendMsgpack(nil, ev))
		f.Add(value.AppendMsgpack(nil, map[string]any{"Records": []any{ev}}))
	}
}

// overLong are examples with values just past their bounds (cloudtrail's
// Max* constants): every field one at a time, then all of them.
func overLong(t testing.TB) []any {
	ex := corpus.Fixture(t, "aws.iam.quarantine_attempt_failed", "positive", "attach_user_v2_access_denied")
	past := func(s string) string {
		return s + strings.Repeat("\u00e9", 1+max(cloudtrail.MaxErrorMessage, cloudtrail.MaxUserAgent)/2)
	}
	var out []any
	for _, path := range hostile.Leaves(ex) {
		out = append(out, hostile.With(ex, path, past))
	}
	return append(out, hostile.All(ex, past))
}

// events reads body both ways: in place (what Scan does) and decoded
// into a map first (what the map-only resolver does).
func events(body []byte) (fast, slow []*cloudtrail.Event, ok bool) {
	r := cloudtrail.Resolver{EventKeys: []string{"log", "message"}}
	if _, skipped, err := r.ResolveMsgpack(body, func(e *cloudtrail.Event) { fast = append(fast, e) }); err != nil || skipped > 0 {
		return nil, nil, false // the detector counts it as undecodable
	}
	v, err := value.FromMsgpack(body)
	m, isMap := v.(map[string]any)
	if err != nil || !isMap {
		return nil, nil, false
	}
	r.Resolve(m, func(e *cloudtrail.Event) { slow = append(slow, e) })
	return fast, slow, true
}

// document is an alert in its JSON and its msgpack form, as they decode:
// key order and number types set aside, what a receiver sees.
func document(t *testing.T, e *cloudtrail.Event, rule *rules.Rule, m rules.Finding) [2]any {
	a := alert.New(detect.Finding{Rule: rule, Event: e, Match: m, Key: "k"}, true)
	var doc [2]any
	if err := json.Unmarshal(a.AppendJSON(nil, alert.Native), &doc[0]); err != nil {
		t.Fatalf("alert is not JSON: %v", err)
	}
	var js bytes.Buffer
	if _, err := msgp.UnmarshalAsJSON(&js, a.AppendMsgpack(nil, alert.Native)); err != nil {
		t.Fatalf("alert is not msgpack: %v", err)
	}
	if err := json.Unmarshal(js.Bytes(), &doc[1]); err != nil {
		t.Fatalf("alert's msgpack is not JSON-able: %v", err)
	}
	return doc
}

// FuzzFastAndMapPathsAgree is the differential check of the two ways to
// read a record: for the same body, the zero-copy path and the map path
// find the same events, every rule says the same of them, and their
// alerts are the same documents.
func FuzzFastAndMapPathsAgree(f *testing.F) {
	pathSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		if msgp.NextType(body) != msgp.MapType {
			return
		}
		if rest, err := msgp.Skip(body); err != nil || len(rest) > 0 {
			return
		}
		fast, slow, ok := events(body)
		if !ok {
			return
		}
		if len(fast) != len(slow) {
			t.Fatalf("fast path %d events, map path %d", len(fast), len(slow))
		}
		for i := range fast {
			a, b := fast[i], slow[i]
			if a.Name != b.Name || a.Source != b.Source || a.ErrorCode != b.ErrorCode || a.ErrorMessage != b.ErrorMessage ||
				a.ID != b.ID || a.Time != b.Time || a.Region != b.Region || a.Account != b.Account || a.SourceIP != b.SourceIP ||
				a.UserAgent != b.UserAgent || a.Actor != b.Actor || a.Shape != b.Shape || a.Oversized != b.Oversized || a.IgnoredAccounts != b.IgnoredAccounts {
				t.Fatalf("event %d differs:\nfast %+v\nmap  %+v", i, a, b)
			}
			if pa, pb := value.ToJSON(a.Params), value.ToJSON(b.Params); string(pa) != string(pb) {
				t.Fatalf("event %d parameters differ:\nfast %s\nmap  %s", i, pa, pb)
			}
			for _, rule := range rules.Stateless() {
				ma, oka := rule.Match(a)
				mb, okb := rule.Match(b)
				if oka != okb || !reflect.DeepEqual(ma, mb) {
					t.Fatalf("event %d: %s says %v/%+v fast, %v/%+v map", i, rule.ID, oka, ma, okb, mb)
				}
				if !oka {
					continue
				}
				if da, db := document(t, a, rule, ma), document(t, b, rule, mb); !reflect.DeepEqual(da, db) {
					t.Fatalf("event %d: the alerts of %s differ:\nfast %v\nmap  %v", i, rule.ID, da, db)
				}
			}
		}
	})
}

// The seeds agree, and Scan (the fast path) gives their alerts.
func TestPathsAgreeOnTheExamples(t *testing.T) {
	ev := applied(t)
	fast, slow, ok := events(value.AppendMsgpack(nil, map[string]any{"Records": []any{ev, ev}}))
	if !ok || len(fast) != 2 || len(slow) != 2 {
		t.Fatalf("%d and %d events", len(fast), len(slow))
	}
	if findings, _ := scan(t, fbchunk.AppendV2(nil, t0, nil, ev)); len(findings) != 1 {
		t.Fatalf("%d findings", len(findings))
	}
}

// shapeSeeds are the record shapes that wrap an event in an envelope of
// another kind: SNS notifications (HTTP and Lambda) of a Health notice
// and of a CloudTrail call, their keys lower-cased, an event under an
// Event_Key spelt in another case, a Health notice whose affectedAccount
// is a key id.
func shapeSeeds(f *testing.F) []map[string]any {
	sns := corpus.Fixture(f, "aws.health.credentials_exposed", "positive", "sns_http_notification")
	lambda := corpus.Fixture(f, "aws.health.credentials_exposed", "positive", "sns_lambda_records")
	ev := corpus.Fixture(f, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
	bridge := map[string]any{"version": "0", "source": "aws.iam", "detail-type": "AWS API Call via CloudTrail", "detail": ev}
	viaSNS := map[string]any{"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:111122223333:iam-calls",
		"Message": string(value.ToJSON(bridge))}
	lower := map[string]any{"type": "Notification", "message": sns["Message"]}
	healthWithEvent := corpus.Fixture(f, "aws.health.credentials_exposed", "positive", "abuse_event_detail_type")
	healthWithEvent["detail"].(map[string]any)["eventName"] = "AttachUserPolicy"
	return []map[string]any{
		sns, lambda, viaSNS, lower,
		{"Records": []any{map[string]any{"EventSource": "aws:sns", "Sns": viaSNS}, ev}},
		{"records": []any{map[string]any{"sns": lower}}},
		{"Message": string(value.ToJSON(ev)), "Type": "Notice"},
		{"LOG": string(value.ToJSON(sns))},
		corpus.Fixture(f, "aws.health.credentials_exposed", "positive", "affected_account_holds_the_key"),
		healthWithEvent,
	}
}
