package rules

import (
	"strings"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
)

// AWS-managed quarantine policies: every version, present and future
// (V2 2021, V3 2024, V4 2026-11, ...), in every partition: aws, aws-cn,
// aws-us-gov, the aws-iso* ones, aws-eusc and any aws-* to come. The
// account field must be "aws": a customer-managed policy with the same
// name is not one.
const managedSuffix = ":iam::aws:policy/"

// partition reports whether p names an AWS partition.
func partition(p string) bool {
	if p == "aws" {
		return true
	}
	rest, ok := strings.CutPrefix(p, "aws-")
	return ok && rest != "" && strings.Trim(rest, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
}

const (
	quarantineName = "AWSCompromisedKeyQuarantine"
	legacyName     = "AWSExposedCredentialPolicy_DO_NOT_REMOVE"
)

// quarantineVersion reads AWSCompromisedKeyQuarantine[V<digits>].
func quarantineVersion(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, quarantineName)
	if !ok {
		return "", false
	}
	if rest == "" {
		return "V1", true
	}
	digits, ok := strings.CutPrefix(rest, "V")
	if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", false
	}
	return rest, true
}

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
	rest, ok := strings.CutPrefix(arn, "arn:")
	if !ok {
		return Policy{}, false
	}
	part, name, ok := strings.Cut(rest, managedSuffix)
	if !ok || !partition(part) {
		return Policy{}, false
	}
	v, ok := quarantineVersion(name)
	return Policy{Name: name, ARN: arn, Version: v}, ok
}

// matchInline accepts the names AWS has used for inline quarantines: the
// legacy AWSExposedCredentialPolicy_DO_NOT_REMOVE and, as Panther's rule
// does, any of the managed names.
func matchInline(name string) (Policy, bool) {
	if name == legacyName {
		return Policy{Name: name, Version: "legacy"}, true
	}
	v, ok := quarantineVersion(name)
	return Policy{Name: name, Version: v}, ok
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
