package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/oldspool"

	"github.com/tinylib/msgp/msgp"
	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

func options(dir string) Options {
	return Options{Dir: dir, MaxQueueBytes: 1 << 20, DedupMax: 1000, DedupTTL: 30 * 24 * time.Hour}
}

func open(t *testing.T, o Options) (*Store, Report) {
	t.Helper()
	s, rep, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rep
}

func entries(prefix string, n int) []Entry {
	var out []Entry
	for i := range n {
		out = append(out, Entry{Time: t0.Add(time.Duration(i) * time.Second), Key: fmt.Sprintf("%s-%03d", prefix, i), Kind: Alert, Body: []byte(fmt.Sprintf("alert %s %d", prefix, i))})
	}
	return out
}

func keys(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Key)
	}
	return out
}

// The queue keeps order across a restart; delivering takes entries off and
// remembers their keys, so the same alerts are not queued again.
func TestQueueOrderDeliveryAndRestart(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, options(dir))
	if res, err := s.Enqueue(entries("a", 5), 0, nil); err != nil || slices.Contains(res.Taken, false) || res.Full != 5 {
		t.Fatalf("enqueued %+v: %v", res, err)
	}
	head, err := s.Head(3, 1<<20)
	if err != nil || !slices.Equal(keys(head), []string{"a-000", "a-001", "a-002"}) {
		t.Fatalf("head %v: %v", keys(head), err)
	}
	if string(head[1].Body) != "alert a 1" || !head[1].Time.Equal(t0.Add(time.Second)) || head[1].Kind != Alert {
		t.Fatalf("entry %+v", head[1])
	}
	if err := s.Delivered(head); err != nil {
		t.Fatal(err)
	}
	// Queued and delivered keys are both known: neither is taken again.
	res, err := s.Enqueue(append(entries("a", 5), entries("b", 1)...), 0, nil)
	if err != nil || !slices.Equal(res.Taken, []bool{false, false, false, false, false, true}) {
		t.Fatalf("taken %v: %v", res.Taken, err)
	}
	s.Close()

	s2, _ := open(t, options(dir))
	head, _ = s2.Head(100, 1<<20)
	if !slices.Equal(keys(head), []string{"a-003", "a-004", "b-000"}) {
		t.Fatalf("after restart: %v", keys(head))
	}
	if n, bytes, _ := s2.Pending(); n != 3 || bytes == 0 {
		t.Fatalf("pending %d, %d bytes", n, bytes)
	}
	if known, _ := s2.Known("a-001"); !known {
		t.Fatal("a delivered key was forgotten across the restart")
	}
	if err := s2.Delivered(head); err != nil {
		t.Fatal(err)
	}
	if n, bytes, _ := s2.Pending(); n != 0 || bytes != 0 {
		t.Fatalf("pending %d, %d bytes after delivering everything", n, bytes)
	}
}

func TestHeadIsBoundedByBytes(t *testing.T) {
	s, _ := open(t, options(t.TempDir()))
	s.Enqueue(entries("a", 10), 0, nil)
	head, _ := s.Head(100, 40)
	if len(head) < 1 || len(head) > 2 {
		t.Fatalf("%d entries within 40 bytes", len(head))
	}
}

// A queue that cannot take them all takes what fits, in order, and says
// where it stopped; the rest fits once the sender has made room. An entry
// bigger than the whole queue is passed over, not in the others' way.
func TestFullQueueTakesWhatFits(t *testing.T) {
	o := options(t.TempDir())
	o.MaxQueueBytes = 200
	s, _ := open(t, o)
	es := entries("a", 10) // about 40 bytes each
	res, err := s.Enqueue(es, 0, &Changes{Cases: map[string][]byte{"key:AKIA1": []byte("kept")}})
	if err != nil || res.Full == 0 || res.Full >= 10 || len(res.TooBig) != 0 {
		t.Fatalf("enqueued %+v: %v", res, err)
	}
	kept := 0
	s.Cases(func(id string, _ []byte) error { kept++; return nil })
	if kept != 1 {
		t.Fatal("the changes of a chunk stored in part were not kept")
	}
	for i, taken := range res.Taken {
		if taken != (i < res.Full) {
			t.Fatalf("taken %v: not the first %d", res.Taken, res.Full)
		}
	}
	head, _ := s.Head(100, 1<<20)
	if err := s.Delivered(head); err != nil {
		t.Fatal(err)
	}
	// The same chunk again: the stored part is known, the rest follows.
	first := res.Full
	res, err = s.Enqueue(es, 0, nil)
	if err != nil || res.Full != 10 || slices.Contains(res.Taken[:first], true) || slices.Contains(res.Taken[first:], false) {
		t.Fatalf("second part: %+v: %v", res, err)
	}

	big := Entry{Time: t0, Key: "big", Kind: Alert, Body: make([]byte, 300)}
	res, err = s.Enqueue(append([]Entry{big}, entries("c", 1)...), 0, nil)
	if err != nil || !slices.Equal(res.TooBig, []int{0}) || !slices.Equal(res.Taken, []bool{false, true}) {
		t.Fatalf("an entry bigger than the queue: %+v: %v", res, err)
	}

	// The whole part is stored all or none, with the changes.
	head, _ = s.Head(100, 1<<20)
	s.Delivered(head)
	res, err = s.Enqueue(entries("w", 10), 9, &Changes{Cases: map[string][]byte{"key:AKIA2": []byte("not kept")}})
	if err != nil || res.Full != 0 || slices.Contains(res.Taken, true) {
		t.Fatalf("a whole part too big: %+v: %v", res, err)
	}
	if n, _, _ := s.Pending(); n != 0 {
		t.Fatalf("%d stored of a whole part that did not fit", n)
	}
	s.Cases(func(id string, _ []byte) error {
		if id == "key:AKIA2" {
			t.Error("the changes of a whole part that did not fit were kept")
		}
		return nil
	})
	if res, err := s.Enqueue(entries("w", 10), 2, nil); err != nil || !res.Taken[0] || !res.Taken[1] || res.Full == 10 {
		t.Fatalf("a whole part that fits, then parts: %+v: %v", res, err)
	}
}

