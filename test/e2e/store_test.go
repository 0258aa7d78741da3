package e2e

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/loopback"
)

// storeProps configure a forward instance with a store; extra keys come
// first, so they win over the defaults here (Fluent Bit, and the harness,
// give the first of a repeated key).
func storeProps(port int, dir string, extra ...string) []harness.KV {
	return kv(append(extra, "Alert_Output", "forward", "Forward_Port", strconv.Itoa(port), "Forward_Timeout", "500ms",
		"State_Dir", dir)...)
}

func eventIDs(entries []forwardrecv.Entry) []string {
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Record["event_id"].(string))
	}
	return ids
}

func positiveChunks(t *testing.T, rule string) ([][]byte, []string) {
	var chunks [][]byte
	var ids []string
	for _, e := range fixtures(t, rule, "positive") {
		chunks = append(chunks, chunkOf(e))
		ids = append(ids, e["eventID"].(string))
	}
	return chunks, ids
}

// The receiver is down while Fluent Bit runs: the flushes succeed because
// the alerts are spooled; Fluent Bit restarts, the receiver is up, and the
// spool is delivered after Init, in order, each alert once.
func TestSpoolSurvivesRestart(t *testing.T) {
	closed := forwardrecv.Start(t, forwardrecv.Options{})
	addr, port := closed.Addr(), closed.Port()
	closed.Close()
	dir := filepath.Join(t.TempDir(), "spool")
	chunks, ids := positiveChunks(t, "aws.iam.quarantine_applied")
	var flushes []harness.Flush
	for _, c := range chunks {
		flushes = append(flushes, harness.Flush{Tag: tag, Data: c})
	}
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(port, dir)}, Flushes: flushes, Retries: -1})
	if res.Summary["ok"] != int64(len(chunks)) || !strings.Contains(res.Stderr, "stay in ") {
		t.Fatalf("first run: %v\n%s", res.Summary, tail(res.Stderr))
	}
	// The sender's failed rounds are counted (the stats line and metrics).
	if m := regexp.MustCompile(`exit: .* delivery_failures=(\d+) `).FindStringSubmatch(res.Stderr); m == nil || m[1] == "0" {
		t.Errorf("the failed deliveries are not counted: %v\n%s", m, tail(res.Stderr))
	}

	srv := forwardrecv.Start(t, forwardrecv.Options{Address: addr})
	res = harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(port, dir)}})
	if !strings.Contains(res.Stderr, "undelivered alert(s) from an earlier run") {
		t.Fatalf("second run did not pick up the spool:\n%s", tail(res.Stderr))
	}
	if got := eventIDs(srv.WaitEntries(t, len(ids), 5*time.Second)); !slices.Equal(got, ids) {
		t.Fatalf("receiver got %v, want %v in order", got, ids)
	}
	if strings.Contains(res.Stderr, "stay in ") {
		t.Fatalf("spool not drained:\n%s", tail(res.Stderr))
	}
}

// The receiver loses the first message (no ack): that batch is spooled,
// later alerts queue behind it, and all arrive once, in order.
func TestSpoolKeepsOrder(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{DropFirst: 1})
	chunks, ids := positiveChunks(t, "aws.iam.quarantine_removed")
	var flushes []harness.Flush
	for _, c := range chunks {
		flushes = append(flushes, harness.Flush{Tag: tag, Data: c})
	}
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{storeProps(srv.Port(), filepath.Join(t.TempDir(), "spool"))},
		Flushes:   flushes,
		Retries:   -1,
	})
	if res.Summary["ok"] != int64(len(chunks)) {
		t.Fatalf("%v\n%s", res.Summary, tail(res.Stderr))
	}
	if got := eventIDs(srv.WaitEntries(t, len(ids), 5*time.Second)); !slices.Equal(got, ids) {
		t.Fatalf("receiver got %v, want %v", got, ids)
	}
}

// An unusable spool, or one too small for an alert even without its
// event: a clear error, and nothing silently dropped.
func TestSpoolUnusableOrFull(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	os.WriteFile(file, nil, 0o600)
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(1, file)}})
	if res.ExitCode != 1 || !strings.Contains(res.Stderr, "invalid configuration: State_Dir: mkdir "+file+": not a directory") {
		t.Fatalf("exit %d\n%s", res.ExitCode, res.Stderr)
	}

	closed := forwardrecv.Start(t, forwardrecv.Options{})
	port := closed.Port()
	closed.Close()
	res = harness.Run(t, harness.Options{
		Instances: [][]harness.KV{storeProps(port, filepath.Join(t.TempDir(), "spool"), "Queue_Max_Size", "200")},
		Flushes:   []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}},
		Retries:   1,
	})
	if got := rcs(res); !slices.Equal(got, []int{2, 2}) || !strings.Contains(res.Stderr, "bytes stored, more than Queue_Max_Size (200) holds: it cannot be kept until Queue_Max_Size is raised") {
		t.Fatalf("rcs %v\n%s", got, tail(res.Stderr))
	}
}

