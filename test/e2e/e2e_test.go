package e2e

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/tlstest"
)

func TestEveryShapeThroughThePlugin(t *testing.T) {
	ev := quarantineApplied(t)
	js := value.ToJSON(ev)
	noise := map[string]any{"eventName": "GetObject", "eventSource": "s3.amazonaws.com", "eventID": "n-1"}
	ecs := map[string]any{
		"@timestamp": "2026-11-20T08:15:42Z", "event.action": "DetachUserPolicy", "event.outcome": "success", "event.id": "ecs-1",
		"event.provider":                    "iam.amazonaws.com",
		"aws.cloudtrail.request_parameters": "{userName=ci-deployer, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}",
		"user.name":                         "alice", "cloud.account.id": "111122223333", "cloud.region": "us-east-1", "source.ip": "203.0.113.10",
	}
	bodies := []any{
		noise,
		ev,
		map[string]any{"Records": []any{noise, fixtures(t, "aws.iam.quarantine_attempt_failed", "positive")[0]}},
		map[string]any{"detail-type": "AWS API Call via CloudTrail", "detail": fixtures(t, "aws.iam.quarantine_removed", "positive")[0]},
		map[string]any{"log": string(js), "stream": "stdout"},
		map[string]any{"message": "not json at all, mentions AWSCompromisedKeyQuarantineV2"},
		ecs,
	}
	alerts, res := runStdout(t, nil, chunkOf(bodies...))
	want := []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_attempt_failed", "aws.iam.quarantine_removed", "aws.iam.quarantine_removed"}
	if got := ruleIDs(alerts); !slices.Equal(got, want) {
		t.Fatalf("rules %v, want %v\n%s", got, want, res.Stderr)
	}
	// The JSON-string copy of the first event is the same event: one alert.
	if shapes := []string{alerts[0].Shape, alerts[1].Shape, alerts[2].Shape, alerts[3].Shape}; !slices.Equal(shapes, []string{"event", "log_file", "eventbridge", "ecs"}) {
		t.Fatalf("shapes %v", shapes)
	}
	if !strings.Contains(res.Stderr, "] delivered 4 alert(s): aws.iam.quarantine_applied/") {
		t.Fatalf("no delivery logged:\n%s", res.Stderr)
	}
}

func TestRecordFormatsMarkersAndBadRecords(t *testing.T) {
	ev := quarantineApplied(t)
	var c []byte
	c = fbchunk.AppendGroupStart(c)
	c = fbchunk.AppendV2(c, t0, map[string]any{"otlp": map[string]any{}}, ev)
	c = fbchunk.AppendGroupEnd(c)
	c = msgp.AppendString(c, "garbage between records")
	c = fbchunk.AppendLegacy(c, int64(t0.Unix()), "body is not a map")
	failed := fixtures(t, "aws.iam.quarantine_attempt_failed", "positive")
	c = fbchunk.AppendLegacy(c, float64(t0.Unix())+0.25, failed[0])
	c = fbchunk.AppendLegacy(c, t0, failed[1])
	c = fbchunk.AppendLegacy(c, int64(t0.Unix()), failed[2])
	alerts, res := runStdout(t, nil, c)
	if got := ruleIDs(alerts); len(got) != 4 {
		t.Fatalf("want 4 alerts, got %v\n%s", got, res.Stderr)
	}
	if !regexp.MustCompile(`\[ warn\] \[output:cloudtrail_quarantine:cloudtrail_quarantine\.0\] skipped 2 bad records .*malformed=1 not_map=1`).MatchString(res.Stderr) {
		t.Fatalf("skipped records not reported:\n%s", res.Stderr)
	}
	if !strings.Contains(res.Stderr, "group_markers=2") {
		t.Fatalf("exit counters lack group markers:\n%s", res.Stderr)
	}
}

