package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

var (
	echoOnce sync.Once
	echoSO   string
	echoErr  error
)

// echo builds the self-test plugin in testdata/echo.
func echo(t *testing.T) string {
	t.Helper()
	echoOnce.Do(func() {
		echoSO = filepath.Join(paths.Repo("build"), "echo-test.so")
		if echoErr = os.MkdirAll(filepath.Dir(echoSO), 0o755); echoErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", echoSO, "./test/harness/testdata/echo")
		cmd.Dir = paths.Root()
		out, err := cmd.CombinedOutput()
		if err != nil {
			echoErr = err
			t.Logf("%s", out)
		}
	})
	if echoErr != nil {
		t.Fatal(echoErr)
	}
	return echoSO
}

func run(t *testing.T, o Options) Result {
	t.Helper()
	o.Plugin = echo(t)
	return Run(t, o)
}

func TestRegisterInitAndConfigLookup(t *testing.T) {
	res := run(t, Options{
		Instances: [][]KV{
			{{"Mode", "a"}, {"Label", "first"}, {"label", "second"}, {"Host", "example"}, {"Tls.Verify", "off"}},
			{{"MODE", "b"}},
		},
	})
	if res.ExitCode != 0 {
		t.Fatalf("exit %d\n%s", res.ExitCode, res.Stderr)
	}
	for _, want := range []string{
		"harness: registered name=echo description=harness self-test",
		`echo: init mode="a" label="first" host="" tls.verify=""`, // first value wins; core keys never arrive
		`echo: init mode="b" label="" host="" tls.verify=""`,
		"harness: core key Host not passed to plugin",
		"echo: exit mode=a", "echo: exit mode=b",
	} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("missing %q in\n%s", want, res.Stderr)
		}
	}
}

func TestFlushThreadsAndRetry(t *testing.T) {
	chunk := []byte("identical bytes")
	res := run(t, Options{
		Instances: [][]KV{{{"Mode", "retry-once"}}, {{"Mode", "retry"}}},
		Flushes:   []Flush{{Instance: 0, Tag: "t0", Data: chunk}, {Instance: 1, Tag: "t1", Data: chunk}},
		Retries:   2,
	})
	var got []string
	for _, a := range res.Attempts {
		got = append(got, strings.Join([]string{a.Tag, string(rune('0' + a.Attempt)), string(rune('0' + a.RC))}, ":"))
	}
	if want := []string{"t0:1:2", "t0:2:1", "t1:1:2", "t1:2:2", "t1:3:2"}; !slices.Equal(got, want) {
		t.Fatalf("attempts %v, want %v", got, want)
	}
	if res.Summary["dropped"] != 1 || res.Summary["flushes"] != 2 || res.Summary["retry"] != 4 {
		t.Fatalf("summary %v", res.Summary)
	}
	// Re-dispatches carry the identical bytes, on the engine thread.
	shas := regexp.MustCompile(`thread=(\S+) sha=(\w+)`).FindAllStringSubmatch(res.Stderr, -1)
	if len(shas) != 5 {
		t.Fatalf("%d flush reports", len(shas))
	}
	for _, m := range shas {
		if m[1] != "flb-pipeline" || m[2] != shas[0][2] {
			t.Fatalf("flush on %s with sha %s", m[1], m[2])
		}
	}
}

func TestWorkersRunFlushesOnWorkerThreads(t *testing.T) {
	var flushes []Flush
	for range 20 {
		flushes = append(flushes, Flush{Tag: "t", Data: []byte("x")})
	}
	res := run(t, Options{Instances: [][]KV{{{"Mode", "ok"}}}, Flushes: flushes, Workers: 2})
	threads := map[string]bool{}
	for _, m := range regexp.MustCompile(`thread=(\S+)`).FindAllStringSubmatch(res.Stderr, -1) {
		threads[m[1]] = true
	}
	for th := range threads {
		if !strings.HasPrefix(th, "flb-out-ctq-w") {
			t.Fatalf("flush on thread %s", th)
		}
	}
	if res.Summary["ok"] != 20 {
		t.Fatalf("summary %v", res.Summary)
	}
}

// The flush really runs on a small coroutine stack: C code needing 64 KiB
// of stack dies on the guard page with the default 24 KiB, and works with
// a larger stack. Go code is unaffected (its goroutine stack grows).
func TestFlushRunsOnASmallCoroutineStack(t *testing.T) {
	flush := []Flush{{Tag: "t", Data: []byte("x")}}
	small := run(t, Options{Instances: [][]KV{{{"Mode", "deep-c-stack"}}}, Flushes: flush})
	if small.ExitCode == 0 {
		t.Fatalf("64 KiB of C stack fit in a 24 KiB coroutine:\n%s", small.Stderr)
	}
	large := run(t, Options{Instances: [][]KV{{{"Mode", "deep-c-stack"}}}, Flushes: flush, StackSize: 256 << 10})
	if large.ExitCode != 0 || large.Summary["ok"] != 1 {
		t.Fatalf("with a 256 KiB stack: exit %d\n%s", large.ExitCode, large.Stderr)
	}
	goDeep := run(t, Options{Instances: [][]KV{{{"Mode", "deep-go-stack"}}}, Flushes: flush})
	if goDeep.ExitCode != 0 || goDeep.Summary["ok"] != 1 {
		t.Fatalf("deep Go recursion in a flush: exit %d\n%s", goDeep.ExitCode, goDeep.Stderr)
	}
}

func TestInitFailureStopsTheHost(t *testing.T) {
	res := run(t, Options{Instances: [][]KV{{{"Mode", "fail-init"}}}, Flushes: []Flush{{Tag: "t", Data: []byte("x")}}})
	if res.ExitCode != 1 || !strings.Contains(res.Stderr, "harness: init instance=0 rc=0 failed") || len(res.Attempts) != 0 {
		t.Fatalf("exit %d\n%s", res.ExitCode, res.Stderr)
	}
}

// The harness ignores SIGPIPE as Fluent Bit does (flb_config_init), so its
// own reports to a closed stderr fail quietly, as Fluent Bit's log lines
// do; it does not mask a Go plugin's death by a closed stdout, which is
// what Fluent Bit sees of a plugin that does not handle SIGPIPE (the Go
// runtime raises it again after EPIPE on fd 1 and 2).
func TestSIGPIPEAsInFluentBit(t *testing.T) {
	flushes := []Flush{{Tag: "t", Data: []byte("x")}, {Tag: "t", Data: []byte("y")}}
	quiet := run(t, Options{Instances: [][]KV{{{"Mode", "silent"}}}, Flushes: flushes, Stderr: ClosedPipe(t)})
	if quiet.ExitCode != 0 {
		t.Fatalf("the harness died writing to a closed stderr: exit %d", quiet.ExitCode)
	}
	var stderr strings.Builder
	dies := run(t, Options{Instances: [][]KV{{{"Mode", "stdout"}}}, Flushes: flushes, Stdout: ClosedPipe(t), Stderr: &stderr})
	if dies.Signal != syscall.SIGPIPE {
		t.Fatalf("a Go plugin writing to a closed stdout: exit %d, want death by SIGPIPE\n%s", dies.ExitCode, stderr.String())
	}
}
