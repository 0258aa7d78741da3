package ship_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/tlstest"
)

// Standard input, over TLS with a client certificate and the shared key
// (from a file): every event once, source_file "-". A CA that does not
// sign the receiver's certificate fails the run, and neither the key nor
// the credentials reach the log.
func TestShipStdinOverTLS(t *testing.T) {
	pki := tlstest.New(t)
	recv := forwardrecv.Start(t, forwardrecv.Options{TLS: pki.ServerConfig(t, true), SharedKey: sharedKey})
	keyFile := filepath.Join(t.TempDir(), "shared_key")
	write(t, keyFile, []byte(sharedKey+"\n"))
	_, data := logFile("111122223333", "us-east-1", time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC), "stdin", 25)
	run := func(ca string) (string, int) {
		cmd := exec.Command(bin(t), "ship", "--forward", "tcp://"+recv.Addr(), "--tls", "--tls-ca-file", ca,
			"--tls-crt-file", pki.ClientCrt, "--tls-key-file", pki.ClientKey, "--shared-key-file", keyFile, "--ack-timeout", "2s", "-")
		cmd.Env = append(os.Environ(), awsEnv()...)
		cmd.Stdin = bytes.NewReader(data)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := run(pki.CAFile)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	got := ids(recv.Entries())
	for i := range 25 {
		if id := fmt.Sprintf("stdin-%d", i); got[id] != 1 {
			t.Errorf("%s arrived %d times", id, got[id])
		}
	}
	if f := recv.Entries()[0].Record["source_file"]; f != "-" {
		t.Errorf("source_file %v", f)
	}
	checkNoSecrets(t, out)
	other := tlstest.New(t)
	cmd := exec.Command(bin(t), "ship", "--forward", "tcp://"+recv.Addr(), "--tls", "--tls-ca-file", other.CAFile,
		"--shared-key-file", keyFile, "--ack-timeout", "1s", "--shutdown-timeout", "2s", "-")
	cmd.Env = append(os.Environ(), awsEnv()...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Start()
	// It retries without end (nothing is dropped); stop it.
	time.Sleep(2 * time.Second)
	cmd.Process.Signal(sigterm)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(stderr.String(), "certificate") {
		t.Errorf("wrong CA: exit %d\n%s", code, stderr.String())
	}
	checkNoSecrets(t, stderr.String())
}

var peakRe = regexp.MustCompile(`peak memory ([\d.]+) MB \(VmHWM\)`)

// Memory does not grow with the object: a log file of 80 MB of JSON
// text (60,000 events) is shipped with a peak resident size far below
// it (the README's bound: the pool of batches, the readers' buffers and
// the runtime).
func TestShipMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an 80 MB file")
	}
	dir := t.TempDir()
	var evs []any
	for i := range 60000 {
		e := event(fmt.Sprintf("m-%d", i), time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC), "111122223333")
		e["requestParameters"] = map[string]any{"filler": strings.Repeat("x", 600)}
		evs = append(evs, e)
	}
	text := archive.Records(evs)
	write(t, filepath.Join(dir, "big.json.gz"), archive.Gzip(text))
	recv := forwardrecv.Start(t, forwardrecv.Options{Network: "unix", Discard: true})
	out, code := shipOnce(t, nil, "--forward", "unix://"+recv.Addr(), dir)
	if code != 0 || recv.Count() != 60000 {
		t.Fatalf("exit %d, %d records\n%s", code, recv.Count(), out)
	}
	m := peakRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no peak memory:\n%s", out)
	}
	peak, _ := strconv.ParseFloat(m[1], 64)
	if peak > 60 {
		t.Errorf("peak %.1f MB shipping %d MB of text", peak, len(text)>>20)
	}
	t.Logf("peak %.1f MB for %d MB of text", peak, len(text)>>20)
}

// A bad flag or source: exit 2 and one line that names it.
func TestShipBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--forward", "http://x", "."}, "--forward"},
		{[]string{"--workers", "0", "."}, "--workers"},
		{[]string{"--follow", "."}, "--follow"},
		{[]string{"--follow", "s3://b/p"}, "--state"},
		{[]string{"--account", "12", "."}, "--account"},
		{[]string{"--account", "111122223333", "sqs://https://sqs.us-east-1.amazonaws.com/1/q"}, "one queue per shard"},
		{[]string{"--since", "yesterday", "."}, "--since"},
		{[]string{"--tls", "--forward", "unix:///x", "."}, "--tls"},
		{[]string{"--shared-key-file", "/nonexistent", "."}, "--shared-key-file"},
		{[]string{"sqs://"}, "not a queue URL"},
		{[]string{}, "one SOURCE"},
	} {
		out, code := shipOnce(t, nil, c.args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 2 || !strings.Contains(out, c.want) || len(lines) != 1 {
			t.Errorf("%q: exit %d, want one line naming %s:\n%s", c.args, code, c.want, out)
		}
	}
}
