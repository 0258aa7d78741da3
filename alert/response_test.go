package alert_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

const base = "https://wiki.example.internal/security/cloudtrail-quarantine"

func deniedWithAuthorizationID(t *testing.T) alert.Alert {
	ev := corpus.Fixture(t, "aws.iam.quarantine_denied_call", "positive", "iam_access_troubleshooter_text_after_the_arn")
	alerts := alertsOf(t, fbchunk.AppendV2(nil, t0, nil, ev))
	if len(alerts) != 1 {
		t.Fatalf("%d alerts", len(alerts))
	}
	return alerts[0]
}

func jsonDoc(t *testing.T, a *alert.Alert, f alert.Format) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(a.AppendJSON(nil, f), &doc); err != nil {
		t.Fatal(err)
	}
	if back := asJSON(t, a.AppendMsgpack(nil, f)); !equalJSON(doc, back) {
		t.Errorf("format %d: msgpack and JSON differ", f)
	}
	return doc
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func strs(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}

// The response commands and the authorization id, in each format: the
// native alert's response.commands and authorization_id, ECS's
// cloudtrail_quarantine.response and error.id, OCSF's remediation and the
// evidence's api.response.data.
func TestResponseInEveryFormat(t *testing.T) {
	a := deniedWithAuthorizationID(t)
	a.SetRunbookBase(base)
	const id = "example0a1b2c3d4e5f6g7h"
	want := []string{
		"aws iam update-access-key --user-name ci-deployer --access-key-id AKIAEXAMPLEEXPOSED01 --status Inactive --region us-east-1",
		"aws iam-toolbox get-request-authorization-details --authorization-id " + id + " --region us-east-1",
		"aws cloudtrail lookup-events --lookup-attributes AttributeKey=AccessKeyId,AttributeValue=AKIAEXAMPLEEXPOSED01 --region us-east-1",
		"aws iam list-access-keys --user-name ci-deployer --region us-east-1",
	}
	runbook := base + "#runbook-aws-iam-quarantine-denied-call"

	native := jsonDoc(t, &a, alert.Native)
	if got := strs(at(native, "response", "commands")); !slices.Equal(got, want) {
		t.Errorf("native response.commands:\n%q\nwant\n%q", got, want)
	}
	if native["authorization_id"] != id || at(native, "rule", "runbook") != runbook {
		t.Errorf("native: authorization_id %v, runbook %v", native["authorization_id"], at(native, "rule", "runbook"))
	}

	ecs := jsonDoc(t, &a, alert.ECS)
	if got := strs(at(ecs, "cloudtrail_quarantine", "response", "commands")); !slices.Equal(got, want) {
		t.Errorf("ECS commands %q", got)
	}
	if at(ecs, "cloudtrail_quarantine", "response", "runbook") != runbook || at(ecs, "error", "id") != id {
		t.Errorf("ECS: runbook %v, error.id %v", at(ecs, "cloudtrail_quarantine", "response", "runbook"), at(ecs, "error", "id"))
	}

	ocsf := ocsfDoc(t, &a) // checked against the OCSF tables
	desc, _ := at(ocsf, "remediation", "desc").(string)
	if !strings.HasPrefix(desc, "Follow the runbook: "+runbook+"\n") || !strings.HasSuffix(desc, "\n"+strings.Join(want, "\n")) {
		t.Errorf("OCSF remediation.desc %q", desc)
	}
	if refs := strs(at(ocsf, "remediation", "references")); refs[0] != runbook {
		t.Errorf("OCSF remediation.references %q", refs)
	}
	if at(ocsf, "evidences", 0, "api", "response", "data", "authorization_id") != id {
		t.Errorf("OCSF evidence %v", at(ocsf, "evidences", 0, "api", "response"))
	}

	// Without an authorization id in the message, none in any format.
	other := alertsOf(t, fbchunk.AppendV2(nil, t0, nil, corpus.Fixture(t, "aws.iam.quarantine_denied_call", "positive", "iam_create_access_key_v2")))[0]
	for _, f := range []alert.Format{alert.Native, alert.ECS, alert.OCSF} {
		if js := other.AppendJSON(nil, f); bytes.Contains(js, []byte("authorization_id")) || bytes.Contains(js, []byte(`"error":{"id"`)) {
			t.Errorf("format %d carries an authorization id: %s", f, js)
		}
	}
}