// The examples are the tests, through the real .so as well: each positive
// example alone in an instance of its own (the lifecycle folds repeats of
// one key's denied call, and copies of one Health notice, into one alert),
// the negatives together in one more.
func TestRuleExamplesThroughThePlugin(t *testing.T) {
	for _, r := range rules.Stateless() {
		rule := r.ID
		pos, neg := fixtures(t, rule, "positive"), fixtures(t, rule, "negative")
		var o harness.Options
		var wantIDs []string
		for i, e := range pos {
			// The event's id, an AWS Health envelope's, or that of the
			// notice an SNS envelope carries.
			(&cloudtrail.Resolver{}).Resolve(e, func(ev *cloudtrail.Event) { wantIDs = append(wantIDs, ev.ID) })
			o.Instances = append(o.Instances, nil)
			o.Flushes = append(o.Flushes, harness.Flush{Instance: i, Tag: tag, Data: chunkOf(e)})
		}
		var negBodies []any
		for _, e := range neg {
			negBodies = append(negBodies, e)
		}
		o.Instances = append(o.Instances, nil)
		o.Flushes = append(o.Flushes, harness.Flush{Instance: len(pos), Tag: tag, Data: chunkOf(negBodies...)})
		res := harness.Run(t, o)
		if res.ExitCode != 0 {
			t.Fatalf("%s: harness exit %d\n%s", rule, res.ExitCode, res.Stderr)
		}
		var gotIDs []string
		for _, a := range parseLines(t, res.Stdout) {
			if a.Rule.ID == rule {
				gotIDs = append(gotIDs, a.EventID)
			}
		}
		slices.Sort(gotIDs)
		slices.Sort(wantIDs)
		if !slices.Equal(gotIDs, wantIDs) {
			t.Errorf("%s: alerts for %v, want %v\n%s", rule, gotIDs, wantIDs, res.Stderr)
		}
	}
}

// False positives: every corpus event goes through the .so; exactly lines
// 182 and 225 alert.
func TestCorpusThroughThePlugin(t *testing.T) {
	events := corpus.Panther(t)
	// Several chunks, as Fluent Bit would cut them.
	var chunks [][]byte
	for i := 0; i < len(events); i += 100 {
		chunks = append(chunks, fbchunk.FromValues(t0, events[i:min(i+100, len(events))]))
	}
	alerts, res := runStdout(t, nil, chunks...)
	// Lines 225 and 226 share an eventID, so alerts are matched to lines by
	// their whole original event. (Delivery de-duplicates by eventID, which
	// could hide a false positive on 226; detect's own corpus test scans
	// every line alone and would catch it.)
	var lines []int
	for _, a := range alerts {
		for i, e := range events {
			if reflect.DeepEqual(normalize(t, e), a.Event) {
				lines = append(lines, i+1)
			}
		}
		if a.Rule.ID != "aws.iam.quarantine_applied" {
			t.Errorf("corpus fired %s", a.Rule.ID)
		}
	}
	if !slices.Equal(lines, []int{182, 225}) {
		t.Fatalf("alerting corpus lines %v, want [182 225]\n%s", lines, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "records=475 ") {
		t.Fatalf("the plugin did not see 475 records:\n%s", res.Stderr)
	}
}

func TestSampleStream(t *testing.T) {
	vals := corpus.Sample(t)
	alerts, _ := runStdout(t, nil, fbchunk.FromValues(t0, vals))
	// In one chunk: the key is quarantined, AWS Health names it, and its
	// uses, a denied call and its deletion come after.
	want := []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_attempt_failed", "aws.iam.quarantine_applied", "aws.iam.quarantine_removed",
		"aws.health.credentials_exposed", "aws.iam.quarantined_key_used", "aws.iam.quarantined_key_used", "aws.iam.quarantine_denied_call",
		"aws.iam.exposed_key_retired"}
	if got := ruleIDs(alerts); !slices.Equal(got, want) {
		t.Fatalf("sample alerts %v, want %v", got, want)
	}
}

