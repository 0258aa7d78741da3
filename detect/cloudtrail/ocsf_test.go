package cloudtrail_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfmap"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

var ruleIDs = []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_attempt_failed", "aws.iam.quarantine_removed"}

// resolveOne returns the single event in body, read the way the detector
// reads it: from msgpack when fromMsgpack, else from the decoded map.
func resolveOne(t testing.TB, body map[string]any, fromMsgpack bool) *cloudtrail.Event {
	t.Helper()
	var got []*cloudtrail.Event
	r := cloudtrail.Resolver{EventKeys: []string{"log", "message"}}
	if fromMsgpack {
		b := value.AppendMsgpack(nil, body)
		if _, _, err := r.ResolveMsgpack(b, func(e *cloudtrail.Event) { got = append(got, e) }); err != nil {
			t.Fatal(err)
		}
	} else {
		r.Resolve(body, func(e *cloudtrail.Event) { got = append(got, e) })
	}
	if len(got) != 1 {
		t.Fatalf("%d events, want 1", len(got))
	}
	return got[0]
}

func verdicts(e *cloudtrail.Event) []string {
	var out []string
	for _, r := range rules.Stateless() {
		if f, ok := r.Match(e); ok {
			out = append(out, r.ID+" "+f.Policy.Name+" "+f.Target.Type+":"+f.Target.Name)
		}
	}
	return out
}

type ocsfForm struct {
	name    string
	convert func(map[string]any) (map[string]any, error)
}

var ocsfForms = []ocsfForm{{"v2", ocsfmap.SecurityLakeV2}, {"v1", ocsfmap.SecurityLakeV1}}

// sameEvent compares what the rules and the alert read from an event in
// its CloudTrail form and in an OCSF form of it.
func sameEvent(t *testing.T, ct, oc *cloudtrail.Event, form string) {
	t.Helper()
	type fields struct {
		Name, Source, ErrorCode, ErrorMessage, ID, Region, Account, SourceIP, UserAgent string
		Actor                                                                           cloudtrail.Actor
	}
	a := fields{ct.Name, ct.Source, ct.ErrorCode, ct.ErrorMessage, ct.ID, ct.Region, ct.Account, ct.SourceIP, ct.UserAgent, ct.Actor}
	b := fields{oc.Name, oc.Source, oc.ErrorCode, oc.ErrorMessage, oc.ID, oc.Region, oc.Account, oc.SourceIP, oc.UserAgent, oc.Actor}
	if a.ErrorCode == "" && b.ErrorCode == "failure" && consoleLoginFailed(ct) {
		// Authentication takes status from responseElements.ConsoleLogin;
		// a failed sign-in has no errorCode, and the OCSF reader counts the
		// Failure status as a failed call.
		b.ErrorCode = ""
	}
	if a != b {
		t.Errorf("%s: fields differ\ncloudtrail %+v\nocsf       %+v", form, a, b)
	}
	if oc.Shape != cloudtrail.ShapeOCSF {
		t.Errorf("%s: shape %q", form, oc.Shape)
	}
	t1, err1 := time.Parse(time.RFC3339Nano, ct.Time)
	t2, err2 := time.Parse(time.RFC3339Nano, oc.Time)
	if err1 != nil || err2 != nil || !t1.Equal(t2) {
		t.Errorf("%s: time %q vs %q", form, ct.Time, oc.Time)
	}
	if form == "v2" {
		// 1.1.0 keeps the whole requestParameters as JSON.
		if len(ct.Params) != 0 || len(oc.Params) != 0 {
			if !reflect.DeepEqual(ct.Params, oc.Params) {
				t.Errorf("v2: params %v vs %v", ct.Params, oc.Params)
			}
		}
	} else {
		// rc.2 flattens them into unmapped as text (dotted keys below the
		// first level): the same text must come back.
		a, b := flatParams(ct.Params), flatParams(oc.Params)
		if ocsfmap.Class(ct.Name) == ocsfmap.Authentication {
			// rc.2's Authentication moves these to user.uuid and user.name,
			// out of unmapped; no rule reads them.
			delete(a, "roleArn")
			delete(a, "roleSessionName")
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("v1: params\n%v\n%v", a, b)
		}
	}
	if v1, v2 := verdicts(ct), verdicts(oc); !slices.Equal(v1, v2) {
		t.Errorf("%s: verdicts %v vs %v", form, v1, v2)
	}
}

