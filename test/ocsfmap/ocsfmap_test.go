package ocsfmap_test

import (
	"errors"
	"maps"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfmap"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

var ruleIDs = []string{"aws.iam.quarantine_applied", "aws.iam.quarantine_attempt_failed", "aws.iam.quarantine_removed"}

// examples are every rule example, by file path, plus events of the classes
// the examples do not reach (Authentication, API Activity with resources,
// Account Change with responseElements).
func examples(t *testing.T) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, rule := range ruleIDs {
		for _, kind := range []string{"positive", "negative"} {
			files, _ := filepath.Glob(paths.Repo("test", "fixtures", "rules", rule, kind, "*.json"))
			for _, f := range files {
				out[rule+"/"+kind+"/"+filepath.Base(f)] = corpus.JSONFile(t, f)
			}
		}
	}
	if len(out) < 39 {
		t.Fatalf("only %d rule examples", len(out))
	}
	extra := map[string]string{
		"console_login": `{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/anaya","accountId":"111122223333","userName":"anaya"},
			"eventTime":"2026-11-20T08:15:42Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.7",
			"userAgent":"Mozilla/5.0","requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},
			"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/console/home","MobileVersion":"No","MFAUsed":"Yes"},
			"eventID":"3a4e2f59-6c1b-4a8e-9d3f-0b1c2d3e4f50","readOnly":false,"eventType":"AwsConsoleSignIn","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}`,
		"describe_with_resources": `{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:bob","arn":"arn:aws:sts::111122223333:assumed-role/Ops/bob","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE",
			"sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::111122223333:role/Ops"},"webIdFederationData":{},"attributes":{"creationDate":"2026-11-20T07:00:00Z","mfaAuthenticated":"true"}}},
			"eventTime":"2026-11-20T08:15:42Z","eventSource":"kms.amazonaws.com","eventName":"DescribeKey","awsRegion":"eu-west-1","sourceIPAddress":"kms.amazonaws.com","userAgent":"kms.amazonaws.com",
			"requestParameters":{"keyId":"alias/app","grantTokens":["a","b"],"limit":10},"responseElements":null,"requestID":"5c2d1e0f-1111-2222-3333-444455556666","eventID":"6d3e2f10-1111-2222-3333-444455556666",
			"readOnly":true,"resources":[{"accountId":"111122223333","type":"AWS::KMS::Key","ARN":"arn:aws:kms:eu-west-1:111122223333:key/1234"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}`,
		"create_user": `{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:alice","arn":"arn:aws:sts::111122223333:assumed-role/Admin/alice","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE"},
			"eventTime":"2026-11-20T08:15:42Z","eventSource":"iam.amazonaws.com","eventName":"CreateUser","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.10","userAgent":"aws-cli/2",
			"requestParameters":{"userName":"new-user"},"responseElements":{"user":{"path":"/","userName":"new-user","userId":"AIDANEWUSER","arn":"arn:aws:iam::111122223333:user/new-user","createDate":"Nov 20, 2026 8:15:42 AM"}},
			"requestID":"7e4f3a21-1111-2222-3333-444455556666","eventID":"8f504b32-1111-2222-3333-444455556666","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}`,
	}
	for name, js := range extra {
		v, err := value.FromJSON([]byte(js))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = v.(map[string]any)
	}
	return out
}

