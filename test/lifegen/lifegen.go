// Package lifegen generates the lives of exposed access keys for the
// lifecycle's metamorphic tests: seeded scenarios of one to three users
// (each with its exposed key and another key) across two accounts, each
// life a random mix of a Health notice (naming the key and the user, the
// key alone, or none), a quarantine (managed or legacy, applied or
// failed, before or after the notice, within Quarantine_Grace or not),
// calls with the key and with the user's other key (allowed, failed,
// denied by the quarantine, AWS acting as the user), the quarantine's
// removal, the key's retirement (deactivated, deleted, deactivated then
// made active again and deleted, or its user deleted), and ordinary
// CloudTrail of other users around them. It also delivers a scenario the
// ways a collector may: in an arrival order shuffled within Event_Delay,
// cut into chunks at random points, with several events merged into one
// CloudTrail log file record.
package lifegen

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Base is when every scenario starts (event time).
var Base = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

// Kind says what an event is to the lifecycle.
type Kind int

const (
	Noise  Kind = iota // ordinary CloudTrail of other users
	Signal             // names an exposed key or its user: notice, quarantine, denied call
	Other              // a call, removal or status change of a life's key or user
)

// Event is one generated event.
type Event struct {
	Body map[string]any
	At   time.Time
	Kind Kind
	// Subjects: for a signal, the keys ("key:K") and users ("user:A/U")
	// it names; for another event, those whose signal must have arrived
	// before it for a collector to be watching it.
	Subjects []string
	// After: an event naming all of these (a signal, or a status change
	// that links a key to its user), earlier than this event, must be
	// judged before it for a collector to agree with event-time order
	// (a call with the user's other key is a use while the user's exposed
	// key is not known; once it alerted, a later-arriving notice naming
	// the exposed key earlier cannot take that back).
	After []string
	// Links: a status change of a key names it as its user's exposed key
	// when the user was watched with no key known.
	Links   []string
	Health  bool // an AWS Health notice (EventBridge), never in a log file
	Account string
	Region  string
}

// Scenario is a generated set of events, in event-time order; the last is
// an ordinary event three hours after the rest, so time moves past every
// wait in any replay.
type Scenario struct {
	Seed   uint64
	Events []Event
	About  string // what the lives hold, for a failure message
}

var accounts = []string{"111122223333", "444455556666"}

// Generate makes the scenario of seed.
func Generate(seed uint64) Scenario {
	rng := rand.New(rand.NewPCG(seed, 0x11fe))
	g := &gen{rng: rng}
	s := Scenario{Seed: seed}
	users := 1 + rng.IntN(3)
	for i := range users {
		s.About += g.life(i) + "; "
	}
	for range rng.IntN(15) {
		g.noise(Base.Add(time.Duration(rng.IntN(int(4*time.Hour/time.Second))) * time.Second))
	}
	last := Base
	for _, e := range g.events {
		if e.At.After(last) {
			last = e.At
		}
	}
	g.noise(last.Add(3 * time.Hour))
	slices.SortStableFunc(g.events, func(a, b Event) int { return a.At.Compare(b.At) })
	s.Events = g.events
	return s
}

type gen struct {
	rng    *rand.Rand
	events []Event
	n      int
}

func (g *gen) id(prefix string) string {
	g.n++
	return fmt.Sprintf("%s-%04d-%08x", prefix, g.n, g.rng.Uint32())
}

func (g *gen) within(from time.Time, lo, hi time.Duration) time.Time {
	return from.Add(lo + time.Duration(g.rng.Int64N(int64(hi-lo)))).Truncate(time.Second)
}

func pick[T any](rng *rand.Rand, xs ...T) T { return xs[rng.IntN(len(xs))] }

