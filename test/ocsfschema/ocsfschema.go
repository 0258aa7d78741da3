// Package ocsfschema checks OCSF records against the schema tables of one
// OCSF version in ../shared/ocsf (fields, objects, enums, types and
// constraints; see that directory's README.md). It does what the tables'
// check.py does, and checks enum captions too: tests use it on the alerts
// the plugin writes and on the OCSF records it reads.
package ocsfschema

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Schema is one OCSF version's tables.
type Schema struct {
	Version     string
	fields      map[classPath]*attr
	objects     map[objectAttr]*attr
	objectAttrs map[string][]string // attribute names of each object, sorted
	types       map[string]*scalar
	constraints map[string][]constraint // by class uid ("2004") or object name
}

type classPath struct {
	class int
	path  string
}

type objectAttr struct{ object, attr string }

type attr struct {
	typ        string
	array      bool
	required   bool
	profiles   []string
	deprecated string
	sibling    string
	enum       map[string]string // value -> caption
}

type scalar struct {
	base     string
	maxLen   int // 0: none
	min, max int64
	ranged   bool
	regex    *regexp.Regexp
}

type constraint struct {
	kind  string // at_least_one or just_one
	attrs []string
}

// Load reads the tables of version from dir (../shared/ocsf).
func Load(dir, version string) (*Schema, error) {
	s := &Schema{
		Version:     version,
		fields:      map[classPath]*attr{},
		objects:     map[objectAttr]*attr{},
		objectAttrs: map[string][]string{},
		types:       map[string]*scalar{},
		constraints: map[string][]constraint{},
	}
	read := func(name string, each func(r map[string]string) error) error {
		path := filepath.Join(dir, name+"-"+version+".csv")
		rows, err := readCSV(path)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if err := each(r); err != nil {
				return fmt.Errorf("%s: %v", path, err)
			}
		}
		return nil
	}
	if err := read("fields", func(r map[string]string) error {
		class, err := strconv.Atoi(r["class_uid"])
		if err != nil {
			return err
		}
		s.fields[classPath{class, r["path"]}] = newAttr(r)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := read("objects", func(r map[string]string) error {
		s.objects[objectAttr{r["object"], r["attribute"]}] = newAttr(r)
		s.objectAttrs[r["object"]] = append(s.objectAttrs[r["object"]], r["attribute"])
		return nil
	}); err != nil {
		return nil, err
	}
	for _, names := range s.objectAttrs {
		sort.Strings(names)
	}
	if err := read("enums", func(r map[string]string) error {
		class, err := strconv.Atoi(r["class_uid"])
		if err != nil {
			return err
		}
		a := s.fields[classPath{class, r["path"]}]
		if a == nil {
			return fmt.Errorf("enum of unknown field %s %s", r["class_uid"], r["path"])
		}
		a.addEnum(r["value"], r["caption"])
		return nil
	}); err != nil {
		return nil, err
	}
	if err := read("object-enums", func(r map[string]string) error {
		a := s.objects[objectAttr{r["object"], r["attribute"]}]
		if a == nil {
			return fmt.Errorf("enum of unknown attribute %s.%s", r["object"], r["attribute"])
		}
		a.addEnum(r["value"], r["caption"])
		return nil
	}); err != nil {
		return nil, err
	}
	if err := read("types", func(r map[string]string) error {
		t := &scalar{base: r["base_type"]}
		if r["max_len"] != "" {
			n, err := strconv.Atoi(r["max_len"])
			if err != nil {
				return err
			}
			t.maxLen = n
		}
		if lo, hi, ok := strings.Cut(r["range"], ".."); ok {
			var err1, err2 error
			t.min, err1 = strconv.ParseInt(lo, 10, 64)
			t.max, err2 = strconv.ParseInt(hi, 10, 64)
			if err1 != nil || err2 != nil {
				return fmt.Errorf("type %s: range %q", r["type"], r["range"])
			}
			t.ranged = true
		}
		// The schema's regexes are PCRE; the few RE2 cannot compile
		// (1.0.0-rc.2's ip_t) go unchecked, as check.py leaves the ones
		// Python cannot compile.
		if r["regex"] != "" {
			t.regex, _ = regexp.Compile(r["regex"])
		}
		s.types[r["type"]] = t
		return nil
	}); err != nil {
		return nil, err
	}
	if err := read("constraints", func(r map[string]string) error {
		owner := r["class_uid"]
		if owner == "" {
			owner = r["object"]
		}
		s.constraints[owner] = append(s.constraints[owner], constraint{r["constraint"], strings.Fields(r["attributes"])})
		return nil
	}); err != nil {
		return nil, err
	}
	return s, nil
}

func readCSV(path string) ([]map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	var out []map[string]string
	for _, row := range rows[1:] {
		m := map[string]string{}
		for i, col := range rows[0] {
			m[col] = row[i]
		}
		out = append(out, m)
	}
	return out, nil
}

func newAttr(r map[string]string) *attr {
	return &attr{
		typ:        r["type"],
		array:      r["is_array"] == "true",
		required:   r["requirement"] == "required",
		profiles:   strings.Fields(r["profile"]),
		deprecated: r["deprecated"],
		sibling:    r["sibling"],
	}
}

func (a *attr) addEnum(value, caption string) {
	if a.enum == nil {
		a.enum = map[string]string{}
	}
	a.enum[value] = caption
}

// Decode reads one JSON record with its numbers kept exact, so that an
// integer field holding 1.5 is caught.
func Decode(data []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var rec map[string]any
	if err := d.Decode(&rec); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return rec, nil
}

// Report is what Check found in one record.
type Report struct {
	Problems []string
	// Deprecated lists the deprecated attributes the record uses: valid,
	// but a producer should not write them.
	Deprecated []string
}

type checker struct {
	s        *Schema
	class    int
	declared []string // metadata.profiles
	r        Report
	profiles map[string]bool // "profile top": undeclared profile already reported
}

// Check validates a decoded record (from Decode, encoding/json or a msgpack
// decoder): every field must exist for the record's class_uid with its
// documented type, array-ness and enum values, profile attributes need
// their profile in metadata.profiles, every required attribute of the
// class and of each object present must be there, the at_least_one and
// just_one constraints must hold, an enum's caption sibling must match its
// value, and type_uid must be class_uid*100 + activity_id.
func (s *Schema) Check(rec map[string]any) Report {
	class, ok := asInt(rec["class_uid"])
	if !ok || s.fields[classPath{int(class), "class_uid"}] == nil {
		return Report{Problems: []string{fmt.Sprintf("class_uid %v is not a class of the tables", rec["class_uid"])}}
	}
	c := &checker{s: s, class: int(class), profiles: map[string]bool{}}
	if md, ok := rec["metadata"].(map[string]any); ok {
		if ps, ok := md["profiles"].([]any); ok {
			for _, p := range ps {
				if p, ok := p.(string); ok {
					c.declared = append(c.declared, p)
				}
			}
		}
	}
	c.object(rec, "", "")
	activity, _ := asInt(rec["activity_id"])
	if typ, ok := asInt(rec["type_uid"]); !ok || typ != class*100+activity {
		c.problem("type_uid %v is not class_uid*100+activity_id (%d)", rec["type_uid"], class*100+activity)
	}
	sort.Strings(c.r.Problems)
	sort.Strings(c.r.Deprecated)
	return c.r
}

func (c *checker) problem(format string, args ...any) {
	c.r.Problems = append(c.r.Problems, fmt.Sprintf(format, args...))
}

// lookup finds the attribute key of the object at path, whose type is
// object ("" for the class itself): in the class's own table first, which
// holds the class-specific enums, else in the object's definition.
func (c *checker) lookup(object, path, key string) *attr {
	if a := c.s.fields[classPath{c.class, join(path, key)}]; a != nil {
		return a
	}
	if object == "" {
		return nil
	}
	return c.s.objects[objectAttr{object, key}]
}

// object checks the members of one object (the record when object is "")
// and what it requires.
func (c *checker) object(m map[string]any, object, path string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a := c.lookup(object, path, k)
		if a == nil {
			if object == "" {
				c.problem("%s: no such attribute in class %d", k, c.class)
			} else {
				c.problem("%s: object %s has no attribute %s", join(path, k), object, k)
			}
			continue
		}
		c.member(m, path, k, a)
	}
	var required []string
	var owner string
	if object == "" {
		owner = strconv.Itoa(c.class)
		for cp, a := range c.s.fields {
			if cp.class == c.class && !strings.Contains(cp.path, ".") && a.required && c.declares(a.profiles) {
				required = append(required, cp.path)
			}
		}
	} else {
		owner = object
		for _, name := range c.s.objectAttrs[object] {
			if a := c.s.objects[objectAttr{object, name}]; a.required && c.declares(a.profiles) {
				required = append(required, name)
			}
		}
	}
	sort.Strings(required)
	for _, name := range required {
		if _, ok := m[name]; !ok {
			c.problem("%s: required, missing", join(path, name))
		}
	}
	for _, con := range c.s.constraints[owner] {
		n := 0
		for _, name := range con.attrs {
			if _, ok := m[name]; ok {
				n++
			}
		}
		if (con.kind == "at_least_one" && n == 0) || (con.kind == "just_one" && n != 1) {
			c.problem("%s: %s of %s (%d present)", orRecord(path), con.kind, strings.Join(con.attrs, ", "), n)
		}
	}
}

