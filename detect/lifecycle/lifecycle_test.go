package lifecycle_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
)

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

var detector = detect.New(detect.Options{})

func defaults() lifecycle.Options {
	return lifecycle.Options{WatchTTL: 30 * 24 * time.Hour, MaxKeys: 100000, UseWindow: time.Hour, Grace: 15 * time.Minute, Delay: 15 * time.Minute}
}

// notice is a Health event naming key of user, at at.
func notice(key, user string, at time.Time) *cloudtrail.Event {
	return &cloudtrail.Event{Name: "AWS_RISK_CREDENTIALS_EXPOSED", Source: "aws.health", ID: "notice-" + key, Time: at.Format(time.RFC3339Nano),
		Account: "111122223333", Shape: cloudtrail.ShapeHealth, Exposure: &cloudtrail.Exposure{Code: "AWS_RISK_CREDENTIALS_EXPOSED", Keys: []string{key}, User: user}}
}

// call is an API call made with key by user.
func call(key, user, source, name, errorCode, id string, at time.Time) *cloudtrail.Event {
	return &cloudtrail.Event{Name: name, Source: source, ErrorCode: errorCode, ID: id, Time: at.Format(time.RFC3339Nano), Account: "111122223333",
		SourceIP: "203.0.113.77", UserAgent: "aws-cli/2", Actor: cloudtrail.Actor{Type: "IAMUser", UserName: user, AccessKeyID: key, AccountID: "111122223333"}}
}

func observe(e *lifecycle.Engine, ev *cloudtrail.Event, wall time.Time) []detect.Finding {
	return e.Observe(detector.Observe(ev, wall), wall)
}