// life adds one user's events and says what they are.
func (g *gen) life(i int) string {
	rng := g.rng
	account := accounts[rng.IntN(len(accounts))]
	user := fmt.Sprintf("user-%d", i)
	key := fmt.Sprintf("AKIAEXPOSED%09d", i)
	other := fmt.Sprintf("AKIAOTHERKEY%08d", i)
	keySubj, userSubj, otherSubj := "key:"+key, "user:"+account+"/"+user, "key:"+other
	start := g.within(Base, 0, 2*time.Hour)
	about := user + ":"

	noticeKind := rng.IntN(4) // 0 none, 1 key and user, 2 key only, 3 key and user
	if noticeKind > 0 {
		names := []string{keySubj, userSubj}
		u := user
		if noticeKind == 2 {
			names, u = []string{keySubj}, ""
		}
		g.add(Event{Body: notice(g.id("health"), account, key, u, start), At: start, Kind: Signal, Subjects: names, Health: true, Account: account, Region: "us-east-1"})
		about += fmt.Sprintf(" notice(%d)", noticeKind)
	}
	quarantineKind := rng.IntN(5) // 0 none, 1 managed, 2 legacy, 3 managed failed, 4 legacy failed
	if noticeKind == 0 && quarantineKind == 0 {
		quarantineKind = 1 + rng.IntN(4)
	}
	var quarantinedAt, quarantineAt time.Time
	if quarantineKind > 0 {
		at := g.within(start, -20*time.Minute, 40*time.Minute)
		quarantineAt = at
		failed := quarantineKind >= 3
		legacy := quarantineKind == 2 || quarantineKind == 4
		names := []string{userSubj}
		if legacy {
			names = append(names, keySubj)
		}
		g.add(Event{Body: quarantine(g.id("quarantine"), account, user, key, legacy, failed, at), At: at, Kind: Signal, Subjects: names, Account: account, Region: "us-east-1"})
		if !failed {
			quarantinedAt = at
		}
		about += fmt.Sprintf(" quarantine(%d)", quarantineKind)
	}
	for range rng.IntN(5) {
		k, subj, after := key, []string{keySubj, userSubj}, []string(nil)
		if rng.IntN(3) == 0 {
			k, subj, after = other, []string{otherSubj, userSubj}, []string{keySubj, userSubj}
		}
		at := g.within(start, -10*time.Minute, 3*time.Hour)
		name := pick(rng, "GetCallerIdentity", "ListBuckets", "DescribeInstances", "GetObject")
		errorCode := pick(rng, "", "", "", "AccessDenied", "NoSuchKey")
		internal := rng.IntN(8) == 0
		body := call(g.id("call"), account, user, k, name, errorCode, "", internal, at)
		if g.n%3 == 0 {
			// An identity without the user's ARN, as a failed console
			// login's: the prefilter knows the call by the user's name.
			delete(body["userIdentity"].(map[string]any), "arn")
		}
		g.add(Event{Body: body, At: at, Kind: Other, Subjects: subj, After: after, Account: account, Region: pick(rng, "us-east-1", "eu-west-1")})
		about += " call"
	}
	if !quarantinedAt.IsZero() {
		for range rng.IntN(3) {
			k, subj := key, []string{keySubj}
			if rng.IntN(2) == 0 {
				k, subj = other, []string{otherSubj}
			}
			at := g.within(quarantinedAt, 0, 2*time.Hour)
			msg := fmt.Sprintf("User: arn:aws:iam::%s:user/%s is not authorized to perform: iam:CreateAccessKey on resource: user %s with an explicit deny in an identity-based policy: arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2", account, user, user)
			g.add(Event{Body: call(g.id("denied"), account, user, k, "CreateAccessKey", "AccessDenied", msg, false, at), At: at, Kind: Signal, Subjects: append(subj, "user:"+account+"/"+user+"/denied"), Account: account, Region: "us-east-1"})
			about += " denied"
		}
		if quarantineKind == 1 && rng.IntN(8) == 0 {
			at := g.within(quarantinedAt, 10*time.Minute, 2*time.Hour)
			g.add(Event{Body: admin(g.id("detach"), account, "DetachUserPolicy", map[string]any{"userName": user, "policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"}, at), At: at, Kind: Other, Subjects: []string{userSubj}, Account: account, Region: "us-east-1"})
			about += " removed"
		}
	}
	// Keys are retired after their life's first signal (an admin acting
	// on the notice or the quarantine), never before.
	first := start
	if quarantineKind > 0 && (noticeKind == 0 || quarantineAt.Before(start)) {
		first = quarantineAt
	}
	retire := g.within(first, 5*time.Minute, 3*time.Hour)
	status := func(active bool, at time.Time) {
		s := "Inactive"
		if active {
			s = "Active"
		}
		g.add(Event{Body: admin(g.id("status"), account, "UpdateAccessKey", map[string]any{"userName": user, "accessKeyId": key, "status": s}, at), At: at, Kind: Other, Subjects: []string{keySubj, userSubj}, Links: []string{keySubj, userSubj}, Account: account, Region: "us-east-1"})
	}
	deleteKey := func(at time.Time) {
		g.add(Event{Body: admin(g.id("delete"), account, "DeleteAccessKey", map[string]any{"userName": user, "accessKeyId": key}, at), At: at, Kind: Other, Subjects: []string{keySubj, userSubj}, Links: []string{keySubj, userSubj}, Account: account, Region: "us-east-1"})
	}
	switch rng.IntN(6) {
	case 1:
		status(false, retire)
		about += " deactivated"
	case 2:
		deleteKey(retire)
		about += " deleted"
	case 3:
		gap := time.Duration(1+rng.IntN(20)) * time.Minute
		status(false, retire)
		status(true, retire.Add(gap))
		deleteKey(retire.Add(2 * gap))
		about += " deactivated-reactivated-deleted"
	case 4:
		g.add(Event{Body: admin(g.id("deluser"), account, "DeleteUser", map[string]any{"userName": user}, retire), At: retire, Kind: Other, Subjects: []string{userSubj, keySubj}, Account: account, Region: "us-east-1"})
		about += " user-deleted"
	}
	return about
}

