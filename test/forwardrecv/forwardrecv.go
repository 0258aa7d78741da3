// Package forwardrecv is an in_forward-like receiver for tests: it accepts
// the forward protocol's Message, Forward, PackedForward and
// CompressedPackedForward modes as Fluent Bit's in_forward does, answers
// acks, records what arrived, and can misbehave on purpose.
package forwardrecv

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Entry is one record received.
type Entry struct {
	Tag    string
	Time   time.Time
	Record map[string]any
	Raw    []byte // the record's msgpack bytes
}

// Options choose the listener and the faults.
type Options struct {
	Network string // "tcp" (default, 127.0.0.1:0) or "unix"
	Address string
	// NoAck stores messages but never acks them.
	NoAck bool
	// DropFirst reads the first N messages whole, then closes the
	// connection without storing or acking them: a crash before commit.
	DropFirst int
	// CloseAfterEach closes the connection after each acked message.
	CloseAfterEach bool
	// SlowRead makes the receiver read one byte a second.
	SlowRead bool
	// SharedKey makes the receiver demand in_forward's shared-key
	// handshake (HELO, PING, PONG) before any message.
	SharedKey string
	// TLS, when set, makes the listener speak TLS.
	TLS *tls.Config
	// Discard counts the records of each message (Count) without decoding
	// or keeping them: for benchmarks and volumes that Entries would hold
	// in memory.
	Discard bool
	// BufferMaxSize is in_forward's buffer_max_size: a message that does
	// not fit closes the connection unread, as in_forward does ("incoming
	// data exceed limit"). 0 means in_forward's default, 6,144,000 bytes.
	BufferMaxSize int
}

// DefaultBufferMaxSize is in_forward's default buffer_max_size.
const DefaultBufferMaxSize = 6144000

// Server is a running receiver.
type Server struct {
	o        Options
	ln       net.Listener
	mu       sync.Mutex
	entries  []Entry
	count    int   // entries received (Discard)
	batches  []int // entries per stored message
	messages int
	refused  int
	dropped  int
	oversize int
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
	closed   bool
	down     bool
	// noAck starts as Options.NoAck; SetAck changes it while running.
	noAck atomic.Bool
}

// Start listens and serves until the test ends (or Close).
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Network == "" {
		o.Network = "tcp"
	}
	if o.BufferMaxSize == 0 {
		o.BufferMaxSize = DefaultBufferMaxSize
	}
	if o.Address == "" {
		if o.Network == "unix" {
			o.Address = filepath.Join(t.TempDir(), "forward.sock")
		} else {
			o.Address = "127.0.0.1:0"
		}
	}
	s := &Server{o: o, conns: map[net.Conn]bool{}}
	s.noAck.Store(o.NoAck)
	if err := s.listen(); err != nil {
		t.Fatal(err)
	}
	s.o.Address = s.ln.Addr().String()
	t.Cleanup(s.Close)
	return s
}

func (s *Server) listen() error {
	ln, err := net.Listen(s.o.Network, s.o.Address)
	if err != nil {
		return err
	}
	if s.o.TLS != nil {
		ln = tls.NewListener(ln, s.o.TLS)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

// SetDown stops the receiver as a crash would, dropping its connections
// but keeping what it stored (true), or starts it again on the same
// address (false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.down == down {
		return
	}
	s.down = down
	if down {
		s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
		return
	}
	for i := 0; s.listen() != nil; i++ {
		if i == 100 {
			panic("forwardrecv: cannot listen again on " + s.o.Address)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SetAck makes the receiver acknowledge what it stores (true), or store
// it without a word (false), leaving the sender waiting for acks.
func (s *Server) SetAck(on bool) { s.noAck.Store(!on) }

// Addr is host:port or the socket path.
func (s *Server) Addr() string { return s.o.Address }

// Port is the TCP port (0 for unix sockets).
func (s *Server) Port() int {
	if s.o.Network != "tcp" {
		return 0
	}
	_, port, _ := net.SplitHostPort(s.o.Address)
	n, _ := strconv.Atoi(port)
	return n
}

// Entries returns a snapshot of what was stored.
func (s *Server) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.entries...)
}

// LargestBatch is the most entries one stored message carried.
func (s *Server) LargestBatch() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Max(append([]int{0}, s.batches...))
}

// Batches are the stored messages, each as the entries it carried, in the
// order they came.
func (s *Server) Batches() [][]Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]Entry
	at := 0
	for _, n := range s.batches {
		out = append(out, slices.Clone(s.entries[at:at+n]))
		at += n
	}
	return out
}

// Messages is the number of protocol messages read (stored or not).
func (s *Server) Messages() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messages
}

