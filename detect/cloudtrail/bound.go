package cloudtrail

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Part of every CloudTrail record is written by whoever holds a
// credential (request parameters, user agents, the event names and error
// messages of failed calls), and a collector may see forged records. So
// every value an Event carries into the rules, the lifecycle's cases, the
// store and the alerts has a bound, in bytes, that no real AWS value
// reaches: a value past it still alerts, but cut down. Text is truncated
// with a marker saying how much was cut; an identifier (a user, an
// account, a key, an event id), which cases are keyed and alerts are
// de-duplicated by, is replaced by its digest instead, so two different
// long values stay two. Both forms are new strings: nothing keeps the
// record's long value alive.
//
// The lifecycle's per-case memory and every store key and alert id are
// built from these values, so their bounds follow from the constants.
const (
	MaxEventName    = 128  // eventName: an API action name
	MaxEventSource  = 128  // eventSource: <service>.amazonaws.com
	MaxErrorCode    = 128  // errorCode
	MaxErrorMessage = 8192 // errorMessage (IAM denials quote ARNs up to 2048 each; EC2 appends an encoded message)
	MaxEventID      = 128  // eventID (a UUID, 36), and the id of ECS, OCSF and EventBridge events
	MaxEventTime    = 64   // eventTime (RFC 3339)
	MaxRegion       = 64   // awsRegion
	MaxAccountID    = 64   // recipientAccountId, userIdentity.accountId: 12 digits
	MaxSourceIP     = 256  // sourceIPAddress: an IP address or an AWS service's DNS name (253)
	MaxUserAgent    = 4096 // userAgent
	MaxIdentityType = 64   // userIdentity.type
	MaxARN          = 2048 // userIdentity.arn, requestParameters.policyArn: IAM's ARN limit
	MaxUserName     = 64   // userIdentity.userName, requestParameters.userName, a Health notice's user: IAM's user name limit
	MaxAccessKeyID  = 128  // userIdentity.accessKeyId, requestParameters.accessKeyId: IAM's access key id limit
	MaxGroupName    = 128  // requestParameters.groupName
	MaxRoleName     = 64   // requestParameters.roleName
	MaxPolicyName   = 128  // requestParameters.policyName
	MaxKeyStatus    = 64   // requestParameters.status (Active, Inactive, Expired)
	MaxHealthCode   = 100  // a Health notice's eventTypeCode
	MaxNotice       = 1600 // a Health notice's communicationId or eventArn
	MaxExposedURL   = 2048 // a Health notice's eventMetadata.exposedUrl
	// MaxExposureKeys bounds the access keys one Health notice names (AWS
	// names one per notice); the rest are dropped and counted.
	MaxExposureKeys = 16
)

// DigestLen is the length of an identifier's digest: "sha256:" and 32
// hex digits. Every identifier's bound is at least as long, so a digest
// never makes a value longer than its bound.
const DigestLen = len(digestPrefix) + 32

const digestPrefix = "sha256:"

// Digest identifies b by the first 128 bits of its SHA-256.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return digestPrefix + hex.EncodeToString(sum[:16])
}

// IsDigest reports whether s has the form of a Digest: an identifier past
// its bound, which no record holds as it is (IAM's names have no colon).
func IsDigest(s string) bool { return len(s) == DigestLen && strings.HasPrefix(s, digestPrefix) }

// Limit is one bound, as the README's table states it.
type Limit struct {
	Field  string // the field, as CloudTrail (or the shape it came in) names it
	Max    int
	Digest bool // an identifier: replaced by its digest, not truncated
}

// Limits are the bounds of every value an Event holds, in the README's
// order (a test keeps its table in step).
var Limits = []Limit{
	{"eventID", MaxEventID, true},
	{"eventName", MaxEventName, false},
	{"eventSource", MaxEventSource, false},
	{"eventTime", MaxEventTime, false},
	{"awsRegion", MaxRegion, false},
	{"recipientAccountId", MaxAccountID, true},
	{"sourceIPAddress", MaxSourceIP, false},
	{"userAgent", MaxUserAgent, false},
	{"errorCode", MaxErrorCode, false},
	{"errorMessage", MaxErrorMessage, false},
	{"userIdentity.type", MaxIdentityType, false},
	{"userIdentity.arn", MaxARN, false},
	{"userIdentity.userName", MaxUserName, true},
	{"userIdentity.accessKeyId", MaxAccessKeyID, true},
	{"userIdentity.accountId", MaxAccountID, true},
	{"requestParameters.userName", MaxUserName, true},
	{"requestParameters.groupName", MaxGroupName, true},
	{"requestParameters.roleName", MaxRoleName, true},
	{"requestParameters.accessKeyId", MaxAccessKeyID, true},
	{"requestParameters.policyArn", MaxARN, false},
	{"requestParameters.policyName", MaxPolicyName, false},
	{"requestParameters.status", MaxKeyStatus, false},
	{"Health detail.eventTypeCode", MaxHealthCode, false},
	{"Health detail.communicationId / eventArn", MaxNotice, true},
	{"Health eventMetadata.userName", MaxUserName, true},
	{"Health eventMetadata.exposedUrl", MaxExposedURL, false},
}

