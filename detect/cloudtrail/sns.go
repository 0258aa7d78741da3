package cloudtrail

import (
	"strings"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Amazon SNS carries AWS Health notices (and EventBridge events of any
// kind) to subscribers that are not EventBridge targets. Two envelopes
// reach a collector:
//
//   - an HTTP(S) subscription posts {"Type": "Notification", "Message":
//     "<the event as a JSON string>", "TopicArn": ..., ...}, which Fluent
//     Bit's http input takes as the record;
//   - a Lambda function subscribed to the topic gets {"Records": [{"Sns":
//     {"Type": "Notification", "Message": "...", ...}}, ...]} and often
//     forwards it as it is.
//
// In both the event is the Message string: it is read as any record is
// (an EventBridge or Health envelope, a CloudTrail event, ...), one level
// deep. The shape in the alert is the inner one's, as for an event under
// an Event_Key.

// snsMessage is the Message of an SNS notification envelope, and whether
// m is one. SNS writes the keys capitalised; a pipeline may have
// lower-cased them, so they are matched regardless of case.
func snsMessage(m map[string]any) (string, bool) {
	if t, _ := lookupFold(m, "Type").(string); t != "Notification" {
		return "", false
	}
	msg, ok := lookupFold(m, "Message").(string)
	return msg, ok
}

// snsRecord is the envelope inside one element of a Lambda event's
// Records ({"EventSource": "aws:sns", "Sns": {...}}), nil when the
// element is not one.
func snsRecord(rec map[string]any) map[string]any {
	env, _ := lookupFold(rec, "Sns").(map[string]any)
	return env
}

// resolveSNS emits the events of an SNS notification's message.
func (r *Resolver) resolveSNS(env map[string]any, emit func(*Event)) int {
	msg, ok := snsMessage(env)
	if !ok {
		return 0
	}
	return r.resolveText(msg, emit)
}

// resolveText reads s as a record serialised as JSON, without looking
// into further JSON strings inside it: no pipeline nests deeper.
func (r *Resolver) resolveText(s string, emit func(*Event)) int {
	if !looksLikeObject(s) {
		return 0
	}
	v, err := value.FromJSON([]byte(s))
	if err != nil {
		return 0 // text that is not JSON is simply not an event
	}
	m, ok := v.(map[string]any)
	if !ok {
		return 0
	}
	return r.resolve(m, emit, false)
}

// lookupFold is m[key], or, when m has no such key, the value of the
// key equal to it under case folding (Fluent Bit's keys are
// case-insensitive, and pipelines re-case them). When several keys fold
// to it, the least in byte order wins, so the choice does not depend on
// the map's order.
func lookupFold(m map[string]any, key string) any {
	if v, ok := m[key]; ok {
		return v
	}
	var best string
	var found any
	seen := false
	for k, v := range m {
		if strings.EqualFold(k, key) && (!seen || k < best) {
			best, found, seen = k, v, true
		}
	}
	return found
}
