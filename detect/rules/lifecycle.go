package rules

import (
	"fmt"
	"strings"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
)

// The rules of an exposed key's life after the quarantine: the AWS Health
// notice, a call denied by the quarantine (both decided from the event
// alone), and the three the lifecycle engine fires from what it saw
// before: the key used, an exposure never quarantined, the key retired.

var (
	collection = Technique{"TA0009", "Collection", "T1530", "Data from Cloud Storage"}
	discovery  = Technique{"TA0007", "Discovery", "T1087.004", "Account Discovery: Cloud Account"}
)

var exposureDocs = []string{
	"https://docs.aws.amazon.com/health/latest/ug/cloudwatch-events-health.html",
	"https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html",
}

// exposureCodes are the AWS Health event types that report exposed or
// compromised credentials; the code is matched, never detail.service
// (real events say RISK there).
var exposureCodes = map[string]bool{
	"AWS_RISK_CREDENTIALS_EXPOSED":              true,
	"AWS_RISK_CREDENTIALS_EXPOSURE_SUSPECTED":   true,
	"AWS_RISK_CREDENTIALS_COMPROMISED":          true,
	"AWS_RISK_CREDENTIALS_COMPROMISE_SUSPECTED": true,
	"AWS_RISK_IAM_QUARANTINE":                   true,
}

var healthExposed = Rule{
	ID:          CredentialsExposed,
	Name:        "AWS Health reports exposed access key credentials",
	Description: "AWS Health notified the account that an access key was found exposed in public (or is suspected compromised). The key goes on the watch list: its later use, its quarantine (or the lack of one) and its retirement are followed.",
	Severity:    "high",
	RiskScore:   73,
	MITRE:       []Technique{credentialAccess, cloudAccounts},
	Runbook:     "README.md#runbook-aws-health-credentials-exposed",
	References:  exposureDocs,
	Match: func(e *cloudtrail.Event) (Finding, bool) {
		x := e.Exposure
		if x == nil || !exposureCodes[x.Code] {
			return Finding{}, false
		}
		k := &Key{User: x.User, Account: e.Account, ExposedURL: x.URL}
		if len(x.Keys) > 0 {
			k.ID = x.Keys[0]
		}
		return Finding{Key: k, Target: Target{Type: "user", Name: x.User}}, true
	},
	Title: func(e *cloudtrail.Event, f Finding) string {
		where := ""
		if f.Key.ExposedURL != "" {
			where = " at " + f.Key.ExposedURL
		}
		return fmt.Sprintf("AWS Health reports %s of IAM user %s in account %s exposed%s (%s)",
			keyPhrase(e, f), orUnknown(f.Key.User), orUnknown(e.Account), where, e.Exposure.Code)
	},
}

var deniedCall = Rule{
	ID:          QuarantineDeniedCall,
	Name:        "A call was denied by a compromised-key quarantine policy",
	Description: "An access key made a call that an AWS compromised-key quarantine policy denied: the quarantined key is in use, whoever holds it. The key goes on the watch list.",
	Severity:    "high",
	RiskScore:   73,
	MITRE:       []Technique{cloudAccounts, discovery},
	Runbook:     "README.md#runbook-aws-iam-quarantine-denied-call",
	References:  quarantineDocs,
	Match: func(e *cloudtrail.Event) (Finding, bool) {
		if e.ErrorCode == "" || !strings.Contains(strings.ToLower(e.ErrorMessage), "explicit deny") {
			return Finding{}, false
		}
		p, ok := quarantineARNIn(e.ErrorMessage)
		if !ok {
			return Finding{}, false
		}
		return Finding{Policy: p, Target: Target{Type: "user", Name: e.Actor.UserName}}, true
	},
	Title: func(e *cloudtrail.Event, f Finding) string {
		if f.Flood {
			return fmt.Sprintf("Quarantine policies denied %d calls in account %s by access keys past the first %d new ones of the window from %s: folded, their keys not watched (a flood, forged or real)",
				f.Use.Calls, orUnknown(f.Key.Account), FloodKeys, f.Use.WindowStart.Format(time.RFC3339))
		}
		return fmt.Sprintf("Quarantined access key %s of %s called %s:%s in account %s and was denied by %s%s",
			orUnknown(e.Actor.AccessKeyID), orUnknown(e.Actor.UserName), service(e.Source), e.Name, orUnknown(e.Account), f.Policy.Name, calls(f))
	},
}

// quarantineARNIn finds a quarantine policy's ARN in an access-denied
// message (IAM quotes it after "identity-based policy: ", S3 between
// quotes, others at the end).
func quarantineARNIn(msg string) (Policy, bool) {
	for i := strings.Index(msg, "arn:"); i >= 0; {
		end := strings.IndexAny(msg[i:], " \t\n\"',;)")
		if end < 0 {
			end = len(msg) - i
		}
		if p, ok := matchManaged(strings.TrimRight(msg[i:i+end], ".")); ok {
			return p, true
		}
		next := strings.Index(msg[i+1:], "arn:")
		if next < 0 {
			break
		}
		i += 1 + next
	}
	return Policy{}, false
}

