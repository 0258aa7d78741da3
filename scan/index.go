package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// Files outside the layout (exports, JSON lines, EventBridge and Health
// events, standard input), Parquet files and files too large to hold are
// read once, streaming, before the merge starts, and never held whole.
// Their events have no order the merge could rely on, so they are taken
// in whole: the records the prefilter lets through whatever the watch
// list holds are decoded at once, and their events merged with the
// layout's by time. A record that only a watched key or user could make
// a candidate (it names an access key id, or is an IAM user's call) is
// kept aside instead, indexed by the keys and users it names; when an
// account's watch list grows, the records naming what it now watches are
// decoded. Kept records stay in memory up to spillAfter bytes, then go to
// a temporary file (the summary says how much, and where).
const spillAfter = 8 << 20

// recorder is the watch list the prefilter reads a streamed record with:
// watching nothing, it sees every access key id and IAM user's ARN the
// record holds, and notes them.
type recorder struct {
	keys    [][]byte
	users   [][]byte // account + "\x00" + user, in names
	names   []byte
	keyless bool // as a list with users watched without a key
}

func (r *recorder) Empty() bool        { return false }
func (r *recorder) KeylessUsers() bool { return r.keyless }

// KeylessNames cannot say: the recorder notes what a record names, so a
// record is kept for any name a list may watch later.
func (r *recorder) KeylessNames() ([][]byte, bool) { return nil, false }
func (r *recorder) Version() uint64                { return 0 }
func (r *recorder) Key(id []byte) bool {
	r.keys = append(r.keys, id)
	return false
}

func (r *recorder) User(account, name []byte) bool {
	from := len(r.names)
	r.names = append(append(append(r.names, account...), 0), name...)
	r.users = append(r.users, r.names[from:len(r.names):len(r.names)])
	return false
}

func (r *recorder) reset() { r.keys, r.users, r.names = r.keys[:0], r.users[:0], r.names[:0] }

// A record that is no candidate for the rules alone may be one for a
// watch list: when it names a watched key or user, or, whatever it
// watches, when the list is not empty (a DeleteUser call) or holds users
// without a key (an AccessKey call, an IAM user's call with no ARN near).
type class uint8

const (
	none     class = iota
	named          // only by the keys and users it names
	nonEmpty       // by any list that is not empty
	keyless        // by any list with users watched without a key
)

// classify looks at a record; rec is left holding the keys and users it
// names. The rules' own patterns are among a keyless list's, so a record
// classified none or named is no candidate for the rules alone either.
func classify(text []byte, rec *recorder) class {
	if !anyList(text, rec) {
		return rec.class()
	}
	return byKind(text)
}

// anyList reports whether some watch list could make a record a
// candidate (the rules alone among them); rec is left holding the keys
// and users it names.
func anyList(text []byte, rec *recorder) bool {
	rec.reset()
	rec.keyless = true
	return detect.HasCandidate(text, rec)
}

// class is a record's that no watch list makes a candidate whatever it
// holds: named when it names keys or users.
func (r *recorder) class() class {
	if len(r.keys)+len(r.users) > 0 {
		return named
	}
	return none
}

// byKind is the class of a record that some list makes a candidate
// whatever it holds: any that is not empty, or only one with users
// watched without a key.
func byKind(text []byte) class {
	var plain recorder
	if detect.HasCandidate(text, &plain) {
		return nonEmpty
	}
	return keyless
}

// kept is a record kept aside: JSON text in the arena or the spill file,
// or a Parquet row.
type kept struct {
	off     int64
	n       int32
	element bool
	place   source.Place
	row     *rowRef
	text    []byte // a row's text values, as the prefilter saw them
	pos     uint64
}

// index holds the kept records of a scan, by account (the event's
// recipientAccountId, or the layout's), and in each by key and by user.
type index struct {
	mu      sync.Mutex
	dir     string
	arena   []byte
	spill   *os.File
	spilled int64
	recs    []kept
	keys    map[string]map[string][]int32 // account -> key -> records
	users   map[string]map[string][]int32 // account -> account\x00user -> records
	any     map[string]map[class][]int32  // account -> records any list of that class takes
}

func newIndex(dir string) *index {
	return &index{dir: dir, keys: map[string]map[string][]int32{}, users: map[string]map[string][]int32{},
		any: map[string]map[class][]int32{}}
}

