// Package ocsfmap turns a plain CloudTrail event into the OCSF records Amazon
// Security Lake writes for it: source version 2 (OCSF 1.1.0) and source
// version 1 (OCSF 1.0.0-rc.2). Tests use it to run every rule example in
// both OCSF forms and to check that the plugin reads them like the original.
//
// The field placement follows AWS's CloudTrail mappings in ocsf/examples at
// commit 45c82e309104d7cc0df8cfc08058587299f4af2f (last change to the
// v1.1.0 CloudTrail mappings: f2b38930, 2025-07-24; to v1.0.0-rc.2: a676e27a,
// 2024-02-22):
//
//	mappings/markdown/AWS/v1.1.0/CloudTrail/{Account Change,API Activity,Authentication}/README.md
//	mappings/markdown/AWS/v1.0.0-rc.2/CloudTrail/{Account Change,API Activity,Authentication}/README.md
//
// and their samples/*.raw -> samples/*.ocsf pairs. The markdown says the
// class and activity follow from eventName without listing them; the lists
// come from the same repository's Bloblang mappings
// (mappings/bloblang/AWS/CloudTrail/v1.1.0/cloudtrail.yml and the
// cloudtrail_*.blobl beside it).
//
// Where the markdown tables and the samples disagree, the samples win, since
// they are what the mapping produced:
//   - user.uid of Account Change: the table lists userIdentity.principalId
//     first, but the samples take the target from responseElements
//     (v2: uid = user.arn, uid_alt = user.userId; v1: uid = user.userId).
//     The caller's principalId is used only when nothing else identifies the
//     target, because 1.1.0 requires user in Account Change.
//   - metadata.version is the OCSF version (the API Activity tables say
//     eventVersion; the samples say "1.1.0" / "1.0.0-rc.2").
//   - status: the 1.1.0 tables and samples have status alone, the rc.2
//     ones status and status_id; so does this.
//
// Fields no mapping names go to unmapped as the samples show: dotted paths
// (userIdentity.sessionContext.sessionIssuer.type), every value a string
// ("true", "false", numbers written out), nulls, empty objects and empty
// arrays left out; every alternative source of a conditional field counts as
// mapped. No sample has a non-empty array there; they are written as JSON
// text, what a map<string,string> column can hold. In v1, whose schema has no
// api.request.data, the request parameters land there too
// (requestParameters.policyArn), as AWS's own Security Lake queries read
// them (awslabs/aws-security-analytics-bootstrap, amazon_security_lake_queries_
// cloudtrail_management.md: unmapped['requestParameters.policyArn']).
//
// Given the six samples' .raw events, this writes their .ocsf records but for
// four things: times in UTC (the samples use the writer's local offset),
// key order inside the JSON of api.*.data, the order of observables, and ""
// where the samples write two apostrophes for a missing requestID.
package ocsfmap

