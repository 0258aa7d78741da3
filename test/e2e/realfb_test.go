package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbout"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// fluentBits are the real Fluent Bit binaries to check: CTQ_FLUENT_BIT
// (paths separated by spaces), else the fluent-bit on the PATH.
func fluentBits(t *testing.T) []string {
	if env := strings.Fields(os.Getenv("CTQ_FLUENT_BIT")); len(env) > 0 {
		return env
	}
	if p, err := exec.LookPath("fluent-bit"); err == nil {
		return []string{p}
	}
	t.Skip("no Fluent Bit (CTQ_FLUENT_BIT or fluent-bit on the PATH): CI has none, the harness stands in for it elsewhere")
	return nil
}

// The shipped conf/fluent-bit.yaml in a real Fluent Bit, as a user runs
// it: its paths moved into a temporary directory, and two outputs added
// on the alert tag to watch what comes back through in_forward (a file,
// and the counter, whose stdout format changed in 5.0). Then a restart
// over the same input with one more event: the tail DB and State_Dir keep
// the first run's alerts from coming again, and a Health notice in an
// SNS envelope alerts (and, being old, is found not quarantined).
func TestShippedConfigInRealFluentBit(t *testing.T) {
	so, _ := harness.Build(t)
	for _, fb := range fluentBits(t) {
		t.Run(filepath.Base(fb), func(t *testing.T) {
			dir := t.TempDir()
			conf := shippedConfig(t, dir, so)
			input := filepath.Join(dir, "cloudtrail", "sample.json")
			sample, err := os.ReadFile(paths.Repo("conf", "sample", "cloudtrail.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(input, sample, 0o644); err != nil {
				t.Fatal(err)
			}
			alerts := filepath.Join(dir, "alerts.jsonl")

			counted, stderr := runFluentBit(t, fb, conf, alerts, 9)
			if counted != 9 || !strings.Contains(stderr, "] delivered 9 alert(s): ") {
				t.Fatalf("first run: the counter saw %d alerts, want 9\n%s", counted, stderr)
			}
			lines := readAlertLines(t, alerts)
			for _, a := range lines {
				if len(a.Response.Commands) == 0 || !strings.HasPrefix(a.Rule.Runbook, "https://") {
					t.Errorf("%s: commands %q, runbook %q", a.Rule.ID, a.Response.Commands, a.Rule.Runbook)
				}
			}

			// Two more records in the same file, a quarantine and an AWS Health
			// notice in an SNS envelope; Fluent Bit restarts.
			ev := quarantineApplied(t)
			ev["eventID"] = "c0ffee00-0000-4000-8000-00000000f1b1"
			sns := corpus.Fixture(t, "aws.health.credentials_exposed", "positive", "sns_http_notification")
			f, err := os.OpenFile(input, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(append(append(value.ToJSON(ev), '\n'), append(value.ToJSON(sns), '\n')...))
			f.Close()
			// The notice is older than the stream's event time by more than
			// Quarantine_Grace and Event_Delay, and no quarantine of its user
			// came: it is also reported not quarantined, at once.
			counted, stderr = runFluentBit(t, fb, conf, alerts, 12)
			lines = readAlertLines(t, alerts)
			if counted != 3 || len(lines) != 12 || lines[9].EventID != ev["eventID"] ||
				lines[10].EventID != "5d1e2f3a-0000-4000-8000-000000000024" || lines[10].Shape != "health" ||
				lines[11].Rule.ID != "aws.iam.exposed_not_quarantined" || lines[11].Key.ID != "AKIAEXAMPLESNSHTTP01" {
				var last []string
				for _, a := range lines[min(9, len(lines)):] {
					last = append(last, fmt.Sprintf("%s %s %s key=%s", a.Rule.ID, a.EventID, a.Shape, a.Key.ID))
				}
				t.Fatalf("after the restart: the counter saw %d alerts, the file holds %d (want 3 and 12: the quarantine, the notice, not quarantined): %q\n%s", counted, len(lines), last, stderr)
			}
		})
	}
}

// shippedConfig writes conf/fluent-bit.yaml into dir with its paths
// there, plus the two watching outputs, and returns its path.
func shippedConfig(t *testing.T, dir, so string) string {
	b, err := os.ReadFile(paths.Repo("conf", "fluent-bit.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"cloudtrail", "state"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	text := strings.NewReplacer(
		"/fluent-bit/plugins/out_cloudtrail_quarantine.so", so,
		"/var/log/cloudtrail/", filepath.Join(dir, "cloudtrail")+"/",
		"/var/lib/fluent-bit/", filepath.Join(dir, "state")+"/",
		"/var/run/fluent-bit/alerts.sock", filepath.Join(dir, "alerts.sock"),
		"parsers_file: parsers.conf", "parsers_file: "+paths.Repo("conf", "parsers.conf"),
	).Replace(string(b))
	if !strings.HasSuffix(strings.TrimSpace(text), "tls: on") {
		t.Fatalf("conf/fluent-bit.yaml no longer ends with its outputs: the watching outputs cannot be appended")
	}
	text += "\n    - name: counter\n      match: aws.cloudtrail.quarantine\n" +
		"    - name: file\n      match: aws.cloudtrail.quarantine\n      path: " + dir + "\n      file: alerts.jsonl\n      format: plain\n"
	path := filepath.Join(dir, "fluent-bit.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runFluentBit runs fb in the foreground until the file output holds
// want alerts, stops it as a service manager would (SIGTERM), and returns
// what the counter output counted (it prints on stdout, buffered until
// exit) and Fluent Bit's log.
func runFluentBit(t *testing.T, fb, conf, alerts string, want int) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, fb, "-c", conf)
	cmd.Env = append(os.Environ(), "SPLUNK_HEC_TOKEN=test-token", "ES_USER=elastic", "ES_PASSWORD=test-password")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(60 * time.Second); len(readAlertLines(t, alerts)) < want; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%d of %d alerts arrived\n%s", len(readAlertLines(t, alerts)), want, stderr.String())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s exited with %v\n%s", fb, err, stderr.String())
	}
	n, _ := fbout.Counted(stdout.String())
	return n, stderr.String()
}

func readAlertLines(t *testing.T, path string) []alert {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []alert
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var a alert
		if line != "" && json.Unmarshal([]byte(line), &a) == nil {
			out = append(out, a)
		}
	}
	return out
}
