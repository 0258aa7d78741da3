package detect_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

func applied(t testing.TB) map[string]any {
	return corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
}

func scan(t testing.TB, chunk []byte, keys ...string) ([]detect.Finding, detect.Stats) {
	t.Helper()
	if len(keys) == 0 {
		keys = []string{"log", "message"}
	}
	d := detect.New(detect.Options{EventKeys: keys})
	obs, st := d.Scan(chunk, nil, nil)
	return detect.Findings(obs), st
}

func rulesOf(as []detect.Finding) []string {
	var ids []string
	for _, a := range as {
		ids = append(ids, a.Rule.ID)
	}
	return ids
}

func TestEveryShapeYieldsTheEvent(t *testing.T) {
	ev := applied(t)
	js := value.ToJSON(ev)
	noise := map[string]any{"eventName": "GetObject", "eventSource": "s3.amazonaws.com"}
	ecsNested := map[string]any{
		"@timestamp": "2026-11-20T08:15:42Z",
		"event":      map[string]any{"action": "AttachUserPolicy", "outcome": "success", "provider": "iam.amazonaws.com", "id": "ecs-1"},
		"aws": map[string]any{"cloudtrail": map[string]any{
			"request_parameters": "{userName=ci-deployer, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}",
			"user_identity":      map[string]any{"type": "AssumedRole", "access_key_id": "ASIAX"},
		}},
		"user":   map[string]any{"name": "quarantine"},
		"cloud":  map[string]any{"account": map[string]any{"id": "111122223333"}, "region": "us-east-1"},
		"source": map[string]any{"ip": "AWS Internal"},
	}
	ecsFlat := map[string]any{
		"@timestamp": "2026-11-20T08:15:42Z", "event.action": "AttachUserPolicy", "event.outcome": "success", "event.id": "ecs-2",
		"aws.cloudtrail.request_parameters": "{userName=ci-deployer, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3}",
		"user.name":                         "quarantine", "cloud.account.id": "111122223333", "cloud.region": "eu-west-1", "source.ip": "AWS Internal",
	}
	lower := map[string]any{}
	for k, v := range ev {
		lower[strings.ToLower(k)] = v
	}
	cases := []struct {
		name  string
		body  any
		shape string
		n     int
	}{
		{"plain", ev, "event", 1},
		{"log file", map[string]any{"Records": []any{noise, ev, noise, ev}}, "log_file", 2},
		{"eventbridge", map[string]any{"detail-type": "AWS API Call via CloudTrail", "source": "aws.iam", "detail": ev}, "eventbridge", 1},
		{"json under log", map[string]any{"log": string(js), "stream": "stdout"}, "event", 1},
		{"json under message", map[string]any{"message": string(js)}, "event", 1},
		{"log file as json string", map[string]any{"log": `{"Records":[` + string(js) + `]}`}, "log_file", 1},
		{"ecs nested", ecsNested, "ecs", 1},
		{"ecs flattened keys", ecsFlat, "ecs", 1},
		{"lower-case keys", lower, "event", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chunk := fbchunk.AppendV2(nil, t0, nil, noise)
			chunk = fbchunk.AppendV2(chunk, t0, nil, c.body)
			chunk = fbchunk.AppendV2(chunk, t0, nil, noise)
			alerts, st := scan(t, chunk)
			if len(alerts) != c.n {
				t.Fatalf("want %d alerts, got %d (%+v)", c.n, len(alerts), st)
			}
			for _, a := range alerts {
				if a.Rule.ID != "aws.iam.quarantine_applied" || string(a.Event.Shape) != c.shape || a.Match.Target.Name != "ci-deployer" {
					t.Fatalf("bad alert %+v", a)
				}
			}
			if st.Records != 3 || st.Candidates != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestECSFailureOutcomeIsAFailedAttempt(t *testing.T) {
	body := map[string]any{
		"event.action": "AttachUserPolicy", "event.outcome": "failure", "event.id": "e-1",
		"aws.cloudtrail.request_parameters": "{userName=bob, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}",
	}
	alerts, _ := scan(t, fbchunk.AppendV2(nil, t0, nil, body))
	if !slices.Equal(rulesOf(alerts), []string{"aws.iam.quarantine_attempt_failed"}) {
		t.Fatalf("got %v", rulesOf(alerts))
	}
}

func TestEventKeysAreConfigurable(t *testing.T) {
	js := value.ToJSON(applied(t))
	chunk := fbchunk.AppendV2(nil, t0, nil, map[string]any{"payload": string(js)})
	if alerts, _ := scan(t, chunk); len(alerts) != 0 {
		t.Fatal("payload is not a default event key")
	}
	if alerts, _ := scan(t, chunk, "payload"); len(alerts) != 1 {
		t.Fatal("payload configured as event key: want 1 alert")
	}
}

func TestNotJSONTextIsNoEvent(t *testing.T) {
	chunk := fbchunk.AppendV2(nil, t0, nil, map[string]any{"log": "AWSCompromisedKeyQuarantineV2 was mentioned in a chat"})
	chunk = fbchunk.AppendV2(chunk, t0, nil, map[string]any{"log": `{"eventName": "AttachUserPolicy", "policyArn": "AWSCompromisedKeyQuarantineV2"`})
	alerts, st := scan(t, chunk)
	if len(alerts) != 0 || st.Candidates != 2 || st.Events != 0 {
		t.Fatalf("alerts %v stats %+v", alerts, st)
	}
}

func TestRecordFormatsAndMarkers(t *testing.T) {
	ev := applied(t)
	var chunk []byte
	chunk = fbchunk.AppendGroupStart(chunk)
	chunk = fbchunk.AppendV2(chunk, t0, map[string]any{"otlp": map[string]any{}}, ev)
	chunk = fbchunk.AppendGroupEnd(chunk)
	chunk = fbchunk.AppendLegacy(chunk, t0, ev)
	chunk = fbchunk.AppendLegacy(chunk, int64(t0.Unix()), ev)
	chunk = fbchunk.AppendLegacy(chunk, float64(t0.Unix())+0.5, ev)
	alerts, st := scan(t, chunk)
	if len(alerts) != 4 || st.Records != 4 || st.Skipped.Group != 2 {
		t.Fatalf("alerts %d stats %+v", len(alerts), st)
	}
}

func TestStringsAsBin(t *testing.T) {
	// Re-encode the event with every string as msgpack bin.
	var enc func(b []byte, v any) []byte
	enc = func(b []byte, v any) []byte {
		switch v := v.(type) {
		case map[string]any:
			b = msgp.AppendMapHeader(b, uint32(len(v)))
			for k, e := range v {
				b = enc(msgp.AppendBytes(b, []byte(k)), e)
			}
			return b
		case string:
			return msgp.AppendBytes(b, []byte(v))
		}
		b = value.AppendMsgpack(b, v)
		return b
	}
	chunk := msgp.AppendArrayHeader(nil, 2)
	chunk = fbchunk.AppendEventTime(chunk, t0)
	chunk = enc(chunk, applied(t))
	alerts, _ := scan(t, chunk)
	if len(alerts) != 1 || alerts[0].Match.Policy.Name != "AWSCompromisedKeyQuarantineV2" {
		t.Fatalf("got %+v", alerts)
	}
}

func TestMalformedRecordsAreSkippedAndCounted(t *testing.T) {
	ev := applied(t)
	var chunk []byte
	chunk = fbchunk.AppendV2(chunk, t0, nil, ev)
	chunk = msgp.AppendString(chunk, "not a record")                                 // not an array
	chunk = fbchunk.AppendLegacy(chunk, int64(1), "body is a string")                // not a map
	chunk = append(msgp.AppendArrayHeader(chunk, 2), msgp.AppendString(nil, "x")...) // bad time
	chunk = msgp.AppendMapHeader(chunk, 0)
	chunk = msgp.AppendArrayHeader(chunk, 3) // wrong arity
	chunk = msgp.AppendNil(chunk)
	chunk = msgp.AppendNil(chunk)
	chunk = msgp.AppendNil(chunk)
	chunk = fbchunk.AppendV2(chunk, t0, nil, ev)
	chunk = fbchunk.AppendV2(chunk, t0, nil, ev)
	chunk = chunk[:len(chunk)-5] // truncated last record
	alerts, st := scan(t, chunk)
	if len(alerts) != 2 || st.Records != 2 {
		t.Fatalf("alerts %d stats %+v", len(alerts), st)
	}
	if st.Skipped.Malformed != 3 || st.Skipped.NotMap != 1 || st.Skipped.Truncated != 1 {
		t.Fatalf("skipped %+v", st.Skipped)
	}
}

// The false-positive test: of the 475 corpus events exactly lines 182 and
// 225 are quarantines.
func TestCorpusFalsePositives(t *testing.T) {
	events := corpus.Panther(t)
	var firing []int
	d := detect.New(detect.Options{EventKeys: []string{"log", "message"}})
	for i, ev := range events {
		obs, st := d.Scan(fbchunk.AppendV2(nil, t0, nil, ev), nil, nil)
		alerts := detect.Findings(obs)
		if st.Records != 1 {
			t.Fatalf("line %d: %+v", i+1, st)
		}
		for _, a := range alerts {
			if a.Rule.ID != "aws.iam.quarantine_applied" {
				t.Errorf("line %d fired %s", i+1, a.Rule.ID)
			}
			firing = append(firing, i+1)
		}
	}
	if !slices.Equal(firing, []int{182, 225}) {
		t.Fatalf("alerting lines %v, want [182 225]", firing)
	}
	// The whole corpus as one chunk gives the same two.
	obs, st := d.Scan(fbchunk.FromValues(t0, events), nil, nil)
	alerts := detect.Findings(obs)
	if len(alerts) != 2 || st.Records != 475 {
		t.Fatalf("one chunk: %d alerts, %+v", len(alerts), st)
	}
}

// A record that cannot be a quarantine event costs no allocation, in every
// shape and record format.
func TestNoAllocationsForNonCandidates(t *testing.T) {
	clean := map[string]any{"eventName": "GetObject", "eventSource": "s3.amazonaws.com",
		"requestParameters": map[string]any{"bucketName": "logs", "key": "a/b"}, "userIdentity": map[string]any{"type": "IAMUser"}}
	js := value.ToJSON(clean)
	var v2, legacy, logFile, jsonString []byte
	for range 50 {
		v2 = fbchunk.AppendV2(v2, t0, nil, clean)
		legacy = fbchunk.AppendLegacy(legacy, t0, clean)
		logFile = fbchunk.AppendV2(logFile, t0, nil, map[string]any{"Records": []any{clean, clean}})
		jsonString = fbchunk.AppendV2(jsonString, t0, nil, map[string]any{"log": string(js)})
	}
	d := detect.New(detect.Options{EventKeys: []string{"log", "message"}})
	for name, c := range map[string][]byte{"v2": v2, "legacy": legacy, "logfile": logFile, "jsonstring": jsonString} {
		if n := testing.AllocsPerRun(20, func() { d.Scan(c, nil, nil) }); n != 0 {
			t.Errorf("%s: %v allocations per chunk of 50 records", name, n)
		}
	}
}

// Duplicate keys resolve the same way on the fast path and the map path:
// the first wins.
func TestDuplicateKeysFirstWins(t *testing.T) {
	var c []byte
	c = msgp.AppendArrayHeader(c, 2)
	c = fbchunk.AppendEventTime(c, t0)
	c = msgp.AppendMapHeader(c, 4)
	c = msgp.AppendString(c, "eventName")
	c = msgp.AppendString(c, "AttachUserPolicy")
	c = msgp.AppendString(c, "eventName")
	c = msgp.AppendString(c, "GetUser")
	c = msgp.AppendString(c, "requestParameters")
	c = value.AppendMsgpack(c, map[string]any{"userName": "bob", "policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"})
	c = msgp.AppendString(c, "requestParameters")
	c = msgp.AppendNil(c)
	alerts, _ := scan(t, c)
	if len(alerts) != 1 || alerts[0].Event.Name != "AttachUserPolicy" || alerts[0].Match.Target.Name != "bob" {
		t.Fatalf("got %+v", alerts)
	}
}

// A Health notice and its backup copy (another Region, another envelope
// id) are one finding: the key is the notice's.
func TestHealthBackupCopyIsTheSameFinding(t *testing.T) {
	primary := corpus.Fixture(t, "aws.health.credentials_exposed", "positive", "exposed_key_in_entities")
	backup := corpus.Fixture(t, "aws.health.credentials_exposed", "positive", "exposed_key_in_entities")
	backup["id"], backup["region"] = "another-envelope-id", "us-west-2"
	fa, _ := scan(t, fbchunk.AppendV2(nil, t0, nil, primary))
	fb, _ := scan(t, fbchunk.AppendV2(nil, t0, nil, backup))
	if len(fa) != 1 || len(fb) != 1 || fa[0].Key != fb[0].Key || fa[0].Event.ID == fb[0].Event.ID {
		t.Fatalf("%+v\n%+v", fa, fb)
	}
}
