package e2e

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// playThroughThePlugin runs a sequence through the built .so: its events
// as chunks, one run of the harness per stretch of the stream, a silence
// as the time a run lingers after its last flush (the plugin's timers run
// on), and a new run, over the same State_Dir, after each silence or
// restart. It returns every alert line the runs printed, by rule.
func playThroughThePlugin(t *testing.T, s sequence.Sequence) (map[string]int, []alert) {
	dir := t.TempDir()
	props := kv("State_Dir", dir, "Quarantine_Grace", s.Options.Grace.String(), "Event_Delay", s.Options.Delay.String(),
		"Use_Alert_Window", s.Options.Window.String())
	if s.Options.TTL > 0 {
		props = append(props, kv("Watch_TTL", s.Options.TTL.String())...)
	}
	counts := map[string]int{}
	var all []alert
	var flushes []harness.Flush
	run := func(linger time.Duration) {
		res := harness.Run(t, harness.Options{Instances: [][]harness.KV{props}, Flushes: flushes, LingerMS: int(linger / time.Millisecond), Quiet: true})
		if res.ExitCode != 0 {
			t.Fatalf("%s: exit %d\n%s", s.Name, res.ExitCode, tail(res.Stderr))
		}
		for _, a := range parseLines(t, res.Stdout) {
			counts[a.Rule.ID]++
			all = append(all, a)
		}
		flushes = nil
	}
	for _, st := range s.Steps {
		switch {
		case st.Event != nil || st.Chunk != nil:
			var data []byte
			for _, b := range st.Bodies() {
				data = fbchunk.AppendV2(data, sequence.EventTime(st.Events()[0]), nil, b)
			}
			flushes = append(flushes, harness.Flush{Tag: tag, Data: data})
		case st.Silence > 0:
			run(st.Silence)
		case st.Restart:
			run(0)
		}
	}
	if len(flushes) > 0 {
		run(0)
	}
	return counts, all
}

// The lifecycle's examples through the built .so, with the collector
// restarted where they say (and after every silence), over one State_Dir:
// each gives exactly the alerts it expects, each alert once.
func TestSequencesThroughThePlugin(t *testing.T) {
	for _, rule := range sequence.Rules {
		for _, s := range sequence.Load(t, rule) {
			t.Run(s.Name, func(t *testing.T) {
				t.Parallel()
				got, _ := playThroughThePlugin(t, s)
				for id, want := range s.Expect {
					if got[id] != want {
						t.Errorf("%s printed %d times, want %d (all: %v)\n%s", id, got[id], want, got, s.About)
					}
				}
			})
		}
	}
}

// The whole life of one key, through the plugin restarted between the
// steps: exposure, quarantine, use (allowed, denied by the policy, denied
// otherwise), removal, retirement; the alerts carry what the lifecycle
// knew at each step.
func TestKeyLifeThroughThePlugin(t *testing.T) {
	ev := func(name string) sequence.Step { return sequence.Step{Event: fixtureEvent(t, name)} }
	restart := sequence.Step{Restart: true}
	s := sequence.Sequence{Name: "life", Options: sequence.Options{Grace: 15 * time.Minute, Delay: 15 * time.Minute, Window: time.Hour},
		Steps: []sequence.Step{
			ev("events/health_exposed"), restart,
			ev("rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline"), restart,
			ev("events/ec2_describe_instances_by_key"), ev("events/iam_create_access_key_denied"), ev("events/ec2_run_instances_unauthorized"), restart,
			{Event: removal(t)}, restart,
			ev("events/iam_delete_access_key"),
		}}
	counts, alerts := playThroughThePlugin(t, s)
	want := map[string]int{rules.CredentialsExposed: 1, rules.QuarantineApplied: 1, rules.QuarantinedKeyUsed: 2, rules.QuarantineDeniedCall: 1,
		rules.QuarantineRemoved: 1, rules.ExposedKeyRetired: 1, rules.ExposedNotQuarantined: 0}
	for id, n := range want {
		if counts[id] != n {
			t.Errorf("%s: %d alerts, want %d (all %v)", id, counts[id], n, counts)
		}
	}
	for _, a := range alerts {
		if a.Rule.ID == rules.CredentialsExposed {
			continue
		}
		if a.Key.ID != "AKIAEXAMPLEEXPOSED01" || a.Key.ExposedAt == "" || a.Key.ExposedURL == "" {
			t.Errorf("%s: key %+v", a.Rule.ID, a.Key)
		}
		switch a.Rule.ID {
		case rules.QuarantinedKeyUsed:
			if (a.ErrorCode == "") != (a.Rule.Severity == "high") || a.Use.Calls != 1 {
				t.Errorf("use %s: severity %s, use %+v", a.EventID, a.Rule.Severity, a.Use)
			}
		case rules.ExposedKeyRetired:
			if a.Key.RetiredAt == "" || a.Key.QuarantinedAt == "" || a.Lifecycle["seconds_from_exposure"] != 7100 {
				t.Errorf("retired: %+v %+v", a.Key, a.Lifecycle)
			}
		}
	}
}

