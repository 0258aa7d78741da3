package httpsink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
)

var alerts = []sink.Alert{
	{Time: time.Unix(1763626542, 250_000_000), Key: "aws.iam.quarantine_applied/e-1", Doc: []byte(`{"rule":{"id":"aws.iam.quarantine_applied"},"event_id":"e-1"}`)},
	{Time: time.Unix(1763626543, 0), Key: "aws.iam.quarantine_removed/e-2", Doc: []byte(`{"rule":{"id":"aws.iam.quarantine_removed"},"event_id":"e-2"}`)},
}

// server records requests (the last in req and body) and answers each
// with status and answer.
type server struct {
	*httptest.Server
	mu     sync.Mutex
	req    *http.Request
	body   []byte
	bodies [][]byte
}

func newServer(t *testing.T, status int, answer string) *server {
	return answering(t, func(w http.ResponseWriter, _ []byte) {
		w.WriteHeader(status)
		io.WriteString(w, answer)
	})
}

// answering records requests and answers each with answer.
func answering(t *testing.T, answer func(w http.ResponseWriter, body []byte)) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.req, s.body = r, body
		s.bodies = append(s.bodies, body)
		s.mu.Unlock()
		answer(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func deliverAll(t *testing.T, o Options, as []sink.Alert) (int, error) {
	t.Helper()
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = 4 << 20
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return sink.Send(context.Background(), s, as, sink.Handler{Done: func([]sink.Alert) error { return nil }, Refused: refusedIsAnError})
}

func deliver(t *testing.T, o Options) error {
	t.Helper()
	n, err := deliverAll(t, o, alerts)
	if err == nil && n != len(alerts) {
		t.Fatalf("delivered %d of %d without an error", n, len(alerts))
	}
	return err
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
	if srv.req.Header.Get("Authorization") != "Bearer tok" || string(srv.body) != string(alerts[0].Doc)+"\n"+string(alerts[1].Doc)+"\n" {
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
// re-sent alert is a 409 conflict, which counts as delivered; an item
// refused for its content is refused, a 429 fails the batch.
func TestESBulk(t *testing.T) {
	srv := newServer(t, 200, `{"took":3,"errors":false,"items":[{"create":{"_index":"alerts","_id":"aws.iam.quarantine_applied/e-1","status":201}},{"create":{"status":201}}]}`)
	o := Options{URL: srv.URL + "/_bulk", Format: ESBulk, Timeout: time.Second, ESIndex: "cloudtrail-quarantine-alerts"}
	if err := deliver(t, o); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(srv.body), "\n"), "\n")
	if len(lines) != 4 || lines[0] != `{"create":{"_index":"cloudtrail-quarantine-alerts","_id":"aws.iam.quarantine_applied/e-1"}}` ||
		lines[1] != string(alerts[0].Doc) || srv.req.Header.Get("Content-Type") != "application/x-ndjson" {
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

// Every format cuts its bodies under MaxBatchBytes, in order, and the
// batches together carry every alert once.
func TestBatchesStayUnderTheCap(t *testing.T) {
	var many []sink.Alert
	for i := range 50 {
		doc := fmt.Sprintf(`{"event_id":"e-%02d","pad":"%s"}`, i, strings.Repeat("x", 1000))
		many = append(many, sink.Alert{Time: time.Unix(1763626542, 0), Key: fmt.Sprintf("r/e-%02d", i), Doc: []byte(doc)})
	}
	const limit = 10_000
	for _, f := range []Format{JSON, NDJSON, SplunkHEC, ESBulk} {
		t.Run(string(f), func(t *testing.T) {
			srv := newBulkServer(t, nil)
			n, err := deliverAll(t, Options{URL: srv.URL, Format: f, Timeout: time.Second, MaxBatchBytes: limit}, many)
			if err != nil || n != len(many) {
				t.Fatalf("delivered %d: %v", n, err)
			}
			if len(srv.bodies) < 5 {
				t.Fatalf("%d requests for 50 KB under a 10 KB cap", len(srv.bodies))
			}
			var ids []string
			for _, b := range srv.bodies {
				if len(b) > limit {
					t.Errorf("body of %d bytes over the %d cap", len(b), limit)
				}
				ids = append(ids, regexp.MustCompile(`"event_id":"(e-\d+)"`).FindAllString(string(b), -1)...)
			}
			if len(ids) != len(many) || !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
				t.Fatalf("alerts across the batches: %v", ids)
			}
		})
	}
	// An alert over the cap alone is refused for good, without a request
	// (the receiver would refuse it), and the others go.
	srv := newServer(t, 200, "")
	s, err := New(Options{URL: srv.URL, Format: NDJSON, Timeout: time.Second, MaxBatchBytes: 1100})
	if err != nil {
		t.Fatal(err)
	}
	big := sink.Alert{Key: "r/big", Doc: []byte(`{"pad":"` + strings.Repeat("x", 2000) + `"}`)}
	var refused []sink.Refusal
	n, err := sink.Send(context.Background(), s, []sink.Alert{many[0], big, many[1]}, sink.Handler{
		Done:    func([]sink.Alert) error { return nil },
		Refused: func(r sink.Refusal) error { refused = append(refused, r); return nil },
	})
	if err != nil || n != 2 || len(srv.bodies) != 2 || len(refused) != 1 || refused[0].Alert.Key != "r/big" || !refused[0].Final ||
		!strings.Contains(refused[0].Reason, "more than the largest allowed (1100)") {
		t.Fatalf("%d delivered in %d requests, refused %+v: %v", n, len(srv.bodies), refused, err)
	}
}

// newBulkServer answers every request with one created item per action
// line of an es_bulk body (with its _id), or, for other bodies, 200; refuse
// picks _ids answered 400.
func newBulkServer(t *testing.T, refuse func(id string) bool) *server {
	return answering(t, func(w http.ResponseWriter, body []byte) {
		var items []string
		for i, line := range strings.Split(strings.TrimSuffix(string(body), "\n"), "\n") {
			var action struct {
				Create struct {
					ID string `json:"_id"`
				} `json:"create"`
			}
			if i%2 != 0 || json.Unmarshal([]byte(line), &action) != nil || action.Create.ID == "" {
				continue
			}
			id, _ := json.Marshal(action.Create.ID)
			status := `"status":201`
			if refuse != nil && refuse(action.Create.ID) {
				status = `"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse"}`
			}
			items = append(items, fmt.Sprintf(`{"create":{"_id":%s,%s}}`, id, status))
		}
		fmt.Fprintf(w, `{"errors":false,"items":[%s]}`, strings.Join(items, ","))
	})
}

// A bulk answer is read whole, however long: an item that failed after
// more than a megabyte of answer still fails the batch.
func TestLongBulkAnswer(t *testing.T) {
	var b strings.Builder
	var many []sink.Alert
	b.WriteString(`{"took":30,"errors":true,"items":[`)
	for i := range 20000 {
		key := fmt.Sprintf("aws.iam.quarantine_applied/%08d", i)
		many = append(many, sink.Alert{Key: key, Doc: []byte(`{}`)})
		fmt.Fprintf(&b, `{"create":{"_index":"cloudtrail-quarantine-alerts","_id":"%s","_version":1,"result":"created","status":201}},`, key)
	}
	many = append(many, sink.Alert{Key: "last", Doc: []byte(`{}`)})
	ok := b.String() + `{"create":{"status":409,"error":{"type":"version_conflict_engine_exception"}}}]}`
	bad := b.String() + `{"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"late failure"}}}]}`
	if len(ok) < 2<<20 {
		t.Fatalf("answer of %d bytes is not long", len(ok))
	}
	if n, err := deliverAll(t, Options{URL: newServer(t, 200, ok).URL, Format: ESBulk, Timeout: 5 * time.Second, MaxBatchBytes: 64 << 20}, many); err != nil || n != len(many) {
		t.Fatalf("created and conflicting items: %d delivered: %v", n, err)
	}
	if n, err := deliverAll(t, Options{URL: newServer(t, 200, bad).URL, Format: ESBulk, Timeout: 5 * time.Second, MaxBatchBytes: 64 << 20}, many); n != len(many)-1 || err == nil || !strings.Contains(err.Error(), "late failure") {
		t.Fatalf("the last item failed: %d delivered: %v", n, err)
	}
	if err := deliver(t, Options{URL: newServer(t, 200, `{"errors":false,"items":[{"create":`).URL, Format: ESBulk, Timeout: time.Second}); err == nil {
		t.Fatal("a cut answer counted as delivered")
	}
}

// Errors name the endpoint without its user-info.
func TestErrorsHideUserInfo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	for _, u := range []string{"http://alice:s3cr3t-pw@" + addr + "/hook", "http://alice@" + newServer(t, 500, "no").Listener.Addr().String() + "/"} {
		err := deliver(t, Options{URL: u, Format: JSON, Timeout: time.Second})
		if err == nil || strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), "s3cr3t") {
			t.Fatalf("error shows user-info: %v", err)
		}
	}
}

// A cancelled context ends a delivery that the request timeout would let
// hang on.
func TestContextEndsDelivery(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer hang.Close()
	defer close(release)
	s, err := New(Options{URL: hang.URL, Format: JSON, Timeout: time.Hour, MaxBatchBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := s.Deliver(ctx, alerts); err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("delivered: %v", err)
	}
}

// refusedIsAnError makes a refusal stop Send, for tests that expect none.
func refusedIsAnError(r sink.Refusal) error {
	return fmt.Errorf("refused %s: %s", r.Alert.Key, r.Reason)
}
