package forward_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink/forward"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/tlstest"
)

func alerts(prefix string, n int) []sink.Alert {
	var out []sink.Alert
	for i := range n {
		rec := msgp.AppendMapHeader(nil, 1)
		rec = msgp.AppendString(rec, "event_id")
		rec = msgp.AppendString(rec, fmt.Sprintf("%s-%d", prefix, i))
		out = append(out, sink.Alert{Time: time.Unix(1763626542, int64(i)*1000+7), Key: fmt.Sprint(i), Doc: rec})
	}
	return out
}

// deliver sends a batch in the batches the sink cuts, as the plugin does,
// and insists that success means every alert arrived.
func deliver(s *forward.Sink, alerts []sink.Alert) error {
	n, err := sink.Send(context.Background(), s, alerts, sink.Handler{Done: func([]sink.Alert) error { return nil }, Refused: refusedIsAnError})
	if err == nil && n != len(alerts) {
		return fmt.Errorf("delivered %d of %d without an error", n, len(alerts))
	}
	return err
}

func newSink(t *testing.T, network, addr string, timeout time.Duration) *forward.Sink {
	t.Helper()
	s, err := forward.New(forward.Options{Network: network, Address: addr, Tag: "sec.alerts", Timeout: timeout, MaxBatchBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestDeliverTCPAndUnix(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := forwardrecv.Start(t, forwardrecv.Options{Network: network})
			s := newSink(t, network, srv.Addr(), 2*time.Second)
			batch := alerts("a", 3)
			if err := deliver(s, batch); err != nil {
				t.Fatal(err)
			}
			got := srv.Entries()
			if len(got) != 3 || srv.Messages() != 1 {
				t.Fatalf("%d entries in %d messages, want 3 in 1", len(got), srv.Messages())
			}
			for i, e := range got {
				if e.Tag != "sec.alerts" || !e.Time.Equal(batch[i].Time) || !bytes.Equal(e.Raw, batch[i].Doc) {
					t.Errorf("entry %d: %+v", i, e)
				}
				if e.Time.Nanosecond() != batch[i].Time.Nanosecond() {
					t.Errorf("entry %d: %d ns, want %d", i, e.Time.Nanosecond(), batch[i].Time.Nanosecond())
				}
			}
		})
	}
}

func TestEmptyBatchIsNoOp(t *testing.T) {
	s := newSink(t, "tcp", "127.0.0.1:1", time.Second)
	if err := deliver(s, nil); err != nil {
		t.Fatal(err)
	}
}

func TestNoAckTimesOut(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{NoAck: true})
	s := newSink(t, "tcp", srv.Addr(), 200*time.Millisecond)
	err := deliver(s, alerts("a", 1))
	want := "forward tcp " + srv.Addr() + ": no ack within 200ms"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestNothingListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadTCP := ln.Addr().String()
	ln.Close()
	for network, addr := range map[string]string{"tcp": deadTCP, "unix": filepath.Join(t.TempDir(), "absent.sock")} {
		s := newSink(t, network, addr, time.Second)
		if err := deliver(s, alerts("a", 1)); err == nil || !strings.Contains(err.Error(), addr) {
			t.Errorf("%s: got %v", network, err)
		}
	}
}

// A kept connection that died while idle (receiver restarted) costs one
// silent reconnect, not a failed delivery.
func TestReconnectsAfterReceiverRestart(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := forwardrecv.Start(t, forwardrecv.Options{Network: network})
			addr := srv.Addr()
			s := newSink(t, network, addr, 2*time.Second)
			if err := deliver(s, alerts("a", 1)); err != nil {
				t.Fatal(err)
			}
			srv.Close()
			srv2 := forwardrecv.Start(t, forwardrecv.Options{Network: network, Address: addr})
			if err := deliver(s, alerts("b", 2)); err != nil {
				t.Fatalf("after restart: %v", err)
			}
			if n, m := len(srv2.Entries()), srv2.Messages(); n != 2 || m != 1 {
				t.Fatalf("restarted receiver got %d entries in %d messages", n, m)
			}
		})
	}
}

// The receiver reads the batch and crashes before acking: Deliver fails
// (a fresh connection gets no second try), the same batch sent again
// arrives exactly once.
func TestUnackedBatchIsNotDelivered(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{DropFirst: 1})
	s := newSink(t, "tcp", srv.Addr(), time.Second)
	batch := alerts("a", 2)
	if err := deliver(s, batch); err == nil {
		t.Fatal("delivered without an ack")
	}
	if m := srv.Messages(); m != 1 {
		t.Fatalf("%d messages after a failure on a fresh connection, want 1", m)
	}
	if err := deliver(s, batch); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, srv.Entries(), 2)
}