// The delivered keys are bounded by count and by age, oldest out first.
func TestDeliveredKeysAreBounded(t *testing.T) {
	now := t0
	o := options(t.TempDir())
	o.DedupMax, o.DedupTTL, o.Now = 10, time.Hour, func() time.Time { return now }
	s, _ := open(t, o)
	deliver := func(es []Entry) {
		t.Helper()
		if _, err := s.Enqueue(es, 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Delivered(es); err != nil {
			t.Fatal(err)
		}
	}
	deliver(entries("old", 8))
	now = now.Add(10 * time.Minute)
	deliver(entries("new", 5))
	if n, _ := s.DeliveredKeys(); n != 10 {
		t.Fatalf("%d keys, want the bound of 10", n)
	}
	for key, want := range map[string]bool{"old-000": false, "old-002": false, "old-003": true, "new-004": true} {
		if known, _ := s.Known(key); known != want {
			t.Errorf("%s known=%v, want %v", key, known, want)
		}
	}
	now = now.Add(55 * time.Minute) // the old ones are past the TTL
	deliver(entries("later", 1))
	if n, _ := s.DeliveredKeys(); n != 6 {
		t.Fatalf("%d keys after the TTL, want 5 new + 1", n)
	}
	if known, _ := s.Known("old-007"); known {
		t.Fatal("a key past its TTL is still known")
	}
}

// badStores are files a crash, a disk or a person can leave where the
// store should be.
func badStores(t *testing.T, good []byte) map[string][]byte {
	page := os.Getpagesize()
	random := make([]byte, 8*page)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	otherLayout := storeWith(t, func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			tx.CreateBucket(name)
		}
		return tx.Bucket(bucketMeta).Put(keyLayout, u64(99))
	})
	notOurs := storeWith(t, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("someone_else"))
		return err
	})
	// Cut at a page boundary below what the store says it uses.
	var used int64
	db := openBytes(t, good)
	db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	db.Close()
	truncatedAtPage := good[:(used/int64(page)/2)*int64(page)]
	return map[string][]byte{
		"truncated mid-page":  good[:len(good)/2+100],
		"truncated at a page": truncatedAtPage,
		"zero-filled":         make([]byte, len(good)),
		"random bytes":        random,
		"another layout":      otherLayout,
		"another program's":   notOurs,
		"text":                []byte(strings.Repeat("not a database\n", 1000)),
	}
}

func openBytes(t *testing.T, b []byte) *bolt.DB {
	path := filepath.Join(t.TempDir(), "copy.db")
	os.WriteFile(path, b, 0o600)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func storeWith(t *testing.T, fn func(tx *bolt.Tx) error) []byte {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, _ := os.ReadFile(path)
	return b
}

// An unreadable store is moved aside, named with the time, and a fresh one
// works: Open neither fails nor crashes.
func TestUnreadableStoreIsMovedAside(t *testing.T) {
	gooddir := t.TempDir()
	s, _ := open(t, options(gooddir))
	s.Enqueue(entries("a", 300), 0, nil)
	s.Close()
	good, err := os.ReadFile(filepath.Join(gooddir, FileName))
	if err != nil || len(good) < 8*os.Getpagesize() {
		t.Fatalf("good store of %d bytes: %v", len(good), err)
	}
	for name, content := range badStores(t, good) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			os.WriteFile(path, content, 0o600)
			o := options(dir)
			o.Now = func() time.Time { return t0 }
			s, rep := open(t, o)
			if rep.MovedAside != path+".bad-20261120T080000Z" || rep.Reason == "" {
				t.Fatalf("report %+v", rep)
			}
			if kept, err := os.ReadFile(rep.MovedAside); err != nil || len(kept) != len(content) {
				t.Fatalf("the bad store was not kept aside: %v", err)
			}
			if _, err := s.Enqueue(entries("fresh", 3), 0, nil); err != nil {
				t.Fatal(err)
			}
			if head, err := s.Head(10, 1<<20); err != nil || len(head) != 3 {
				t.Fatalf("fresh store: %d entries, %v", len(head), err)
			}
		})
	}
}