func TestAlertSchema(t *testing.T) {
	alerts, _ := runStdout(t, nil, chunkOf(quarantineApplied(t)))
	if len(alerts) != 1 {
		t.Fatalf("got %d alerts", len(alerts))
	}
	a := alerts[0]
	if a.Rule.Severity != "high" || a.Rule.RiskScore != 73 || len(a.Rule.Equivalents) != 3 || a.AccountID != "111122223333" ||
		a.Target.Type != "user" || a.Target.Name != "ci-deployer" || a.Policy.Version != "V2" ||
		a.Policy.ARN != "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2" || a.Event["eventName"] != "AttachUserPolicy" {
		t.Fatalf("alert %+v", a)
	}
	if !strings.Contains(a.Title, "ci-deployer") || !strings.Contains(a.Title, "111122223333") {
		t.Fatalf("title %q", a.Title)
	}
}

// Two instances of the .so in one process, configured differently, each
// with its own context: one prints with the event, one writes a file
// without it.
func TestTwoInstancesFileAndStdout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.jsonl")
	c := chunkOf(quarantineApplied(t))
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{
			kv("Include_Event", "on"),
			kv("alert_output", "file", "FILE_PATH", path, "Include_Event", "off"),
		},
		Flushes: []harness.Flush{{Instance: 0, Tag: tag, Data: c}, {Instance: 1, Tag: tag, Data: c}},
	})
	if res.ExitCode != 0 {
		t.Fatalf("exit %d\n%s", res.ExitCode, res.Stderr)
	}
	out := parseLines(t, res.Stdout)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	file := parseLines(t, string(raw))
	if len(out) != 1 || len(file) != 1 || out[0].Event == nil || file[0].Event != nil {
		t.Fatalf("stdout %d alerts (event %v), file %d alerts (event %v)", len(out), out[0].Event != nil, len(file), file)
	}
	for _, inst := range []string{"cloudtrail_quarantine.0", "cloudtrail_quarantine.1"} {
		if !strings.Contains(res.Stderr, "[ info] [output:cloudtrail_quarantine:"+inst+"] effective configuration: Alert_Output=") {
			t.Fatalf("no effective configuration for %s:\n%s", inst, res.Stderr)
		}
	}
	if !strings.Contains(res.Stderr, `Alert_Output="file"`) || !strings.Contains(res.Stderr, "Include_Event=off") {
		t.Fatalf("effective configuration does not show instance 1's keys:\n%s", res.Stderr)
	}
}

// A chunk re-delivered by Fluent Bit, or one holding an event twice, does
// not alert twice.
func TestRedeliveredChunkDoesNotDuplicate(t *testing.T) {
	ev := quarantineApplied(t)
	c := chunkOf(ev, ev)
	alerts, res := runStdout(t, nil, c, c)
	if len(alerts) != 1 {
		t.Fatalf("want 1 alert, got %d\n%s", len(alerts), res.Stderr)
	}
	if !strings.Contains(res.Stderr, "duplicates_dropped=3") {
		t.Fatalf("duplicates not counted:\n%s", res.Stderr)
	}
}

func TestOwnAlertTagIsPassedOver(t *testing.T) {
	o := harness.Options{Instances: [][]harness.KV{nil}, Flushes: []harness.Flush{{Tag: "aws.cloudtrail.quarantine", Data: chunkOf(quarantineApplied(t))}}}
	res := harness.Run(t, o)
	if res.Stdout != "" || !strings.Contains(res.Stderr, "Match also matches Alert_Tag") {
		t.Fatalf("stdout %q\n%s", res.Stdout, res.Stderr)
	}
}