func (g *gen) noise(at time.Time) {
	account := accounts[g.rng.IntN(len(accounts))]
	g.add(Event{Body: call(g.id("noise"), account, "someone-else", "AKIANOISE00000000001", pick(g.rng, "ListBuckets", "DescribeInstances", "GetObject"), "", "", false, at),
		At: at, Kind: Noise, Account: account, Region: pick(g.rng, "us-east-1", "eu-west-1")})
}

func (g *gen) add(e Event) { g.events = append(g.events, e) }

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func notice(id, account, key, user string, at time.Time) map[string]any {
	meta := map[string]any{"accountId": account, "publicKey": key, "exposedUrl": "https://github.com/example/leak/blob/main/" + key}
	if user != "" {
		meta["userName"] = user
	}
	return map[string]any{
		"version": "0", "id": id, "detail-type": "AWS Health Event", "source": "aws.health", "account": account,
		"time": ts(at), "region": "us-east-1", "resources": []any{key},
		"detail": map[string]any{
			"eventArn": "arn:aws:health:us-east-1::event/RISK/AWS_RISK_CREDENTIALS_EXPOSED/" + id, "service": "RISK",
			"eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED", "eventTypeCategory": "issue", "communicationId": "comm-" + id,
			"affectedEntities": []any{map[string]any{"entityValue": key}}, "eventMetadata": meta,
		},
	}
}

func quarantine(id, account, user, key string, legacy, failed bool, at time.Time) map[string]any {
	var e map[string]any
	if legacy {
		e = call(id, account, user, key, "PutUserPolicy", "", "", true, at)
		e["requestParameters"] = map[string]any{"userName": user, "policyName": "AWSExposedCredentialPolicy_DO_NOT_REMOVE",
			"policyDocument": `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":["iam:CreateAccessKey"],"Resource":["*"]}]}`}
	} else {
		e = admin(id, account, "AttachUserPolicy", map[string]any{"userName": user, "policyArn": "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"}, at)
		e["sourceIPAddress"], e["userAgent"] = "AWS Internal", "AWS Internal"
	}
	e["eventSource"] = "iam.amazonaws.com"
	if failed {
		e["errorCode"] = "AccessDenied"
		e["errorMessage"] = "User: arn:aws:iam::" + account + ":user/" + user + " is not authorized to perform: iam:" + e["eventName"].(string)
	}
	return e
}

