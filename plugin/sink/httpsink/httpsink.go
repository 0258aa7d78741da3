// Package httpsink posts alerts to an HTTP endpoint: a generic webhook
// (JSON array or NDJSON), Splunk's HTTP Event Collector, or
// Elasticsearch's bulk API, so alerts reach them without a Fluent Bit in
// between.
package httpsink

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/plugin/sink"
)

// Format is the request body layout.
type Format string

const (
	JSON      Format = "json"       // one JSON array of alerts
	NDJSON    Format = "ndjson"     // one alert per line
	SplunkHEC Format = "splunk_hec" // HEC event envelopes
	ESBulk    Format = "es_bulk"    // bulk create actions with idempotent _id
)

// Options configure a Sink.
type Options struct {
	URL     string
	Format  Format
	Headers [][2]string // sent with every request, in order
	Timeout time.Duration
	TLS     *tls.Config

	User, Password string // basic auth
	BearerToken    string // Authorization: Bearer
	SplunkToken    string // Authorization: Splunk

	// Splunk HEC envelope fields.
	Host, Source, Sourcetype, Index string
	// ESIndex names the index in each bulk action (else the URL's).
	ESIndex string
}

// Sink posts each batch as one request.
type Sink struct {
	o      Options
	client *http.Client
}

// New validates o.
func New(o Options) (*Sink, error) {
	if o.URL == "" {
		return nil, fmt.Errorf("no URL")
	}
	switch o.Format {
	case JSON, NDJSON, SplunkHEC, ESBulk:
	default:
		return nil, fmt.Errorf("format %q", o.Format)
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = o.TLS
	return &Sink{o: o, client: &http.Client{Timeout: o.Timeout, Transport: tr}}, nil
}

// Encoding is JSON: every format is built from JSON alerts.
func (s *Sink) Encoding() sink.Encoding { return sink.JSON }

// Close drops idle connections.
func (s *Sink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// Deliver posts the batch and reads the answer; only a 2xx answer (and,
// for es_bulk, no failed item) counts as delivered.
func (s *Sink) Deliver(alerts []sink.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	body, contentType := s.body(alerts)
	req, err := http.NewRequest(http.MethodPost, s.o.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	for _, h := range s.o.Headers {
		req.Header.Add(h[0], h[1])
	}
	switch {
	case s.o.SplunkToken != "":
		req.Header.Set("Authorization", "Splunk "+s.o.SplunkToken)
	case s.o.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+s.o.BearerToken)
	case s.o.User != "":
		req.SetBasicAuth(s.o.User, s.o.Password)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("http %s: %s: %.300s", s.o.URL, resp.Status, answer)
	}
	if s.o.Format == ESBulk {
		return bulkErrors(answer)
	}
	return nil
}

func (s *Sink) body(alerts []sink.Alert) ([]byte, string) {
	var b []byte
	switch s.o.Format {
	case JSON:
		b = append(b, '[')
		for i, a := range alerts {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, a.JSON...)
		}
		return append(b, ']'), "application/json"
	case SplunkHEC:
		for _, a := range alerts {
			b = append(b, `{"time":`...)
			b = strconv.AppendFloat(b, float64(a.Time.UnixNano())/1e9, 'f', 3, 64)
			b = appendField(b, "host", s.o.Host)
			b = appendField(b, "source", s.o.Source)
			b = appendField(b, "sourcetype", s.o.Sourcetype)
			if s.o.Index != "" {
				b = appendField(b, "index", s.o.Index)
			}
			b = append(b, `,"event":`...)
			b = append(b, a.JSON...)
			b = append(b, "}\n"...)
		}
		return b, "application/json"
	case ESBulk:
		for _, a := range alerts {
			// create with an _id from rule and eventID: a re-sent alert is
			// refused as a conflict (409) instead of indexed twice.
			b = append(b, `{"create":{`...)
			if s.o.ESIndex != "" {
				b = append(b, `"_index":`...)
				b = value.AppendJSONString(b, s.o.ESIndex)
				b = append(b, ',')
			}
			b = append(b, `"_id":`...)
			b = value.AppendJSONString(b, a.Key)
			b = append(b, "}}\n"...)
			b = append(b, a.JSON...)
			b = append(b, '\n')
		}
		return b, "application/x-ndjson"
	default: // NDJSON
		for _, a := range alerts {
			b = append(append(b, a.JSON...), '\n')
		}
		return b, "application/x-ndjson"
	}
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, ',')
	b = value.AppendJSONString(b, k)
	b = append(b, ':')
	return value.AppendJSONString(b, v)
}

// bulkErrors reads a bulk response: items that were created, or that
// already existed (409: an earlier attempt got through), are delivered;
// any other failure fails the batch, which is safe to send again.
func bulkErrors(answer []byte) error {
	var r struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int `json:"status"`
			Error  struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(answer, &r); err != nil {
		return fmt.Errorf("es_bulk: unreadable response: %v", err)
	}
	if !r.Errors {
		return nil
	}
	for _, item := range r.Items {
		for _, res := range item {
			if res.Status/100 != 2 && res.Status != http.StatusConflict {
				return fmt.Errorf("es_bulk: item failed with %d %s: %s", res.Status, res.Error.Type, res.Error.Reason)
			}
		}
	}
	return nil
}
