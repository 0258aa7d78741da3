package e2e

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	alerts "github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert" // the e2e package has its own alert type
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/forwardrecv"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfschema"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// Through the .so, Alert_Format ocsf writes valid OCSF Detection Findings
// as JSON lines (stdout) and as msgpack (forward), and both say the same.
func TestOCSFFormat(t *testing.T) {
	schema, err := ocsfschema.Load(paths.Repo("..", "shared", "ocsf"), alerts.OCSFVersion)
	if err != nil {
		t.Fatal(err)
	}
	srv := forwardrecv.Start(t, forwardrecv.Options{})
	c := chunkOf(
		fixtures(t, "aws.iam.quarantine_applied", "positive")[0],
		fixtures(t, "aws.iam.quarantine_attempt_failed", "positive")[0],
		fixtures(t, "aws.iam.quarantine_removed", "positive")[0],
	)
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{
			kv("Alert_Format", "ocsf"),
			kv("Alert_Format", "OCSF", "Alert_Output", "forward", "Forward_Port", strconv.Itoa(srv.Port())),
		},
		Flushes: []harness.Flush{{Instance: 0, Tag: tag, Data: c}, {Instance: 1, Tag: tag, Data: c}},
	})
	valid := func(where string, js []byte) map[string]any {
		t.Helper()
		rec, err := ocsfschema.Decode(js)
		if err != nil {
			t.Fatalf("%s: %v\n%s", where, err, js)
		}
		if r := schema.Check(rec); len(r.Problems) > 0 {
			t.Fatalf("%s: not valid OCSF %s: %q", where, alerts.OCSFVersion, r.Problems)
		}
		var doc map[string]any
		if err := json.Unmarshal(js, &doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	byUID := map[string]map[string]any{}
	var rules []string
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		doc := valid("stdout", []byte(line))
		info := doc["finding_info"].(map[string]any)
		byUID[info["uid"].(string)] = doc
		rules = append(rules, info["analytic"].(map[string]any)["uid"].(string))
		if doc["class_uid"] != float64(2004) || doc["metadata"].(map[string]any)["version"] != alerts.OCSFVersion {
			t.Errorf("stdout alert %v", doc)
		}
	}
	if want := []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_attempt_failed", "aws.iam.quarantine_removed"}; !slices.Equal(rules, want) {
		t.Fatalf("stdout alerts of %v, want %v\n%s", rules, want, res.Stdout)
	}
	failed := byUID["aws.iam.quarantine_attempt_failed/"+fixtures(t, "aws.iam.quarantine_attempt_failed", "positive")[0]["eventID"].(string)]
	if api, _ := failed["evidences"].([]any)[0].(map[string]any)["api"].(map[string]any); api["response"].(map[string]any)["error"] != "NoSuchEntity" {
		t.Errorf("failed attempt's api %v", api)
	}
	entries := srv.WaitEntries(t, 3, 5*time.Second)
	for _, e := range entries {
		var js bytes.Buffer
		if _, err := msgp.UnmarshalAsJSON(&js, e.Raw); err != nil {
			t.Fatal(err)
		}
		doc := valid("forward", js.Bytes())
		uid := doc["finding_info"].(map[string]any)["uid"].(string)
		if !reflect.DeepEqual(doc, byUID[uid]) {
			t.Errorf("forwarded %s differs from stdout's:\n%v\n%v", uid, doc, byUID[uid])
		}
		if doc["time"] != float64(e.Time.UnixMilli()) {
			t.Errorf("%s: time %v, record time %v", uid, doc["time"], e.Time)
		}
	}
}
