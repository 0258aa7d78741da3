package lifecycle

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
)

// Watch is the watch list as the prefilter reads it while the engine
// changes it: the keys and the users without a known key, in sets of their
// own so a lookup costs a read lock and a map probe, and nothing when the
// list is empty. It implements detect.Watch.
type Watch struct {
	// While a key is watched the prefilter asks about every access key id
	// of every record, from every worker at once: a lookup whose hint bit
	// is clear is answered without the lock (whose word the workers would
	// otherwise pass between their cores).
	keyHints, userHints hints
	mu                  sync.RWMutex
	keys                map[string]int // key id -> cases (a retired case stays a while)
	keyless             map[string]int // userKey -> cases watched without a key
	// names are the keyless users' names, whatever their account, as the
	// prefilter looks for them in a record: while there are few enough to
	// look for one by one, also a list, replaced (never changed in place)
	// when a name comes or goes.
	names map[string]int
	list  [][]byte
	// digests are the names in names that are a digest (cloudtrail.Digest
	// of a name past IAM's 64 bytes): no record holds one as text, so
	// while there is one the list cannot say which records name a user.
	digests int
	n       atomic.Int64  // entries in both
	nUsers  atomic.Int64  // entries in keyless
	version atomic.Uint64 // bumped by every add
}

func newWatch() *Watch {
	w := &Watch{keys: map[string]int{}, keyless: map[string]int{}, names: map[string]int{}}
	w.keyHints.seed = maphash.MakeSeed()
	w.userHints.seed = w.keyHints.seed
	return w
}

// hinted: lookups stop at a clear hint bit (a benchmark turns it off to
// measure the lock alone in the same run).
var hinted = true

// hints are a bit for each hash of what was ever put on a set (a bit is
// never cleared: a removed entry only costs a lookup under the lock, as
// every lookup did before). A clear bit means not on the set.
type hints struct {
	seed maphash.Seed
	bits [256]atomic.Uint64
}

func (h *hints) set(k string) {
	x := maphash.String(h.seed, k)
	h.bits[x>>6&255].Or(1 << (x & 63))
}

func (h *hints) may(k []byte) bool {
	x := maphash.Bytes(h.seed, k)
	return h.bits[x>>6&255].Load()&(1<<(x&63)) != 0
}

// Empty reports whether nothing is watched.
func (w *Watch) Empty() bool { return w.n.Load() == 0 }

// KeylessUsers reports whether a user is watched whose key is not known.
func (w *Watch) KeylessUsers() bool { return w.nUsers.Load() > 0 }

// Key reports whether the access key id is watched.
func (w *Watch) Key(id []byte) bool {
	if hinted && !w.keyHints.may(id) {
		return false
	}
	w.mu.RLock()
	_, ok := w.keys[string(id)]
	w.mu.RUnlock()
	return ok
}

// User reports whether the user of the account is watched without a key.
// A name longer than IAM allows is looked up by its digest, as the event
// holds it once decoded.
func (w *Watch) User(account, name []byte) bool {
	if len(name) > cloudtrail.MaxUserName {
		name = []byte(cloudtrail.Digest(name))
	}
	var buf [128]byte
	k := append(append(append(buf[:0], account...), 0), name...)
	if hinted && !w.userHints.may(k) {
		return false
	}
	w.mu.RLock()
	_, ok := w.keyless[string(k)]
	w.mu.RUnlock()
	return ok
}

// KeylessNames are the names of the users watched without a key.
func (w *Watch) KeylessNames() ([][]byte, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.list, len(w.names) <= detect.MaxKeylessNames && w.digests == 0
}

// Version changes whenever an entry is added.
func (w *Watch) Version() uint64 { return w.version.Load() }

// Len is how many keys and key-less users are watched.
func (w *Watch) Len() int { return int(w.n.Load()) }

func (w *Watch) add(set map[string]int, k string, users bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if set[k] == 0 {
		// The bit before the entry: a lookup that finds the bit clear
		// ran before the add, as it would have under the lock.
		if users {
			w.userHints.set(k)
		} else {
			w.keyHints.set(k)
		}
		w.n.Add(1)
		if users {
			w.nUsers.Add(1)
			w.name(k, 1)
		}
		w.version.Add(1)
	}
	set[k]++
}

func (w *Watch) remove(set map[string]int, k string, users bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if set[k] == 0 {
		return
	}
	if set[k]--; set[k] == 0 {
		delete(set, k)
		w.n.Add(-1)
		if users {
			w.nUsers.Add(-1)
			w.name(k, -1)
		}
	}
}

// name counts a keyless user's name in or out (k is its userKey), and
// makes the list again when a name comes or goes.
func (w *Watch) name(k string, by int) {
	_, n, _ := strings.Cut(k, "\x00")
	w.names[n] += by
	switch w.names[n] {
	case 0:
		delete(w.names, n)
	case by:
	default:
		return
	}
	if cloudtrail.IsDigest(n) {
		w.digests += by
	}
	if len(w.names) > detect.MaxKeylessNames {
		w.list = nil
		return
	}
	list := make([][]byte, 0, len(w.names))
	for n := range w.names {
		list = append(list, []byte(n))
	}
	w.list = list
}

// userKey joins an account and a user name.
func userKey(account, user string) string { return account + "\x00" + user }