func only(t *testing.T, fs []detect.Finding, rule string) detect.Finding {
	t.Helper()
	var out []detect.Finding
	for _, f := range fs {
		if f.Rule.ID == rule {
			out = append(out, f)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d %s findings in %v", len(out), rule, fs)
	}
	return out[0]
}

// A scanner trying 600 different actions with the key in one window: the
// first MaxUseAlerts alert, the calls of the rest are only counted; one a
// window, each alerts, and the case keeps at most MaxGroups groups (the
// group that alerted longest ago is forgotten), so one key cannot grow
// its case, or the alerts, without bound.
func TestGroupsPerKeyAreBounded(t *testing.T) {
	for _, spread := range []time.Duration{time.Second, time.Hour} {
		o := defaults()
		o.Persist = true
		e := lifecycle.New(o)
		observe(e, notice("AKIAEXAMPLEEXPOSED01", "ci-deployer", t0), t0)
		alerts := 0
		for i := range 600 {
			at := t0.Add(time.Minute + time.Duration(i)*spread)
			for _, f := range observe(e, call("AKIAEXAMPLEEXPOSED01", "ci-deployer", "ec2.amazonaws.com", fmt.Sprint("Describe", i), "", fmt.Sprint("d-", i), at), at) {
				if f.Rule.ID == rules.QuarantinedKeyUsed {
					alerts++
				}
			}
		}
		want := map[time.Duration]int{time.Second: lifecycle.MaxUseAlerts, time.Hour: 600}[spread]
		if alerts != want || e.Stats.Suppressed != int64(600-want) {
			t.Fatalf("calls %v apart: %d alerts, %d suppressed; want %d and %d", spread, alerts, e.Stats.Suppressed, want, 600-want)
		}
		changed, _, _ := e.Changes()
		for _, c := range changed {
			if len(c.Groups) > lifecycle.MaxGroups {
				t.Fatalf("calls %v apart: %s holds %d groups", spread, c.ID(), len(c.Groups))
			}
		}
	}
}

// A scanner hammering the key: 10,000 calls within the window give one
// alert, the folded calls are counted, and the next window's alert says how
// many calls it stands for.
func TestBurstIsOneAlertPerWindow(t *testing.T) {
	e := lifecycle.New(defaults())
	observe(e, notice("AKIAEXAMPLEEXPOSED01", "ci-deployer", t0), t0)
	alerts := 0
	for i := range 10000 {
		at := t0.Add(time.Minute + time.Duration(i)*100*time.Millisecond)
		for _, f := range observe(e, call("AKIAEXAMPLEEXPOSED01", "ci-deployer", "s3.amazonaws.com", "GetObject", "", fmt.Sprint("get-", i), at), at) {
			if f.Rule.ID == rules.QuarantinedKeyUsed {
				alerts++
				if f.Match.Use.Calls != 1 || f.Match.Severity != "high" {
					t.Fatalf("first alert %+v", f.Match.Use)
				}
			}
		}
	}
	if alerts != 1 || e.Stats.Suppressed != 9999 {
		t.Fatalf("%d alerts, %d suppressed", alerts, e.Stats.Suppressed)
	}
	at := t0.Add(3 * time.Hour)
	f := only(t, observe(e, call("AKIAEXAMPLEEXPOSED01", "ci-deployer", "s3.amazonaws.com", "GetObject", "", "get-late", at), at), rules.QuarantinedKeyUsed)
	if f.Match.Use.Calls != 10000 || f.Match.Use.Total != 10001 {
		t.Fatalf("next window: %+v", f.Match.Use)
	}
	// Failed calls are their own group, medium; GetCallerIdentity is high
	// even when it fails.
	f = only(t, observe(e, call("AKIAEXAMPLEEXPOSED01", "ci-deployer", "s3.amazonaws.com", "GetObject", "NoSuchKey", "get-fail", at), at), rules.QuarantinedKeyUsed)
	if f.Match.Severity != "medium" {
		t.Fatalf("failed call: %s", f.Match.Severity)
	}
	f = only(t, observe(e, call("AKIAEXAMPLEEXPOSED01", "ci-deployer", "sts.amazonaws.com", "GetCallerIdentity", "ExpiredToken", "gci", at), at), rules.QuarantinedKeyUsed)
	if f.Match.Severity != "high" {
		t.Fatalf("GetCallerIdentity: %s", f.Match.Severity)
	}
}

// The clock: event time, moved on by the wall clock only while the stream
// is silent; an event from a broken clock far ahead moves nothing.
func TestClock(t *testing.T) {
	e := lifecycle.New(defaults())
	wall := t0.Add(5 * time.Minute) // CloudTrail arrives late
	observe(e, notice("AKIAEXAMPLEEXPOSED01", "u", t0), wall)
	if got := e.Now(wall); got != t0.UnixNano() {
		t.Fatalf("now %v", time.Unix(0, got))
	}
	if got := e.Now(wall.Add(10 * time.Minute)); got != t0.Add(10*time.Minute).UnixNano() {
		t.Fatalf("after a silence: %v", time.Unix(0, got))
	}
	if got := e.Now(time.Time{}); got != t0.UnixNano() {
		t.Fatalf("a replay's time: %v", time.Unix(0, got))
	}
	future := t0.AddDate(1, 0, 0)
	observe(e, call("AKIAX", "x", "s3.amazonaws.com", "GetObject", "", "f", future), wall)
	if got := e.Now(wall); got != t0.UnixNano() {
		t.Fatalf("a broken clock moved time to %v", time.Unix(0, got))
	}
	if fs := e.Due(wall.Add(29 * time.Minute)); len(fs) != 0 {
		t.Fatal("fired before Grace and Delay")
	}
	fs := e.Due(wall.Add(31 * time.Minute))
	if len(fs) != 1 || len(e.Due(wall.Add(32*time.Minute))) != 0 {
		t.Fatalf("%d findings once the wait is over, then fired again", len(fs))
	}
	// A delivery that failed takes it back: it fires again, once.
	e.Unfire(fs)
	if fs := e.Due(wall.Add(33 * time.Minute)); len(fs) != 1 || len(e.Due(wall.Add(34*time.Minute))) != 0 {
		t.Fatalf("%d findings after Unfire", len(fs))
	}
}

// Watch_Max_Keys: the least recently seen case goes first; Watch_TTL:
// a case not seen for that long goes.
func TestBounds(t *testing.T) {
	o := defaults()
	o.MaxKeys = 3
	e := lifecycle.New(o)
	for i := range 5 {
		at := t0.Add(time.Duration(i) * time.Minute)
		observe(e, notice(fmt.Sprintf("AKIAEXAMPLE%09d", i), "u", at), at)
	}
	if e.Len() != 3 || e.Stats.Evicted != 3 || e.Watch().Key([]byte("AKIAEXAMPLE000000000")) || !e.Watch().Key([]byte("AKIAEXAMPLE000000004")) {
		t.Fatalf("len %d evicted %d", e.Len(), e.Stats.Evicted)
	}
	o = defaults()
	o.WatchTTL = 24 * time.Hour
	e = lifecycle.New(o)
	observe(e, notice("AKIAEXAMPLEEXPOSED01", "u", t0), t0)
	e.Due(t0.Add(time.Hour)) // the exposure fires
	observe(e, call("AKIAEXAMPLEOTHER0001", "v", "s3.amazonaws.com", "GetObject", "", "x", t0.Add(25*time.Hour)), t0.Add(25*time.Hour))
	e.Due(t0.Add(25 * time.Hour))
	if e.Len() != 0 || e.Stats.Expired != 2 || !e.Watch().Empty() { // the key's case and its user's
		t.Fatalf("len %d expired %d", e.Len(), e.Stats.Expired)
	}
}

// A case survives MarshalMsg and UnmarshalCase whole.
func TestCaseRoundTrip(t *testing.T) {
	e := lifecycle.New(lifecycle.Options{WatchTTL: time.Hour, MaxKeys: 10, UseWindow: time.Hour, Grace: time.Minute, Persist: true})
	observe(e, notice("AKIAEXAMPLEEXPOSED01", "ci-deployer", t0), t0)
	observe(e, call("AKIAEXAMPLEEXPOSED01", "ci-deployer", "s3.amazonaws.com", "GetObject", "", "g1", t0.Add(time.Second)), t0)
	changed, _, _ := e.Changes()
	e.Committed()
	if len(changed) != 2 { // the key's case and its user's
		t.Fatalf("%d changed", len(changed))
	}
	slices.SortFunc(changed, func(a, b *lifecycle.Case) int { return strings.Compare(a.ID(), b.ID()) })
	b := changed[0].MarshalMsg(nil)
	back, err := lifecycle.UnmarshalCase(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(back.MarshalMsg(nil)) != string(b) || back.Key != "AKIAEXAMPLEEXPOSED01" || len(back.Groups) != 1 {
		t.Fatalf("round trip: %+v", back)
	}
	// So does a case with every list full (keys, quarantines, statuses
	// with what they quoted, callers with their times, early calls).
	full := hostileCase(0).MarshalMsg(nil)
	back, err = lifecycle.UnmarshalCase(full)
	if err != nil {
		t.Fatal(err)
	}
	if string(back.MarshalMsg(nil)) != string(full) {
		t.Fatalf("a full case's round trip differs: %d bytes, then %d", len(full), len(back.MarshalMsg(nil)))
	}
	if _, err := lifecycle.UnmarshalCase([]byte{0x80}); err == nil {
		t.Fatal("an empty map is no case")
	}
}

// typicalCase is the heap a case takes in a typical key's life (README,
// Scale): a Health notice naming a key and its user opens two cases, the
// key's and the user's, with a wait for a quarantine.
const typicalCase = 1100

// Watch_Max_Keys 1,000,000 filled with typical cases stays within
// typicalCase bytes a case, indexes included.
func TestMillionCasesMemory(t *testing.T) {
	n := 1000000
	if testing.Short() {
		n = 100000
		t.Log("-short: 100,000 cases instead of 1,000,000")
	}
	o := defaults()
	o.MaxKeys = n
	e := lifecycle.New(o)
	per := heapPer(n, func() {
		for i := range n / 2 {
			at := t0.Add(time.Duration(i) * time.Millisecond)
			ev := notice(fmt.Sprintf("AKIA%016d", i), fmt.Sprintf("user-%07d", i), at)
			e.Observe(detector.Observe(ev, at), at)
		}
	})
	t.Logf("%d cases: %.0f bytes of heap each", n, per)
	if e.Len() != n || e.Watch().Len() != n { // the keys, and the users watched call by call
		t.Fatalf("%d cases, %d watched", e.Len(), e.Watch().Len())
	}
	if per > typicalCase {
		t.Fatalf("%.0f bytes a case, more than the %d the README says", per, typicalCase)
	}
}

// Watch_Max_Keys filled with cases at every bound (every string as long
// as an event may carry it, every list full: waits, status changes, early
// calls, groups with their windows, exposed keys, quarantines, callers)
// stays within lifecycle.MaxCaseBytes a case, the documented bound whatever
// the records hold (README, Scale).
func TestHostileCasesMemory(t *testing.T) {
	const n = 2000
	o := defaults()
	o.MaxKeys = n
	e := lifecycle.New(o)
	per := heapPer(n, func() {
		cases := make([]*lifecycle.Case, n)
		for i := range cases {
			cases[i] = hostileCase(i)
		}
		e.Load(cases, t0.UnixNano(), t0)
	})
	t.Logf("%d cases at every bound: %.0f bytes of heap each (bound %d)", n, per, lifecycle.MaxCaseBytes)
	if e.Len() != n {
		t.Fatalf("%d cases", e.Len())
	}
	if per > lifecycle.MaxCaseBytes {
		t.Fatalf("%.0f bytes a case, more than the %d the README says", per, lifecycle.MaxCaseBytes)
	}
}

// heapPer is the heap that fill leaves live, in bytes per case of n.
func heapPer(n int, fill func()) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fill()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// hostileCase is a case with every field as long, and every list as full,
// as the engine lets them be.
func hostileCase(i int) *lifecycle.Case {
	pad := func(prefix string, n int) string {
		s := fmt.Sprintf("%s%d-", prefix, i)
		return s + strings.Repeat("x", max(0, n-len(s)))
	}
	ref := func(j int) lifecycle.Ref {
		return lifecycle.Ref{At: t0.UnixNano() + int64(j), ID: pad(fmt.Sprint("id", j), cloudtrail.MaxEventID), Name: pad("name", cloudtrail.MaxEventName),
			Source: pad("src", cloudtrail.MaxEventSource), Region: pad("reg", cloudtrail.MaxRegion), SourceIP: pad("ip", 64), UserAgent: pad("ua", 160),
			ActorType: pad("type", 64), ActorARN: pad("arn", 160), ActorUser: pad("user", cloudtrail.MaxUserName),
			ActorKey: pad("AKIA", cloudtrail.MaxAccessKeyID), ErrorCode: pad("err", 64)}
	}
	c := &lifecycle.Case{User: pad("user", cloudtrail.MaxUserName), Account: pad("acct", cloudtrail.MaxAccountID), ExposedURL: pad("https://", 512),
		Strong: true, FirstSeen: t0.UnixNano(), LastSeen: t0.UnixNano(), KeyKnownAt: t0.UnixNano(), Groups: map[string]*lifecycle.Group{}}
	if i%2 == 0 {
		c.Key = pad("AKIA", cloudtrail.MaxAccessKeyID)
	}
	for j := range lifecycle.MaxExposedKeys {
		c.ExposedKeys = append(c.ExposedKeys, pad(fmt.Sprint("AKIA", j), cloudtrail.MaxAccessKeyID))
		c.Quarantines = append(c.Quarantines, int64(j))
	}
	for j := range lifecycle.MaxCallers {
		k := lifecycle.Caller{Key: pad(fmt.Sprint("AKIA", j), cloudtrail.MaxAccessKeyID)}
		for m := range lifecycle.MaxCallTimes {
			k.Times = append(k.Times, int64(m))
		}
		c.Callers = append(c.Callers, k)
	}
	for j := range lifecycle.MaxWaits {
		c.Waits = append(c.Waits, &lifecycle.Wait{Ref: ref(j)})
	}
	for j := range lifecycle.MaxStatus {
		c.Status = append(c.Status, &lifecycle.Status{Ref: ref(j), Quoted: []string{pad("q", cloudtrail.MaxEventID)}})
	}
	for j := range lifecycle.MaxEarly {
		c.Early = append(c.Early, lifecycle.Early{Ref: ref(j), Status: true, Key: pad("AKIA", cloudtrail.MaxAccessKeyID)})
	}
	for j := range lifecycle.MaxGroups {
		g := &lifecycle.Group{Since: 1, Total: 2}
		for w := range lifecycle.WindowsKept {
			g.Alerted = append(g.Alerted, lifecycle.Window{Start: int64(w), First: uint64(i*1000 + j*10 + w)})
		}
		c.Groups[cloudtrail.Digest([]byte(fmt.Sprint(i, j)))] = g
	}
	return c
}

// denied is a call by key, denied by a quarantine policy.
func denied(key string, at time.Time) *cloudtrail.Event {
	ev := call(key, "forged-"+key, "iam.amazonaws.com", "CreateAccessKey", "AccessDenied", "denied-"+key+at.Format(time.RFC3339Nano), at)
	ev.ErrorMessage = "User: arn:aws:iam::111122223333:user/x is not authorized to perform: iam:CreateAccessKey with an explicit deny in an identity-based policy: arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"
	return ev
}

// A flood of forged denied calls naming 100,000 distinct keys: the key
// watched since its Health notice stays watched (weak cases have their
// share of Watch_Max_Keys, and past 20 new keys an account's window is
// folded: its keys are not watched), its later use alerts, and the flood
// gives one alert per account and window with its count.
func TestWeakCasesNeverEvictStrong(t *testing.T) {
	o := defaults()
	o.MaxKeys = 1000
	e := lifecycle.New(o)
	observe(e, notice("AKIAEXAMPLEEXPOSED01", "ci-deployer", t0), t0)
	counts := map[string]int{}
	var flood []detect.Finding
	for i := range 100000 {
		at := t0.Add(time.Minute + time.Duration(i)*10*time.Millisecond)
		for _, f := range observe(e, denied(fmt.Sprintf("AKIAFORGED%010d", i), at), at) {
			counts[f.Rule.ID]++
			if f.Match.Flood {
				flood = append(flood, f)
			}
		}
	}
	at := t0.Add(3 * time.Hour)
	for _, f := range e.Due(at) {
		counts[f.Rule.ID]++
		if f.Match.Flood {
			flood = append(flood, f)
		}
	}
	if !e.Watch().Key([]byte("AKIAEXAMPLEEXPOSED01")) {
		t.Fatal("the flood pushed the exposed key off the watch list")
	}
	only(t, observe(e, call("AKIAEXAMPLEEXPOSED01", "ci-deployer", "sts.amazonaws.com", "GetCallerIdentity", "", "gci-after", at), at), rules.QuarantinedKeyUsed)
	if e.Len() > o.MaxKeys || counts[rules.QuarantineDeniedCall] > lifecycle.FloodKeys+2 || len(flood) != 1 || flood[0].Match.Use.Calls != 100000-lifecycle.FloodKeys {
		t.Fatalf("%d cases, alerts %v, flood alerts %d (%+v)", e.Len(), counts, len(flood), flood)
	}
	t.Logf("100,000 forged denied calls: %v; the flood alert: %s", counts, flood[0].Rule.Title(flood[0].Event, flood[0].Match))
}

// The names of the users watched without a key are what the prefilter
// looks for in an AccessKey call: each name once whatever its accounts,
// gone with its last case, and none past detect.MaxKeylessNames (the
// prefilter then takes every such call).
func TestKeylessNames(t *testing.T) {
	o := defaults()
	o.WatchTTL = time.Hour
	e := lifecycle.New(o)
	at := t0.UnixNano()
	e.Load([]*lifecycle.Case{{User: "ci-deployer", Account: "111122223333", FirstSeen: at},
		{User: "ci-deployer", Account: "444455556666", FirstSeen: at}, {User: "build", Account: "111122223333", FirstSeen: at}}, at, t0)
	names, ok := e.Watch().KeylessNames()
	got := []string{}
	for _, n := range names {
		got = append(got, string(n))
	}
	if slices.Sort(got); !ok || !slices.Equal(got, []string{"build", "ci-deployer"}) {
		t.Fatalf("names %q (%v)", got, ok)
	}
	e.Due(t0.Add(2 * time.Hour))
	if names, ok := e.Watch().KeylessNames(); !ok || len(names) != 0 || e.Len() != 0 {
		t.Fatalf("after Watch_TTL: %q (%v), %d cases", names, ok, e.Len())
	}
	var many []*lifecycle.Case
	for i := range detect.MaxKeylessNames + 1 {
		many = append(many, &lifecycle.Case{User: fmt.Sprintf("user%d", i), Account: "111122223333", FirstSeen: at})
	}
	e = lifecycle.New(o)
	e.Load(many, at, t0)
	if _, ok := e.Watch().KeylessNames(); ok {
		t.Fatalf("%d names listed", len(many))
	}
}