// asJSON is the record as a reader of the JSON sees it.
func asJSON(t *testing.T, rec map[string]any) map[string]any {
	t.Helper()
	b := value.ToJSON(rec)
	v, err := value.FromJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

type form struct {
	name    string
	version string
	convert func(map[string]any) (map[string]any, error)
	schema  *schema
}

func forms(t *testing.T) []form {
	return []form{
		{"v2", ocsfmap.VersionV2, ocsfmap.SecurityLakeV2, loadSchema(t, ocsfmap.VersionV2)},
		{"v1", ocsfmap.VersionV1, ocsfmap.SecurityLakeV1, loadSchema(t, ocsfmap.VersionV1)},
	}
}

// Every record the converter writes is valid OCSF of its version and class,
// except for the one gap between the mapping and the schema: "AWS Internal"
// is not an address, the mapping puts it in src_endpoint.domain, and before
// OCSF 1.4.0 domain does not count for network_endpoint's at_least_one.
func TestSecurityLakeFormsMatchTheSchema(t *testing.T) {
	fs := forms(t)
	gaps := 0
	for name, ev := range examples(t) {
		for _, f := range fs {
			rec, err := f.convert(ev)
			if err != nil {
				t.Fatalf("%s %s: %v", name, f.name, err)
			}
			rec = asJSON(t, rec)
			problems := f.schema.check(rec)
			ip, _ := ev["sourceIPAddress"].(string)
			if _, err := netip.ParseAddr(ip); err != nil {
				if len(problems) == 0 || !strings.HasPrefix(problems[0], "src_endpoint: at_least_one of ") {
					t.Errorf("%s %s: the domain-only src_endpoint gap was not found: %v", name, f.name, problems)
				}
				problems = problems[1:]
				gaps++
			}
			if len(problems) > 0 {
				t.Errorf("%s %s (class %v):\n  %s", name, f.name, rec["class_uid"], strings.Join(problems, "\n  "))
			}
			if got := rec["metadata"].(map[string]any)["version"]; got != f.version {
				t.Errorf("%s %s: metadata.version %v", name, f.name, got)
			}
		}
	}
	if gaps == 0 {
		t.Fatal("no example has a sourceIPAddress that is not an address: the gap is untested")
	}
}

// The checker finds each kind of mistake, so the test above can fail.
func TestSchemaCheckCatchesMistakes(t *testing.T) {
	s := loadSchema(t, ocsfmap.VersionV2)
	ev := corpus.Fixture(t, "aws.iam.quarantine_applied", "negative", "attach_user_administrator")
	good, err := ocsfmap.SecurityLakeV2(ev)
	if err != nil {
		t.Fatal(err)
	}
	if p := s.check(asJSON(t, good)); len(p) != 0 {
		t.Fatalf("the reference record has problems: %v", p)
	}
	cases := map[string]struct {
		edit func(r map[string]any)
		want string
	}{
		"unknown field": {func(r map[string]any) { r["api"].(map[string]any)["verb"] = "x" }, "api.verb: not in OCSF"},
		"unknown deep": {func(r map[string]any) {
			r["actor"].(map[string]any)["user"].(map[string]any)["account"].(map[string]any)["arn"] = "x"
		}, `object "account" has no attribute "arn"`},
		"wrong type":        {func(r map[string]any) { r["time"] = "yesterday" }, `time = "yesterday": not timestamp_t`},
		"bad address":       {func(r map[string]any) { r["src_endpoint"] = map[string]any{"ip": "AWS Internal"} }, "src_endpoint.ip"},
		"not an array":      {func(r map[string]any) { r["observables"] = map[string]any{"name": "x", "type_id": int64(2)} }, "observables: array-ness differs"},
		"enum":              {func(r map[string]any) { r["activity_id"], r["type_uid"] = int64(42), int64(300142) }, "activity_id = 42: not an allowed value"},
		"type_uid":          {func(r map[string]any) { r["type_uid"] = int64(300101) }, "type_uid 300101 != class_uid*100+activity_id"},
		"required":          {func(r map[string]any) { delete(r, "user") }, "user: required by class 3001, missing"},
		"required in obj":   {func(r map[string]any) { delete(r["api"].(map[string]any)["request"].(map[string]any), "uid") }, "api.request.uid: required in object request"},
		"profile":           {func(r map[string]any) { r["metadata"].(map[string]any)["profiles"] = []any{"cloud"} }, `time_dt: needs profile "datetime"`},
		"constraint":        {func(r map[string]any) { r["user"] = map[string]any{"type": "IAMUser"} }, "user: at_least_one of account, name, uid"},
		"unknown class":     {func(r map[string]any) { r["class_uid"] = int64(9999) }, "class_uid 9999 is not a tabled class"},
		"observable enum":   {func(r map[string]any) { r["observables"].([]any)[0].(map[string]any)["type_id"] = int64(77) }, "observables[].type_id = 77: not an allowed value"},
		"too long a string": {func(r map[string]any) { r["http_request"].(map[string]any)["user_agent"] = strings.Repeat("a", 70000) }, "http_request.user_agent"},
	}
	for name, c := range cases {
		rec := asJSON(t, good)
		c.edit(rec)
		problems := s.check(rec)
		if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, c.want) }) {
			t.Errorf("%s: want a problem containing %q, got %v", name, c.want, problems)
		}
	}
}

