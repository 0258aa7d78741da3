package detect_test

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

// watch is a watch list for tests.
type watch struct {
	keys  map[string]bool
	users map[string]bool // account + "/" + name
}

func (w watch) Empty() bool        { return len(w.keys)+len(w.users) == 0 }
func (w watch) Key(id []byte) bool { return w.keys[string(id)] }
func (w watch) KeylessUsers() bool { return len(w.users) > 0 }
func (w watch) Version() uint64    { return uint64(len(w.keys) + len(w.users)) }
func (w watch) KeylessNames() ([][]byte, bool) {
	if len(w.users) > detect.MaxKeylessNames {
		return nil, false // as the real watch list: too many to name, and nothing allocated
	}
	var names [][]byte
	for u := range w.users {
		names = append(names, []byte(u[strings.IndexByte(u, '/')+1:]))
	}
	return names, true
}
func (w watch) User(account, name []byte) bool {
	var buf [256]byte
	k := append(append(append(buf[:0], account...), '/'), name...)
	return w.users[string(k)] // no allocation, as the real watch list
}

func use(t testing.TB) map[string]any {
	e, err := value.FromJSON(mustRead(t, "events/ec2_describe_instances_by_key"))
	if err != nil {
		t.Fatal(err)
	}
	return e.(map[string]any)
}

func mustRead(t testing.TB, name string) []byte {
	t.Helper()
	return value.ToJSON(corpus.JSONFile(t, corpusPath(name)))
}

// A call with a watched key, or by a user watched without a key, is a
// candidate in every record shape; the same call with nothing watched, or
// with another key watched, is not.
func TestWatchMakesCandidates(t *testing.T) {
	ev := use(t)
	other := maps.Clone(ev)
	other["userIdentity"] = map[string]any{"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/someone", "accountId": "111122223333",
		"accessKeyId": "AKIAEXAMPLEUNRELATED", "userName": "someone"}
	js := string(value.ToJSON(ev))
	shapes := map[string]any{"event": ev, "log file": map[string]any{"Records": []any{other, ev}}, "json string": map[string]any{"log": js}}
	d := detect.New(detect.Options{EventKeys: []string{"log"}})
	for name, body := range shapes {
		c := fbchunk.AppendV2(nil, t0, nil, body)
		for wname, w := range map[string]detect.Watch{
			"key":          watch{keys: map[string]bool{"AKIAEXAMPLEEXPOSED01": true}},
			"keyless user": watch{keys: map[string]bool{"AKIAEXAMPLEOTHERKEY1": true}, users: map[string]bool{"111122223333/ci-deployer": true}},
		} {
			if _, st := d.Scan(c, w, nil); st.Candidates != 1 {
				t.Errorf("%s, %s watched: %d candidates", name, wname, st.Candidates)
			}
		}
		for wname, w := range map[string]detect.Watch{
			"nothing":     nil,
			"another key": watch{keys: map[string]bool{"AKIAEXAMPLEUNRELATE2": true}},
			"another user": watch{keys: map[string]bool{"AKIAEXAMPLEUNRELATE2": true},
				users: map[string]bool{"111122223333/nobody": true, "444455556666/ci-deployer": true}},
		} {
			if _, st := d.Scan(c, w, nil); st.Candidates != 0 {
				t.Errorf("%s, %s watched: %d candidates", name, wname, st.Candidates)
			}
		}
	}
	// Retirement calls: DeleteUser whatever is watched, AccessKey while a
	// user is watched without a key.
	del := corpus.JSONFile(t, corpusPath("events/iam_delete_user"))
	keyCall := corpus.JSONFile(t, corpusPath("events/iam_delete_access_key"))
	keyCall["requestParameters"] = map[string]any{"userName": "ci-deployer", "accessKeyId": "AKIAEXAMPLEUNRELATED"}
	for _, c := range []struct {
		body map[string]any
		w    detect.Watch
		want int
	}{
		{del, watch{keys: map[string]bool{"AKIAX": true}}, 1},
		{del, nil, 0},
		{keyCall, watch{keys: map[string]bool{"AKIAX": true}, users: map[string]bool{"111122223333/ci-deployer": true}}, 1},
		{keyCall, watch{keys: map[string]bool{"AKIAX": true}}, 0},
	} {
		if _, st := d.Scan(fbchunk.AppendV2(nil, t0, nil, c.body), c.w, nil); st.Candidates != c.want {
			t.Errorf("%s with %+v: %d candidates, want %d", c.body["eventName"], c.w, st.Candidates, c.want)
		}
	}
}

