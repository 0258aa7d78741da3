// Package notify reads the SQS messages that announce new CloudTrail log
// files: S3 event notifications (raw or wrapped by SNS), CloudTrail's own
// SNS notifications and EventBridge "Object Created" events. It is pure:
// text in, the objects to read out.
package notify

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	jsoniter "github.com/json-iterator/go"
)

// Object is one S3 object a message announces.
type Object struct {
	Bucket, Key string
}

// Skip says why an announced object or a whole message carries nothing
// to ship.
type Skip string

const (
	TestEvent  Skip = "test_event"  // s3:TestEvent, sent when a notification is configured
	NotCreated Skip = "not_created" // an S3 event other than ObjectCreated (a delete, a restore, ...)
	Digest     Skip = "digest"      // CloudTrail-Digest/: hashes of the log files, no events
	Insight    Skip = "insight"     // CloudTrail-Insight/: Insights events, not API calls
	NoObject   Skip = "no_object"   // a notification that names no object
	Directory  Skip = "directory"   // a key ending in "/": a folder placeholder
)

// Parsed is what one message says.
type Parsed struct {
	Shape   string // s3, sns+s3, cloudtrail-sns, eventbridge, s3-test
	Objects []Object
	// Skipped counts the announced objects (or, for a test event, the
	// message) left out, by reason.
	Skipped map[Skip]int
}

// Options choose which of CloudTrail's other files to ship too.
type Options struct {
	Digests, Insights bool
}

var json = jsoniter.ConfigCompatibleWithStandardLibrary

// ErrUnknown: the body is JSON but no notification this package knows.
var ErrUnknown = errors.New("not an S3, SNS, CloudTrail or EventBridge notification")

// message holds the fields of every shape; which are set tells the shape.
type message struct {
	// S3 event notification.
	Records []struct {
		EventSource string    `json:"eventSource"`
		EventName   string    `json:"eventName"`
		S3          objectRef `json:"s3"`
	} `json:"Records"`
	// s3:TestEvent.
	Event string `json:"Event"`
	// SNS envelope.
	Type    string  `json:"Type"`
	Message *string `json:"Message"`
	// CloudTrail's SNS message.
	S3Bucket    string   `json:"s3Bucket"`
	S3ObjectKey []string `json:"s3ObjectKey"`
	// EventBridge.
	DetailType string    `json:"detail-type"`
	Source     string    `json:"source"`
	Detail     objectRef `json:"detail"`
}

// objectRef names an object the way S3 and EventBridge both do.
type objectRef struct {
	Bucket struct {
		Name string `json:"name"`
	} `json:"bucket"`
	Object struct {
		Key string `json:"key"`
	} `json:"object"`
}

// Parse reads one message body.
func Parse(body []byte, o Options) (Parsed, error) {
	return parse(body, o, false)
}

func parse(body []byte, o Options, inSNS bool) (Parsed, error) {
	var m message
	if err := json.Unmarshal(body, &m); err != nil {
		return Parsed{}, fmt.Errorf("not a JSON object: %v", err)
	}
	p := Parsed{Skipped: map[Skip]int{}}
	switch {
	case m.Type == "Notification" && m.Message != nil && !inSNS:
		inner, err := parse([]byte(*m.Message), o, true)
		if err != nil {
			return inner, fmt.Errorf("SNS message: %w", err)
		}
		if inner.Shape == "s3" || inner.Shape == "s3-test" {
			inner.Shape = "sns+" + inner.Shape
		}
		return inner, nil
	case m.Event == "s3:TestEvent":
		p.Shape = "s3-test"
		p.Skipped[TestEvent]++
		return p, nil
	case m.S3Bucket != "" && m.S3ObjectKey != nil:
		// CloudTrail's notification: keys as they are, not URL-encoded.
		p.Shape = "cloudtrail-sns"
		for _, k := range m.S3ObjectKey {
			p.add(o, m.S3Bucket, k)
		}
	case m.DetailType != "" && m.Source == "aws.s3":
		p.Shape = "eventbridge"
		if m.DetailType != "Object Created" {
			p.Skipped[NotCreated]++
			return p, nil
		}
		// EventBridge's S3 events carry the key as it is.
		p.add(o, m.Detail.Bucket.Name, m.Detail.Object.Key)
	case m.Records != nil:
		p.Shape = "s3"
		for _, r := range m.Records {
			if r.EventSource != "aws:s3" {
				return Parsed{}, ErrUnknown
			}
			if !strings.HasPrefix(r.EventName, "ObjectCreated:") {
				p.Skipped[NotCreated]++
				continue
			}
			// S3 event notifications URL-encode keys, a space as '+'.
			key, err := url.QueryUnescape(r.S3.Object.Key)
			if err != nil {
				return Parsed{}, fmt.Errorf("S3 event key %q: %v", r.S3.Object.Key, err)
			}
			p.add(o, r.S3.Bucket.Name, key)
		}
	default:
		return Parsed{}, ErrUnknown
	}
	return p, nil
}

func (p *Parsed) add(o Options, bucket, key string) {
	if bucket == "" || key == "" {
		p.Skipped[NoObject]++
		return
	}
	if why, skip := Kind(key, o); skip {
		p.Skipped[why]++
		return
	}
	p.Objects = append(p.Objects, Object{Bucket: bucket, Key: key})
}

// Kind says whether a key is left out, and why: CloudTrail's digest and
// Insights files (unless asked for) and folder placeholders.
func Kind(key string, o Options) (Skip, bool) {
	if strings.HasSuffix(key, "/") {
		return Directory, true
	}
	for _, part := range strings.Split(key, "/") {
		switch part {
		case "CloudTrail-Digest":
			return Digest, !o.Digests
		case "CloudTrail-Insight":
			return Insight, !o.Insights
		}
	}
	return "", false
}