// keep notes a record; rec holds the keys and users the prefilter saw.
func (x *index) keep(text []byte, element bool, place source.Place, pos uint64, account string, cls class, rec *recorder, row *rowRef) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := kept{element: element, place: place, row: row, pos: pos}
	if row != nil {
		k.text = bytes.Clone(text)
	} else {
		k.n = int32(len(text))
		if len(x.arena)+len(text) <= spillAfter {
			if x.arena == nil {
				x.arena = make([]byte, 0, spillAfter)
			}
			k.off = int64(len(x.arena))
			x.arena = append(x.arena, text...)
		} else {
			if x.spill == nil {
				f, err := os.CreateTemp(x.dir, "cloudtrail-quarantine-kept-*")
				if err != nil {
					return fmt.Errorf("a temporary file for records kept aside: %w", err)
				}
				os.Remove(f.Name()) // gone with the process, whatever happens
				x.spill = f
			}
			k.off = -1 - x.spilled
			if _, err := x.spill.Write(text); err != nil {
				return fmt.Errorf("writing records kept aside to %s: %w", x.dir, err)
			}
			x.spilled += int64(len(text))
		}
	}
	id := int32(len(x.recs))
	x.recs = append(x.recs, k)
	add := func(m map[string]map[string][]int32, name []byte) {
		byName := m[account]
		if byName == nil {
			byName = map[string][]int32{}
			m[account] = byName
		}
		ids := byName[string(name)]
		if n := len(ids); n == 0 || ids[n-1] != id {
			byName[string(name)] = append(ids, id)
		}
	}
	if cls == nonEmpty || cls == keyless {
		if x.any[account] == nil {
			x.any[account] = map[class][]int32{}
		}
		x.any[account][cls] = append(x.any[account][cls], id)
	}
	for _, key := range rec.keys {
		add(x.keys, key)
	}
	for _, u := range rec.users {
		add(x.users, u)
	}
	return nil
}

// matches lists the kept records of an account (and those of no known
// account) that name something w watches, less those in done.
func (x *index) matches(account string, w detect.Watch, done map[int32]bool) []int32 {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []int32
	take := func(ids []int32) {
		for _, id := range ids {
			if !done[id] {
				done[id] = true
				out = append(out, id)
			}
		}
	}
	for _, a := range []string{account, ""} {
		if !w.Empty() {
			take(x.any[a][nonEmpty])
		}
		if w.KeylessUsers() {
			take(x.any[a][keyless])
		}
		for key, ids := range x.keys[a] {
			if w.Key([]byte(key)) {
				take(ids)
			}
		}
		for u, ids := range x.users[a] {
			acct, name, _ := bytes.Cut([]byte(u), []byte{0})
			if w.User(acct, name) {
				take(ids)
			}
		}
	}
	return out
}

// decode decodes kept records with w.
func (x *index) decode(ctx context.Context, det *detect.Detector, ids []int32, w detect.Watch) ([]tagged, error) {
	var out []tagged
	var obs []detect.Observed
	var st detect.JSONStats
	var buf []byte
	for _, id := range ids {
		x.mu.Lock()
		k := x.recs[id]
		var text []byte
		var err error
		switch {
		case k.row != nil:
		case k.off >= 0:
			text = x.arena[k.off : k.off+int64(k.n)]
		default:
			buf = append(buf[:0], make([]byte, k.n)...)
			_, err = x.spill.ReadAt(buf, -1-k.off)
			text = buf
		}
		x.mu.Unlock()
		if err != nil {
			return out, fmt.Errorf("reading records kept aside: %w", err)
		}
		if k.row != nil {
			text = k.text
			obs = obs[:0]
			if detect.HasCandidate(text, w) {
				row, schema, err := readRef(ctx, k.row)
				if err != nil {
					return out, fmt.Errorf("reading a kept row of %s again: %w", k.row.obj.Name, err)
				}
				obs = observeRow(det, schema, row, k.place, obs, &st)
			}
		} else {
			obs = det.ObserveJSON(text, k.element, w, k.place.Time, obs[:0], &st)
		}
		if len(obs) > 0 {
			text = bytes.Clone(text)
		}
		for i, o := range obs {
			out = append(out, tagged{o, k.place, text, k.pos + uint64(min(i, 255))})
		}
	}
	return out, nil
}

