package httpsink

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
)

// A 302 or 307, to another host or another scheme, is a failed delivery
// naming where it points, without the query; nothing reaches the other
// end, so neither the alerts nor the credentials leave for it.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	for _, c := range []struct {
		status int
		to     string
	}{
		{http.StatusFound, other.URL + "/hook?token=query-secret"},
		{http.StatusTemporaryRedirect, other.URL + "/hook?token=query-secret"},
		{http.StatusTemporaryRedirect, "https://elsewhere.invalid/hook?token=query-secret#frag"},
		{http.StatusPermanentRedirect, "/relative/path?token=query-secret"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, c.to, c.status)
		}))
		err := deliver(t, Options{URL: srv.URL, Format: JSON, Timeout: time.Second, User: "alice", Password: "basic-pw", Headers: [][2]string{{"X-Api-Key", "hdr-secret"}}})
		srv.Close()
		want := strings.SplitN(strings.SplitN(c.to, "?", 2)[0], "#", 2)[0]
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d", c.status)) || !strings.Contains(err.Error(), want+":") ||
			!strings.Contains(err.Error(), "redirects are not followed") {
			t.Errorf("%d to %s: %v", c.status, c.to, err)
			continue
		}
		if strings.Contains(err.Error(), "query-secret") || strings.Contains(err.Error(), "frag") {
			t.Errorf("the error shows the location's query: %v", err)
		}
		var refused *sink.RefusedError
		if errors.As(err, &refused) {
			t.Errorf("a redirect is held against the alerts: %v", err)
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

// What a retry can fix is retried; what it cannot is a refusal the sender
// isolates: 400, 413 and 422 refuse the alerts; 401, 403, 404 and 429 are
// about the endpoint; 429 and 503 with Retry-After say how long to wait.
func TestAnswersAreClassified(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, c := range []struct {
		status     int
		retryAfter string
		refused    bool
		wait       time.Duration // at least
	}{
		{400, "", true, 0}, {413, "", true, 0}, {422, "", true, 0}, {409, "", true, 0},
		{401, "", false, 0}, {403, "", false, 0}, {404, "", false, 0}, {408, "", false, 0},
		{429, "7", false, 7 * time.Second}, {503, date, false, 80 * time.Second}, {500, "", false, 0}, {429, "soon", false, 0},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c.retryAfter != "" {
				w.Header().Set("Retry-After", c.retryAfter)
			}
			http.Error(w, "answer", c.status)
		}))
		s, _ := New(Options{URL: srv.URL, Format: JSON, Timeout: time.Second, MaxBatchBytes: 1 << 20})
		err := s.Deliver(context.Background(), alerts)
		srv.Close()
		var refused *sink.RefusedError
		if err == nil || errors.As(err, &refused) != c.refused || refused != nil && refused.Final {
			t.Errorf("%d: refused=%v: %v", c.status, refused, err)
		}
		if got := sink.RetryAfter(err); got < c.wait || c.wait == 0 && got != 0 || got > c.wait+15*time.Second {
			t.Errorf("%d Retry-After %q: wait %v", c.status, c.retryAfter, got)
		}
	}
}

// Every item of a bulk answer is matched to its alert: an answer with
// fewer items leaves the rest undelivered, an item for another _id makes
// the answer unreadable, a refused item refuses its alert only, a 429 item
// fails its alert only.
func TestBulkItemsAreAccountedFor(t *testing.T) {
	three := append(append([]sink.Alert{}, alerts...), sink.Alert{Time: time.Unix(1763626544, 0), Key: "aws.iam.quarantine_applied/e-3", Doc: []byte(`{}`)})
	item := func(i int, status string) string {
		return fmt.Sprintf(`{"create":{"_id":%q,%s}}`, three[i].Key, status)
	}
	ok := `"status":201`
	for name, c := range map[string]struct {
		answer    string
		delivered []bool
		refused   int // index, -1: none
		failed    bool
	}{
		"fewer items": {`{"items":[` + item(0, ok) + `]}`, []bool{true, false, false}, -1, true},
		"one refused": {`{"items":[` + item(0, ok) + "," + item(1, `"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}`) + "," + item(2, ok) + `]}`,
			[]bool{true, false, true}, 1, false},
		"one busy": {`{"items":[` + item(0, `"status":429,"error":{"type":"es_rejected_execution_exception"}`) + "," + item(1, ok) + "," + item(2, ok) + `]}`,
			[]bool{false, true, true}, -1, true},
	} {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, 200, c.answer)
			s, _ := New(Options{URL: srv.URL, Format: ESBulk, Timeout: time.Second, MaxBatchBytes: 1 << 20})
			var items *sink.ItemsError
			if err := s.Deliver(context.Background(), three); !errors.As(err, &items) {
				t.Fatalf("not an items error: %v", err)
			}
			for i := range three {
				if items.Delivered[i] != c.delivered[i] || (items.Refused[i] != "") != (i == c.refused) {
					t.Errorf("alert %d: delivered %v refused %q", i, items.Delivered[i], items.Refused[i])
				}
			}
			if (items.Err != nil) != c.failed {
				t.Errorf("failed: %v", items.Err)
			}
		})
	}
	srv := newServer(t, 200, `{"items":[`+item(1, ok)+","+item(0, ok)+","+item(2, ok)+`]}`)
	s, _ := New(Options{URL: srv.URL, Format: ESBulk, Timeout: time.Second, MaxBatchBytes: 1 << 20})
	var items *sink.ItemsError
	if err := s.Deliver(context.Background(), three); err == nil || errors.As(err, &items) || !strings.Contains(err.Error(), "is for _id") {
		t.Fatalf("items out of order: %v", err)
	}
	srv = newServer(t, 200, `{"items":[`+item(0, ok)+","+item(1, ok)+","+item(2, ok)+","+item(2, ok)+`]}`)
	s, _ = New(Options{URL: srv.URL, Format: ESBulk, Timeout: time.Second, MaxBatchBytes: 1 << 20})
	if err := s.Deliver(context.Background(), three); err == nil {
		t.Fatal("more items than actions counted as delivered")
	}
}

// An alert key of 40,000 characters makes an _id within Elasticsearch's
// 512 bytes, the same at every attempt.
func TestLongKeyMakesAValidID(t *testing.T) {
	long := sink.Alert{Key: "aws.iam.quarantine_attempt_failed/" + strings.Repeat("é", 20000), Doc: []byte(`{}`)}
	srv := newBulkServer(t, nil)
	if n, err := deliverAll(t, Options{URL: srv.URL, Format: ESBulk, Timeout: time.Second}, []sink.Alert{long, alerts[0]}); err != nil || n != 2 {
		t.Fatalf("%d delivered: %v", n, err)
	}
	action := strings.SplitN(string(srv.body), "\n", 2)[0]
	if len(action) > 512+40 || !strings.Contains(action, "~sha256:") {
		t.Fatalf("action line of %d bytes: %.200s", len(action), action)
	}
	if bulkID(long.Key) != bulkID(long.Key) || len(bulkID(long.Key)) > 512 {
		t.Fatal("unstable or long _id")
	}
}
