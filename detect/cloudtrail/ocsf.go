package cloudtrail

import (
	"cmp"
	"maps"
	"strconv"
	"strings"
	"time"
)

// fromOCSF reads an OCSF record of a CloudTrail call back into CloudTrail's
// terms. Amazon Security Lake writes them in two schema versions, source
// version 2 (OCSF 1.1.0) and 1 (1.0.0-rc.2), and puts a call in Account
// Change, Authentication or API Activity depending on its name; other
// producers use API Activity alone. Each field is looked up by name under
// both versions' spellings, and class_uid is never consulted: a call that
// lands in a class the rules did not expect must still be seen.
func fromOCSF(m map[string]any, op string) *Event {
	unmapped, _ := path(m, "unmapped").(map[string]any)
	e := &Event{
		Name:   op,
		Source: pathStr(m, "api.service.name"),
		// Security Lake writes the CloudTrail error in api.response.error
		// and its message in api.response.message; error_message is the
		// schema's own field for the latter, used by other producers.
		ErrorCode:    pathStr(m, "api.response.error"),
		ErrorMessage: cmp.Or(pathStr(m, "api.response.message"), pathStr(m, "api.response.error_message")),
		ID:           pathStr(m, "metadata.uid"),
		Time:         ocsfTime(m),
		Region:       pathStr(m, "cloud.region"),
		SourceIP:     cmp.Or(pathStr(m, "src_endpoint.ip"), pathStr(m, "src_endpoint.domain")),
		UserAgent:    pathStr(m, "http_request.user_agent"),
		Actor: Actor{
			Type:        pathStr(m, "actor.user.type"),
			ARN:         cmp.Or(pathStr(m, "actor.user.uuid"), arnOnly(pathStr(m, "actor.user.uid"))),
			UserName:    pathStr(m, "actor.user.name"),
			AccessKeyID: pathStr(m, "actor.user.credential_uid"),
			AccountID:   cmp.Or(pathText(m, "actor.user.account.uid"), pathText(m, "actor.user.account_uid")),
		},
		Params: ocsfParams(m, op, unmapped),
		Raw:    m,
		Shape:  ShapeOCSF,
	}
	// The mappings leave recipientAccountId in unmapped; cloud.account is
	// where the schema would have it (1.1.0 nests it, rc.2 does not).
	e.Account = cmp.Or(pathText(m, "cloud.account.uid"), pathText(m, "cloud.account_uid"),
		scalarText(unmapped["recipientAccountId"]), e.Actor.AccountID)
	if e.ErrorCode == "" && ocsfFailed(m) {
		// As for ECS: a record that says the call failed but lost its error
		// code must never read as a successful quarantine.
		e.ErrorCode = Failure
	}
	return e
}

// arnOnly keeps actor.user.uid when it is an ARN, as in 1.1.0; in rc.2 uid
// is the principalId and the ARN is in uuid.
func arnOnly(s string) string {
	if strings.HasPrefix(s, "arn:") {
		return s
	}
	return ""
}

// ocsfTime is the record's time (epoch milliseconds) as RFC 3339, the form
// CloudTrail's eventTime has, or time_dt as written when time is unusable.
func ocsfTime(m map[string]any) string {
	var ms int64
	switch v := path(m, "time").(type) {
	case int64:
		ms = v
	case uint64:
		if v <= 1<<62 {
			ms = int64(v)
		}
	case float64:
		if v > 0 && v < 1<<53 {
			ms = int64(v)
		}
	}
	if ms > 0 {
		return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
	}
	return pathStr(m, "time_dt")
}

// ocsfFailed reads status_id 2 (Failure) or the status caption; AWS's
// Security Lake query examples spell it "failed".
func ocsfFailed(m map[string]any) bool {
	switch v := path(m, "status_id").(type) {
	case int64:
		if v == 2 {
			return true
		}
	case uint64:
		if v == 2 {
			return true
		}
	}
	s := pathStr(m, "status")
	return strings.EqualFold(s, "failure") || strings.EqualFold(s, "failed")
}

// ocsfParams finds the request parameters: api.request.data in 1.1.0 (a
// JSON string as Security Lake writes it, or an object), else unmapped,
// where rc.2, having no request.data, keeps them.
func ocsfParams(m map[string]any, op string, unmapped map[string]any) map[string]any {
	if p := toParams(path(m, "api.request.data")); p != nil {
		return p
	}
	p := unmappedParams(unmapped)
	// The rc.2 mapping moves requestParameters.userName (or .roleName) to
	// user.name, the target of an Account Change, and drops it from
	// unmapped; put it back under the name the rules read. AssumeRole* are
	// Authentication, where user.name is the role session name instead.
	name := pathStr(m, "user.name")
	if name == "" || strings.HasPrefix(op, "AssumeRole") {
		return p
	}
	key := "userName"
	if strings.Contains(op, "Role") {
		key = "roleName"
	}
	if _, ok := p[key]; ok {
		return p
	}
	if p == nil {
		p = map[string]any{}
	}
	p[key] = name
	return p
}

// unmappedParams gathers requestParameters from unmapped: flattened keys
// (requestParameters.policyArn, as Security Lake v1 writes them) or a
// requestParameters object or JSON string. The result is a new map, so
// adding to it leaves the record (the alert's event) as it arrived.
// Deeper flattened keys stay flat (tags.0.key): no rule reads below the
// first level, and rebuilding would depend on the order keys are seen.
func unmappedParams(unmapped map[string]any) map[string]any {
	var p map[string]any
	if base := toParams(unmapped["requestParameters"]); base != nil {
		p = maps.Clone(base)
	}
	for k, v := range unmapped {
		sub, ok := strings.CutPrefix(k, "requestParameters.")
		if !ok || sub == "" {
			continue
		}
		if p == nil {
			p = map[string]any{}
		}
		if _, dup := p[sub]; !dup {
			p[sub] = v
		}
	}
	return p
}

// pathText is pathStr that also accepts an integer (account ids sometimes
// arrive as numbers).
func pathText(m map[string]any, name string) string { return scalarText(path(m, name)) }

func scalarText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	}
	return ""
}
