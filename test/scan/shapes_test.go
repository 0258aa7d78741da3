package scan_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
)

// An archive of AWS Health notices as SNS delivered them (HTTP envelopes
// as JSON lines, a Lambda event's Records) and under the Abuse
// detail-type: the scan alerts on each, with the runbook link on
// --runbook-base-url's page and the response commands.
func TestScanReadsSNSAndLinksTheRunbook(t *testing.T) {
	dir := t.TempDir()
	const health = "aws.health.credentials_exposed"
	var lines []byte
	for _, name := range []string{"sns_http_notification", "abuse_event_detail_type"} {
		lines = append(append(lines, value.ToJSON(corpus.Fixture(t, health, "positive", name))...), '\n')
	}
	if err := os.WriteFile(filepath.Join(dir, "notices.json"), lines, 0o644); err != nil {
		t.Fatal(err)
	}
	lambda := value.ToJSON(corpus.Fixture(t, health, "positive", "sns_lambda_records"))
	if err := os.WriteFile(filepath.Join(dir, "lambda.json"), lambda, 0o644); err != nil {
		t.Fatal(err)
	}
	const base = "https://runbooks.example.internal/ctq"
	r := scanOf(t, "--format", "native", "--runbook-base-url", base, dir)
	if r.code != 1 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var a struct {
			Rule     struct{ ID, Runbook string }
			EventID  string `json:"event_id"`
			Response struct{ Commands []string }
		}
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatal(err)
		}
		if a.Rule.ID != health {
			continue
		}
		got = append(got, a.EventID)
		if a.Rule.Runbook != base+"#runbook-aws-health-credentials-exposed" || len(a.Response.Commands) != 3 {
			t.Errorf("%s: runbook %q, commands %q", a.EventID, a.Rule.Runbook, a.Response.Commands)
		}
	}
	slices.Sort(got)
	want := []string{"5d1e2f3a-0000-4000-8000-000000000021", "5d1e2f3a-0000-4000-8000-000000000024", "5d1e2f3a-0000-4000-8000-000000000025"}
	if !slices.Equal(got, want) {
		t.Fatalf("Health alerts for %v, want %v\n%s", got, want, r.stderr)
	}
	for _, bad := range []string{"README.md", "https://x.example/page#runbooks"} {
		if r := scanOf(t, "--runbook-base-url", bad, dir); r.code != 2 || !strings.Contains(r.stderr, "--runbook-base-url") {
			t.Errorf("--runbook-base-url %q: exit %d\n%s", bad, r.code, r.stderr)
		}
	}
}
