package detect_test

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/cloudtrail"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/lifecycle"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/hostile"
)

// maxID is the longest _id Elasticsearch takes; alert keys are the ids of
// the es_bulk sink and the keys of the store.
const maxID = 512

// Every string of every example blown past every bound (one at a time,
// then all together) and turned into control characters, read from a
// chunk and from JSON, and fed to a lifecycle engine that watches the
// examples' key: every event key and every alert key (stateless and
// lifecycle) stays short enough to be an Elasticsearch _id, and the
// oversized values are counted.
func TestHostileValuesKeepKeysShort(t *testing.T) {
	d := detect.New(detect.Options{EventKeys: []string{"log", "message"}})
	engine := lifecycle.New(lifecycle.Options{WatchTTL: 1 << 62, MaxKeys: 1 << 20, UseWindow: time.Hour, Grace: 15 * time.Minute, Delay: 15 * time.Minute})
	long := hostile.Long(70_000)
	var bodies []any
	for _, ex := range corpus.Examples(t) {
		for _, path := range hostile.Leaves(ex.Event) {
			bodies = append(bodies, hostile.With(ex.Event, path, long), hostile.With(ex.Event, path, hostile.Controls))
		}
		bodies = append(bodies, hostile.All(ex.Event, long))
	}
	bodies = append(bodies, worstKeys()...)
	oversized, findings := 0, 0
	longest := map[string]int{}
	check := func(obs []detect.Observed) {
		for _, o := range obs {
			if k := detect.EventKey(o.Event); len(k) > detect.MaxEventKey {
				t.Fatalf("event key of %d bytes: %.80q", len(k), k)
			}
			all := append(o.Findings, engine.Observe(o, time.Time{})...)
			for _, f := range all {
				findings++
				longest[f.Rule.ID] = max(longest[f.Rule.ID], len(f.Key))
				if len(f.Key) > maxID {
					t.Fatalf("%s: alert key of %d bytes: %.200q", f.Rule.ID, len(f.Key), f.Key)
				}
			}
		}
	}
	for _, b := range bodies {
		obs, st := d.Scan(fbchunk.AppendV2(nil, t0, nil, b), engine.Watch(), nil)
		oversized += st.Oversized
		check(obs)
		var js detect.JSONStats
		check(d.ObserveJSON(value.ToJSON(b), false, nil, t0, nil, &js))
	}
	t.Logf("longest alert key by rule: %v", longest)
	if len(longest) != len(rules.All()) { // the examples' event times move the engine past their waits
		t.Errorf("findings of %d rules only: %v", len(longest), longest)
	}
	if oversized < len(bodies)/3 || findings < len(bodies)/2 {
		t.Fatalf("%d oversized values and %d findings in %d bodies: the variants did not reach the rules", oversized, findings, len(bodies))
	}
}

// worstKeys is a case whose key, user and account are each at their bound,
// used with an action and a service at theirs, then retired by an event
// whose id is at its: the longest alert keys the lifecycle makes.
func worstKeys() []any {
	at := func(n int, s string) string { return s + strings.Repeat("x", n-len(s)) }
	key := at(cloudtrail.MaxAccessKeyID, "AKIA")
	user := at(cloudtrail.MaxUserName, "u")
	account := strings.Repeat("1", cloudtrail.MaxAccountID)
	actor := map[string]any{"type": "IAMUser", "userName": user, "accessKeyId": key, "accountId": account}
	return []any{
		map[string]any{"eventName": "PutUserPolicy", "eventSource": "iam.amazonaws.com", "eventID": at(cloudtrail.MaxEventID, "q"),
			"eventTime": "2026-11-20T08:00:00.123456789Z", "errorCode": "AccessDenied", "recipientAccountId": account, "userIdentity": actor,
			"requestParameters": map[string]any{"userName": user, "policyName": "AWSExposedCredentialPolicy_DO_NOT_REMOVE"}},
		map[string]any{"eventName": at(cloudtrail.MaxEventName, "Get"), "eventSource": at(cloudtrail.MaxEventSource, "s3"),
			"eventID": at(cloudtrail.MaxEventID, "u"), "eventTime": "2026-11-20T08:05:00.123456789Z", "errorCode": "AccessDenied",
			"recipientAccountId": account, "userIdentity": actor},
		map[string]any{"eventName": "DeleteUser", "eventSource": "iam.amazonaws.com", "eventID": at(cloudtrail.MaxEventID, "r"),
			"eventTime": "2026-11-20T08:10:00.123456789Z", "recipientAccountId": account, "userIdentity": actor,
			"requestParameters": map[string]any{"userName": user}},
	}
}
