package scan

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// The scan in process, under the race detector with more workers than
// files at once: a quarantine in one region, the key's uses in another,
// among the corpus's events, in two accounts.
func TestRunInProcess(t *testing.T) {
	root := t.TempDir()
	noise := corpus.Panther(t)[:100]
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	// Each account's own key, as keys are.
	withKey := func(e map[string]any, account, key string) {
		id := e["userIdentity"].(map[string]any)
		id["accessKeyId"], id["accountId"], id["arn"] = key, account, "arn:aws:iam::"+account+":user/ci-deployer"
		e["recipientAccountId"] = account
	}
	for a, account := range []string{"111122223333", "444455556666"} {
		key := fmt.Sprintf("AKIAEXAMPLEEXPOSED%02d", a+1)
		q, _ := sequence.Event("rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
		withKey(q, account, key)
		q["eventID"] = account + "-q"
		archive.WriteLogFile(root, account, "us-east-1", t0.Add(20*time.Minute), "q", append([]any{q}, noise...))
		for i := range 8 {
			use, _ := sequence.Event("events/ec2_describe_instances_by_key")
			withKey(use, account, key)
			use["eventID"] = fmt.Sprintf("%s-use-%d", account, i)
			use["eventTime"] = t0.Add(time.Duration(30+i*40) * time.Minute).Format(time.RFC3339)
			archive.WriteLogFile(root, account, "eu-west-1", t0.Add(time.Duration(35+i*40)*time.Minute), fmt.Sprint(i), append([]any{use}, noise...))
		}
	}
	res, err := Run(context.Background(), Options{Paths: []string{root}, Workers: 8,
		Lifecycle: lifecycle.Options{WatchTTL: 720 * time.Hour, MaxKeys: 1000, UseWindow: time.Hour, Grace: 15 * time.Minute, Delay: 15 * time.Minute, Persist: true}})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	if s.Files != 18 || s.Failed != 0 || s.Accounts != 2 || s.Late != 0 {
		t.Fatalf("%+v", s)
	}
	// Eight uses 40 minutes apart, a window of an hour: 4 alerts a key
	// (the windows opened by uses 0, 2, 4, 6).
	if s.ByRule[rules.QuarantinedKeyUsed] != 8 || s.ByRule[rules.QuarantineApplied] < 2 {
		t.Fatalf("%v", s.ByRule)
	}
	if len(res.Cases) != 2 {
		t.Fatalf("%d cases to keep", len(res.Cases))
	}
}
