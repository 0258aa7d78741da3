// Package spool keeps alerts that could not be delivered on disk, in
// order, until they are: an append-only log of records, each fsync'd
// before Append returns, and a delivered-up-to offset that only moves after
// the sink confirmed delivery. It survives restarts of Fluent Bit.
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
)

// ErrFull is returned by Append when the spool holds MaxSize bytes.
var ErrFull = errors.New("spool is full")

const (
	logName    = "alerts.spool"
	offsetName = "delivered.offset"
	lockName   = "lock"
	header     = 8 // uint32 length + uint32 CRC-32C of the payload
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Spool is one directory, used by one plugin instance at a time.
type Spool struct {
	dir     string
	maxSize int64

	mu        sync.Mutex
	log       *os.File
	size      int64 // bytes of valid records in the log
	delivered int64 // offset up to which records were delivered
	lock      *os.File
}

// Open takes the directory (creating it), locks it against other
// instances, and recovers: a record torn by a crash is cut off.
func Open(dir string, maxSize int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%s is in use by another instance (give each its own Spool_Dir)", dir)
	}
	s := &Spool{dir: dir, maxSize: maxSize, lock: lock}
	if err := s.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

func (s *Spool) recover() error {
	f, err := os.OpenFile(filepath.Join(s.dir, logName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return err
	}
	valid := 0
	for valid+header <= len(data) {
		n := int(binary.BigEndian.Uint32(data[valid:]))
		end := valid + header + n
		if end > len(data) || crc32.Checksum(data[valid+header:end], castagnoli) != binary.BigEndian.Uint32(data[valid+4:]) {
			break
		}
		valid = end
	}
	if valid < len(data) {
		if err := f.Truncate(int64(valid)); err != nil {
			f.Close()
			return err
		}
	}
	if _, err := f.Seek(int64(valid), io.SeekStart); err != nil {
		f.Close()
		return err
	}
	s.log, s.size = f, int64(valid)
	if b, err := os.ReadFile(filepath.Join(s.dir, offsetName)); err == nil && len(b) == 8 {
		s.delivered = min(int64(binary.BigEndian.Uint64(b)), s.size)
	}
	return nil
}

// Pending is the number of bytes spooled and not yet delivered.
func (s *Spool) Pending() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size - s.delivered
}

// Append writes the alerts at the end, in order, and syncs them to disk.
func (s *Spool) Append(alerts []sink.Alert) error {
	var buf []byte
	for _, a := range alerts {
		payload := msgp.AppendArrayHeader(nil, 4)
		payload = value.AppendEventTime(payload, a.Time)
		payload = msgp.AppendString(payload, a.Key)
		payload = msgp.AppendBytes(payload, a.JSON)
		payload = msgp.AppendBytes(payload, a.Msgpack)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(payload)))
		buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(payload, castagnoli))
		buf = append(buf, payload...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size-s.delivered+int64(len(buf)) > s.maxSize {
		return ErrFull
	}
	if _, err := s.log.Write(buf); err != nil {
		// A partial write is cut off again, so the log stays whole.
		s.log.Truncate(s.size)
		s.log.Seek(s.size, io.SeekStart)
		return err
	}
	if err := s.log.Sync(); err != nil {
		return err
	}
	s.size += int64(len(buf))
	return nil
}

// Next returns up to max undelivered alerts, oldest first, and the offset
// to pass to Delivered once they are delivered.
func (s *Spool) Next(max int) ([]sink.Alert, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sink.Alert
	off := s.delivered
	for len(out) < max && off < s.size {
		var hdr [header]byte
		if _, err := s.log.ReadAt(hdr[:], off); err != nil {
			return nil, 0, err
		}
		payload := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := s.log.ReadAt(payload, off+header); err != nil {
			return nil, 0, err
		}
		a, err := decode(payload)
		if err != nil {
			return nil, 0, fmt.Errorf("spool record at %d: %w", off, err)
		}
		out = append(out, a)
		off += header + int64(len(payload))
	}
	return out, off, nil
}

func decode(p []byte) (sink.Alert, error) {
	var a sink.Alert
	n, p, err := msgp.ReadArrayHeaderBytes(p)
	if err != nil || n != 4 || len(p) < 10 || p[0] != 0xd7 {
		return a, errors.New("bad record")
	}
	a.Time = time.Unix(int64(binary.BigEndian.Uint32(p[2:])), int64(binary.BigEndian.Uint32(p[6:])))
	p = p[10:]
	if a.Key, p, err = msgp.ReadStringBytes(p); err != nil {
		return a, err
	}
	if a.JSON, p, err = msgp.ReadBytesBytes(p, nil); err != nil {
		return a, err
	}
	a.Msgpack, _, err = msgp.ReadBytesBytes(p, nil)
	return a, err
}

// Delivered records that everything before off arrived. When nothing is
// left, the log is emptied so it does not grow forever.
func (s *Spool) Delivered(off int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off <= s.delivered {
		return nil
	}
	if off >= s.size {
		// The offset goes to 0 before the log is emptied: a crash between
		// the two re-delivers (a duplicate) instead of skipping new records.
		if err := s.writeOffset(0); err != nil {
			return err
		}
		if err := s.log.Truncate(0); err != nil {
			return err
		}
		if _, err := s.log.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if err := s.log.Sync(); err != nil {
			return err
		}
		s.size, s.delivered = 0, 0
		return nil
	}
	s.delivered = off
	return s.writeOffset(off)
}

// writeOffset replaces the offset file atomically (write, sync, rename).
func (s *Spool) writeOffset(off int64) error {
	tmp := filepath.Join(s.dir, offsetName+".tmp")
	if err := os.WriteFile(tmp, binary.BigEndian.AppendUint64(nil, uint64(off)), 0o600); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, offsetName))
}

// Close releases the files and the lock.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.log.Close()
	s.lock.Close()
	return err
}
