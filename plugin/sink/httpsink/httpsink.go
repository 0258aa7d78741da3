// Package httpsink posts alerts to an HTTP endpoint: a generic webhook
// (JSON array or NDJSON), Splunk's HTTP Event Collector, or
// Elasticsearch's bulk API, so alerts reach them without a Fluent Bit in
// between.
package httpsink

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/idkey"
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
	// MaxBatchBytes caps one request body; more alerts take more requests.
	MaxBatchBytes int
}

// Sink posts batches of alerts, one request each.
type Sink struct {
	o      Options
	client *http.Client
	// safeURL is URL without its user-info, for error messages.
	safeURL string
}

// New validates o.
func New(o Options) (*Sink, error) {
	u, err := url.Parse(o.URL)
	if err != nil || o.URL == "" {
		return nil, fmt.Errorf("not a URL")
	}
	if o.MaxBatchBytes <= 0 {
		return nil, fmt.Errorf("batch size must be positive")
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
	// A redirect is never followed: a 302 turns the POST into a bodiless
	// GET whose 200 would count the alerts delivered, and a 307 to another
	// scheme or host would carry the body and the credentials there.
	noRedirects := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Sink{o: o, client: &http.Client{Timeout: o.Timeout, Transport: tr, CheckRedirect: noRedirects}, safeURL: Redact(u)}, nil
}

// Redact writes u without its user-info (user and password) for logs.
func Redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// Encoding is JSON: every format is built from JSON alerts.
func (s *Sink) Encoding() sink.Encoding { return sink.JSON }

// Close drops idle connections.
func (s *Sink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// Batches cuts alerts into bodies of at most MaxBatchBytes.
func (s *Sink) Batches(alerts []sink.Alert) [][]sink.Alert {
	var scratch []byte
	return sink.Cut(alerts, s.o.MaxBatchBytes-s.closing(), func(a sink.Alert) int {
		scratch = s.appendPart(scratch[:0], a, false)
		return len(scratch)
	})
}

// Fits says whether the alert alone makes a body of at most
// MaxBatchBytes. A part's size is the part itself (escapes make it hard to
// count); a first part is as long as any other: '[' instead of ','.
func (s *Sink) Fits(a sink.Alert) bool {
	return len(s.appendPart(nil, a, false)) <= s.o.MaxBatchBytes-s.closing()
}

// Deliver posts the batch as one request; only a 2xx answer (and, for
// es_bulk, no failed item) counts as delivered.
func (s *Sink) Deliver(ctx context.Context, alerts []sink.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	if len(alerts) == 1 && !s.Fits(alerts[0]) {
		return &sink.RefusedError{Final: true, Reason: fmt.Sprintf("http %s: the alert alone makes a body of %d bytes, more than the largest allowed (%d)",
			s.safeURL, len(s.appendPart(nil, alerts[0], true))+s.closing(), s.o.MaxBatchBytes)}
	}
	var b []byte
	for i, a := range alerts {
		b = s.appendPart(b, a, i == 0)
	}
	contentType := "application/json"
	switch s.o.Format {
	case JSON:
		b = append(b, ']')
	case ESBulk, NDJSON:
		contentType = "application/x-ndjson"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("http %s: %v", s.safeURL, err)
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
		var uerr *url.Error
		if errors.As(err, &uerr) {
			// net/http masks the password but keeps the user name.
			uerr.URL = s.safeURL
		}
		return fmt.Errorf("http: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return s.failed(resp)
	}
	if s.o.Format == ESBulk {
		return bulkErrors(resp.Body, alerts)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // keeps the connection reusable
	return nil
}

// failed turns an answer other than 2xx into the error that says what
// a retry can do about it.
func (s *Sink) failed(resp *http.Response) error {
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	// One log line, whatever the answer's layout.
	err := fmt.Errorf("http %s: %s: %s", s.safeURL, resp.Status, strings.Join(strings.Fields(string(answer)), " "))
	switch code := resp.StatusCode; {
	case code/100 == 3:
		return fmt.Errorf("http %s: %s, to %s: redirects are not followed (set HTTP_URL to the address that answers)", s.safeURL, resp.Status, location(resp))
	case code/100 == 4 && !endpointErrors[code]:
		return &sink.RefusedError{Reason: err.Error()}
	}
	if after := retryAfter(resp.Header.Get("Retry-After"), time.Now()); after > 0 {
		return &sink.RetryAfterError{Err: err, After: after}
	}
	return err
}

// endpointErrors are the 4xx answers about the endpoint, the credentials
// or the moment, not about the alerts sent: every alert would get the
// same, so they are retried, never held against an alert.
var endpointErrors = map[int]bool{
	http.StatusUnauthorized: true, http.StatusPaymentRequired: true, http.StatusForbidden: true, http.StatusNotFound: true,
	http.StatusMethodNotAllowed: true, http.StatusProxyAuthRequired: true, http.StatusRequestTimeout: true, http.StatusGone: true,
	http.StatusMisdirectedRequest: true, http.StatusUpgradeRequired: true, http.StatusTooManyRequests: true,
	http.StatusRequestHeaderFieldsTooLarge: true, http.StatusUnavailableForLegalReasons: true,
}

// location is where a redirect points, without its query and fragment
// (they may carry tokens) or user-info.
func location(resp *http.Response) string {
	loc, err := resp.Location()
	if err != nil {
		return "(no usable Location)"
	}
	loc.RawQuery, loc.ForceQuery, loc.Fragment, loc.RawFragment = "", false, "", ""
	return Redact(loc)
}

// retryAfter reads a Retry-After header (seconds, or an HTTP date) as a
// wait from now; 0 when there is none.
func retryAfter(v string, now time.Time) time.Duration {
	if v = strings.TrimSpace(v); v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(max(min(secs, int64(24*time.Hour/time.Second)), 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// closing is what body adds after the last part.
func (s *Sink) closing() int {
	if s.o.Format == JSON {
		return 1
	}
	return 0
}

// appendPart appends one alert in the body's format.
func (s *Sink) appendPart(b []byte, a sink.Alert, first bool) []byte {
	switch s.o.Format {
	case JSON:
		if first {
			b = append(b, '[')
		} else {
			b = append(b, ',')
		}
		return append(b, a.Doc...)
	case SplunkHEC:
		b = append(b, `{"time":`...)
		b = strconv.AppendFloat(b, float64(a.Time.UnixNano())/1e9, 'f', 3, 64)
		b = appendField(b, "host", s.o.Host)
		b = appendField(b, "source", s.o.Source)
		b = appendField(b, "sourcetype", s.o.Sourcetype)
		if s.o.Index != "" {
			b = appendField(b, "index", s.o.Index)
		}
		b = append(b, `,"event":`...)
		b = append(b, a.Doc...)
		return append(b, "}\n"...)
	case ESBulk:
		// create with an _id from rule and eventID: a re-sent alert is
		// refused as a conflict (409) instead of indexed twice.
		b = append(b, `{"create":{`...)
		if s.o.ESIndex != "" {
			b = append(b, `"_index":`...)
			b = value.AppendJSONString(b, s.o.ESIndex)
			b = append(b, ',')
		}
		b = append(b, `"_id":`...)
		b = value.AppendJSONString(b, bulkID(a.Key))
		b = append(b, "}}\n"...)
		b = append(b, a.Doc...)
		return append(b, '\n')
	default: // NDJSON
		return append(append(b, a.Doc...), '\n')
	}
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, ',')
	b = value.AppendJSONString(b, k)
	b = append(b, ':')
	return value.AppendJSONString(b, v)
}

// bulkID is the document _id of an alert: its key, or the key's head and
// digest when the key is longer than the 512 bytes Elasticsearch takes.
func bulkID(key string) string { return idkey.Bounded(key, idkey.Max) }

// bulkResult is one item of a bulk response.
type bulkResult struct {
	ID     string `json:"_id"`
	Status int    `json:"status"`
	Error  struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error"`
}

// bulkErrors reads a bulk response, streaming: an answer for thousands of
// alerts is long, and it is read whole, item by item, however long. Each
// item answers the alert at its place, whose _id it must name. Items that
// were created, or that already existed (409: an earlier attempt got
// through), are delivered; a 5xx item, or one of the endpointErrors (429:
// the cluster is busy or out of disk), fails: a retry may fix it; any
// other failed item is refused for good (a mapping error, say). An
// alert without its item is not delivered.
func bulkErrors(r io.Reader, alerts []sink.Alert) error {
	dec := json.NewDecoder(r)
	bad := func(err error) error { return fmt.Errorf("es_bulk: unreadable response: %v", err) }
	if err := expectDelim(dec, '{'); err != nil {
		return bad(err)
	}
	items := &sink.ItemsError{Delivered: make([]bool, len(alerts)), Refused: make([]string, len(alerts))}
	n := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bad(err)
		}
		if tok != "items" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return bad(err)
			}
			continue
		}
		if err := expectDelim(dec, '['); err != nil {
			return bad(err)
		}
		for ; dec.More(); n++ {
			var item map[string]bulkResult
			if err := dec.Decode(&item); err != nil {
				return bad(err)
			}
			if n >= len(alerts) || len(item) != 1 {
				return bad(fmt.Errorf("item %d does not answer one of the %d actions sent", n+1, len(alerts)))
			}
			for _, res := range item {
				if want := bulkID(alerts[n].Key); res.ID != "" && res.ID != want {
					return bad(fmt.Errorf("item %d is for _id %q, not the alert's %q", n+1, res.ID, want))
				}
				switch reason := fmt.Sprintf("es_bulk: item failed with %d %s: %s", res.Status, res.Error.Type, res.Error.Reason); {
				case res.Status/100 == 2 || res.Status == http.StatusConflict:
					items.Delivered[n] = true
				case res.Status/100 == 4 && !endpointErrors[res.Status]:
					items.Refused[n] = reason
				case items.Err == nil:
					items.Err = errors.New(reason)
				}
			}
		}
		if err := expectDelim(dec, ']'); err != nil {
			return bad(err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return bad(err)
	}
	if n < len(alerts) && items.Err == nil {
		items.Err = fmt.Errorf("es_bulk: the answer has %d items for %d actions: the rest are not known to be indexed", n, len(alerts))
	}
	if items.Err == nil && !slices.Contains(items.Delivered, false) {
		return nil
	}
	return items
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("want %v, got %v", want, tok)
	}
	return nil
}
