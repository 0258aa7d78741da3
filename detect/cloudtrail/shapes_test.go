package cloudtrail_test

import (
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
)

const health = "aws.health.credentials_exposed"

// events reads body both ways the detector does (in place from msgpack,
// and decoded) and fails unless both find the same events.
func eventsOf(t *testing.T, body map[string]any, keys ...string) []*cloudtrail.Event {
	t.Helper()
	if keys == nil {
		keys = []string{"log", "message"}
	}
	r := cloudtrail.Resolver{EventKeys: keys}
	var fast, slow []*cloudtrail.Event
	if _, _, err := r.ResolveMsgpack(value.AppendMsgpack(nil, body), func(e *cloudtrail.Event) { fast = append(fast, e) }); err != nil {
		t.Fatal(err)
	}
	r.Resolve(body, func(e *cloudtrail.Event) { slow = append(slow, e) })
	if len(fast) != len(slow) {
		t.Fatalf("%d events in place, %d decoded", len(fast), len(slow))
	}
	for i := range fast {
		if a, b := fast[i], slow[i]; a.ID != b.ID || a.Name != b.Name || a.Account != b.Account || a.Shape != b.Shape ||
			a.IgnoredAccounts != b.IgnoredAccounts {
			t.Fatalf("event %d: %+v in place, %+v decoded", i, a, b)
		}
	}
	return slow
}

// AWS Health sends two detail-types, and the China partition names them
// after Amazon: the source and the event type code decide, whatever the
// detail-type says.
func TestHealthWhateverTheDetailType(t *testing.T) {
	for _, c := range []struct {
		fixture, detailType, code, key, account, region string
	}{
		{"abuse_event_detail_type", "AWS Health Abuse Event", "AWS_RISK_CREDENTIALS_EXPOSED", "AKIAEXAMPLEABUSE0001", "111122223333", "us-east-1"},
		{"china_amazon_health_event", "Amazon Health Event", "AWS_RISK_CREDENTIALS_EXPOSED", "AKIAEXAMPLECHINA0001", "222233334444", "cn-north-1"},
		{"china_amazon_health_abuse_event", "Amazon Health Abuse Event", "AWS_RISK_CREDENTIALS_COMPROMISED", "AKIAEXAMPLECHINA0002", "222233334444", "cn-northwest-1"},
	} {
		body := corpus.Fixture(t, health, "positive", c.fixture)
		if body["detail-type"] != c.detailType {
			t.Fatalf("%s: detail-type %v", c.fixture, body["detail-type"])
		}
		evs := eventsOf(t, body)
		if len(evs) != 1 {
			t.Fatalf("%s: %d events", c.fixture, len(evs))
		}
		e := evs[0]
		if e.Shape != cloudtrail.ShapeHealth || e.Exposure == nil || e.Exposure.Code != c.code || len(e.Exposure.Keys) != 1 ||
			e.Exposure.Keys[0] != c.key || e.Account != c.account || e.Region != c.region || e.ID != body["id"] {
			t.Errorf("%s: read as %+v (exposure %+v)", c.fixture, e, e.Exposure)
		}
	}
	// The source decides: the same event from another source is no notice.
	body := corpus.Fixture(t, health, "negative", "abuse_detail_type_not_from_aws_health")
	for _, e := range eventsOf(t, body) {
		if e.Exposure != nil {
			t.Errorf("a %v event read as AWS Health", body["source"])
		}
	}
}

