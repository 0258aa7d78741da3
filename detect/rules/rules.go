// Package rules holds the detections: each rule is metadata plus a small
// match function over a normalised CloudTrail event, and its example events
// (test/fixtures/rules/<id>/{positive,negative}) are its tests.
package rules

import (
	"cmp"
	"fmt"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
)

// Technique is one MITRE ATT&CK mapping.
type Technique struct {
	TacticID      string `json:"tactic_id"`
	TacticName    string `json:"tactic"`
	TechniqueID   string `json:"technique_id"`
	TechniqueName string `json:"technique"`
}

// Finding is what a rule learnt from a matching event, and what the
// lifecycle adds to it.
type Finding struct {
	Policy Policy
	Target Target
	// Key is the exposed key's case: what a Health notice names, and all
	// the lifecycle knows of the key (nil when nothing).
	Key *Key
	// Severity is set when it is not the rule's own: a use of a watched
	// key is high when the call succeeded and medium when it failed.
	Severity string
	// Use counts the calls a use alert stands for.
	Use *Use
	// Flood: the alert stands for the denied calls of keys past the
	// first few new ones of a window in the account, folded.
	Flood bool
}

// Key is an exposed access key's case, as far as it is known. Times are
// event times; zero when not (yet) seen.
type Key struct {
	ID, User, Account, ExposedURL string
	// FirstSeen is when the key (or its user, while no key was known) was
	// first put on the watch list: exposed, quarantined or denied.
	FirstSeen, ExposedAt, QuarantinedAt, RetiredAt time.Time
	// Waited is the grace an exposure waited for a quarantine in vain.
	Waited time.Duration
}

// Use is how many calls a use alert stands for: Calls since the group's
// last alert (this one included), Total since the first.
type Use struct {
	Calls, Total int64
	WindowStart  time.Time
}

// Rule is one detection.
type Rule struct {
	ID          string
	Name        string
	Description string
	Severity    string // low, medium, high or critical
	RiskScore   int    // 0-100, as Elastic's risk_score
	MITRE       []Technique
	Runbook     string
	References  []string
	// Equivalents name public rules that fire on the same events.
	Equivalents []string
	// Match decides from the event alone; nil for the lifecycle's rules,
	// which the lifecycle engine fires from what it saw before.
	Match func(*cloudtrail.Event) (Finding, bool)
	Title func(*cloudtrail.Event, Finding) string
}

// The rule ids, which the lifecycle engine switches on.
const (
	QuarantineApplied       = "aws.iam.quarantine_applied"
	QuarantineAttemptFailed = "aws.iam.quarantine_attempt_failed"
	QuarantineRemoved       = "aws.iam.quarantine_removed"
	CredentialsExposed      = "aws.health.credentials_exposed"
	QuarantineDeniedCall    = "aws.iam.quarantine_denied_call"
	QuarantinedKeyUsed      = "aws.iam.quarantined_key_used"
	ExposedNotQuarantined   = "aws.iam.exposed_not_quarantined"
	ExposedKeyRetired       = "aws.iam.exposed_key_retired"
	ExposedKeyReactivated   = "aws.iam.exposed_key_reactivated"
)

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
func All() []*Rule {
	return []*Rule{&applied, &attemptFailed, &removed, &healthExposed, &deniedCall, &keyUsed, &notQuarantined, &retired, &reactivated}
}

// Stateless returns the rules that decide from one event alone, in order.
func Stateless() []*Rule {
	var out []*Rule
	for _, r := range All() {
		if r.Match != nil {
			out = append(out, r)
		}
	}
	return out
}

// ByID finds a rule.
func ByID(id string) *Rule {
	for _, r := range All() {
		if r.ID == id {
			return r
		}
	}
	return nil
}

var applied = Rule{
	ID:          QuarantineApplied,
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
	ID:          QuarantineAttemptFailed,
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
	ID:          QuarantineRemoved,
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
	if f.Key != nil && f.Key.ID != "" {
		return "exposed access key " + f.Key.ID
	}
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
