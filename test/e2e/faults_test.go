package e2e

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/oldspool"

	bolt "go.etcd.io/bbolt"

	alertfmt "github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/state"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/tlstest"
)

func chattr(t *testing.T, flag, path string) {
	t.Helper()
	if out, err := exec.Command("chattr", flag, path).CombinedOutput(); err != nil {
		t.Fatalf("chattr %s %s (needs root on ext4, xfs or tmpfs): %v %s", flag, path, err, out)
	}
}

// A store that is truncated, zero-filled, random bytes or of another
// layout: Init moves it aside with one error line and the instance runs on
// a fresh one; the alert of the chunk arrives.
func TestDamagedStoreIsMovedAside(t *testing.T) {
	good := t.TempDir()
	flushes, _ := quarantines(t, "good", 200, 50)
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(1, good, "Forward_Timeout", "100ms")}, Flushes: flushes, Quiet: true})
	content, err := os.ReadFile(filepath.Join(good, state.FileName))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exit %d: %v\n%s", res.ExitCode, err, tail(res.Stderr))
	}
	random := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(7, 7))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	// A store of ours that says it is of a layout this version does not
	// read (a newer one, after a downgrade).
	other := filepath.Join(t.TempDir(), "other.db")
	os.WriteFile(other, content, 0o600)
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("layout"), binary.BigEndian.AppendUint64(nil, 99))
	})
	db.Close()
	otherLayout, _ := os.ReadFile(other)
	for name, bad := range map[string][]byte{
		"truncated":      content[:len(content)/3],
		"zero-filled":    make([]byte, len(content)),
		"random bytes":   random,
		"another layout": otherLayout,
	} {
		t.Run(name, func(t *testing.T) {
			srv := forwardrecv.Start(t, forwardrecv.Options{})
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, state.FileName), bad, 0o600)
			res := harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(srv.Port(), dir)},
				Flushes: []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}}})
			var errs []string
			for _, l := range strings.Split(res.Stderr, "\n") {
				if strings.Contains(l, "[error]") {
					errs = append(errs, l)
				}
			}
			if res.ExitCode != 0 || len(errs) != 1 || !strings.Contains(errs[0], "was unreadable") || !strings.Contains(errs[0], "moved it to "+filepath.Join(dir, state.FileName)+".bad-") {
				t.Fatalf("exit %d, error lines %q\n%s", res.ExitCode, errs, tail(res.Stderr))
			}
			srv.WaitEntries(t, 1, 5*time.Second)
			aside, _ := filepath.Glob(filepath.Join(dir, state.FileName+".bad-*"))
			if len(aside) != 1 {
				t.Fatalf("moved aside: %v", aside)
			}
		})
	}
}

// A State_Dir nothing can be written into fails Init with one line naming
// the key: there is nowhere to keep alerts.
func TestReadOnlyStateDir(t *testing.T) {
	dir := t.TempDir()
	chattr(t, "+i", dir)
	defer exec.Command("chattr", "-i", dir).Run()
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(1, dir)}})
	if res.ExitCode != 1 || !strings.Contains(res.Stderr, "invalid configuration: State_Dir: open "+filepath.Join(dir, state.FileName)+": operation not permitted") {
		t.Fatalf("exit %d\n%s", res.ExitCode, tail(res.Stderr))
	}
}

// The disk refuses writes in the middle of a stream (the store file made
// immutable): each flush that cannot store its alerts asks for a retry,
// once per attempt Fluent Bit makes, and the sender backs off instead of
// looping; once the disk takes writes again, a run over the same input
// delivers every alert.
func TestStoreWriteErrorMidStream(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{NoAck: true})
	dir := t.TempDir()
	flushes, want := quarantines(t, "wfault", 200, 20)
	db := filepath.Join(dir, state.FileName)
	p := harness.Start(t, harness.Options{Instances: [][]harness.KV{storeProps(srv.Port(), dir, "Forward_Timeout", "100ms")},
		Flushes: flushes, PauseMS: 100, Retries: 2})
	defer exec.Command("chattr", "-i", db).Run()
	for _, err := os.Stat(db); err != nil; _, err = os.Stat(db) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(250 * time.Millisecond) // a few flushes stored
	chattr(t, "+i", db)
	res := p.Wait()
	chattr(t, "-i", db)
	attempts := map[int]int{}
	for _, a := range res.Attempts {
		attempts[a.Attempt]++
	}
	if !strings.Contains(res.Stderr, "could not store 20 alert(s), asking Fluent Bit to retry the chunk") || !strings.Contains(res.Stderr, "operation not permitted") {
		t.Fatalf("no retry for the store's write error\n%s", tail(res.Stderr))
	}
	if len(res.Attempts) > len(flushes)*3 || attempts[4] != 0 {
		t.Fatalf("%d flush calls for %d chunks with a retry limit of 2", len(res.Attempts), len(flushes))
	}
	// The receiver never acked: over the whole run the sender tried a
	// bounded number of times, not in a loop.
	if m := srv.Messages(); m > 40 {
		t.Fatalf("%d delivery attempts in %d ms", m, res.Summary["elapsed_ns"]/1e6)
	}

	good := forwardrecv.Start(t, forwardrecv.Options{})
	harness.Run(t, harness.Options{Instances: [][]harness.KV{storeProps(good.Port(), dir)}, Flushes: flushes, Quiet: true})
	waitComplete(t, want, func() map[string]int { return arrivals(good.Entries()) })
}

