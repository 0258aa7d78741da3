// Package state is the durable store of one plugin instance: one embedded
// bbolt database file in State_Dir holding the undelivered alerts (in
// order, in a form that does not depend on the sink), the keys of the
// alerts already delivered, and the lifecycle state that comes with them.
// It is the only package that does disk I/O for state. Every change is one
// bbolt transaction, fsync'd before it returns.
package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Layout is the version of the database layout this package writes.
// Version 1 was the Spool_Dir format (alerts.spool + delivered.offset),
// which Open migrates.
const Layout = 2

// FileName is the database's name inside State_Dir.
const FileName = "state.db"

// ErrInUse is returned by Open when another instance holds the store.
var ErrInUse = errors.New("in use by another instance (give each instance its own State_Dir)")

var (
	bucketMeta      = []byte("meta")
	bucketQueue     = []byte("queue")     // seq -> entry
	bucketPending   = []byte("pending")   // alert key -> seq, for alerts in the queue
	bucketDelivered = []byte("delivered") // alert key -> delivered-at order key
	bucketOrder     = []byte("delivered_order")
	// The lifecycle's cases (watched keys, their windows and timers).
	bucketWatch = []byte("watch")
	// Alerts a receiver refused for good, set aside: alert key -> Dead, and
	// set-aside order key -> alert key, for their TTL.
	bucketDead      = []byte("dead_letter")
	bucketDeadOrder = []byte("dead_letter_order")

	allBuckets = [][]byte{bucketMeta, bucketQueue, bucketPending, bucketDelivered, bucketOrder, bucketWatch}
	// addedBuckets came after layout 2 was first written: a store without
	// them gets them, and an earlier version passes them over.
	addedBuckets = [][]byte{bucketDead, bucketDeadOrder}

	keyLayout      = []byte("layout")
	keyQueueBytes  = []byte("queue_bytes")
	keyQueueN      = []byte("queue_count")
	keyDeliveredN  = []byte("delivered_count")
	keyWatermark   = []byte("watermark")
	keyDeadN       = []byte("dead_letter_count")
	keyDeadBytes   = []byte("dead_letter_bytes")
	errLayoutWrong = errors.New("layout")
)

// Options configure a Store.
type Options struct {
	Dir string
	// MaxQueueBytes bounds the undelivered alerts (Enqueue takes what fits),
	// and apart from them the alerts set aside.
	MaxQueueBytes int64
	// DedupMax and DedupTTL bound the delivered keys: the oldest go first.
	DedupMax int
	DedupTTL time.Duration
	// DeadLetterTTL is how long an alert set aside is kept.
	DeadLetterTTL time.Duration
	// Now is the wall clock (tests pass their own).
	Now func() time.Time
}

// Store is one instance's database. It is safe for concurrent use.
type Store struct {
	o    Options
	db   *bolt.DB
	path string
}

// Report says what Open found besides a good store.
type Report struct {
	// MovedAside is where an unreadable store was moved, and Reason why.
	MovedAside, Reason string
	// Migrated counts alerts taken over from a Spool_Dir of layout 1.
	Migrated int
	// Before and After are the file's sizes before and after compaction
	// (equal when there was none); CompactError says why it failed (the
	// store is then used as it was).
	Before, After int64
	CompactError  error
}

// Open opens (creating them) State_Dir and its store. A store that is
// corrupt, truncated, of another layout or not a store at all is moved
// aside (its name gets the time) and a fresh one is made: Open fails only
// when the directory itself is unusable or another instance holds the
// store.
func Open(o Options) (*Store, Report, error) {
	var rep Report
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, rep, err
	}
	path := filepath.Join(o.Dir, FileName)
	db, reason, err := openChecked(path)
	if err != nil {
		return nil, rep, err
	}
	if reason != "" {
		aside := fmt.Sprintf("%s.bad-%s", path, o.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(path, aside); err != nil {
			return nil, rep, fmt.Errorf("cannot move aside the unreadable %s (%s): %v", path, reason, err)
		}
		rep.MovedAside, rep.Reason = aside, reason
		if db, reason, err = openChecked(path); err != nil || reason != "" {
			return nil, rep, fmt.Errorf("cannot start a fresh store at %s: %v%s", path, err, reason)
		}
	}
	s := &Store{o: o, db: db, path: path}
	rep.Before, rep.After, rep.CompactError = s.compactIfSparse()
	if err := s.update(func(tx *bolt.Tx) error { return s.purgeDead(tx, o.Now()) }); err != nil {
		s.db.Close()
		return nil, rep, err
	}
	n, err := s.migrateSpool()
	rep.Migrated = n
	if err != nil {
		s.db.Close()
		if errors.Is(err, ErrInUse) {
			return nil, rep, err
		}
		return nil, rep, fmt.Errorf("taking over the alerts of the old spool: %v", err)
	}
	return s, rep, nil
}

