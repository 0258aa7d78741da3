package rules

import (
	"regexp"
	"strings"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
)

// The response to each rule's alert, as AWS CLI commands ready to paste:
// templates over the facts of the alert ({key}, {user}, ...), per rule
// id. A command whose facts the alert does not have (or has in a form
// that is not safe to paste, see Facts) is left out, so what an alert
// carries always runs as written. Keep the list in the order an analyst
// would run it: contain first, then look.
var responses = map[string][]string{
	QuarantineApplied:       {deactivateKey, listKeys, listMembers, listAttached, lookupByKey, lookupByUser},
	QuarantineAttemptFailed: {deactivateKey, attachQuarantine, listKeys, listMembers, lookupByKey, lookupByUser},
	QuarantineRemoved:       {attachQuarantine, listKeys, listMembers, lookupByUser},
	CredentialsExposed:      {deactivateKey, listKeys, lookupByKey},
	QuarantineDeniedCall:    {deactivateKey, authorizationDetails, lookupByKey, listKeys},
	QuarantinedKeyUsed:      {deactivateKey, lookupByKey, listKeys},
	ExposedNotQuarantined:   {deactivateKey, listKeys, lookupByKey},
	ExposedKeyRetired:       {deleteKey, listKeys, lookupByKey},
	ExposedKeyReactivated:   {deactivateKey, deleteKey, lookupByKey, listKeys},
}

// The commands. IAM is a global service of each partition: its calls go
// to the partition's IAM region ({iam_region}); CloudTrail's event
// history is per region, so a lookup asks the event's region.
const (
	deactivateKey        = "aws iam update-access-key --user-name {user} --access-key-id {key} --status Inactive --region {iam_region}"
	deleteKey            = "aws iam delete-access-key --user-name {user} --access-key-id {key} --region {iam_region}"
	listKeys             = "aws iam list-access-keys --user-name {user} --region {iam_region}"
	attachQuarantine     = "aws iam attach-{target_type}-policy --{target_type}-name {target} --policy-arn {policy_arn} --region {iam_region}"
	listAttached         = "aws iam list-attached-{target_type}-policies --{target_type}-name {target} --region {iam_region}"
	listMembers          = "aws iam get-group --group-name {group} --region {iam_region}"
	lookupByKey          = "aws cloudtrail lookup-events --lookup-attributes AttributeKey=AccessKeyId,AttributeValue={key} --region {region}"
	lookupByUser         = "aws cloudtrail lookup-events --lookup-attributes AttributeKey=Username,AttributeValue={user_attr} --region {region}"
	authorizationDetails = "aws iam-toolbox get-request-authorization-details --authorization-id {authorization_id} --region {iam_region}"
)

// HasResponse reports whether the rule has response commands (a test
// keeps every rule with some).
func HasResponse(id string) bool { return len(responses[id]) > 0 }

// Facts are what an alert knows that its commands need. Every value
// is checked against the form AWS gives it (IAM names, key ids, regions,
// ARNs of AWS-managed policies), because the values come from the
// records and an analyst pastes the commands into a shell: a value that
// could carry anything else is dropped, and its commands with it.
type Facts struct {
	Key, User       string
	Region          string // the event's
	Partition       string // aws, aws-cn, aws-us-gov, ...
	TargetType      string // user, group, role
	Target          string
	PolicyARN       string
	AuthorizationID string
}

// FactsOf gathers the facts of a finding: the key and user of the case
// (or, where the event shows it, the caller's own key: AWS acts as the
// exposed user in legacy quarantines, and a denied or used key is the
// caller's), the identity a quarantine policy was attached to or removed
// from, and the partition.
func FactsOf(e *cloudtrail.Event, f Finding) Facts {
	x := Facts{Region: e.Region, TargetType: f.Target.Type, Target: f.Target.Name, PolicyARN: f.Policy.ARN,
		AuthorizationID: e.AuthorizationID()}
	if f.Key != nil {
		x.Key, x.User = f.Key.ID, f.Key.User
	}
	callerIsTarget := f.Target.Type == "user" && e.Actor.UserName != "" && e.Actor.UserName == f.Target.Name
	if x.Key == "" && callerIsTarget && cloudtrail.IsAccessKeyID(e.Actor.AccessKeyID) && strings.HasPrefix(e.Actor.AccessKeyID, "AKIA") {
		x.Key = e.Actor.AccessKeyID
	}
	if x.User == "" && f.Target.Type == "user" {
		x.User = f.Target.Name
	}
	x.Partition = partitionOf(e.Region, f.Policy.ARN, e.Actor.ARN)
	return x
}