func (c *checker) member(parent map[string]any, parentPath, key string, a *attr) {
	path := join(parentPath, key)
	v := parent[key]
	for _, p := range a.profiles {
		top := strings.SplitN(path, ".", 2)[0]
		if !slices.Contains(c.declared, p) && !c.profiles[p+" "+top] {
			c.profiles[p+" "+top] = true
			c.problem("%s: in profile %s, which metadata.profiles does not declare", top, p)
		}
	}
	if a.deprecated != "" {
		c.r.Deprecated = append(c.r.Deprecated, path+": deprecated since "+a.deprecated)
	}
	if a.typ == "object" || a.typ == "json_t" {
		return
	}
	elems := []any{v}
	list, isList := v.([]any)
	switch {
	case isList && !a.array:
		c.problem("%s: an array, OCSF says one %s", path, a.typ)
		return
	case !isList && a.array:
		c.problem("%s: not an array, OCSF says array of %s", path, a.typ)
		return
	case isList:
		elems = list
		path += "[]"
	}
	_, isScalar := c.s.types[a.typ]
	for _, e := range elems {
		if !isScalar {
			if m, ok := e.(map[string]any); ok {
				c.object(m, a.typ, path)
			} else {
				c.problem("%s = %v: not an object (%s)", path, e, a.typ)
			}
			continue
		}
		if msg := c.scalar(a.typ, e); msg != "" {
			c.problem("%s = %v: %s", path, e, msg)
			continue
		}
		if a.enum == nil {
			continue
		}
		value := fmt.Sprint(e)
		caption, ok := a.enum[value]
		if !ok {
			c.problem("%s = %v: not an allowed value", path, e)
			continue
		}
		got, ok := parent[a.sibling].(string)
		if a.sibling == "" || a.array || !ok {
			continue
		}
		// 99 is Other, whose sibling carries the source's own caption.
		if value == "99" && got == caption {
			c.problem("%s = %q: for %s 99 it should be the source's own caption", join(parentPath, a.sibling), got, key)
		} else if value != "99" && got != caption {
			c.problem("%s = %q: the caption of %s %s is %q", join(parentPath, a.sibling), got, key, value, caption)
		}
	}
}