// WaitEntries waits until at least n entries arrived.
func (s *Server) WaitEntries(t testing.TB, n int, timeout time.Duration) []Entry {
	t.Helper()
	end := time.Now().Add(timeout)
	for {
		e := s.Entries()
		if len(e) >= n {
			return e
		}
		if time.Now().After(end) {
			t.Fatalf("forwardrecv: %d entries after %v, want %d", len(e), timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close stops listening and drops every connection.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	ln := s.ln
	s.mu.Unlock()
	ln.Close()
	s.wg.Wait()
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed || s.down {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// serve reads whole msgpack objects from a stream that may split or join
// them arbitrarily.
func (s *Server) serve(c net.Conn) {
	var buf []byte
	tmp := make([]byte, 64<<10)
	// next returns the next whole msgpack object from the stream.
	next := func() ([]byte, bool) {
		for {
			if rest, err := msgp.Skip(buf); err == nil {
				obj := buf[:len(buf)-len(rest)]
				buf = rest
				return obj, true
			} else if len(buf) > 0 && !errors.Is(err, msgp.ErrShortBytes) {
				return nil, false
			}
			n, err := c.Read(tmp)
			buf = append(buf, tmp[:n]...)
			if err != nil && n == 0 {
				return nil, false
			}
		}
	}
	if s.o.SharedKey != "" && !s.handshake(c, next) {
		return
	}
	for {
		for len(buf) > 0 {
			rest, err := msgp.Skip(buf)
			if errors.Is(err, msgp.ErrShortBytes) {
				break
			}
			if err != nil {
				return // not msgpack: in_forward drops the connection
			}
			msg := buf[:len(buf)-len(rest)]
			if !s.handle(c, msg) {
				return
			}
			buf = rest
		}
		readTo := tmp
		if s.o.SlowRead {
			time.Sleep(time.Second)
			readTo = tmp[:1]
		}
		n, err := c.Read(readTo)
		if n > 0 {
			buf = append(buf, readTo[:n]...)
		}
		if len(buf) > s.o.BufferMaxSize {
			// in_forward's buffer cannot grow further and the message is
			// still incomplete: it drops the connection.
			s.mu.Lock()
			s.oversize++
			s.mu.Unlock()
			return
		}
		if err != nil {
			return
		}
	}
}

// Oversized is the number of connections closed for a message larger
// than BufferMaxSize.
func (s *Server) Oversized() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oversize
}

// Refused is the number of connections whose handshake failed.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// handshake plays in_forward's side of the shared-key handshake.
func (s *Server) handshake(c net.Conn, next func() ([]byte, bool)) bool {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	helo := msgp.AppendArrayHeader(nil, 2)
	helo = msgp.AppendString(helo, "HELO")
	helo = msgp.AppendMapHeader(helo, 3)
	helo = msgp.AppendString(helo, "nonce")
	helo = msgp.AppendBytes(helo, nonce)
	helo = msgp.AppendString(helo, "auth")
	helo = msgp.AppendBytes(helo, nil)
	helo = msgp.AppendString(helo, "keepalive")
	helo = msgp.AppendBool(helo, true)
	if _, err := c.Write(helo); err != nil {
		return false
	}
	ping, ok := next()
	if !ok {
		return false
	}
	// ["PING", hostname, salt, digest, user, password digest]
	var f [4][]byte
	n, b, err := msgp.ReadArrayHeaderBytes(ping)
	for i := 0; i < 4 && err == nil && n >= 4; i++ {
		f[i], b, err = value.ReadText(b)
	}
	h := sha512.New()
	h.Write(f[2])
	h.Write(f[1])
	h.Write(nonce)
	h.Write([]byte(s.o.SharedKey))
	accepted := err == nil && string(f[0]) == "PING" && hex.EncodeToString(h.Sum(nil)) == string(f[3])
	pong := msgp.AppendArrayHeader(nil, 5)
	pong = msgp.AppendString(pong, "PONG")
	pong = msgp.AppendBool(pong, accepted)
	if accepted {
		pong = msgp.AppendString(pong, "")
	} else {
		pong = msgp.AppendString(pong, "shared_key mismatch")
		s.mu.Lock()
		s.refused++
		s.mu.Unlock()
	}
	pong = msgp.AppendString(pong, "forwardrecv")
	pong = msgp.AppendString(pong, "")
	c.Write(pong)
	return accepted
}

// handle processes one message; false closes the connection.
func (s *Server) handle(c net.Conn, msg []byte) bool {
	s.mu.Lock()
	s.messages++
	drop := s.dropped < s.o.DropFirst
	if drop {
		s.dropped++
	}
	s.mu.Unlock()
	if drop {
		return false
	}
	var entries []Entry
	var option map[string]any
	var err error
	n := 0
	if s.o.Discard {
		n, option, err = count(msg)
	} else {
		entries, option, err = decode(msg)
		n = len(entries)
	}
	if err != nil {
		return false
	}
	s.mu.Lock()
	s.entries = append(s.entries, entries...)
	s.count += n
	s.batches = append(s.batches, n)
	s.mu.Unlock()
	if chunk, ok := option["chunk"].(string); ok && !s.noAck.Load() {
		ack := msgp.AppendMapHeader(nil, 1)
		ack = msgp.AppendString(ack, "ack")
		ack = msgp.AppendString(ack, chunk)
		if _, err := c.Write(ack); err != nil {
			return false
		}
	}
	return !s.o.CloseAfterEach
}

// Count is the number of records received (every mode, Discard or not).
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// count counts a Forward or PackedForward message's entries and reads its
// option, decoding no record.
func count(msg []byte) (int, map[string]any, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(msg)
	if err != nil || n < 2 || n > 4 {
		return 0, nil, fmt.Errorf("not a forward message")
	}
	if b, err = msgp.Skip(b); err != nil { // the tag
		return 0, nil, err
	}
	entries := 0
	switch msgp.NextType(b) {
	case msgp.ArrayType:
		cnt, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil {
			return 0, nil, err
		}
		for range cnt {
			if rest, err = msgp.Skip(rest); err != nil {
				return 0, nil, err
			}
		}
		entries, b = int(cnt), rest
	default:
		// Message and PackedForward: the full decoder.
		e, option, err := decode(msg)
		return len(e), option, err
	}
	var option map[string]any
	if n == 3 {
		option, err = readOption(b)
	}
	return entries, option, err
}

// decode reads any of the forward protocol's modes.
func decode(msg []byte) ([]Entry, map[string]any, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(msg)
	if err != nil || n < 2 || n > 4 {
		return nil, nil, fmt.Errorf("not a forward message")
	}
	tag, b, err := readString(b)
	if err != nil {
		return nil, nil, err
	}
	var entries []Entry
	var option map[string]any
	switch msgp.NextType(b) {
	case msgp.ArrayType: // Forward: [tag, [[time, record], ...], option?]
		cnt, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil {
			return nil, nil, err
		}
		for range cnt {
			var e Entry
			if e, rest, err = readEntry(tag, rest); err != nil {
				return nil, nil, err
			}
			entries = append(entries, e)
		}
		b = rest
		if n == 3 {
			option, err = readOption(b)
		}
	case msgp.StrType, msgp.BinType: // PackedForward: [tag, packed entries, option?]
		packed, rest, err := value.ReadText(b)
		if err != nil {
			return nil, nil, err
		}
		if n == 3 {
			if option, err = readOption(rest); err != nil {
				return nil, nil, err
			}
		}
		if option["compressed"] == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(packed))
			if err != nil {
				return nil, nil, err
			}
			if packed, err = io.ReadAll(zr); err != nil {
				return nil, nil, err
			}
		}
		for len(packed) > 0 {
			var e Entry
			if e, packed, err = readEntry(tag, packed); err != nil {
				return nil, nil, err
			}
			entries = append(entries, e)
		}
	default: // Message: [tag, time, record, option?]
		var t time.Time
		if t, b, err = readTime(b); err != nil {
			return nil, nil, err
		}
		e, rest, err := readRecord(tag, t, b)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
		if n == 4 {
			option, err = readOption(rest)
		}
	}
	return entries, option, err
}

func readEntry(tag string, b []byte) (Entry, []byte, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n != 2 {
		return Entry{}, nil, fmt.Errorf("bad entry")
	}
	t, b, err := readTime(b)
	if err != nil {
		return Entry{}, nil, err
	}
	return readRecord(tag, t, b)
}

func readRecord(tag string, t time.Time, b []byte) (Entry, []byte, error) {
	rest, err := msgp.Skip(b)
	if err != nil {
		return Entry{}, nil, err
	}
	raw := b[:len(b)-len(rest)]
	v, err := value.FromMsgpack(raw)
	if err != nil {
		return Entry{}, nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Entry{}, nil, fmt.Errorf("record is not a map")
	}
	return Entry{Tag: tag, Time: t, Record: m, Raw: append([]byte(nil), raw...)}, rest, nil
}

// readTime accepts EventTime and integers; like in_forward it refuses floats.
func readTime(b []byte) (time.Time, []byte, error) {
	switch msgp.NextType(b) {
	case msgp.ExtensionType:
		// fixext8 is the usual form, but msgpack lets a sender use ext8
		// with length 8 too, and in_forward's decoder takes both.
		var p []byte
		switch {
		case len(b) >= 10 && b[0] == 0xd7 && b[1] == 0:
			p, b = b[2:10], b[10:]
		case len(b) >= 11 && b[0] == 0xc7 && b[1] == 8 && b[2] == 0:
			p, b = b[3:11], b[11:]
		default:
			return time.Time{}, nil, fmt.Errorf("extension time is not EventTime")
		}
		return time.Unix(int64(binary.BigEndian.Uint32(p)), int64(binary.BigEndian.Uint32(p[4:]))), b, nil
	case msgp.IntType, msgp.UintType:
		i, rest, err := msgp.ReadInt64Bytes(b)
		return time.Unix(i, 0), rest, err
	}
	return time.Time{}, nil, fmt.Errorf("time is not EventTime or integer")
}

func readString(b []byte) (string, []byte, error) {
	s, rest, err := value.ReadText(b)
	return string(s), rest, err
}

func readOption(b []byte) (map[string]any, error) {
	v, err := value.FromMsgpack(b)
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	return m, nil
}