// partitions: a region's prefix names its partition, and each partition's
// IAM lives in one region.
var partitions = []struct{ prefix, partition, iamRegion string }{
	{"cn-", "aws-cn", "cn-north-1"},
	{"us-gov-", "aws-us-gov", "us-gov-west-1"},
	{"us-isob-", "aws-iso-b", "us-isob-east-1"},
	{"us-iso-", "aws-iso", "us-iso-east-1"},
	{"eusc-", "aws-eusc", "eusc-de-east-1"},
}

// partitionOf reads the partition from the region, else from an ARN the
// event holds, else takes the commercial one.
func partitionOf(region string, arns ...string) string {
	for _, p := range partitions {
		if strings.HasPrefix(region, p.prefix) {
			return p.partition
		}
	}
	for _, arn := range arns {
		if rest, ok := strings.CutPrefix(arn, "arn:"); ok {
			if p, _, ok := strings.Cut(rest, ":"); ok && partition(p) {
				return p
			}
		}
	}
	return "aws"
}

func iamRegion(partition string) string {
	for _, p := range partitions {
		if p.partition == partition {
			return p.iamRegion
		}
	}
	if partition == "aws" {
		return "us-east-1"
	}
	return "" // a partition this version does not know: no IAM command
}

// Commands renders the rule's response for facts x.
func Commands(ruleID string, x Facts) []string {
	values := x.values()
	var out []string
	for _, tmpl := range responses[ruleID] {
		if cmd, ok := fill(tmpl, values); ok {
			out = append(out, cmd)
		}
	}
	return out
}

// values are the placeholders' values that are safe to paste.
func (x Facts) values() map[string]string {
	v := map[string]string{}
	keep := func(name, s string, ok bool) {
		if s != "" && ok {
			v[name] = s
		}
	}
	keep("key", x.Key, cloudtrail.IsAccessKeyID(x.Key))
	keep("user", x.User, iamName(x.User))
	// In the CLI's shorthand (Key=...,Value=...) a comma or an equals sign
	// would end the value.
	keep("user_attr", x.User, iamName(x.User) && !strings.ContainsAny(x.User, ",="))
	keep("target", x.Target, iamName(x.Target))
	keep("target_type", x.TargetType, x.TargetType == "user" || x.TargetType == "group" || x.TargetType == "role")
	keep("group", x.Target, iamName(x.Target) && x.TargetType == "group") // whose members' keys to look at
	keep("region", x.Region, regionName(x.Region))
	keep("iam_region", iamRegion(x.Partition), true)
	if x.Region == "" {
		keep("region", iamRegion(x.Partition), true) // an event of no region: IAM's
	}
	_, managed := matchManaged(x.PolicyARN)
	keep("policy_arn", x.PolicyARN, managed && arnText(x.PolicyARN))
	keep("authorization_id", x.AuthorizationID, alnum(x.AuthorizationID) && len(x.AuthorizationID) <= 128)
	return v
}

// fill replaces every {name} in tmpl; ok is false when one has no value.
func fill(tmpl string, values map[string]string) (string, bool) {
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			return b.String(), true
		}
		j := strings.IndexByte(tmpl[i:], '}')
		v, ok := values[tmpl[i+1:i+j]]
		if !ok {
			return "", false
		}
		b.WriteString(tmpl[:i])
		b.WriteString(v)
		tmpl = tmpl[i+j+1:]
	}
}

// iamName: IAM user, group and role names are 1 to 128 of [\w+=,.@-];
// none of them means anything to a shell.
func iamName(s string) bool {
	if len(s) == 0 || len(s) > 128 || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(alnumByte(c) || strings.IndexByte("_+=,.@-", c) >= 0) {
			return false
		}
	}
	return true
}

// regionName: us-east-1, cn-northwest-1, us-gov-west-1, eusc-de-east-1.
var regionName = regexp.MustCompile(`^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}$`).MatchString

// arnText: the characters of an AWS-managed policy's ARN.
func arnText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(alnumByte(c) || strings.IndexByte(":/-_", c) >= 0) {
			return false
		}
	}
	return true
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if !alnumByte(s[i]) {
			return false
		}
	}
	return s != ""
}

func alnumByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
