package instance

import (
	"fmt"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/dedup"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

// BenchmarkFlushAllQuarantine: every record a distinct quarantine event,
// through detection, de-duplication and both encodings, to a sink that
// only counts. Profile the per-alert cost with -cpuprofile.
func BenchmarkFlushAllQuarantine(b *testing.B) {
	raw := []byte(`{"eventName":"AttachUserPolicy","eventSource":"iam.amazonaws.com","eventTime":"2026-11-20T08:15:42Z","awsRegion":"us-east-1","recipientAccountId":"111122223333","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/x/y","accessKeyId":"ASIAX"},"requestParameters":{"userName":"bob","policyArn":"arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"}}`)
	var bodies []any
	for i := range 1000 {
		v, _ := value.FromJSON(raw)
		v.(map[string]any)["eventID"] = fmt.Sprintf("id-%d", i)
		bodies = append(bodies, v)
	}
	chunk := fbchunk.FromValues(time.Unix(0, 0), bodies)
	f := &flaky{}
	in, _ := newInstance(b, f)
	defer in.Close()
	b.ReportAllocs()
	for b.Loop() {
		in.delivered = dedup.New(10000, time.Hour)
		f.got = f.got[:0]
		if in.Flush(chunk, "t") != OK || len(f.got) != 1000 {
			b.Fatal("not delivered")
		}
	}
	b.ReportMetric(1000*float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
}
