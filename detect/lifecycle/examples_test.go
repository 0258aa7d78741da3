package lifecycle_test

import (
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

// lifecycleRules are the rules the engine fires; their examples are
// sequences.
var lifecycleRules = []string{rules.QuarantinedKeyUsed, rules.ExposedNotQuarantined, rules.ExposedKeyRetired}

// The examples of the lifecycle's rules are sequences, and they are its
// tests: each gives exactly the alerts it expects.
func TestSequenceExamples(t *testing.T) {
	for _, rule := range lifecycleRules {
		seqs := sequence.Load(t, rule)
		var pos, neg int
		for _, s := range seqs {
			if s.Kind == "positive" {
				pos++
			} else {
				neg++
			}
			t.Run(s.Name, func(t *testing.T) {
				got := sequence.Play(t, s, nil)
				for id, want := range s.Expect {
					if got[id] != want {
						t.Errorf("%s fired %d times, want %d (all: %v)\n%s", id, got[id], want, got, s.About)
					}
				}
			})
		}
		if pos < 3 || neg < 3 {
			t.Errorf("%s has %d positive and %d negative examples, want 3 of each", rule, pos, neg)
		}
	}
}