func TestBadConfigFailsInit(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		props []harness.KV
		want  string
	}{
		{kv("Alert_Output", "kafka"), `Alert_Output: "kafka" is not one of stdout, file, forward, http`},
		{kv("Include_Event", "perhaps"), `Include_Event: "perhaps" is not a boolean: use on/off, true/false or yes/no`},
		{kv("Forward_Port", "99999"), `Forward_Port: "99999" is not a whole number from 1 to 65535`},
		{kv("Alert_Output", "file"), "File_Path: required when Alert_Output is file"},
		{kv("Alert_Output", "file", "File_Path", "/nonexistent-dir/alerts.jsonl"), "File_Path: open /nonexistent-dir/alerts.jsonl: no such file or directory"},
		{kv("Forward_Timeout", "soon"), `Forward_Timeout: "soon" is not a positive duration such as 500ms, 10s or 10`},
		{kv("Event_Key", " , "), "Event_Key: needs at least one key"},
		{kv("Dedup_Cache_Size", "0"), `Dedup_Cache_Size: "0" is not a whole number from 1 to 10000000`},
		{kv("Stats_Interval", "-5s"), `Stats_Interval: "-5s" is not off or a positive duration such as 500ms, 10s or 10`},
		{kv("Forward_TLS", "sure"), `Forward_TLS: "sure" is not a boolean: use on/off, true/false or yes/no`},
		{kv("Forward_TLS_Verify", "2"), `Forward_TLS_Verify: "2" is not a boolean: use on/off, true/false or yes/no`},
		{kv("Alert_Output", "forward", "Forward_TLS", "on", "Forward_TLS_CA_File", "/nonexistent/ca.pem"), "Forward_TLS_CA_File: open /nonexistent/ca.pem: no such file or directory"},
		{kv("Forward_TLS_Key_File", "/etc/k.pem"), "Forward_TLS_Crt_File: needs Forward_TLS_Key_File, and the other way round"},
		{kv("Alert_Output", "forward", "Forward_TLS", "on", "Forward_TLS_Crt_File", "/nonexistent/c.pem", "Forward_TLS_Key_File", "/nonexistent/k.pem"), "Forward_TLS_Crt_File: open /nonexistent/c.pem: no such file or directory"},
		{kv("Spool_Max_Size", "lots"), `Spool_Max_Size: "lots" is not a size such as 512K, 100M or 1G`},
		{kv("Queue_Max_Size", "0"), `Queue_Max_Size: "0" is not a size such as 512K, 100M or 1G`},
		{kv("State_Dir", "/a", "Spool_Dir", "/b"), "State_Dir: set also as Spool_Dir, its old name, to another value: keep one"},
		{kv("Dedup_TTL", "forever"), `Dedup_TTL: "forever" is not a positive duration such as 500ms, 10s or 10`},
		{kv("Forward_Max_Batch_Size", "10"), "Forward_Max_Batch_Size: 10 is too small for one message: use at least 1K"},
		{kv("HTTP_Max_Batch_Size", "big"), `HTTP_Max_Batch_Size: "big" is not a size such as 512K, 100M or 1G`},
		{kv("Alert_Output", "http"), `HTTP_URL: "" is not an http:// or https:// URL (required when Alert_Output is http)`},
		{kv("HTTP_Format", "xml"), `HTTP_Format: "xml" is not one of json, ndjson, splunk_hec, es_bulk`},
		{kv("HTTP_Headers", "X-A: 1; broken"), `HTTP_Headers: pair 2 of 2 is not a "Name: value" pair (separate pairs with ;)`},
		{kv("HTTP_Timeout", "never"), `HTTP_Timeout: "never" is not a positive duration such as 500ms, 10s or 10`},
		{kv("Alert_Output", "http", "HTTP_URL", "https://x", "HTTP_TLS_CA_File", "/nonexistent/ca.pem"), "HTTP_TLS_CA_File: open /nonexistent/ca.pem: no such file or directory"},
		{kv("Alert_Format", "cef"), `Alert_Format: "cef" is not one of native, ecs, ocsf`},
		{kv("Metrics_Listen", "2021"), `Metrics_Listen: "2021" is not a host:port address such as 127.0.0.1:2021`},
		{kv("Metrics_Listen", busy.Addr().String()), "Metrics_Listen: listen tcp " + busy.Addr().String() + ": bind: address already in use"},
	}
	for _, c := range cases {
		res := harness.Run(t, harness.Options{Instances: [][]harness.KV{c.props}})
		if res.ExitCode != 1 {
			t.Errorf("%v: exit %d, want 1 (init failed)\n%s", c.props, res.ExitCode, res.Stderr)
		}
		var lines []string
		for _, l := range strings.Split(res.Stderr, "\n") {
			if strings.Contains(l, "[error]") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.HasSuffix(lines[0], "] invalid configuration: "+c.want) {
			t.Errorf("%v: error lines %q, want one ending %q", c.props, lines, c.want)
		}
	}
}

