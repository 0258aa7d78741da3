// Package cloudtrail sees a decoded log record as the CloudTrail events it
// carries, whatever shape the record has: a plain event, a CloudTrail log
// file object, an EventBridge event, an event serialised as a JSON string
// under a message key, or an Elastic Common Schema document. Every shape is
// normalised into one Event, so rules are written once.
package cloudtrail

import (
	"strings"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/value"
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
	// Raw is the event as it arrived (the whole document for ECS).
	Raw map[string]any
	// Shape names the record shape the event came from.
	Shape Shape
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
)

// Param returns a request parameter as a string ("" when absent or not a
// string). Parameter names are matched case-insensitively.
func (e *Event) Param(name string) string {
	s, _ := field(e.Params, name).(string)
	return s
}

// field looks a key up exactly first, then case-insensitively: some
// pipelines lower-case CloudTrail's camelCase keys (eventname).
func field(m map[string]any, key string) any {
	if m == nil {
		return nil
	}
	if v, ok := m[key]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

func str(m map[string]any, key string) string {
	switch v := field(m, key).(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		// Account ids sometimes arrive as numbers.
		b, err := value.ToJSON(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
}

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
