package scan_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

var sequenceEvent = sequence.Event

// Shards 0..3 of 4 together give exactly the alerts of the full scan,
// lifecycle included, each account's in one shard only; K comes from the
// job engine when --shard gives N alone.
func TestShardsMakeTheFullScan(t *testing.T) {
	root := t.TempDir()
	layoutArchive(t, root)
	// Lifecycle cases in three accounts (three shards): a quarantine and
	// the key's use.
	for i, account := range []string{"111122223333", "444455556666", "210987654321"} {
		q := fixtureEvent(t, "rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
		use := fixtureEvent(t, "events/ec2_describe_instances_by_key")
		// Each account its own key and user, as they are.
		for _, e := range []map[string]any{q, use} {
			id := e["userIdentity"].(map[string]any)
			id["accessKeyId"], id["accountId"] = fmt.Sprintf("AKIAEXAMPLEEXPOSED%02d", i+1), account
			id["arn"] = "arn:aws:iam::" + account + ":user/ci-deployer"
			e["recipientAccountId"] = account
			e["eventID"] = fmt.Sprintf("%s-%v", account, e["eventName"])
		}
		use["eventTime"] = "2026-11-20T09:00:00Z"
		writeLog(t, root, account, "us-east-1", t0.Add(time.Duration(30+i)*time.Minute), "q", q)
		writeLog(t, root, account, "eu-west-1", t0.Add(time.Duration(65+i)*time.Minute), "u", use)
	}
	full := scanOf(t, root)
	if full.code != 1 {
		t.Fatalf("exit %d\n%s", full.code, full.stderr)
	}
	all := ids(alerts(t, full.stdout))
	if c := countRules(alerts(t, full.stdout)); c["aws.iam.quarantined_key_used"] < 2 {
		t.Fatalf("no lifecycle alerts to shard: %v", c)
	}
	var union []string
	owner := map[string]int{}
	for k := range 4 {
		res := scanOf(t, "--shard", fmt.Sprintf("%d/4", k), root)
		if res.code > 1 {
			t.Fatalf("shard %d: exit %d\n%s", k, res.code, res.stderr)
		}
		for _, a := range alerts(t, res.stdout) {
			if o, seen := owner[a.AccountID]; seen && o != k && a.AccountID != "" {
				t.Errorf("account %s alerts in shards %d and %d", a.AccountID, o, k)
			}
			owner[a.AccountID] = k
		}
		union = append(union, ids(alerts(t, res.stdout))...)
	}
	if len(owner) < 3 {
		t.Fatalf("the accounts' alerts fall in %d shards: not much of a test", len(owner))
	}
	slices.Sort(union)
	if !slices.Equal(union, all) {
		t.Fatalf("the shards' alerts differ from the full scan's:\nshards %d\nfull   %d", len(union), len(all))
	}
	// --shard N takes K from a Kubernetes Indexed Job or an AWS Batch
	// array job.
	k2 := scanOf(t, "--shard", "2/4", root)
	for _, env := range []string{"JOB_COMPLETION_INDEX=2", "AWS_BATCH_JOB_ARRAY_INDEX=2"} {
		res := scanCmd(t, run{args: []string{"--shard", "4", root}, env: []string{env}})
		if res.stdout != k2.stdout || res.code != k2.code {
			t.Errorf("%s: not shard 2/4", env)
		}
	}
	if res := scanCmd(t, run{args: []string{"--shard", "4", root}, env: []string{"JOB_COMPLETION_INDEX=", "AWS_BATCH_JOB_ARRAY_INDEX="}}); res.code != 2 || !strings.Contains(res.stderr, "JOB_COMPLETION_INDEX") {
		t.Errorf("--shard N without an index: exit %d\n%s", res.code, res.stderr)
	}
}

func fixtureEvent(t testing.TB, name string) map[string]any {
	t.Helper()
	e, err := sequenceEvent(name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func writeLog(t testing.TB, root, account, region string, at time.Time, unique string, events ...map[string]any) string {
	t.Helper()
	p, err := archive.WriteLogFile(root, account, region, at, unique, anys(events))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The README's Kubernetes Indexed Job: an Indexed Job whose pods run the
// command with flags it takes, one shard each.
func TestIndexedJobManifest(t *testing.T) {
	raw, err := os.ReadFile(paths.Repo("conf", "k8s", "scan-indexed-job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var job struct {
		Kind string
		Spec struct {
			CompletionMode string `yaml:"completionMode"`
			Completions    int
			Parallelism    int
			Template       struct {
				Spec struct {
					Containers []struct {
						Command, Args []string
					}
				}
			}
		}
	}
	if err := yaml.Unmarshal(raw, &job); err != nil {
		t.Fatal(err)
	}
	if job.Kind != "Job" || job.Spec.CompletionMode != "Indexed" || len(job.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("not an Indexed Job: %+v", job)
	}
	c := job.Spec.Template.Spec.Containers[0]
	args := c.Args
	i := slices.Index(args, "--shard")
	if c.Command[0] != "cloudtrail-quarantine" || args[0] != "scan" || i < 0 || args[i+1] != fmt.Sprint(job.Spec.Completions) {
		t.Fatalf("the pods do not run one shard each of %d: %q %q", job.Spec.Completions, c.Command, args)
	}
	// Its flags, run with each index the Job hands out, over an empty
	// local tree in place of the bucket.
	empty := t.TempDir()
	for k := range job.Spec.Completions {
		flags := append(slices.Clone(args[1:len(args)-1]), empty)
		res := scanCmd(t, run{args: flags, env: []string{fmt.Sprintf("JOB_COMPLETION_INDEX=%d", k)}})
		if res.code != 0 {
			t.Fatalf("index %d: %q: exit %d\n%s", k, flags, res.code, res.stderr)
		}
	}
	if !strings.HasPrefix(args[len(args)-1], "s3://") {
		t.Errorf("the Job scans %q, not a bucket", args[len(args)-1])
	}
}
