package detect_test

import (
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

// ScanSeeds cover each record shape, so mutations reach the resolver, the
// JSON-string path and the ECS parameter parser.
func scanSeeds(f *testing.F) {
	ev := applied(f)
	js := value.ToJSON(ev)
	f.Add(fbchunk.AppendV2(nil, t0, nil, ev))
	f.Add(fbchunk.AppendV2(nil, t0, nil, map[string]any{"Records": []any{ev}}))
	f.Add(fbchunk.AppendV2(nil, t0, nil, map[string]any{"detail": ev}))
	f.Add(fbchunk.AppendLegacy(nil, 1.5, map[string]any{"log": string(js)}))
	f.Add(fbchunk.AppendV2(nil, t0, nil, map[string]any{"event.action": "AttachUserPolicy",
		"aws.cloudtrail.request_parameters": "{userName=a, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}"}))
}

// FuzzScan: any chunk, no panic, and every finding names a rule, an event
// and a key.
func FuzzScan(f *testing.F) {
	scanSeeds(f)
	d := detect.New(detect.Options{EventKeys: []string{"log", "message"}})
	f.Fuzz(func(t *testing.T, b []byte) {
		obs, _ := d.Scan(b, nil, nil)
		findings := detect.Findings(obs)
		for _, x := range findings {
			if x.Rule == nil || x.Event == nil || x.Key == "" {
				t.Fatalf("incomplete finding %+v", x)
			}
		}
	})
}