func TestForwardDelivery(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			o := forwardrecv.Options{Network: network}
			if network == "unix" {
				o.Address = filepath.Join(t.TempDir(), "in_forward.sock")
			}
			srv := forwardrecv.Start(t, o)
			props := kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(srv.Port()), "Alert_Tag", "sec.alerts")
			if network == "unix" {
				props = kv("Alert_Output", "forward", "Forward_Unix_Path", srv.Addr(), "Alert_Tag", "sec.alerts")
			}
			removed := fixtures(t, "aws.iam.quarantine_removed", "positive")
			res := harness.Run(t, harness.Options{
				Instances: [][]harness.KV{props},
				Flushes: []harness.Flush{
					{Tag: tag, Data: chunkOf(quarantineApplied(t))},
					{Tag: tag, Data: chunkOf(removed[0], removed[1])},
				},
			})
			if got := rcs(res); !slices.Equal(got, []int{1, 1}) {
				t.Fatalf("rcs %v\n%s", got, res.Stderr)
			}
			entries := srv.WaitEntries(t, 3, 5*time.Second)
			if len(entries) != 3 {
				t.Fatalf("receiver got %d entries", len(entries))
			}
			for _, e := range entries {
				if e.Tag != "sec.alerts" {
					t.Errorf("tag %q", e.Tag)
				}
				want, _ := time.Parse(time.RFC3339, e.Record["event_time"].(string))
				if !e.Time.Equal(want) {
					t.Errorf("record time %v, want the eventTime %v", e.Time, want)
				}
			}
			if id := entries[0].Record["rule"].(map[string]any)["id"]; id != "aws.iam.quarantine_applied" {
				t.Errorf("first alert rule %v", id)
			}
		})
	}
}

// Receiver drops the first message without an ack: the flush asks for a
// retry, the re-delivered chunk is sent again, and the receiver ends with
// each alert exactly once.
func TestForwardRetryDeliversOnce(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{DropFirst: 1})
	removed := fixtures(t, "aws.iam.quarantine_removed", "positive")
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(srv.Port()), "Forward_Timeout", "2s")},
		Flushes:   []harness.Flush{{Tag: tag, Data: chunkOf(removed[0], removed[1], removed[2])}},
		Retries:   3,
	})
	if got := rcs(res); !slices.Equal(got, []int{2, 1}) {
		t.Fatalf("rcs %v, want [2 1]\n%s", got, res.Stderr)
	}
	entries := srv.WaitEntries(t, 3, 5*time.Second)
	seen := map[string]int{}
	for _, e := range srv.Entries() {
		seen[e.Record["event_id"].(string)]++
	}
	if len(entries) != 3 || len(seen) != 3 {
		t.Fatalf("receiver holds %d entries for %d events: %v", len(entries), len(seen), seen)
	}
}

// Nothing listening and a receiver that never acks: the flush returns
// RETRY (never OK, never hangs), and the chunk is dropped only after the
// retry limit, as Fluent Bit would.
func TestForwardUndeliverableRetries(t *testing.T) {
	noAck := forwardrecv.Start(t, forwardrecv.Options{NoAck: true})
	closed := forwardrecv.Start(t, forwardrecv.Options{})
	deadPort := closed.Port()
	closed.Close()
	for name, port := range map[string]int{"no listener": deadPort, "no ack": noAck.Port()} {
		t.Run(name, func(t *testing.T) {
			res := harness.Run(t, harness.Options{
				Instances: [][]harness.KV{kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(port), "Forward_Timeout", "300ms")},
				Flushes:   []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}},
				Retries:   2,
			})
			if got := rcs(res); !slices.Equal(got, []int{2, 2, 2}) {
				t.Fatalf("rcs %v\n%s", got, res.Stderr)
			}
			if res.Summary["dropped"] != 1 || !strings.Contains(res.Stderr, "asking Fluent Bit to retry the chunk") {
				t.Fatalf("summary %v\n%s", res.Summary, res.Stderr)
			}
		})
	}
}

