package forward

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// authenticate runs the forward protocol's shared-key handshake: the
// receiver speaks first with HELO {nonce, auth}, we answer PING with our
// hostname, a fresh salt and hex(sha512(salt, hostname, nonce, key)), and
// the receiver's PONG says whether it accepted. (Fluent Bit's own client
// does not check the digest a PONG carries; neither do we: TLS
// verification is what proves the receiver's identity.)
func (s *Sink) authenticate(c net.Conn, deadline time.Time) error {
	c.SetDeadline(deadline)
	helo, err := s.readObject(c)
	if err != nil {
		return fmt.Errorf("handshake: no HELO: %w", err)
	}
	nonce, err := heloNonce(helo)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	var salt [16]byte
	rand.Read(salt[:])
	ping := msgp.AppendArrayHeader(nil, 6)
	ping = msgp.AppendString(ping, "PING")
	ping = msgp.AppendString(ping, s.o.SelfHostname)
	ping = msgp.AppendStringFromBytes(ping, salt[:])
	ping = msgp.AppendString(ping, SharedKeyDigest(salt[:], s.o.SelfHostname, nonce, s.o.SharedKey))
	ping = msgp.AppendString(ping, "") // user name: no user authentication
	ping = msgp.AppendString(ping, "")
	if _, err := c.Write(ping); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	pong, err := s.readObject(c)
	if err != nil {
		return fmt.Errorf("handshake: no PONG: %w", err)
	}
	return checkPong(pong)
}

// SharedKeyDigest is hex(sha512(salt + hostname + nonce + key)), the proof
// of the shared key in PING and PONG.
func SharedKeyDigest(salt []byte, hostname string, nonce []byte, key string) string {
	h := sha512.New()
	h.Write(salt)
	h.Write([]byte(hostname))
	h.Write(nonce)
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil))
}

// heloNonce reads ["HELO", {"nonce": ..., ...}].
func heloNonce(b []byte) ([]byte, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n < 2 {
		return nil, errors.New("HELO is not an array")
	}
	kind, b, err := value.ReadText(b)
	if err != nil || string(kind) != "HELO" {
		return nil, fmt.Errorf("expected HELO, got %q", kind)
	}
	entries, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return nil, errors.New("HELO options are not a map")
	}
	for range entries {
		var k, v []byte
		if k, b, err = value.ReadText(b); err != nil {
			return nil, errors.New("bad HELO options")
		}
		if string(k) != "nonce" {
			if b, err = msgp.Skip(b); err != nil {
				return nil, errors.New("bad HELO options")
			}
			continue
		}
		if v, _, err = value.ReadText(b); err != nil || len(v) == 0 {
			return nil, errors.New("HELO nonce is not bytes")
		}
		return append([]byte(nil), v...), nil
	}
	return nil, errors.New("HELO has no nonce")
}

// checkPong reads ["PONG", ok, reason, hostname, digest].
func checkPong(b []byte) error {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n < 3 {
		return errors.New("handshake: PONG is not an array")
	}
	kind, b, err := value.ReadText(b)
	if err != nil || string(kind) != "PONG" {
		return fmt.Errorf("handshake: expected PONG, got %q", kind)
	}
	ok, b, err := msgp.ReadBoolBytes(b)
	if err != nil {
		return errors.New("handshake: bad PONG")
	}
	if !ok {
		reason, _, _ := value.ReadText(b)
		return fmt.Errorf("receiver refused authentication: %s", reason)
	}
	return nil
}
