package state

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// Changes are the lifecycle's cases that changed (encoded by their owner:
// this package only keeps bytes), the ones dropped, and the event-time
// watermark, kept in the same transaction as the alerts they go with.
type Changes struct {
	Cases     map[string][]byte
	Deleted   []string
	Watermark int64
}

func (ch *Changes) apply(tx *bolt.Tx) error {
	if ch == nil {
		return nil
	}
	w := tx.Bucket(bucketWatch)
	for id, b := range ch.Cases {
		if err := w.Put(dbKey(id), b); err != nil {
			return err
		}
	}
	for _, id := range ch.Deleted {
		if err := w.Delete(dbKey(id)); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyWatermark, u64(uint64(ch.Watermark)))
}

// Save keeps lifecycle changes that come without alerts.
func (s *Store) Save(ch *Changes) error {
	return s.update(func(tx *bolt.Tx) error { return ch.apply(tx) })
}

// Cases calls fn with every kept case (the bytes are only valid during
// the call; id is as stored, the case's own id when it was short enough)
// and returns the watermark.
func (s *Store) Cases(fn func(id string, b []byte) error) (watermark int64, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyWatermark); len(v) == 8 {
			watermark = int64(binary.BigEndian.Uint64(v))
		}
		return tx.Bucket(bucketWatch).ForEach(func(k, v []byte) error { return fn(string(k), v) })
	})
	return watermark, err
}
