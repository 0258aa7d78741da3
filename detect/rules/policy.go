package rules

import (
	"regexp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
)

// AWS-managed quarantine policies: every version, present and future
// (V2 2021, V3 2024, V4 2026-11, ...), in every partition. The account field
// must be "aws": a customer-managed policy with the same name is not one.
var managedARN = regexp.MustCompile(`^arn:(?:aws|aws-cn|aws-us-gov):iam::aws:policy/(AWSCompromisedKeyQuarantine(?:V([0-9]+))?)$`)

// Inline policy names AWS has used for quarantines: the legacy
// AWSExposedCredentialPolicy_DO_NOT_REMOVE and, as Panther's rule accepts,
// any of the managed names.
var inlineName = regexp.MustCompile(`^(?:AWSExposedCredentialPolicy_DO_NOT_REMOVE|AWSCompromisedKeyQuarantine(?:V([0-9]+))?)$`)

// Needles are byte strings at least one of which every quarantine event
// contains, in every record shape (the policy name is always written out).
// The detector uses them to rule out records without decoding them; a test
// proves every positive example holds one.
var Needles = [][]byte{[]byte("CompromisedKeyQuarantine"), []byte("ExposedCredentialPolicy")}

// Policy identifies the quarantine policy an event names.
type Policy struct {
	Name string `json:"name"`
	ARN  string `json:"arn,omitempty"` // empty for inline policies
	// Version is the quarantine generation: V1 (no suffix), V2, V3, ...,
	// or "legacy" for AWSExposedCredentialPolicy_DO_NOT_REMOVE.
	Version string `json:"version"`
}

// Target is the IAM identity the policy was attached to or removed from.
type Target struct {
	Type string `json:"type"` // user, group or role
	Name string `json:"name"`
}

func matchManaged(arn string) (Policy, bool) {
	m := managedARN.FindStringSubmatch(arn)
	if m == nil {
		return Policy{}, false
	}
	return Policy{Name: m[1], ARN: arn, Version: version(m[2])}, true
}

func matchInline(name string) (Policy, bool) {
	m := inlineName.FindStringSubmatch(name)
	if m == nil {
		return Policy{}, false
	}
	v := version(m[1])
	if name == "AWSExposedCredentialPolicy_DO_NOT_REMOVE" {
		v = "legacy"
	}
	return Policy{Name: name, Version: v}, true
}

func version(digits string) string {
	if digits == "" {
		return "V1"
	}
	return "V" + digits
}

// call describes an IAM API call that attaches or removes a policy.
type call struct {
	target string // user, group or role
	param  string // the request parameter naming the target
	inline bool   // inline policies are named by policyName, managed ones by policyArn
}

var applyCalls = map[string]call{
	"AttachUserPolicy":  {"user", "userName", false},
	"AttachGroupPolicy": {"group", "groupName", false},
	"AttachRolePolicy":  {"role", "roleName", false},
	"PutUserPolicy":     {"user", "userName", true},
}

var removeCalls = map[string]call{
	"DetachUserPolicy":  {"user", "userName", false},
	"DetachGroupPolicy": {"group", "groupName", false},
	"DetachRolePolicy":  {"role", "roleName", false},
	"DeleteUserPolicy":  {"user", "userName", true},
}

// quarantineCall reports whether e is one of calls naming a quarantine
// policy, and which policy and target.
func quarantineCall(e *cloudtrail.Event, calls map[string]call) (Finding, bool) {
	c, ok := calls[e.Name]
	if !ok || (e.Source != "" && e.Source != "iam.amazonaws.com") {
		return Finding{}, false
	}
	var p Policy
	if c.inline {
		p, ok = matchInline(e.Param("policyName"))
	} else {
		p, ok = matchManaged(e.Param("policyArn"))
	}
	if !ok {
		return Finding{}, false
	}
	return Finding{Policy: p, Target: Target{Type: c.target, Name: e.Param(c.param)}}, true
}
