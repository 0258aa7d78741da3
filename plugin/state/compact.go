package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bbolt never gives pages back to the file system: after an outage filled
// the queue and the sender drained it, the file keeps its high-water mark,
// and every commit writes a freelist that size. Open copies the live data
// into a new file when free space passes CompactShare of the file.
const (
	// CompactShare is the free share of the file past which Open compacts.
	CompactShare = 0.5
	// CompactMinBytes spares small files: the copy is not worth it.
	CompactMinBytes = 1 << 20
	// compactTxBytes bounds one transaction of the copy, and so its memory.
	compactTxBytes = 16 << 20
)

// compactSuffix names the copy being made, beside the store.
const compactSuffix = ".compacting"

// freeShare is the share of the file that holds no live data: pages on
// the freelist, and the file past the last page in use.
func freeShare(db *bolt.DB) (share float64, size int64, err error) {
	info, err := os.Stat(db.Path())
	if err != nil {
		return 0, 0, err
	}
	var used int64
	err = db.View(func(tx *bolt.Tx) error {
		used = tx.Size()
		return nil
	})
	if err != nil || info.Size() == 0 {
		return 0, info.Size(), err
	}
	st := db.Stats()
	free := info.Size() - used + int64(st.FreePageN+st.PendingPageN)*int64(db.Info().PageSize)
	return float64(free) / float64(info.Size()), info.Size(), nil
}

// compactIfSparse replaces s.db with a compacted copy when that is worth
// it. The copy is made beside the store and renamed over it (atomic: a
// crash leaves either file whole); both stay locked until the old one is
// closed, so no other process can open either in between. It reports the
// sizes before and after, equal when it did nothing.
func (s *Store) compactIfSparse() (before, after int64, err error) {
	tmp := s.path + compactSuffix
	os.Remove(tmp) // a copy a crash left: the store itself is whole
	share, size, err := freeShare(s.db)
	if err != nil || size < CompactMinBytes || share <= CompactShare {
		return size, size, err
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return size, size, err
	}
	fail := func(err error) (int64, int64, error) {
		dst.Close()
		os.Remove(tmp)
		return size, size, err
	}
	if err := compact(dst, s.db); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		// Renamed, but the rename may not survive a crash: either file is a
		// whole store, so go on with the new one.
		err = fmt.Errorf("compacted, but syncing %s: %w", filepath.Dir(s.path), err)
	}
	s.db.Close()
	s.db = dst
	info, serr := os.Stat(s.path)
	if serr != nil {
		return size, size, errors.Join(err, serr)
	}
	return size, info.Size(), err
}

// compact copies src into dst; bbolt panics on some damage (check has
// read every page, but a panic must still not cross into Fluent Bit).
func compact(dst, src *bolt.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("compacting: %v", r)
		}
	}()
	return bolt.Compact(dst, src, compactTxBytes)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
