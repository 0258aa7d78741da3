package e2e

import (
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// The arm64 build works, not just builds: `make arm64` (which installs
// Debian's cross compiler, arm64 libc and qemu-user when missing), then
// every rule's examples through the arm64 .so loaded by the arm64 harness
// under qemu-user, and a forward delivery from it.
func TestArm64UnderQemu(t *testing.T) {
	out, err := exec.Command("make", "-C", paths.Root(), "arm64").CombinedOutput()
	if err != nil {
		t.Fatalf("make arm64: %v\n%s", err, out)
	}
	arm64 := harness.Options{
		Plugin:  paths.Repo("build", "out_cloudtrail_quarantine-arm64.so"),
		Command: []string{"qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", paths.Repo("build", "harness-arm64")},
		Timeout: 2 * time.Minute,
	}
	for _, rule := range []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_attempt_failed", "aws.iam.quarantine_removed"} {
		var pos, neg []any
		var want []string
		for _, e := range fixtures(t, rule, "positive") {
			pos = append(pos, e)
			want = append(want, e["eventID"].(string))
		}
		for _, e := range fixtures(t, rule, "negative") {
			neg = append(neg, e)
		}
		o := arm64
		o.Instances = [][]harness.KV{nil}
		o.Flushes = []harness.Flush{{Tag: tag, Data: chunkOf(pos...)}, {Tag: tag, Data: chunkOf(neg...)}}
		res := harness.Run(t, o)
		var got []string
		for _, a := range parseLines(t, res.Stdout) {
			if a.Rule.ID == rule {
				got = append(got, a.EventID)
			}
		}
		if res.ExitCode != 0 || !slices.Equal(got, want) {
			t.Fatalf("arm64 %s: exit %d, alerts %v, want %v\n%s", rule, res.ExitCode, got, want, res.Stderr)
		}
	}
	srv := forwardrecv.Start(t, forwardrecv.Options{})
	o := arm64
	o.Instances = [][]harness.KV{kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(srv.Port()))}
	o.Flushes = []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}}
	if res := harness.Run(t, o); !slices.Equal(rcs(res), []int{1}) {
		t.Fatalf("arm64 forward: rcs %v\n%s", rcs(res), res.Stderr)
	}
	srv.WaitEntries(t, 1, 5*time.Second)
}