// call is a call by user with key (AWS acting as the user with it when
// internal).
func call(id, account, user, key, name, errorCode, errorMessage string, internal bool, at time.Time) map[string]any {
	source := map[string]string{"GetCallerIdentity": "sts.amazonaws.com", "ListBuckets": "s3.amazonaws.com", "GetObject": "s3.amazonaws.com",
		"DescribeInstances": "ec2.amazonaws.com", "CreateAccessKey": "iam.amazonaws.com", "PutUserPolicy": "iam.amazonaws.com"}[name]
	ip, ua := "203.0.113.77", "aws-cli/2.22.0"
	if internal {
		ip, ua = "72.21.217.97", "aws-internal/3 aws-sdk-java/1.12"
	}
	e := map[string]any{
		"eventVersion": "1.09",
		"userIdentity": map[string]any{"type": "IAMUser", "principalId": "AIDA" + user, "arn": "arn:aws:iam::" + account + ":user/" + user,
			"accountId": account, "accessKeyId": key, "userName": user},
		"eventTime": ts(at), "eventSource": source, "eventName": name, "awsRegion": "us-east-1",
		"sourceIPAddress": ip, "userAgent": ua, "requestParameters": nil, "eventID": id, "eventType": "AwsApiCall",
		"recipientAccountId": account,
	}
	if errorCode != "" {
		e["errorCode"] = errorCode
		if errorMessage == "" {
			errorMessage = "failed: " + errorCode
		}
		e["errorMessage"] = errorMessage
	}
	return e
}

// admin is an IAM call by a security admin's role session.
func admin(id, account, name string, params map[string]any, at time.Time) map[string]any {
	return map[string]any{
		"eventVersion": "1.09",
		"userIdentity": map[string]any{"type": "AssumedRole", "arn": "arn:aws:sts::" + account + ":assumed-role/SecurityAdmin/alice",
			"accountId": account, "accessKeyId": "ASIAEXAMPLEADMIN0001"},
		"eventTime": ts(at), "eventSource": "iam.amazonaws.com", "eventName": name, "awsRegion": "us-east-1",
		"sourceIPAddress": "192.0.2.10", "userAgent": "aws-cli/2.15.0", "requestParameters": params, "eventID": id,
		"eventType": "AwsApiCall", "recipientAccountId": account,
	}
}

// Arrival is an order the events may arrive in: each delayed by a random
// time up to delay, so none arrives after an event more than delay later
// than it.
func (s Scenario) Arrival(rng *rand.Rand, delay time.Duration) []int {
	type slot struct {
		i  int
		at time.Time
	}
	slots := make([]slot, len(s.Events))
	for i, e := range s.Events {
		d := time.Duration(0)
		if delay > 0 && i < len(s.Events)-1 { // the last event, the clock's, stays last
			d = time.Duration(rng.Int64N(int64(delay)))
		}
		slots[i] = slot{i, e.At.Add(d)}
	}
	slices.SortStableFunc(slots, func(a, b slot) int { return a.at.Compare(b.at) })
	order := make([]int, len(slots))
	for k, sl := range slots {
		order[k] = sl.i
	}
	return order
}

