package detect

import (
	"bytes"
	"slices"
	"sync"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/pairs"
)

// Watch is what the prefilter asks of the lifecycle's watch list. An empty
// one (or nil) costs nothing beyond the rules' own needles.
type Watch interface {
	// Empty: nothing is watched.
	Empty() bool
	// Key: an access key id is watched (or was, and its case is kept).
	Key(id []byte) bool
	// KeylessUsers: some user is watched whose key is not known yet.
	KeylessUsers() bool
	// User: that user of that account is watched without a known key.
	User(account, name []byte) bool
	// KeylessNames are the names of the users watched without a key, of
	// any account; ok is false when the list cannot say (it records what
	// it sees, or holds too many to look for one by one).
	KeylessNames() (names [][]byte, ok bool)
	// Version changes whenever something is put on the list.
	Version() uint64
}

// The prefilter rules a record out from its raw bytes, without decoding
// it. Every event a rule can fire on holds one of a few byte strings:
// quarantine policy names (also in the error message of a call a
// quarantine denied), the RISK_ of AWS Health's exposure codes; with keys
// on the watch list, AKIA followed by a watched key id, DeleteUser, and,
// for users watched without a key, IAMUser and AccessKey, each in a record
// that holds such a user's name (IAMUser with that user's ARN nearby, when
// one is); with one such user, its name, in a record whose IAMUser would
// do. Where the build has the vectorised sweep (internal/pairs), one
// pass finds them all, by a pair of bytes of each; else each pattern is
// found by hopping with bytes.IndexByte over its rarest byte ('Q' is 0.04%
// of CloudTrail's bytes, 'x' 0.25%, 'K' 0.16%, 'U' 0.09%), patterns sharing
// a hop byte sharing the pass. The two find the same records (FuzzFusedPassAgrees).
type pattern struct {
	text []byte
	at   int // offset of the hop byte in text
	// pairAt and gap place the pair of bytes the fused pass looks for
	// (text[pairAt], text[pairAt+gap]); unset, the hop byte and the next.
	// The pair is the pattern's rarest in CloudTrail: the "Us" of IAMUser
	// is also every GetUser's and ListUsers', and AccessKey has no pair of
	// neighbours that accessKeyId, in nearly every event, does not share
	// (its A and K, six bytes apart, are the one pair farther apart).
	pairAt, gap int
	// check, when set, must also hold: the hit is then a candidate only
	// when it names something watched.
	check func(w Watch, data []byte, start int) bool
	// inRecord, when set, must hold of the whole record the hit is in.
	// Where no record is known (HasCandidate over a file) the hit counts
	// as it is: that only ever frames more. candidate keeps one verdict of
	// each a record.
	inRecord recordCheck
}

// recordCheck is what must hold of a record for a hit in it to count.
type recordCheck uint8

const (
	anyRecord     recordCheck = iota
	namesKeyless              // namesKeylessUser
	callerKeyless             // callerWatched
	recordChecks
)

var (
	quarantine = pattern{text: []byte("Quarantine")}
	legacy     = pattern{text: []byte("xposedCredentialPolicy")}
	health     = pattern{text: []byte("RISK_"), at: 3}
	akia       = pattern{text: []byte("AKIA"), at: 1, check: watchedKey}
	accessKey  = pattern{text: []byte("AccessKey"), at: 6, gap: 6, inRecord: namesKeyless}
	deleteUser = pattern{text: []byte("DeleteUser"), at: 6, pairAt: 5, gap: 1}
	// An IAM user's call with no user ARN near its type (a failed console
	// login hides its user's) is a candidate only when it names a user
	// watched without a key: a flood of them is not decoded one by one.
	// With one user watched without a key (the usual incident), the walk
	// looks for that user's name instead (namePattern), where the type
	// stands in nearly every record and its checks cost more than the
	// sweep; the record then decides as the type's hits would have.
	iamUser = pattern{text: []byte("IAMUser"), at: 3, pairAt: 2, gap: 1, check: watchedUserNear, inRecord: namesKeyless}

	// The passes' patterns for each state of the watch list, built once so
	// a scan allocates nothing.
	kPatterns = [...][]pattern{static: {health}, keys: {health, akia}, keyless: {health, akia, accessKey}}
	uPatterns = [...][]pattern{static: nil, keys: {deleteUser}, keyless: {deleteUser, iamUser}}
)

// The states of the watch list the passes differ by.
const (
	static  = iota // nothing watched
	keys           // keys watched
	keyless        // users watched without a key too
)

