package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
)

// recorder is an HTTP endpoint that keeps every request body and answers
// from a script (then 200 with ok).
type recorder struct {
	mu      sync.Mutex
	bodies  []string
	headers []http.Header
	script  []struct {
		status int
		body   string
	}
	ok string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, string(b))
	r.headers = append(r.headers, req.Header.Clone())
	if len(r.script) > 0 {
		s := r.script[0]
		r.script = r.script[1:]
		w.WriteHeader(s.status)
		io.WriteString(w, s.body)
		return
	}
	io.WriteString(w, r.ok)
}

// Splunk HEC through the .so: the token from the environment, envelopes
// with the sourcetype, a 503 answered with RETRY and the retry delivering.
func TestHTTPSplunkHEC(t *testing.T) {
	rec := &recorder{ok: `{"text":"Success","code":0}`}
	rec.script = append(rec.script, struct {
		status int
		body   string
	}{503, `{"text":"Server is busy","code":9}`})
	srv := httptest.NewServer(rec)
	defer srv.Close()
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{kv("Alert_Output", "http", "HTTP_URL", srv.URL+"/services/collector/event", "HTTP_Format", "splunk_hec",
			"HTTP_Splunk_Token", "hec-token-123", "HTTP_Headers", "X-Team: secops; X-Env: prod")},
		Flushes: []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}},
		Retries: 2,
	})
	if got := rcs(res); !slices.Equal(got, []int{2, 1}) || !strings.Contains(res.Stderr, "503 Service Unavailable") {
		t.Fatalf("rcs %v\n%s", got, res.Stderr)
	}
	if strings.Contains(res.Stderr, "hec-token-123") {
		t.Fatal("the HEC token was logged")
	}
	last := rec.bodies[len(rec.bodies)-1]
	var env map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(last)), &env); err != nil {
		t.Fatalf("%v: %s", err, last)
	}
	h := rec.headers[len(rec.headers)-1]
	if env["sourcetype"] != "aws:cloudtrail:quarantine" || env["event"].(map[string]any)["rule"].(map[string]any)["id"] != "aws.iam.quarantine_applied" ||
		h.Get("Authorization") != "Splunk hec-token-123" || h.Get("X-Team") != "secops" || h.Get("X-Env") != "prod" {
		t.Fatalf("envelope %v headers %v", env, h)
	}
}

// Elasticsearch bulk through the .so with ECS alerts: a 429, then a retry
// that the cluster reports as an item conflict for the alert an earlier
// attempt had indexed; the alert is delivered once, with a stable _id.
func TestHTTPElasticsearchBulk(t *testing.T) {
	rec := &recorder{ok: `{"errors":true,"items":[{"create":{"status":409,"error":{"type":"version_conflict_engine_exception"}}}]}`}
	rec.script = append(rec.script, struct {
		status int
		body   string
	}{429, `{"error":{"type":"es_rejected_execution_exception"},"status":429}`})
	srv := httptest.NewServer(rec)
	defer srv.Close()
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{kv("Alert_Output", "http", "HTTP_URL", srv.URL+"/_bulk", "HTTP_Format", "es_bulk",
			"HTTP_ES_Index", "cloudtrail-quarantine-alerts", "Alert_Format", "ecs", "HTTP_User", "elastic", "HTTP_Passwd", "changeme")},
		Flushes: []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}},
		Retries: 2,
	})
	if got := rcs(res); !slices.Equal(got, []int{2, 1}) {
		t.Fatalf("rcs %v\n%s", got, res.Stderr)
	}
	if rec.bodies[0] != rec.bodies[1] || !strings.HasPrefix(rec.bodies[0], `{"create":{"_index":"cloudtrail-quarantine-alerts","_id":"aws.iam.quarantine_applied/`) {
		t.Fatalf("bulk bodies differ or lack the stable _id:\n%s\n%s", rec.bodies[0], rec.bodies[1])
	}
	lines := strings.Split(rec.bodies[0], "\n")
	var doc map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &doc); err != nil || doc["event"].(map[string]any)["kind"] != "alert" {
		t.Fatalf("ECS document %v: %s", err, lines[1])
	}
	if strings.Contains(res.Stderr, "changeme") {
		t.Fatal("the password was logged")
	}
}
