package ocsfschema_test

import (
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfschema"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// minimal is the smallest valid Detection Finding (../shared/ocsf/README.md),
// with version standing for metadata.version.
const minimal = `{"class_uid":2004,"category_uid":2,"activity_id":1,"type_uid":200401,"severity_id":4,"time":1773152518000,
"metadata":{"version":"VERSION","product":{"name":"p","vendor_name":"v"},"profiles":["cloud"]},
"finding_info":{"uid":"f-1","title":"t"},"cloud":{"provider":"AWS"}}`

func load(t *testing.T, version string) *ocsfschema.Schema {
	t.Helper()
	s, err := ocsfschema.Load(paths.Repo("..", "shared", "ocsf"), version)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func record(t *testing.T, version string) map[string]any {
	t.Helper()
	rec, err := ocsfschema.Decode([]byte(strings.Replace(minimal, "VERSION", version, 1)))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func obj(rec map[string]any, key string) map[string]any { return rec[key].(map[string]any) }

func TestMinimalRecordIsValid(t *testing.T) {
	for _, v := range []string{"1.1.0", "1.8.0"} {
		if r := load(t, v).Check(record(t, v)); len(r.Problems) > 0 || len(r.Deprecated) > 0 {
			t.Errorf("%s: %+v", v, r)
		}
	}
}

// Each break of the minimal record is caught, alone, with a message that
// names the path.
func TestCheckCatches(t *testing.T) {
	s := load(t, "1.1.0")
	for _, c := range []struct {
		name  string
		edit  func(map[string]any)
		wants string
	}{
		{"unknown attribute", func(r map[string]any) { r["colour"] = "red" }, "colour: no such attribute in class 2004"},
		{"unknown nested attribute", func(r map[string]any) { obj(r, "finding_info")["colour"] = "red" },
			"finding_info.colour: object finding_info has no attribute colour"},
		{"deep unknown attribute", func(r map[string]any) {
			obj(r, "finding_info")["attacks"] = []any{map[string]any{"tactic": map[string]any{"uid": "TA0006", "colour": "red"}}}
		}, "finding_info.attacks[].tactic.colour: object tactic has no attribute colour"},
		{"string for an integer", func(r map[string]any) { r["severity_id"] = "4" }, "severity_id = 4: not an integer"},
		{"fraction for a timestamp", func(r map[string]any) { r["time"] = 1.5 }, "time = 1.5: not an integer"},
		{"integer beyond 32 bits", func(r map[string]any) { r["risk_score"] = int64(1) << 40 }, "out of integer_t's 32 bits"},
		{"enum value", func(r map[string]any) { r["severity_id"] = 7 }, "severity_id = 7: not an allowed value"},
		{"required attribute of an object", func(r map[string]any) { delete(obj(r, "finding_info"), "title") },
			"finding_info.title: required, missing"},
		{"required attribute of the class", func(r map[string]any) { delete(r, "time") }, "time: required, missing"},
		{"required attribute of a declared profile", func(r map[string]any) { delete(r, "cloud") }, "cloud: required, missing"},
		{"undeclared profile", func(r map[string]any) { obj(r, "metadata")["profiles"] = []any{} },
			"cloud: in profile cloud, which metadata.profiles does not declare"},
		{"at_least_one", func(r map[string]any) { delete(obj(obj(r, "metadata"), "product"), "name") },
			"metadata.product: at_least_one of name, uid (0 present)"},
		{"scalar for an array", func(r map[string]any) { obj(r, "finding_info")["types"] = "x" }, "finding_info.types: not an array"},
		{"array for a scalar", func(r map[string]any) { obj(r, "finding_info")["title"] = []any{"t"} }, "finding_info.title: an array"},
		{"caption of an enum", func(r map[string]any) { r["severity"] = "Low" }, `severity = "Low": the caption of severity_id 4 is "High"`},
		{"caption of Other", func(r map[string]any) { r["severity_id"], r["severity"] = 99, "Other" },
			"for severity_id 99 it should be the source's own caption"},
		{"nested caption", func(r map[string]any) {
			obj(r, "finding_info")["analytic"] = map[string]any{"name": "n", "type_id": 1, "type": "Behavioral"}
		}, `finding_info.analytic.type = "Behavioral": the caption of type_id 1 is "Rule"`},
		{"type_uid", func(r map[string]any) { r["type_uid"] = 200402 }, "type_uid 200402 is not class_uid*100+activity_id (200401)"},
		{"type regex", func(r map[string]any) {
			r["evidences"] = []any{map[string]any{"src_endpoint": map[string]any{"ip": "AWS Internal"}}}
		},
			"evidences[].src_endpoint.ip = AWS Internal: not a valid ip_t"},
		{"object constraint in an array", func(r map[string]any) {
			r["evidences"] = []any{map[string]any{"src_endpoint": map[string]any{"domain": "x"}}}
		},
			"evidences[].src_endpoint: at_least_one of ip, uid, name, hostname"},
		{"scalar for an object", func(r map[string]any) { r["cloud"] = "AWS" }, "cloud = AWS: not an object (cloud)"},
	} {
		rec := record(t, "1.1.0")
		c.edit(rec)
		r := s.Check(rec)
		if len(r.Problems) != 1 || !strings.Contains(r.Problems[0], c.wants) {
			t.Errorf("%s: got %q, want one problem containing %q", c.name, r.Problems, c.wants)
		}
	}
}

func TestFreeFormAndDeprecated(t *testing.T) {
	rec := record(t, "1.8.0")
	rec["unmapped"] = map[string]any{"anything": map[string]any{"goes": []any{1, "two"}}}
	obj(rec, "finding_info")["attacks"] = []any{map[string]any{
		"tactic":    map[string]any{"uid": "TA0006", "name": "Credential Access"},
		"technique": map[string]any{"uid": "T1552", "name": "Unsecured Credentials"},
	}}
	rec["evidences"] = []any{map[string]any{"actor": map[string]any{"user": map[string]any{"name": "bob", "credential_uid": "AKIA1"}}}}
	r := load(t, "1.8.0").Check(rec)
	if len(r.Problems) > 0 {
		t.Fatalf("problems: %q", r.Problems)
	}
	if len(r.Deprecated) != 1 || !strings.HasPrefix(r.Deprecated[0], "evidences[].actor.user.credential_uid: deprecated since 1.6.0") {
		t.Errorf("deprecated: %q", r.Deprecated)
	}
}

func TestUnknownClass(t *testing.T) {
	rec := record(t, "1.1.0")
	rec["class_uid"] = 9999
	if r := load(t, "1.1.0").Check(rec); len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "class_uid 9999") {
		t.Errorf("got %q", r.Problems)
	}
}
