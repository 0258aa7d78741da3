// Package sink defines where alerts go. Each destination (stdout, file,
// forward, ...) is one small type behind the Sink interface, so the plugin
// can retry, deduplicate and count without knowing which one it talks to.
package sink

import "time"

// Alert is one alert ready to leave the process, already encoded in the
// form its sink asked for (Sink.Encoding), so no sink has to know the alert
// schema and no alert is encoded twice.
type Alert struct {
	// Time is the alert record's timestamp: the CloudTrail eventTime.
	Time time.Time
	// Key identifies the alert for deduplication (rule id + event id).
	Key string
	// JSON is the alert as one JSON object, without a trailing newline,
	// for sinks whose Encoding is JSON.
	JSON []byte
	// Msgpack is the alert as one msgpack map, for Msgpack sinks.
	Msgpack []byte
}

// Encoding is the form a sink takes alerts in.
type Encoding int

const (
	JSON Encoding = iota
	Msgpack
)

// Sink delivers alerts. Deliver returns nil only when every alert of the
// batch is known to have arrived (for forward: acknowledged by the
// receiver); on error the caller treats the whole batch as undelivered and
// retries it later, so a sink must make re-sending a batch safe. Deliver may
// be called from several goroutines at once.
type Sink interface {
	Encoding() Encoding
	Deliver(alerts []Alert) error
	Close() error
}
