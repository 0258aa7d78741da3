package cloudtrail

import (
	"cmp"
	"strings"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// Exposure is what an AWS Health notice about exposed credentials says.
// Any part may be missing.
type Exposure struct {
	Code string   // detail.eventTypeCode, e.g. AWS_RISK_CREDENTIALS_EXPOSED
	Keys []string // the access key ids it names
	User string   // the IAM user whose key it is
	URL  string   // where the key was found
	// Notice identifies the notice across the copies AWS sends (a backup
	// copy to a second Region has an envelope of its own): its
	// communicationId, else its eventArn.
	Notice string
}

// ShapeHealth is an AWS Health event as EventBridge delivers it.
const ShapeHealth Shape = "health"

// isHealth reports whether an EventBridge envelope carries an AWS Health
// event. The source decides, not the detail-type: AWS Health sends "AWS
// Health Event" and "AWS Health Abuse Event", and the China partition
// names them "Amazon Health Event" and "Amazon Health Abuse Event"; the
// rule then judges the event type code, whatever the detail-type.
func isHealth(body map[string]any) bool {
	return str(body, "source") == "aws.health"
}

// fromHealth reads an AWS Health event. Its id is the envelope's; the
// account is the affected member account in an organization's view, else
// the envelope's; the key may be an affected entity, a resource or the
// event's metadata.
func fromHealth(body, detail map[string]any) *Event {
	meta := obj(detail, "eventMetadata")
	x := &Exposure{Code: str(detail, "eventTypeCode"), User: str(meta, "userName"), URL: str(meta, "exposedUrl"),
		Notice: cmp.Or(str(detail, "communicationId"), str(detail, "eventArn"))}
	var keys []string
	if entities, ok := detail["affectedEntities"].([]any); ok {
		for _, ent := range entities {
			if m, ok := ent.(map[string]any); ok {
				keys = append(keys, str(m, "entityValue"))
			}
		}
	}
	resources := body["resources"]
	if raw, ok := resources.(value.Raw); ok {
		// Kept undecoded by the candidate decoder (Unread): CloudTrail's
		// own resources are of no use, a Health event's are the key.
		resources, _ = value.FromMsgpack(raw)
	}
	if resources, ok := resources.([]any); ok {
		for _, r := range resources {
			if s, ok := r.(string); ok {
				keys = append(keys, s)
			}
		}
	}
	keys = append(keys, str(meta, "publicKey"))
	for _, k := range keys {
		switch {
		case IsAccessKeyID(k):
			// One past the bound, so bound counts the notice oversized;
			// the rest are never looked at (a forged notice may name a
			// million).
			if len(x.Keys) <= MaxExposureKeys && !contains(x.Keys, k) {
				x.Keys = append(x.Keys, k)
			}
		case x.User == "":
			// An entity may be the user's ARN rather than the key.
			if _, name, ok := UserARN(k); ok {
				x.User = name
			}
		}
	}
	// An organization's view names the member account; a published AWS
	// sample carries the key id there instead, which must not become the
	// alert's account.
	account, ignored := accountID(str(detail, "affectedAccount"), str(body, "account"))
	return &Event{
		Name:     x.Code,
		Source:   "aws.health",
		ID:       str(body, "id"),
		Time:     cmp.Or(str(body, "time"), str(detail, "startTime")),
		Region:   str(body, "region"),
		Account:  account,
		Actor:    Actor{UserName: x.User, AccountID: account},
		Exposure: x,
		Raw:      body,
		Shape:    ShapeHealth,

		IgnoredAccounts: ignored,
	}
}

// accountID is the first of candidates that is an account id (12
// digits), and how many non-empty candidates before it were not.
func accountID(candidates ...string) (id string, ignored int) {
	for _, c := range candidates {
		switch {
		case IsAccountID(c):
			return c, ignored
		case c != "":
			ignored++
		}
	}
	return "", ignored
}

// IsAccountID reports whether s is an AWS account id: 12 decimal digits.
func IsAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// IsAccessKeyID reports whether s has the form of an access key id: a
// four-letter prefix (AKIA for a user's long-term key, ASIA for temporary
// credentials) and 16 more upper-case letters and digits.
func IsAccessKeyID(s string) bool {
	if len(s) != 20 || (!strings.HasPrefix(s, "AKIA") && !strings.HasPrefix(s, "ASIA")) {
		return false
	}
	for i := 4; i < 20; i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// UserARN reads arn:<partition>:iam::<account>:user/[<path>/]<name>.
func UserARN(arn string) (account, name string, ok bool) {
	rest, ok := strings.CutPrefix(arn, "arn:")
	if !ok {
		return "", "", false
	}
	_, rest, ok = strings.Cut(rest, ":iam::")
	if !ok {
		return "", "", false
	}
	account, rest, ok = strings.Cut(rest, ":user/")
	if !ok || account == "" || rest == "" {
		return "", "", false
	}
	return account, rest[strings.LastIndexByte(rest, '/')+1:], true
}
