// Package cloudtrail sees a decoded log record as the CloudTrail events it
// carries, whatever shape the record has: a plain event, a CloudTrail log
// file object, an EventBridge event, an event serialised as a JSON string
// under a message key, an Elastic Common Schema document, or an OCSF record
// (Amazon Security Lake). Every shape is normalised into one Event, so rules
// are written once.
package cloudtrail

import (
	"strings"
	"unsafe"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Event is one CloudTrail event, normalised.
type Event struct {
	Name         string // eventName
	Source       string // eventSource
	ErrorCode    string
	ErrorMessage string
	ID           string // eventID
	Time         string // eventTime, as written (RFC 3339)
	Region       string // awsRegion
	Account      string // recipientAccountId
	SourceIP     string // sourceIPAddress
	UserAgent    string
	Actor        Actor
	// Params is requestParameters as a map, whatever form it arrived in;
	// nil when it was null, absent or unreadable.
	Params map[string]any
	// Raw is the event as it arrived (the whole document for ECS and OCSF): a
	// map[string]any, or value.Raw msgpack when read without decoding.
	Raw any
	// Shape names the record shape the event came from.
	Shape Shape
	// Exposure is set for an AWS Health notice of exposed credentials.
	Exposure *Exposure
	// Oversized counts the values cut to their bound (see bound.go).
	Oversized int
	// IgnoredAccounts counts the account fields of the record that were
	// passed over because they hold no account id (12 digits).
	IgnoredAccounts int
}

// Actor is the userIdentity of the caller.
type Actor struct {
	Type        string
	ARN         string
	UserName    string
	AccessKeyID string
	AccountID   string
}

// Shape says how an event was found in its record.
type Shape string

const (
	ShapeEvent       Shape = "event"       // the record is the event
	ShapeLogFile     Shape = "log_file"    // an element of a {"Records": [...]} object
	ShapeEventBridge Shape = "eventbridge" // the detail of an EventBridge event
	ShapeECS         Shape = "ecs"         // an Elastic Common Schema document
	ShapeOCSF        Shape = "ocsf"        // an OCSF record, as Amazon Security Lake writes them
)

// Param returns a request parameter as a string ("" when absent or not a
// string).
func (e *Event) Param(name string) string {
	s, _ := e.Params[name].(string)
	return s
}

func field(m map[string]any, key string) any { return m[key] }

// canonicalKeys maps lower-cased CloudTrail keys to their real case.
var canonicalKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"eventName", "eventSource", "errorCode", "errorMessage", "eventID", "eventTime",
		"awsRegion", "recipientAccountId", "sourceIPAddress", "userAgent", "userIdentity", "requestParameters",
		"Records", "type", "arn", "userName", "accessKeyId", "accountId", "sessionContext", "sessionIssuer",
		"policyArn", "policyName", "groupName", "roleName", "detail"} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

// canonical gives an event whose keys some pipeline lower-cased
// (eventname) CloudTrail's own key case, so every later lookup is exact.
// Events that already have eventName are returned as they are: the check
// costs one map lookup, the rebuild only happens for the rare others. So
// are OCSF records (an api object): no CloudTrail event has one, and
// rebuilding them doubled what reading one costs.
func canonical(m map[string]any) map[string]any {
	if _, ok := m["eventName"]; ok {
		return m
	}
	if _, ok := m["api"].(map[string]any); ok {
		return m
	}
	return recase(m, 0)
}

func recase(m map[string]any, depth int) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if c, ok := canonicalKeys[strings.ToLower(k)]; ok {
			k = c
		}
		// An EventBridge detail is an event of its own, made canonical (or
		// not) on its own terms, as the fast path reads it.
		if sub, ok := v.(map[string]any); ok && depth < 4 && k != "detail" {
			v = recase(sub, depth+1)
		}
		if _, dup := out[k]; !dup {
			out[k] = v
		}
	}
	return out
}

func str(m map[string]any, key string) string { return value.Text(field(m, key)) }

func obj(m map[string]any, key string) map[string]any {
	o, _ := field(m, key).(map[string]any)
	return o
}

// path follows a dotted ECS name through nested maps, dotted keys or any
// mix of the two ("aws.cloudtrail.x" may be stored as aws → cloudtrail.x).
func path(m map[string]any, name string) any {
	if m == nil {
		return nil
	}
	if v, ok := m[name]; ok {
		return v
	}
	for i := 0; i < len(name); i++ {
		if name[i] != '.' {
			continue
		}
		if sub, ok := m[name[:i]].(map[string]any); ok {
			if v := path(sub, name[i+1:]); v != nil {
				return v
			}
		}
	}
	return nil
}

func pathStr(m map[string]any, name string) string {
	s, _ := path(m, name).(string)
	return s
}

// unsafeString views b as a string without copying, for map-key compares
// that must not allocate; the result must not outlive b.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
