package jsonblock

import (
	"strings"
	"testing"
)

func TestSkip(t *testing.T) {
	pad := strings.Repeat(" ", Size)
	for _, c := range []struct {
		text  string
		st    State
		want  int
		done  bool
		after State
	}{
		// From inside an object: brackets inside strings do not count;
		// the value ends at its closing bracket.
		{`"a":"}]","b":[1,{"c":2}]}` + pad + pad, State{Depth: 1}, 25, true, State{}},
		// Started inside a string: its first quote closes it.
		{`x}" } "{"` + pad[9:] + pad, State{Depth: 1, InString: true}, 5, true, State{}},
		// A block with a backslash stops the skip before it.
		{pad + `"a\"b"` + pad[6:] + pad, State{Depth: 2}, Size, false, State{Depth: 2}},
		// Whole blocks only: the last bytes are left.
		{`{{{{` + pad[4:] + pad + "}}}", State{Depth: 1}, 2 * Size, false, State{Depth: 5}},
		// A string still open at the end of the blocks.
		{pad[1:] + `"` + pad + "x", State{Depth: 1}, 2 * Size, false, State{Depth: 1, InString: true}},
	} {
		st := c.st
		got, done := Skip([]byte(c.text), 0, &st)
		if got != c.want || done != c.done || (!done && st != c.after) {
			t.Errorf("%q from %+v: %d %v %+v, want %d %v %+v", c.text, c.st, got, done, st, c.want, c.done, c.after)
		}
	}
}

// FuzzSkipAgreesWithLoop: the vectorised classification and the one a
// byte at a time skip alike, from any state. (Without the vectors Skip
// is the loop: the Makefile's builds have them, see internal/pairs.)
func FuzzSkipAgreesWithLoop(f *testing.F) {
	f.Add([]byte(`{"a":"}]","b":[1,{"c":2}]}`+strings.Repeat(`{"x":"\"["}`, 20)), uint8(1), false)
	f.Fuzz(func(t *testing.T, data []byte, depth uint8, in bool) {
		for off := range min(len(data), Size) {
			a, b := State{int(depth), in}, State{int(depth), in}
			i, done := Skip(data, off, &a)
			j, doneLoop := skipLoop(data, off, &b)
			if i != j || done != doneLoop || a != b {
				t.Fatalf("offset %d: vectors %d %v %+v, loop %d %v %+v", off, i, done, a, j, doneLoop, b)
			}
		}
	})
}
