// Package rules holds the detections: each rule is metadata plus a small
// match function over a normalised CloudTrail event, and its example events
// (test/fixtures/rules/<id>/{positive,negative}) are its tests.
package rules

import (
	"cmp"
	"fmt"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
)

// Technique is one MITRE ATT&CK mapping.
type Technique struct {
	TacticID      string `json:"tactic_id"`
	TacticName    string `json:"tactic"`
	TechniqueID   string `json:"technique_id"`
	TechniqueName string `json:"technique"`
}

// Finding is what a rule learnt from a matching event.
type Finding struct {
	Policy Policy
	Target Target
}

// Rule is one detection.
type Rule struct {
	ID          string
	Name        string
	Description string
	Severity    string // high or critical
	RiskScore   int    // 0-100, as Elastic's risk_score
	MITRE       []Technique
	Runbook     string
	References  []string
	// Equivalents name public rules that fire on the same events.
	Equivalents []string
	Match       func(*cloudtrail.Event) (Finding, bool)
	Title       func(*cloudtrail.Event, Finding) string
}

var (
	credentialAccess = Technique{"TA0006", "Credential Access", "T1552", "Unsecured Credentials"}
	cloudAccounts    = Technique{"TA0001", "Initial Access", "T1078.004", "Valid Accounts: Cloud Accounts"}
	impairDefenses   = Technique{"TA0005", "Defense Evasion", "T1562", "Impair Defenses"}
	accountManip     = Technique{"TA0003", "Persistence", "T1098", "Account Manipulation"}
)

var quarantineDocs = []string{
	"https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSCompromisedKeyQuarantineV3.html",
	"https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html",
}

// All returns the rules in a fixed order.
func All() []*Rule { return []*Rule{&applied, &attemptFailed, &removed} }

var applied = Rule{
	ID:          "aws.iam.quarantine_applied",
	Name:        "AWS quarantined an exposed access key",
	Description: "AWS found an access key exposed in public (e.g. a GitHub push) and attached a compromised-key quarantine policy to its IAM identity. The key is public: rotate it.",
	Severity:    "high",
	RiskScore:   73,
	MITRE:       []Technique{credentialAccess, cloudAccounts},
	Runbook:     "README.md#runbook-aws-iam-quarantine-applied",
	References:  quarantineDocs,
	Equivalents: []string{
		"panther:AWS.IAM.AccessKeyCompromised",
		"panther:AWS.CloudTrail.IAMCompromisedKeyQuarantine",
		"elastic:0b79f5c0-2c31-4fea-86cd-e62644278205",
	},
	Match: func(e *cloudtrail.Event) (Finding, bool) {
		f, ok := quarantineCall(e, applyCalls)
		return f, ok && e.ErrorCode == ""
	},
	Title: func(e *cloudtrail.Event, f Finding) string {
		return fmt.Sprintf("AWS quarantined %s of IAM %s %s in account %s (%s)",
			keyPhrase(e, f), f.Target.Type, orUnknown(f.Target.Name), orUnknown(e.Account), f.Policy.Name)
	},
}

var attemptFailed = Rule{
	ID:          "aws.iam.quarantine_attempt_failed",
	Name:        "AWS failed to quarantine an exposed access key",
	Description: "AWS tried to attach a compromised-key quarantine policy and the call failed (typically AccessDenied): the exposed key is still unrestricted. Deactivate it now.",
	Severity:    "critical",
	RiskScore:   99,
	MITRE:       []Technique{credentialAccess, cloudAccounts},
	Runbook:     "README.md#runbook-aws-iam-quarantine-attempt-failed",
	References:  quarantineDocs,
	Match: func(e *cloudtrail.Event) (Finding, bool) {
		f, ok := quarantineCall(e, applyCalls)
		return f, ok && e.ErrorCode != ""
	},
	Title: func(e *cloudtrail.Event, f Finding) string {
		return fmt.Sprintf("AWS failed to quarantine %s of IAM %s %s in account %s (%s: %s): the key is still unrestricted",
			keyPhrase(e, f), f.Target.Type, orUnknown(f.Target.Name), orUnknown(e.Account), f.Policy.Name, e.ErrorCode)
	},
}

var removed = Rule{
	ID:          "aws.iam.quarantine_removed",
	Name:        "A compromised-key quarantine policy was removed",
	Description: "Someone detached or deleted a quarantine policy AWS applied to an exposed key's identity: Terraform drift or an attacker restoring the key's power.",
	Severity:    "critical",
	RiskScore:   95,
	MITRE:       []Technique{impairDefenses, accountManip},
	Runbook:     "README.md#runbook-aws-iam-quarantine-removed",
	References:  quarantineDocs,
	Match: func(e *cloudtrail.Event) (Finding, bool) {
		f, ok := quarantineCall(e, removeCalls)
		return f, ok && e.ErrorCode == ""
	},
	Title: func(e *cloudtrail.Event, f Finding) string {
		return fmt.Sprintf("Quarantine policy %s was removed from IAM %s %s in account %s by %s",
			f.Policy.Name, f.Target.Type, orUnknown(f.Target.Name), orUnknown(e.Account), orUnknown(cmp.Or(e.Actor.ARN, e.Actor.UserName)))
	},
}

// keyPhrase names the exposed key when the event shows it: AWS acts as the
// exposed user itself in legacy events, so the caller's key is that key.
// Newer events come from an AWS-internal session whose key is not the
// exposed one, so no key is named rather than a wrong one.
func keyPhrase(e *cloudtrail.Event, f Finding) string {
	if f.Target.Type == "user" && e.Actor.AccessKeyID != "" && e.Actor.UserName == f.Target.Name {
		return "exposed access key " + e.Actor.AccessKeyID
	}
	return "an exposed access key"
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
