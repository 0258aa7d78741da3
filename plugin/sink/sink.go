// Package sink defines where alerts go. Each destination (stdout, file,
// forward, ...) is one small type behind the Sink interface, so the plugin
// can retry, deduplicate and count without knowing which one it talks to.
package sink

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Alert is one alert ready to leave the process, already encoded in the
// form its sink asked for (Sink.Encoding), so no sink has to know the alert
// schema and no alert is encoded twice.
type Alert struct {
	// Time is the alert record's timestamp: the CloudTrail eventTime.
	Time time.Time
	// Key identifies the alert for deduplication (rule id + event id).
	Key string
	// Doc is the alert as one JSON object (no trailing newline) or one
	// msgpack map, as the sink's Encoding says.
	Doc []byte
}

// Encoding is the form a sink takes alerts in.
type Encoding int

const (
	JSON Encoding = iota
	Msgpack
)

// Sink delivers alerts. Batches cuts alerts, in order, into the batches
// its receiver accepts (in_forward refuses a message over its
// buffer_max_size, an HTTP endpoint a body over its limit); Fits says
// whether one alert alone fits in a batch. Deliver sends one batch and
// returns nil only when every alert of it is known to have arrived (for
// forward: acknowledged by the receiver); on error the caller sends the
// batch again later, so a sink must make re-sending safe. A receiver that
// refuses alerts for a reason a retry cannot fix is a *RefusedError (the
// whole batch) or an *ItemsError (alert by alert); a receiver that asks
// for a pause says so with a *RetryAfterError. Deliver gives up when ctx
// is done, and may be called from several goroutines at once.
type Sink interface {
	Encoding() Encoding
	Batches(alerts []Alert) [][]Alert
	Fits(a Alert) bool
	Deliver(ctx context.Context, batch []Alert) error
	Close() error
}

// RefusedError is a receiver refusing a whole batch for its content (an
// HTTP 400, 413 or 422, say), or a sink refusing an alert it knows the
// receiver cannot take (Final: too big even alone). Sending the same
// again gets the same answer.
type RefusedError struct {
	Reason string
	Final  bool
}

func (e *RefusedError) Error() string { return e.Reason }

// ItemsError is a receiver that answered alert by alert (Elasticsearch's
// bulk API): per alert of the batch, whether it was delivered and, when it
// was refused for good, why. Err is why the others failed (a retry may fix
// them); nil when there were refusals only.
type ItemsError struct {
	Delivered []bool
	Refused   []string
	Err       error
}

func (e *ItemsError) Error() string {
	n, r := 0, 0
	for i := range e.Delivered {
		if e.Delivered[i] {
			n++
		}
		if e.Refused[i] != "" {
			r++
		}
	}
	msg := fmt.Sprintf("%d of %d delivered, %d refused", n, len(e.Delivered), r)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ItemsError) Unwrap() error { return e.Err }

// RetryAfterError is a failure whose receiver said when to come back (an
// HTTP Retry-After).
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (the receiver asks to retry after %v)", e.Err, e.After)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter is how long err asks the sender to wait, 0 when it does not.
func RetryAfter(err error) time.Duration {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return ra.After
	}
	return 0
}

// Cut cuts alerts into runs whose sizes add up to at most limit; an alert
// that alone is bigger goes in a run of its own (its sink refuses it
// there, without holding up the others).
func Cut(alerts []Alert, limit int, size func(Alert) int) [][]Alert {
	var out [][]Alert
	start, sum := 0, 0
	for i, a := range alerts {
		n := size(a)
		if i > start && sum+n > limit {
			out = append(out, alerts[start:i])
			start, sum = i, 0
		}
		sum += n
	}
	if start < len(alerts) {
		out = append(out, alerts[start:])
	}
	return out
}

// Refusal is an alert its receiver refused for good, and why. Final says
// the sink itself knows it can never be delivered (not the receiver's
// word of the moment).
type Refusal struct {
	Alert  Alert
	Reason string
	Final  bool
}

// Handler is what Send reports to: Done records alerts delivered (a batch,
// or the delivered part of one), Refused an alert refused for good. An
// error from either stops Send.
type Handler struct {
	Done    func(delivered []Alert) error
	Refused func(Refusal) error
}

// isolations bounds the extra requests one Send spends finding which
// alerts of a refused batch are at fault: a few poison alerts are found in
// one round (about 2*log2(batch) requests each), a receiver that refuses
// everything costs this many requests a round, not one per alert.
const isolations = 64

// Send delivers alerts batch by batch, in order, reporting each batch (or
// part of one) that arrived and each alert refused for good, and stops at
// the first other failure. A batch refused as a whole is split in halves,
// and those again, down to the alerts at fault, so that one poison alert
// does not keep the others out. It reports how many alerts were delivered
// and recorded.
func Send(ctx context.Context, s Sink, alerts []Alert, h Handler) (int, error) {
	sent := &sender{ctx: ctx, s: s, h: h, budget: isolations}
	n := 0
	for _, batch := range s.Batches(alerts) {
		m, err := sent.batch(batch)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

type sender struct {
	ctx    context.Context
	s      Sink
	h      Handler
	budget int
}

func (sd *sender) batch(batch []Alert) (int, error) {
	err := sd.s.Deliver(sd.ctx, batch)
	var whole *RefusedError
	var items *ItemsError
	switch {
	case err == nil:
		if err := sd.h.Done(batch); err != nil {
			return 0, err
		}
		return len(batch), nil
	case errors.As(err, &whole) && len(batch) == 1:
		return 0, sd.h.Refused(Refusal{Alert: batch[0], Reason: whole.Reason, Final: whole.Final})
	case errors.As(err, &whole):
		if sd.budget < 2 {
			return 0, fmt.Errorf("%w (the batch of %d is refused; which alerts are at fault is looked for again next time)", err, len(batch))
		}
		sd.budget -= 2
		half := len(batch) / 2
		n, err := sd.batch(batch[:half])
		if err != nil {
			return n, err
		}
		m, err := sd.batch(batch[half:])
		return n + m, err
	case errors.As(err, &items) && len(items.Delivered) == len(batch) && len(items.Refused) == len(batch):
		var ok []Alert
		for i, a := range batch {
			if items.Delivered[i] {
				ok = append(ok, a)
			}
		}
		if len(ok) > 0 {
			if err := sd.h.Done(ok); err != nil {
				return 0, err
			}
		}
		for i, a := range batch {
			if items.Refused[i] != "" {
				if err := sd.h.Refused(Refusal{Alert: a, Reason: items.Refused[i]}); err != nil {
					return len(ok), err
				}
			}
		}
		return len(ok), items.Err
	}
	return 0, err
}
