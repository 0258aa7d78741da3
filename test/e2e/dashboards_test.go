package e2e

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/detect/rules"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/corpus"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/fbchunk"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/harness"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/loopback"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/promscrape"
)

// emitted are the alert documents the .so writes for the sample stream
// (every rule of a key's life but the one that needs a silence) and for
// every positive example of the rules that judge one event, in a format.
func emitted(t *testing.T, format string) []map[string]any {
	t.Helper()
	var bodies []any
	for _, r := range rules.Stateless() {
		for _, ev := range fixtures(t, r.ID, "positive") {
			bodies = append(bodies, ev)
		}
	}
	dir := t.TempDir()
	sample, examples := filepath.Join(dir, "sample.jsonl"), filepath.Join(dir, "examples.jsonl")
	res := harness.Run(t, harness.Options{
		Instances: [][]harness.KV{
			kv("Alert_Output", "file", "File_Path", sample, "Alert_Format", format),
			kv("Alert_Output", "file", "File_Path", examples, "Alert_Format", format),
		},
		Flushes: []harness.Flush{
			{Instance: 0, Tag: tag, Data: fbchunk.FromValues(t0, corpus.Sample(t))},
			{Instance: 1, Tag: tag, Data: chunkOf(bodies...)},
		},
	})
	if res.ExitCode != 0 {
		t.Fatalf("harness exit %d\n%s", res.ExitCode, res.Stderr)
	}
	return append(documents(t, sample), documents(t, examples)...)
}

// fieldValues flattens documents into field name -> the values it took.
// Objects nest with dots; arrays of objects keep their element's names
// (as Elasticsearch flattens them), or add arrayMark (Splunk's "{}").
func fieldValues(docs []map[string]any, arrayMark string) map[string][]any {
	out := map[string][]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(strings.TrimPrefix(prefix+"."+k, "."), e)
			}
		case []any:
			for _, e := range v {
				walk(prefix+arrayMark, e)
			}
			if len(v) == 0 {
				out[prefix+arrayMark] = append(out[prefix+arrayMark], nil)
			}
		default:
			out[prefix] = append(out[prefix], v)
		}
	}
	for _, d := range docs {
		walk("", d)
	}
	return out
}

