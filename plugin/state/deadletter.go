package state

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/tinylib/msgp/msgp"
	bolt "go.etcd.io/bbolt"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Dead is an alert set aside: its receiver refused it for a reason a retry
// cannot fix, so it waits here, out of the queue's way, for an operator.
type Dead struct {
	Entry
	Reason string
	At     time.Time // when it was set aside
}

func (d *Dead) encode() []byte {
	b := msgp.AppendArrayHeader(nil, 3)
	b = append(b, d.Entry.encode()...)
	b = msgp.AppendString(b, d.Reason)
	return value.AppendEventTime(b, d.At)
}

func decodeDead(b []byte) (Dead, error) {
	var d Dead
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n != 3 {
		return d, errors.New("not a dead letter")
	}
	end, err := msgp.Skip(b)
	if err != nil {
		return d, err
	}
	if d.Entry, err = decodeEntry(0, b[:len(b)-len(end)]); err != nil {
		return d, err
	}
	if d.Reason, b, err = msgp.ReadStringBytes(end); err != nil {
		return d, err
	}
	d.At, _, err = readTime(b)
	return d, err
}

// DeadLetter moves the entries off the queue into the dead-letter bucket,
// each with why it was refused, in one transaction. Their keys stay known,
// so the same event read again is not queued again. What is older than
// DeadLetterTTL, or beyond MaxQueueBytes of dead letters, goes, oldest
// first: a receiver that refuses everything must not fill the disk.
func (s *Store) DeadLetter(entries []Entry, reasons []string) error {
	now := s.o.Now()
	return s.update(func(tx *bolt.Tx) error {
		dead, order, meta := tx.Bucket(bucketDead), tx.Bucket(bucketDeadOrder), tx.Bucket(bucketMeta)
		for i, e := range entries {
			if err := unqueue(tx, e); err != nil {
				return err
			}
			k := dbKey(e.Key)
			if dead.Get(k) != nil {
				continue
			}
			d := Dead{Entry: e, Reason: reasons[i], At: now}
			v := d.encode()
			if err := dead.Put(k, v); err != nil {
				return err
			}
			if err := order.Put(orderKey(now, e.Seq), k); err != nil {
				return err
			}
			if err := addU64(meta, keyDeadN, 1); err != nil {
				return err
			}
			if err := addU64(meta, keyDeadBytes, int64(len(v))); err != nil {
				return err
			}
		}
		return s.purgeDead(tx, now)
	})
}

// purgeDead drops the oldest dead letters while they are older than
// DeadLetterTTL or take more than MaxQueueBytes.
func (s *Store) purgeDead(tx *bolt.Tx, now time.Time) error {
	dead, meta := tx.Bucket(bucketDead), tx.Bucket(bucketMeta)
	cutoff := uint64(now.Add(-s.o.DeadLetterTTL).UnixNano())
	c := tx.Bucket(bucketDeadOrder).Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		if int64(getU64(meta, keyDeadBytes)) <= s.o.MaxQueueBytes && len(k) >= 8 && binary.BigEndian.Uint64(k) >= cutoff {
			break
		}
		if old := dead.Get(v); old != nil {
			if err := addU64(meta, keyDeadBytes, -int64(len(old))); err != nil {
				return err
			}
			if err := addU64(meta, keyDeadN, -1); err != nil {
				return err
			}
			if err := dead.Delete(v); err != nil {
				return err
			}
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// DeadLetters is how many alerts are set aside and their bytes.
func (s *Store) DeadLetters() (n int, bytes int64, err error) {
	return s.countAndBytes(keyDeadN, keyDeadBytes)
}

// EachDeadLetter calls fn with every alert set aside, oldest first.
func (s *Store) EachDeadLetter(fn func(Dead) error) error {
	return s.view(func(tx *bolt.Tx) error {
		dead := tx.Bucket(bucketDead)
		return tx.Bucket(bucketDeadOrder).ForEach(func(_, k []byte) error {
			v := dead.Get(k)
			if v == nil {
				return nil
			}
			d, err := decodeDead(v)
			if err != nil {
				return err
			}
			return fn(d)
		})
	})
}
