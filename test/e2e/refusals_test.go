package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	alertfmt "github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/state"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/bulkrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
)

// deadLetters reads the alerts set aside in a State_Dir the plugin has let
// go of.
func deadLetters(t *testing.T, dir string) []state.Dead {
	t.Helper()
	s, _, err := state.Open(state.Options{Dir: dir, MaxQueueBytes: 1 << 30, DedupMax: 1 << 20, DedupTTL: time.Hour, DeadLetterTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []state.Dead
	if err := s.EachDeadLetter(func(d state.Dead) error { out = append(out, d); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// An Elasticsearch that refuses one alert for good (a mapping error, 400
// on its item) while it indexes the others: the others are indexed once,
// the refused one is set aside after its strikes, logged once with its
// key, counted, and kept in the store; alerts after it are not held up.
func TestBulkReceiverRefusesOneAlert(t *testing.T) {
	es := bulkrecv.Start(t)
	es.Refuse(func(_ string, doc map[string]any) bool { return doc["event_id"] == "poison-000003" })
	flushes, want := quarantines(t, "poison", 40, 10)
	dir := t.TempDir()
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{kv("Alert_Output", "http", "HTTP_Format", "es_bulk", "HTTP_URL", es.URL+"/_bulk", "HTTP_Timeout", "1s", "State_Dir", dir)},
		Flushes:   flushes, PauseMS: 50, LingerMS: 4000, Retries: -1,
	})
	if res.ExitCode != 0 {
		t.Fatalf("exit %d\n%s", res.ExitCode, tail(res.Stderr))
	}
	poison := "aws.iam.quarantine_applied/poison-000003"
	indexed := map[string]int{}
	for _, d := range es.Docs() {
		indexed[fmt.Sprint(d["rule"].(map[string]any)["id"], "/", d["event_id"])]++
	}
	delete(want, poison)
	if m := missing(want, indexed); len(m) > 0 || len(indexed) != len(want) {
		t.Fatalf("%d indexed, missing %v\n%s", len(indexed), m, tail(res.Stderr))
	}
	if n := es.Refused()[poison]; n < 3 {
		t.Fatalf("set aside after %d refusals", n)
	}
	if n := strings.Count(res.Stderr, "set aside alert "+poison+", which the receiver refuses for good: es_bulk: item failed with 400 mapper_parsing_exception"); n != 1 {
		t.Fatalf("the refusal was logged %d times\n%s", n, tail(res.Stderr))
	}
	if !strings.Contains(res.Stderr, " dead_letter=1 ") || strings.Contains(res.Stderr, "stay in ") {
		t.Fatalf("exit line\n%s", tail(res.Stderr))
	}
	dead := deadLetters(t, dir)
	if len(dead) != 1 || dead[0].Key != poison || !strings.Contains(dead[0].Reason, "mapper_parsing_exception") {
		t.Fatalf("dead letters %+v", dead)
	}
}

// Alerts too big for the forward receiver (in_forward's buffer_max_size,
// as Forward_Max_Batch_Size says): one whose original event makes it too
// big is sent without it, marked event_truncated; one too big even so is
// set aside at once, never sent; the others arrive whole. The sizes are
// measured on the alerts themselves, whatever bounds the engine puts on
// record strings.
func TestForwardAlertTooBigForTheReceiver(t *testing.T) {
	base := quarantineApplied(t)
	withEvent := func(ev map[string]any) (full, cut int) {
		obs, _ := detect.New(detect.Options{}).Scan(chunkOf(ev), nil, nil)
		a := alertfmt.New(detect.Findings(obs)[0], true)
		c := a.Truncated()
		return len(a.AppendMsgpack(nil, alertfmt.Native)), len(c.AppendMsgpack(nil, alertfmt.Native))
	}
	normal := maps.Clone(base)
	normal["eventID"] = "normal"
	padded := maps.Clone(base)
	padded["eventID"] = "padded"
	padded["additionalEventData"] = map[string]any{"note": strings.Repeat("p", 6000)}
	huge := maps.Clone(base)
	huge["eventID"] = "huge"
	huge["userAgent"] = strings.Repeat("u", 6000)
	identity := maps.Clone(base["userIdentity"].(map[string]any))
	identity["arn"] = "arn:aws:iam::111122223333:user/" + strings.Repeat("n", 6000)
	huge["userIdentity"] = identity
	nFull, _ := withEvent(normal)
	pFull, pCut := withEvent(padded)
	_, hCut := withEvent(huge)
	// Room for one alert in a message: more than the normal alert whole and
	// the padded one cut, less than the padded one whole and the huge one
	// cut. Forward entries add 11 bytes, the message about 100.
	limit := max(nFull, pCut) + 200
	if limit >= min(pFull, hCut) {
		t.Fatalf("the fixtures no longer make alerts too big: normal %d, padded %d (cut %d), huge cut %d", nFull, pFull, pCut, hCut)
	}
	limit += 150 // the message's own bytes
	srv := forwardrecv.Start(t, forwardrecv.Options{BufferMaxSize: limit})
	dir := t.TempDir()
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{storeProps(srv.Port(), dir, "Forward_Max_Batch_Size", strconv.Itoa(limit), "Forward_Timeout", "30s")},
		Flushes:   []harness.Flush{{Tag: tag, Data: chunkOf(normal, padded, huge, maps.Clone(normal))}},
		LingerMS:  500,
	})
	entries := srv.WaitEntries(t, 2, 5*time.Second)
	got := map[string]map[string]any{}
	for _, e := range entries {
		got[e.Record["event_id"].(string)] = e.Record
	}
	if len(entries) != 2 || got["normal"] == nil || got["padded"] == nil {
		t.Fatalf("received %v\n%s", eventIDs(entries), tail(res.Stderr))
	}
	if got["normal"]["event"] == nil || got["normal"]["event_truncated"] != nil || got["padded"]["event"] != nil || got["padded"]["event_truncated"] != true {
		t.Fatalf("normal: event %v truncated %v; padded: event %v truncated %v", got["normal"]["event"] != nil, got["normal"]["event_truncated"],
			got["padded"]["event"] != nil, got["padded"]["event_truncated"])
	}
	if srv.Oversized() != 0 || !strings.Contains(res.Stderr, "set aside alert aws.iam.quarantine_applied/huge, which the receiver refuses for good: forward: the alert alone makes a message of") ||
		!strings.Contains(res.Stderr, " dead_letter=1 ") {
		t.Fatalf("%d oversized messages\n%s", srv.Oversized(), tail(res.Stderr))
	}
	if dead := deadLetters(t, dir); len(dead) != 1 || dead[0].Key != "aws.iam.quarantine_applied/huge" {
		t.Fatalf("dead letters %+v", dead)
	}
}

// An HTTP receiver that redirects (302 or 307, to another host over http,
// or to https): the delivery fails with an error naming where it points,
// without the query; the other end gets nothing, so neither the alerts
// nor the credentials leave for it; the alert waits and is delivered once
// HTTP_URL is right.
func TestHTTPRedirectsAreNotFollowed(t *testing.T) {
	var elsewhere atomic.Int64
	count := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) })
	other, otherTLS := httptest.NewServer(count), httptest.NewTLSServer(count)
	defer other.Close()
	defer otherTLS.Close()
	for _, c := range []struct {
		status int
		to     string
	}{
		{http.StatusFound, other.URL + "/hook?token=query-secret"},
		{http.StatusTemporaryRedirect, strings.Replace(other.URL, "127.0.0.1", "localhost", 1) + "/hook?token=query-secret"},
		{http.StatusTemporaryRedirect, otherTLS.URL + "/hook?token=query-secret"},
	} {
		t.Run(fmt.Sprint(c.status, " to ", strings.SplitN(c.to, ":", 2)[0]), func(t *testing.T) {
			redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, c.to, c.status) }))
			defer redirect.Close()
			dir := t.TempDir()
			props := []string{"Alert_Output", "http", "HTTP_URL", redirect.URL + "/hook", "HTTP_User", "alice", "HTTP_Passwd", "basic-pw-4711",
				"HTTP_Headers", "X-Api-Key: hdr-secret-4712", "State_Dir", dir}
			res := harness.Run(t, harness.Options{Instances: [][]harness.KV{kv(props...)}, Flushes: []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}}})
			want := fmt.Sprintf("%d %s, to %s: redirects are not followed", c.status, http.StatusText(c.status), strings.SplitN(c.to, "?", 2)[0])
			if !strings.Contains(res.Stderr, want) || strings.Contains(res.Stderr, "query-secret") || strings.Contains(res.Stderr, "basic-pw-4711") ||
				strings.Contains(res.Stderr, "hdr-secret-4712") || !strings.Contains(res.Stderr, "1 alert(s) stay in") {
				t.Fatalf("want %q\n%s", want, tail(res.Stderr))
			}
			// HTTP_URL set to where the alerts belong: the waiting alert goes.
			var got atomic.Int64
			right := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Add(1) }))
			defer right.Close()
			props[3] = right.URL + "/hook"
			harness.Run(t, harness.Options{Instances: [][]harness.KV{kv(props...)}})
			if got.Load() != 1 {
				t.Fatalf("%d requests to the right URL", got.Load())
			}
		})
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect targets got %d requests", n)
	}
}

