package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	alertfmt "github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/state"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/oldspool"
)

// The disk stops taking writes (the store file made immutable) after the
// writes that stored 600 alerts while the receiver was down. The receiver
// comes back: the sender delivers one batch, the store cannot record it,
// and the sender sends nothing more until it can (it backs off), while a
// new chunk gets RETRY. After a restart on a disk that takes writes again,
// over the same input, every alert arrives; the one batch whose delivery
// was never recorded is the only one repeated.
func TestBrokenDiskRepeatsAtMostOneBatch(t *testing.T) {
	addr, port := freeAddress(t)
	dir := t.TempDir()
	db := filepath.Join(dir, state.FileName)
	queued, want := quarantines(t, "disk", 600, 20)
	// Acks are waited for as long as a loaded machine needs: a batch re-sent
	// for a late ack would blur the count.
	props := storeProps(port, dir, "Forward_Max_Batch_Size", "64K", "Forward_Timeout", "30s")
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{props}, Flushes: queued, Quiet: true})
	if res.Summary["ok"] != int64(len(queued)) {
		t.Fatalf("storing while the receiver is down: %v\n%s", res.Summary, tail(res.Stderr))
	}
	later, wantLater := quarantines(t, "later", 20, 20)
	p := harness.Start(t, harness.Options{Instances: [][]harness.KV{props}, Flushes: later, PauseMS: 1500, Retries: 2, RetryWaitMS: 200, LingerMS: 4000})
	time.Sleep(500 * time.Millisecond) // Init has opened the store
	chattr(t, "+i", db)
	defer exec.Command("chattr", "-i", db).Run()
	srv := forwardrecv.Start(t, forwardrecv.Options{Address: addr})
	res = p.Wait()
	chattr(t, "-i", db)
	if !strings.Contains(res.Stderr, "the receiver took alerts the store cannot record: nothing more is sent until it can") ||
		!strings.Contains(res.Stderr, "were delivered but the store could not record it") {
		t.Fatalf("the store's failure to record was not met\n%s", tail(res.Stderr))
	}
	if got := rcs(res); len(got) != 3 || slices.ContainsFunc(got, func(rc int) bool { return rc != 2 }) {
		t.Fatalf("the chunk that came while the disk refused writes: rcs %v, want RETRY each time", got)
	}
	first := srv.Batches()
	if len(first) != 1 {
		t.Fatalf("%d batches sent while the store could not record the first", len(first))
	}

	harness.Run(t, harness.Options{Instances: [][]harness.KV{props}, Flushes: append(queued, later...), Quiet: true})
	for k := range wantLater {
		want[k] = true
	}
	waitComplete(t, want, func() map[string]int { return arrivals(srv.Entries()) })
	repeated := map[string]bool{}
	for k, n := range arrivals(srv.Entries()) {
		if n > 2 {
			t.Fatalf("%s arrived %d times", k, n)
		}
		if n == 2 {
			repeated[k] = true
		}
	}
	inFirst := arrivals(first[0])
	if len(repeated) != len(inFirst) {
		t.Fatalf("%d alerts repeated, the unrecorded batch held %d", len(repeated), len(inFirst))
	}
	for k := range repeated {
		if inFirst[k] == 0 {
			t.Fatalf("%s was repeated but was not in the unrecorded batch", k)
		}
	}
}