import (
	"errors"
	"maps"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// The OCSF versions Security Lake writes.
const (
	VersionV2 = "1.1.0"      // AWS source version 2
	VersionV1 = "1.0.0-rc.2" // AWS source version 1
)

// OCSF classes. API Activity is 6003 in 1.1.0 and 3005 in 1.0.0-rc.2.
const (
	AccountChange  = 3001
	Authentication = 3002
	APIActivity    = 6003
	APIActivityRC2 = 3005
)

// ErrNotEvent is returned for an event without eventName or with an
// eventTime that is not RFC 3339: OCSF requires both the operation and time.
var ErrNotEvent = errors.New("ocsfmap: not a CloudTrail event (eventName and an RFC 3339 eventTime are required)")

// SecurityLakeV2 returns ev as Security Lake source version 2 writes it
// (OCSF 1.1.0).
func SecurityLakeV2(ev map[string]any) (map[string]any, error) { return convert(ev, true) }

// SecurityLakeV1 returns ev as Security Lake source version 1 writes it
// (OCSF 1.0.0-rc.2).
func SecurityLakeV1(ev map[string]any) (map[string]any, error) { return convert(ev, false) }

// Class is the OCSF 1.1.0 class the mapping chooses for eventName.
func Class(eventName string) int {
	switch {
	case authenticationEvents[eventName]:
		return Authentication
	case accountChangeEvents[eventName]:
		return AccountChange
	}
	return APIActivity
}

var authenticationEvents = set("ConsoleLogin", "ExternalIdPDirectoryLogin", "CheckMfa", "CredentialChallenge",
	"CredentialVerification", "UserAuthentication", "AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity")

var accountChangeEvents = set("UpdateRole", "AttachUserPolicy", "PutRolePermissionsBoundary", "DeletePolicy",
	"RemoveUserFromGroup", "ChangePassword", "CreateAccessKey", "AttachGroupPolicy", "ResyncMFADevice",
	"DeleteRolePolicy", "PutUserPermissionsBoundary", "CreateUser", "CreateServiceLinkedRole", "PutRolePolicy",
	"DetachGroupPolicy", "UpdateAccessKey", "CreateInstanceProfile", "CreateRole", "DeleteUserPermissionsBoundary",
	"DeleteAccountAlias", "PutGroupPolicy", "CreateLoginProfile", "DeleteGroupPolicy", "DeleteLoginProfile",
	"DeleteUserPolicy", "DeactivateMFADevice", "RemoveRoleFromInstanceProfile", "UpdateUser", "EnableMFADevice",
	"DeleteUser", "AddRoleToInstanceProfile", "UpdateAccountEmailAddress", "UpdateRoleDescription",
	"DetachUserPolicy", "UpdateAssumeRolePolicy", "DeleteGroup", "DeleteServiceLinkedRole", "DeleteAccessKey",
	"AddUserToGroup", "DeleteVirtualMFADevice", "FinalizeSmsMfaRegistration", "DeleteRolePermissionsBoundary",
	"DetachRolePolicy", "DeleteInstanceProfile", "UpdateGroup", "UpdateLoginProfile", "RequestSmsMfaRegistration",
	"DeleteRole", "PutUserPolicy", "CreateVirtualMFADevice", "AttachRolePolicy", "EmailUpdated",
	"AccountNameUpdated", "PasswordUpdated", "DeleteAccountPasswordPolicy", "UpdateAccountPasswordPolicy",
	"UpdateAccountName", "TagInstanceProfile", "TagRole", "TagUser", "UntagInstanceProfile", "UntagRole",
	"UntagUser", "CreateAccountAlias")

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// rule is one "first substring that matches" line of the Bloblang
// activity tables; order matters (DeleteService* is Other, Delete* Delete).
type rule struct {
	contains string
	exact    bool
	id       int
}

var accountChangeActivity = []rule{
	{"Create", false, 1}, {"ResyncMFADevice", true, 1}, {"EnableMFADevice", true, 1},
	{"ChangePassword", true, 3}, {"PasswordUpdated", true, 3},
	{"Attach", false, 7}, {"Put", false, 7}, {"AddUserToGroup", true, 7},
	{"Detach", false, 8}, {"Remove", false, 8},
	{"DeleteSSH", false, 99}, {"DeleteServer", false, 99}, {"DeleteSign", false, 99},
	{"DeleteAccount", false, 99}, {"DeleteCloudFront", false, 99}, {"DeleteService", false, 99},
	{"Delete", false, 6},
}

// The Bloblang table also maps names containing "Unknown" to id 1 with the
// name "Unknown", which contradicts the enum (1 is Create); that line is
// left out, so such names fall through like any other.
var apiActivity = []rule{
	{"Create", false, 1}, {"Run", false, 1}, {"Generate", false, 1},
	{"Get", false, 2}, {"List", false, 2}, {"Describe", false, 2}, {"Search", false, 2}, {"Lookup", false, 2},
	{"Update", false, 3}, {"Put", false, 3}, {"Modify", false, 3}, {"Add", false, 3}, {"Remove", false, 3},
	{"Start", false, 3}, {"Stop", false, 3}, {"Attach", false, 3}, {"Detach", false, 3}, {"Associate", false, 3},
	{"Disassociate", false, 3}, {"Tag", false, 3}, {"Untag", false, 3}, {"Enable", false, 3}, {"Disable", false, 3},
	{"Register", false, 3}, {"Deregister", false, 3},
	{"Delete", false, 4}, {"Terminate", false, 4},
}

var authenticationActivity = []rule{
	{"ConsoleLogin", true, 1}, {"ExternalIdPDirectoryLogin", true, 1}, {"UserAuthentication", true, 1},
	{"AssumeRole", false, 1},
}

func activity(rules []rule, name string) int {
	for _, r := range rules {
		if r.exact && name == r.contains || !r.exact && strings.Contains(name, r.contains) {
			return r.id
		}
	}
	return 99
}

var activityNames = map[int]map[int]string{
	AccountChange:  {1: "Create", 3: "Password Change", 6: "Delete", 7: "Attach Policy", 8: "Detach Policy", 99: "Other"},
	APIActivity:    {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
	Authentication: {1: "Logon", 99: "Other"},
}

var classNames = map[int]string{AccountChange: "Account Change", Authentication: "Authentication", APIActivity: "API Activity"}

// mapping is one conversion in progress: the event, the CloudTrail paths
// already placed (the rest go to unmapped) and the record being built.
type mapping struct {
	ev   map[string]any
	v2   bool
	used map[string]bool
	out  map[string]any
}

func convert(ev map[string]any, v2 bool) (map[string]any, error) {
	name, _ := ev["eventName"].(string)
	ts, _ := ev["eventTime"].(string)
	t, err := time.Parse(time.RFC3339, ts)
	if name == "" || err != nil {
		return nil, ErrNotEvent
	}
	ev = withDecodedParams(ev)
	m := &mapping{ev: ev, v2: v2, used: map[string]bool{}, out: map[string]any{}}
	m.use("eventName", "eventTime")
	class := Class(name)
	m.header(class, name)
	m.actor(class)
	m.api()
	m.common(t)
	switch class {
	case AccountChange:
		m.targetUser()
		m.status()
	case APIActivity:
		m.resources()
		m.status()
	case Authentication:
		m.authentication()
	}
	if v2 {
		m.observables()
	}
	if u := m.unmapped(); len(u) > 0 {
		m.out["unmapped"] = u
	}
	return m.out, nil
}

// withDecodedParams undoes what some pipelines do to requestParameters
// (serialise it to a JSON string): CloudTrail delivers an object, and that
// is what Security Lake maps.
func withDecodedParams(ev map[string]any) map[string]any {
	s, ok := ev["requestParameters"].(string)
	if !ok {
		return ev
	}
	v, err := value.FromJSON([]byte(s))
	if _, isMap := v.(map[string]any); err != nil || !isMap {
		return ev
	}
	cp := maps.Clone(ev)
	cp["requestParameters"] = v
	return cp
}

func (m *mapping) header(class int, name string) {
	uid, cat, catName := class, 3, "Identity & Access Management"
	var id int
	switch class {
	case AccountChange:
		id = activity(accountChangeActivity, name)
	case Authentication:
		id = activity(authenticationActivity, name)
	default:
		id, cat, catName = activity(apiActivity, name), 6, "Application Activity"
	}
	actName := activityNames[class][id]
	className := classNames[class]
	if !m.v2 {
		// rc.2 has no IAM category: every CloudTrail class is Audit Activity,
		// and API Activity is its class 5.
		cat, catName = 3, "Audit Activity"
		if class == APIActivity {
			uid = APIActivityRC2
		}
	}
	m.set("class_uid", int64(uid))
	m.set("class_name", className)
	m.set("category_uid", int64(cat))
	m.set("category_name", catName)
	m.set("activity_id", int64(id))
	m.set("activity_name", actName)
	m.set("type_uid", int64(uid*100+id))
	m.set("type_name", className+": "+actName)
	m.set("severity_id", int64(1))
	m.set("severity", "Informational")
	m.set("cloud.provider", "AWS")
	m.set("metadata.product.name", "CloudTrail")
	m.set("metadata.product.vendor_name", "AWS")
	if m.v2 {
		m.set("metadata.version", VersionV2)
		m.set("metadata.profiles", []any{"cloud", "datetime"})
	} else {
		m.set("metadata.version", VersionV1)
		m.set("metadata.profiles", []any{"cloud"})
	}
}

func (m *mapping) actor(class int) {
	if m.v2 {
		m.move("userIdentity.accountId", "actor.user.account.uid")
		m.move("userIdentity.arn", "actor.user.uid")
		m.move("userIdentity.principalId", "actor.user.uid_alt")
	} else {
		m.move("userIdentity.accountId", "actor.user.account_uid")
		m.move("userIdentity.arn", "actor.user.uuid")
		m.move("userIdentity.principalId", "actor.user.uid")
	}
	m.move("userIdentity.accessKeyId", "actor.user.credential_uid")
	m.move("userIdentity.userName", "actor.user.name")
	m.move("userIdentity.type", "actor.user.type")
	m.move("userIdentity.invokedBy", "actor.invoked_by")
	m.move("userIdentity.sessionContext.sessionIssuer.arn", "actor.session.issuer")
	// The tables write userIdentity.webIdFederationData; CloudTrail puts it
	// under sessionContext. Both are read.
	m.moveFirst("actor.idp.name", "userIdentity.webIdFederationData.federatedProvider",
		"userIdentity.sessionContext.webIdFederationData.federatedProvider", "userIdentity.identityProvider")
	if m.v2 {
		// Added to the 1.1.0 tables for IAM Identity Center (f2b38930).
		m.moveFirst("actor.user.credential_uid", "userIdentity.credentialId")
		m.moveFirst("actor.user.name", "additionalEventData.UserName")
		m.moveFirst("actor.user.uid_alt", "userIdentity.onBehalfOf.userId")
		if class != AccountChange {
			m.moveFirst("actor.idp.uid", "userIdentity.onBehalfOf.identityStoreArn")
		}
	}
	created := "userIdentity.sessionContext.attributes.creationDate"
	if s, ok := m.get(created).(string); ok {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			m.use(created)
			if m.v2 {
				m.set("actor.session.created_time_dt", datetime(t))
			} else {
				m.set("actor.session.created_time", t.UnixMilli())
			}
		}
	}
	mfa := "userIdentity.sessionContext.attributes.mfaAuthenticated"
	if b, ok := boolText(m.get(mfa)); ok {
		m.use(mfa)
		if m.v2 {
			m.set("actor.session.is_mfa", b)
		} else {
			m.set("actor.session.mfa", b)
		}
	}
}

func (m *mapping) api() {
	m.move("eventName", "api.operation")
	m.move("eventSource", "api.service.name")
	m.move("apiVersion", "api.version")
	m.move("errorCode", "api.response.error")
	m.move("errorMessage", "api.response.message")
	if m.v2 {
		m.moveJSON("requestParameters", "api.request.data")
		m.moveJSON("responseElements", "api.response.data")
	}
	// The samples always have request.uid (required in request); for an
	// event without requestID they write the two characters '' there, an
	// artefact this writes as the empty string.
	if !m.move("requestID", "api.request.uid") {
		m.set("api.request.uid", "")
	}
}

func (m *mapping) common(t time.Time) {
	m.set("time", t.UnixMilli())
	if m.v2 {
		m.set("time_dt", datetime(t))
		m.move("eventType", "metadata.event_code")
	}
	m.move("awsRegion", "cloud.region")
	m.move("userAgent", "http_request.user_agent")
	m.move("eventVersion", "metadata.product.version")
	m.move("eventID", "metadata.uid")
	if !m.move("eventCategory", "metadata.product.feature.name") {
		// The default the API Activity sample shows for an event without one.
		m.set("metadata.product.feature.name", "Management, Data, and Insights")
	}
	m.move("vpcEndpointId", "src_endpoint.uid")
	if s, ok := m.get("sourceIPAddress").(string); ok {
		m.use("sourceIPAddress")
		// Not every sourceIPAddress is an address: "AWS Internal" or a
		// service name goes to domain.
		if _, err := netip.ParseAddr(s); err == nil {
			m.set("src_endpoint.ip", s)
		} else {
			m.set("src_endpoint.domain", s)
		}
	}
}

// targetUser fills user, the identity an Account Change acts on.
func (m *mapping) targetUser() {
	m.moveFirst("user.name", "responseElements.role.path", "responseElements.role.description",
		"requestParameters.userName", "responseElements.role.roleName", "responseElements.user.userName",
		"requestParameters.roleName")
	if m.v2 {
		m.moveFirst("user.uid", "responseElements.user.arn", "responseElements.role.roleId")
		m.moveFirst("user.uid_alt", "responseElements.user.userId")
	} else {
		m.moveFirst("user.uid", "responseElements.role.roleId", "responseElements.user.userId")
	}
	if m.out["user"] == nil {
		m.moveFirst("user.uid", "userIdentity.principalId")
	}
}

// status follows errorCode in Account Change and API Activity.
func (m *mapping) status() {
	failed := text(m.get("errorCode")) != ""
	status, id := "Success", int64(1)
	if failed {
		status, id = "Failure", 2
	}
	m.set("status", status)
	if !m.v2 {
		m.set("status_id", id)
	}
}

func (m *mapping) resources() {
	list, ok := m.get("resources").([]any)
	if !ok {
		return
	}
	var out []any
	for _, r := range list {
		r, ok := r.(map[string]any)
		if !ok {
			return // leave an odd list to unmapped whole
		}
		res := map[string]any{}
		put := func(key string, v any) {
			if s := text(v); s != "" {
				res[key] = s
			}
		}
		put("uid", r["ARN"])
		put("type", r["type"])
		if m.v2 {
			if acct := text(r["accountId"]); acct != "" {
				res["owner"] = map[string]any{"account": map[string]any{"uid": acct}}
			}
		} else {
			put("account_uid", r["accountId"])
		}
		out = append(out, res)
	}
	m.use("resources")
	m.set("resources", out)
}

func (m *mapping) authentication() {
	if m.v2 {
		m.moveFirst("user.uid", "requestParameters.roleArn", "userIdentity.arn")
		m.moveFirst("user.uid_alt", "userIdentity.principalId")
	} else {
		m.moveFirst("user.uid", "userIdentity.principalId")
		m.moveFirst("user.uuid", "requestParameters.roleArn", "userIdentity.arn")
	}
	m.moveFirst("user.name", "requestParameters.roleSessionName")
	m.move("additionalEventData.LoginTo", "dst_endpoint.svc_name")
	if s, ok := m.get("responseElements.ConsoleLogin").(string); ok {
		m.use("responseElements.ConsoleLogin")
		m.set("status", s)
		if !m.v2 {
			m.set("status_id", map[string]int64{"Success": 1, "Failure": 2}[s])
		}
	}
	if s, ok := m.get("additionalEventData.MFAUsed").(string); ok && (s == "Yes" || s == "No") {
		m.use("additionalEventData.MFAUsed")
		if m.v2 {
			m.set("is_mfa", s == "Yes")
		} else {
			m.set("mfa", s == "Yes")
		}
	}
}

// observables lists the addresses and user names of the record, sorted by
// name, as the 1.1.0 samples do.
func (m *mapping) observables() {
	var obs []any
	for _, o := range []struct {
		path, typ string
		id        int64
	}{{"actor.user.name", "User Name", 4}, {"src_endpoint.ip", "IP Address", 2}, {"user.name", "User Name", 4}} {
		if s, ok := lookup(m.out, o.path).(string); ok && s != "" {
			obs = append(obs, map[string]any{"name": o.path, "type": o.typ, "type_id": o.id, "value": s})
		}
	}
	if obs != nil {
		m.set("observables", obs)
	}
}

// unmapped flattens every CloudTrail field not placed elsewhere.
func (m *mapping) unmapped() map[string]any {
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m.isUsed(prefix) {
			return
		}
		switch v := v.(type) {
		case nil:
		case []any:
			if len(v) > 0 {
				out[prefix] = flatText(v)
			}
		case map[string]any:
			for k, x := range v {
				walk(join(prefix, k), x)
			}
		default:
			out[prefix] = flatText(v)
		}
	}
	for k, v := range m.ev {
		walk(k, v)
	}
	return out
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// get follows a dotted CloudTrail path through nested objects.
func (m *mapping) get(path string) any { return lookup(m.ev, path) }

func lookup(v any, path string) any {
	for _, seg := range strings.Split(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[seg]
	}
	return v
}

func (m *mapping) use(paths ...string) {
	for _, p := range paths {
		m.used[p] = true
	}
}

// isUsed reports whether path or one of its parents was placed.
func (m *mapping) isUsed(path string) bool {
	for p := path; ; {
		if m.used[p] {
			return true
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

// move places a scalar CloudTrail field at an OCSF path (as text, since
// every OCSF field the mappings fill from CloudTrail scalars is a string).
func (m *mapping) move(from, to string) bool {
	v := m.get(from)
	if v == nil || isContainer(v) {
		return false
	}
	m.use(from)
	m.set(to, text(v))
	return true
}

// moveFirst places the first present of froms at to, unless to is set.
// Every alternative counts as mapped, present or not: the rc.2 Account
// Change sample leaves responseElements.user.userName out of unmapped
// though user.name came from requestParameters.userName.
func (m *mapping) moveFirst(to string, froms ...string) {
	done := lookup(m.out, to) != nil
	for _, f := range froms {
		if !done {
			done = m.move(f, to)
		} else if v := m.get(f); v != nil && !isContainer(v) {
			m.use(f)
		}
	}
}

// moveJSON places a whole CloudTrail object at a json_t path as JSON text,
// as the samples show (api.request.data "{\"userName\":\"test_user2\"}").
func (m *mapping) moveJSON(from, to string) {
	v := m.get(from)
	if v == nil {
		return
	}
	m.use(from)
	m.set(to, string(value.ToJSON(v)))
}

// set writes v at a dotted OCSF path, creating the objects on the way.
func (m *mapping) set(path string, v any) {
	segs := strings.Split(path, ".")
	obj := m.out
	for _, s := range segs[:len(segs)-1] {
		next, ok := obj[s].(map[string]any)
		if !ok {
			next = map[string]any{}
			obj[s] = next
		}
		obj = next
	}
	obj[segs[len(segs)-1]] = v
}

func isContainer(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}

// text writes a scalar as a string ("" for nil and containers).
func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case int:
		return strconv.Itoa(v)
	case uint64:
		return strconv.FormatUint(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// flatText is text, with arrays as JSON.
func flatText(v any) string {
	if a, ok := v.([]any); ok {
		return string(value.ToJSON(a))
	}
	return text(v)
}

func boolText(v any) (bool, bool) {
	switch v := v.(type) {
	case bool:
		return v, true
	case string:
		b, err := strconv.ParseBool(v)
		return b, err == nil
	}
	return false, false
}

func datetime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }
