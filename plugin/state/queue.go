package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tinylib/msgp/msgp"
	bolt "go.etcd.io/bbolt"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/idkey"
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

// dbKey is the key an alert key is stored under: record content decides
// alert keys (an eventID can be 40,000 characters), bbolt refuses keys
// over 32 KiB, and one key it refuses would fail every transaction that
// carries it.
func dbKey(key string) []byte { return []byte(idkey.Bounded(key, idkey.Max)) }

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
	if e.Time, b, err = readTime(b); err != nil {
		return e, err
	}
	if e.Key, b, err = msgp.ReadStringBytes(b); err != nil {
		return e, err
	}
	// ReadBytesBytes copies: the entry outlives the transaction.
	e.Body, _, err = msgp.ReadBytesBytes(b, nil)
	return e, err
}

func readTime(b []byte) (time.Time, []byte, error) {
	if len(b) < 10 || b[0] != 0xd7 || b[1] != value.EventTimeExt {
		return time.Time{}, b, errors.New("entry without a time")
	}
	return time.Unix(int64(binary.BigEndian.Uint32(b[2:])), int64(binary.BigEndian.Uint32(b[6:]))), b[10:], nil
}

// Enqueued says what Enqueue did with each entry.
type Enqueued struct {
	// Taken marks the entries stored now; the others were known before
	// (queued, delivered or set aside), or not stored for lack of room.
	Taken []bool
	// Full is the first entry that did not fit in what MaxQueueBytes leaves:
	// it and the later ones were not stored (they may be next time, once
	// the sender has made room). len(entries) when every entry fit.
	Full int
	// TooBig are entries larger than MaxQueueBytes alone: never stored, and
	// passed over so that they do not keep the others out.
	TooBig []int
	// Kept says the transaction was kept, changes included: false when the
	// whole part did not fit.
	Kept bool
}

// Enqueue appends the entries not already known to the queue, in order,
// as long as they fit in MaxQueueBytes (a chunk's alerts can be more than
// the queue holds: they are stored in parts), and keeps the lifecycle's
// changes (nil: none), in one transaction. The first whole entries are
// stored all or none: when they do not all fit, nothing is stored, changes
// included, and Full is 0 (what is kept about an alert must not say it was
// stored when it was not).
func (s *Store) Enqueue(entries []Entry, whole int, ch *Changes) (Enqueued, error) {
	return s.enqueue(entries, whole, ch, s.o.MaxQueueBytes)
}

// errNoRoom rolls back an Enqueue whose whole part does not fit.
var errNoRoom = errors.New("no room")

func (s *Store) enqueue(entries []Entry, whole int, ch *Changes, maxBytes int64) (res Enqueued, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		res = Enqueued{Taken: make([]bool, len(entries)), Full: len(entries), Kept: true}
		q, pending, meta := tx.Bucket(bucketQueue), tx.Bucket(bucketPending), tx.Bucket(bucketMeta)
		size := int64(getU64(meta, keyQueueBytes))
		for i := range entries {
			e := &entries[i]
			k := dbKey(e.Key)
			if known(tx, k) {
				continue
			}
			v := e.encode()
			switch {
			case int64(len(v)) > maxBytes && i >= whole:
				res.TooBig = append(res.TooBig, i)
				continue
			case size+int64(len(v)) > maxBytes && i < whole:
				return errNoRoom
			case size+int64(len(v)) > maxBytes:
				res.Full = i
			}
			if res.Full < len(entries) {
				break
			}
			seq, err := q.NextSequence()
			if err != nil {
				return err
			}
			e.Seq = seq
			if err := q.Put(u64(seq), v); err != nil {
				return err
			}
			if err := pending.Put(k, u64(seq)); err != nil {
				return err
			}
			if err := addU64(meta, keyQueueN, 1); err != nil {
				return err
			}
			size += int64(len(v))
			res.Taken[i] = true
		}
		if err := ch.apply(tx); err != nil {
			return err
		}
		return meta.Put(keyQueueBytes, u64(uint64(size)))
	})
	if errors.Is(err, errNoRoom) {
		return Enqueued{Taken: make([]bool, len(entries))}, nil
	}
	if err != nil {
		res = Enqueued{Taken: make([]bool, len(entries))}
	}
	return res, err
}

// known reports whether the stored key k is queued, delivered or set aside.
func known(tx *bolt.Tx, k []byte) bool {
	return tx.Bucket(bucketPending).Get(k) != nil || tx.Bucket(bucketDelivered).Get(k) != nil || tx.Bucket(bucketDead).Get(k) != nil
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
		delivered, order, meta := tx.Bucket(bucketDelivered), tx.Bucket(bucketOrder), tx.Bucket(bucketMeta)
		for _, e := range entries {
			if err := unqueue(tx, e); err != nil {
				return err
			}
			if err := s.remember(delivered, order, meta, dbKey(e.Key), now, e.Seq); err != nil {
				return err
			}
		}
		return s.forget(delivered, order, meta, now)
	})
}

// unqueue takes e off the queue, keeping the queue's count and bytes.
func unqueue(tx *bolt.Tx, e Entry) error {
	q, meta := tx.Bucket(bucketQueue), tx.Bucket(bucketMeta)
	if v := q.Get(u64(e.Seq)); v != nil {
		if err := q.Delete(u64(e.Seq)); err != nil {
			return err
		}
		if err := addU64(meta, keyQueueN, -1); err != nil {
			return err
		}
		if err := addU64(meta, keyQueueBytes, -int64(len(v))); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketPending).Delete(dbKey(e.Key))
}

// remember records the stored key k as delivered at now.
func (s *Store) remember(delivered, order, meta *bolt.Bucket, k []byte, now time.Time, seq uint64) error {
	if delivered.Get(k) != nil {
		return nil
	}
	ok := orderKey(now, seq)
	if err := order.Put(ok, k); err != nil {
		return err
	}
	if err := delivered.Put(k, ok); err != nil {
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

// Known reports whether key is queued, was delivered (and not yet
// forgotten) or was set aside.
func (s *Store) Known(key string) (bool, error) {
	found := false
	err := s.view(func(tx *bolt.Tx) error {
		found = known(tx, dbKey(key))
		return nil
	})
	return found, err
}

// Pending is how many alerts wait in the queue and their bytes.
func (s *Store) Pending() (n int, bytes int64, err error) {
	return s.countAndBytes(keyQueueN, keyQueueBytes)
}

// countAndBytes reads two of the meta bucket's counts.
func (s *Store) countAndBytes(count, size []byte) (n int, bytes int64, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		n = int(getU64(tx.Bucket(bucketMeta), count))
		bytes = int64(getU64(tx.Bucket(bucketMeta), size))
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