// fused: one sweep finds the hits of every pass (pairs.Fast; tests turn
// it off to hold the two against each other): a hit is where one of the
// patterns' pairs of bytes stands.
var fused = pairs.Fast

// fusedPasses are the fused pass's patterns and pairs for each state of
// the watch list, without and with the escape patterns of JSON text;
// anchoredPasses are those of the keyless state without IAMUser, the
// watched name's pattern to be added (anchor).
var fusedPasses, anchoredPasses = func() (out [3][2]fusedSet, anchored [2]fusedSet) {
	for state := range out {
		for j := range out[state] {
			out[state][j] = newFusedSet(quarantineOnly, legacyOnly, kPatterns[state], uPatterns[state], escapeOnly[:j*len(escapeOnly)])
		}
	}
	for j := range anchored {
		anchored[j] = newFusedSet(quarantineOnly, legacyOnly, kPatterns[keyless], uPatterns[keys], escapeOnly[:j*len(escapeOnly)])
		if probe := anchored[j].pairs; !probe.Add(1, 2, 1) {
			panic("detect: no room for a watched name's pair")
		}
	}
	return out, anchored
}()

// fusedSet is the patterns of a fused pass, and the pairs it sweeps for.
type fusedSet struct {
	patterns []pattern
	pairs    pairs.Set
}