// With 1,000 keys watched (none of them in the chunk), a record that
// cannot be a candidate still costs no allocation.
func TestNoAllocationsWithAWatchList(t *testing.T) {
	w := watch{keys: map[string]bool{}, users: map[string]bool{}}
	for i := range 1000 {
		w.keys[fmtKey(i)] = true
		w.users["111122223333/watched-"+fmtKey(i)] = true
	}
	d := detect.New(detect.Options{EventKeys: []string{"log", "message"}})
	var clean []any
	for _, e := range corpus.Panther(t) {
		if _, st := d.Scan(fbchunk.AppendV2(nil, t0, nil, e), w, nil); st.Candidates == 0 {
			clean = append(clean, e)
		}
	}
	// With more users watched without a key than MaxKeylessNames, IAM
	// users' calls whose ARN the prefilter cannot see near their type, and
	// calls naming AccessKey, become candidates: they are decoded and the
	// engine decides.
	t.Logf("%d of 475 corpus events are no candidates with 1,000 keys and 1,000 key-less users watched", len(clean))
	if len(clean) < 400 {
		t.Fatalf("only %d of 475 corpus events are no candidates", len(clean))
	}
	c := fbchunk.FromValues(t0, clean)
	var wi detect.Watch = w // converted once, as the instance holds it
	if n := testing.AllocsPerRun(20, func() { d.Scan(c, wi, nil) }); n != 0 {
		t.Errorf("%v allocations per chunk", n)
	}
	// One user watched without a key: the walk looks for its name, from
	// passes built once for it.
	var one detect.Watch = namedWatch{watch{keys: w.keys, users: map[string]bool{"111122223333/ci-deployer": true}}, [][]byte{[]byte("ci-deployer")}}
	if n := testing.AllocsPerRun(20, func() { d.Scan(c, one, nil) }); n != 0 {
		t.Errorf("one user watched without a key: %v allocations per chunk", n)
	}
}

// namedWatch names its users without a key from a list made once, as the
// real watch list does.
type namedWatch struct {
	watch
	names [][]byte
}

func (w namedWatch) KeylessNames() ([][]byte, bool) { return w.names, true }

func fmtKey(i int) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := []byte("AKIAWATCHED000000000")
	for j := 19; i > 0; j-- {
		b[j] = digits[i%36]
		i /= 36
	}
	return string(b)
}

func corpusPath(name string) string { return "../test/fixtures/" + name + ".json" }

// What fn puts on the watch list during ScanEach counts for the records
// after it: in one chunk, a Health notice, a call with the key it names
// (in a record and inside a later log file), and a DeleteUser of its user.
// Scan, with nothing changing the list, does not see them.
func TestScanEachFollowsTheWatchList(t *testing.T) {
	notice := corpus.JSONFile(t, corpusPath("events/health_exposed"))
	used := use(t)
	del := corpus.JSONFile(t, corpusPath("events/iam_delete_user"))
	unrelated := corpus.Panther(t)[0]
	c := fbchunk.FromValues(t0, []any{unrelated, used, notice, unrelated, used,
		map[string]any{"Records": []any{unrelated, used}}, del})
	d := detect.New(detect.Options{})
	w := watch{keys: map[string]bool{}, users: map[string]bool{}}
	var names []string
	st := d.ScanEach(c, w, func(o detect.Observed) {
		names = append(names, o.Event.Name)
		if o.Event.Exposure != nil {
			for _, k := range o.Event.Exposure.Keys {
				w.keys[k] = true
			}
		}
	})
	want := []string{"AWS_RISK_CREDENTIALS_EXPOSED", "DescribeInstances", "CreateAccountResult", "DescribeInstances", "DeleteUser"}
	if !slices.Equal(names, want) || st.Candidates != 4 {
		t.Fatalf("observed %v in %d candidates, want %v in 4", names, st.Candidates, want)
	}
	fresh := watch{keys: map[string]bool{}, users: map[string]bool{}}
	obs, st := d.Scan(c, fresh, nil)
	if len(obs) != 1 || st.Candidates != 1 {
		t.Fatalf("Scan with a list nothing changes: %d events in %d candidates, want the notice alone", len(obs), st.Candidates)
	}
}

