package alert

import (
	"net"
	"strings"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// OCSF writes each alert as an OCSF Detection Finding (class 2004), for
// Amazon Security Lake custom sources and SIEMs that read OCSF.
const OCSF Format = ECS + 1

// OCSFVersion is the newest OCSF release Amazon Security Lake accepts from
// custom sources.
const OCSFVersion = "1.1.0"

// An ocsfField writes one key and its value. A nil field writes nothing,
// so optional fields drop out and every map's entry count (which msgpack
// writes first) is counted rather than kept by hand.
type ocsfField func(encoder)

func ocsfStr(k, v string) ocsfField {
	if v == "" {
		return nil
	}
	return func(e encoder) { e.str(k, v) }
}

func ocsfInt(k string, v int) ocsfField { return func(e encoder) { e.int(k, v) } }

func ocsfStrs(k string, v []string) ocsfField {
	if len(v) == 0 {
		return nil
	}
	return func(e encoder) { e.strs(k, v) }
}

// ocsfObj is nil when none of its fields is written: OCSF objects must not
// be empty.
func ocsfObj(k string, fields ...ocsfField) ocsfField {
	fields = ocsfPresent(fields)
	if len(fields) == 0 {
		return nil
	}
	return func(e encoder) { e.key(k); ocsfWrite(e, fields) }
}

// ocsfObjs is an array of objects, nil when it would be empty.
func ocsfObjs(k string, objs ...[]ocsfField) ocsfField {
	var kept [][]ocsfField
	for _, o := range objs {
		if o = ocsfPresent(o); len(o) > 0 {
			kept = append(kept, o)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return func(e encoder) {
		e.key(k)
		e.array(len(kept))
		for _, o := range kept {
			ocsfWrite(e, o)
		}
		e.endArray()
	}
}

// ocsfIf keeps f only when cond holds: for objects OCSF forbids without a
// field they require (api without operation, remediation without desc).
func ocsfIf(cond bool, f ocsfField) ocsfField {
	if !cond {
		return nil
	}
	return f
}

func ocsfPresent(fields []ocsfField) []ocsfField {
	out := fields[:0:0]
	for _, f := range fields {
		if f != nil {
			out = append(out, f)
		}
	}
	return out
}

func ocsfWrite(e encoder, fields []ocsfField) {
	e.begin(len(fields))
	for _, f := range fields {
		f(e)
	}
	e.end()
}

type ocsfCaption struct {
	id      int
	caption string
}

var ocsfSeverity = map[string]ocsfCaption{"low": {2, "Low"}, "medium": {3, "Medium"}, "high": {4, "High"}, "critical": {5, "Critical"}}

// ocsfIAMTypes name IAM identities and policies as CloudFormation and AWS
// Config do.
var ocsfIAMTypes = map[string]string{"user": "User", "group": "Group", "role": "Role"}

// ocsfFields writes the alert as a Detection Finding of OCSFVersion.
//
// The CloudTrail call that triggered the finding is its evidence: in 2004
// the class-level actor belongs to the host profile and there is no
// src_endpoint, so caller, API and source sit in evidences[0], as in the
// OCSF mapping of GuardDuty findings from Security Hub. The IAM identity
// and the policy are the resources. A key's lifecycle (the exposed key and
// its owner, when it was exposed and quarantined, how long each step took)
// joins as one more resources entry; the calls a use alert stands for as
// the class-level count, start_time and end_time. Not duration: in 1.1.0
// it is a 32-bit count of milliseconds, 24 days at most.
func (a *Alert) ocsfFields(e encoder) {
	var raw []byte
	if a.Event != nil {
		raw = value.ToJSON(a.Event)
	}
	ms := int(a.Time.UnixMilli())
	_, offset := a.Time.Zone()
	sev, ok := ocsfSeverity[a.Rule.Severity]
	if !ok {
		sev = ocsfCaption{0, "Unknown"}
	}
	ocsfWrite(e, ocsfPresent([]ocsfField{
		ocsfInt("class_uid", 2004),
		ocsfStr("class_name", "Detection Finding"),
		ocsfInt("category_uid", 2),
		ocsfStr("category_name", "Findings"),
		ocsfInt("activity_id", 1),
		ocsfStr("activity_name", "Create"),
		ocsfInt("type_uid", 200401),
		ocsfStr("type_name", "Detection Finding: Create"),
		ocsfInt("severity_id", sev.id),
		ocsfStr("severity", sev.caption),
		ocsfInt("risk_score", a.Rule.RiskScore),
		ocsfInt("status_id", 1),
		ocsfStr("status", "New"),
		ocsfInt("time", ms),
		ocsfInt("timezone_offset", offset/60),
		ocsfStr("message", a.Title),
		ocsfObj("metadata",
			ocsfStr("version", OCSFVersion),
			ocsfObj("product",
				ocsfStr("name", "cloudtrail_quarantine"),
				ocsfStr("vendor_name", "cloudtrail_quarantine"),
				ocsfObj("feature", ocsfStr("name", "Access key quarantine detection"))),
			ocsfStr("uid", a.Key),
			ocsfStrs("profiles", []string{"cloud"})),
		a.ocsfFindingInfo(ms),
		ocsfObj("cloud",
			ocsfStr("provider", "AWS"),
			ocsfAWSAccount(a.AccountID),
			ocsfStr("region", a.Region)),
		ocsfObjs("evidences", a.ocsfEvidence()),
		ocsfObjs("resources", a.ocsfTarget(), a.ocsfPolicy(), a.ocsfAccessKey()),
		// The calls a use alert stands for, from its window's first call.
		ocsfIf(a.Use != nil, func(e encoder) { e.int("count", int(a.Use.Calls)) }),
		ocsfIf(a.Use != nil, func(e encoder) { e.int("start_time", int(a.Use.WindowStart.UnixMilli())) }),
		ocsfIf(a.Use != nil, func(e encoder) { e.int("end_time", ms) }),
		ocsfObjs("observables", a.ocsfObservables()...),
		ocsfIf(a.Rule.Runbook != "", ocsfObj("remediation",
			ocsfStr("desc", a.remediation()),
			ocsfStrs("references", a.remediationReferences()))),
		// raw_data, not unmapped, is OCSF's place for the original record.
		ocsfStr("raw_data", string(raw)),
		ocsfObj("unmapped",
			ocsfStr("user_agent", a.UserAgent),
			ocsfStr("record_shape", a.Shape),
			ocsfIf(a.EventTruncated, a.truncation)),
	}))
}

// ocsfAWSAccount is nil without uid: an account needs a name or uid.
func ocsfAWSAccount(uid string) ocsfField {
	if uid == "" {
		return nil
	}
	return ocsfObj("account", ocsfStr("uid", uid), ocsfInt("type_id", 10), ocsfStr("type", "AWS Account"))
}

// ocsfFindingInfo describes the finding: the rule as its analytic, ATT&CK,
// and the public rules that fire on the same events as related analytics.
// Its times are the event's: an alert is a function of its event alone, so
// a re-delivered alert is the same document.
func (a *Alert) ocsfFindingInfo(ms int) ocsfField {
	r := a.Rule
	var attacks, related [][]ocsfField
	for _, t := range r.MITRE {
		attacks = append(attacks, ocsfAttack(t))
	}
	for _, eq := range r.Equivalents {
		related = append(related, []ocsfField{ocsfStr("uid", eq), ocsfInt("type_id", 1), ocsfStr("type", "Rule")})
	}
	return ocsfObj("finding_info",
		ocsfStr("uid", a.Key),
		ocsfStr("title", a.Title),
		ocsfStr("desc", r.Description),
		ocsfStrs("types", []string{r.ID}),
		ocsfObj("analytic", ocsfStr("uid", r.ID), ocsfStr("name", r.Name), ocsfInt("type_id", 1), ocsfStr("type", "Rule")),
		ocsfObjs("attacks", attacks...),
		ocsfObjs("related_analytics", related...),
		ocsfObjs("related_events", []ocsfField{ocsfStr("uid", a.EventID)}),
		ocsfStrs("data_sources", []string{"AWS CloudTrail"}),
		ocsfInt("created_time", ms),
		ocsfInt("first_seen_time", ms),
		ocsfInt("last_seen_time", ms))
}

// ocsfAttack splits a sub-technique (T1078.004 "Valid Accounts: Cloud
// Accounts") into the technique and sub_technique OCSF has for each.
func ocsfAttack(t rules.Technique) []ocsfField {
	const attack = "https://attack.mitre.org/"
	technique, name := t.TechniqueID, t.TechniqueName
	var sub ocsfField
	if parent, _, ok := strings.Cut(t.TechniqueID, "."); ok {
		parentName, subName, _ := strings.Cut(t.TechniqueName, ": ")
		sub = ocsfObj("sub_technique",
			ocsfStr("uid", t.TechniqueID),
			ocsfStr("name", subName),
			ocsfStr("src_url", attack+"techniques/"+strings.ReplaceAll(t.TechniqueID, ".", "/")+"/"))
		technique, name = parent, parentName
	}
	return []ocsfField{
		ocsfObj("tactic", ocsfStr("uid", t.TacticID), ocsfStr("name", t.TacticName), ocsfStr("src_url", attack+"tactics/"+t.TacticID+"/")),
		ocsfObj("technique", ocsfStr("uid", technique), ocsfStr("name", name), ocsfStr("src_url", attack+"techniques/"+technique+"/")),
		sub,
	}
}

// ocsfEvidence is the CloudTrail call: caller, API and source.
func (a *Alert) ocsfEvidence() []ocsfField {
	return []ocsfField{
		a.ocsfActor(),
		ocsfIf(a.EventName != "", ocsfObj("api",
			ocsfStr("operation", a.EventName),
			ocsfObj("service", ocsfStr("name", a.EventSource)),
			ocsfObj("response", ocsfStr("error", a.ErrorCode), ocsfStr("error_message", a.ErrorMessage),
				// The id of the denial's evaluation (IAM's
				// GetRequestAuthorizationDetails): data of the response.
				ocsfObj("data", ocsfStr("authorization_id", a.AuthorizationID))))),
		ocsfObj("src_endpoint", a.ocsfSource()),
	}
}

// ocsfSource is src_endpoint's one field. CloudTrail writes an AWS service
// there when a service made the call ("AWS Internal", "iam.amazonaws.com"):
// OCSF 1.1.0 names that svc_name, and a src_endpoint with only a domain
// breaks the object's at_least_one constraint.
func (a *Alert) ocsfSource() ocsfField {
	if net.ParseIP(a.SourceIP) != nil {
		return ocsfStr("ip", a.SourceIP)
	}
	return ocsfStr("svc_name", a.SourceIP)
}

// ocsfHasUser says whether the event names the caller: OCSF's user needs
// a name, uid or account, and the account comes from the ARN.
func (a *Alert) ocsfHasUser() bool { return a.Actor.UserName != "" || a.Actor.ARN != "" }

// ocsfActor is the caller, with the account its ARN names.
func (a *Alert) ocsfActor() ocsfField {
	if !a.ocsfHasUser() {
		return nil
	}
	return ocsfObj("actor", ocsfObj("user",
		ocsfStr("type", a.Actor.Type),
		ocsfStr("name", a.Actor.UserName),
		ocsfStr("uid", a.Actor.ARN),
		ocsfStr("credential_uid", a.Actor.AccessKeyID),
		ocsfAWSAccount(arnAccount(a.Actor.ARN))))
}

// arnAccount is the account field of an ARN (arn:aws:iam::111122223333:user/x),
// "" when there is none.
func arnAccount(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" {
		return ""
	}
	return parts[4]
}

func (a *Alert) ocsfTarget() []ocsfField {
	if a.Target.Name == "" {
		return nil
	}
	return []ocsfField{ocsfStr("type", ocsfIAMType(a.Target.Type, "")), ocsfStr("name", a.Target.Name)}
}

// ocsfPolicy is the quarantine policy; version is its generation (V2,
// legacy, ...).
func (a *Alert) ocsfPolicy() []ocsfField {
	p := a.Policy
	if p.Name == "" {
		return nil
	}
	typ := "AWS::IAM::ManagedPolicy"
	if p.ARN == "" {
		typ = ocsfIAMType(a.Target.Type, "Policy") // inline: AWS::IAM::UserPolicy
	}
	return []ocsfField{ocsfStr("type", typ), ocsfStr("name", p.Name), ocsfStr("uid", p.ARN), ocsfStr("version", p.Version)}
}

// ocsfAccessKey is the exposed key's case as a resource: the key, its
// user as the owner, and its lifecycle as the resource's data.
func (a *Alert) ocsfAccessKey() []ocsfField {
	k := a.AccessKey
	if k == nil || (k.ID == "" && k.User == "") {
		return nil
	}
	var data []ocsfField
	for _, f := range a.keyFields() {
		if f.k != "id" && f.k != "user" && f.k != "account" {
			data = append(data, ocsfStr(f.k, f.v))
		}
	}
	for _, f := range a.lifecycle() {
		data = append(data, ocsfInt(f.k, f.v))
	}
	name := k.ID
	if name == "" {
		name = "access keys of " + k.User // its user is watched while the key is not known
	}
	return []ocsfField{
		ocsfStr("type", "AWS::IAM::AccessKey"),
		ocsfStr("uid", k.ID),
		ocsfStr("name", name),
		ocsfIf(k.User != "", ocsfObj("owner", ocsfStr("name", k.User), ocsfStr("type", "IAMUser"), ocsfInt("type_id", 99),
			ocsfAWSAccount(k.Account))),
		ocsfIf(len(data) > 0, ocsfObj("data", data...)),
	}
}

func ocsfIAMType(identity, suffix string) string {
	if t, ok := ocsfIAMTypes[identity]; ok {
		return "AWS::IAM::" + t + suffix
	}
	return ""
}

// ocsfObservables point at the values a SIEM pivots on, by their path in
// this document.
func (a *Alert) ocsfObservables() [][]ocsfField {
	var out [][]ocsfField
	add := func(name string, typeID int, typ, value string) {
		if value != "" {
			out = append(out, []ocsfField{ocsfStr("name", name), ocsfInt("type_id", typeID), ocsfStr("type", typ), ocsfStr("value", value)})
		}
	}
	if net.ParseIP(a.SourceIP) != nil {
		add("evidences[].src_endpoint.ip", 2, "IP Address", a.SourceIP)
	}
	if a.ocsfHasUser() {
		add("evidences[].actor.user.name", 4, "User Name", a.Actor.UserName)
		add("evidences[].actor.user.uid", 10, "Resource UID", a.Actor.ARN)
		// OCSF 1.1.0 has no observable type for a credential.
		add("evidences[].actor.user.credential_uid", 99, "AWS Access Key ID", a.Actor.AccessKeyID)
	}
	if a.Target.Type == "user" {
		add("resources[].name", 4, "User Name", a.Target.Name)
	}
	add("resources[].uid", 10, "Resource UID", a.Policy.ARN)
	return out
}

// remediation is the runbook and the commands, one a line: OCSF 1.1.0's
// remediation has no list of steps, only desc.
func (a *Alert) remediation() string {
	desc := "Follow the runbook: " + a.Rule.Runbook
	if len(a.Commands) > 0 {
		desc += "\nCommands:\n" + strings.Join(a.Commands, "\n")
	}
	return desc
}

// remediationReferences are the runbook, when it is a link, then the
// rule's references.
func (a *Alert) remediationReferences() []string {
	if !strings.Contains(a.Rule.Runbook, "://") {
		return a.Rule.References
	}
	return append([]string{a.Rule.Runbook}, a.Rule.References...)
}