func newFusedSet(lists ...[]pattern) (f fusedSet) {
	for _, l := range lists {
		f.patterns = append(f.patterns, l...)
	}
	for k := range f.patterns {
		pt := &f.patterns[k]
		if pt.gap == 0 {
			pt.pairAt, pt.gap = pt.at, 1
		}
		if pt.pairAt+pt.gap >= len(pt.text) || !f.pairs.Add(pt.text[pt.pairAt], pt.text[pt.pairAt+pt.gap], pt.gap) {
			panic("detect: a pattern's pair is not in its text, or too many pairs")
		}
	}
	return f
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Needles are the patterns that make a record a candidate for the rules
// that decide from the event alone; a test proves every positive example
// of those rules holds one.
var Needles = [][]byte{quarantine.text, legacy.text, health.text}

// pass finds the next hit of its patterns, hopping over one byte, or,
// fused, sweeping for their pairs of bytes.
type pass struct {
	hop      byte
	pairs    *pairs.Set // fused: every pattern's pair
	patterns []pattern
	next     int // the next hit; -1: none to the end
	pat      int // the pattern hit at next
	// Fused, the walk over the pairs, and the place of the last pair
	// looked at (-1: none yet): a later search may start before it, as a
	// pattern starts before its pair.
	hits pairs.Hits
	last int
}

// prefilter is the passes of one scan.
type prefilter struct {
	data    []byte
	watch   Watch
	version uint64 // the watch list's when the passes were set up
	passes  [6]pass
	n       int
}

// reset sets the passes up for the watch list as it is now, searching from
// offset from on; asJSON adds the pass that makes a record whose escapes
// could spell a pattern a candidate.
func (p *prefilter) reset(data []byte, w Watch, from int, asJSON bool) {
	p.data, p.watch = data, w
	state := static
	if w != nil {
		p.version = w.Version()
	}
	if w != nil && !w.Empty() {
		state = keys
		if w.KeylessUsers() {
			state = keyless
		}
	}
	var a *anchor
	if state == keyless {
		a = anchorFor(w)
	}
	if fused {
		f := &fusedPasses[state][b2i(asJSON)]
		if a != nil {
			f = &a.sets[b2i(asJSON)]
		}
		ps := &p.passes[0]
		*ps = pass{pairs: &f.pairs, patterns: f.patterns, last: -1}
		ps.hits.Reset(data, &f.pairs, from)
		p.n = 1
		ps.seek(data, w, from)
		return
	}
	k, u := kPatterns[state], uPatterns[state]
	p.passes[0] = pass{hop: 'Q', patterns: quarantineOnly}
	p.passes[1] = pass{hop: 'x', patterns: legacyOnly}
	p.passes[2] = pass{hop: 'K', patterns: k}
	p.n = 3
	if a != nil {
		u = uPatterns[keys]
		p.passes[p.n] = pass{hop: a.name[0].text[a.name[0].at], patterns: a.name}
		p.n++
	}
	if u != nil {
		p.passes[p.n] = pass{hop: 'U', patterns: u}
		p.n++
	}
	if asJSON {
		p.passes[p.n] = pass{hop: '\\', patterns: escapeOnly}
		p.n++
	}
	for i := range p.n {
		p.passes[i].seek(data, w, from)
	}
}

// An anchor is the passes that look for a watched user's name: the
// keyless state's fused sets with its pattern instead of IAMUser's, and
// the pattern alone for hopping. They are built once a name and kept
// (a scan allocates nothing; a prefilter holding pointers into itself
// would be put on the heap), up to maxAnchors names, then made anew.
type anchor struct {
	sets [2]fusedSet // without and with the escape patterns
	name []pattern
}

var anchors struct {
	sync.RWMutex
	byName map[string]*anchor
}

const maxAnchors = 256

// anchoring: the walk looks for the one name (tests turn it off to hold
// the two ways against each other).
var anchoring = true

// anchorFor is the anchor of the one user w watches without a key, when
// the walk can look for its name; else nil. (A name holding a zero byte
// has no pair the sweep can look for: zeros pad a text's last bytes.)
func anchorFor(w Watch) *anchor {
	if !anchoring {
		return nil
	}
	names, ok := w.KeylessNames()
	if !ok || len(names) != 1 || len(names[0]) < 2 || bytes.IndexByte(names[0], 0) >= 0 {
		return nil
	}
	name := names[0]
	anchors.RLock()
	a := anchors.byName[string(name)]
	anchors.RUnlock()
	if a != nil {
		return a
	}
	a = &anchor{name: []pattern{namePattern(bytes.Clone(name))}}
	pt := a.name[0]
	for j := range a.sets {
		base := &anchoredPasses[j]
		a.sets[j] = fusedSet{patterns: append(slices.Clone(base.patterns), pt), pairs: base.pairs}
		if !a.sets[j].pairs.Add(pt.text[pt.pairAt], pt.text[pt.pairAt+1], 1) {
			panic("detect: no room for a watched name's pair") // anchoredPasses kept one
		}
	}
	anchors.Lock()
	defer anchors.Unlock()
	if anchors.byName == nil || len(anchors.byName) >= maxAnchors {
		anchors.byName = map[string]*anchor{}
	}
	anchors.byName[string(name)] = a
	return a
}

// namePattern looks for a watched user's name, by its rarest byte or
// pair in CloudTrail; the record counts when it is that user's call, as
// IAMUser's hits in it would decide.
func namePattern(name []byte) pattern {
	return pattern{text: name, at: rarestByte(name), pairAt: rarestPair(name), gap: 1, inRecord: callerKeyless}
}

// seek finds the pass's next hit at or after from.
func (ps *pass) seek(data []byte, w Watch, from int) {
	ps.next, ps.pat = ps.search(data, w, from)
}

// watchChanged reports whether something was put on the watch list since
// the passes were set up: what they found ahead was found without it.
func (p *prefilter) watchChanged() bool {
	return p.watch != nil && p.watch.Version() != p.version
}

var (
	quarantineOnly = []pattern{quarantine}
	legacyOnly     = []pattern{legacy}
	// The escapes that can hide a pattern's byte: \u (hidesText tells
	// which code points) and \/.
	escapeOnly = []pattern{{text: []byte(`\u`), check: hidesText}, {text: []byte(`\/`)}}
)

// candidate reports whether data[start:end], one record, holds a hit.
func (p *prefilter) candidate(start, end int) bool {
	hit := false
	var holds [recordChecks]int8 // the record's verdict for each inRecord: 0 unknown, 1 holds, -1 not
	for i := range p.n {
		ps := &p.passes[i]
		if ps.next >= 0 && ps.next < start {
			// Past a record the reader skipped, or the last candidate.
			ps.seek(p.data, p.watch, start)
		}
		for ps.next >= 0 && ps.next < end {
			check := ps.patterns[ps.pat].inRecord
			if check == anyRecord {
				hit = true
				break
			}
			if holds[check] == 0 {
				holds[check] = -1
				if recordHolds(check, p.watch, p.data, start, end) {
					holds[check] = 1
				}
			}
			if holds[check] > 0 {
				hit = true
				break
			}
			// Not this record's: another pattern of the pass may be.
			ps.seek(p.data, p.watch, ps.next+1)
		}
	}
	if hit {
		// Whatever is found next belongs to a later record.
		for i := range p.n {
			if ps := &p.passes[i]; ps.next >= 0 && ps.next < end {
				ps.seek(p.data, p.watch, end)
			}
		}
	}
	return hit
}

// search finds the first hit starting at or after from, and its pattern.
// A pass's searches go forward: each from is at or after the one before.
func (ps *pass) search(data []byte, w Watch, from int) (int, int) {
	if ps.pairs != nil {
		return ps.walk(data, w, from)
	}
	for i := from; ; i++ {
		j := bytes.IndexByte(data[i:], ps.hop)
		if j < 0 {
			return -1, 0
		}
		i += j
		if start, k := ps.match(data, w, i, from); k >= 0 {
			return start, k
		}
	}
}

// match is the first of the pass's patterns that the byte found at i
// (the hop byte, or fused the first of a pair) stands in, starting at or
// after from: its start and its index, or k -1.
func (ps *pass) match(data []byte, w Watch, i, from int) (start, k int) {
	for k, pt := range ps.patterns {
		at := pt.at
		if ps.pairs != nil {
			at = pt.pairAt
		}
		start := i - at
		if start >= from && data[i] == pt.text[at] && bytes.HasPrefix(data[start:], pt.text) && (pt.check == nil || pt.check(w, data, start)) {
			return start, k
		}
	}
	return 0, -1
}

// walk is search for the fused pass. A pair before ps.last was looked at
// by a search from an earlier from and stood in no pattern starting
// after it, so none starting after this from either; the pair at
// ps.last may stand in another pattern, and is looked at again.
func (ps *pass) walk(data []byte, w Watch, from int) (int, int) {
	i := ps.last
	if from > i {
		ps.hits.Seek(from)
		i = ps.hits.Next()
	}
	for ; i >= 0; i = ps.hits.Next() {
		ps.last = i
		if start, k := ps.match(data, w, i, from); k >= 0 {
			return start, k
		}
	}
	return -1, 0
}

// watchedKey: the 20-byte access key id starting at start is watched.
func watchedKey(w Watch, data []byte, start int) bool {
	return start+20 <= len(data) && w.Key(data[start:start+20])
}

// recordHolds reports whether check holds of the record data[start:end].
func recordHolds(check recordCheck, w Watch, data []byte, start, end int) bool {
	if check == callerKeyless {
		return callerWatched(w, data, start, end)
	}
	return namesKeylessUser(w, data[start:end])
}

// callerWatched: the record is a call of a user watched without a key,
// as its IAMUser hits would have made it a candidate (iamUser's check
// and inRecord), data around it read as they read it.
func callerWatched(w Watch, data []byte, start, end int) bool {
	if !recordHolds(iamUser.inRecord, w, data, start, end) {
		return false
	}
	within := data[:min(len(data), end+len(iamUser.text)-1)] // a hit starts inside the record
	for i := IndexHop(within, start, iamUser.text, iamUser.at); i >= 0; i = IndexHop(within, i+1, iamUser.text, iamUser.at) {
		if iamUser.check(w, data, i) {
			return true
		}
	}
	return false
}

// MaxKeylessNames bounds the names a record is searched for, one by one;
// past it every AccessKey call, and every IAM user's call with no ARN
// near, is a candidate.
const MaxKeylessNames = 64

// namesKeylessUser: the record holds the name of a user watched without
// a key (an access key call names its user, or its caller does), in
// whatever form, as a plain substring: the escape pass covers a name
// spelled with escapes. A list that cannot say takes every record.
func namesKeylessUser(w Watch, rec []byte) bool {
	names, ok := w.KeylessNames()
	if !ok || len(names) > MaxKeylessNames {
		return true
	}
	for _, n := range names {
		if bytes.Contains(rec, n) {
			return true
		}
	}
	return false
}

// userWindow is how far from "IAMUser" the caller's ARN is looked for; in
// CloudTrail's userIdentity it follows the type within a hundred bytes.
const userWindow = 400

// watchedUserNear: an IAM user's call, and a user ARN near its type
// names a user watched without a key; with no ARN near, the record
// decides (iamUser's inRecord: it names such a user). An ARN near may be
// another user's (in the user agent the caller sent, at the end of the
// record before) while the caller's is missing (a failed console login's
// identity has none): so the identity's own userName and accountId (the
// first after the type, in CloudTrail's order and sorted alike; the
// account, keys sorted, just before it) decide too, read only when the
// list cannot name its users or one of the names follows the type.
func watchedUserNear(w Watch, data []byte, start int) bool {
	lo, hi := max(0, start-userWindow), min(len(data), start+userWindow)
	window := data[lo:hi]
	found := false
	// Hopping over the slash: a colon is in every JSON member, a slash in few.
	for i := IndexHop(window, 0, userMarker, len(":user")); i >= 0; i = IndexHop(window, i+1, userMarker, len(":user")) {
		if account, name, ok := userARNAt(window, i); ok {
			found = true
			if w.User(account, name) {
				return true
			}
		}
	}
	if !found {
		return true
	}
	after := window[start-lo : min(len(window), start-lo+identityAfter)]
	if !namesKeylessUser(w, after) {
		return false // no watched name follows the type: nor does the identity's
	}
	name, _ := valueAfter(after, userNameKey, userNameByte)
	if name == nil {
		return false
	}
	// The account: the first after the type, or, keys sorted, one just
	// before it; a record next to it may hold others, so each is tried.
	account, _ := valueAfter(after, accountIDKey, isDigit)
	for rest := window[max(0, start-lo-identityBefore) : start-lo]; ; account, rest = valueAfter(rest, accountIDKey, isDigit) {
		if len(account) == 12 && w.User(account, name) {
			return true
		}
		if rest == nil {
			return false
		}
	}
}

// identityAfter and identityBefore are how far after the type an
// identity without an ARN has its userName and accountId (in CloudTrail's
// order: principalId, accountId, accessKeyId, userName), and how far
// before it the accountId is (its keys sorted: accessKeyId, accountId).
const identityAfter, identityBefore = 256, 200

var accountIDKey, userNameKey = []byte("accountId"), []byte("userName")

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// valueAfter is the first value of key in b, JSON text or msgpack: the
// run of bytes all in that follows the key, past what stands between a
// key and a string value (a quote, a colon, spaces, a msgpack string's
// header); nil when there is none. rest is what follows it.
func valueAfter(b, key []byte, in func(byte) bool) (value, rest []byte) {
	for i := 0; ; {
		j := bytes.Index(b[i:], key)
		if j < 0 {
			return nil, nil
		}
		i += j + len(key)
		k := i
		if k+1 < len(b) && (b[k] == 0xd9 || b[k] == 0xc4) {
			k += 2 // msgpack's str8 or bin8: the length byte may be one of a name's
		}
		for n := 0; n < 4 && k < len(b) && !in(b[k]); n++ {
			k++
		}
		end := k
		for end < len(b) && in(b[end]) {
			end++
		}
		if end > k {
			return b[k:end], b[end:]
		}
	}
}

var userMarker = []byte(":user/")

// IndexHop finds text in b from from on by hopping with bytes.IndexByte
// over its byte at at, the rarest of it where text is looked for (where
// bytes.Index would hop over its first byte, a quote in JSON's keys).
func IndexHop(b []byte, from int, text []byte, at int) int {
	for i := from + at; i < len(b); i++ {
		j := bytes.IndexByte(b[i:], text[at])
		if j < 0 {
			return -1
		}
		i += j
		if bytes.HasPrefix(b[i-at:], text) {
			return i - at
		}
	}
	return -1
}

// userARNAt reads the account and user name of the IAM user ARN whose
// ":user/" is at i in b (arn:<partition>:iam::<account>:user/[path/]name).
func userARNAt(b []byte, i int) (account, name []byte, ok bool) {
	j := i
	for j > 0 && b[j-1] >= '0' && b[j-1] <= '9' {
		j--
	}
	if i-j != 12 || j < 2 || b[j-1] != ':' || b[j-2] != ':' {
		return nil, nil, false
	}
	account = b[j:i]
	k := i + len(userMarker)
	for k < len(b) && userNameByte(b[k]) {
		k++
	}
	path := b[i+len(userMarker) : k]
	if s := bytes.LastIndexByte(path, '/'); s >= 0 {
		path = path[s+1:]
	}
	return account, path, len(path) > 0
}

// userNameByte: IAM user names are [\w+=,.@-]; paths add /.
func userNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '+' || c == '=' ||
		c == ',' || c == '.' || c == '@' || c == '-' || c == '/'
}

// hidesText: the JSON escape at start could stand for a byte of a
// pattern. Text the prefilter looks for is plain ASCII, so an escape of a
// printable ASCII character (which no encoder needs to write) or of a
// solidus could hide it from the raw bytes; the decoder would still read
// it. The escapes encoders do write (quotes, control characters, < > & '
// and everything beyond ASCII) cannot. A backslash escaped itself is
// looked at again as the start of an escape: text nested as a JSON string
// inside a JSON string is covered too.
func hidesText(_ Watch, data []byte, start int) bool {
	if start+1 >= len(data) {
		return false
	}
	switch data[start+1] {
	case '/':
		return true
	case 'u':
	default:
		return false
	}
	if start+6 > len(data) {
		return false
	}
	r := 0
	for _, c := range data[start+2 : start+6] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | int(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | int(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | int(c-'A'+10)
		default:
			return false
		}
	}
	return r > ' ' && r < 0x7f && r != '"' && r != '<' && r != '>' && r != '&' && r != '\''
}
