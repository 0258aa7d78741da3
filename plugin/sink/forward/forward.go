// Package forward sends alerts with the Fluent forward protocol to an
// in_forward input (Fluent Bit or Fluentd), so they re-enter Fluent Bit's
// pipeline under the alert tag. Only the receiver's ack proves delivery:
// a write that succeeded may still be lost when the receiver shuts down.
package forward

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
)

// Options configure a Sink.
type Options struct {
	Network string // "tcp" or "unix"
	Address string // host:port or socket path
	Tag     string
	// Timeout bounds one message's round trip as a whole: connect,
	// handshakes, write and the ack.
	Timeout time.Duration
	// MaxBatchBytes caps one Forward message: in_forward closes the
	// connection on a message over its buffer_max_size (6,144,000 bytes by
	// default), so a bigger one could never be delivered.
	MaxBatchBytes int
	// TLS, when set, wraps the connection (verification is the config's).
	TLS *tls.Config
	// SharedKey, when set, answers the receiver's HELO with a PING
	// carrying the shared-key digest, as in_forward's `shared_key` wants.
	SharedKey    string
	SelfHostname string
}

// Sink is a forward-protocol client. It keeps one connection and re-opens
// it when it breaks.
type Sink struct {
	o Options
	// mu serialises deliveries: acks come back in order on one connection,
	// and one outstanding chunk at a time keeps matching them trivial.
	mu   sync.Mutex
	conn net.Conn
	// live is the connection a delivery is using, for interrupt.
	live atomic.Pointer[net.Conn]
	buf  []byte
	ack  []byte
}

// New validates o; it connects on first use, so Fluent Bit can start
// before the receiver does.
func New(o Options) (*Sink, error) {
	switch {
	case o.Network != "tcp" && o.Network != "unix":
		return nil, fmt.Errorf("network %q is not tcp or unix", o.Network)
	case o.Address == "":
		return nil, errors.New("no address")
	case o.Tag == "":
		return nil, errors.New("no tag")
	case o.Timeout <= 0:
		return nil, errors.New("timeout must be positive")
	case o.MaxBatchBytes <= messageOverhead(o.Tag):
		return nil, fmt.Errorf("batch size %d leaves no room for an alert", o.MaxBatchBytes)
	}
	return &Sink{o: o}, nil
}

// Encoding is msgpack: records are embedded in the message as they are.
func (s *Sink) Encoding() sink.Encoding { return sink.Msgpack }

// Batches cuts alerts into Forward messages of at most MaxBatchBytes.
func (s *Sink) Batches(alerts []sink.Alert) [][]sink.Alert {
	return sink.Cut(alerts, s.o.MaxBatchBytes-messageOverhead(s.o.Tag), entrySize)
}

// Fits says whether the alert fits in a message of MaxBatchBytes alone.
func (s *Sink) Fits(a sink.Alert) bool {
	return entrySize(a) <= s.o.MaxBatchBytes-messageOverhead(s.o.Tag)
}

// entrySize is what one alert adds to a message: [time, record].
func entrySize(a sink.Alert) int { return EntryOverhead + len(a.Doc) }

// EntryOverhead is what one record adds to a message beside its own
// bytes: the [time, record] pair's header and the EventTime.
const EntryOverhead = 1 + eventTimeSize

// Room is how many bytes of entries (EntryOverhead plus the record, each)
// one message may carry, for a caller that cuts its own batches as it
// builds them.
func (s *Sink) Room() int { return s.o.MaxBatchBytes - messageOverhead(s.o.Tag) }

const eventTimeSize = 10

// messageOverhead is a message's size without its entries: the headers,
// the tag and the option map, with room for the largest headers.
func messageOverhead(tag string) int { return 5 + 5 + len(tag) + 5 + 64 }

// Deliver sends the batch as one Forward-mode message and waits for its ack.
func (s *Sink) Deliver(ctx context.Context, alerts []sink.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	if len(alerts) == 1 && !s.Fits(alerts[0]) {
		// in_forward closes the connection on a message past its
		// buffer_max_size, without a word: sent, it would look like a
		// receiver that went away, for ever.
		return &sink.RefusedError{Final: true, Reason: fmt.Sprintf("forward: the alert alone makes a message of %d bytes, more than the largest the receiver takes (%d)",
			entrySize(alerts[0])+messageOverhead(s.o.Tag), s.o.MaxBatchBytes)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("forward %s %s: %w", s.o.Network, s.o.Address, err)
	}
	deadline := time.Now().Add(s.o.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// A cancelled context cuts the wait short through the connection's
	// deadline, the one thing a blocked read or write listens to.
	stop := context.AfterFunc(ctx, s.interrupt)
	defer stop()
	chunkID := newChunkID()
	s.buf = appendMessage(s.buf[:0], s.o.Tag, alerts, chunkID)

	reused := s.conn != nil
	err := s.send(ctx, deadline, chunkID)
	var perr *protocolError
	if err != nil && reused && !errors.As(err, &perr) && time.Now().Before(deadline) && ctx.Err() == nil {
		// A kept connection may have died while idle (receiver restarted):
		// that says nothing about the receiver now, so try once afresh with
		// the same chunk id. A protocol error is not staleness: the
		// receiver answered, and sending again could store the batch twice.
		if err2 := s.send(ctx, deadline, chunkID); err2 != nil {
			err = fmt.Errorf("%w (after reconnecting: kept connection failed: %v)", err2, err)
		} else {
			err = nil
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return fmt.Errorf("forward %s %s: %w", s.o.Network, s.o.Address, err)
	}
	return nil
}

// interrupt makes a blocked read or write of the connection in use return
// now. It runs on its own goroutine (context.AfterFunc) while the
// delivering one holds s.mu, so it reads the connection from live.
func (s *Sink) interrupt() {
	if c := s.live.Load(); c != nil {
		(*c).SetDeadline(time.Now())
	}
}

// protocolError is a receiver that answered, but wrongly.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

func protocolErrorf(format string, a ...any) error {
	return &protocolError{fmt.Sprintf(format, a...)}
}

// send makes one attempt; on failure the connection is dropped so that
// nothing half-read is ever mistaken for the next batch's ack.
func (s *Sink) send(ctx context.Context, deadline time.Time, chunkID string) error {
	if s.conn == nil {
		c, err := s.dial(ctx, deadline)
		if err != nil {
			return err
		}
		s.conn = c
	}
	c := s.conn
	s.live.Store(&c)
	defer s.live.Store(nil)
	if ctx.Err() != nil {
		// Cancelled before live was set: interrupt found nothing to cut.
		s.conn.SetDeadline(time.Now())
	}
	err := s.roundTrip(deadline, chunkID)
	if err != nil {
		s.conn.Close()
		s.conn = nil
	}
	return err
}

func (s *Sink) roundTrip(deadline time.Time, chunkID string) error {
	if err := s.conn.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := s.conn.Write(s.buf); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("write not done within %v", s.o.Timeout)
		}
		return fmt.Errorf("write: %w", err)
	}
	ack, err := s.readAck()
	if err != nil {
		return err
	}
	if ack != chunkID {
		return protocolErrorf("ack %q does not match chunk %q", ack, chunkID)
	}
	return nil
}

// dial connects, wraps the connection in TLS and authenticates, as set.
func (s *Sink) dial(ctx context.Context, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, s.o.Network, s.o.Address)
	if err != nil {
		return nil, err
	}
	if s.o.TLS != nil {
		tc := tls.Client(c, s.o.TLS)
		tc.SetDeadline(deadline)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls: %w", err)
		}
		c = tc
	}
	if s.o.SharedKey != "" {
		s.live.Store(&c)
		err := s.authenticate(c, deadline)
		s.live.Store(nil)
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// errOversized bounds what a broken receiver can make us buffer: acks and
// handshake messages are tiny.
var errOversized = errors.New("oversized reply")

// readObject reads one whole msgpack object from c into s.ack.
func (s *Sink) readObject(c net.Conn) ([]byte, error) {
	s.ack = s.ack[:0]
	var tmp [512]byte
	for {
		if len(s.ack) > 0 {
			if _, err := msgp.Skip(s.ack); err == nil {
				return s.ack, nil
			} else if !errors.Is(err, msgp.ErrShortBytes) {
				return nil, err
			}
		}
		if len(s.ack) > 64<<10 {
			return nil, errOversized
		}
		n, err := c.Read(tmp[:])
		s.ack = append(s.ack, tmp[:n]...)
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

// readAck reads the receiver's {"ack": id}.
func (s *Sink) readAck() (string, error) {
	reply, err := s.readObject(s.conn)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "", fmt.Errorf("no ack within %v", s.o.Timeout)
	case errors.Is(err, io.EOF):
		return "", errors.New("connection closed before the ack")
	case err != nil && !isMsgpackError(err):
		return "", fmt.Errorf("waiting for ack: %w", err)
	case err != nil:
		return "", protocolErrorf("bad ack: %v", err)
	}
	n, b, err := msgp.ReadMapHeaderBytes(reply)
	if err != nil {
		return "", protocolErrorf("bad ack: %v", err)
	}
	for range n {
		var k []byte
		if k, b, err = msgp.ReadMapKeyZC(b); err != nil {
			return "", protocolErrorf("bad ack: %v", err)
		}
		if string(k) == "ack" {
			v, _, err := value.ReadText(b)
			if err != nil {
				return "", protocolErrorf("bad ack: %v", err)
			}
			return string(v), nil
		}
		if b, err = msgp.Skip(b); err != nil {
			return "", protocolErrorf("bad ack: %v", err)
		}
	}
	return "", protocolErrorf("bad ack: no ack key")
}

// isMsgpackError tells a reply that is not msgpack from a failed read.
func isMsgpackError(err error) bool {
	var merr msgp.Error
	return errors.As(err, &merr) || errors.Is(err, errOversized)
}

// Close drops the connection.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// appendMessage encodes Forward mode: [tag, [[time, record], ...], option].
// Time is EventTime: in_forward rejects float times.
func appendMessage(b []byte, tag string, alerts []sink.Alert, chunkID string) []byte {
	b = msgp.AppendArrayHeader(b, 3)
	b = msgp.AppendString(b, tag)
	b = msgp.AppendArrayHeader(b, uint32(len(alerts)))
	for _, a := range alerts {
		b = msgp.AppendArrayHeader(b, 2)
		b = value.AppendEventTime(b, a.Time)
		b = append(b, a.Doc...)
	}
	b = msgp.AppendMapHeader(b, 2)
	b = msgp.AppendString(b, "chunk")
	b = msgp.AppendString(b, chunkID)
	b = msgp.AppendString(b, "size")
	return msgp.AppendInt(b, len(alerts))
}

// newChunkID is random, as Fluentd's: ids must not repeat across restarts.
func newChunkID() string {
	var id [16]byte
	rand.Read(id[:])
	return base64.StdEncoding.EncodeToString(id[:])
}
