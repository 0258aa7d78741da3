package e2e

import (
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
)

const healthRule = "aws.health.credentials_exposed"

// Every shape AWS sends, through the .so: AWS Health under each
// detail-type and in the China partition, delivered by EventBridge, by an
// SNS HTTP(S) subscription and by a Lambda subscriber; an event under
// "Message" (Event_Key matched regardless of case); a notice whose
// affectedAccount holds a key id. Each alert carries its response
// commands and a runbook link on Runbook_Base_URL's page.
func TestAWSShapesThroughThePlugin(t *testing.T) {
	const base = "https://runbooks.example.internal/ctq"
	health := map[string]string{ // fixture -> the notice's id
		"abuse_event_detail_type":         "5d1e2f3a-0000-4000-8000-000000000021",
		"china_amazon_health_event":       "5d1e2f3a-0000-4000-8000-000000000022",
		"china_amazon_health_abuse_event": "5d1e2f3a-0000-4000-8000-000000000023",
		"sns_http_notification":           "5d1e2f3a-0000-4000-8000-000000000024",
		"sns_lambda_records":              "5d1e2f3a-0000-4000-8000-000000000025",
		"affected_account_holds_the_key":  "5d1e2f3a-0000-4000-8000-000000000026",
	}
	var bodies []any
	for _, name := range slices.Sorted(maps.Keys(health)) {
		bodies = append(bodies, corpus.Fixture(t, healthRule, "positive", name))
	}
	for _, name := range []string{"sns_subscription_confirmation", "sns_notification_of_another_event", "abuse_detail_type_not_from_aws_health"} {
		bodies = append(bodies, corpus.Fixture(t, healthRule, "negative", name))
	}
	applied := quarantineApplied(t)
	bodies = append(bodies, map[string]any{"Message": string(value.ToJSON(applied)), "Type": "LogLine"})
	denied := corpus.Fixture(t, "aws.iam.quarantine_denied_call", "positive", "iam_access_troubleshooter_text_after_the_arn")
	bodies = append(bodies, denied)

	dir := t.TempDir()
	ecsPath, ocsfPath := filepath.Join(dir, "ecs.jsonl"), filepath.Join(dir, "ocsf.jsonl")
	c := chunkOf(bodies...)
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{
			kv("Runbook_Base_URL", base),
			kv("Alert_Output", "file", "File_Path", ecsPath, "Alert_Format", "ecs"),
			kv("Alert_Output", "file", "File_Path", ocsfPath, "Alert_Format", "ocsf"),
		},
		Flushes: []harness.Flush{{Instance: 0, Tag: tag, Data: c}, {Instance: 1, Tag: tag, Data: c}, {Instance: 2, Tag: tag, Data: c}},
	})
	if res.ExitCode != 0 {
		t.Fatalf("harness exit %d\n%s", res.ExitCode, res.Stderr)
	}
	alerts := parseLines(t, res.Stdout)
	byRule := map[string][]alert{}
	for _, a := range alerts {
		byRule[a.Rule.ID] = append(byRule[a.Rule.ID], a)
		if len(a.Response.Commands) == 0 || !strings.HasPrefix(a.Rule.Runbook, base+"#runbook-") {
			t.Errorf("%s %s: commands %q, runbook %q", a.Rule.ID, a.EventID, a.Response.Commands, a.Rule.Runbook)
		}
	}
	var ids []string
	for _, a := range byRule[healthRule] {
		ids = append(ids, a.EventID)
		if a.Shape != "health" {
			t.Errorf("%s: record_shape %q", a.EventID, a.Shape)
		}
		switch a.EventID {
		case health["affected_account_holds_the_key"]:
			if a.AccountID != "333344445555" || !strings.Contains(a.Title, "in account 333344445555") {
				t.Errorf("the key id in affectedAccount was taken for the account: %q, %q", a.AccountID, a.Title)
			}
		case health["china_amazon_health_event"], health["china_amazon_health_abuse_event"]:
			if !strings.HasSuffix(a.Response.Commands[0], "--region cn-north-1") || !strings.Contains(a.Response.Commands[0], a.Key.ID) {
				t.Errorf("China notice %s: %q", a.EventID, a.Response.Commands)
			}
		}
	}
	slices.Sort(ids)
	if want := slices.Sorted(maps.Values(health)); !slices.Equal(ids, want) {
		t.Errorf("Health alerts for %v, want %v\n%s", ids, want, res.Stderr)
	}
	if got := byRule["aws.iam.quarantine_applied"]; len(got) != 1 || got[0].EventID != applied["eventID"] {
		t.Errorf("the event under \"Message\": %+v", got)
	}
	d := byRule["aws.iam.quarantine_denied_call"]
	if len(d) != 1 || d[0].AuthorizationID != "example0a1b2c3d4e5f6g7h" ||
		!slices.Contains(d[0].Response.Commands, "aws iam-toolbox get-request-authorization-details --authorization-id example0a1b2c3d4e5f6g7h --region us-east-1") {
		t.Errorf("denied call: %+v", d)
	}
	for inst := range 3 {
		want := `\[output:cloudtrail_quarantine:cloudtrail_quarantine\.` + string(rune('0'+inst)) + `\] exit: .* ignored_account_ids=1 `
		if !regexp.MustCompile(want).MatchString(res.Stderr) {
			t.Errorf("instance %d does not count the account field it ignored:\n%s", inst, res.Stderr)
		}
	}

	// The same alerts as ECS and OCSF, with the default runbook page.
	ecs, ocsf := documents(t, ecsPath), documents(t, ocsfPath)
	if len(ecs) != len(alerts) || len(ocsf) != len(alerts) {
		t.Fatalf("%d native, %d ECS, %d OCSF alerts", len(alerts), len(ecs), len(ocsf))
	}
	for i, a := range alerts {
		own, _ := ecs[i]["cloudtrail_quarantine"].(map[string]any)
		resp, _ := own["response"].(map[string]any)
		if resp["runbook"] != strings.Replace(a.Rule.Runbook, base, "https://github.com/cloudtrail-quarantine/cloudtrail_quarantine/blob/main/README.md", 1) ||
			len(resp["commands"].([]any)) != len(a.Response.Commands) {
			t.Errorf("ECS alert %d: response %v", i, resp)
		}
		rem, _ := ocsf[i]["remediation"].(map[string]any)
		if desc, _ := rem["desc"].(string); !strings.HasSuffix(desc, strings.Join(a.Response.Commands, "\n")) {
			t.Errorf("OCSF alert %d: remediation %q", i, desc)
		}
		if a.AuthorizationID != "" {
			if ecs[i]["error"].(map[string]any)["id"] != a.AuthorizationID {
				t.Errorf("ECS error.id %v", ecs[i]["error"])
			}
			ev := ocsf[i]["evidences"].([]any)[0].(map[string]any)
			if data := ev["api"].(map[string]any)["response"].(map[string]any)["data"]; data.(map[string]any)["authorization_id"] != a.AuthorizationID {
				t.Errorf("OCSF api.response.data %v", data)
			}
		}
	}
}
