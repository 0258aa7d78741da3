package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// The files of layout 1, the Spool_Dir of earlier versions: an append-only
// log of [uint32 length][uint32 CRC-32C][msgpack [EventTime, key, JSON,
// msgpack]] records and the offset up to which they were delivered.
const (
	spoolLog    = "alerts.spool"
	spoolOffset = "delivered.offset"
	spoolLock   = "lock"
)

var spoolFiles = []string{spoolLog, spoolOffset, spoolOffset + ".tmp", spoolLock}

// migrateSpool takes the undelivered alerts of a layout-1 spool in the
// same directory into the queue, then removes the old files. A crash in
// between takes them again next time: their keys are known by then, so
// none is queued twice. A process of the earlier version that still runs
// on the directory holds the spool's lock: its spool is not taken over
// under it.
func (s *Store) migrateSpool() (int, error) {
	unlock, err := lockSpool(s.o.Dir)
	if err != nil {
		return 0, err
	}
	defer unlock()
	data, err := os.ReadFile(filepath.Join(s.o.Dir, spoolLog))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var offset int64
	if b, err := os.ReadFile(filepath.Join(s.o.Dir, spoolOffset)); err == nil && len(b) == 8 {
		offset = int64(binary.BigEndian.Uint64(b))
	}
	entries := readSpool(data, offset)
	taken := 0
	if len(entries) > 0 {
		// The old spool was bounded by its own size; the queue takes what
		// it held even past MaxQueueBytes rather than lose it.
		res, err := s.enqueue(entries, 0, nil, math.MaxInt64)
		if err != nil {
			return 0, err
		}
		for _, t := range res.Taken {
			if t {
				taken++
			}
		}
	}
	for _, f := range spoolFiles {
		if err := os.Remove(filepath.Join(s.o.Dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return taken, err
		}
	}
	return taken, nil
}

// spoolLockWait is how long an earlier version's process may take to let
// go of its spool (an upgrade that stops it just before starting this one).
const spoolLockWait = time.Second

// lockSpool takes the layout-1 spool's lock, as its own code did (flock,
// exclusive), when there is one: the earlier version held it for as long
// as it ran.
func lockSpool(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, spoolLock)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(spoolLockWait); ; {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: a process of an earlier version still holds the spool in %s (its lock, %s): stop it first", ErrInUse, dir, path)
		}
		return nil, fmt.Errorf("locking the old spool %s: %v", path, err)
	}
	return func() { f.Close() }, nil
}

// readSpool reads the records after offset, up to the first that is torn,
// fails its checksum or is empty (a crash can leave zeros at the end).
func readSpool(data []byte, offset int64) []Entry {
	table := crc32.MakeTable(crc32.Castagnoli)
	var out []Entry
	at := 0
	for at+8 <= len(data) {
		n := int(binary.BigEndian.Uint32(data[at:]))
		end := at + 8 + n
		if n == 0 || end > len(data) || crc32.Checksum(data[at+8:end], table) != binary.BigEndian.Uint32(data[at+4:]) {
			break
		}
		if int64(at) >= offset {
			if e, ok := spoolRecord(data[at+8 : end]); ok {
				out = append(out, e)
			}
		}
		at = end
	}
	return out
}

func spoolRecord(p []byte) (Entry, bool) {
	var e Entry
	n, p, err := msgp.ReadArrayHeaderBytes(p)
	if err != nil || n != 4 || len(p) < 10 || p[0] != 0xd7 {
		return e, false
	}
	e.Time = time.Unix(int64(binary.BigEndian.Uint32(p[2:])), int64(binary.BigEndian.Uint32(p[6:])))
	var js, mp []byte
	if e.Key, p, err = msgp.ReadStringBytes(p[10:]); err != nil {
		return e, false
	}
	if js, p, err = msgp.ReadBytesBytes(p, nil); err != nil {
		return e, false
	}
	if mp, _, err = msgp.ReadBytesBytes(p, nil); err != nil {
		return e, false
	}
	switch {
	case len(mp) > 0:
		e.Kind, e.Body = LegacyMsgpack, mp
	case len(js) > 0:
		e.Kind, e.Body = LegacyJSON, js
	default:
		return e, false
	}
	return e, true
}
