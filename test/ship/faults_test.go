package ship_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/loopback"
)

// fill puts n log files of per events each in S3 and announces each with
// a raw S3 event; it returns the event ids.
func (s *sqsSetup) fill(t *testing.T, queue, name string, n, per int) map[string]bool {
	t.Helper()
	want := map[string]bool{}
	day := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	for i := range n {
		f := fmt.Sprintf("%s%03d", name, i)
		key, data := logFile("111122223333", "us-east-1", day.Add(time.Duration(i)*time.Minute), f, per)
		s.s3.put(t, bucket, key, data)
		s.sqs.Send(t, queue, s3Event(bucket, key))
		for j := range per {
			want[fmt.Sprintf("%s-%d", f, j)] = true
		}
	}
	return want
}

func missing(want map[string]bool, got map[string]int) []string {
	var out []string
	for id := range want {
		if got[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// A corrupt object (a gzip cut short) and a missing one: their messages
// are never deleted; they come back after the visibility timeout, are
// counted, and the queue's redrive policy moves them to the dead-letter
// queue. The good message beside them ships and is deleted.
func TestShipCorruptObjectGoesToDeadLetterQueue(t *testing.T) {
	s := newSQSSetup(t, 1, 2)
	want := s.fill(t, "files", "good", 1, 20)
	key, data := logFile("111122223333", "us-east-1", time.Date(2026, 11, 2, 11, 0, 0, 0, time.UTC), "cut", 400)
	s.s3.put(t, bucket, key, data[:len(data)*2/3])
	s.sqs.Send(t, "files", s3Event(bucket, key))
	s.sqs.Send(t, "files", s3Event(bucket, "AWSLogs/111122223333/CloudTrail/us-east-1/2026/11/02/gone.json.gz"))
	metrics := loopback.FreeAddr(t)
	p := startShip(t, sharedKeyEnv, s.args("files", metrics)...)
	waitFor(t, "both bad messages in the dead-letter queue", time.Minute, func() bool { return s.sqs.Messages(t, "dlq") == 2 })
	waitFor(t, "the main queue empty", 10*time.Second, func() bool { return s.sqs.Messages(t, "files") == 0 })
	if got := ids(s.recv.Entries()); len(missing(want, got)) > 0 {
		t.Fatalf("missing %v", missing(want, got))
	}
	failed, redrive := scrape(t, metrics, "messages_failed_total"), scrape(t, metrics, "messages_left_for_redrive_total")
	if failed < 4 || redrive < 2 || scrape(t, metrics, "objects_failed_total") < 4 {
		t.Errorf("failed %v, left for redrive %v", failed, redrive)
	}
	p.signal(sigterm)
	p.wait(t, 10*time.Second)
	out := p.output()
	if !strings.Contains(out, "left for the redrive policy") || !strings.Contains(out, "gzip") || !strings.Contains(out, "gone.json.gz") {
		t.Errorf("log:\n%s", out)
	}
}

// Fluent Bit stops acknowledging: ship keeps its messages in flight
// (extending their visibility), stops receiving at --max-messages, and
// deletes nothing; when acks resume every event arrives and the queue
// empties.
func TestShipBackpressure(t *testing.T) {
	// Visibility 4 s, extended every 2 s: a late extension on a loaded
	// machine still lands in time.
	s := newSQSSetup(t, 4, 0)
	want := s.fill(t, "files", "bp", 12, 5)
	s.recv.SetAck(false)
	metrics := loopback.FreeAddr(t)
	p := startShip(t, sharedKeyEnv, s.args("files", metrics, "--max-messages", "3", "--ack-timeout", "1s")...)
	waitFor(t, "three messages in flight", 20*time.Second, func() bool { return scrape(t, metrics, "messages_in_flight") == 3 })
	before := s.sqs.Calls("ReceiveMessage")
	time.Sleep(9 * time.Second) // more than two visibility timeouts
	if after := s.sqs.Calls("ReceiveMessage"); after != before {
		t.Errorf("received while nothing was acknowledged: %d calls, then %d", before, after)
	}
	if v := scrape(t, metrics, "messages_received_total"); v != 3 {
		t.Errorf("received %v messages: in-flight messages came back (visibility not extended?)", v)
	}
	if scrape(t, metrics, "visibility_extensions_total") < 3 || scrape(t, metrics, "retries_total") < 1 {
		t.Errorf("no visibility extended or no retry:\n%s", p.output())
	}
	if n := s.sqs.Messages(t, "files"); n != 12 || scrape(t, metrics, "messages_deleted_total") != 0 {
		t.Fatalf("%d messages left, want all 12", n)
	}
	s.recv.SetAck(true)
	waitFor(t, "the queue empty", time.Minute, func() bool { return s.sqs.Messages(t, "files") == 0 })
	if m := missing(want, ids(s.recv.Entries())); len(m) > 0 {
		t.Fatalf("missing %v", m)
	}
	p.signal(sigterm)
	p.wait(t, 10*time.Second)
}

// killTap sits between ship and the forward receiver and SIGKILLs ship at
// an exact point of the stream: at the receiver's at-th acknowledgement,
// which ship either never reads (the records are stored, ship does not
// know) or has just been handed. ship delivers thousands of events a
// second; a test that watches the receiver and then kills lands hundreds
// of events late, past the end of the queue.
type killTap struct {
	ln   net.Listener
	recv string

	mu sync.Mutex
	// round counts arm's calls: a connection from an earlier round is a
	// killed shipper's, and what the receiver still answers it is dropped.
	round    int
	at, acks int
	heard    bool
	victim   *proc
	due      bool // the at-th acknowledgement came
	fired    chan struct{}
	passed   int // acknowledgements written to ship, in all
}

func startKillTap(t *testing.T, recv string) *killTap {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "tap.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	k := &killTap{ln: ln, recv: recv}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			k.mu.Lock()
			round := k.round
			k.mu.Unlock()
			go k.relay(c, round)
		}
	}()
	return k
}

func (k *killTap) addr() string { return k.ln.Addr().String() }

// arm starts a round: the at-th acknowledgement from now kills the
// shipper aim names; the channel is closed once it is killed.
func (k *killTap) arm(at int, heard bool) <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.round++
	k.at, k.acks, k.heard, k.victim, k.due, k.fired = at, 0, heard, nil, false, make(chan struct{})
	return k.fired
}