// Fluent Bit's workers: flushes of one instance run concurrently on two
// threads; every alert still arrives exactly once.
func TestWorkersDeliverEachAlertOnce(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{})
	var flushes []harness.Flush
	var want int
	for _, rule := range []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_attempt_failed", "aws.iam.quarantine_removed"} {
		for _, e := range fixtures(t, rule, "positive") {
			c := chunkOf(e)
			// Each event in two chunks: the workers race to deliver it.
			flushes = append(flushes, harness.Flush{Tag: tag, Data: c}, harness.Flush{Tag: tag, Data: c})
			want++
		}
	}
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(srv.Port()))},
		Flushes:   flushes,
		Workers:   2,
	})
	if res.Summary["ok"] != int64(len(flushes)) {
		t.Fatalf("summary %v\n%s", res.Summary, res.Stderr)
	}
	srv.WaitEntries(t, want, 5*time.Second)
	seen := map[string]int{}
	for _, e := range srv.Entries() {
		seen[e.Record["rule"].(map[string]any)["id"].(string)+"/"+e.Record["event_id"].(string)]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
	}
	if len(seen) != want {
		t.Fatalf("%d distinct alerts, want %d", len(seen), want)
	}
}

// normalize gives v the types encoding/json decodes alerts into.
func normalize(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// The README's example alerts are what the plugin prints for the sample
// stream's legacy quarantine and for the first call the exposed key made
// after it, byte for byte.
func TestREADMEExampleAlert(t *testing.T) {
	vals := corpus.Sample(t)
	_, res := runStdout(t, kv("Include_Event", "off"), fbchunk.FromValues(t0, vals))
	lines := strings.Split(res.Stdout, "\n")
	readme, err := os.ReadFile(paths.Repo("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) < 7 {
		t.Fatalf("%d alerts from the sample", len(lines))
	}
	for _, i := range []int{2, 6} {
		if !strings.Contains(string(readme), "\n"+lines[i]+"\n") {
			t.Errorf("README's example alert is stale; the plugin prints:\n%s", lines[i])
		}
	}
	// And its exit line, the counters after the time stamp.
	exit := regexp.MustCompile(`\] exit: (flushes=.*)`)
	got := exit.FindStringSubmatch(res.Stderr)
	shown := exit.FindStringSubmatch(string(readme))
	if got == nil || shown == nil || got[1] != shown[1] {
		t.Errorf("README's exit line is stale; the plugin prints:\n%v", got)
	}
}

// Stats_Interval logs the counters while the instance runs; exit always
// does. The receiver never acks, so the run lasts three 300 ms timeouts.
func TestStatsAreLogged(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{NoAck: true})
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(srv.Port()),
			"Forward_Timeout", "300ms", "Stats_Interval", "100ms")},
		Flushes: []harness.Flush{{Tag: tag, Data: chunkOf(quarantineApplied(t))}},
		Retries: 2,
	})
	stats := regexp.MustCompile(`\[ info\] \[output:cloudtrail_quarantine:cloudtrail_quarantine\.0\] stats: flushes=\d+ records=\d+ `).FindAllString(res.Stderr, -1)
	if len(stats) == 0 {
		t.Fatalf("no periodic stats line:\n%s", res.Stderr)
	}
	if !strings.Contains(res.Stderr, "exit: flushes=3 records=3 candidates=3 events=3 alerts=3 delivered=0 queued=0 delivery_failures=0 dead_letter=0 duplicates_dropped=0 retries=3 ") ||
		!strings.Contains(res.Stderr, "alerts_by_rule=aws.health.credentials_exposed:0,aws.iam.exposed_key_reactivated:0,aws.iam.exposed_key_retired:0,aws.iam.exposed_not_quarantined:0,aws.iam.quarantine_applied:3,aws.iam.quarantine_attempt_failed:0,") {
		t.Fatalf("exit counters:\n%s", res.Stderr)
	}
}