// An SNS HTTP(S) subscription posts the notice as a JSON string in
// Message; a Lambda subscriber gets it in Records[].Sns.Message. Both are
// read as the notice inside, with its own id, whatever case the envelope's
// keys are in.
func TestSNSEnvelopes(t *testing.T) {
	for _, c := range []struct{ fixture, id, key string }{
		{"sns_http_notification", "5d1e2f3a-0000-4000-8000-000000000024", "AKIAEXAMPLESNSHTTP01"},
		{"sns_lambda_records", "5d1e2f3a-0000-4000-8000-000000000025", "AKIAEXAMPLESNSLMBD01"},
	} {
		body := corpus.Fixture(t, health, "positive", c.fixture)
		for _, form := range []struct {
			name string
			body map[string]any
			keys []string
		}{
			{"as sent", body, nil},
			{"keys lower-cased", lowerKeys(body, 0), nil},
			// The envelope is read whatever Event_Key says.
			{"no event keys", body, []string{"log"}},
		} {
			evs := eventsOf(t, form.body, form.keys...)
			if len(evs) != 1 || evs[0].ID != c.id || evs[0].Shape != cloudtrail.ShapeHealth || evs[0].Exposure.Keys[0] != c.key {
				t.Errorf("%s %s: %d events %+v", c.fixture, form.name, len(evs), evs)
			}
		}
	}
	// Not a notification, or a message that is no JSON: no event.
	for _, body := range []map[string]any{
		corpus.Fixture(t, health, "negative", "sns_subscription_confirmation"),
		{"Type": "Notification", "Message": "AWS_RISK_CREDENTIALS_EXPOSED for AKIAEXAMPLEEXPOSED01"},
		{"Type": "Notice", "Message": `{"eventName": "x"}`, "TopicArn": "arn:aws:sns:us-east-1:111122223333:t"},
	} {
		if evs := eventsOf(t, body, "log"); len(evs) != 0 {
			t.Errorf("%v: %d events", body, len(evs))
		}
	}
	// One JSON string deep, as for Event_Key: an envelope serialised
	// under an event key is not opened a second time.
	env := corpus.Fixture(t, health, "positive", "sns_http_notification")
	if evs := eventsOf(t, map[string]any{"log": string(value.ToJSON(env))}); len(evs) != 0 {
		t.Errorf("an SNS envelope inside a JSON string gave %d events", len(evs))
	}
}

func lowerKeys(v any, depth int) map[string]any {
	out := map[string]any{}
	for k, e := range v.(map[string]any) {
		if m, ok := e.(map[string]any); ok && depth < 4 {
			e = lowerKeys(m, depth+1)
		}
		if a, ok := e.([]any); ok {
			var b []any
			for _, x := range a {
				if m, ok := x.(map[string]any); ok {
					x = lowerKeys(m, depth+1)
				}
				b = append(b, x)
			}
			e = b
		}
		out[strings.ToLower(k)] = e
	}
	return out
}

// Event_Key is matched regardless of case, as Fluent Bit's keys are; a
// key of the exact case wins over one that only folds to it.
func TestEventKeyIsCaseInsensitive(t *testing.T) {
	ev := corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
	js := string(value.ToJSON(ev))
	for _, body := range []map[string]any{{"Message": js}, {"MESSAGE": js}, {"LOG": js, "stream": "stdout"}} {
		if evs := eventsOf(t, body); len(evs) != 1 || evs[0].ID != ev["eventID"] {
			t.Errorf("%v: %d events", body, len(evs))
		}
	}
	other := map[string]any{"eventName": "GetObject", "eventID": "other"}
	body := map[string]any{"message": js, "Message": string(value.ToJSON(other)), "MESSAGE": "not json"}
	if evs := eventsOf(t, body); len(evs) != 1 || evs[0].ID != ev["eventID"] {
		t.Errorf("the exact key did not win: %+v", evs)
	}
	// Among keys that only fold to it, the least in byte order, whatever
	// the map's order.
	body = map[string]any{"Message": js, "mESSAGE": string(value.ToJSON(other))}
	for range 20 {
		if evs := eventsOf(t, body); len(evs) != 1 || evs[0].ID != ev["eventID"] {
			t.Fatalf("folded keys chosen by map order: %+v", evs)
		}
	}
}

// An account id is 12 digits: anything else in an account field is
// passed over for the envelope's account, and counted.
func TestAccountFieldsMustBeAccountIDs(t *testing.T) {
	body := corpus.Fixture(t, health, "positive", "affected_account_holds_the_key")
	if d := body["detail"].(map[string]any); d["affectedAccount"] != "AKIAEXAMPLEAFFECTED1" {
		t.Fatalf("fixture changed: affectedAccount %v", d["affectedAccount"])
	}
	evs := eventsOf(t, body)
	if len(evs) != 1 || evs[0].Account != "333344445555" || evs[0].IgnoredAccounts != 1 {
		t.Fatalf("read as %+v", evs)
	}
	body["account"] = "12345678901" // eleven digits
	if evs := eventsOf(t, body); evs[0].Account != "" || evs[0].IgnoredAccounts != 2 {
		t.Fatalf("two bad account fields read as %q, %d ignored", evs[0].Account, evs[0].IgnoredAccounts)
	}
	body["detail"].(map[string]any)["affectedAccount"] = "444455556666"
	if evs := eventsOf(t, body); evs[0].Account != "444455556666" || evs[0].IgnoredAccounts != 0 {
		t.Fatalf("a good affectedAccount read as %q, %d ignored", evs[0].Account, evs[0].IgnoredAccounts)
	}
	for s, want := range map[string]bool{"111122223333": true, "011122223333": true, "11112222333": false, "1111222233334": false,
		"11112222333a": false, "AKIAEXAMPLEAFFECTED1": false, "": false, "１１１１２２２２３３３３": false} {
		if cloudtrail.IsAccountID(s) != want {
			t.Errorf("IsAccountID(%q) = %v", s, !want)
		}
	}
}