func TestSecondInstanceIsRefused(t *testing.T) {
	o := options(t.TempDir())
	open(t, o)
	if _, _, err := Open(o); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v", err)
	}
}

// A directory where nothing can be created fails Open with the reason:
// there is nowhere to keep state (even root cannot write into an
// immutable directory).
func TestUnusableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, _, err := Open(options(filepath.Join(file, "sub"))); err == nil {
		t.Fatal("State_Dir under a regular file opened")
	}
	dir := t.TempDir()
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Fatalf("chattr +i (needs root and ext4/xfs/tmpfs): %v %s", err, out)
	}
	defer exec.Command("chattr", "-i", dir).Run()
	if _, _, err := Open(options(dir)); err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("read-only State_Dir: %v", err)
	}
}

// A Spool_Dir of layout 1 with undelivered alerts: they are queued, in
// order, the old files go, and a second start takes nothing again. Zeros
// a crash left at the end are not records.
func TestUpgradeFromSpool(t *testing.T) {
	dir := t.TempDir()
	var log []byte
	log = append(log, oldspool.Record("delivered-1", []byte(`{"a":1}`), nil, t0)...)
	offset := len(log)
	log = append(log, oldspool.Record("k-2", []byte(`{"a":2}`), nil, t0.Add(time.Second))...)
	log = append(log, oldspool.Record("k-3", nil, msgp.AppendMapHeader(nil, 0), t0.Add(2*time.Second))...)
	log = append(log, make([]byte, 24)...)
	os.WriteFile(filepath.Join(dir, "alerts.spool"), log, 0o600)
	os.WriteFile(filepath.Join(dir, "delivered.offset"), binary.BigEndian.AppendUint64(nil, uint64(offset)), 0o600)
	os.WriteFile(filepath.Join(dir, "lock"), nil, 0o600)

	s, rep := open(t, options(dir))
	if rep.Migrated != 2 {
		t.Fatalf("migrated %d, want 2", rep.Migrated)
	}
	head, _ := s.Head(10, 1<<20)
	if !slices.Equal(keys(head), []string{"k-2", "k-3"}) || head[0].Kind != LegacyJSON || string(head[0].Body) != `{"a":2}` ||
		head[1].Kind != LegacyMsgpack || !head[1].Time.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("migrated entries %+v", head)
	}
	for _, f := range spoolFiles {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there", f)
		}
	}
	s.Close()
	// A crash before the old files went: they are read again, nothing is
	// queued twice.
	os.WriteFile(filepath.Join(dir, "alerts.spool"), log, 0o600)
	os.WriteFile(filepath.Join(dir, "delivered.offset"), binary.BigEndian.AppendUint64(nil, uint64(offset)), 0o600)
	s2, rep := open(t, options(dir))
	if head, _ := s2.Head(10, 1<<20); rep.Migrated != 0 || len(head) != 2 {
		t.Fatalf("second start migrated %d, queue %v", rep.Migrated, keys(head))
	}
}

// The lifecycle's cases are kept with the alerts of the same transaction,
// survive a restart, and a failed transaction keeps neither.
func TestCasesAndWatermark(t *testing.T) {
	dir := t.TempDir()
	o := options(dir)
	o.MaxQueueBytes = 200
	s, _ := open(t, o)
	ch := &Changes{Cases: map[string][]byte{"key:AKIA1": []byte("one"), "key:AKIA2": []byte("two")}, Watermark: 42}
	if _, err := s.Enqueue(entries("a", 1), 0, ch); err != nil {
		t.Fatal(err)
	}
	// A transaction that fails keeps neither the alerts nor the cases.
	bad := &Changes{Cases: map[string][]byte{"key:AKIA3": []byte("three"), "": []byte("no id")}, Watermark: 43}
	if _, err := s.Enqueue(entries("b", 1), 0, bad); err == nil {
		t.Fatal("a case without an id was kept")
	}
	if err := s.Save(&Changes{Deleted: []string{"key:AKIA1"}, Watermark: 44}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, _ := open(t, options(dir))
	got := map[string]string{}
	wm, err := s2.Cases(func(id string, b []byte) error { got[id] = string(b); return nil })
	if err != nil || wm != 44 || len(got) != 1 || got["key:AKIA2"] != "two" {
		t.Fatalf("cases %v, watermark %d: %v", got, wm, err)
	}
	if known, _ := s2.Known("b-000"); known {
		t.Fatal("the alert of the failed transaction was kept")
	}
}