// aim names the round's shipper, started after arm so that all its
// connections are the round's.
func (k *killTap) aim(p *proc) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.victim = p
	k.kill()
}

// kill, with k.mu held, once the acknowledgement came and the shipper is
// known.
func (k *killTap) kill() {
	if k.due && k.victim != nil {
		k.victim.signal(syscall.SIGKILL)
		k.due = false
		close(k.fired)
	}
}

func (k *killTap) written() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.passed
}

// relay copies one connection: ship's side as it comes, the receiver's an
// msgpack object at a time (the handshake's HELO and PONG are arrays,
// acknowledgements maps).
func (k *killTap) relay(ship net.Conn, round int) {
	defer ship.Close()
	recv, err := net.Dial("unix", k.recv)
	if err != nil {
		return
	}
	defer recv.Close()
	go func() {
		io.Copy(recv, ship)
		recv.Close()
	}()
	rd := msgp.NewReader(recv)
	var obj bytes.Buffer
	for {
		obj.Reset()
		if _, err := rd.CopyNext(&obj); err != nil {
			return
		}
		if msgp.NextType(obj.Bytes()) != msgp.MapType {
			if _, err := ship.Write(obj.Bytes()); err != nil {
				return
			}
		} else if !k.ack(ship, round, obj.Bytes()) {
			return
		}
	}
}

// ack passes one acknowledgement on, or kills at the armed one (and drops
// those after it: nobody reads them).
func (k *killTap) ack(ship net.Conn, round int, ack []byte) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if round != k.round {
		return false
	}
	k.acks++
	if k.acks > k.at {
		return false
	}
	if k.acks == k.at {
		if k.heard {
			k.write(ship, ack)
		}
		k.due = true
		k.kill()
		return false
	}
	return k.write(ship, ack)
}

func (k *killTap) write(ship net.Conn, ack []byte) bool {
	if _, err := ship.Write(ack); err != nil {
		return false
	}
	k.passed++
	return true
}