// flatParams writes parameters the way Security Lake v1 keeps them: one
// text value per dotted path, arrays as JSON, nulls and empty objects left out.
func flatParams(p map[string]any) map[string]string {
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case nil:
		case map[string]any:
			for k, x := range v {
				walk(prefix+"."+k, x)
			}
		case []any:
			if len(v) > 0 {
				b := value.ToJSON(v)
				out[prefix[1:]] = string(b)
			}
		case string:
			out[prefix[1:]] = v
		default:
			b := value.ToJSON(v)
			out[prefix[1:]] = string(b)
		}
	}
	walk("", p)
	return out
}

func consoleLoginFailed(e *cloudtrail.Event) bool {
	m, _ := e.Raw.(map[string]any)
	re, _ := m["responseElements"].(map[string]any)
	return re["ConsoleLogin"] == "Failure"
}

// Differential check: each rule example, and each event of the shared
// Panther corpus that is a CloudTrail event, reads the same in its
// CloudTrail form and in both Security Lake forms, through the map path
// and the msgpack path the detector takes.
func TestOCSFFormsReadLikeCloudTrail(t *testing.T) {
	type example struct {
		name string
		ev   map[string]any
	}
	var exs []example
	for _, rule := range ruleIDs {
		for _, kind := range []string{"positive", "negative"} {
			files, _ := filepath.Glob(paths.Repo("test", "fixtures", "rules", rule, kind, "*.json"))
			for _, f := range files {
				exs = append(exs, example{rule + "/" + kind + "/" + filepath.Base(f), corpus.JSONFile(t, f)})
			}
		}
	}
	fixtures := len(exs)
	for i, ev := range corpus.Panther(t) {
		exs = append(exs, example{"corpus line " + strconv.Itoa(i+1), ev.(map[string]any)})
	}
	compared, notEvents := 0, 0
	for _, ex := range exs {
		t.Run(ex.name, func(t *testing.T) {
			for _, f := range ocsfForms {
				rec, err := f.convert(ex.ev)
				if errors.Is(err, ocsfmap.ErrNotEvent) {
					// Panther's corpus has events without eventTime, with
					// its own time format, or with lower-cased keys:
					// nothing Security Lake would have mapped.
					notEvents++
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				ct := resolveOne(t, ex.ev, false)
				for _, viaMsgpack := range []bool{false, true} {
					sameEvent(t, ct, resolveOne(t, rec, viaMsgpack), f.name)
				}
				compared++
			}
		})
	}
	// Every fixture converts, and so do two thirds of the corpus (a line
	// without eventName or an RFC 3339 eventTime is counted once).
	if compared < 2*fixtures+2*300 {
		t.Fatalf("compared only %d forms (%d not events)", compared, notEvents)
	}
	t.Logf("%d OCSF forms compared, %d corpus lines are not mappable events", compared, notEvents)
}

// Records of the OCSF shape that are not Security Lake's exact output:
// dotted keys, request data as an object, the failure only in status,
// rc.2's names, numbers where strings belong, the record as JSON under log.
func TestOCSFVariants(t *testing.T) {
	arn := "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3"
	cases := []struct {
		name string
		body map[string]any
		want cloudtrail.Event
	}{
		{
			"dotted keys, request data as an object, failure only in status_id",
			map[string]any{
				"api.operation": "AttachUserPolicy", "api.service.name": "iam.amazonaws.com",
				"api.request.data": map[string]any{"userName": "bob", "policyArn": arn},
				"status_id":        int64(2), "metadata.uid": "id-1", "time": float64(1795162542000),
				"cloud.account.uid": "111122223333", "src_endpoint.domain": "AWS Internal",
			},
			cloudtrail.Event{Name: "AttachUserPolicy", Source: "iam.amazonaws.com", ErrorCode: "failure", ID: "id-1",
				Time: "2026-11-20T08:15:42Z", Account: "111122223333", SourceIP: "AWS Internal",
				Params: map[string]any{"userName": "bob", "policyArn": arn}},
		},
		{
			"rc.2 names, requestParameters as a JSON string in unmapped, status Failed",
			map[string]any{
				"api": map[string]any{"operation": "AttachRolePolicy", "response": map[string]any{"error_message": "denied"}},
				"actor": map[string]any{"user": map[string]any{"uid": "AROAX:quarantine", "uuid": "arn:aws:sts::1:assumed-role/x/y",
					"account_uid": int64(111122223333)}},
				"cloud":    map[string]any{"account_uid": "444455556666"},
				"status":   "failed",
				"user":     map[string]any{"name": "app-role"},
				"unmapped": map[string]any{"requestParameters": `{"policyArn":"` + arn + `"}`},
			},
			cloudtrail.Event{Name: "AttachRolePolicy", ErrorCode: "failure", ErrorMessage: "denied", Account: "444455556666",
				Actor:  cloudtrail.Actor{ARN: "arn:aws:sts::1:assumed-role/x/y", AccountID: "111122223333"},
				Params: map[string]any{"policyArn": arn, "roleName": "app-role"}},
		},
		{
			"flattened parameters win over user.name; account from the actor",
			map[string]any{
				"api":      map[string]any{"operation": "DetachUserPolicy", "response": map[string]any{"error": "AccessDenied", "message": "no"}},
				"actor":    map[string]any{"user": map[string]any{"uid": "AIDAX", "account": map[string]any{"uid": "111122223333"}}},
				"user":     map[string]any{"name": "target"},
				"unmapped": map[string]any{"requestParameters.userName": "from-unmapped", "requestParameters.policyArn": arn, "requestParameters.": "x"},
				"time_dt":  "2026-11-20T08:15:42.000Z",
			},
			cloudtrail.Event{Name: "DetachUserPolicy", ErrorCode: "AccessDenied", ErrorMessage: "no", Account: "111122223333",
				Time: "2026-11-20T08:15:42.000Z", Actor: cloudtrail.Actor{AccountID: "111122223333"},
				Params: map[string]any{"userName": "from-unmapped", "policyArn": arn}},
		},
		{
			"no request parameters anywhere",
			map[string]any{"api": map[string]any{"operation": "PutUserPolicy"}, "time": int64(-5)},
			cloudtrail.Event{Name: "PutUserPolicy"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := value.ToJSON(c.body)
			for _, viaMsgpack := range []bool{false, true} {
				e := resolveOne(t, c.body, viaMsgpack)
				if e.Shape != cloudtrail.ShapeOCSF || e.Raw == nil {
					t.Fatalf("shape %q, raw %v", e.Shape, e.Raw != nil)
				}
				got := *e
				got.Raw, got.Shape = nil, ""
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("msgpack %v:\ngot  %+v\nwant %+v", viaMsgpack, got, c.want)
				}
			}
			if after := value.ToJSON(c.body); string(after) != string(before) {
				t.Errorf("reading changed the record:\n%s\n%s", before, after)
			}
		})
	}
	// The record serialised to JSON under log, as tail without a parser gives it.
	js := value.ToJSON(cases[0].body)
	e := resolveOne(t, map[string]any{"log": string(js)}, true)
	if e.Shape != cloudtrail.ShapeOCSF || e.Name != "AttachUserPolicy" || e.Param("policyArn") != arn {
		t.Errorf("OCSF under log: %+v", e)
	}
	// An empty operation is not an OCSF record, as an empty event.action is not ECS.
	var n int
	(&cloudtrail.Resolver{}).Resolve(map[string]any{"api": map[string]any{"operation": ""}}, func(*cloudtrail.Event) { n++ })
	if n != 0 {
		t.Error("an empty api.operation was read as an event")
	}
}

