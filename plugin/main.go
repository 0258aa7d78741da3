// Command plugin is the cgo face of cloudtrail_quarantine: the FLBPlugin*
// exports Fluent Bit's Go proxy calls. It only reads config, keeps one
// instance per context and maps results to return codes; everything else
// lives in pure-Go packages. No panic may cross into Fluent Bit: it would
// take the whole log collector down, so every export recovers.
package main

import "C"

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"unsafe"

	"github.com/fluent/fluent-bit-go/output"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/config"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/instance"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/logx"
)

const pluginName = "cloudtrail_quarantine"

// instances names instances as Fluent Bit numbers them
// (cloudtrail_quarantine.0, .1, ... in the order it starts them); Fluent
// Bit does not tell a Go plugin.
var instances instance.Numbering

// Fluent Bit ignores SIGPIPE: a write to a closed pipe or socket fails
// with EPIPE. The Go runtime of a c-shared library installs its own
// SIGPIPE handler all the same, and after a write to fd 1 or 2 fails with
// EPIPE it raises SIGPIPE again and dies of it, taking Fluent Bit down,
// unless the program asked for SIGPIPE (os/signal, "SIGPIPE";
// runtime.sigpipe). Asking is all it takes: the write then just fails,
// and the stdout sink and the logger report and count it. A SIGPIPE on
// one of Fluent Bit's own threads still goes to Fluent Bit's disposition.
// The channel is never read: a signal that finds it full is dropped.
func init() { signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE) }

// registerFailed is returned by FLBPluginRegister after a panic: -1 is the
// one value Fluent Bit's flb_plugin_proxy_register takes as a failure.
const registerFailed = -1

//export FLBPluginRegister
func FLBPluginRegister(def unsafe.Pointer) (rc int) {
	defer recoverTo(logx.New(pluginName), "register", &rc, registerFailed)
	return output.FLBPluginRegister(def, pluginName, "Alerts when AWS quarantines an exposed access key (CloudTrail)")
}

// pluginConfig reads this instance's keys through Fluent Bit's proxy API.
type pluginConfig struct{ plugin unsafe.Pointer }

func (p pluginConfig) Get(key string) string { return output.FLBPluginConfigKey(p.plugin, key) }

//export FLBPluginInit
func FLBPluginInit(plugin unsafe.Pointer) (rc int) {
	name := fmt.Sprintf("%s.%d", pluginName, instances.Start())
	log := logx.New(name)
	defer recoverTo(log, "init", &rc, output.FLB_ERROR)
	defer func() {
		if rc != output.FLB_OK {
			instances.Exit()
		}
	}()
	// Every key is read here: later reads would see whichever instance
	// Fluent Bit initialised last.
	cfg, err := config.Load(pluginConfig{plugin})
	if err != nil {
		log.Errorf("invalid configuration: %v", err)
		return output.FLB_ERROR
	}
	log.Redact(cfg.Secrets())
	log.Infof("effective configuration: %s", cfg.Effective())
	for _, w := range cfg.Warnings() {
		log.Warnf("%s", w)
	}
	inst, err := instance.New(name, cfg, log)
	if err != nil {
		log.Errorf("invalid configuration: %v", err)
		return output.FLB_ERROR
	}
	output.FLBPluginSetContext(plugin, inst)
	return output.FLB_OK
}

//export FLBPluginFlushCtx
func FLBPluginFlushCtx(ctx, data unsafe.Pointer, length C.int, tag *C.char) (rc int) {
	inst, ok := output.FLBPluginGetContext(ctx).(*instance.Instance)
	if !ok {
		logx.New(pluginName).Errorf("flush for an unknown context: dropping the chunk")
		return output.FLB_ERROR
	}
	// A panic here is a bug; retrying keeps the chunk (and any alert in it)
	// alive, where ERROR would silently drop it.
	defer recoverTo(inst.Log(), "flush", &rc, output.FLB_RETRY)
	if data == nil || length <= 0 {
		return output.FLB_OK
	}
	// The chunk is read in place: Fluent Bit keeps it alive for the call.
	chunk := unsafe.Slice((*byte)(data), int(length))
	switch inst.Flush(chunk, C.GoString(tag)) {
	case instance.OK:
		return output.FLB_OK
	case instance.Retry:
		return output.FLB_RETRY
	default:
		return output.FLB_ERROR
	}
}

//export FLBPluginExitCtx
func FLBPluginExitCtx(ctx unsafe.Pointer) (rc int) {
	inst, ok := output.FLBPluginGetContext(ctx).(*instance.Instance)
	if !ok {
		return output.FLB_OK
	}
	defer recoverTo(inst.Log(), "exit", &rc, output.FLB_ERROR)
	defer instances.Exit()
	if err := inst.Close(); err != nil {
		inst.Log().Warnf("exit: %v", err)
	}
	return output.FLB_OK
}

//export FLBPluginExit
func FLBPluginExit() int { return output.FLB_OK }

//export FLBPluginUnregister
func FLBPluginUnregister(def unsafe.Pointer) {
	defer recoverTo(logx.New(pluginName), "unregister", new(int), 0)
	output.FLBPluginUnregister(def)
}

// recoverTo turns a panic into a logged error and the given return code.
func recoverTo(log *logx.Logger, where string, rc *int, code int) {
	if r := recover(); r != nil {
		log.Errorf("panic in %s (bug, please report): %v\n%s", where, r, debug.Stack())
		*rc = code
	}
}

func main() {}