// SIGKILL at seeded random points, again and again: at a seeded
// acknowledgement of the receiver's, which ship never reads or has just
// been handed, while its other messages are anywhere between received
// and deleted. No event is lost; the repeats are bounded by what was in
// flight at each kill (--max-messages messages of per events each), and
// at least the events of each acknowledgement ship never read come
// again (their message was not deleted). Each shipper is killed within
// files/(kills+2) acknowledgements, so the messages never acknowledged
// are still queued at the last kill: every kill lands mid-stream.
func TestShipSIGKILL(t *testing.T) {
	s := newSQSSetup(t, 2, 0)
	const files, per, inFlight, kills = 120, 30, 4, 6
	const ackMax = files / (kills + 2) // one acknowledgement per message: 30 of 120 never acknowledged
	want := s.fill(t, "files", "k", files, per)
	tap := startKillTap(t, s.recv.Addr())
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("seed %d", seed)
	unheard := 0
	for k := range kills {
		at, heard := 1+rng.Intn(ackMax), rng.Intn(2) == 0
		if !heard {
			unheard++
		}
		fired := tap.arm(at, heard)
		// The last --forward wins: ship talks to the tap.
		p := startShip(t, sharedKeyEnv, s.args("files", loopback.FreeAddr(t), "--max-messages", fmt.Sprint(inFlight), "--workers", "2",
			"--forward", "unix://"+tap.addr())...)
		tap.aim(p)
		select {
		case <-fired:
		case <-time.After(time.Minute):
			t.Fatalf("seed %d: kill %d: no acknowledgement %d after 1m0s (%d records)", seed, k, at, len(s.recv.Entries()))
		}
		p.wait(t, 10*time.Second)
	}
	// A message is deleted only once ship read its acknowledgement.
	if n, acked := s.sqs.Messages(t, "files"), tap.written(); n < files-acked {
		t.Fatalf("seed %d: %d messages queued at the last kill, %d acknowledgements handed to ship: messages deleted unacknowledged", seed, n, acked)
	}
	p := startShip(t, sharedKeyEnv, s.args("files", loopback.FreeAddr(t), "--max-messages", fmt.Sprint(inFlight))...)
	waitFor(t, "the queue empty", 2*time.Minute, func() bool { return s.sqs.Messages(t, "files") == 0 })
	p.signal(sigterm)
	p.wait(t, 10*time.Second)
	got := ids(s.recv.Entries())
	if m := missing(want, got); len(m) > 0 {
		t.Fatalf("seed %d: %d events lost after %d kills, e.g. %v", seed, len(m), kills, m[:min(5, len(m))])
	}
	repeats := len(s.recv.Entries()) - len(got)
	if bound := kills * inFlight * per; repeats > bound {
		t.Fatalf("seed %d: %d repeats after %d kills, more than the %d in flight", seed, repeats, kills, bound)
	}
	if least := unheard * per; repeats < least {
		t.Fatalf("seed %d: %d repeats, fewer than the %d events of the %d acknowledgements ship never read: a message deleted unacknowledged", seed, repeats, least, unheard)
	}
	t.Logf("%d kills (%d before ship read the acknowledgement), %d events, %d repeats", kills, unheard, len(got), repeats)
}

// Two shippers on one queue: competing consumers; every event arrives,
// the queue empties, both took a share.
func TestShipCompetingConsumers(t *testing.T) {
	s := newSQSSetup(t, 5, 0)
	want := s.fill(t, "files", "cc", 40, 20)
	m1, m2 := loopback.FreeAddr(t), loopback.FreeAddr(t)
	p1 := startShip(t, sharedKeyEnv, s.args("files", m1, "--max-messages", "2", "--workers", "1")...)
	p2 := startShip(t, sharedKeyEnv, s.args("files", m2, "--max-messages", "2", "--workers", "1")...)
	waitFor(t, "the queue empty", time.Minute, func() bool { return s.sqs.Messages(t, "files") == 0 })
	d1, d2 := scrape(t, m1, "messages_deleted_total"), scrape(t, m2, "messages_deleted_total")
	p1.signal(sigterm)
	p2.signal(sigterm)
	p1.wait(t, 10*time.Second)
	p2.wait(t, 10*time.Second)
	if m := missing(want, ids(s.recv.Entries())); len(m) > 0 {
		t.Fatalf("missing %v", m)
	}
	if d1 == 0 || d2 == 0 || d1+d2 < 40 {
		t.Errorf("deleted %v and %v of 40", d1, d2)
	}
}

// SIGTERM while Fluent Bit acknowledges nothing: ship exits within
// --shutdown-timeout, deletes nothing, and gives its messages back at
// once (visibility 0), so a new shipper takes them without waiting.
func TestShipSIGTERMBound(t *testing.T) {
	s := newSQSSetup(t, 60, 0)
	want := s.fill(t, "files", "term", 6, 10)
	s.recv.SetAck(false)
	metrics := loopback.FreeAddr(t)
	p := startShip(t, sharedKeyEnv, s.args("files", metrics, "--max-messages", "6", "--ack-timeout", "1s", "--shutdown-timeout", "3s")...)
	waitFor(t, "six messages in flight", 20*time.Second, func() bool { return scrape(t, metrics, "messages_in_flight") == 6 })
	start := time.Now()
	p.signal(sigterm)
	code := p.wait(t, 20*time.Second)
	took := time.Since(start)
	// The bound is the flag; the margin is a process's exit on a loaded
	// machine, not ship's.
	if took > 3*time.Second+2*time.Second {
		t.Errorf("exit %d took %v after SIGTERM, bound 3s", code, took)
	}
	if n := s.sqs.Messages(t, "files"); n != 6 {
		t.Fatalf("%d messages left, want 6 (nothing acknowledged)", n)
	}
	if !strings.Contains(p.output(), "exit: messages 6 (deleted 0") {
		t.Errorf("log:\n%s", p.output())
	}
	// Given back: a new shipper gets them long before the 60s timeout.
	s.recv.SetAck(true)
	p2 := startShip(t, sharedKeyEnv, s.args("files", loopback.FreeAddr(t))...)
	waitFor(t, "the queue empty", 30*time.Second, func() bool { return s.sqs.Messages(t, "files") == 0 })
	p2.signal(sigterm)
	p2.wait(t, 10*time.Second)
	if m := missing(want, ids(s.recv.Entries())); len(m) > 0 {
		t.Fatalf("missing %v", m)
	}
}