// scalar says what is wrong with v as a value of the scalar type typ, or "".
func (c *checker) scalar(typ string, v any) string {
	t := c.s.types[typ]
	base := t.base
	// A base type is its own base; the tables have no deeper chains.
	if b := c.s.types[base]; b != nil {
		base = b.base
	}
	switch base {
	case "string_t":
		s, ok := v.(string)
		if !ok {
			return "not a string (" + typ + ")"
		}
		if t.maxLen > 0 && utf8.RuneCountInString(s) > t.maxLen {
			return fmt.Sprintf("longer than %s's %d characters", typ, t.maxLen)
		}
		if t.regex != nil && !t.regex.MatchString(s) {
			return "not a valid " + typ
		}
	case "integer_t", "long_t":
		n, ok := asInt(v)
		if !ok {
			return "not an integer (" + typ + ")"
		}
		if base == "integer_t" && (n < math.MinInt32 || n > math.MaxInt32) {
			return "out of integer_t's 32 bits"
		}
		if t.ranged && (n < t.min || n > t.max) {
			return fmt.Sprintf("outside %s's %d..%d", typ, t.min, t.max)
		}
	case "float_t":
		if _, ok := asFloat(v); !ok {
			return "not a number (" + typ + ")"
		}
	case "boolean_t":
		if _, ok := v.(bool); !ok {
			return "not a boolean"
		}
	default:
		return "unknown base type " + base
	}
	return ""
}

func (c *checker) declares(profiles []string) bool {
	for _, p := range profiles {
		if !slices.Contains(c.declared, p) {
			return false
		}
	}
	return true
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(string(n), 10, 64)
		return i, err == nil
	case int:
		return int64(n), true
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case uint64:
		return int64(n), n <= math.MaxInt64
	case uint32:
		return int64(n), true
	case float64:
		return int64(n), n == math.Trunc(n) && math.Abs(n) < 1<<53
	}
	return 0, false
}

func asFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case float32:
		return float64(n), true
	}
	i, ok := asInt(v)
	return float64(i), ok
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRecord(path string) string {
	if path == "" {
		return "record"
	}
	return path
}