func TestCloseAfterEach(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{CloseAfterEach: true})
	s := newSink(t, "tcp", srv.Addr(), 2*time.Second)
	for i := range 5 {
		if err := deliver(s, alerts(fmt.Sprint("d", i), 2)); err != nil {
			t.Fatalf("deliver %d: %v", i, err)
		}
	}
	if m := srv.Messages(); m != 5 {
		t.Errorf("%d messages, want 5", m)
	}
	assertOnce(t, srv.Entries(), 10)
}

func TestConcurrentDeliver(t *testing.T) {
	for _, closeAfterEach := range []bool{false, true} {
		t.Run(fmt.Sprint("closeAfterEach=", closeAfterEach), func(t *testing.T) {
			srv := forwardrecv.Start(t, forwardrecv.Options{CloseAfterEach: closeAfterEach})
			s := newSink(t, "tcp", srv.Addr(), 5*time.Second)
			var wg sync.WaitGroup
			errs := make(chan error, 8*5)
			for g := range 8 {
				wg.Go(func() {
					for i := range 5 {
						if err := deliver(s, alerts(fmt.Sprintf("g%d-%d", g, i), 3)); err != nil {
							errs <- err
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			assertOnce(t, srv.Entries(), 8*5*3)
		})
	}
}

// assertOnce checks that entries hold want distinct alerts, each once.
func assertOnce(t *testing.T, entries []forwardrecv.Entry, want int) {
	t.Helper()
	seen := map[string]int{}
	for _, e := range entries {
		id, _ := e.Record["event_id"].(string)
		seen[id]++
	}
	if len(seen) != want {
		t.Errorf("%d distinct alerts, want %d", len(seen), want)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s arrived %d times", k, n)
		}
	}
}

// scripted is a receiver whose answer to the n-th message (counted over
// all connections) is chosen by the test, to see exactly what the client
// sends and when it retries.
type scripted struct {
	ln     net.Listener
	mu     sync.Mutex
	chunks []string
	conns  int
}

// startScripted answers message n with the ack id respond returns ("" for
// none), then closes the connection if it says so.
func startScripted(t *testing.T, respond func(n int, chunk string) (ack string, closeConn bool)) *scripted {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				var buf []byte
				tmp := make([]byte, 4096)
				for {
					rest, err := msgp.Skip(buf)
					if err != nil {
						n, rerr := c.Read(tmp)
						if rerr != nil {
							return
						}
						buf = append(buf, tmp[:n]...)
						continue
					}
					chunk := chunkOf(t, buf[:len(buf)-len(rest)])
					buf = rest
					s.mu.Lock()
					n := len(s.chunks)
					s.chunks = append(s.chunks, chunk)
					s.mu.Unlock()
					ack, closeConn := respond(n, chunk)
					if ack != "" {
						reply := msgp.AppendMapHeader(nil, 1)
						reply = msgp.AppendString(reply, "ack")
						c.Write(msgp.AppendString(reply, ack))
					}
					if closeConn {
						return
					}
				}
			})
		}
	})
	return s
}

func (s *scripted) seen() (chunks []string, conns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.chunks...), s.conns
}

// chunkOf reads the chunk option of [tag, entries, option].
func chunkOf(t *testing.T, msg []byte) string {
	_, b, err := msgp.ReadArrayHeaderBytes(msg)
	if err == nil {
		b, err = msgp.Skip(b)
	}
	if err == nil {
		b, err = msgp.Skip(b)
	}
	var n uint32
	if err == nil {
		n, b, err = msgp.ReadMapHeaderBytes(b)
	}
	for range n {
		var k, v string
		if k, b, err = msgp.ReadStringBytes(b); err != nil {
			break
		}
		if k != "chunk" {
			if b, err = msgp.Skip(b); err != nil {
				break
			}
			continue
		}
		if v, _, err = msgp.ReadStringBytes(b); err == nil {
			return v
		}
	}
	t.Errorf("no chunk option in %x (%v)", msg, err)
	return ""
}

