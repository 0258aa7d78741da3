package cloudtrail

import (
	"cmp"
	"strings"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Resolver turns a decoded record body into its CloudTrail events.
type Resolver struct {
	// EventKeys name the body keys that may hold an event as a JSON string
	// (Fluent Bit's tail and syslog inputs put the line under log/message).
	EventKeys []string
}

// Resolve calls emit for every CloudTrail event found in body and reports
// how many it found. A body that holds none is not an error.
func (r *Resolver) Resolve(body map[string]any, emit func(*Event)) int {
	return r.resolve(body, bounded(emit), true)
}

// ResolveRecord reads one element of a CloudTrail log file's Records,
// decoded on its own, as Resolve reads it inside the whole file.
func (r *Resolver) ResolveRecord(rec map[string]any, emit func(*Event)) int {
	return r.element(rec, emit, true)
}

// element reads one element of a Records array: a CloudTrail event of a
// log file, or, unless the array itself came out of a JSON string, an SNS
// notification of a Lambda event (see sns.go).
func (r *Resolver) element(rec map[string]any, emit func(*Event), unwrap bool) int {
	if rec = canonical(rec); rec["eventName"] != nil {
		bounded(emit)(fromCloudTrail(rec, ShapeLogFile))
		return 1
	}
	if env := snsRecord(rec); env != nil && unwrap {
		return r.resolveSNS(env, emit)
	}
	return 0
}

func (r *Resolver) resolve(body map[string]any, emit func(*Event), unwrap bool) int {
	body = canonical(body)
	if recs, ok := body["Records"].([]any); ok {
		n := 0
		for _, rec := range recs {
			if m, ok := rec.(map[string]any); ok {
				n += r.element(m, emit, unwrap)
			}
		}
		return n
	}
	if body["eventName"] != nil {
		emit(fromCloudTrail(body, ShapeEvent))
		return 1
	}
	if d, ok := body["detail"].(map[string]any); ok {
		if isHealth(body) {
			emit(fromHealth(body, d))
			return 1
		}
		if d = canonical(d); d["eventName"] != nil {
			emit(fromCloudTrail(d, ShapeEventBridge))
			return 1
		}
	}
	if action := pathStr(body, "event.action"); action != "" {
		emit(fromECS(body, action))
		return 1
	}
	if op := pathStr(body, "api.operation"); op != "" {
		emit(fromOCSF(body, op))
		return 1
	}
	if !unwrap {
		return 0
	}
	if _, ok := snsMessage(body); ok {
		return r.resolveSNS(body, emit)
	}
	for _, key := range r.EventKeys {
		// Case-insensitive, as Fluent Bit's own keys: the default "message"
		// also reads a "Message".
		if s, ok := lookupFold(body, key).(string); ok {
			// One level only: a JSON string inside a JSON string is not a
			// shape any CloudTrail pipeline produces.
			if n := r.resolveText(s, emit); n > 0 {
				return n
			}
		}
	}
	return 0
}

func looksLikeObject(s string) bool {
	t := strings.TrimSpace(s)
	return len(t) > 1 && t[0] == '{'
}

func fromCloudTrail(m map[string]any, shape Shape) *Event {
	id := obj(m, "userIdentity")
	return &Event{
		Name:         str(m, "eventName"),
		Source:       str(m, "eventSource"),
		ErrorCode:    str(m, "errorCode"),
		ErrorMessage: str(m, "errorMessage"),
		ID:           str(m, "eventID"),
		Time:         str(m, "eventTime"),
		Region:       str(m, "awsRegion"),
		Account:      cmp.Or(str(m, "recipientAccountId"), str(id, "accountId")),
		SourceIP:     str(m, "sourceIPAddress"),
		UserAgent:    str(m, "userAgent"),
		Actor: Actor{
			Type:        str(id, "type"),
			ARN:         str(id, "arn"),
			UserName:    str(id, "userName"),
			AccessKeyID: str(id, "accessKeyId"),
			AccountID:   str(id, "accountId"),
		},
		Params: toParams(field(m, "requestParameters")),
		Raw:    m,
		Shape:  shape,
	}
}

// Unread names CloudTrail keys that no shape or rule reads, at any depth:
// a candidate record's decoder may keep them undecoded (value.Raw).
var Unread = map[string]bool{
	"responseElements": true, "tlsDetails": true, "sessionContext": true, "additionalEventData": true,
	"resources": true, "serviceEventDetails": true, "edgeDeviceDetails": true, "insightDetails": true,
}

// fromECS maps the fields of Elastic's AWS CloudTrail integration back to
// their CloudTrail names.
func fromECS(m map[string]any, action string) *Event {
	errCode := pathStr(m, "aws.cloudtrail.error_code")
	if errCode == "" && strings.EqualFold(pathStr(m, "event.outcome"), "failure") {
		// ECS keeps the outcome even where the integration dropped the code;
		// a failed call must never read as a successful quarantine.
		errCode = Failure
	}
	account := pathStr(m, "cloud.account.id")
	return &Event{
		Name:         action,
		Source:       pathStr(m, "event.provider"),
		ErrorCode:    errCode,
		ErrorMessage: pathStr(m, "aws.cloudtrail.error_message"),
		ID:           pathStr(m, "event.id"),
		Time:         cmp.Or(pathStr(m, "@timestamp"), pathStr(m, "event.created")),
		Region:       pathStr(m, "cloud.region"),
		Account:      account,
		SourceIP:     cmp.Or(pathStr(m, "source.ip"), pathStr(m, "source.address")),
		UserAgent:    pathStr(m, "user_agent.original"),
		Actor: Actor{
			Type:        pathStr(m, "aws.cloudtrail.user_identity.type"),
			ARN:         pathStr(m, "aws.cloudtrail.user_identity.arn"),
			UserName:    pathStr(m, "user.name"),
			AccessKeyID: pathStr(m, "aws.cloudtrail.user_identity.access_key_id"),
			AccountID:   account,
		},
		Params: toParams(path(m, "aws.cloudtrail.request_parameters")),
		Raw:    m,
		Shape:  ShapeECS,
	}
}

// toParams accepts requestParameters as a map, a JSON string, or the
// "{key=value, ...}" text Elastic's integration flattens it to.
func toParams(v any) map[string]any {
	switch v := v.(type) {
	case map[string]any:
		return v
	case string:
		if m, err := value.FromJSON([]byte(v)); err == nil {
			if mm, ok := m.(map[string]any); ok {
				return mm
			}
		}
		return ParseFlattened(v)
	}
	return nil
}

// ParseFlattened reads the "{userName=bob, policyArn=arn:...}" form (Java's
// Map.toString) that Elastic's integration stores request parameters in.
// Values may themselves hold ", " and brackets (policy documents), so a
// comma only separates entries at nesting depth 0 when a "key=" follows it.
// It returns nil when s is not of that form.
func ParseFlattened(s string) map[string]any {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil
	}
	body := s[1 : len(s)-1]
	out := map[string]any{}
	depth, start := 0, 0
	flush := func(end int) bool {
		entry := body[start:end]
		k, v, ok := strings.Cut(entry, "=")
		if !ok || !isKey(k) {
			return false
		}
		if _, dup := out[k]; !dup {
			out[k] = v
		}
		return true
	}
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			if depth == 0 && i+1 < len(body) && body[i+1] == ' ' && keyFollows(body[i+2:]) {
				if !flush(i) {
					return nil
				}
				start = i + 2
			}
		}
	}
	if strings.TrimSpace(body) == "" {
		return out
	}
	if !flush(len(body)) {
		return nil
	}
	return out
}

func keyFollows(s string) bool {
	i := strings.IndexByte(s, '=')
	return i > 0 && isKey(s[:i])
}

func isKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
