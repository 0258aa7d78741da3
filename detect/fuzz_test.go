package detect_test

import (
	"encoding/json"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
)

// FuzzScan: any chunk, no panic, and every alert names a rule and a key.
// The seeds cover each record shape, so mutations reach the resolver, the
// JSON-string path and the ECS parameter parser.
func FuzzScan(f *testing.F) {
	ev := applied(f)
	js, _ := value.ToJSON(ev)
	f.Add(fbchunk.AppendV2(nil, t0, nil, ev))
	f.Add(fbchunk.AppendV2(nil, t0, nil, map[string]any{"Records": []any{ev}}))
	f.Add(fbchunk.AppendV2(nil, t0, nil, map[string]any{"detail": ev}))
	f.Add(fbchunk.AppendLegacy(nil, 1.5, map[string]any{"log": string(js)}))
	f.Add(fbchunk.AppendV2(nil, t0, nil, map[string]any{"event.action": "AttachUserPolicy",
		"aws.cloudtrail.request_parameters": "{userName=a, policyArn=arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2}"}))
	d := detect.New(detect.Options{EventKeys: []string{"log", "message"}, IncludeEvent: true})
	f.Fuzz(func(t *testing.T, b []byte) {
		alerts, _ := d.Scan(b, nil)
		for i := range alerts {
			if alerts[i].Rule.ID == "" || alerts[i].Key == "" {
				t.Fatalf("incomplete alert %+v", alerts[i])
			}
			for _, f := range []detect.Format{detect.Native, detect.ECS} {
				js, err := alerts[i].AppendJSON(nil, f)
				if err != nil || !json.Valid(js) {
					t.Fatalf("alert does not encode: %v %q", err, js)
				}
				if _, err := alerts[i].AppendMsgpack(nil, f); err != nil {
					t.Fatalf("alert does not encode: %v", err)
				}
			}
		}
	})
}