// params are the request parameters the rules and the lifecycle read, and
// their bounds; the others are never read, so never bounded.
var params = map[string]Limit{}

func init() {
	for _, l := range Limits {
		if name, ok := strings.CutPrefix(l.Field, "requestParameters."); ok {
			params[name] = l
		}
	}
}

// bounded wraps emit so every event is bounded, and its outcome read,
// before anyone sees it: the one place every record shape, on both the
// fast and the map path, goes through.
func bounded(emit func(*Event)) func(*Event) {
	return func(e *Event) {
		bound(e)
		failedWithoutCode(e)
		emit(e)
	}
}

// Failure is the error code of an event that failed without one: a
// failed console sign-in, which CloudTrail writes with an errorMessage
// ("Failed authentication") and no errorCode, or an ECS or OCSF record
// that says its call failed but lost the code.
const Failure = "failure"

// failedWithoutCode gives an event that holds an error message and no
// code the code Failure: a call that succeeded has no message, and a
// failed sign-in must not read as a successful one (a use's outcome and
// severity, a quarantine applied or not, go by the code).
func failedWithoutCode(e *Event) {
	if e.ErrorCode == "" && e.ErrorMessage != "" {
		e.ErrorCode = Failure
	}
}

// bound cuts every value of e past its bound and counts them in
// e.Oversized.
func bound(e *Event) {
	n := text(&e.Name, MaxEventName) + text(&e.Source, MaxEventSource) + text(&e.ErrorCode, MaxErrorCode) +
		text(&e.ErrorMessage, MaxErrorMessage) + ident(&e.ID, MaxEventID) + text(&e.Time, MaxEventTime) +
		text(&e.Region, MaxRegion) + ident(&e.Account, MaxAccountID) + text(&e.SourceIP, MaxSourceIP) +
		text(&e.UserAgent, MaxUserAgent)
	a := &e.Actor
	n += text(&a.Type, MaxIdentityType) + text(&a.ARN, MaxARN) + ident(&a.UserName, MaxUserName) +
		ident(&a.AccessKeyID, MaxAccessKeyID) + ident(&a.AccountID, MaxAccountID)
	n += boundParams(e)
	if x := e.Exposure; x != nil {
		n += text(&x.Code, MaxHealthCode) + ident(&x.Notice, MaxNotice) + ident(&x.User, MaxUserName) +
			text(&x.URL, MaxExposedURL)
		if len(x.Keys) > MaxExposureKeys {
			x.Keys = x.Keys[:MaxExposureKeys:MaxExposureKeys]
			n++
		}
	}
	e.Oversized += n
}

// boundParams bounds the request parameters that are read. The map may be
// the record's own (the map path reads requestParameters in place), which
// the alert carries as the original event: it is copied before a change.
func boundParams(e *Event) int {
	n := 0
	copied := false
	for name, l := range params {
		s, ok := e.Params[name].(string)
		if !ok || len(s) <= l.Max {
			continue
		}
		if !copied {
			e.Params, copied = maps.Clone(e.Params), true
		}
		if l.Digest {
			ident(&s, l.Max)
		} else {
			text(&s, l.Max)
		}
		e.Params[name] = s
		n++
	}
	return n
}

// text truncates *s to limit bytes, marker included, at a character
// boundary, and reports 1 when it did. The marker ("...[N bytes cut]")
// is at most 34 bytes, shorter than every bound.
func text(s *string, limit int) int {
	if len(*s) <= limit {
		return 0
	}
	v := *s
	keep := limit - len(cutMarker(len(v)))
	for keep > 0 && !utf8.RuneStart(v[keep]) {
		keep--
	}
	*s = v[:keep] + cutMarker(len(v)-keep)
	return 1
}

// Cut is s cut to limit bytes the way a value past its bound is, for what
// keeps a shorter copy of a bounded value.
func Cut(s string, limit int) string {
	text(&s, limit)
	return s
}

func cutMarker(n int) string { return "...[" + strconv.Itoa(n) + " bytes cut]" }

// ident replaces *s by its digest when it is longer than limit, and
// reports 1 when it did.
func ident(s *string, limit int) int {
	if len(*s) <= limit {
		return 0
	}
	*s = Digest([]byte(*s))
	return 1
}