// An outage fills the store (2,000 alerts while the receiver is down); the
// receiver comes back and takes them all; bbolt keeps the file at its
// high-water mark, and the next start compacts it, keeping what it holds
// (the delivered keys: the same input again alerts nothing).
func TestStoreShrinksAfterAnOutage(t *testing.T) {
	addr, port := freeAddress(t)
	dir := t.TempDir()
	flushes, want := quarantines(t, "outage", 2000, 50)
	// A loaded machine must not make an ack late: a re-sent batch is no
	// concern of this test.
	props := storeProps(port, dir, "Forward_Timeout", "30s")
	harness.Run(t, harness.Options{Instances: [][]harness.KV{props}, Flushes: flushes, Quiet: true})
	srv := forwardrecv.Start(t, forwardrecv.Options{Address: addr})
	p := harness.Start(t, harness.Options{Instances: [][]harness.KV{props}, LingerMS: 100000, Timeout: 150 * time.Second})
	waitComplete(t, want, func() map[string]int { return arrivals(srv.Entries()) })
	p.Terminate()
	res := p.Wait()
	info, err := os.Stat(filepath.Join(dir, state.FileName))
	if err != nil || strings.Contains(res.Stderr, "stay in") {
		t.Fatalf("%v\n%s", err, tail(res.Stderr))
	}
	full := info.Size()
	arrived := len(srv.Entries())

	res = harness.Run(t, harness.Options{Instances: [][]harness.KV{props}, Flushes: flushes, Quiet: true})
	m := regexp.MustCompile(`compacted \S+ from (\d+) to (\d+) bytes`).FindStringSubmatch(res.Stderr)
	if m == nil {
		t.Fatalf("no compaction of a drained store of %d bytes\n%s", full, tail(res.Stderr))
	}
	from, _ := strconv.ParseInt(m[1], 10, 64)
	to, _ := strconv.ParseInt(m[2], 10, 64)
	after, _ := os.Stat(filepath.Join(dir, state.FileName))
	t.Logf("state.db: %d bytes after the outage drained, %d after compaction", full, to)
	if from != full || to*4 > full || after.Size() > to {
		t.Fatalf("compacted from %d (file %d) to %d (file now %d)", from, full, to, after.Size())
	}
	if !strings.Contains(res.Stderr, " duplicates_dropped=2000 ") || len(srv.Entries()) != arrived {
		t.Fatalf("the delivered keys did not survive compaction: %d entries, %d before\n%s", len(srv.Entries()), arrived, tail(res.Stderr))
	}
}

// An upgrade that overlaps the earlier version on the same Spool_Dir (the
// old process still holds its spool's lock): the new one does not take the
// spool over under it, and says why; once the old one has let go, it does.
func TestUpgradeWaitsForTheOldProcess(t *testing.T) {
	dir := t.TempDir()
	obs, _ := detect.New(detect.Options{}).Scan(chunkOf(quarantineApplied(t)), nil, nil)
	a := alertfmt.New(detect.Findings(obs)[0], true)
	os.WriteFile(filepath.Join(dir, "alerts.spool"), oldspool.Record(a.Key, nil, a.AppendMsgpack(nil, alertfmt.Native), a.Time), 0o600)
	os.WriteFile(filepath.Join(dir, "delivered.offset"), make([]byte, 8), 0o600)
	// The old process: it holds the lock as the earlier version did.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	srv := forwardrecv.Start(t, forwardrecv.Options{})
	props := kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(srv.Port()), "Spool_Dir", dir)
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{props}})
	if res.ExitCode != 1 || !strings.Contains(res.Stderr, "a process of an earlier version still holds the spool in "+dir) {
		t.Fatalf("exit %d\n%s", res.ExitCode, tail(res.Stderr))
	}
	if _, err := os.Stat(filepath.Join(dir, "alerts.spool")); err != nil || len(srv.Entries()) != 0 {
		t.Fatalf("the old spool was taken over under its process: %v, %d delivered", err, len(srv.Entries()))
	}
	lock.Close()
	res = harness.Run(t, harness.Options{Instances: [][]harness.KV{props}})
	if !strings.Contains(res.Stderr, "took over 1 undelivered alert(s)") {
		t.Fatalf("exit %d\n%s", res.ExitCode, tail(res.Stderr))
	}
	if got := eventIDs(srv.WaitEntries(t, 1, 5*time.Second)); !slices.Equal(got, []string{a.EventID}) {
		t.Fatalf("delivered %v", got)
	}
}