func get(rec map[string]any, path string) any {
	var v any = rec
	for _, seg := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[seg]
	}
	return v
}

// Where each CloudTrail field lands, per AWS's mapping tables.
func TestFieldPlacement(t *testing.T) {
	ev := corpus.Fixture(t, "aws.iam.quarantine_attempt_failed", "positive", "attach_user_v2_access_denied")
	ms := time.Date(2026, 11, 20, 8, 15, 42, 0, time.UTC).UnixMilli()
	v2, err := ocsfmap.SecurityLakeV2(ev)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := ocsfmap.SecurityLakeV1(ev)
	if err != nil {
		t.Fatal(err)
	}
	v2, v1 = asJSON(t, v2), asJSON(t, v1)
	both := map[string]any{
		"class_uid": int64(3001), "activity_id": int64(7), "type_uid": int64(300107),
		"api.operation": "AttachUserPolicy", "api.service.name": "iam.amazonaws.com", "api.request.uid": ev["requestID"],
		"api.response.error": "AccessDenied", "api.response.message": ev["errorMessage"],
		"actor.user.type": "IAMUser", "actor.user.name": "ci-deployer", "actor.user.credential_uid": "AKIAEXAMPLEEXPOSED01",
		"user.name": "ci-deployer", "cloud.region": "us-east-1", "cloud.provider": "AWS", "src_endpoint.ip": "72.21.217.97",
		"http_request.user_agent": ev["userAgent"], "metadata.uid": ev["eventID"], "metadata.product.version": "1.05",
		"time": ms, "status": "Failure", "unmapped.recipientAccountId": "111122223333",
	}
	v2only := map[string]any{
		"actor.user.uid": "arn:aws:iam::111122223333:user/ci-deployer", "actor.user.uid_alt": "AIDAEXAMPLEEXPOSED01",
		"actor.user.account.uid": "111122223333", "metadata.event_code": "AwsApiCall", "time_dt": "2026-11-20T08:15:42.000Z",
		"category_uid": int64(3), "category_name": "Identity & Access Management", "status_id": nil, "cloud.account": nil,
	}
	v1only := map[string]any{
		"actor.user.uuid": "arn:aws:iam::111122223333:user/ci-deployer", "actor.user.uid": "AIDAEXAMPLEEXPOSED01",
		"actor.user.account_uid": "111122223333", "unmapped.eventType": "AwsApiCall", "status_id": int64(2),
		"category_name": "Audit Activity", "api.request.data": nil, "time_dt": nil, "cloud.account_uid": nil,
		// The schema has no api.request.data: the parameters are flattened into unmapped,
		// except userName, which the mapping moved to user.name.
		"unmapped.requestParameters.policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2",
		"unmapped.requestParameters.userName":  nil,
	}
	for path, want := range both {
		v2only[path], v1only[path] = want, want
	}
	for path, want := range v2only {
		if got := get(v2, path); !reflect.DeepEqual(got, want) {
			t.Errorf("v2 %s = %#v, want %#v", path, got, want)
		}
	}
	for path, want := range v1only {
		var got any
		if rest, ok := strings.CutPrefix(path, "unmapped."); ok {
			got = v1["unmapped"].(map[string]any)[rest]
		} else {
			got = get(v1, path)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("v1 %s = %#v, want %#v", path, got, want)
		}
	}
	// v2 keeps the whole requestParameters as JSON text.
	data, _ := get(v2, "api.request.data").(string)
	params, err := value.FromJSON([]byte(data))
	if err != nil || !reflect.DeepEqual(params, ev["requestParameters"]) {
		t.Errorf("api.request.data %q is not requestParameters (%v)", data, err)
	}
}

