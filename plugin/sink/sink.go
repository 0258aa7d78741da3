// Package sink defines where alerts go. Each destination (stdout, file,
// forward, ...) is one small type behind the Sink interface, so the plugin
// can retry, deduplicate and count without knowing which one it talks to.
package sink

import (
	"context"
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
// buffer_max_size, an HTTP endpoint a body over its limit). Deliver sends
// one batch and returns nil only when every alert of it is known to have
// arrived (for forward: acknowledged by the receiver); on error the caller
// sends the batch again later, so a sink must make re-sending safe. Deliver
// gives up when ctx is done, and may be called from several goroutines at
// once.
type Sink interface {
	Encoding() Encoding
	Batches(alerts []Alert) [][]Alert
	Deliver(ctx context.Context, batch []Alert) error
	Close() error
}

// Cut cuts alerts into runs whose sizes add up to at most limit; an alert
// that alone is bigger goes in a run of its own (a receiver with a larger
// buffer may still take it; one alert cannot be split).
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

// Send delivers alerts batch by batch, in order, calling done after each
// batch that arrived (to record it), and stops at the first failure of a
// delivery or of done. It reports how many alerts were delivered and done.
func Send(ctx context.Context, s Sink, alerts []Alert, done func(batch []Alert) error) (int, error) {
	n := 0
	for _, batch := range s.Batches(alerts) {
		if err := s.Deliver(ctx, batch); err != nil {
			return n, err
		}
		if err := done(batch); err != nil {
			return n, err
		}
		n += len(batch)
	}
	return n, nil
}