// TLS with verification against the receiver's CA, a client certificate,
// and in_forward's shared-key handshake, through the .so; and the errors a
// user gets for the two ways of getting it wrong.
func TestForwardTLSAndSharedKey(t *testing.T) {
	pki := tlstest.New(t)
	srv := forwardrecv.Start(t, forwardrecv.Options{TLS: pki.ServerConfig(t, true), SharedKey: "s3cret"})
	props := func(key, ca string) []harness.KV {
		return kv("Alert_Output", "forward", "Forward_Port", strconv.Itoa(srv.Port()), "Forward_Timeout", "2s",
			"Forward_TLS", "on", "Forward_TLS_CA_File", ca, "Forward_TLS_Crt_File", pki.ClientCrt,
			"Forward_TLS_Key_File", pki.ClientKey, "Forward_Shared_Key", key, "Forward_Self_Hostname", "edge-1")
	}
	other := tlstest.New(t)
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{props("s3cret", pki.CAFile), props("wrong", pki.CAFile), props("s3cret", other.CAFile)},
		Flushes: []harness.Flush{
			{Instance: 0, Tag: tag, Data: chunkOf(quarantineApplied(t))},
			{Instance: 1, Tag: tag, Data: chunkOf(quarantineApplied(t))},
			{Instance: 2, Tag: tag, Data: chunkOf(quarantineApplied(t))},
		},
		Retries: -1,
	})
	if got := rcs(res); !slices.Equal(got, []int{1, 2, 2}) {
		t.Fatalf("rcs %v\n%s", got, res.Stderr)
	}
	for _, want := range []string{"receiver refused authentication: shared_key mismatch", "certificate signed by unknown authority"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("no %q in\n%s", want, res.Stderr)
		}
	}
	if strings.Contains(res.Stderr, "s3cret") || !strings.Contains(res.Stderr, "Forward_Shared_Key=(set)") {
		t.Errorf("the shared key was logged, or its presence was not:\n%s", res.Stderr)
	}
	if n := len(srv.WaitEntries(t, 1, 5*time.Second)); n != 1 {
		t.Fatalf("receiver holds %d entries", n)
	}
}

// Alert_Format ecs, through the .so, to stdout (JSON) and forward (msgpack).
func TestECSFormat(t *testing.T) {
	srv := forwardrecv.Start(t, forwardrecv.Options{})
	c := chunkOf(fixtures(t, "aws.iam.quarantine_attempt_failed", "positive")[0])
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{
			kv("Alert_Format", "ecs"),
			kv("Alert_Format", "ECS", "Alert_Output", "forward", "Forward_Port", strconv.Itoa(srv.Port())),
		},
		Flushes: []harness.Flush{{Instance: 0, Tag: tag, Data: c}, {Instance: 1, Tag: tag, Data: c}},
	})
	var doc map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(res.Stdout)), &doc); err != nil {
		t.Fatalf("%v\n%s", err, res.Stdout)
	}
	ev := doc["event"].(map[string]any)
	if ev["kind"] != "alert" || ev["outcome"] != "failure" || doc["error"].(map[string]any)["code"] != "NoSuchEntity" {
		t.Fatalf("ECS alert %v", doc)
	}
	rec := srv.WaitEntries(t, 1, 5*time.Second)[0].Record
	if rec["message"] != doc["message"] || rec["rule"].(map[string]any)["id"] != "aws.iam.quarantine_attempt_failed" {
		t.Fatalf("forwarded ECS alert %v", rec)
	}
}