func (x *index) close() {
	if x.spill != nil {
		x.spill.Close()
	}
}

// accountOf reads a record's recipientAccountId without decoding it
// (a record whose key is not written so is kept for every account),
// hopping over the key's A, rare in CloudTrail.
func accountOf(rec []byte) string {
	i := detect.IndexHop(rec, 0, recipientKey, len(`"recipient`))
	if i < 0 {
		return ""
	}
	s := i + len(recipientKey)
	if s+12 > len(rec) || !source.IsAccount(string(rec[s:s+12])) {
		return ""
	}
	return string(rec[s : s+12])
}

var recipientKey = []byte(`"recipientAccountId":"`)

// readStreamed reads a file outside the layout (or too large to hold)
// once, streaming: its records are framed and each looked at with the
// recorder; candidates are decoded, records naming keys or users kept.
func (r *reader) readStreamed(ctx context.Context, obj source.Object, file int, x *index) (d *decoded) {
	d = &decoded{obj: obj, file: file}
	defer func() {
		if p := recover(); p != nil {
			d.err = fmt.Errorf("internal error (please report it): %v", p)
		}
	}()
	if obj.Parquet() {
		d.err = r.readParquet(ctx, obj, x, d)
		d.pos = make([]uint64, len(d.obs))
		for i := range d.pos {
			d.pos[i] = position(file, i, 0)
		}
		return d
	}
	o, err := r.open(ctx, obj, nil, &d.stored)
	if err != nil {
		d.err = err
		return d
	}
	defer o.close()
	var s detect.Splitter
	var e edge
	var rec recorder
	buf := make([]byte, 0, block+64<<10)
	for eof := false; ; {
		if err := ctx.Err(); err != nil && !eof {
			// Stopped: what was read is still framed and judged.
			d.err, eof = err, true
		}
		for {
			sp, ok, err := s.Next(buf, eof)
			if err != nil {
				if d.err == nil {
					d.err = fmt.Errorf("JSON: %w", err)
				}
				d.events = max(d.events, d.st.Events)
				return d
			}
			if !ok {
				break
			}
			text := buf[sp.Start:sp.End]
			c, n := d.st.Candidates, len(d.obs)
			pos := position(d.file, d.st.Records, 0)
			cls := none
			// Most records are no candidate for any list, so for the
			// rules alone neither: one look at them tells.
			if anyList(text, &rec) {
				d.obs = r.det.ObserveJSON(text, sp.Element, nil, obj.Place.Time, d.obs, &d.st)
				for i := range len(d.obs) - n {
					d.pos = append(d.pos, pos+uint64(min(i, 255)))
				}
				if d.st.Candidates > c {
					continue
				}
				cls = byKind(text)
			} else {
				d.st.Records++
				cls = rec.class()
			}
			if cls != none {
				account := obj.Place.Account
				if account == "" {
					account = accountOf(text)
				}
				if err := x.keep(text, sp.Element, obj.Place, pos, account, cls, &rec, nil); err != nil {
					d.err = err
					return d
				}
			}
		}
		if eof {
			d.events = max(d.events, d.st.Events)
			return d
		}
		if k := s.Keep(); k > 0 {
			buf = buf[:copy(buf, buf[k:])]
			s.Shift(k)
		}
		if len(buf) > maxRecord {
			d.err = ErrRecordTooLarge
			return d
		}
		if cap(buf)-len(buf) < block/2 {
			buf = append(buf[:cap(buf)], make([]byte, max(block, cap(buf)))...)[:len(buf)]
		}
		n, err := o.text.Read(buf[len(buf):cap(buf)])
		blk := buf[len(buf) : len(buf)+n]
		buf = buf[:len(buf)+n]
		d.size += int64(n)
		d.events += e.count(blk)
		switch {
		case err == io.EOF:
			eof = true
		case err != nil:
			// What was read before the damage is still framed and judged.
			eof = true
			if errors.Is(err, context.Canceled) {
				d.err = err
			} else if o.gzipped {
				d.err = gzipError(err)
			} else {
				d.err = err
			}
		}
	}
}
