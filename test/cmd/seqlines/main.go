// Command seqlines prints a lifecycle example (test/fixtures/rules/<rule>/
// {positive,negative}/<name>.json) as the JSON lines Fluent Bit's tail
// would read, in the example's arrival order: an event a line, a log file
// record ({"Records": [...]}) a line; silences and restarts are left out
// (say so on stderr). It is how the examples were run in a real Fluent
// Bit (README, The lifecycle).
//
//	go run ./test/cmd/seqlines aws.iam.quarantined_key_used use_before_a_notice_that_arrived_first > events.jsonl
package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/sequence"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: seqlines RULE NAME")
		os.Exit(2)
	}
	var found bool
	testing.Init()
	tb := &fatal{}
	for _, s := range sequence.Load(tb, os.Args[1]) {
		if !strings.HasSuffix(s.Name, "/"+os.Args[2]) {
			continue
		}
		found = true
		fmt.Fprintf(os.Stderr, "%s: %s\nexpect %v\n", s.Name, s.About, s.Expect)
		for _, st := range s.Steps {
			switch {
			case st.Silence > 0:
				fmt.Fprintf(os.Stderr, "(a silence of %v is left out)\n", st.Silence)
			case st.Restart:
				fmt.Fprintln(os.Stderr, "(a restart is left out)")
			}
			for _, b := range st.Bodies() {
				os.Stdout.Write(append(value.ToJSON(b), '\n'))
			}
		}
	}
	if !found {
		fmt.Fprintf(os.Stderr, "no example %s of %s\n", os.Args[2], os.Args[1])
		os.Exit(1)
	}
}

// fatal is the testing.TB sequence.Load reports to.
type fatal struct{ testing.TB }

func (fatal) Helper() {}
func (fatal) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
