package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tinylib/msgp/msgp"
	bolt "go.etcd.io/bbolt"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Kind says what an entry's Body holds.
type Kind int

const (
	// Alert is an alert in its native msgpack form, encoded for the sink
	// and format in force when it is sent.
	Alert Kind = 1
	// LegacyJSON and LegacyMsgpack are documents taken over from a spool of
	// layout 1, already in the format of their day: sent as they are.
	LegacyJSON    Kind = 2
	LegacyMsgpack Kind = 3
)

// Entry is one undelivered alert.
type Entry struct {
	Seq  uint64 // its place in the queue, set by Enqueue
	Time time.Time
	Key  string
	Kind Kind
	Body []byte
}

func (e *Entry) encode() []byte {
	b := msgp.AppendArrayHeader(nil, 4)
	b = msgp.AppendInt(b, int(e.Kind))
	b = value.AppendEventTime(b, e.Time)
	b = msgp.AppendString(b, e.Key)
	return msgp.AppendBytes(b, e.Body)
}

func decodeEntry(seq uint64, b []byte) (Entry, error) {
	e := Entry{Seq: seq}
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n != 4 {
		return e, errors.New("not a queue entry")
	}
	var kind int
	if kind, b, err = msgp.ReadIntBytes(b); err != nil {
		return e, err
	}
	e.Kind = Kind(kind)
	if len(b) < 10 || b[0] != 0xd7 || b[1] != value.EventTimeExt {
		return e, errors.New("queue entry without a time")
	}
	e.Time = time.Unix(int64(binary.BigEndian.Uint32(b[2:])), int64(binary.BigEndian.Uint32(b[6:])))
	if e.Key, b, err = msgp.ReadStringBytes(b[10:]); err != nil {
		return e, err
	}
	// ReadBytesBytes copies: the entry outlives the transaction.
	e.Body, _, err = msgp.ReadBytesBytes(b, nil)
	return e, err
}

// Enqueue appends the entries not already known (queued or delivered) to
// the queue and keeps the lifecycle's changes (nil: none), in one
// transaction, and reports which entries it took. It is ErrFull, taking
// nothing, when they do not fit in MaxQueueBytes.
func (s *Store) Enqueue(entries []Entry, ch *Changes) ([]bool, error) {
	return s.enqueue(entries, ch, s.o.MaxQueueBytes)
}

func (s *Store) enqueue(entries []Entry, ch *Changes, maxBytes int64) (taken []bool, err error) {
	taken = make([]bool, len(entries))
	err = s.update(func(tx *bolt.Tx) error {
		if err := ch.apply(tx); err != nil {
			return err
		}
		q, pending, delivered, meta := tx.Bucket(bucketQueue), tx.Bucket(bucketPending), tx.Bucket(bucketDelivered), tx.Bucket(bucketMeta)
		size := int64(getU64(meta, keyQueueBytes))
		for i := range entries {
			e := &entries[i]
			k := []byte(e.Key)
			if pending.Get(k) != nil || delivered.Get(k) != nil {
				continue
			}
			seq, err := q.NextSequence()
			if err != nil {
				return err
			}
			e.Seq = seq
			v := e.encode()
			if size += int64(len(v)); size > maxBytes {
				return ErrFull
			}
			if err := q.Put(u64(seq), v); err != nil {
				return err
			}
			if err := pending.Put(k, u64(seq)); err != nil {
				return err
			}
			if err := addU64(meta, keyQueueN, 1); err != nil {
				return err
			}
			taken[i] = true
		}
		return meta.Put(keyQueueBytes, u64(uint64(size)))
	})
	if err != nil {
		clear(taken)
	}
	return taken, err
}

// Head returns the oldest entries, at most max of them and about maxBytes
// of bodies (at least one entry when the queue is not empty).
func (s *Store) Head(max int, maxBytes int) ([]Entry, error) {
	var out []Entry
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketQueue).Cursor()
		size := 0
		for k, v := c.First(); k != nil && len(out) < max; k, v = c.Next() {
			if len(out) > 0 && size+len(v) > maxBytes {
				break
			}
			if len(k) != 8 {
				return fmt.Errorf("queue key %x", k)
			}
			e, err := decodeEntry(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return fmt.Errorf("queue entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
			size += len(v)
		}
		return nil
	})
	return out, err
}

// Delivered takes the entries off the queue and records their keys as
// delivered, in one transaction; then it forgets the oldest delivered keys
// beyond DedupMax or older than DedupTTL.
func (s *Store) Delivered(entries []Entry) error {
	now := s.o.Now()
	return s.update(func(tx *bolt.Tx) error {
		q, pending, delivered, order, meta := tx.Bucket(bucketQueue), tx.Bucket(bucketPending), tx.Bucket(bucketDelivered), tx.Bucket(bucketOrder), tx.Bucket(bucketMeta)
		size := int64(getU64(meta, keyQueueBytes))
		for _, e := range entries {
			if v := q.Get(u64(e.Seq)); v != nil {
				size -= int64(len(v))
				if err := q.Delete(u64(e.Seq)); err != nil {
					return err
				}
				if err := addU64(meta, keyQueueN, -1); err != nil {
					return err
				}
			}
			if err := pending.Delete([]byte(e.Key)); err != nil {
				return err
			}
			if err := s.remember(delivered, order, meta, e.Key, now, e.Seq); err != nil {
				return err
			}
		}
		if err := meta.Put(keyQueueBytes, u64(uint64(max(size, 0)))); err != nil {
			return err
		}
		return s.forget(delivered, order, meta, now)
	})
}

// remember records key as delivered at now.
func (s *Store) remember(delivered, order, meta *bolt.Bucket, key string, now time.Time, seq uint64) error {
	if delivered.Get([]byte(key)) != nil {
		return nil
	}
	ok := orderKey(now, seq)
	if err := order.Put(ok, []byte(key)); err != nil {
		return err
	}
	if err := delivered.Put([]byte(key), ok); err != nil {
		return err
	}
	return addU64(meta, keyDeliveredN, 1)
}

// orderKey sorts delivered keys oldest first: delivery time, then seq.
func orderKey(t time.Time, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(u64(uint64(t.UnixNano())), seq)
}

// forget drops the oldest delivered keys while there are more than
// DedupMax or they are older than DedupTTL.
func (s *Store) forget(delivered, order, meta *bolt.Bucket, now time.Time) error {
	n := getU64(meta, keyDeliveredN)
	cutoff := uint64(now.Add(-s.o.DedupTTL).UnixNano())
	c := order.Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		if n <= uint64(s.o.DedupMax) && (len(k) < 8 || binary.BigEndian.Uint64(k) >= cutoff) {
			break
		}
		if err := delivered.Delete(v); err != nil {
			return err
		}
		if err := c.Delete(); err != nil {
			return err
		}
		n--
	}
	return meta.Put(keyDeliveredN, u64(n))
}

// Known reports whether key is queued or was delivered (and not yet
// forgotten).
func (s *Store) Known(key string) (bool, error) {
	known := false
	err := s.view(func(tx *bolt.Tx) error {
		k := []byte(key)
		known = tx.Bucket(bucketPending).Get(k) != nil || tx.Bucket(bucketDelivered).Get(k) != nil
		return nil
	})
	return known, err
}

// Pending is how many alerts wait in the queue and their bytes.
func (s *Store) Pending() (n int, bytes int64, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		n = int(getU64(tx.Bucket(bucketMeta), keyQueueN))
		bytes = int64(getU64(tx.Bucket(bucketMeta), keyQueueBytes))
		return nil
	})
	return n, bytes, err
}

// DeliveredKeys is how many delivered keys the store remembers.
func (s *Store) DeliveredKeys() (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		n = int(getU64(tx.Bucket(bucketMeta), keyDeliveredN))
		return nil
	})
	return n, err
}
