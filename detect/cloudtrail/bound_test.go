package cloudtrail

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// bounds pairs each value an Event holds with its bound.
func bounds(e *Event) map[string]struct {
	v     string
	limit int
} {
	type b = struct {
		v     string
		limit int
	}
	m := map[string]b{
		"Name": {e.Name, MaxEventName}, "Source": {e.Source, MaxEventSource}, "ErrorCode": {e.ErrorCode, MaxErrorCode},
		"ErrorMessage": {e.ErrorMessage, MaxErrorMessage}, "ID": {e.ID, MaxEventID}, "Time": {e.Time, MaxEventTime},
		"Region": {e.Region, MaxRegion}, "Account": {e.Account, MaxAccountID}, "SourceIP": {e.SourceIP, MaxSourceIP},
		"UserAgent": {e.UserAgent, MaxUserAgent}, "Actor.Type": {e.Actor.Type, MaxIdentityType}, "Actor.ARN": {e.Actor.ARN, MaxARN},
		"Actor.UserName": {e.Actor.UserName, MaxUserName}, "Actor.AccessKeyID": {e.Actor.AccessKeyID, MaxAccessKeyID},
		"Actor.AccountID": {e.Actor.AccountID, MaxAccountID},
	}
	for name, l := range params {
		m["Params."+name] = b{e.Param(name), l.Max}
	}
	if x := e.Exposure; x != nil {
		m["Exposure.Code"] = b{x.Code, MaxHealthCode}
		m["Exposure.Notice"] = b{x.Notice, MaxNotice}
		m["Exposure.User"] = b{x.User, MaxUserName}
		m["Exposure.URL"] = b{x.URL, MaxExposedURL}
	}
	return m
}

// checkBounded fails when a value of e is past its bound, or when e held
// none past one although want says it must have.
func checkBounded(t *testing.T, where string, e *Event, want bool) {
	t.Helper()
	for name, f := range bounds(e) {
		if len(f.v) > f.limit {
			t.Errorf("%s: %s is %d bytes, bound %d", where, name, len(f.v), f.limit)
		}
	}
	if x := e.Exposure; x != nil && len(x.Keys) > MaxExposureKeys {
		t.Errorf("%s: %d exposed keys", where, len(x.Keys))
	}
	if want && e.Oversized == 0 {
		t.Errorf("%s: nothing counted oversized", where)
	}
}

func huge(n int, tag string) string { return tag + strings.Repeat("x", n) }

// Every record shape, on the fast path and the map path, with every value
// the shape has blown up: each value of the event is within its bound,
// the event still matches what it is, and the oversized values are
// counted the same both ways.
func TestEveryShapeIsBounded(t *testing.T) {
	const n = 100_000
	big := func(tag string) string { return huge(n, tag) }
	quarantine := "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"
	params := map[string]any{"userName": big("u"), "groupName": big("g"), "roleName": big("r"), "accessKeyId": big("AKIA"),
		"policyArn": quarantine + big(""), "policyName": big("AWSCompromisedKeyQuarantine"), "status": big("Inactive"), "other": big("o")}
	event := map[string]any{
		"eventName": big("AttachUserPolicy"), "eventSource": big("iam"), "errorCode": big("AccessDenied"),
		"errorMessage": "with an explicit deny in an identity-based policy: " + quarantine + " " + big("m"),
		"eventID":      big("id"), "eventTime": big("2026"), "awsRegion": big("us"), "recipientAccountId": big("1"),
		"sourceIPAddress": big("10."), "userAgent": big("aws-cli"),
		"userIdentity":      map[string]any{"type": big("IAMUser"), "arn": big("arn"), "userName": big("u"), "accessKeyId": big("AKIA"), "accountId": big("2")},
		"requestParameters": params,
	}
	health := map[string]any{"source": "aws.health", "detail-type": "AWS Health Event", "id": big("id"), "time": big("t"),
		"region": big("r"), "account": big("1"), "resources": []any{big("arn:aws:iam::1:user/")},
		"detail": map[string]any{"eventTypeCode": big("AWS_RISK"), "communicationId": big("c"), "affectedEntities": entities(40),
			"eventMetadata": map[string]any{"userName": big("u"), "exposedUrl": big("https://github.com/")}}}
	ecs := map[string]any{"event.action": big("AttachUserPolicy"), "event.provider": big("iam"), "event.id": big("id"),
		"@timestamp": big("2026"), "cloud.region": big("r"), "cloud.account.id": big("1"), "source.ip": big("10."),
		"user_agent.original": big("ua"), "user.name": big("u"), "aws.cloudtrail.error_code": big("e"), "aws.cloudtrail.error_message": big("m"),
		"aws.cloudtrail.user_identity":      map[string]any{"type": big("t"), "arn": big("a"), "access_key_id": big("AKIA")},
		"aws.cloudtrail.request_parameters": fmt.Sprintf("{userName=%s, policyArn=%s}", big("u"), quarantine)}
	ocsf := map[string]any{"api": map[string]any{"operation": big("AttachUserPolicy"), "service": map[string]any{"name": big("iam")},
		"request": map[string]any{"data": string(value.ToJSON(params))}, "response": map[string]any{"error": big("e"), "message": big("m")}},
		"metadata": map[string]any{"uid": big("id")}, "cloud": map[string]any{"region": big("r"), "account": map[string]any{"uid": big("1")}},
		"src_endpoint": map[string]any{"ip": big("10.")}, "http_request": map[string]any{"user_agent": big("ua")},
		"actor": map[string]any{"user": map[string]any{"type": big("t"), "uuid": big("arn"), "name": big("u"), "credential_uid": big("AKIA")}}}
	shapes := map[string]map[string]any{
		"event":       event,
		"log file":    {"Records": []any{event, event}},
		"eventbridge": {"detail-type": "AWS API Call via CloudTrail", "detail": event},
		"json string": {"log": string(value.ToJSON(event))},
		"health":      health,
		"ecs":         ecs,
		"ocsf":        ocsf,
	}
	r := Resolver{EventKeys: []string{"log"}}
	for name, body := range shapes {
		var fast, slow []*Event
		if _, _, err := r.ResolveMsgpack(value.AppendMsgpack(nil, body), func(e *Event) { fast = append(fast, e) }); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r.Resolve(body, func(e *Event) { slow = append(slow, e) })
		if len(fast) == 0 || len(fast) != len(slow) {
			t.Fatalf("%s: %d events fast, %d the map way", name, len(fast), len(slow))
		}
		for i := range fast {
			checkBounded(t, name+" (fast)", fast[i], true)
			checkBounded(t, name+" (map)", slow[i], true)
			if fast[i].Oversized != slow[i].Oversized {
				t.Errorf("%s: %d oversized fast, %d the map way", name, fast[i].Oversized, slow[i].Oversized)
			}
		}
	}
	if got := params["userName"]; got != big("u") {
		t.Errorf("the record's own request parameters were changed (the alert carries them): %.40s", got)
	}
}