// A batch re-sent after a stale connection carries the same chunk id; a
// new batch gets a new one.
func TestChunkIDReusedOnlyForResend(t *testing.T) {
	srv := startScripted(t, func(n int, chunk string) (string, bool) {
		if n == 1 {
			return "", true // kept connection dies with batch b unacked
		}
		return chunk, false
	})
	s := newSink(t, "tcp", srv.ln.Addr().String(), 2*time.Second)
	if err := deliver(s, alerts("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := deliver(s, alerts("b", 1)); err != nil {
		t.Fatal(err)
	}
	chunks, conns := srv.seen()
	if len(chunks) != 3 || conns != 2 {
		t.Fatalf("%d messages on %d connections, want 3 on 2", len(chunks), conns)
	}
	if chunks[1] != chunks[2] || chunks[0] == chunks[1] {
		t.Errorf("chunk ids %q", chunks)
	}
	if id, err := base64.StdEncoding.DecodeString(chunks[0]); err != nil || len(id) != 16 {
		t.Errorf("chunk id %q is not 16 random bytes in base64", chunks[0])
	}
}

// After a kept connection fails, one fresh connection is tried, no more.
func TestRetriesOnceOnly(t *testing.T) {
	srv := startScripted(t, func(n int, chunk string) (string, bool) {
		if n == 0 {
			return chunk, false
		}
		return "", true
	})
	s := newSink(t, "tcp", srv.ln.Addr().String(), 2*time.Second)
	if err := deliver(s, alerts("a", 1)); err != nil {
		t.Fatal(err)
	}
	err := deliver(s, alerts("b", 1))
	if err == nil || !strings.Contains(err.Error(), "after reconnecting") {
		t.Fatalf("got %v", err)
	}
	if chunks, conns := srv.seen(); len(chunks) != 3 || conns != 2 {
		t.Fatalf("%d messages on %d connections, want 3 on 2", len(chunks), conns)
	}
}

// A wrong ack is the receiver answering badly, not a stale connection:
// no retry, which could store the batch twice.
func TestWrongAckIsAnError(t *testing.T) {
	srv := startScripted(t, func(n int, chunk string) (string, bool) {
		if n == 0 {
			return chunk, false
		}
		return "someone-else", false
	})
	s := newSink(t, "tcp", srv.ln.Addr().String(), time.Second)
	if err := deliver(s, alerts("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := deliver(s, alerts("b", 1)); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("got %v", err)
	}
	if chunks, conns := srv.seen(); len(chunks) != 2 || conns != 1 {
		t.Fatalf("%d messages on %d connections, want 2 on 1", len(chunks), conns)
	}
	// The connection that answered wrongly is not reused.
	if err := deliver(s, alerts("c", 1)); err == nil {
		t.Fatal("wrong ack accepted")
	}
	if _, conns := srv.seen(); conns != 2 {
		t.Fatalf("%d connections, want a fresh one", conns)
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []forward.Options{
		{Network: "udp", Address: "x", Tag: "t", Timeout: time.Second, MaxBatchBytes: 1 << 20},
		{Network: "tcp", Tag: "t", Timeout: time.Second, MaxBatchBytes: 1 << 20},
		{Network: "tcp", Address: "x", Timeout: time.Second, MaxBatchBytes: 1 << 20},
		{Network: "tcp", Address: "x", Tag: "t", MaxBatchBytes: 1 << 20},
		{Network: "tcp", Address: "x", Tag: "t", Timeout: time.Second, MaxBatchBytes: 50},
	} {
		if _, err := forward.New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestSharedKeyHandshake(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{SharedKey: "s3cret"})
	good, err := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: 2 * time.Second, MaxBatchBytes: 4 << 20,
		SharedKey: "s3cret", SelfHostname: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if err := deliver(good, alerts("a", 2)); err != nil {
		t.Fatal(err)
	}
	bad, _ := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: 2 * time.Second, MaxBatchBytes: 4 << 20,
		SharedKey: "guess", SelfHostname: "edge-1"})
	defer bad.Close()
	if err := deliver(bad, alerts("b", 1)); err == nil || !strings.Contains(err.Error(), "receiver refused authentication: shared_key mismatch") {
		t.Fatalf("wrong key: %v", err)
	}
	none, _ := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: 300 * time.Millisecond, MaxBatchBytes: 4 << 20})
	defer none.Close()
	if err := deliver(none, alerts("c", 1)); err == nil {
		t.Fatal("delivered without the handshake")
	}
	// The client gives up on seeing HELO, maybe before the receiver has
	// read its message and counted the refusal.
	for end := time.Now().Add(5 * time.Second); srv.Refused() < 2 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(srv.Entries()); n != 2 || srv.Refused() != 2 {
		t.Fatalf("receiver holds %d entries, refused %d", n, srv.Refused())
	}
}

func TestTLS(t *testing.T) {
	pki := tlstest.New(t)
	srv := forwardrecv.Start(t, forwardrecv.Options{TLS: pki.ServerConfig(t, true), SharedKey: "k"})
	clientCert, err := tls.LoadX509KeyPair(pki.ClientCrt, pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	send := func(c *tls.Config) error {
		s, err := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: 2 * time.Second, MaxBatchBytes: 4 << 20,
			TLS: c, SharedKey: "k", SelfHostname: "edge-1"})
		if err != nil {
			return err
		}
		defer s.Close()
		return deliver(s, alerts("tls", 1))
	}
	if err := send(&tls.Config{RootCAs: pki.CAPool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{clientCert}}); err != nil {
		t.Fatalf("verified mTLS: %v", err)
	}
	if err := send(&tls.Config{ServerName: "127.0.0.1", Certificates: []tls.Certificate{clientCert}}); err == nil ||
		!strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("untrusted server accepted: %v", err)
	}
	if n := len(srv.Entries()); n != 1 {
		t.Fatalf("receiver holds %d entries", n)
	}
}

