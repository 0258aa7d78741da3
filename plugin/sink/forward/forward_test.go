package forward_test

import (
	"bytes"
	"crypto/tls"
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
		out = append(out, sink.Alert{Time: time.Unix(1763626542, int64(i)*1000+7), Key: fmt.Sprint(i), Msgpack: rec})
	}
	return out
}

func newSink(t *testing.T, network, addr string, timeout time.Duration) *forward.Sink {
	t.Helper()
	s, err := forward.New(forward.Options{Network: network, Address: addr, Tag: "sec.alerts", Timeout: timeout})
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
			if err := s.Deliver(batch); err != nil {
				t.Fatal(err)
			}
			got := srv.Entries()
			if len(got) != 3 {
				t.Fatalf("%d entries", len(got))
			}
			for i, e := range got {
				if e.Tag != "sec.alerts" || !e.Time.Equal(batch[i].Time) || !bytes.Equal(e.Raw, batch[i].Msgpack) {
					t.Errorf("entry %d: %+v", i, e)
				}
			}
		})
	}
}

func TestNoAckTimesOut(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{NoAck: true})
	s := newSink(t, "tcp", srv.Addr(), 200*time.Millisecond)
	err := s.Deliver(alerts("a", 1))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("no ack within 200ms")) {
		t.Fatalf("got %v", err)
	}
}

func TestNothingListening(t *testing.T) {
	s := newSink(t, "unix", filepath.Join(t.TempDir(), "absent.sock"), time.Second)
	if err := s.Deliver(alerts("a", 1)); err == nil {
		t.Fatal("delivered to nobody")
	}
}

// A kept connection that died while idle (receiver restarted) costs one
// silent reconnect, not a failed delivery.
func TestReconnectsAfterReceiverRestart(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{})
	addr := srv.Addr()
	s := newSink(t, "tcp", addr, 2*time.Second)
	if err := s.Deliver(alerts("a", 1)); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	srv2 := forwardrecv.Start(t, forwardrecv.Options{Address: addr})
	if err := s.Deliver(alerts("b", 2)); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if n := len(srv2.Entries()); n != 2 {
		t.Fatalf("restarted receiver got %d", n)
	}
}

// The receiver reads the batch and crashes before acking: Deliver fails,
// the same batch sent again arrives exactly once.
func TestUnackedBatchIsNotDelivered(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{DropFirst: 1})
	s := newSink(t, "tcp", srv.Addr(), time.Second)
	batch := alerts("a", 2)
	if err := s.Deliver(batch); err == nil {
		t.Fatal("delivered without an ack")
	}
	if err := s.Deliver(batch); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Entries()); n != 2 {
		t.Fatalf("receiver holds %d", n)
	}
}

func TestCloseAfterEachAndConcurrency(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{CloseAfterEach: true})
	s := newSink(t, "tcp", srv.Addr(), 2*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				if err := s.Deliver(alerts(fmt.Sprintf("g%d-%d", g, i), 1)); err != nil {
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
	seen := map[string]int{}
	for _, e := range srv.Entries() {
		seen[e.Record["event_id"].(string)]++
	}
	if len(seen) != 40 {
		t.Fatalf("%d distinct alerts, want 40", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s arrived %d times", k, n)
		}
	}
}

func TestWrongAckIsAnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Read(make([]byte, 4096))
		ack := msgp.AppendMapHeader(nil, 1)
		ack = msgp.AppendString(ack, "ack")
		c.Write(msgp.AppendString(ack, "someone-else"))
		time.Sleep(time.Second)
	}()
	s := newSink(t, "tcp", ln.Addr().String(), time.Second)
	if err := s.Deliver(alerts("a", 1)); err == nil || !bytes.Contains([]byte(err.Error()), []byte("does not match")) {
		t.Fatalf("got %v", err)
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []forward.Options{
		{Network: "udp", Address: "x", Tag: "t", Timeout: time.Second},
		{Network: "tcp", Tag: "t", Timeout: time.Second},
		{Network: "tcp", Address: "x", Timeout: time.Second},
		{Network: "tcp", Address: "x", Tag: "t"},
	} {
		if _, err := forward.New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestSharedKeyHandshake(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{SharedKey: "s3cret"})
	good, err := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: 2 * time.Second,
		SharedKey: "s3cret", SelfHostname: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if err := good.Deliver(alerts("a", 2)); err != nil {
		t.Fatal(err)
	}
	bad, _ := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: 2 * time.Second,
		SharedKey: "guess", SelfHostname: "edge-1"})
	defer bad.Close()
	if err := bad.Deliver(alerts("b", 1)); err == nil || !strings.Contains(err.Error(), "receiver refused authentication: shared_key mismatch") {
		t.Fatalf("wrong key: %v", err)
	}
	none, _ := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: 300 * time.Millisecond})
	defer none.Close()
	if err := none.Deliver(alerts("c", 1)); err == nil {
		t.Fatal("delivered without the handshake")
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
		s, err := forward.New(forward.Options{Network: "tcp", Address: srv.Addr(), Tag: "t", Timeout: 2 * time.Second,
			TLS: c, SharedKey: "k", SelfHostname: "edge-1"})
		if err != nil {
			return err
		}
		defer s.Close()
		return s.Deliver(alerts("tls", 1))
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
