package scan_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/archive"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/ocsfmap"
)

// Security Lake's CloudTrail as the Parquet files it writes (OCSF 1.1.0,
// its partition layout), on disk and in S3: every example gives its
// verdict, read as OCSF.
func TestSecurityLakeParquet(t *testing.T) {
	events, want := statelessExamples(t)
	q := quiet(t)
	root := t.TempDir()
	for i, account := range []string{"111122223333", "444455556666"} {
		var recs []map[string]any
		for j, e := range events {
			if j%2 != i {
				continue
			}
			rec, err := ocsfmap.SecurityLakeV2(e)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, rec)
			if n, ok := q[j%len(q)].(map[string]any); ok && n["eventName"] != nil {
				if noise, err := ocsfmap.SecurityLakeV2(n); err == nil {
					recs = append(recs, noise)
				}
			}
		}
		if err := archive.WriteParquet(filepath.Join(root, archive.LakeFile(account, "us-east-1", t0, "part-0")), recs); err != nil {
			t.Fatal(err)
		}
	}
	s3 := startS3(t, "aws-security-data-lake-us-east-1-x", "", root)
	for _, args := range [][]string{{"--use-window", "1ns", root},
		{"--use-window", "1ns", "--endpoint-url", s3.url, "s3://aws-security-data-lake-us-east-1-x/aws/CLOUD_TRAIL_MGMT/"}} {
		res := scanCmd(t, run{args: args, env: s3.env()})
		if res.code != 1 {
			t.Fatalf("%q: exit %d\n%s", args, res.code, res.stderr)
		}
		as := alerts(t, res.stdout)
		checkExamples(t, as, want)
		for _, a := range as {
			if a.Shape != "ocsf" && a.Shape != "lifecycle" {
				t.Errorf("%s read as %q", a.EventID, a.Shape)
			}
		}
		if !strings.Contains(res.stderr, ": 2 files, ") {
			t.Errorf("%q: summary\n%s", args, res.stderr)
		}
	}
	// --account prunes the partitions.
	res := scanOf(t, "--account", "444455556666", root)
	if !strings.Contains(res.stderr, ": 1 files, ") {
		t.Errorf("--account: %s", res.stderr)
	}
}
