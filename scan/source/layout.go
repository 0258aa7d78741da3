// Package source finds and opens what a scan reads: local files and
// directories, standard input, and S3 objects, in CloudTrail's S3 layout
// (AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/) or Amazon Security
// Lake's (region=<r>/accountId=<a>/eventDay=<d>/), pruning the layout by
// account, region, shard and date before anything is opened.
package source

import (
	"hash/fnv"
	"math/bits"
	"path"
	"strings"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
)

// Place is what an object's path says about it.
type Place struct {
	// Account and Region are the layout's; "" outside a layout.
	Account, Region string
	// Time is the file's time: CloudTrail's file name stamp
	// (..._20240101T0005Z_...), else the date of its directory or
	// partition; zero outside a layout. Span is how much time the file's
	// place stands for (a day directory: 24h; a stamped file: 0).
	Time time.Time
	Span time.Duration
	// Lake: a Security Lake partition.
	Lake bool
}

// Layout reports whether the path is in a layout (the scan then merges
// its files by account and region).
func (p Place) Layout() bool { return p.Account != "" }

// Stream names the files a layout writes in time order: one account and
// region.
func (p Place) Stream() string { return p.Account + "/" + p.Region }

// ParsePlace reads a slash-separated path (an S3 key, or a local path
// with its separators made slashes).
func ParsePlace(p string) Place {
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if part == "AWSLogs" {
			return cloudTrailPlace(parts[i+1:])
		}
	}
	var pl Place
	for _, part := range parts {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		switch k {
		case "region":
			pl.Region, pl.Lake = v, true
		case "accountId", "accountid":
			pl.Account, pl.Lake = v, true
		case "eventDay":
			if t, err := time.Parse("20060102", v); err == nil {
				pl.Time, pl.Span = t, 24*time.Hour
			}
		case "eventHour":
			if t, err := time.Parse("2006010215", v); err == nil {
				pl.Time, pl.Span = t, time.Hour
			}
		}
	}
	if !pl.Lake {
		return Place{}
	}
	return pl
}

// cloudTrailPlace reads what follows AWSLogs/: [<org id>/]<account>/
// CloudTrail/<region>/YYYY/MM/DD/<file>.
func cloudTrailPlace(parts []string) Place {
	var pl Place
	if len(parts) > 0 && strings.HasPrefix(parts[0], "o-") {
		parts = parts[1:] // an organization trail
	}
	if len(parts) < 1 || !IsAccount(parts[0]) {
		return Place{}
	}
	pl.Account = parts[0]
	if len(parts) < 3 || parts[1] != "CloudTrail" {
		return pl
	}
	pl.Region = parts[2]
	date := parts[3:]
	if len(date) > 0 {
		pl.Time, pl.Span = dateOf(date)
	}
	if n := len(parts); n > 3 {
		if t, ok := FileStamp(parts[n-1]); ok {
			pl.Time, pl.Span = t, 0
		}
	}
	return pl
}

// dateOf reads YYYY[/MM[/DD]] directories.
func dateOf(parts []string) (time.Time, time.Duration) {
	layouts := []struct {
		layout string
		span   time.Duration
	}{{"2006", 366 * 24 * time.Hour}, {"2006/01", 31 * 24 * time.Hour}, {"2006/01/02", 24 * time.Hour}}
	var t time.Time
	var span time.Duration
	for i := 0; i < len(parts) && i < 3; i++ {
		v, err := time.Parse(layouts[i].layout, strings.Join(parts[:i+1], "/"))
		if err != nil {
			break
		}
		t, span = v, layouts[i].span
	}
	return t, span
}

// FileStamp reads the time of a CloudTrail log file's name,
// <account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<unique>.json.gz.
func FileStamp(name string) (time.Time, bool) {
	fields := strings.Split(path.Base(name), "_")
	if len(fields) < 5 || fields[1] != "CloudTrail" {
		return time.Time{}, false
	}
	t, err := time.Parse("20060102T1504Z", fields[3])
	return t, err == nil
}

// IsAccount: twelve digits, as the plugin reads account fields.
func IsAccount(s string) bool { return cloudtrail.IsAccountID(s) }

// Filter prunes the layout. The zero Filter takes everything.
type Filter struct {
	Accounts, Regions map[string]bool // nil: all
	// Since and Until bound event time (zero: open); files and directories
	// whose place lies wholly outside them, with Lag to spare, are skipped.
	Since, Until time.Time
	Shard        Shard
}

// Lag is how long after an event CloudTrail may deliver the file that
// holds it (about 5 minutes on average; a day is spare).
const Lag = 24 * time.Hour

// Shard is shard K of N; N 0 or 1 is every account.
type Shard struct{ K, N int }

// Has reports whether the account falls in the shard: the FNV-1a 64-bit
// hash of its id, mapped onto 0..N-1 by its high bits (hash × N / 2^64).
// Each account falls in exactly one shard. FNV-1a's low bits are a poor
// mix (modulo 4 they depend only on the low bits of the id's bytes: most
// of a run of similar account ids land in one shard), its high bits are
// not.
func (s Shard) Has(account string) bool {
	if s.N <= 1 {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(account))
	k, _ := bits.Mul64(h.Sum64(), uint64(s.N))
	return k == uint64(s.K)
}

// Account reports whether the filter takes the account's events.
func (f *Filter) Account(a string) bool {
	return (f.Accounts == nil || f.Accounts[a]) && f.Shard.Has(a)
}

// Region reports whether the filter takes the region's events.
func (f *Filter) Region(r string) bool { return f.Regions == nil || f.Regions[r] }

// GlobalRegion is where CloudTrail logs the calls of the global services
// (IAM, STS's global endpoint) and AWS Health's notices, whatever region
// they concern: a lifecycle in any region may start there, so --region
// never prunes its files (the scan keeps only those services' events of
// it).
func GlobalRegion(r string) bool { return r == "us-east-1" }

// Time reports whether an event of time t is taken.
func (f *Filter) Time(t time.Time) bool {
	return (f.Since.IsZero() || !t.Before(f.Since)) && (f.Until.IsZero() || !t.After(f.Until))
}

// Takes reports whether a place can hold events the filter takes. A
// place with a time holds events from Lag before it to its end (Span).
func (f *Filter) Takes(p Place) bool {
	if p.Account != "" && !f.Account(p.Account) {
		return false
	}
	if p.Region != "" && !f.Region(p.Region) && !GlobalRegion(p.Region) {
		return false
	}
	if p.Time.IsZero() {
		return true
	}
	// A file's events come before its stamp (or a directory's end), and
	// at most Lag before its start.
	end := p.Time.Add(p.Span)
	if p.Span == 0 {
		end = end.Add(clockSkew)
	}
	if !f.Since.IsZero() && end.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && p.Time.Add(-Lag).After(f.Until) {
		return false
	}
	return true
}

// clockSkew: an event may carry a time a little after its file's stamp.
const clockSkew = 15 * time.Minute