// A receiver that accepts but never acks: nothing counts as delivered, the
// alerts stay spooled through exit, and the next run delivers them to a
// receiver that acks.
func TestSpoolWithReceiverThatNeverAcks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	mute := forwardrecv.Start(t, forwardrecv.Options{NoAck: true})
	chunks, ids := positiveChunks(t, "aws.iam.quarantine_attempt_failed")
	var flushes []harness.Flush
	for _, c := range chunks {
		flushes = append(flushes, harness.Flush{Tag: tag, Data: c})
	}
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(mute.Port(), dir, "Forward_Timeout", "200ms")}, Flushes: flushes})
	if res.Summary["ok"] != int64(len(chunks)) || !strings.Contains(res.Stderr, "stay in ") {
		t.Fatalf("%v\n%s", res.Summary, tail(res.Stderr))
	}
	good := forwardrecv.Start(t, forwardrecv.Options{})
	harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(good.Port(), dir)}})
	if got := eventIDs(good.WaitEntries(t, len(ids), 5*time.Second)); !slices.Equal(got, ids) {
		t.Fatalf("got %v, want %v", got, ids)
	}
}

// Two instances with their own spools, two workers each, a receiver that
// drops its first message and closes after every one: every alert arrives
// exactly once.
func TestSpoolTwoInstancesWorkersUnderFaults(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{DropFirst: 2, CloseAfterEach: true})
	var flushes []harness.Flush
	want := map[string]bool{}
	for inst, rule := range []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_removed"} {
		for _, e := range fixtures(t, rule, "positive") {
			c := chunkOf(e)
			flushes = append(flushes, harness.Flush{Instance: inst, Tag: tag, Data: c}, harness.Flush{Instance: inst, Tag: tag, Data: c})
			want[e["eventID"].(string)] = true
		}
	}
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{
			storeProps(srv.Port(), filepath.Join(t.TempDir(), "spool-a")),
			storeProps(srv.Port(), filepath.Join(t.TempDir(), "spool-b")),
		},
		Flushes: flushes,
		Workers: 2,
		Loops:   3,
	})
	if res.Summary["ok"] != int64(3*len(flushes)) {
		t.Fatalf("%v\n%s", res.Summary, tail(res.Stderr))
	}
	srv.WaitEntries(t, len(want), 5*time.Second)
	seen := map[string]int{}
	for _, id := range eventIDs(srv.Entries()) {
		seen[id]++
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("%s arrived %d times", id, seen[id])
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d distinct alerts, want %d", len(seen), len(want))
	}
}

// flushesOf makes one flush per example event of rule, and their ids.
func flushesOf(t *testing.T, rule string) ([]harness.Flush, []string) {
	chunks, ids := positiveChunks(t, rule)
	var flushes []harness.Flush
	for _, c := range chunks {
		flushes = append(flushes, harness.Flush{Tag: tag, Data: c})
	}
	return flushes, ids
}

// freeAddress is a loopback address nothing listens on (yet).
func freeAddress(t *testing.T) (string, int) {
	addr := loopback.FreeAddr(t)
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	return addr, port
}

// The receiver is down when Fluent Bit starts and comes up while it runs:
// what could not be sent is spooled and follows once it is up, in order.
func TestReceiverDownAtStartUpLater(t *testing.T) {
	addr, port := freeAddress(t)
	flushes, ids := flushesOf(t, "aws.iam.quarantine_applied")
	p := harness.Start(t, harness.Options{
		Instances: [][]harness.KV{storeProps(port, filepath.Join(t.TempDir(), "spool"))},
		Flushes:   flushes, PauseMS: 150, Retries: -1,
	})
	time.Sleep(400 * time.Millisecond)
	srv := forwardrecv.Start(t, forwardrecv.Options{Address: addr})
	res := p.Wait()
	if res.Summary["ok"] != int64(len(flushes)) {
		t.Fatalf("%v\n%s", res.Summary, tail(res.Stderr))
	}
	if got := eventIDs(srv.WaitEntries(t, len(ids), 5*time.Second)); !slices.Equal(got, ids) {
		t.Fatalf("receiver got %v, want %v\n%s", got, ids, tail(res.Stderr))
	}
}

