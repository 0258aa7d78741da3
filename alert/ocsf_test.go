package alert_test

import (
	"encoding/json"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfschema"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

var ocsfTables = sync.OnceValues(func() (*ocsfschema.Schema, error) {
	return ocsfschema.Load(paths.Repo("..", "shared", "ocsf"), alert.OCSFVersion)
})

// ocsfDoc encodes a in the ocsf format, checks the document against the
// OCSF tables, checks that the msgpack form says the same, and returns it
// decoded (numbers as float64, as the msgpack form decodes).
func ocsfDoc(t testing.TB, a *alert.Alert) map[string]any {
	t.Helper()
	schema, err := ocsfTables()
	if err != nil {
		t.Fatal(err)
	}
	js := a.AppendJSON(nil, alert.OCSF)
	rec, err := ocsfschema.Decode(js)
	if err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, js)
	}
	if r := schema.Check(rec); len(r.Problems) > 0 || len(r.Deprecated) > 0 {
		t.Errorf("%s: not valid OCSF %s:\n  %s\n%s", a.Key, alert.OCSFVersion, strings.Join(append(r.Problems, r.Deprecated...), "\n  "), js)
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	mp := a.AppendMsgpack(nil, alert.OCSF)
	if back := asJSON(t, mp); !reflect.DeepEqual(doc, back) {
		t.Errorf("%s: msgpack and JSON OCSF forms differ:\n%v\n%v", a.Key, doc, back)
	}
	return doc
}

// at walks a decoded document: keys, and ints for array indexes.
func at(doc any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := doc.(map[string]any)
			doc = m[k]
		case int:
			l, _ := doc.([]any)
			if k >= len(l) {
				return nil
			}
			doc = l[k]
		}
	}
	return doc
}

// Every rule's examples make Detection Findings that are valid OCSF and
// carry the alert's own values where the mapping puts them.
func TestOCSFAlerts(t *testing.T) {
	severity := map[string]float64{"high": 4, "critical": 5}
	checked := 0
	for _, rule := range []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_attempt_failed", "aws.iam.quarantine_removed"} {
		for _, ev := range corpus.Fixtures(t, rule, "positive") {
			alerts := alertsOf(t, fbchunk.AppendV2(nil, t0, nil, ev))
			if len(alerts) != 1 {
				t.Fatalf("%v: %d alerts", ev["eventID"], len(alerts))
			}
			a := &alerts[0]
			doc := ocsfDoc(t, a)
			want := map[string]any{
				"class_uid":          float64(2004),
				"metadata.version":   alert.OCSFVersion,
				"finding_info.uid":   a.Key,
				"finding_info.title": a.Title,
				"analytic.uid":       rule,
				"severity_id":        severity[a.Rule.Severity],
				"risk_score":         float64(a.Rule.RiskScore),
				"time":               float64(a.Time.UnixMilli()),
				"cloud.account.uid":  a.AccountID,
				"cloud.region":       a.Region,
				"api.operation":      a.EventName,
				"api.service.name":   a.EventSource,
				"actor.user.uid":     a.Actor.ARN,
				"actor.credential":   a.Actor.AccessKeyID,
				"related event":      a.EventID,
				"policy resource":    a.Policy.Name,
				"user_agent":         a.UserAgent,
			}
			ev0 := at(doc, "evidences", 0)
			got := map[string]any{
				"class_uid":          doc["class_uid"],
				"metadata.version":   at(doc, "metadata", "version"),
				"finding_info.uid":   at(doc, "finding_info", "uid"),
				"finding_info.title": at(doc, "finding_info", "title"),
				"analytic.uid":       at(doc, "finding_info", "analytic", "uid"),
				"severity_id":        doc["severity_id"],
				"risk_score":         doc["risk_score"],
				"time":               doc["time"],
				"cloud.account.uid":  at(doc, "cloud", "account", "uid"),
				"cloud.region":       at(doc, "cloud", "region"),
				"api.operation":      at(ev0, "api", "operation"),
				"api.service.name":   at(ev0, "api", "service", "name"),
				"actor.user.uid":     at(ev0, "actor", "user", "uid"),
				"actor.credential":   at(ev0, "actor", "user", "credential_uid"),
				"related event":      at(doc, "finding_info", "related_events", 0, "uid"),
				"policy resource":    at(doc, "resources", 1, "name"),
				"user_agent":         at(doc, "unmapped", "user_agent"),
			}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("%s: %s = %v, want %v", a.Key, k, got[k], w)
				}
			}
			if errCode := at(ev0, "api", "response", "error"); (errCode != nil) != (a.ErrorCode != "") || (errCode != nil && errCode != a.ErrorCode) {
				t.Errorf("%s: api.response.error %v for error code %q", a.Key, errCode, a.ErrorCode)
			}
			ip, svc := at(ev0, "src_endpoint", "ip"), at(ev0, "src_endpoint", "svc_name")
			if isIP := net.ParseIP(a.SourceIP) != nil; (isIP && ip != a.SourceIP) || (!isIP && svc != a.SourceIP) {
				t.Errorf("%s: source %q as ip %v, svc_name %v", a.Key, a.SourceIP, ip, svc)
			}
			var raw map[string]any
			if err := json.Unmarshal([]byte(doc["raw_data"].(string)), &raw); err != nil || !reflect.DeepEqual(raw, asJSONValue(t, ev)) {
				t.Errorf("%s: raw_data is not the event: %v", a.Key, err)
			}
			checked++
		}
	}
	if checked < 15 {
		t.Fatalf("checked only %d alerts", checked)
	}
}

