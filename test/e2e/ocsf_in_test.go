package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfmap"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

var ocsfForms = []struct {
	name    string
	convert func(map[string]any) (map[string]any, error)
}{{"v2", ocsfmap.SecurityLakeV2}, {"v1", ocsfmap.SecurityLakeV1}}

func ocsfOf(t *testing.T, convert func(map[string]any) (map[string]any, error), ev map[string]any) map[string]any {
	t.Helper()
	rec, err := convert(ev)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// The examples through the real .so once more, as the OCSF records Security
// Lake writes for them: the same events alert, with the same alert fields,
// shape ocsf and the OCSF record as the event. One run per form, since both
// forms of an event share its eventID and would be de-duplicated.
func TestOCSFRuleExamplesThroughThePlugin(t *testing.T) {
	for _, form := range ocsfForms {
		for _, rule := range []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_attempt_failed", "aws.iam.quarantine_removed"} {
			pos, neg := fixtures(t, rule, "positive"), fixtures(t, rule, "negative")
			var posBodies, negBodies []any
			want := map[string]map[string]any{}
			for _, e := range pos {
				posBodies = append(posBodies, ocsfOf(t, form.convert, e))
				want[e["eventID"].(string)] = e
			}
			for _, e := range neg {
				negBodies = append(negBodies, ocsfOf(t, form.convert, e))
			}
			alerts, res := runStdout(t, nil, chunkOf(posBodies...), chunkOf(negBodies...))
			var got []string
			for _, a := range alerts {
				if a.Rule.ID != rule {
					continue
				}
				got = append(got, a.EventID)
				ev := want[a.EventID]
				if ev == nil {
					t.Errorf("%s %s: alert for %s, not a positive", form.name, rule, a.EventID)
					continue
				}
				if a.Shape != "ocsf" || a.EventTime != ev["eventTime"] || a.AccountID != ev["recipientAccountId"] {
					t.Errorf("%s %s %s: shape %q time %q account %q", form.name, rule, a.EventID, a.Shape, a.EventTime, a.AccountID)
				}
				if code, _ := ev["errorCode"].(string); a.ErrorCode != code {
					t.Errorf("%s %s %s: error_code %q, want %q", form.name, rule, a.EventID, a.ErrorCode, code)
				}
				if md, _ := a.Event["metadata"].(map[string]any); md == nil || md["uid"] != a.EventID || a.Event["class_uid"] == nil {
					t.Errorf("%s %s %s: event is not the OCSF record: %v", form.name, rule, a.EventID, a.Event)
				}
				if a.Target.Name == "" || a.Policy.Name == "" {
					t.Errorf("%s %s %s: target %+v policy %+v", form.name, rule, a.EventID, a.Target, a.Policy)
				}
			}
			var wantIDs []string
			for _, e := range pos {
				wantIDs = append(wantIDs, e["eventID"].(string))
			}
			if !slices.Equal(got, wantIDs) {
				t.Errorf("%s %s: alerts for %v, want %v\n%s", form.name, rule, got, wantIDs, res.Stderr)
			}
		}
	}
}

// OCSF among the other shapes in one chunk: a v2 record, a v1 record, a v2
// record as JSON text under log, Panther's OCSF test fragments, and an OCSF
// record of an unrelated call that names no quarantine policy.
func TestOCSFShapesThroughThePlugin(t *testing.T) {
	applied := fixtures(t, "aws.iam.quarantine_applied", "positive")
	failed := fixtures(t, "aws.iam.quarantine_attempt_failed", "positive")[0]
	removed := fixtures(t, "aws.iam.quarantine_removed", "positive")[0]
	v2 := ocsfOf(t, ocsfmap.SecurityLakeV2, applied[0])
	js := value.ToJSON(ocsfOf(t, ocsfmap.SecurityLakeV2, failed))
	noise := ocsfOf(t, ocsfmap.SecurityLakeV2, fixtures(t, "aws.iam.quarantine_applied", "negative")[0])
	bodies := []any{
		noise,
		v2,
		ocsfOf(t, ocsfmap.SecurityLakeV1, removed),
		map[string]any{"log": string(js)},
	}
	files, _ := filepath.Glob(paths.Corpus("quarantine_rule_tests", "*OCSF*.json"))
	slices.Sort(files)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v, err := value.FromJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, v)
	}
	if len(files) != 4 {
		t.Fatalf("%d public OCSF tests, want 4", len(files))
	}
	alerts, res := runStdout(t, nil, chunkOf(bodies...))
	// Of Panther's four, the AttachUserPolicy of the V2 ARN and the
	// PutUserPolicy of the legacy inline name are quarantines.
	want := []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_removed", "aws.iam.quarantine_attempt_failed",
		"aws.iam.quarantine_applied", "aws.iam.quarantine_applied"}
	if got := ruleIDs(alerts); !slices.Equal(got, want) {
		t.Fatalf("rules %v, want %v\n%s", got, want, res.Stderr)
	}
	for _, a := range alerts {
		if a.Shape != "ocsf" {
			t.Errorf("%s: shape %q", a.EventID, a.Shape)
		}
	}
	// Panther's fragments have no metadata.uid, and only the second names
	// an account (unmapped.recipientAccountId).
	if p1, p2 := alerts[3], alerts[4]; p1.EventID != "" || p2.EventID != "" || p1.AccountID != "" || p2.AccountID != "123456789012" {
		t.Errorf("public OCSF alerts: %+v %+v", p1, p2)
	}
	// Every record naming a quarantine policy is a candidate, not the
	// unrelated call; and Panther's request without parameters is one too:
	// an IAM user's call, after the quarantine before it put users on the
	// watch list.
	if !strings.Contains(res.Stderr, "records=8 candidates=7 ") {
		t.Errorf("want 8 records, 7 candidates:\n%s", res.Stderr)
	}
}
