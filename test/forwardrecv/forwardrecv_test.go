package forwardrecv

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

func record(id string) []byte {
	r := msgp.AppendMapHeader(nil, 1)
	r = msgp.AppendString(r, "id")
	return msgp.AppendString(r, id)
}

func entry(b []byte, sec int64, id string) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	b = msgp.AppendInt64(b, sec)
	return append(b, record(id)...)
}

// All four modes, written byte by byte and then all at once, decode to the
// same records; chunk options are acked.
func TestModesAndSplitReads(t *testing.T) {
	var msgs []byte
	// Message mode with an ack request
	m := msgp.AppendArrayHeader(nil, 4)
	m = msgp.AppendString(m, "t1")
	m = msgp.AppendInt64(m, 100)
	m = append(m, record("m")...)
	m = msgp.AppendMapHeader(m, 1)
	m = msgp.AppendString(m, "chunk")
	m = msgp.AppendString(m, "c1")
	msgs = append(msgs, m...)
	// Forward mode
	f := msgp.AppendArrayHeader(nil, 2)
	f = msgp.AppendString(f, "t2")
	f = msgp.AppendArrayHeader(f, 2)
	f = entry(f, 101, "f1")
	f = entry(f, 102, "f2")
	msgs = append(msgs, f...)
	// PackedForward
	p := msgp.AppendArrayHeader(nil, 2)
	p = msgp.AppendString(p, "t3")
	p = msgp.AppendBytes(p, entry(entry(nil, 103, "p1"), 104, "p2"))
	msgs = append(msgs, p...)
	// CompressedPackedForward
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(entry(nil, 105, "z1"))
	zw.Close()
	c := msgp.AppendArrayHeader(nil, 3)
	c = msgp.AppendString(c, "t4")
	c = msgp.AppendBytes(c, z.Bytes())
	c = msgp.AppendMapHeader(c, 1)
	c = msgp.AppendString(c, "compressed")
	c = msgp.AppendString(c, "gzip")
	msgs = append(msgs, c...)

	for _, split := range []bool{true, false} {
		srv := Start(t, Options{})
		conn, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if split {
			for i := range msgs {
				conn.Write(msgs[i : i+1])
			}
		} else {
			conn.Write(msgs)
		}
		got := srv.WaitEntries(t, 6, 5*time.Second)
		var ids []string
		for _, e := range got {
			ids = append(ids, e.Tag+":"+e.Record["id"].(string))
		}
		if want := "t1:m t2:f1 t2:f2 t3:p1 t3:p2 t4:z1"; strings.Join(ids, " ") != want {
			t.Fatalf("split=%v: %s", split, strings.Join(ids, " "))
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		ack := make([]byte, 64)
		n, _ := conn.Read(ack)
		if !bytes.Contains(ack[:n], []byte("c1")) {
			t.Fatalf("no ack for c1: %q", ack[:n])
		}
		conn.Close()
	}
}

// in_forward closes the connection on a float time in Message mode.
func TestFloatTimeClosesConnection(t *testing.T) {
	srv := Start(t, Options{})
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := msgp.AppendArrayHeader(nil, 3)
	m = msgp.AppendString(m, "t")
	m = msgp.AppendFloat64(m, 1.5)
	conn.Write(append(m, record("x")...))
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open")
	}
	if len(srv.Entries()) != 0 {
		t.Fatal("float-time record stored")
	}
}

// EventTime arrives as fixext8 or as ext8 of length 8; both keep the
// nanoseconds. A str-typed and a bin-typed value both read as string.
func TestEventTimeForms(t *testing.T) {
	srv := Start(t, Options{Network: "unix"})
	conn, err := net.Dial("unix", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, ext := range [][]byte{{0xd7, 0x00}, {0xc7, 0x08, 0x00}} {
		m := msgp.AppendArrayHeader(nil, 3)
		m = msgp.AppendString(m, "t")
		m = append(m, ext...)
		m = binary.BigEndian.AppendUint32(m, 1763632942)
		m = binary.BigEndian.AppendUint32(m, 42)
		m = msgp.AppendMapHeader(m, 2)
		m = msgp.AppendString(m, "s")
		m = msgp.AppendString(m, "str")
		m = msgp.AppendString(m, "b")
		m = msgp.AppendBytes(m, []byte("bin"))
		conn.Write(m)
	}
	got := srv.WaitEntries(t, 2, 5*time.Second)
	for i, e := range got {
		if !e.Time.Equal(time.Unix(1763632942, 42)) || e.Record["s"] != "str" || e.Record["b"] != "bin" {
			t.Errorf("entry %d: %v %v", i, e.Time, e.Record)
		}
	}
}
