// Package promscrape scrapes a Prometheus endpoint the way Prometheus
// reads it (the text format, through the official parser), for tests.
package promscrape

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

// Get scrapes url; anything but a 200 in the text format is an error.
func Get(url string) (Families, []byte, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, body, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	if got := expfmt.ResponseFormat(resp.Header); got.FormatType() != expfmt.TypeTextPlain {
		return nil, body, fmt.Errorf("GET %s: format %q, want text", url, got)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	return fams, body, err
}

// Value is the value of the counter, gauge or untyped sample of name
// whose labels include the given name/value pairs; ok is false when
// there is none, and when there are several.
func (f Families) Value(name string, labels ...string) (v float64, ok bool) {
	ms := f.match(name, labels)
	if len(ms) != 1 {
		return 0, false
	}
	switch m := ms[0]; {
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}

// Histogram is the one histogram of name with those labels.
func (f Families) Histogram(name string, labels ...string) (*dto.Histogram, bool) {
	ms := f.match(name, labels)
	if len(ms) != 1 || ms[0].Histogram == nil {
		return nil, false
	}
	return ms[0].Histogram, true
}

// LabelValues lists, sorted and once each, the values label takes in name.
func (f Families) LabelValues(name, label string) []string {
	var out []string
	for _, m := range f.match(name, nil) {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && !slices.Contains(out, l.GetValue()) {
				out = append(out, l.GetValue())
			}
		}
	}
	slices.Sort(out)
	return out
}

func (f Families) match(name string, labels []string) []*dto.Metric {
	fam := f[name]
	if fam == nil {
		return nil
	}
	var out []*dto.Metric
	for _, m := range fam.GetMetric() {
		if hasLabels(m, labels) {
			out = append(out, m)
		}
	}
	return out
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