// Without State_Dir, a receiver that takes the alerts and never acks
// (Forward_Timeout 1h) holds neither the flush nor the exit: the flush
// asks for a retry within 3 s and the exit cuts the delivery it left.
func TestExitWithoutStateDirIsBounded(t *testing.T) {
	mute := forwardrecv.Start(t, forwardrecv.Options{NoAck: true})
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(mute.Port()), "Forward_Timeout", "1h")},
		Flushes:   []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}},
		Retries:   -1,
		Timeout:   30 * time.Second,
	})
	if got := rcs(res); len(got) != 1 || got[0] != 2 || res.ExitCode != 0 ||
		!strings.Contains(res.Stderr, "the receiver has not answered within 3s: asking Fluent Bit to retry the chunk") {
		t.Fatalf("rcs %v exit %d\n%s", got, res.ExitCode, tail(res.Stderr))
	}
	if mute.Messages() != 1 {
		t.Fatalf("%d messages", mute.Messages())
	}
}

// A chunk whose alerts are more than Queue_Max_Size, into an empty queue
// with the receiver up: each attempt stores what fits and asks for a
// retry, saying so; the sender makes room; every alert arrives once.
func TestChunkBiggerThanTheQueueIsStoredInParts(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{})
	flushes, want := quarantines(t, "parts", 100, 100) // about 220 KB of alerts in one chunk
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{storeProps(srv.Port(), t.TempDir(), "Queue_Max_Size", "64K", "Forward_Timeout", "30s")},
		Flushes:   flushes, Retries: 30, RetryWaitMS: 200,
	})
	got := rcs(res)
	if len(got) < 2 || got[len(got)-1] != 1 {
		t.Fatalf("rcs %v\n%s", got, tail(res.Stderr))
	}
	if !strings.Contains(res.Stderr, "of 100 alert(s): the state store's queue is full (Queue_Max_Size 65536") ||
		!strings.Contains(res.Stderr, "the rest is stored as the sender delivers what waits") {
		t.Fatalf("warning\n%s", tail(res.Stderr))
	}
	waitComplete(t, want, func() map[string]int { return arrivals(srv.Entries()) })
	for k, n := range arrivals(srv.Entries()) {
		if n != 1 {
			t.Fatalf("%s arrived %d times", k, n)
		}
	}
}
