package scan

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfmap"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// The scan in process, under the race detector with more workers than
// files at once: a quarantine in one region, the key's uses in another,
// among the corpus's events, in two accounts.
func TestRunInProcess(t *testing.T) {
	root := t.TempDir()
	noise := corpus.Panther(t)[:100]
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	// The corpus's events in a file happened when the file's other events
	// did, as in a trail (their own times are years apart).
	noiseAt := func(at time.Time) []any {
		out := make([]any, len(noise))
		for i, e := range noise {
			m, _ := value.FromJSON(value.ToJSON(e))
			if mm, ok := m.(map[string]any); ok {
				mm["eventTime"] = at.Add(-time.Duration(i) * time.Second).Format(time.RFC3339)
			}
			out[i] = m
		}
		return out
	}
	for a, account := range []string{"111122223333", "444455556666"} {
		key := fmt.Sprintf("AKIAEXAMPLEEXPOSED%02d", a+1)
		q, _ := sequence.Event("rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
		withKey(q, account, key)
		q["eventID"] = account + "-q"
		archive.WriteLogFile(root, account, "us-east-1", t0.Add(20*time.Minute), "q", append([]any{q}, noiseAt(t0.Add(15*time.Minute))...))
		for i := range 8 {
			use, _ := sequence.Event("events/ec2_describe_instances_by_key")
			withKey(use, account, key)
			use["eventID"] = fmt.Sprintf("%s-use-%d", account, i)
			use["eventTime"] = t0.Add(time.Duration(30+i*40) * time.Minute).Format(time.RFC3339)
			archive.WriteLogFile(root, account, "eu-west-1", t0.Add(time.Duration(35+i*40)*time.Minute), fmt.Sprint(i), append([]any{use}, noiseAt(t0.Add(time.Duration(30+i*40)*time.Minute))...))
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
	// Eight uses 40 minutes apart (08:30 to 13:10), windows of an hour
	// from the hour: 6 alerts a key (08, 09, 10, 11, 12, 13 h).
	if s.ByRule[rules.QuarantinedKeyUsed] != 12 || s.ByRule[rules.QuarantineApplied] < 2 {
		t.Fatalf("%v", s.ByRule)
	}
	if len(res.Cases) != 4 { // each account's key, and its user
		t.Fatalf("%d cases to keep", len(res.Cases))
	}
}

// withKey makes e a call of ci-deployer of account with its own key, as
// keys are each account's.
func withKey(e map[string]any, account, key string) {
	id := e["userIdentity"].(map[string]any)
	id["accessKeyId"], id["accountId"], id["arn"] = key, account, "arn:aws:iam::"+account+":user/ci-deployer"
	e["recipientAccountId"] = account
}

// One pass: files read ahead with the watch list empty (every file here
// is read before the quarantine is given to the engine) still give the
// key's later uses, found by running the prefilter again over their held
// text when the key is watched; earlier calls with the key are not uses.
// The files are in memory (Options.Objects), as a test's may be.
func TestKeyWatchedAfterItsFilesWereRead(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	account := "111122223333"
	q, _ := sequence.Event("rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
	q["eventTime"] = t0.Format(time.RFC3339)
	noise := corpus.Panther(t)[:50]
	file := func(region string, stamp time.Time, name string, events ...any) source.Object {
		return source.Memory(archive.LogFile(account, region, stamp, name), archive.Gzip(archive.Records(append(events, noise...))))
	}
	objs := []source.Object{file("us-east-1", t0.Add(14*time.Minute), "q", q)}
	for i := range 12 {
		use, _ := sequence.Event("events/ec2_describe_instances_by_key")
		use["eventID"] = fmt.Sprintf("use-%d", i)
		use["eventTime"] = t0.Add(time.Duration(i-4) * time.Minute).Format(time.RFC3339)
		objs = append(objs, file("eu-west-1", t0.Add(time.Duration(i-3)*time.Minute), fmt.Sprint(i), use))
	}
	for _, workers := range []int{1, 4} {
		uses, res := usesOf(t, Options{Objects: objs, Workers: workers, Lookahead: 64})
		// Uses 5..11 come after the quarantine (use-4 is at its second).
		if want := []string{"use-5", "use-6", "use-7", "use-8", "use-9", "use-10", "use-11"}; !slices.Equal(uses, want) {
			t.Errorf("workers=%d: uses %q, want %q (%+v)", workers, uses, want, res.Summary)
		}
		if res.Summary.Added < 7 || res.Summary.Reread == 0 || res.Summary.Files != 13 {
			t.Errorf("workers=%d: %+v", workers, res.Summary)
		}
	}
}

// Any look-ahead, down to one file, and any number of workers finish the
// scan with the same uses: the merge, woken for files a few at a time
// (wakeEvery), never waits for a file no reader would read. Two accounts,
// so two merges run at once with two workers or more.
func TestEveryLookaheadFinishes(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	noise := corpus.Panther(t)[:20]
	var objs []source.Object
	var want []string
	for a, account := range []string{"111122223333", "444455556666"} {
		key := fmt.Sprintf("AKIAEXAMPLEEXPOSED%02d", a+1)
		q, _ := sequence.Event("rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
		withKey(q, account, key)
		q["eventTime"], q["eventID"] = t0.Format(time.RFC3339), fmt.Sprint("q-", a)
		file := func(stamp time.Time, name string, events ...any) source.Object {
			return source.Memory(archive.LogFile(account, "us-east-1", stamp, name), archive.Gzip(archive.Records(append(events, noise...))))
		}
		objs = append(objs, file(t0.Add(5*time.Minute), "q", q))
		for i := range 3 * wakeEvery {
			use, _ := sequence.Event("events/ec2_describe_instances_by_key")
			id := fmt.Sprintf("use-%d-%02d", a, i)
			withKey(use, account, key)
			use["eventID"] = id
			use["eventTime"] = t0.Add(time.Duration(10+i) * time.Minute).Format(time.RFC3339)
			objs = append(objs, file(t0.Add(time.Duration(15+i)*time.Minute), fmt.Sprint(i), use))
			want = append(want, id)
		}
	}
	for _, workers := range []int{1, 2, 3} {
		for _, look := range []int{1, 2, wakeEvery - 1, wakeEvery, wakeEvery + 1, 64} {
			done := make(chan []string)
			go func() {
				uses, _ := usesOf(t, Options{Objects: objs, Workers: workers, Lookahead: look})
				slices.Sort(uses)
				done <- uses
			}()
			select {
			case uses := <-done:
				if !slices.Equal(uses, want) {
					t.Errorf("workers=%d, look-ahead %d: uses %q, want %q", workers, look, uses, want)
				}
			case <-time.After(2 * time.Minute): // liveness, not speed: a scan of 26 small files
				t.Fatalf("workers=%d, look-ahead %d: the scan did not finish", workers, look)
			}
		}
	}
}

// Security Lake rows that only a watched key makes candidates are kept
// aside by their place in the file and read again, alone, once the key
// is watched: the quarantine's later uses alert, the earlier one does not.
func TestLakeRowsKeptForTheWatchList(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	q, _ := sequence.Event("rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
	q["eventTime"] = t0.Format(time.RFC3339)
	var recs []map[string]any
	for i, at := range []time.Duration{-time.Minute, 0, time.Minute, 2 * time.Hour} {
		e := q
		if at != 0 {
			e, _ = sequence.Event("events/ec2_describe_instances_by_key")
			e["eventID"], e["eventTime"] = fmt.Sprintf("use-%d", i), t0.Add(at).Format(time.RFC3339)
		}
		rec, err := ocsfmap.SecurityLakeV2(e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	for _, e := range corpus.Panther(t)[:40] {
		if n, ok := e.(map[string]any); !ok || n["eventVersion"] == nil {
			continue
		} else if rec, err := ocsfmap.SecurityLakeV2(n); err == nil {
			recs = append(recs, rec)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, archive.LakeFile("111122223333", "us-east-1", t0, "part-0"))
	if err := archive.WriteParquet(p, recs); err != nil {
		t.Fatal(err)
	}
	uses, res := usesOf(t, Options{Paths: []string{dir}})
	if !slices.Equal(uses, []string{"use-2", "use-3"}) || res.Summary.Kept == 0 {
		t.Errorf("uses %q, want use-2 and use-3 (%+v)", uses, res.Summary)
	}
}

// usesOf scans with every use its own alert, and lists the uses' events.
func usesOf(t *testing.T, o Options) ([]string, *Result) {
	t.Helper()
	o.Lifecycle = lifecycle.Options{WatchTTL: 720 * time.Hour, MaxKeys: 1000, UseWindow: time.Nanosecond, Grace: 15 * time.Minute, Delay: 15 * time.Minute}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var uses []string
	for _, f := range res.Findings {
		if f.Rule.ID == rules.QuarantinedKeyUsed {
			uses = append(uses, f.Event.ID)
		}
	}
	return uses, res
}

// A user quarantined without a key named is watched by name: its calls
// are uses, whether their identity holds the user's ARN or not (a failed
// console login's does not), and another IAM user's calls without an ARN
// are not decoded (a flood of failed logins would otherwise each be). A
// name past IAM's 64 bytes is watched by its digest, and its calls are
// found all the same. The files are read ahead of the merge, before or
// after it gives the quarantine (the merge's second look at a file, or a
// worker's first).
func TestKeylessUserCallsWithOrWithoutARN(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	account := "111122223333"
	for _, user := range []string{"ci-deployer", "u" + strings.Repeat("x", 70)} {
		q, _ := sequence.Event("rules/aws.iam.quarantine_applied/positive/attach_user_v2")
		q["recipientAccountId"], q["eventTime"] = account, t0.Format(time.RFC3339)
		q["requestParameters"] = map[string]any{"userName": user, "policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"}
		call := func(id, name string, arn bool, at time.Time) map[string]any {
			e, _ := sequence.Event("events/ec2_describe_instances_by_key")
			ident := map[string]any{"type": "IAMUser", "userName": name, "accountId": account}
			if arn {
				ident["arn"] = "arn:aws:iam::" + account + ":user/" + name
			}
			e["eventID"], e["eventTime"], e["recipientAccountId"], e["userIdentity"] = id, at.Format(time.RFC3339), account, ident
			return e
		}
		file := func(stamp time.Time, name string, events ...any) source.Object {
			return source.Memory(archive.LogFile(account, "us-east-1", stamp, name), archive.Gzip(archive.Records(events)))
		}
		objs := []source.Object{file(t0.Add(5*time.Minute), "q", q)}
		var want []string
		for i := range 6 {
			at := t0.Add(time.Duration(i+1) * time.Hour)
			events := []any{call(fmt.Sprintf("use-%d-arn", i), user, true, at), call(fmt.Sprintf("use-%d-no-arn", i), user, false, at.Add(time.Second))}
			want = append(want, fmt.Sprintf("use-%d-arn", i), fmt.Sprintf("use-%d-no-arn", i))
			for j := range 20 {
				events = append(events, call(fmt.Sprintf("alice-%d-%d", i, j), "alice", false, at.Add(2*time.Second)))
			}
			objs = append(objs, file(at.Add(5*time.Minute), fmt.Sprint(i), events...))
		}
		for _, workers := range []int{1, 4} {
			uses, res := usesOf(t, Options{Objects: objs, Workers: workers, Lookahead: 64})
			if !slices.Equal(uses, want) {
				t.Errorf("%.12s, workers=%d: uses %q, want %q", user, workers, uses, want)
			}
			// The quarantine and the user's 12 calls, not alice's 120 (a
			// digest is not in any record's text: then every IAM user's
			// call without an ARN is decoded).
			if user == "ci-deployer" && res.Summary.Records > 13 {
				t.Errorf("%.12s, workers=%d: %d records decoded (%+v)", user, workers, res.Summary.Records, res.Summary)
			}
		}
	}
}

// Another user's ARN near a watched user's call that holds none (a failed
// console login) does not hide the call: one in the user agent the
// caller sent, or at the end of the record before it.
func TestKeylessUserCallNotHiddenByAnotherARN(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	account, user := "111122223333", "ci-deployer"
	aliceARN := "arn:aws:iam::" + account + ":user/alice"
	q, _ := sequence.Event("rules/aws.iam.quarantine_applied/positive/attach_user_v2")
	q["recipientAccountId"], q["eventTime"] = account, t0.Format(time.RFC3339)
	q["requestParameters"] = map[string]any{"userName": user, "policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"}
	login := func(id string, at time.Time, agent string) map[string]any {
		e, _ := sequence.Event("events/signin_console_login_failure") // ci-deployer's, in account
		e["eventID"], e["eventTime"], e["userAgent"] = id, at.Format(time.RFC3339), agent
		return e
	}
	aliceCall := func(id string, at time.Time) map[string]any {
		return map[string]any{"eventVersion": "1.08", "eventID": id, "eventTime": at.Format(time.RFC3339),
			"userIdentity": map[string]any{"type": "AssumedRole", "accountId": account, "arn": "arn:aws:sts::" + account + ":assumed-role/admin/s"},
			"eventSource":  "iam.amazonaws.com", "eventName": "GetUser", "awsRegion": "us-east-1",
			"requestParameters": map[string]any{"userName": "alice"}, "resources": []any{map[string]any{"ARN": aliceARN}},
			"recipientAccountId": account}
	}
	at := t0.Add(time.Hour)
	events := []any{
		login("agent", at, "Mozilla/5.0 "+aliceARN),
		aliceCall("alice", at), login("after-alice", at.Add(time.Second), "Mozilla/5.0"),
	}
	objs := []source.Object{
		source.Memory(archive.LogFile(account, "us-east-1", t0.Add(5*time.Minute), "q"), archive.Gzip(archive.Records([]any{q}))),
		source.Memory(archive.LogFile(account, "us-east-1", at.Add(5*time.Minute), "logins"), archive.Gzip(archive.Records(events))),
	}
	if text := string(archive.Records(events)); strings.Index(text, aliceARN)-strings.Index(text, `"IAMUser"`) > 400 ||
		strings.LastIndex(text, `"IAMUser"`)-strings.LastIndex(text, aliceARN) > 400 {
		t.Fatalf("alice's ARN is not near each login's type: %s", text)
	}
	// And in an export outside the layout, read before the merge: its
	// records are kept aside by the users they name, the login's by its
	// userName too.
	exported := login("export-agent", at.Add(2*time.Second), "Mozilla/5.0 "+aliceARN)
	objs = append(objs, source.Memory("exports/logins.json", append(value.ToJSON(exported), '\n')))
	want := []string{"after-alice", "agent", "export-agent"}
	for _, workers := range []int{1, 4} {
		uses, _ := usesOf(t, Options{Objects: objs, Workers: workers, Lookahead: 64})
		if slices.Sort(uses); !slices.Equal(uses, want) {
			t.Errorf("workers=%d: uses %q, want %q", workers, uses, want)
		}
	}
}
