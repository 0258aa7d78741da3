package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

func TestCutStaysUnderTheLimit(t *testing.T) {
	var alerts []Alert
	for _, n := range []int{3, 3, 3, 9, 1, 12, 2, 2} {
		alerts = append(alerts, Alert{Doc: make([]byte, n)})
	}
	var got [][]int
	for _, b := range Cut(alerts, 8, func(a Alert) int { return len(a.Doc) }) {
		var run []int
		for _, a := range b {
			run = append(run, len(a.Doc))
		}
		got = append(got, run)
	}
	want := [][]int{{3, 3}, {3}, {9}, {1}, {12}, {2, 2}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if Cut(nil, 8, func(Alert) int { return 1 }) != nil {
		t.Fatal("no alerts, no batch")
	}
}

// picky refuses, as a whole, any batch holding a poison alert (an HTTP
// 400 for the body), or every batch; it counts its requests.
type picky struct {
	poison   map[string]bool
	all      bool
	requests int
	got      []string
}

func (p *picky) Encoding() Encoding { return JSON }
func (p *picky) Batches(as []Alert) [][]Alert {
	return Cut(as, 100, func(Alert) int { return 1 })
}
func (p *picky) Fits(Alert) bool { return true }
func (p *picky) Close() error    { return nil }
func (p *picky) Deliver(_ context.Context, batch []Alert) error {
	p.requests++
	for _, a := range batch {
		if p.all || p.poison[a.Key] {
			return &RefusedError{Reason: "400 Bad Request"}
		}
	}
	for _, a := range batch {
		p.got = append(p.got, a.Key)
	}
	return nil
}

func keyed(n int) []Alert {
	var as []Alert
	for i := range n {
		as = append(as, Alert{Key: fmt.Sprint(i)})
	}
	return as
}

// A batch refused as a whole is split down to the alerts at fault: they
// are refused, the others delivered, in a few requests each. A receiver
// that refuses everything costs a bounded number of requests a round.
func TestSendIsolatesRefusedAlerts(t *testing.T) {
	p := &picky{poison: map[string]bool{"17": true, "70": true}}
	var refused []string
	var done int
	h := Handler{
		Done:    func(b []Alert) error { done += len(b); return nil },
		Refused: func(r Refusal) error { refused = append(refused, r.Alert.Key); return nil },
	}
	n, err := Send(context.Background(), p, keyed(250), h)
	if err != nil || n != 248 || done != 248 || !slices.Equal(refused, []string{"17", "70"}) || len(p.got) != 248 {
		t.Fatalf("delivered %d (%d recorded), refused %v: %v", n, done, refused, err)
	}
	if p.requests > 3+2*2*8 {
		t.Fatalf("%d requests to find 2 alerts among 250", p.requests)
	}

	all := &picky{all: true}
	refused = nil
	n, err = Send(context.Background(), all, keyed(1000), h)
	var whole *RefusedError
	if n != 0 || !errors.As(err, &whole) || all.requests > isolations+1 {
		t.Fatalf("a receiver that refuses everything: %d delivered, %d requests: %v", n, all.requests, err)
	}
}

// The parts of a batch answered item by item are reported as they went.
func TestSendReportsItems(t *testing.T) {
	s := itemsSink{}
	var done, refused []string
	n, err := Send(context.Background(), s, keyed(3), Handler{
		Done:    func(b []Alert) error { done = append(done, b[0].Key, b[len(b)-1].Key); return nil },
		Refused: func(r Refusal) error { refused = append(refused, r.Alert.Key); return nil },
	})
	if n != 1 || !slices.Equal(done, []string{"0", "0"}) || !slices.Equal(refused, []string{"1"}) || err == nil || err.Error() != "busy" {
		t.Fatalf("%d delivered %v refused %v: %v", n, done, refused, err)
	}
}

// itemsSink delivers the first alert, refuses the second and fails the
// third of a batch of three.
type itemsSink struct{}

func (itemsSink) Encoding() Encoding           { return JSON }
func (itemsSink) Batches(as []Alert) [][]Alert { return [][]Alert{as} }
func (itemsSink) Fits(Alert) bool              { return true }
func (itemsSink) Close() error                 { return nil }
func (itemsSink) Deliver(context.Context, []Alert) error {
	return &ItemsError{Delivered: []bool{true, false, false}, Refused: []string{"", "mapper_parsing_exception", ""}, Err: errors.New("busy")}
}