// bigAlerts are n alerts of about size bytes each.
func bigAlerts(prefix string, n, size int) []sink.Alert {
	out := alerts(prefix, n)
	for i := range out {
		rec := msgp.AppendMapHeader(nil, 2)
		rec = msgp.AppendString(rec, "event_id")
		rec = msgp.AppendString(rec, fmt.Sprintf("%s-%d", prefix, i))
		rec = msgp.AppendString(rec, "pad")
		out[i].Doc = msgp.AppendString(rec, strings.Repeat("p", size))
	}
	return out
}

// in_forward drops the connection on a message over its buffer_max_size:
// batches are cut under MaxBatchBytes, so 10 MB of alerts arrive in
// messages the receiver takes, where one message would never arrive.
func TestBatchesFitTheReceiver(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{})
	many := bigAlerts("big", 2000, 5000)
	s, err := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: 5 * time.Second, MaxBatchBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := deliver(s, many); err != nil {
		t.Fatal(err)
	}
	assertOnce(t, srv.Entries(), len(many))
	if srv.Oversized() != 0 || srv.Messages() < 3 {
		t.Fatalf("%d messages, %d refused as oversized", srv.Messages(), srv.Oversized())
	}

	// The same alerts in one message are refused, as by in_forward.
	one, _ := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: 5 * time.Second, MaxBatchBytes: 64 << 20})
	defer one.Close()
	if err := one.Deliver(context.Background(), many); err == nil || srv.Oversized() != 1 {
		t.Fatalf("an oversized message: %d refused, %v", srv.Oversized(), err)
	}
}

// An alert that alone makes a message larger than the receiver takes is
// refused for good without being sent (in_forward would close the
// connection on it, which looks like a receiver going away, for ever); the
// alerts around it go.
func TestOversizeAlertIsRefused(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{BufferMaxSize: 4096})
	s, _ := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: time.Second, MaxBatchBytes: 4096})
	defer s.Close()
	as := bigAlerts("o", 3, 100)
	as[1] = bigAlerts("huge", 1, 5000)[0]
	var refused []sink.Refusal
	n, err := sink.Send(context.Background(), s, as, sink.Handler{
		Done:    func([]sink.Alert) error { return nil },
		Refused: func(r sink.Refusal) error { refused = append(refused, r); return nil },
	})
	if err != nil || n != 2 || len(refused) != 1 || !refused[0].Final || !strings.Contains(refused[0].Reason, "more than the largest the receiver takes (4096)") {
		t.Fatalf("%d delivered, refused %+v: %v", n, refused, err)
	}
	if srv.Oversized() != 0 || len(srv.Entries()) != 2 {
		t.Fatalf("the receiver saw %d oversized messages, %d entries", srv.Oversized(), len(srv.Entries()))
	}
}

// When a later message fails, Deliver says how many alerts the earlier
// ones carried, so exactly those count as delivered.
func TestPartialDeliveryIsCounted(t *testing.T) {
	srv := startScripted(t, func(n int, chunk string) (string, bool) {
		if n < 2 {
			return chunk, false
		}
		return "", true
	})
	many := bigAlerts("p", 30, 100)
	s, _ := forward.New(forward.Options{Network: "tcp", Address: srv.ln.Addr().String(), Tag: "t", Timeout: time.Second, MaxBatchBytes: 1200})
	defer s.Close()
	n, err := sink.Send(context.Background(), s, many, sink.Handler{Done: func([]sink.Alert) error { return nil }, Refused: refusedIsAnError})
	if err == nil || n == 0 || n >= len(many) {
		t.Fatalf("delivered %d of %d: %v", n, len(many), err)
	}
	if chunks, _ := srv.seen(); len(chunks) < 3 {
		t.Fatalf("%d messages", len(chunks))
	}
}

// A cancelled context ends the wait for an ack that Timeout would let
// run on.
func TestContextEndsTheWait(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{NoAck: true})
	s, _ := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: time.Hour, MaxBatchBytes: 1 << 20})
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := s.Deliver(ctx, alerts("c", 2)); err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("delivered: %v", err)
	}
	dl, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := s.Deliver(dl, alerts("d", 2)); err == nil {
		t.Fatal("delivered past the context's deadline without an ack")
	}
}

// refusedIsAnError makes a refusal stop Send, for tests that expect none.
func refusedIsAnError(r sink.Refusal) error {
	return fmt.Errorf("refused %s: %s", r.Alert.Key, r.Reason)
}
