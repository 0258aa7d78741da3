// Package loopback finds addresses for tests' listeners.
package loopback

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// FreeAddr is a loopback host:port nothing listens on right now, for a
// listener a test starts later (a receiver that comes back). It is below
// the kernel's ephemeral range, so the outgoing connections of the tests
// running beside it (a plugin calling a receiver that is down) cannot
// take it in the meantime, as they can any port the kernel hands out.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	t.Fatal("no free loopback port below the ephemeral range")
	return ""
}
