// Package e2e drives the built .so through the harness the way Fluent Bit
// loads it: real dlopen, a 24 KiB coroutine stack on a non-main thread,
// real files and sockets.
package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
)

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

const tag = "aws.cloudtrail.events"

// alert is the part of the alert schema the tests look at.
type alert struct {
	Rule struct {
		ID          string   `json:"id"`
		Severity    string   `json:"severity"`
		RiskScore   int      `json:"risk_score"`
		Equivalents []string `json:"equivalents"`
		Runbook     string   `json:"runbook"`
	} `json:"rule"`
	Title     string `json:"title"`
	EventID   string `json:"event_id"`
	EventTime string `json:"event_time"`
	AccountID string `json:"account_id"`
	Target    struct{ Type, Name string }
	Policy    struct {
		Name, ARN, Version string
	}
	ErrorCode string         `json:"error_code"`
	Shape     string         `json:"record_shape"`
	Event     map[string]any `json:"event"`
	Key       struct {
		ID            string `json:"id"`
		User          string `json:"user"`
		ExposedURL    string `json:"exposed_url"`
		ExposedAt     string `json:"exposed_at"`
		QuarantinedAt string `json:"quarantined_at"`
		RetiredAt     string `json:"retired_at"`
	} `json:"key"`
	Use struct {
		Calls int `json:"calls"`
	} `json:"use"`
	Lifecycle       map[string]int `json:"lifecycle"`
	AuthorizationID string         `json:"authorization_id"`
	Response        struct {
		Commands []string `json:"commands"`
	} `json:"response"`
}

// parseLines reads JSON-lines alerts (stdout or file sink).
func parseLines(t *testing.T, out string) []alert {
	t.Helper()
	var as []alert
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var a alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("not an alert line: %q: %v", line, err)
		}
		as = append(as, a)
	}
	return as
}

// documents reads a file of JSON lines (the file sink's), each an object.
func documents(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s: not a JSON object a line: %v", path, err)
		}
		out = append(out, m)
	}
	return out
}

func ruleIDs(as []alert) []string {
	var ids []string
	for _, a := range as {
		ids = append(ids, a.Rule.ID)
	}
	return ids
}

func fixtures(t testing.TB, rule, kind string) []map[string]any {
	return corpus.Fixtures(t, rule, kind)
}

func quarantineApplied(t testing.TB) map[string]any {
	return corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
}

func chunkOf(bodies ...any) []byte { return fbchunk.FromValues(t0, bodies) }

func kv(pairs ...string) []harness.KV {
	var out []harness.KV
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, harness.KV{Key: pairs[i], Value: pairs[i+1]})
	}
	return out
}

// runStdout flushes chunks to one stdout instance and returns its alerts.
func runStdout(t *testing.T, props []harness.KV, chunks ...[]byte) ([]alert, harness.Result) {
	t.Helper()
	o := harness.Options{Instances: [][]harness.KV{props}}
	for _, c := range chunks {
		o.Flushes = append(o.Flushes, harness.Flush{Instance: 0, Tag: tag, Data: c})
	}
	res := harness.Run(t, o)
	if res.ExitCode != 0 {
		t.Fatalf("harness exit %d\n%s", res.ExitCode, res.Stderr)
	}
	return parseLines(t, res.Stdout), res
}

func rcs(res harness.Result) []int {
	var out []int
	for _, a := range res.Attempts {
		out = append(out, a.RC)
	}
	return out
}