var keyUsed = Rule{
	ID:          QuarantinedKeyUsed,
	Name:        "An exposed or quarantined access key was used",
	Description: "A call was made with an access key on the watch list (exposed, quarantined or seen denied), or by its user while the key is not known. The quarantine denies only some actions: a successful call is high, a call that failed for another reason medium, and sts:GetCallerIdentity (the secret scanners' \"is this key live?\" check, which no policy can deny) high. One alert per key, service, action and outcome per Use_Alert_Window, counting the calls it stands for.",
	Severity:    "high",
	RiskScore:   73,
	MITRE:       []Technique{cloudAccounts, collection},
	Runbook:     "README.md#runbook-aws-iam-quarantined-key-used",
	References:  quarantineDocs,
	Title: func(e *cloudtrail.Event, f Finding) string {
		outcome := "succeeded"
		switch e.ErrorCode {
		case "":
		case cloudtrail.Failure:
			outcome = "failed"
		default:
			outcome = "failed with " + e.ErrorCode
		}
		return fmt.Sprintf("Exposed access key %s of %s was used: %s:%s in account %s from %s %s%s",
			orUnknown(keyOf(e, f)), orUnknown(userOf(e, f)), service(e.Source), e.Name, orUnknown(e.Account), orUnknown(e.SourceIP), outcome, calls(f))
	},
}

var notQuarantined = Rule{
	ID:          ExposedNotQuarantined,
	Name:        "An exposed access key was not quarantined",
	Description: "An access key was reported exposed (AWS Health) or AWS failed to quarantine it, and no quarantine of its user followed within Quarantine_Grace (one shortly before the notice counts). The key is public and unrestricted.",
	Severity:    "critical",
	RiskScore:   99,
	MITRE:       []Technique{credentialAccess, cloudAccounts},
	Runbook:     "README.md#runbook-aws-iam-exposed-not-quarantined",
	References:  exposureDocs,
	Title: func(e *cloudtrail.Event, f Finding) string {
		return fmt.Sprintf("%s of IAM user %s in account %s was not quarantined within %s of %s",
			caseKey(f), orUnknown(f.Key.User), orUnknown(e.Account), roundDuration(f.Key.Waited), e.Name)
	},
}

var retired = Rule{
	ID:          ExposedKeyRetired,
	Name:        "An exposed access key was retired",
	Description: "An access key on the watch list was deleted or made inactive, or its user was deleted. The alert carries the time from exposure and from quarantine to retirement; a retirement before an exposure's wait ends means no quarantine was needed. One alert for each stretch the key was active: deactivating it and then deleting it is one alert, a second comes only after a re-activation. The case is kept until Watch_TTL, so a replay gives the same alert, and a later call with the key (which AWS logs only if it authenticated) still alerts as a use.",
	Severity:    "low",
	RiskScore:   21,
	MITRE:       []Technique{credentialAccess},
	Runbook:     "README.md#runbook-aws-iam-exposed-key-retired",
	References:  []string{"https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html"},
	Title: func(e *cloudtrail.Event, f Finding) string {
		since := ""
		switch k := f.Key; {
		case !k.ExposedAt.IsZero():
			since = " " + roundDuration(k.RetiredAt.Sub(k.ExposedAt)) + " after its exposure"
		case !k.QuarantinedAt.IsZero():
			since = " " + roundDuration(k.RetiredAt.Sub(k.QuarantinedAt)) + " after its quarantine"
		}
		return fmt.Sprintf("%s of IAM user %s in account %s was retired (%s)%s",
			caseKey(f), orUnknown(f.Key.User), orUnknown(e.Account), e.Name, since)
	},
}

var reactivated = Rule{
	ID:          ExposedKeyReactivated,
	Name:        "A retired exposed access key was made active again",
	Description: "UpdateAccessKey set an exposed access key back to Active after it had been made inactive: the public key works again. Its calls alert as uses, and its next deactivation or deletion is a retirement alert of its own.",
	Severity:    "critical",
	RiskScore:   99,
	MITRE:       []Technique{accountManip, cloudAccounts},
	Runbook:     "README.md#runbook-aws-iam-exposed-key-reactivated",
	References:  []string{"https://docs.aws.amazon.com/IAM/latest/APIReference/API_UpdateAccessKey.html", "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html"},
	Title: func(e *cloudtrail.Event, f Finding) string {
		since := ""
		if !f.Key.RetiredAt.IsZero() {
			if at, err := time.Parse(time.RFC3339Nano, e.Time); err == nil {
				since = " " + roundDuration(at.Sub(f.Key.RetiredAt)) + " after its retirement"
			}
		}
		return fmt.Sprintf("%s of IAM user %s in account %s was made active again by %s%s",
			caseKey(f), orUnknown(f.Key.User), orUnknown(e.Account), orUnknown(e.Actor.ARN), since)
	},
}

// FloodKeys is how many keys never seen before a quarantine may be seen
// denying per account and window before their calls are folded.
const FloodKeys = 20

func roundDuration(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	case d >= time.Minute:
		return d.Round(time.Second).String()
	}
	return d.String()
}

// caseKey names the case's key: the exposed key, or its user's keys while
// none is known.
func caseKey(f Finding) string {
	if f.Key.ID != "" {
		return "Exposed access key " + f.Key.ID
	}
	return "The exposed access key"
}

func keyOf(e *cloudtrail.Event, f Finding) string {
	if f.Key != nil && f.Key.ID != "" {
		return f.Key.ID
	}
	return e.Actor.AccessKeyID
}

func userOf(e *cloudtrail.Event, f Finding) string {
	if f.Key != nil && f.Key.User != "" {
		return f.Key.User
	}
	return e.Actor.UserName
}

// service is the short name of an event source (s3 for s3.amazonaws.com).
func service(source string) string { return strings.TrimSuffix(source, ".amazonaws.com") }

func calls(f Finding) string {
	if f.Use == nil || f.Use.Calls <= 1 {
		return ""
	}
	return fmt.Sprintf(" (%d calls since the last alert)", f.Use.Calls)
}