// openChecked opens path as a store of this layout and reads all of it.
// It returns a reason (and no database) when the file is not a usable
// store, and an error when the file cannot be opened at all.
func openChecked(path string) (db *bolt.DB, reason string, err error) {
	if info, err := os.Stat(path); err == nil && info.Size() > 0 && info.Size()%int64(os.Getpagesize()) != 0 {
		return nil, fmt.Sprintf("its size, %d bytes, is not a whole number of pages (truncated?)", info.Size()), nil
	}
	db, err = boltOpen(path)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, "", ErrInUse
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, err.Error(), nil
	case err != nil:
		var perr *os.PathError
		if errors.As(err, &perr) {
			return nil, "", err
		}
		// Anything else bbolt says about the file is about its content.
		return nil, err.Error(), nil
	}
	if why := check(db); why != "" {
		db.Close()
		return nil, why, nil
	}
	if err := initialise(db); err != nil {
		db.Close()
		if errors.Is(err, errLayoutWrong) {
			return nil, err.Error(), nil
		}
		return nil, "", err
	}
	return db, "", nil
}

// boltOpen opens the database; bbolt can panic (or fault) while reading a
// damaged file's metadata, which is then a reason, not a crash.
func boltOpen(path string) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("unreadable: %v", r)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
}

// check reads every page the store can reach. A damaged file can make
// bbolt panic, or fault on a page the file no longer has: both become a
// reason to move the file aside instead of taking Fluent Bit down.
func check(db *bolt.DB) (why string) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			why = fmt.Sprintf("unreadable: %v", r)
		}
	}()
	info, err := os.Stat(db.Path())
	if err != nil {
		return err.Error()
	}
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Size() > info.Size() {
			return fmt.Errorf("it says it holds %d bytes but the file has %d (truncated)", tx.Size(), info.Size())
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error { return nil })
		})
	})
	if err != nil {
		return err.Error()
	}
	return ""
}

// initialise makes the buckets of a new store, or checks an old one's
// layout.
func initialise(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("%w: not a cloudtrail_quarantine store (no meta bucket)", errLayoutWrong)
			}
			for _, name := range append(allBuckets, addedBuckets...) {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keyLayout, u64(Layout))
		}
		if v := meta.Get(keyLayout); len(v) != 8 || binary.BigEndian.Uint64(v) != Layout {
			return fmt.Errorf("%w: layout %s, this version reads %d", errLayoutWrong, layoutName(v), Layout)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %s missing", errLayoutWrong, name)
			}
		}
		for _, name := range addedBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
}

func layoutName(v []byte) string {
	if len(v) != 8 {
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprint(binary.BigEndian.Uint64(v))
}

// update runs fn in one write transaction. bbolt panics on some damage it
// finds only now; that is an error of this call, not a crash.
func (s *Store) update(fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("state store: %v", r)
		}
	}()
	return s.db.Update(fn)
}

// view runs fn in one read transaction, panics made errors as in update.
func (s *Store) view(fn func(tx *bolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("state store: %v", r)
		}
	}()
	return s.db.View(fn)
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// FileSize is the database file's size in bytes.
func (s *Store) FileSize() int64 {
	info, err := os.Stat(s.path)
	if err != nil {
		return 0
	}
	return info.Size()
}

// Close releases the database and its lock.
func (s *Store) Close() error { return s.db.Close() }

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// addU64 adds delta to a count, which never goes below 0.
func addU64(b *bolt.Bucket, k []byte, delta int64) error {
	return b.Put(k, u64(uint64(max(int64(getU64(b, k))+delta, 0))))
}