// Repair moves each event that a collector would judge before every
// signal that could make it watch the event (a call with a key before any
// signal of the key or its user; the events of one record are judged in
// event-time order), or before an earlier signal its After names, to a
// record of its own just after the first such signal's record: the cases
// where arrival order must decide (nothing watched the key when the call
// passed; a call alerted before the signal that shows it was no use
// arrived). It returns how many it moved of each kind.
func (s Scenario) Repair(chunks [][]Record) (unwatched, unknown int) {
	for {
		type place struct{ chunk, rec int }
		var seq []int // events in the order a collector judges them
		at := map[int]place{}
		for ci, c := range chunks {
			for ri, r := range c {
				sorted := slices.Clone(r)
				slices.SortStableFunc(sorted, func(a, b int) int {
					id := func(i int) string { v, _ := s.Events[i].Body["eventID"].(string); return v }
					return cmp.Or(s.Events[a].At.Compare(s.Events[b].At), strings.Compare(id(a), id(b)))
				})
				for _, i := range sorted {
					seq = append(seq, i)
					at[i] = place{ci, ri}
				}
			}
		}
		fixed := false
		for pos, i := range seq {
			e := s.Events[i]
			if e.Kind != Other {
				continue
			}
			first := slices.IndexFunc(seq, func(j int) bool { return s.Events[j].Kind == Signal && names(s.Events[j], e.Subjects) })
			if first < pos {
				first = slices.IndexFunc(seq, func(j int) bool {
					sj := s.Events[j]
					return (sj.Kind == Signal && hasAll(sj.Subjects, e.After) || s.links(sj, e.After)) && sj.At.Before(e.At)
				})
				if first < pos {
					continue
				}
				unknown++
			} else {
				unwatched++
			}
			from, to := at[i], at[seq[first]]
			chunks[from.chunk][from.rec] = slices.DeleteFunc(slices.Clone(chunks[from.chunk][from.rec]), func(j int) bool { return j == i })
			chunks[to.chunk] = slices.Insert(chunks[to.chunk], to.rec+1, Record{i})
			chunks[from.chunk] = slices.DeleteFunc(chunks[from.chunk], func(r Record) bool { return len(r) == 0 })
			fixed = true
			break
		}
		if !fixed {
			return unwatched, unknown
		}
	}
}

func names(sig Event, subjects []string) bool { return hasAny(sig.Subjects, subjects) }

// links: e is a status change that names its key as its user's exposed
// key: one made after the user's first signal (while no key was known).
func (s Scenario) links(e Event, subjects []string) bool {
	if !hasAll(e.Links, subjects) {
		return false
	}
	for _, sig := range s.Events {
		for _, subj := range e.Links {
			if strings.HasPrefix(subj, "user:") && sig.Kind == Signal && slices.Contains(sig.Subjects, subj) && sig.At.Before(e.At) {
				return true
			}
		}
	}
	return false
}

func hasAll(xs, ys []string) bool {
	return len(ys) > 0 && !slices.ContainsFunc(ys, func(y string) bool { return !slices.Contains(xs, y) })
}

func hasAny(xs, ys []string) bool {
	return slices.ContainsFunc(xs, func(x string) bool { return slices.Contains(ys, x) })
}

// Record is one record of a chunk: a single event, or several CloudTrail
// events as one log file object.
type Record []int

// Chunks cuts an arrival order into chunks at random points, and merges
// runs of consecutive CloudTrail events of one account into log file
// records (AWS Health notices stay records of their own).
func (s Scenario) Chunks(rng *rand.Rand, order []int) [][]Record {
	var chunks [][]Record
	var chunk []Record
	for p := 0; p < len(order); {
		n := 1
		if e := s.Events[order[p]]; !e.Health && rng.IntN(3) == 0 {
			// A log file holds minutes of one account's events.
			n = 2 + rng.IntN(4)
			for k := 1; k < n; k++ {
				if p+k >= len(order) {
					n = k
					break
				}
				if f := s.Events[order[p+k]]; f.Health || f.Account != e.Account || f.At.Sub(e.At).Abs() > 5*time.Minute {
					n = k
					break
				}
			}
		}
		chunk = append(chunk, Record(order[p:p+n]))
		p += n
		if rng.IntN(3) == 0 || p == len(order) {
			chunks = append(chunks, chunk)
			chunk = nil
		}
	}
	return chunks
}

// Body is a record's body: the event, or a log file object of them (in
// shuffled order: AWS does not sort a file's Records).
func (s Scenario) Body(r Record, rng *rand.Rand) map[string]any {
	if len(r) == 1 {
		return s.Events[r[0]].Body
	}
	recs := make([]any, len(r))
	for k, i := range r {
		recs[k] = s.Events[i].Body
	}
	if rng != nil {
		rng.Shuffle(len(recs), func(a, b int) { recs[a], recs[b] = recs[b], recs[a] })
	}
	return map[string]any{"Records": recs}
}