// Every alert of every example carries its rule's response, in each
// format, and the stored form reads back with it.
func TestEveryAlertHasItsResponse(t *testing.T) {
	var all []alert.Alert
	for _, rule := range rules.Stateless() {
		for _, ev := range corpus.Fixtures(t, rule.ID, "positive") {
			all = append(all, alertsOf(t, fbchunk.AppendV2(nil, t0, nil, ev))...)
		}
	}
	for _, f := range sequence.Findings(t) {
		all = append(all, alert.New(f, false))
	}
	seen := map[string]bool{}
	for _, a := range all {
		if len(a.Commands) == 0 {
			t.Errorf("%s: no response commands", a.Key)
			continue
		}
		seen[a.Rule.ID] = true
		native := jsonDoc(t, &a, alert.Native)
		ecs := jsonDoc(t, &a, alert.ECS)
		if !slices.Equal(strs(at(native, "response", "commands")), a.Commands) ||
			!slices.Equal(strs(at(ecs, "cloudtrail_quarantine", "response", "commands")), a.Commands) {
			t.Errorf("%s: commands differ between formats", a.Key)
		}
		back, err := alert.Decode(a.AppendMsgpack(nil, alert.Native), a.Time, a.Key)
		if err != nil || !slices.Equal(back.Commands, a.Commands) || back.AuthorizationID != a.AuthorizationID {
			t.Errorf("%s: read back %q %q, %v", a.Key, back.Commands, back.AuthorizationID, err)
		}
	}
	for _, r := range rules.All() {
		if !seen[r.ID] {
			t.Errorf("no example alert of %s", r.ID)
		}
	}
}

// Runbook_Base_URL: rule.runbook is the anchor on the configured page, in
// every format and for a severity variant too; a stored alert takes the
// page configured when it is sent.
func TestRunbookBase(t *testing.T) {
	a := deniedWithAuthorizationID(t)
	if a.Rule.Runbook != "README.md#runbook-aws-iam-quarantine-denied-call" {
		t.Fatalf("without a base: %q", a.Rule.Runbook)
	}
	a.SetRunbookBase(alert.DefaultRunbookBase)
	if a.Rule.Runbook != alert.DefaultRunbookBase+"#runbook-aws-iam-quarantine-denied-call" {
		t.Fatalf("default base: %q", a.Rule.Runbook)
	}
	stored := a.AppendMsgpack(nil, alert.Native)
	back, err := alert.Decode(stored, a.Time, a.Key)
	if err != nil {
		t.Fatal(err)
	}
	back.SetRunbookBase(base)
	if back.Rule.Runbook != base+"#runbook-aws-iam-quarantine-denied-call" || back.Rule.ID != a.Rule.ID || back.Rule.Severity != a.Rule.Severity {
		t.Fatalf("re-based: %+v", back.Rule)
	}
	back.SetRunbookBase(alert.DefaultRunbookBase)
	if !bytes.Equal(back.AppendMsgpack(nil, alert.Native), stored) {
		t.Error("the same base again does not give the stored alert")
	}
	// A use that failed is the rule's medium variant: it keeps its severity.
	for _, f := range sequence.Findings(t) {
		if f.Match.Severity != "medium" {
			continue
		}
		u := alert.New(f, false)
		u.SetRunbookBase(base)
		if u.Rule.Severity != "medium" || u.Rule.RiskScore != 47 || !strings.HasPrefix(u.Rule.Runbook, base+"#runbook-") {
			t.Errorf("medium variant re-based: %+v", u.Rule)
		}
		doc := jsonDoc(t, &u, alert.Native)
		if at(doc, "rule", "severity") != "medium" || at(doc, "rule", "runbook") != u.Rule.Runbook {
			t.Errorf("medium variant encodes %v", doc["rule"])
		}
		break
	}
	for s, ok := range map[string]bool{
		base: true, "http://runbooks.internal/ctq.html": true, alert.DefaultRunbookBase: true,
		"README.md": false, "ftp://x/y": false, "https://x/y#runbooks": false, "https:///nohost": false, "": false, "javascript:alert(1)": false,
	} {
		if err := alert.CheckRunbookBase(s); (err == nil) != ok {
			t.Errorf("CheckRunbookBase(%q) = %v", s, err)
		}
	}
}
