// Package cliflag holds what the command's subcommands read their flags
// with (ship's; scan/cli has its own copies of these to fold in).
package cliflag

import (
	"fmt"
	"strings"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/scan/source"
)

// List is a flag given comma-separated, repeated, or both.
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Type names the flag's kind in pflag's help.
func (l *List) Type() string { return "list" }

func (l *List) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// ParseTime reads RFC 3339 or a date; a date with end set means the end
// of that day.
func ParseTime(v string, end bool) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02", v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2025-01-31T12:00:00Z) nor a date (2025-01-31)", v)
	}
	if end {
		t = t.Add(24*time.Hour - time.Nanosecond)
	}
	return t, nil
}

// Prune sets the filter's accounts and regions from --account and
// --region (nil, every one, when not given).
func Prune(f *source.Filter, accounts, regions List) error {
	if len(accounts) > 0 {
		f.Accounts = map[string]bool{}
		for _, a := range accounts {
			if !source.IsAccount(a) {
				return fmt.Errorf("--account %q: an account id is 12 digits", a)
			}
			f.Accounts[a] = true
		}
	}
	if len(regions) > 0 {
		f.Regions = map[string]bool{}
		for _, r := range regions {
			f.Regions[r] = true
		}
	}
	return nil
}