func dashboard(t *testing.T, name string) []byte {
	b, err := os.ReadFile(paths.Repo("conf", "dashboards", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// kqlTerm is a field compared in a KQL query: field:value, field >= n.
var kqlTerm = regexp.MustCompile(`([A-Za-z_@][\w.@]*)\s*(:|>=|<=|>|<)\s*([\w.*-]+)`)

// The Kibana saved objects (and the index template they rely on) query
// only fields the ECS alerts have, with values they take.
func TestKibanaDashboardFields(t *testing.T) {
	fields := fieldValues(emitted(t, "ecs"), "")
	used := map[string]string{} // field -> where
	check := func(field, where string) { used[field] = where }
	checkKQL := func(q, where string) {
		for _, m := range kqlTerm.FindAllStringSubmatch(q, -1) {
			check(m[1], where)
			if m[2] == ":" && m[3] != "*" && !slices.ContainsFunc(fields[m[1]], func(v any) bool { return fmt.Sprint(v) == m[3] }) {
				t.Errorf("%s: %s:%s matches no alert", where, m[1], m[3])
			}
		}
	}
	lines := strings.Split(strings.TrimSpace(string(dashboard(t, "kibana-alerts.ndjson"))), "\n")
	types := map[string]int{}
	ids := map[string]bool{}
	for _, line := range lines {
		var o struct {
			Type, ID   string
			Attributes map[string]any
			References []struct{ Type, ID string }
		}
		if err := json.Unmarshal([]byte(line), &o); err != nil || o.Type == "" || o.ID == "" {
			t.Fatalf("not a saved object: %v: %.80s", err, line)
		}
		types[o.Type]++
		ids[o.ID] = true
		where := o.Type + " " + o.ID
		a := o.Attributes
		if tf, ok := a["timeFieldName"].(string); ok {
			check(tf, where)
		}
		for _, c := range asList(a["columns"]) {
			check(c.(string), where)
		}
		for _, s := range asList(a["sort"]) {
			check(s.([]any)[0].(string), where)
		}
		if meta, ok := a["kibanaSavedObjectMeta"].(map[string]any); ok {
			var src struct{ Query struct{ Query string } }
			if err := json.Unmarshal([]byte(meta["searchSourceJSON"].(string)), &src); err != nil {
				t.Fatalf("%s: searchSourceJSON: %v", where, err)
			}
			checkKQL(src.Query.Query, where)
		}
		if vs, ok := a["visState"].(string); ok {
			var v struct {
				Aggs []struct{ Params map[string]any }
			}
			if err := json.Unmarshal([]byte(vs), &v); err != nil {
				t.Fatalf("%s: visState: %v", where, err)
			}
			for _, agg := range v.Aggs {
				if f, ok := agg.Params["field"].(string); ok {
					check(f, where)
				}
			}
		}
		for _, r := range o.References {
			if !strings.Contains(string(dashboard(t, "kibana-alerts.ndjson")), `"id":"`+r.ID+`"`) {
				t.Errorf("%s refers to %s %s, which the file lacks", where, r.Type, r.ID)
			}
		}
	}
	if types["dashboard"] != 1 || types["index-pattern"] != 1 || types["visualization"] < 3 || types["search"] < 1 {
		t.Errorf("saved objects %v", types)
	}
	// The index template maps fields the alerts have.
	var tmpl struct {
		Template struct {
			Mappings struct{ Properties map[string]any }
		}
	}
	if err := json.Unmarshal(dashboard(t, "elasticsearch-index-template.json"), &tmpl); err != nil {
		t.Fatal(err)
	}
	var props func(prefix string, m map[string]any)
	props = func(prefix string, m map[string]any) {
		for k, v := range m {
			p := v.(map[string]any)
			if sub, ok := p["properties"].(map[string]any); ok {
				props(prefix+k+".", sub)
			} else {
				check(prefix+k, "index template")
			}
		}
	}
	props("", tmpl.Template.Mappings.Properties)
	for f, where := range used {
		if _, ok := fields[f]; !ok {
			t.Errorf("%s queries %s, which no ECS alert has", where, f)
		}
	}
	if len(used) < 12 {
		t.Errorf("only %d fields found in the Kibana objects: is the test reading them?", len(used))
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

// splVocabulary are the SPL words the Splunk dashboard uses that are no
// fields: commands, functions, keywords, Splunk's own fields.
var splVocabulary = map[string]bool{
	"sourcetype": true, "timechart": true, "stats": true, "count": true, "by": true, "sort": true, "table": true, "earliest": true,
	"latest": true, "values": true, "max": true, "as": true, "convert": true, "ctime": true, "eval": true, "mvjoin": true, "_time": true,
}

var (
	splQuoted = regexp.MustCompile(`"[^"]*"`)
	splToken  = regexp.MustCompile(`""|'[^']*'|[A-Za-z_][\w.{}]*|==|=|[-+*|(),]`)
)

// splFields are the fields an SPL query reads: every word that is not
// SPL's, not a value after "=", not a name the query makes (after "as",
// or on the left of an eval's "=").
func splFields(q string) []string {
	toks := splToken.FindAllString(splQuoted.ReplaceAllString(q, `""`), -1)
	made := map[string]bool{}
	var out []string
	for i, tok := range toks {
		prev, next := "", ""
		if i > 0 {
			prev = toks[i-1]
		}
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		switch {
		case tok == "=" || tok == "==" || tok == `""` || strings.ContainsAny(tok, "-+*|(),") && len(tok) == 1:
		case prev == "=": // a value
		case prev == "as" || (next == "=" && slices.Contains(toks[max(0, i-2):i], "eval")):
			made[tok] = true
		case splVocabulary[tok] || made[tok]:
		default:
			out = append(out, strings.Trim(tok, "'"))
		}
	}
	return out
}

// The Splunk dashboard reads only fields the native alerts have (as
// Splunk extracts JSON: objects dotted, arrays as {}), and values they take.
func TestSplunkDashboardFields(t *testing.T) {
	fields := fieldValues(emitted(t, "native"), "{}")
	var doc struct{ Queries, Links []string }
	dec := xml.NewDecoder(strings.NewReader(string(dashboard(t, "splunk-alerts.xml"))))
	var elem string
	for {
		tok, err := dec.Token()
		if err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			elem = tok.Name.Local
		case xml.EndElement:
			elem = ""
		case xml.CharData:
			switch elem {
			case "query":
				doc.Queries = append(doc.Queries, string(tok))
			case "link":
				doc.Links = append(doc.Links, string(tok))
			}
		}
	}
	if len(doc.Queries) < 4 {
		t.Fatalf("%d queries", len(doc.Queries))
	}
	n := 0
	for _, q := range doc.Queries {
		if !strings.HasPrefix(q, `sourcetype="aws:cloudtrail:quarantine" `) {
			t.Errorf("query does not select the alerts' sourcetype (HTTP_Splunk_Sourcetype's default): %q", q)
		}
		for _, f := range splFields(q) {
			n++
			if _, ok := fields[f]; !ok {
				t.Errorf("query reads %s, which no alert has: %q", f, q)
			}
		}
		for _, m := range regexp.MustCompile(`([\w.]+)=(\w+)`).FindAllStringSubmatch(q, -1) {
			if m[1] != "commands" && !slices.ContainsFunc(fields[m[1]], func(v any) bool { return fmt.Sprint(v) == m[2] }) {
				t.Errorf("%s=%s matches no alert", m[1], m[2])
			}
		}
	}
	for _, l := range doc.Links {
		f := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l), "$row."), "|n$")
		if _, ok := fields[f]; !ok {
			t.Errorf("drilldown to %s, which no alert has", f)
		}
	}
	if n < 15 {
		t.Errorf("only %d field references found: is the test reading the queries?", n)
	}
}

var (
	promMetric   = regexp.MustCompile(`\bcloudtrail_quarantine_[a-z_]+`)
	promMatchers = regexp.MustCompile(`\{([^}]*)\}`)
	promLabel    = regexp.MustCompile(`(\w+)\s*(?:=~|!~|!=|=)`)
	promBy       = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	labelValues  = regexp.MustCompile(`label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)`)
)

// The Grafana dashboard queries only metrics a scrape of the plugin shows,
// by labels they have.
func TestGrafanaDashboardMetrics(t *testing.T) {
	addr := loopback.FreeAddr(t)
	p := harness.Start(t, harness.Options{
		Instances: [][]harness.KV{kv("State_Dir", t.TempDir(), "Metrics_Listen", addr)},
		Flushes:   []harness.Flush{{Tag: tag, Data: fbchunk.FromValues(t0, corpus.Sample(t))}},
		LingerMS:  30000,
	})
	var fams promscrape.Families
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		fams, _, err = promscrape.Get("http://" + addr + "/metrics")
		if d, _ := fams.Value("cloudtrail_quarantine_alerts_delivered_total", "name", "cloudtrail_quarantine.0"); err == nil && d == 9 {
			break
		}
		if time.Now().After(end) {
			p.Terminate()
			t.Fatalf("no scrape with the sample's 9 alerts delivered: %v\n%s", err, p.Wait().Stderr)
		}
	}
	p.Terminate()
	p.Wait()

	labels := func(metric string) []string { // the labels its series carry
		name := metric
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(metric, s); ok && fams[base] != nil && fams[metric] == nil {
				name = base
			}
		}
		f := fams[name]
		if f == nil || len(f.GetMetric()) == 0 {
			return nil
		}
		var out []string
		if name != metric && strings.HasSuffix(metric, "_bucket") {
			out = append(out, "le")
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(out, l.GetName()) {
					out = append(out, l.GetName())
				}
			}
		}
		return out
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Definition string }
		}
	}
	if err := json.Unmarshal(dashboard(t, "grafana-metrics.json"), &d); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	metrics := map[string]bool{}
	for _, e := range exprs {
		var have []string
		for _, m := range promMetric.FindAllString(e, -1) {
			metrics[m] = true
			ls := labels(m)
			if ls == nil {
				t.Errorf("%s: no %s in the plugin's scrape", e, m)
			}
			have = append(have, ls...)
		}
		var want []string
		for _, m := range promMatchers.FindAllStringSubmatch(e, -1) {
			for _, l := range promLabel.FindAllStringSubmatch(m[1], -1) {
				want = append(want, l[1])
			}
		}
		for _, m := range promBy.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(m[1], ",") {
				want = append(want, strings.TrimSpace(l))
			}
		}
		for _, m := range labelValues.FindAllStringSubmatch(e, -1) {
			want = append(want, m[2])
		}
		for _, l := range want {
			if !slices.Contains(have, l) {
				t.Errorf("%s: label %s is on none of its metrics (%v)", e, l, have)
			}
		}
	}
	if len(metrics) < 12 {
		t.Errorf("only %d metrics found in the dashboard: is the test reading it?", len(metrics))
	}
}