// asJSONValue is v as encoding/json decodes its JSON form.
func asJSONValue(t *testing.T, v any) map[string]any {
	t.Helper()
	js := value.ToJSON(v)
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Managed and inline policies, users, groups and roles, sub-techniques:
// the parts of the mapping that depend on the example.
func TestOCSFMappingDetails(t *testing.T) {
	one := func(rule, name string) map[string]any {
		alerts := alertsOf(t, fbchunk.AppendV2(nil, t0, nil, corpus.Fixture(t, rule, "positive", name)))
		if len(alerts) != 1 {
			t.Fatalf("%s: %d alerts", name, len(alerts))
		}
		return ocsfDoc(t, &alerts[0])
	}
	legacy := one("aws.iam.quarantine_applied", "put_user_legacy_inline")
	if r := at(legacy, "resources").([]any); len(r) != 2 ||
		!reflect.DeepEqual(r[0], map[string]any{"type": "AWS::IAM::User", "name": "ci-deployer"}) ||
		!reflect.DeepEqual(r[1], map[string]any{"type": "AWS::IAM::UserPolicy", "name": "AWSExposedCredentialPolicy_DO_NOT_REMOVE", "version": "legacy"}) {
		t.Errorf("legacy resources %v", r)
	}
	group := one("aws.iam.quarantine_applied", "attach_group_v3")
	if typ, uid := at(group, "resources", 0, "type"), at(group, "resources", 1, "uid"); typ != "AWS::IAM::Group" || !strings.HasSuffix(uid.(string), ":policy/AWSCompromisedKeyQuarantineV3") {
		t.Errorf("group resources %v", at(group, "resources"))
	}
	attacks := at(legacy, "finding_info", "attacks").([]any)
	if len(attacks) != 2 || at(attacks[1], "technique", "uid") != "T1078" || at(attacks[1], "technique", "name") != "Valid Accounts" ||
		at(attacks[1], "sub_technique", "uid") != "T1078.004" || at(attacks[1], "sub_technique", "name") != "Cloud Accounts" ||
		at(attacks[0], "tactic", "uid") != "TA0006" || at(attacks[0], "sub_technique") != nil {
		t.Errorf("attacks %v", attacks)
	}
	if at(legacy, "evidences", 0, "actor", "user", "account", "uid") != "111122223333" {
		t.Errorf("actor account %v", at(legacy, "evidences", 0, "actor"))
	}
	failed := one("aws.iam.quarantine_attempt_failed", "attach_role_v3_no_such_entity")
	if at(failed, "evidences", 0, "src_endpoint") == nil || at(failed, "evidences", 0, "api", "response", "error_message") == nil {
		t.Errorf("failed attempt evidence %v", at(failed, "evidences"))
	}
}

// Whatever shape the event came in, and without the event, the document
// is valid OCSF: missing values drop out without breaking a constraint.
func TestOCSFEveryShape(t *testing.T) {
	ev := corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
	js := value.ToJSON(ev)
	chunk := fbchunk.AppendV2(nil, t0, nil, ev)
	chunk = fbchunk.AppendV2(chunk, t0, nil, map[string]any{"Records": []any{corpus.Fixtures(t, "aws.iam.quarantine_removed", "positive")[0]}})
	chunk = fbchunk.AppendV2(chunk, t0, nil, map[string]any{"detail-type": "AWS API Call via CloudTrail", "detail": corpus.Fixtures(t, "aws.iam.quarantine_attempt_failed", "positive")[0]})
	chunk = fbchunk.AppendLegacy(chunk, 1.5, map[string]any{"log": string(js)})
	// ECS with next to nothing: no actor, account, region, source, user agent or event id.
	chunk = fbchunk.AppendV2(chunk, t0, nil, map[string]any{"event.action": "AttachUserPolicy",
		"aws.cloudtrail.request_parameters": "{userName=a, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}"})
	obs, _ := detector.Scan(chunk, nil, nil)
	findings := detect.Findings(obs)
	if len(findings) != 5 {
		t.Fatalf("%d findings", len(findings))
	}
	shapes := map[string]bool{}
	for _, f := range findings {
		for _, include := range []bool{true, false} {
			a := alert.New(f, include)
			doc := ocsfDoc(t, &a)
			if _, ok := doc["raw_data"]; ok != include {
				t.Errorf("%s: raw_data present %v with Include_Event %v", a.Key, ok, include)
			}
			shapes[at(doc, "unmapped", "record_shape").(string)] = true
		}
	}
	if len(shapes) != 4 {
		t.Errorf("shapes %v", shapes)
	}
}

// FuzzOCSF: whatever a chunk holds, every alert of it is a valid OCSF
// document in both encodings.
func FuzzOCSF(f *testing.F) {
	ev := corpus.Fixture(f, "aws.iam.quarantine_removed", "positive", "detach_user_v2")
	js := value.ToJSON(ev)
	f.Add(fbchunk.AppendV2(nil, t0, nil, ev))
	f.Add(fbchunk.AppendLegacy(nil, 1.5, map[string]any{"message": string(js)}))
	f.Add(fbchunk.AppendV2(nil, t0, nil, map[string]any{"event.action": "DetachUserPolicy", "source.ip": "not an ip",
		"aws.cloudtrail.request_parameters": "{userName=a, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV9}"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, a := range alertsOf(t, b) {
			ocsfDoc(t, &a)
		}
	})
}

// The alerts of the newer rules (the Health notice and the denied call
// from their examples, the lifecycle's from its sequences) are valid OCSF
// too, and carry the key's case as a resource and a use's calls as count.
func TestOCSFLifecycleAlerts(t *testing.T) {
	var alerts []alert.Alert
	for _, rule := range []string{"aws.health.credentials_exposed", "aws.iam.quarantine_denied_call"} {
		for _, ev := range corpus.Fixtures(t, rule, "positive") {
			alerts = append(alerts, alertsOf(t, fbchunk.AppendV2(nil, t0, nil, ev))...)
		}
	}
	for _, f := range sequence.Findings(t) {
		alerts = append(alerts, alert.New(f, true))
	}
	uses, keys := 0, 0
	for i := range alerts {
		a := &alerts[i]
		doc := ocsfDoc(t, a)
		if a.Use != nil {
			uses++
			if doc["count"] != float64(a.Use.Calls) || doc["start_time"] != float64(a.Use.WindowStart.UnixMilli()) {
				t.Errorf("%s: count %v start_time %v for %+v", a.Key, doc["count"], doc["start_time"], a.Use)
			}
		}
		if a.AccessKey != nil && a.AccessKey.ID != "" {
			keys++
			found := false
			for _, r := range doc["resources"].([]any) {
				r := r.(map[string]any)
				found = found || (r["type"] == "AWS::IAM::AccessKey" && r["uid"] == a.AccessKey.ID)
			}
			if !found {
				t.Errorf("%s: no access key resource for %s", a.Key, a.AccessKey.ID)
			}
		}
	}
	if len(alerts) < 30 || uses < 5 || keys < 10 {
		t.Fatalf("%d alerts, %d uses, %d with a key", len(alerts), uses, keys)
	}
}