// Every quarantine event keeps a needle in both OCSF forms, in JSON and in
// msgpack, so the raw-byte prefilter still makes it a candidate.
func TestOCSFFormsKeepTheNeedles(t *testing.T) {
	n := 0
	for _, rule := range ruleIDs {
		for _, ev := range corpus.Fixtures(t, rule, "positive") {
			for _, f := range ocsfForms {
				rec, err := f.convert(ev)
				if err != nil {
					t.Fatal(err)
				}
				js := value.ToJSON(rec)
				mp := value.AppendMsgpack(nil, rec)
				for _, b := range [][]byte{js, mp} {
					if !hasNeedle(b) {
						t.Errorf("%s %v %s: no needle in %s", rule, ev["eventID"], f.name, js)
					}
				}
				n++
			}
		}
	}
	if n < 2*17 {
		t.Fatalf("checked %d forms", n)
	}
}

func hasNeedle(b []byte) bool {
	return slices.ContainsFunc(detect.Needles, func(n []byte) bool { return bytes.Contains(b, n) })
}

// FuzzResolveOCSF: any JSON text, once a record, never panics the resolver;
// and when the map path reads an OCSF record, the msgpack path the detector
// takes reads the same event and the same verdicts.
func FuzzResolveOCSF(f *testing.F) {
	for _, rule := range ruleIDs {
		for _, kind := range []string{"positive", "negative"} {
			for _, ev := range corpus.Fixtures(f, rule, kind) {
				for _, form := range ocsfForms {
					rec, err := form.convert(ev)
					if err != nil {
						f.Fatal(err)
					}
					js := value.ToJSON(rec)
					f.Add(string(js))
				}
			}
		}
	}
	public, _ := filepath.Glob(paths.Corpus("quarantine_rule_tests", "*OCSF*.json"))
	for _, p := range public {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(`{"api.operation":"AttachUserPolicy","api.request.data":"{userName=a, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}","status_id":2}`)
	f.Add(`{"api":{"operation":"PutUserPolicy"},"unmapped":{"requestParameters":{"policyName":"AWSExposedCredentialPolicy_DO_NOT_REMOVE"}},"user":{"name":"u"},"time":1e300}`)
	r := cloudtrail.Resolver{EventKeys: []string{"log"}}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := value.FromJSON([]byte(s))
		body, ok := v.(map[string]any)
		if err != nil || !ok {
			return
		}
		var viaMap []*cloudtrail.Event
		r.Resolve(body, func(e *cloudtrail.Event) { viaMap = append(viaMap, e) })
		if len(viaMap) != 1 || viaMap[0].Shape != cloudtrail.ShapeOCSF {
			return
		}
		b := value.AppendMsgpack(nil, body)
		var viaMsgpack []*cloudtrail.Event
		if _, _, err := r.ResolveMsgpack(b, func(e *cloudtrail.Event) { viaMsgpack = append(viaMsgpack, e) }); err != nil {
			// Too deep for the decoder, say: the detector counts it as
			// undecodable, which is the map path's answer too once decoded.
			return
		}
		if len(viaMsgpack) != 1 {
			t.Fatalf("msgpack path found %d events in %s", len(viaMsgpack), s)
		}
		a, c := viaMap[0], viaMsgpack[0]
		if a.Name != c.Name || a.ID != c.ID || a.ErrorCode != c.ErrorCode || a.Account != c.Account || a.Actor != c.Actor ||
			a.Time != c.Time || c.Raw == nil || !slices.Equal(verdicts(a), verdicts(c)) {
			t.Fatalf("map and msgpack paths differ on %s:\n%+v\n%+v", s, a, c)
		}
	})
}

// BenchmarkResolveMsgpack: what one candidate costs, a plain CloudTrail
// event (read in place) against its Security Lake records (decoded into
// maps, since OCSF never takes the zero-copy view).
func BenchmarkResolveMsgpack(b *testing.B) {
	ev := corpus.Fixture(b, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
	bodies := map[string]map[string]any{"cloudtrail": ev}
	for _, f := range ocsfForms {
		rec, err := f.convert(ev)
		if err != nil {
			b.Fatal(err)
		}
		bodies["ocsf-"+f.name] = rec
	}
	for _, name := range []string{"cloudtrail", "ocsf-v2", "ocsf-v1"} {
		msg := value.AppendMsgpack(nil, bodies[name])
		b.Run(name, func(b *testing.B) {
			r := cloudtrail.Resolver{}
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				n, _, err := r.ResolveMsgpack(msg, func(e *cloudtrail.Event) {
					if e.Param("policyArn") == "" {
						b.Fatal("no policyArn")
					}
				})
				if n != 1 || err != nil {
					b.Fatal(n, err)
				}
			}
		})
	}
}
