// Package hostile makes forged variants of example events: every string
// value an attacker who holds a credential (or writes to the collector)
// could set, blown up, one at a time or all together.
package hostile

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Leaves are the paths of every string value in v (map keys and array
// indexes), in a fixed order.
func Leaves(v any) [][]any {
	var out [][]any
	var walk func(v any, path []any)
	walk = func(v any, path []any) {
		switch v := v.(type) {
		case string:
			out = append(out, append([]any(nil), path...))
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(v[k], append(path, k))
			}
		case []any:
			for i, e := range v {
				walk(e, append(path, i))
			}
		}
	}
	walk(v, nil)
	return out
}

// With returns a deep copy of v with the string at path replaced by what
// blow makes of it.
func With(v any, path []any, blow func(string) string) any {
	if len(path) == 0 {
		if s, ok := v.(string); ok {
			return blow(s)
		}
		return v
	}
	switch c := v.(type) {
	case map[string]any:
		out := maps.Clone(c)
		k := path[0].(string)
		out[k] = With(c[k], path[1:], blow)
		return out
	case []any:
		out := append([]any(nil), c...)
		i := path[0].(int)
		out[i] = With(c[i], path[1:], blow)
		return out
	}
	return v
}

// All returns a deep copy of v with every string blown up.
func All(v any, blow func(string) string) any {
	switch c := v.(type) {
	case string:
		return blow(c)
	case map[string]any:
		out := make(map[string]any, len(c))
		for k, e := range c {
			out[k] = All(e, blow)
		}
		return out
	case []any:
		out := make([]any, len(c))
		for i, e := range c {
			out[i] = All(e, blow)
		}
		return out
	}
	return v
}

// Long makes a value n bytes long that still starts as the original did,
// so what the rules match on (a policy name's prefix, an ARN) stays there.
func Long(n int) func(string) string {
	return func(s string) string {
		if len(s) >= n {
			return s
		}
		return s + strings.Repeat("A", n-len(s))
	}
}

// Controls is what forges a log line: a newline and a fake Fluent Bit
// line, ANSI colour and cursor escapes, a carriage return, NUL, DEL, the
// C1 control CSI, a Unicode line separator and a bidi override, around
// the original value.
func Controls(s string) string {
	return s + "\n[2026/01/01 00:00:00] [ info] [output:cloudtrail_quarantine:cloudtrail_quarantine.0] exit: delivered=0" +
		"\x1b[31m\x1b[2J\r\x00\x7f\u009b\u2028\u202e\t" + s
}

// Path renders a path as a dotted name (for test messages).
func Path(path []any) string {
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = fmt.Sprint(p)
	}
	return strings.Join(parts, ".")
}
