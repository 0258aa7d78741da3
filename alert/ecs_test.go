package alert_test

import (
	"encoding/csv"
	"encoding/json"
	"math"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/alert"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

type ecsField struct{ typ, level string }

// ecsReference reads ../shared/ecs/fields.csv: field name -> type and
// whether it is an array.
func ecsReference(t *testing.T) map[string]ecsField {
	f, err := os.Open(paths.Repo("..", "shared", "ecs", "fields.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	ref := map[string]ecsField{}
	for _, r := range rows[1:] {
		if r[0] != alert.ECSVersion {
			t.Fatalf("fields.csv is ECS %s, the plugin targets %s", r[0], alert.ECSVersion)
		}
		ref[r[3]] = ecsField{typ: r[4], level: r[6]}
	}
	return ref
}

// leaves flattens a decoded JSON document to dotted field names.
func leaves(prefix string, v any, out map[string]any) {
	if m, ok := v.(map[string]any); ok {
		for k, e := range m {
			leaves(strings.TrimPrefix(prefix+"."+k, "."), e, out)
		}
		return
	}
	out[prefix] = v
}

func typeOK(typ string, v any) bool {
	switch typ {
	case "keyword", "match_only_text", "text", "wildcard", "constant_keyword":
		_, ok := v.(string)
		return ok
	case "long", "integer", "short", "byte":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	case "float", "double", "scaled_float", "half_float":
		_, ok := v.(float64)
		return ok
	case "date":
		s, ok := v.(string)
		_, err := time.Parse(time.RFC3339Nano, s)
		return ok && err == nil
	case "ip":
		s, ok := v.(string)
		return ok && net.ParseIP(s) != nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	}
	return false
}

// Every field of an ECS alert is an ECS 9.4 field of the right type, or
// lives under aws.* or the plugin's own cloudtrail_quarantine.*; the
// msgpack form says the same as the JSON form.
func TestECSAlertsMatchTheReference(t *testing.T) {
	ref := ecsReference(t)
	checked := 0
	for _, rule := range rules.Stateless() {
		for _, ev := range corpus.Fixtures(t, rule.ID, "positive") {
			alerts := alertsOf(t, fbchunk.AppendV2(nil, t0, nil, ev))
			if len(alerts) != 1 {
				t.Fatalf("%v: %d alerts", ev["eventID"], len(alerts))
			}
			fields := checkECS(t, ref, alerts[0])
			var original map[string]any
			// The event, or the notice inside an SNS envelope.
			var inner any = ev
			(&cloudtrail.Resolver{}).Resolve(ev, func(e *cloudtrail.Event) { inner = e.Raw })
			if err := json.Unmarshal([]byte(fields["event.original"].(string)), &original); err != nil || !reflect.DeepEqual(normalize(t, original), normalize(t, inner)) {
				t.Errorf("event.original is not the event: %v", err)
			}
			checked++
		}
	}
	// And every alert of the lifecycle's examples.
	for _, f := range sequence.Findings(t) {
		checkECS(t, ref, alert.New(f, true))
		checked++
	}
	if checked < 40 {
		t.Fatalf("checked only %d alerts", checked)
	}
}

// checkECS checks one alert's ECS document: every field an ECS 9.4 field of
// the right type (or under aws.* or cloudtrail_quarantine.*), the constant
// fields, the outcome, and the msgpack form the same as the JSON one. It
// returns the document's fields.
func checkECS(t *testing.T, ref map[string]ecsField, a alert.Alert) map[string]any {
	t.Helper()
	js := a.AppendJSON(nil, alert.ECS)
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, js)
	}
	fields := map[string]any{}
	leaves("", doc, fields)
	for name, v := range fields {
		if strings.HasPrefix(name, "aws.") || strings.HasPrefix(name, "cloudtrail_quarantine.") {
			continue
		}
		f, ok := ref[name]
		if !ok {
			t.Errorf("%s: %s is not an ECS field", a.Rule.ID, name)
			continue
		}
		if arr, isArr := v.([]any); isArr {
			if f.level != "array" {
				t.Errorf("%s is an array, ECS says %q", name, f.level)
			}
			for _, e := range arr {
				if !typeOK(f.typ, e) {
					t.Errorf("%s element %v is not %s", name, e, f.typ)
				}
			}
		} else if !typeOK(f.typ, v) {
			t.Errorf("%s = %v is not %s", name, v, f.typ)
		}
	}
	for name, want := range map[string]any{"event.kind": "alert", "rule.id": a.Rule.ID, "cloud.provider": "aws", "ecs.version": alert.ECSVersion} {
		if fields[name] != want {
			t.Errorf("%s: %s = %v, want %v", a.Rule.ID, name, fields[name], want)
		}
	}
	if (fields["event.outcome"] == "failure") != (a.ErrorCode != "") {
		t.Errorf("event.outcome %v for %s", fields["event.outcome"], a.Key)
	}
	if !reflect.DeepEqual(doc, asJSON(t, a.AppendMsgpack(nil, alert.ECS))) {
		t.Errorf("msgpack and JSON ECS forms differ")
	}
	return fields
}

// normalize is v as JSON decodes it, for comparing documents.
func normalize(t *testing.T, v any) any {
	var out any
	if err := json.Unmarshal(value.ToJSON(v), &out); err != nil {
		t.Fatal(err)
	}
	return out
}