// Another user's ARN near a watched user's call that holds none (a
// failed console login's identity) hides nothing: one in the user agent
// the caller sent (another name, or its own in another account), one at
// the end of the record before; nor does another account in the record
// after. The identity's
// userName decides, with a list that can name its users and with one
// that cannot, in JSON and in a chunk (where a name of 32 bytes or more
// has a two-byte header). A user not watched stays no candidate.
func TestAnotherARNNearHidesNoCall(t *testing.T) {
	const account = "111122223333"
	alice := "arn:aws:iam::" + account + ":user/alice"
	d := detect.New(detect.Options{})
	for _, name := range []string{"ci-deployer", "ci-" + strings.Repeat("d", 47)} {
		// Few members, so the type is near the record's start as in
		// CloudTrail's order, whatever order the shape writes keys in.
		login := map[string]any{"eventVersion": "1.09", "eventName": "ConsoleLogin", "eventSource": "signin.amazonaws.com",
			"eventTime": "2026-11-20T09:02:11Z", "recipientAccountId": account, "responseElements": map[string]any{"ConsoleLogin": "Failure"},
			"userIdentity": map[string]any{"type": "IAMUser", "accountId": account, "accessKeyId": "", "userName": name}}
		inAgent, sameName := maps.Clone(login), maps.Clone(login)
		inAgent["userAgent"] = "Mozilla/5.0 " + alice
		// Its own name, in another account: the account decides too.
		sameName["userAgent"] = "Mozilla/5.0 arn:aws:iam::444455556666:user/" + name
		before := map[string]any{"eventName": "GetUser", "requestParameters": map[string]any{"userName": "alice"},
			"resources": []any{map[string]any{"ARN": alice}}}
		watched := watch{users: map[string]bool{account + "/" + name: true}}
		many := cannotSay{watch{users: map[string]bool{account + "/" + name: true}}}
		for i := range detect.MaxKeylessNames + 1 {
			many.users[fmt.Sprintf("%s/other-%d", account, i)] = true
		}
		// A record after it whose parameters name another account, nearer
		// than the identity's own when keys are sorted.
		after := map[string]any{"eventName": "X", "requestParameters": map[string]any{"accountId": "999999999999"}}
		shapes := map[string]any{"agent": inAgent, "agent, its name elsewhere": sameName, "record before": map[string]any{"Records": []any{before, login}},
			"agent, an account after": map[string]any{"Records": []any{inAgent, after}}}
		for shape, body := range shapes {
			text, chunk := value.ToJSON(body), fbchunk.AppendV2(nil, t0, nil, body)
			for _, b := range [][]byte{text, chunk} {
				if at := bytes.Index(b, []byte("IAMUser")); at < 0 || !bytes.Contains(b[max(0, at-400):min(len(b), at+400)], []byte(":user/")) {
					t.Fatalf("%s: no other user's ARN near the type: %q", shape, b)
				}
			}
			for wname, w := range map[string]detect.Watch{"the user": watched, "more users than it names": many} {
				if !detect.HasCandidate(text, w) {
					t.Errorf("%.12s, %s, %s watched: no candidate in the JSON", name, shape, wname)
				}
				if _, st := d.Scan(chunk, w, nil); st.Candidates == 0 {
					t.Errorf("%.12s, %s, %s watched: no candidate in the chunk", name, shape, wname)
				}
			}
			nobody := watch{keys: map[string]bool{"AKIAEXAMPLEUNRELATE2": true}, users: map[string]bool{account + "/nobody": true, "444455556666/" + name: true}}
			if _, st := d.Scan(fbchunk.AppendV2(nil, t0, nil, inAgent), nobody, nil); st.Candidates != 0 {
				t.Errorf("%.12s, %s: a candidate with other users watched", name, shape)
			}
		}
	}
}

// An identity's userName is read in every form a record may hold it:
// JSON, spaced or not, and msgpack strings and binaries, whose header
// can read as a name's byte (a length of 48 to 57 is a digit).
func TestUserNameAfter(t *testing.T) {
	name := "ci-" + strings.Repeat("d", 47) // 50 bytes: '2' as a length
	for form, b := range map[string]string{
		"json":           `"type":"IAMUser","userName":"` + name + `","x":1`,
		"spaced json":    `"type": "IAMUser", "userName": "` + name + `"}`,
		"msgpack fixstr": "\xa4type\xa7IAMUser\xa8userName\xab" + "ci-deployer" + "\xa1x",
		"msgpack str8":   "\xa4type\xa7IAMUser\xa8userName\xd9\x32" + name + "\xa1x",
		"msgpack bin8":   "\xa4type\xa7IAMUser\xa8userName\xc4\x32" + name + "\xa1x",
	} {
		want := name
		if form == "msgpack fixstr" {
			want = "ci-deployer"
		}
		if got := string(detect.UserNameAfter([]byte(b))); got != want {
			t.Errorf("%s: %q, want %q", form, got, want)
		}
	}
}