// The receiver is killed mid-stream and restarted: between the two
// receivers every alert arrives once, in order.
func TestReceiverKilledMidStream(t *testing.T) {
	first := forwardrecv.Start(t, forwardrecv.Options{})
	addr := first.Addr()
	flushes, ids := flushesOf(t, "aws.iam.quarantine_applied")
	p := harness.Start(t, harness.Options{
		Instances: [][]harness.KV{storeProps(first.Port(), filepath.Join(t.TempDir(), "spool"))},
		Flushes:   flushes, PauseMS: 200, Retries: -1,
	})
	first.WaitEntries(t, 2, 5*time.Second)
	first.Close()
	time.Sleep(500 * time.Millisecond)
	second := forwardrecv.Start(t, forwardrecv.Options{Address: addr})
	res := p.Wait()
	if res.Summary["ok"] != int64(len(flushes)) {
		t.Fatalf("%v\n%s", res.Summary, tail(res.Stderr))
	}
	second.WaitEntries(t, len(ids)-len(first.Entries()), 5*time.Second)
	got := append(eventIDs(first.Entries()), eventIDs(second.Entries())...)
	if !slices.Equal(got, ids) {
		t.Fatalf("receivers got %v, want %v\n%s", got, ids, tail(res.Stderr))
	}
}

// A receiver that reads one byte a second never acks in time: flushes do
// not hang, the alert waits in the spool, and the next run delivers it.
func TestSlowReceiver(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	slow := forwardrecv.Start(t, forwardrecv.Options{SlowRead: true})
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{storeProps(slow.Port(), dir, "Forward_Timeout", "300ms")},
		Flushes:   []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}},
	})
	if got := rcs(res); !slices.Equal(got, []int{1}) || !strings.Contains(res.Stderr, "stay in ") {
		t.Fatalf("rcs %v\n%s", got, tail(res.Stderr))
	}
	good := forwardrecv.Start(t, forwardrecv.Options{})
	harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(good.Port(), dir)}})
	if n := len(good.WaitEntries(t, 1, 5*time.Second)); n != 1 {
		t.Fatalf("good receiver got %d", n)
	}
}

// The spool fills while the receiver is down: the chunk that does not fit
// is answered with RETRY; when the receiver comes up the spool drains, the
// re-delivered chunk goes through, and every alert arrives once.
func TestSpoolFullThenRetry(t *testing.T) {
	addr, port := freeAddress(t)
	removed := fixtures(t, "aws.iam.quarantine_removed", "positive")
	p := harness.Start(t, harness.Options{
		// Room for two alerts (about 1.6 KB each): the second chunk's two cannot
		// join the first.
		Instances: [][]harness.KV{storeProps(port, filepath.Join(t.TempDir(), "spool"), "Queue_Max_Size", "4K", "Include_Event", "off")},
		Flushes:   []harness.Flush{{Tag: tag, Data: chunkOf(removed[0])}, {Tag: tag, Data: chunkOf(removed[1], removed[2])}},
		Retries:   5, RetryWaitMS: 400,
	})
	time.Sleep(300 * time.Millisecond)
	srv := forwardrecv.Start(t, forwardrecv.Options{Address: addr})
	res := p.Wait()
	if got := rcs(res); len(got) < 3 || got[0] != 1 || got[1] != 2 || got[len(got)-1] != 1 || !strings.Contains(res.Stderr, "queue is full") {
		t.Fatalf("rcs %v\n%s", got, tail(res.Stderr))
	}
	want := []string{removed[0]["eventID"].(string), removed[1]["eventID"].(string), removed[2]["eventID"].(string)}
	if got := eventIDs(srv.WaitEntries(t, 3, 5*time.Second)); !slices.Equal(got, want) {
		t.Fatalf("receiver got %v, want %v", got, want)
	}
}

// Alerts stored while one output was down go to whatever output the next
// start configures, in its format: stored for forward, delivered to a file
// as ECS after the switch, each once and in order.
func TestPendingAlertsFollowAChangedOutput(t *testing.T) {
	closed := forwardrecv.Start(t, forwardrecv.Options{})
	port := closed.Port()
	closed.Close()
	dir := filepath.Join(t.TempDir(), "state")
	chunks, ids := positiveChunks(t, "aws.iam.quarantine_applied")
	var flushes []harness.Flush
	for _, c := range chunks {
		flushes = append(flushes, harness.Flush{Tag: tag, Data: c})
	}
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(port, dir)}, Flushes: flushes})
	if !strings.Contains(res.Stderr, strconv.Itoa(len(ids))+" alert(s) stay in ") {
		t.Fatalf("first run did not keep the alerts:\n%s", tail(res.Stderr))
	}
	out := filepath.Join(t.TempDir(), "alerts.json")
	res = harness.Run(t, harness.Options{Instances: [][]harness.KV{kv("Alert_Output", "file", "File_Path", out, "Alert_Format", "ecs", "State_Dir", dir)}})
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(res.Stderr))
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var doc map[string]any
		if err := json.Unmarshal([]byte(line), &doc); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		ev, _ := doc["event"].(map[string]any)
		if doc["ecs"] == nil || ev == nil || ev["kind"] != "alert" {
			t.Fatalf("not an ECS alert: %s", line)
		}
		got = append(got, ev["id"].(string))
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("file got %v, want %v in order", got, ids)
	}
}