// removal is DeleteUserPolicy of the legacy quarantine, by an admin, after
// the uses.
func removal(t *testing.T) map[string]any {
	e := fixtureEvent(t, "rules/aws.iam.quarantine_removed/positive/delete_user_policy_legacy")
	e["eventTime"] = "2026-11-20T09:30:00Z"
	return e
}

func fixtureEvent(t *testing.T, name string) map[string]any {
	e, err := sequence.Event(name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// A scanner hammering a watched key, 10,000 calls in Fluent Bit-sized
// chunks through the .so: one alert for the window, the other calls
// counted as folded into it, and a later window's alert says so.
func TestUseBurstThroughThePlugin(t *testing.T) {
	quarantine := fixtureEvent(t, "rules/aws.iam.quarantine_applied/positive/put_user_legacy_inline")
	use := fixtureEvent(t, "events/ec2_describe_instances_by_key")
	start := sequence.EventTime(use)
	var flushes []harness.Flush
	flushes = append(flushes, harness.Flush{Tag: tag, Data: fbchunk.AppendV2(nil, t0, nil, quarantine)})
	var chunk []byte
	for i := range 10000 {
		e := maps.Clone(use)
		e["eventID"] = fmt.Sprintf("burst-%05d", i)
		e["eventTime"] = start.Add(time.Duration(i) * 100 * time.Millisecond).Format(time.RFC3339Nano)
		chunk = fbchunk.AppendV2(chunk, t0, nil, e)
		if len(chunk) > 1<<20 || i == 9999 {
			flushes = append(flushes, harness.Flush{Tag: tag, Data: chunk})
			chunk = nil
		}
	}
	later := maps.Clone(use)
	later["eventID"], later["eventTime"] = "burst-later", start.Add(3*time.Hour).Format(time.RFC3339)
	flushes = append(flushes, harness.Flush{Tag: tag, Data: fbchunk.AppendV2(nil, t0, nil, later)})
	res := harness.Run(t, harness.Options{Instances: [][]harness.KV{kv("Include_Event", "off")}, Flushes: flushes, Quiet: true})
	var uses []alert
	for _, a := range parseLines(t, res.Stdout) {
		if a.Rule.ID == rules.QuarantinedKeyUsed {
			uses = append(uses, a)
		}
	}
	if len(uses) != 2 || uses[0].Use.Calls != 1 || uses[1].Use.Calls != 10000 {
		t.Fatalf("use alerts %+v\n%s", uses, tail(res.Stderr))
	}
	if !strings.Contains(res.Stderr, "uses_suppressed=9999 ") {
		t.Fatalf("exit counters:\n%s", tail(res.Stderr))
	}
}
