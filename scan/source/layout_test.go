package source

import (
	"fmt"
	"testing"
	"time"
)

func TestParsePlace(t *testing.T) {
	day := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		path string
		want Place
	}{
		{"trail/AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/02/111122223333_CloudTrail_us-east-1_20240102T0005Z_x.json.gz",
			Place{Account: "111122223333", Region: "us-east-1", Time: day.Add(5 * time.Minute)}},
		{"AWSLogs/o-abc123/111122223333/CloudTrail/eu-west-1/2024/01/02/",
			Place{Account: "111122223333", Region: "eu-west-1", Time: day, Span: 24 * time.Hour}},
		{"AWSLogs/111122223333/CloudTrail/eu-west-1/2024", Place{Account: "111122223333", Region: "eu-west-1", Time: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Span: 366 * 24 * time.Hour}},
		{"AWSLogs/111122223333", Place{Account: "111122223333"}},
		{"AWSLogs/o-abc123/", Place{}},
		{"aws/CLOUD_TRAIL_MGMT/2.0/region=us-east-1/accountId=111122223333/eventDay=20240102/f.gz.parquet",
			Place{Account: "111122223333", Region: "us-east-1", Time: day, Span: 24 * time.Hour, Lake: true}},
		{"exports/events.jsonl", Place{}},
	} {
		if got := ParsePlace(c.path); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.path, got, c.want)
		}
	}
}

func TestFilterTakes(t *testing.T) {
	day := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	f := Filter{Accounts: map[string]bool{"111122223333": true}, Regions: map[string]bool{"us-east-1": true},
		Since: day, Until: day.Add(24*time.Hour - 1)}
	for _, c := range []struct {
		p    Place
		want bool
	}{
		{Place{Account: "111122223333", Region: "us-east-1", Time: day, Span: 24 * time.Hour}, true},
		{Place{Account: "444455556666", Region: "us-east-1"}, false},
		{Place{Account: "111122223333", Region: "eu-west-1"}, false},
		// Two days before holds nothing at or after since (the day before
		// is read: its last file may run past midnight); a file stamped
		// just after midnight may hold the last minutes before it.
		{Place{Account: "111122223333", Region: "us-east-1", Time: day.Add(-48 * time.Hour), Span: 24 * time.Hour}, false},
		{Place{Account: "111122223333", Region: "us-east-1", Time: day.Add(-24 * time.Hour), Span: 24 * time.Hour}, true},
		{Place{Account: "111122223333", Region: "us-east-1", Time: day.Add(24*time.Hour + 5*time.Minute)}, true},
		// More than a day of delivery lag after until: nothing in it.
		{Place{Account: "111122223333", Region: "us-east-1", Time: day.Add(72 * time.Hour)}, false},
		{Place{}, true},
	} {
		if got := f.Takes(c.p); got != c.want {
			t.Errorf("%+v: %v", c.p, got)
		}
	}
}

// Every account falls in exactly one shard, and the shards share them
// out, a run of similar ids too.
func TestShards(t *testing.T) {
	similar := map[int]int{}
	for _, a := range []string{"111122223333", "222233334444", "333344445555", "444455556666", "555566667777",
		"666677778888", "777788889999", "888899990000", "999900001111", "123456789012", "210987654321", "121212121212"} {
		for k := range 4 {
			if (Shard{K: k, N: 4}).Has(a) {
				similar[k]++
			}
		}
	}
	if len(similar) < 4 {
		t.Errorf("12 similar accounts fill %d of 4 shards: %v", len(similar), similar)
	}
	const n = 4
	counts := make([]int, n)
	for i := range 10000 {
		a := fmt.Sprintf("%012d", i*7919)
		in := 0
		for k := range n {
			if (Shard{K: k, N: n}).Has(a) {
				in++
				counts[k]++
			}
		}
		if in != 1 {
			t.Fatalf("%s in %d shards", a, in)
		}
	}
	for k, c := range counts {
		if c < 2000 || c > 3000 {
			t.Errorf("shard %d holds %d of 10000 accounts", k, c)
		}
	}
}
