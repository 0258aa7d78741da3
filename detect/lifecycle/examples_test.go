package lifecycle_test

import (
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfmap"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// The examples of the lifecycle's rules are sequences, and they are its
// tests: each gives exactly the alerts it expects.
func TestSequenceExamples(t *testing.T) {
	for _, rule := range sequence.Rules {
		seqs := sequence.Load(t, rule)
		var pos, neg int
		for _, s := range seqs {
			if s.Kind == "positive" {
				pos++
			} else {
				neg++
			}
			// The same sequence as Amazon Security Lake stores CloudTrail
			// (OCSF, source versions 2 and 1): the same alerts.
			forms := map[string]func(map[string]any) (map[string]any, error){"": nil, "/ocsf-v2": ocsfmap.SecurityLakeV2, "/ocsf-v1": ocsfmap.SecurityLakeV1}
			for name, convert := range forms {
				t.Run(s.Name+name, func(t *testing.T) {
					seq := s
					if convert != nil {
						var err error
						if seq, err = sequence.Convert(s, convert); err != nil {
							t.Fatal(err)
						}
					}
					got := sequence.Play(t, seq, nil)
					for id, want := range s.Expect {
						if got[id] != want {
							t.Errorf("%s fired %d times, want %d (all: %v)\n%s", id, got[id], want, got, s.About)
						}
					}
				})
			}
		}
		if pos < 3 || neg < 3 {
			t.Errorf("%s has %d positive and %d negative examples, want 3 of each", rule, pos, neg)
		}
	}
}

// A failed console sign-in (an errorMessage, no errorCode) by a user
// watched without a key is a use that failed: medium, and its title says
// so, in every shape the sequence comes in.
func TestFailedSignInIsAFailedUse(t *testing.T) {
	const name = "aws.iam.quarantined_key_used/positive/failed_login_with_another_users_arn_in_its_user_agent"
	for _, s := range sequence.Load(t, rules.QuarantinedKeyUsed) {
		if s.Name != name {
			continue
		}
		for form, convert := range map[string]func(map[string]any) (map[string]any, error){"": nil, "ocsf-v2": ocsfmap.SecurityLakeV2} {
			seq := s
			if convert != nil {
				var err error
				if seq, err = sequence.Convert(s, convert); err != nil {
					t.Fatal(err)
				}
			}
			uses := 0
			sequence.Play(t, seq, func(f detect.Finding) {
				if f.Rule.ID != rules.QuarantinedKeyUsed {
					return
				}
				uses++
				title := f.Rule.Title(f.Event, f.Match)
				if f.Match.Severity != "medium" || !strings.HasSuffix(title, " failed") || f.Event.ErrorCode != cloudtrail.Failure {
					t.Errorf("%s %s: severity %s, code %q, title %q", name, form, f.Match.Severity, f.Event.ErrorCode, title)
				}
			})
			if uses != 1 {
				t.Errorf("%s %s: %d uses", name, form, uses)
			}
		}
		return
	}
	t.Fatalf("no sequence %s", name)
}