// A Spool_Dir of the earlier format with undelivered alerts (stored as the
// forward sink's msgpack, and as the file sink's JSON): after the upgrade
// they are delivered, in order, and the old files are gone.
func TestUpgradeDeliversTheOldSpool(t *testing.T) {
	dir := t.TempDir()
	det := detect.New(detect.Options{})
	var log []byte
	var want []string
	for i, e := range fixtures(t, "aws.iam.quarantine_applied", "positive")[:4] {
		obs, _ := det.Scan(chunkOf(e), nil, nil)
		findings := detect.Findings(obs)
		a := alertfmt.New(findings[0], true)
		if i%2 == 0 {
			log = append(log, oldspool.Record(a.Key, nil, a.AppendMsgpack(nil, alertfmt.Native), a.Time)...)
		} else {
			log = append(log, oldspool.Record(a.Key, a.AppendJSON(nil, alertfmt.Native), nil, a.Time)...)
		}
		want = append(want, a.EventID)
	}
	os.WriteFile(filepath.Join(dir, "alerts.spool"), log, 0o600)
	os.WriteFile(filepath.Join(dir, "delivered.offset"), make([]byte, 8), 0o600)
	srv := forwardrecv.Start(t, forwardrecv.Options{})
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(srv.Port()), "Spool_Dir", dir)}})
	if !strings.Contains(res.Stderr, "took over 4 undelivered alert(s) from the spool of an earlier version") {
		t.Fatalf("exit %d\n%s", res.ExitCode, tail(res.Stderr))
	}
	if got := eventIDs(srv.WaitEntries(t, 4, 5*time.Second)); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "alerts.spool")); err == nil {
		t.Fatal("the old spool is still there")
	}
}

// Every secret-bearing key is set and every error path taken (a refused
// connection, a TLS failure, 4xx and 5xx answers, one of them echoing the
// request's headers back): no secret appears in anything the plugin
// writes.
func TestSecretsNeverLogged(t *testing.T) {
	secrets := []string{"u-alice", "url-pw-31337", "c2VjcmV0LWFwaS1rZXk9", "header-secret-value", "basic-pw-8080", "bearer-tok-4242", "hec-tok-1234", "shared-key-9999"}
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		r.Header.Write(w) // a proxy that echoes what it got
	}))
	defer echo.Close()
	fail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer fail.Close()
	plain := forwardrecv.Start(t, forwardrecv.Options{}) // TLS spoken to it fails
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := ln.Addr().String()
	ln.Close()
	ca := tlstest.New(t)
	withUser := func(base string) string { return strings.Replace(base, "http://", "http://u-alice:url-pw-31337@", 1) }
	headers := "Authorization: ApiKey c2VjcmV0LWFwaS1rZXk9; X-Secret: header-secret-value"
	httpKeys := func(url string) []harness.KV {
		return kv("Alert_Output", "http", "HTTP_URL", url, "HTTP_Headers", headers, "HTTP_Passwd", "basic-pw-8080", "HTTP_User", "bob",
			"HTTP_Bearer_Token", "bearer-tok-4242", "HTTP_Splunk_Token", "hec-tok-1234", "Forward_Shared_Key", "shared-key-9999", "HTTP_Timeout", "500ms")
	}
	_, refusedPort, _ := net.SplitHostPort(refused)
	cases := map[string][]harness.KV{
		"http refused":   httpKeys(withUser("http://" + refused + "/hook")),
		"http 401 echo":  httpKeys(withUser(echo.URL + "/hook")),
		"http 503":       httpKeys(withUser(fail.URL + "/services/collector/event")),
		"https to plain": httpKeys(strings.Replace(withUser(echo.URL), "http://", "https://", 1)),
		"forward refused": kv("Alert_Output", "forward", "Forward_Port", refusedPort, "Forward_Shared_Key", "shared-key-9999",
			"Forward_Timeout", "300ms", "HTTP_URL", withUser("http://x/"), "HTTP_Headers", headers, "HTTP_Passwd", "basic-pw-8080"),
		"forward tls to plain": kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(plain.Port()), "Forward_TLS", "on",
			"Forward_TLS_CA_File", ca.CAFile, "Forward_Shared_Key", "shared-key-9999", "Forward_Timeout", "300ms",
			"HTTP_URL", withUser("http://x/"), "HTTP_Headers", headers),
	}
	for name, props := range cases {
		t.Run(name, func(t *testing.T) {
			res := harness.Run(t, harness.Options{Instances: [][]harness.KV{props}, Flushes: []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}}, Retries: 1})
			if !strings.Contains(res.Stderr, "asking Fluent Bit to retry") {
				t.Fatalf("the error path was not taken:\n%s", tail(res.Stderr))
			}
			for _, s := range secrets {
				if strings.Contains(res.Stderr, s) || strings.Contains(res.Stdout, s) {
					t.Errorf("%q appears in the output:\n%s", s, res.Stderr)
				}
			}
		})
	}
}
