package state

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/oldspool"
)

// Record content decides alert keys and case ids: a 40,000-character
// eventID or user name is past bbolt's 32 KiB key limit. It is stored all
// the same, known afterwards, delivered and set aside like any other, and
// the entries around it go through in the same transactions.
func TestLongKeysDoNotBlockTheStore(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, options(dir))
	long := "aws.iam.quarantine_attempt_failed/" + strings.Repeat("x", 40000)
	longCase := "user:111122223333\x00" + strings.Repeat("u", 40000)
	es := entries("a", 3)
	es = slices.Insert(es, 1, Entry{Time: t0, Key: long, Kind: Alert, Body: []byte("long")}, Entry{Time: t0, Key: long + "y", Kind: Alert, Body: []byte("longer")})
	res, err := s.Enqueue(es, 0, &Changes{Cases: map[string][]byte{longCase: []byte("case"), "key:AKIA1": []byte("short")}, Watermark: 1})
	if err != nil || slices.Contains(res.Taken, false) {
		t.Fatalf("enqueued %+v: %v", res, err)
	}
	for _, k := range []string{long, long + "y", "a-002"} {
		if known, err := s.Known(k); !known || err != nil {
			t.Fatalf("%.20s... not known: %v", k, err)
		}
	}
	head, _ := s.Head(10, 1<<20)
	if len(head) != 5 || head[1].Key != long {
		t.Fatalf("head %d entries, the long key read back as %.20s...", len(head), head[1].Key)
	}
	if err := s.Delivered(head[:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(head[2:3], []string{"refused"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(&Changes{Deleted: []string{longCase}, Watermark: 2}); err != nil {
		t.Fatal(err)
	}
	// Later transactions are not held up by anything the long ones left.
	if res, err := s.Enqueue(entries("b", 2), 0, nil); err != nil || !slices.Equal(res.Taken, []bool{true, true}) {
		t.Fatalf("later entries: %+v: %v", res, err)
	}
	cases := 0
	if _, err := s.Cases(func(string, []byte) error { cases++; return nil }); err != nil || cases != 1 {
		t.Fatalf("%d cases: %v", cases, err)
	}
	// Every key of every bucket is within the bound.
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, _ []byte) error {
				if len(k) > 512 {
					t.Errorf("bucket %s holds a key of %d bytes", name, len(k))
				}
				return nil
			})
		})
	})
}

// An alert set aside leaves the queue, stays known (the same event read
// again is not queued again), survives a restart, and goes after
// DeadLetterTTL, or when the alerts set aside pass MaxQueueBytes.
func TestDeadLetters(t *testing.T) {
	now := t0
	dir := t.TempDir()
	o := options(dir)
	o.DeadLetterTTL, o.Now = time.Hour, func() time.Time { return now }
	s, _ := open(t, o)
	s.Enqueue(entries("a", 4), 0, nil)
	head, _ := s.Head(10, 1<<20)
	if err := s.DeadLetter(head[1:2], []string{"es_bulk: item failed with 400 mapper_parsing_exception"}); err != nil {
		t.Fatal(err)
	}
	if rest, _ := s.Head(10, 1<<20); !slices.Equal(keys(rest), []string{"a-000", "a-002", "a-003"}) {
		t.Fatalf("queue after setting a-001 aside: %v", keys(rest))
	}
	if n, _, _ := s.Pending(); n != 3 {
		t.Fatalf("%d pending", n)
	}
	if res, _ := s.Enqueue(entries("a", 2), 0, nil); slices.Contains(res.Taken, true) {
		t.Fatal("an alert set aside was queued again")
	}
	s.Close()
	s, _ = open(t, o)
	var got []Dead
	s.EachDeadLetter(func(d Dead) error { got = append(got, d); return nil })
	if n, bytes, _ := s.DeadLetters(); n != 1 || bytes == 0 || len(got) != 1 || got[0].Key != "a-001" || string(got[0].Body) != "alert a 1" ||
		!strings.Contains(got[0].Reason, "mapper_parsing_exception") || !got[0].At.Equal(now) {
		t.Fatalf("%d dead letters (%d bytes): %+v", n, bytes, got)
	}
	// Past the TTL, the next start drops it.
	now = now.Add(2 * time.Hour)
	s.Close()
	s, _ = open(t, o)
	if n, _, _ := s.DeadLetters(); n != 0 {
		t.Fatalf("%d dead letters past their TTL", n)
	}
	// Past MaxQueueBytes of dead letters, the oldest go.
	s.Close()
	o.MaxQueueBytes = 200
	s, _ = open(t, o)
	rest, _ := s.Head(10, 1<<20)
	s.Delivered(rest)
	for i := range 6 {
		es := entries(fmt.Sprint("d", i), 1)
		s.Enqueue(es, 0, nil)
		head, _ := s.Head(1, 1<<20)
		now = now.Add(time.Second)
		if err := s.DeadLetter(head, []string{"refused"}); err != nil {
			t.Fatal(err)
		}
	}
	var kept []string
	s.EachDeadLetter(func(d Dead) error { kept = append(kept, d.Key); return nil })
	if _, bytes, _ := s.DeadLetters(); bytes > 200 || len(kept) == 0 || kept[len(kept)-1] != "d5-000" || slices.Contains(kept, "d0-000") {
		t.Fatalf("kept %v, %d bytes", kept, bytes)
	}
}