// IAM's newer access-denied messages end with an authorization id for
// GetRequestAuthorizationDetails; only letters and digits are taken.
func TestAuthorizationID(t *testing.T) {
	ev := corpus.Fixture(t, "aws.iam.quarantine_denied_call", "positive", "iam_access_troubleshooter_text_after_the_arn")
	e := eventsOf(t, ev)[0]
	if got := e.AuthorizationID(); got != "example0a1b2c3d4e5f6g7h" {
		t.Fatalf("authorization id %q", got)
	}
	const prefix = "... policy: arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3. Go to https://x for complete details, or call the GetRequestAuthorizationDetails API with the following authorization id: "
	for msg, want := range map[string]string{
		prefix + "EXAMPLE1a2b3c4d5e6f7g8h9i0j":         "EXAMPLE1a2b3c4d5e6f7g8h9i0j",
		prefix + "abc123.":                             "abc123",
		prefix + "abc123; rm -rf /":                    "abc123",
		prefix + "$(reboot)":                           "",
		prefix:                                         "",
		prefix + strings.Repeat("a", 129):              "",
		"User: x is not authorized to perform: s3:Get": "",
	} {
		e := &cloudtrail.Event{ErrorMessage: msg}
		if got := e.AuthorizationID(); got != want {
			t.Errorf("%q: %q, want %q", msg[min(len(msg), len(prefix)):], got, want)
		}
	}
}

// A record whose first eventName is missing or null is no event to the
// map path, whatever follows; read in place it is looked at in the same
// walk that reads the event, and must come out the same: as a log
// file's record, and as an EventBridge detail.
func TestNullOrMissingEventName(t *testing.T) {
	r := cloudtrail.Resolver{EventKeys: []string{"log"}}
	for _, rec := range []map[string]any{
		{"eventName": nil, "eventID": "a", "eventSource": "iam.amazonaws.com"},
		{"eventID": "b", "eventSource": "iam.amazonaws.com"},
		{"eventName": "GetUser", "eventID": "c"},
		{"eventName": "", "eventID": "d"},
	} {
		var fast, slow []*cloudtrail.Event
		if _, err := r.ResolveRecordMsgpack(value.AppendMsgpack(nil, rec), func(e *cloudtrail.Event) { fast = append(fast, e) }); err != nil {
			t.Fatal(err)
		}
		r.ResolveRecord(rec, func(e *cloudtrail.Event) { slow = append(slow, e) })
		if len(fast) != len(slow) || len(fast) == 1 && fast[0].ID != slow[0].ID {
			t.Errorf("record %v: %d events in place, %d decoded", rec, len(fast), len(slow))
		}
		want := 0
		if rec["eventName"] != nil {
			want = 1
		}
		if got := eventsOf(t, map[string]any{"source": "aws.iam", "detail-type": "AWS API Call via CloudTrail", "detail": rec}); len(got) != want {
			t.Errorf("detail %v: %d events, want %d", rec, len(got), want)
		}
	}
	// Duplicate keys: the first decides, as in the map path.
	dup := msgp.AppendMapHeader(nil, 3)
	dup = msgp.AppendString(dup, "eventName")
	dup = msgp.AppendNil(dup)
	dup = msgp.AppendString(dup, "eventName")
	dup = msgp.AppendString(dup, "GetUser")
	dup = msgp.AppendString(dup, "eventID")
	dup = msgp.AppendString(dup, "e")
	if n, err := r.ResolveRecordMsgpack(dup, func(*cloudtrail.Event) {}); n != 0 || err != nil {
		t.Errorf("a null first eventName then a name: %d events, %v", n, err)
	}
}