// Forty keys named in one notice.
func entities(n int) []any {
	var out []any
	for i := range n {
		out = append(out, map[string]any{"entityValue": fmt.Sprintf("AKIA%016d", i)})
	}
	return out
}

// At its bound a value is kept as it is; one byte past, text keeps its
// head and says how much was cut, an identifier becomes its digest, the
// same for the same value and different for another, and neither passes
// the bound, whatever the bytes.
func TestValuesPastTheirBound(t *testing.T) {
	for _, l := range Limits {
		if l.Digest && l.Max < DigestLen || !l.Digest && l.Max < len(cutMarker(1<<62)) {
			t.Errorf("%s: a bound of %d is shorter than what replaces a value past it", l.Field, l.Max)
		}
		at := strings.Repeat("é", l.Max/2) + strings.Repeat("a", l.Max%2)
		s := at
		if n := cut(&s, l); n != 0 || s != at {
			t.Errorf("%s: a value at its bound was changed", l.Field)
		}
		for _, past := range []string{at + "b", at + "é", strings.Repeat("\xff", l.Max+1), strings.Repeat("é", 1<<20)} {
			s := past
			if n := cut(&s, l); n != 1 || len(s) > l.Max {
				t.Errorf("%s: %d bytes cut to %d (counted %d)", l.Field, len(past), len(s), n)
			}
			k := strings.LastIndex(s, "...[")
			switch {
			case l.Digest && s != Digest([]byte(past)):
				t.Errorf("%s: %q is not the digest", l.Field, s)
			case !l.Digest && (k < 0 || s[:k] != past[:k] || s[k:] != fmt.Sprintf("...[%d bytes cut]", len(past)-k)):
				t.Errorf("%s: not the head and a marker of what was cut: %q", l.Field, s[max(0, len(s)-60):])
			case !l.Digest && utf8.ValidString(past) && !utf8.ValidString(s):
				t.Errorf("%s: cut inside a character", l.Field)
			}
		}
		if l.Digest {
			a, b := at+"1", at+"2"
			cut(&a, l)
			cut(&b, l)
			if a == b {
				t.Errorf("%s: two values, one digest", l.Field)
			}
		}
	}
}

func cut(s *string, l Limit) int {
	if l.Digest {
		return ident(s, l.Max)
	}
	return text(s, l.Max)
}

// The request parameters a rule reads are bounded in a copy: the map may
// be the record's own.
func TestParamsAreCopiedBeforeACut(t *testing.T) {
	own := map[string]any{"userName": huge(100, "u"), "policyDocument": huge(100_000, "d")}
	e := &Event{Params: own}
	bound(e)
	if own["userName"] != huge(100, "u") || e.Param("userName") != Digest([]byte(huge(100, "u"))) || e.Oversized != 1 {
		t.Fatalf("own %.20q, event %q, %d oversized", own["userName"], e.Param("userName"), e.Oversized)
	}
	if !maps.Equal(map[string]bool{"userName": true, "policyDocument": true}, keysOf(e.Params)) {
		t.Fatalf("params %v", keysOf(e.Params))
	}
}

func keysOf(m map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}
