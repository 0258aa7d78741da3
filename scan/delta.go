package scan

import (
	"bytes"
	"slices"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// When the watch list grows, the held files are looked at again for what
// was added only. The engine's list does not say what that was, but it
// can only be something the event that grew it names: an access key id
// anywhere in it, a user name (its caller's, a userName it carries, the
// user a quarantine or a notice names). Each of those is looked for in
// the held text with bytes.Index (a memchr-speed search), and only the
// records holding one are given to the prefilter, with the whole list:
// it decides exactly as it would have, on the few records that could
// have changed. When the list changes kind, the prefilter's patterns
// that hold for any key or user come in: DeleteUser once anything is
// watched; AccessKey, and an IAM user's call with no user ARN near,
// once a user is watched without a key. Records holding those are given
// to it too. An event whose names cannot be read sends the whole text
// through the prefilter again.
type growth struct {
	ver      uint64
	full     bool
	nonEmpty bool     // the list stopped being empty
	keyless  bool     // it started holding users without a key
	names    [][]byte // key ids, and user names as they end an ARN or a string
}

var (
	deleteUser = []byte("DeleteUser")
	accessKey  = []byte("AccessKey")
	iamUser    = []byte("IAMUser")
	userARN    = []byte(":user/")
)

// arnNear is how far after "IAMUser" a user's ARN is looked for. The
// prefilter looks further (detect's userWindow, 400 bytes either side):
// a call whose ARN is further than this from its type is given to the
// prefilter, which decides; one whose ARN is this near is decided by the
// name search, as the prefilter decides by that ARN.
const arnNear = 160

// namesOf is what an event names that a watch list can hold.
func namesOf(o detect.Observed) ([][]byte, bool) {
	e := o.Event
	// Whole: a name may lie in a part the reader left undecoded (a
	// CreateAccessKey's responseElements).
	raw, ok := value.Decoded(e.Raw).(map[string]any)
	if !ok {
		return nil, false
	}
	var names [][]byte
	add := func(s string) {
		if s != "" && !slices.ContainsFunc(names, func(n []byte) bool { return string(n) == s }) {
			names = append(names, []byte(s))
		}
	}
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(k, x)
			}
		case []any:
			for _, x := range v {
				walk(key, x)
			}
		case string:
			if accessKeyID(v) || key == "userName" {
				add(v)
			}
		}
	}
	walk("", raw)
	add(e.Actor.UserName)
	add(e.Actor.AccessKeyID)
	if x := e.Exposure; x != nil {
		for _, k := range x.Keys {
			add(k)
		}
		add(x.User)
	}
	for _, f := range o.Findings {
		add(f.Match.Target.Name)
	}
	return names, true
}

// accessKeyID: AKIA and 16 of [A-Z0-9], as long-term key ids are.
func accessKeyID(s string) bool {
	if len(s) != 20 || s[:4] != "AKIA" {
		return false
	}
	for i := 4; i < 20; i++ {
		if c := s[i]; (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// spans frames a held text into its records once.
func (d *decoded) records() ([]detect.Span, error) {
	if d.spans != nil {
		return d.spans, nil
	}
	var s detect.Splitter
	spans := []detect.Span{}
	for {
		sp, ok, err := s.Next(d.text, true)
		if err != nil {
			d.spans = spans
			return spans, err
		}
		if !ok {
			d.spans = spans
			return spans, nil
		}
		spans = append(spans, sp)
	}
}

// refilterNames gives the prefilter, with w, the records of d not decoded
// yet that hold one of names (as a whole key id or name); it returns how
// many events it added to d.obs.
func (r *reader) refilterNames(d *decoded, w detect.Watch, names [][]byte, g growth) int {
	ver := w.Version()
	defer func() { d.ver = ver }()
	var hits []int
	any := func(p []byte, ok func(at int) bool) {
		for i := 0; ; {
			j := bytes.Index(d.text[i:], p)
			if j < 0 {
				return
			}
			if ok == nil || ok(i+j) {
				hits = append(hits, i+j)
			}
			i += j + len(p)
		}
	}
	if g.nonEmpty {
		any(deleteUser, nil)
	}
	if g.keyless {
		any(accessKey, nil)
		any(iamUser, func(at int) bool {
			return !bytes.Contains(d.text[at:min(len(d.text), at+arnNear)], userARN)
		})
	}
	for _, n := range names {
		for i := 0; ; {
			j := bytes.Index(d.text[i:], n)
			if j < 0 {
				break
			}
			at := i + j
			i = at + len(n)
			before, after := byte(0), byte(0)
			if at > 0 {
				before = d.text[at-1]
			}
			if i < len(d.text) {
				after = d.text[i]
			}
			if (before == '"' || before == '/') && after == '"' {
				hits = append(hits, at)
			}
		}
	}
	if len(hits) == 0 {
		return 0
	}
	slices.Sort(hits)
	if d.spans == nil {
		d.spans, d.guessed = logRecords(d.text, &d.keys, d.spanBuf)
	}
	spans, _ := d.records()
	if d.seen == nil {
		d.seen = map[int]bool{}
	}
	before := len(d.obs)
	var recs []detect.Span
	for _, at := range hits {
		k, _ := slices.BinarySearchFunc(spans, at, func(sp detect.Span, at int) int {
			switch {
			case sp.End <= at:
				return -1
			case sp.Start > at:
				return 1
			}
			return 0
		})
		if k == len(spans) || spans[k].Start > at || d.seen[spans[k].Start] {
			continue
		}
		if d.guessed && !whole(d.text, spans[k]) {
			// The guess was wrong: frame the text properly, and start over.
			d.spans, d.guessed = nil, false
			d.records()
			return r.refilterNames(d, w, names, g)
		}
		recs = append(recs, spans[k])
	}
	for _, sp := range slices.Compact(recs) {
		if !d.seen[sp.Start] {
			d.observe(r.det, sp, w, false)
		}
	}
	return len(d.obs) - before
}
