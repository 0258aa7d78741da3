package httpsink

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
)

var alerts = []sink.Alert{
	{Time: time.Unix(1763626542, 250_000_000), Key: "aws.iam.quarantine_applied/e-1", JSON: []byte(`{"rule":{"id":"aws.iam.quarantine_applied"},"event_id":"e-1"}`)},
	{Time: time.Unix(1763626543, 0), Key: "aws.iam.quarantine_removed/e-2", JSON: []byte(`{"rule":{"id":"aws.iam.quarantine_removed"},"event_id":"e-2"}`)},
}

// server records one request and answers with status and body.
type server struct {
	*httptest.Server
	req  *http.Request
	body []byte
}

func newServer(t *testing.T, status int, answer string) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.req = r
		s.body, _ = io.ReadAll(r.Body)
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(s.Close)
	return s
}

func deliver(t *testing.T, o Options) error {
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.Deliver(alerts)
}

func TestJSONWithHeadersAndBasicAuth(t *testing.T) {
	srv := newServer(t, 200, "")
	err := deliver(t, Options{URL: srv.URL + "/hook", Format: JSON, Timeout: time.Second, User: "u", Password: "p",
		Headers: [][2]string{{"X-Team", "secops"}, {"X-Env", "prod"}}})
	if err != nil {
		t.Fatal(err)
	}
	user, pass, _ := srv.req.BasicAuth()
	var got []map[string]any
	if err := json.Unmarshal(srv.body, &got); err != nil || len(got) != 2 || got[1]["event_id"] != "e-2" {
		t.Fatalf("body %s: %v", srv.body, err)
	}
	if srv.req.Method != "POST" || srv.req.URL.Path != "/hook" || srv.req.Header.Get("Content-Type") != "application/json" ||
		srv.req.Header.Get("X-Team") != "secops" || srv.req.Header.Get("X-Env") != "prod" || user != "u" || pass != "p" {
		t.Fatalf("request %s %s %v", srv.req.Method, srv.req.URL, srv.req.Header)
	}
}

func TestNDJSONWithBearer(t *testing.T) {
	srv := newServer(t, 204, "")
	if err := deliver(t, Options{URL: srv.URL, Format: NDJSON, Timeout: time.Second, BearerToken: "tok"}); err != nil {
		t.Fatal(err)
	}
	if srv.req.Header.Get("Authorization") != "Bearer tok" || string(srv.body) != string(alerts[0].JSON)+"\n"+string(alerts[1].JSON)+"\n" {
		t.Fatalf("%v %s", srv.req.Header, srv.body)
	}
}

// Splunk HEC: /services/collector/event with "Authorization: Splunk
// <token>" and one envelope per alert; its documented errors fail the
// delivery with HEC's own text.
func TestSplunkHEC(t *testing.T) {
	srv := newServer(t, 200, `{"text":"Success","code":0}`)
	o := Options{URL: srv.URL + "/services/collector/event", Format: SplunkHEC, Timeout: time.Second, SplunkToken: "hec-token",
		Host: "edge-1", Source: "cloudtrail_quarantine", Sourcetype: "aws:cloudtrail:quarantine", Index: "security"}
	if err := deliver(t, o); err != nil {
		t.Fatal(err)
	}
	if srv.req.Header.Get("Authorization") != "Splunk hec-token" || srv.req.URL.Path != "/services/collector/event" {
		t.Fatalf("%v", srv.req.Header)
	}
	sc := bufio.NewScanner(bytes.NewReader(srv.body))
	var envs []map[string]any
	for sc.Scan() {
		var env map[string]any
		if err := json.Unmarshal(sc.Bytes(), &env); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		envs = append(envs, env)
	}
	if len(envs) != 2 || envs[0]["time"] != 1763626542.25 || envs[0]["host"] != "edge-1" || envs[0]["sourcetype"] != "aws:cloudtrail:quarantine" ||
		envs[0]["source"] != "cloudtrail_quarantine" || envs[0]["index"] != "security" || envs[1]["event"].(map[string]any)["event_id"] != "e-2" {
		t.Fatalf("envelopes %v", envs)
	}
	for status, answer := range map[int]string{
		400: `{"text":"Invalid data format","code":6,"invalid-event-number":0}`,
		403: `{"text":"Invalid token","code":4}`,
		503: `{"text":"Server is busy","code":9}`,
	} {
		o.URL = newServer(t, status, answer).URL
		if err := deliver(t, o); err == nil || !strings.Contains(err.Error(), answer[9:20]) {
			t.Errorf("HEC %d: %v", status, err)
		}
	}
}

// Elasticsearch bulk: create actions with the alert key as _id, so a
// re-sent alert is a 409 conflict, which counts as delivered; other item
// failures and 429 fail the batch.
func TestESBulk(t *testing.T) {
	srv := newServer(t, 200, `{"took":3,"errors":false,"items":[{"create":{"_index":"alerts","_id":"x","status":201}},{"create":{"status":201}}]}`)
	o := Options{URL: srv.URL + "/_bulk", Format: ESBulk, Timeout: time.Second, ESIndex: "cloudtrail-quarantine-alerts"}
	if err := deliver(t, o); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(srv.body), "\n"), "\n")
	if len(lines) != 4 || lines[0] != `{"create":{"_index":"cloudtrail-quarantine-alerts","_id":"aws.iam.quarantine_applied/e-1"}}` ||
		lines[1] != string(alerts[0].JSON) || srv.req.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("bulk body:\n%s", srv.body)
	}
	conflict := `{"errors":true,"items":[{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}},{"create":{"status":201}}]}`
	if err := deliver(t, Options{URL: newServer(t, 200, conflict).URL, Format: ESBulk, Timeout: time.Second}); err != nil {
		t.Fatalf("409 is an earlier delivery: %v", err)
	}
	itemErr := `{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [event]"}}}]}`
	if err := deliver(t, Options{URL: newServer(t, 200, itemErr).URL, Format: ESBulk, Timeout: time.Second}); err == nil || !strings.Contains(err.Error(), "mapper_parsing_exception") {
		t.Fatalf("item error: %v", err)
	}
	tooMany := `{"error":{"type":"es_rejected_execution_exception"},"status":429}`
	if err := deliver(t, Options{URL: newServer(t, 429, tooMany).URL, Format: ESBulk, Timeout: time.Second}); err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("429: %v", err)
	}
}

func TestTimeout(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { time.Sleep(2 * time.Second) }))
	defer hang.Close()
	if err := deliver(t, Options{URL: hang.URL, Format: JSON, Timeout: 100 * time.Millisecond}); err == nil {
		t.Fatal("no timeout")
	}
}
