// Command echo is a minimal Go output plugin for testing the harness
// itself: it reports what it sees and returns what its Mode asks for.
package main

/*
#include <string.h>

// Uses 64 KiB of C stack: more than a 24 KiB coroutine has.
static int deep_c_frame(void) {
	volatile char buf[65536];
	memset((char *) buf, 1, sizeof(buf));
	return buf[100];
}
*/
import "C"

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
	"sync"
	"unsafe"

	"github.com/fluent/fluent-bit-go/output"
)

type ctx struct {
	mode  string
	mu    sync.Mutex
	calls int
}

//export FLBPluginRegister
func FLBPluginRegister(def unsafe.Pointer) int {
	return output.FLBPluginRegister(def, "echo", "harness self-test")
}

//export FLBPluginInit
func FLBPluginInit(plugin unsafe.Pointer) int {
	c := &ctx{mode: output.FLBPluginConfigKey(plugin, "Mode")}
	if c.mode == "silent" {
		output.FLBPluginSetContext(plugin, c)
		return output.FLB_OK
	}
	fmt.Fprintf(os.Stderr, "echo: init mode=%q label=%q host=%q tls.verify=%q\n", c.mode,
		output.FLBPluginConfigKey(plugin, "label"), output.FLBPluginConfigKey(plugin, "Host"),
		output.FLBPluginConfigKey(plugin, "tls.verify"))
	if c.mode == "fail-init" {
		return output.FLB_ERROR
	}
	output.FLBPluginSetContext(plugin, c)
	return output.FLB_OK
}

//export FLBPluginFlushCtx
func FLBPluginFlushCtx(p, data unsafe.Pointer, length C.int, tag *C.char) int {
	c := output.FLBPluginGetContext(p).(*ctx)
	switch c.mode {
	case "silent":
		return output.FLB_OK
	case "stdout":
		// What a plugin printing records does (Fluent Bit's own stdout
		// output, in Go).
		fmt.Fprintf(os.Stdout, "echo: %d bytes\n", int(length))
		return output.FLB_OK
	}
	comm, _ := os.ReadFile("/proc/thread-self/comm")
	sum := sha256.Sum256(unsafe.Slice((*byte)(data), int(length)))
	fmt.Fprintf(os.Stderr, "echo: flush mode=%s tag=%s thread=%s sha=%x\n", c.mode, C.GoString(tag), strings.TrimSpace(string(comm)), sum[:4])
	switch c.mode {
	case "retry-once":
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.calls++; c.calls == 1 {
			return output.FLB_RETRY
		}
	case "retry":
		return output.FLB_RETRY
	case "deep-c-stack":
		C.deep_c_frame()
	case "deep-go-stack":
		fmt.Fprintf(os.Stderr, "echo: recursion %d\n", recurse(20000))
	}
	return output.FLB_OK
}

// recurse grows the goroutine stack well past 24 KiB: Go code runs on its
// own stack, not the coroutine's.
func recurse(n int) int {
	var pad [64]byte
	pad[n%64] = 1
	if n == 0 {
		return int(pad[0])
	}
	return recurse(n-1) + int(pad[n%64])
}

//export FLBPluginExitCtx
func FLBPluginExitCtx(p unsafe.Pointer) int {
	if mode := output.FLBPluginGetContext(p).(*ctx).mode; mode == "silent" || mode == "stdout" {
		return output.FLB_OK
	}
	fmt.Fprintf(os.Stderr, "echo: exit mode=%s\n", output.FLBPluginGetContext(p).(*ctx).mode)
	return output.FLB_OK
}

func main() {}