func TestClassAndDomain(t *testing.T) {
	for name, want := range map[string]int{
		"AttachUserPolicy": 3001, "AttachGroupPolicy": 3001, "AttachRolePolicy": 3001, "PutUserPolicy": 3001,
		"DetachUserPolicy": 3001, "DetachGroupPolicy": 3001, "DetachRolePolicy": 3001, "DeleteUserPolicy": 3001,
		"PutGroupPolicy": 3001, "GetPolicy": 6003, "ConsoleLogin": 3002, "AssumeRole": 3002, "GetObject": 6003,
	} {
		if got := ocsfmap.Class(name); got != want {
			t.Errorf("Class(%s) = %d, want %d", name, got, want)
		}
	}
	ev := corpus.Fixture(t, "aws.iam.quarantine_applied", "negative", "get_policy_quarantine_v2")
	for _, conv := range []func(map[string]any) (map[string]any, error){ocsfmap.SecurityLakeV2, ocsfmap.SecurityLakeV1} {
		rec, _ := conv(ev)
		if id := rec["activity_id"]; id != int64(2) {
			t.Errorf("GetPolicy activity %v, want 2 (Read)", id)
		}
	}
	v1, _ := ocsfmap.SecurityLakeV1(ev)
	if v1["class_uid"] != int64(3005) || v1["type_uid"] != int64(300502) {
		t.Errorf("rc.2 API Activity is %v/%v, want 3005/300502", v1["class_uid"], v1["type_uid"])
	}
	internal := corpus.Fixture(t, "aws.iam.quarantine_applied", "negative", "attach_user_v2_other_service")
	rec, _ := ocsfmap.SecurityLakeV2(internal)
	if get(rec, "src_endpoint.domain") != "AWS Internal" || get(rec, "src_endpoint.ip") != nil {
		t.Errorf("AWS Internal: src_endpoint %v", rec["src_endpoint"])
	}
}

func TestNotAnEvent(t *testing.T) {
	ev := corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", "attach_user_v2")
	for name, edit := range map[string]func(map[string]any){
		"no eventName":  func(m map[string]any) { delete(m, "eventName") },
		"no eventTime":  func(m map[string]any) { delete(m, "eventTime") },
		"Panther time":  func(m map[string]any) { m["eventTime"] = "2026-11-20 08:15:42" },
		"numeric time":  func(m map[string]any) { m["eventTime"] = int64(1795162542) },
		"numeric event": func(m map[string]any) { m["eventName"] = int64(3) },
	} {
		m := maps.Clone(ev)
		edit(m)
		if _, err := ocsfmap.SecurityLakeV2(m); !errors.Is(err, ocsfmap.ErrNotEvent) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

// A requestParameters some pipeline serialised to a JSON string is mapped
// as the object CloudTrail delivered.
func TestParamsAsJSONStringAreMappedAsObject(t *testing.T) {
	asString := corpus.Fixture(t, "aws.iam.quarantine_applied", "positive", "attach_user_v2_params_json_string")
	obj := maps.Clone(asString)
	v, _ := value.FromJSON([]byte(asString["requestParameters"].(string)))
	obj["requestParameters"] = v
	for _, conv := range []func(map[string]any) (map[string]any, error){ocsfmap.SecurityLakeV2, ocsfmap.SecurityLakeV1} {
		a, _ := conv(asString)
		b, _ := conv(obj)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("string and object requestParameters map differently:\n%v\n%v", a, b)
		}
	}
	if _, isString := asString["requestParameters"].(string); !isString {
		t.Fatal("the converter changed its input")
	}
}
