package ship

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// state is --state: per stream (an account and region's directory of
// log files) the newest file time shipped (its checkpoint) and the keys
// shipped within the look-back behind it. Keys older than the look-back
// are dropped, so the file holds at most a look-back's worth of keys per
// stream.
type state struct {
	db *bolt.DB
}

var (
	bucketStreams = []byte("streams")
	bucketMeta    = []byte("meta")
	keyStart      = []byte("start")
	// keyCheckpoint sorts before every object key (they start with a
	// letter or digit).
	keyCheckpoint = []byte("\x00checkpoint")
)

// errInUse: bbolt locks its file; a second process would wait forever.
var errInUse = errors.New("in use by another process (one `ship --follow` per bucket prefix and state file)")

func openState(path string) (*state, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("--state %s: %w", path, errInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("--state %s: %v", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketStreams, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("--state %s: %v", path, err)
	}
	return &state{db: db}, nil
}

func (s *state) Close() error { return s.db.Close() }

func putTime(t time.Time) []byte { return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())) }

func getTime(b []byte) time.Time {
	if len(b) != 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC()
}

// start is when following began (the first run's --since), for streams
// that appear later; set once.
func (s *state) start(def time.Time) (time.Time, error) {
	var t time.Time
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if v := b.Get(keyStart); v != nil {
			t = getTime(v)
			return nil
		}
		t = def
		return b.Put(keyStart, putTime(def))
	})
	return t, err
}

// stream reads a stream's checkpoint and shipped keys.
func (s *state) stream(name string) (checkpoint time.Time, shipped map[string]bool, err error) {
	shipped = map[string]bool{}
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStreams).Bucket([]byte(name))
		if b == nil {
			return nil
		}
		checkpoint = getTime(b.Get(keyCheckpoint))
		return b.ForEach(func(k, _ []byte) error {
			if k[0] != 0 {
				shipped[string(k)] = true
			}
			return nil
		})
	})
	return checkpoint, shipped, err
}

// shipped remembers a key and moves the stream's checkpoint forward.
// bbolt's Batch groups the commits of objects finishing together.
func (s *state) shipped(stream, key string, stamp time.Time) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketStreams).CreateBucketIfNotExists([]byte(stream))
		if err != nil {
			return err
		}
		if stamp.After(getTime(b.Get(keyCheckpoint))) {
			if err := b.Put(keyCheckpoint, putTime(stamp)); err != nil {
				return err
			}
		}
		return b.Put([]byte(key), putTime(stamp))
	})
}

// prune drops the keys of files older than horizon: listing starts there,
// so they are never looked at again.
func (s *state) prune(stream string, horizon time.Time) (kept int, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStreams).Bucket([]byte(stream))
		if b == nil {
			return nil
		}
		var old [][]byte
		b.ForEach(func(k, v []byte) error {
			if k[0] != 0 {
				if getTime(v).Before(horizon) {
					old = append(old, append([]byte(nil), k...))
				} else {
					kept++
				}
			}
			return nil
		})
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return kept, err
}