// A store an outage filled and the sender drained keeps its size in
// bbolt; the next start copies it into a file of what it holds.
func TestStoreShrinksWhenReopened(t *testing.T) {
	dir := t.TempDir()
	o := options(dir)
	o.MaxQueueBytes = 64 << 20
	s, _ := open(t, o)
	body := make([]byte, 4096)
	for round := range 5 {
		var es []Entry
		for i := range 500 {
			es = append(es, Entry{Time: t0, Key: fmt.Sprintf("r%d-%d", round, i), Kind: Alert, Body: body})
		}
		if _, err := s.Enqueue(es, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.Enqueue([]Entry{{Time: t0, Key: "stays", Kind: Alert, Body: []byte("kept")}}, 0, nil)
	for {
		head, _ := s.Head(300, 1<<20)
		if len(head) == 1 && head[0].Key == "stays" {
			break
		}
		if err := s.Delivered(slices.DeleteFunc(head, func(e Entry) bool { return e.Key == "stays" })); err != nil {
			t.Fatal(err)
		}
	}
	full := s.FileSize()
	s.Close()
	s, rep := open(t, o)
	if rep.CompactError != nil || rep.Before != full || rep.After >= full/4 || s.FileSize() != rep.After {
		t.Fatalf("reopened: %+v, file %d bytes (was %d)", rep, s.FileSize(), full)
	}
	// What it held is all there: the queue, the delivered keys, the
	// queue's sequence (a new entry goes after the old one).
	if known, _ := s.Known("r4-499"); !known {
		t.Fatal("delivered keys lost")
	}
	s.Enqueue(entries("new", 1), 0, nil)
	if head, _ := s.Head(10, 1<<20); !slices.Equal(keys(head), []string{"stays", "new-000"}) {
		t.Fatalf("queue after compaction: %v", keys(head))
	}
	// Small or dense: left alone.
	s.Close()
	_, rep = open(t, o)
	if rep.After != rep.Before {
		t.Fatalf("a compacted store was compacted again: %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+compactSuffix)); !os.IsNotExist(err) {
		t.Fatalf("the copy is left: %v", err)
	}
}

// An earlier version's process still running on the directory holds its
// spool's lock: the spool is not taken over under it; once it lets go, it
// is.
func TestOldSpoolLockIsHonoured(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "alerts.spool"), oldspool.Record("k-1", []byte(`{"a":1}`), nil, t0), 0o600)
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(options(dir)); err == nil || !strings.Contains(err.Error(), "a process of an earlier version still holds the spool in "+dir) {
		t.Fatalf("opened under the old process's lock: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "alerts.spool")); err != nil {
		t.Fatalf("the old spool was touched: %v", err)
	}
	lock.Close()
	s, rep := open(t, options(dir))
	if head, _ := s.Head(10, 1<<20); rep.Migrated != 1 || len(head) != 1 {
		t.Fatalf("after the old process let go: migrated %d", rep.Migrated)
	}
}

// What a delivered key costs in the file, once compacted: the README's
// size bound for state.db rests on it. 100,000 keys of the usual length
// (rule id and a UUID).
func TestDeliveredKeyCost(t *testing.T) {
	dir := t.TempDir()
	o := options(dir)
	o.DedupMax, o.MaxQueueBytes = 200000, 1<<30
	s, _ := open(t, o)
	const n = 100000
	for i := 0; i < n; i += 5000 {
		var es []Entry
		for j := i; j < i+5000; j++ {
			es = append(es, Entry{Time: t0, Key: fmt.Sprintf("aws.iam.quarantine_applied/%08x-0000-4000-8000-%012x", j, j), Kind: Alert, Body: []byte("x")})
		}
		s.Enqueue(es, 0, nil)
		head, _ := s.Head(5000, 1<<30)
		if err := s.Delivered(head); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// Compacted whatever its free share, to measure what it holds.
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := bolt.Open(filepath.Join(dir, "measured.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bolt.Compact(dst, db, 0); err != nil {
		t.Fatal(err)
	}
	var used int64
	dst.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	db.Close()
	dst.Close()
	perKey := used / n
	t.Logf("%d delivered keys: %d bytes in use compacted, %d bytes a key", n, used, perKey)
	if perKey > 250 {
		t.Fatalf("%d bytes a delivered key, the README says at most 250", perKey)
	}
}
