package ocsfmap_test

import (
	"encoding/csv"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/test/paths"
)

// schema is one version of the OCSF tables in ../shared/ocsf, read the way
// its README describes: a path is looked up under the record's class in
// fields-<v>.csv, and what lies deeper is walked segment by segment through
// objects-<v>.csv.
type schema struct {
	fields      map[classPath]attr
	objects     map[objAttr]attr
	types       map[string]scalarType
	enums       map[classPath]map[string]bool
	objectEnums map[objAttr]map[string]bool
	// constraints by class ("3001") or object name ("user").
	constraints map[string][]constraint
}

type classPath struct {
	class int
	path  string
}

type objAttr struct{ object, attr string }

type attr struct {
	typ      string
	array    bool
	required bool
	profiles []string
}

type scalarType struct {
	base   string
	maxLen int
	regex  *regexp.Regexp // nil when none, or when RE2 cannot compile it (rc.2's ip_t)
}

type constraint struct {
	kind  string // at_least_one or just_one
	names []string
}

func loadSchema(t testing.TB, version string) *schema {
	t.Helper()
	s := &schema{
		fields: map[classPath]attr{}, objects: map[objAttr]attr{}, types: map[string]scalarType{},
		enums: map[classPath]map[string]bool{}, objectEnums: map[objAttr]map[string]bool{},
		constraints: map[string][]constraint{},
	}
	rows := func(name string) []map[string]string { return readTable(t, name+"-"+version+".csv") }
	mkAttr := func(r map[string]string) attr {
		return attr{typ: r["type"], array: r["is_array"] == "true", required: r["requirement"] == "required",
			profiles: strings.Fields(r["profile"])}
	}
	for _, r := range rows("fields") {
		s.fields[classPath{atoi(t, r["class_uid"]), r["path"]}] = mkAttr(r)
	}
	for _, r := range rows("objects") {
		s.objects[objAttr{r["object"], r["attribute"]}] = mkAttr(r)
	}
	for _, r := range rows("types") {
		st := scalarType{base: r["base_type"]}
		if r["max_len"] != "" {
			st.maxLen = atoi(t, r["max_len"])
		}
		if r["regex"] != "" {
			st.regex, _ = regexp.Compile(r["regex"])
		}
		s.types[r["type"]] = st
	}
	for _, r := range rows("enums") {
		k := classPath{atoi(t, r["class_uid"]), r["path"]}
		if s.enums[k] == nil {
			s.enums[k] = map[string]bool{}
		}
		s.enums[k][r["value"]] = true
	}
	for _, r := range rows("object-enums") {
		k := objAttr{r["object"], r["attribute"]}
		if s.objectEnums[k] == nil {
			s.objectEnums[k] = map[string]bool{}
		}
		s.objectEnums[k][r["value"]] = true
	}
	for _, r := range rows("constraints") {
		owner := r["object"]
		if r["class_uid"] != "" {
			owner = r["class_uid"]
		}
		s.constraints[owner] = append(s.constraints[owner], constraint{r["constraint"], strings.Fields(r["attributes"])})
	}
	if len(s.fields) == 0 || len(s.objects) == 0 || len(s.types) == 0 {
		t.Fatalf("OCSF %s tables are empty", version)
	}
	return s
}

func readTable(t testing.TB, name string) []map[string]string {
	t.Helper()
	f, err := os.Open(paths.Repo("..", "shared", "ocsf", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("%s: %v (%d rows)", name, err, len(recs))
	}
	var out []map[string]string
	for _, rec := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = rec[i]
		}
		out = append(out, m)
	}
	return out
}

func atoi(t testing.TB, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a number in the OCSF tables: %q", s)
	}
	return n
}

// lookup finds the attribute a record path names, with its enum values and
// the profiles it needs; "" when found, else why not.
func (s *schema) lookup(class int, path string) (attr, map[string]bool, []string, string) {
	if a, ok := s.fields[classPath{class, path}]; ok {
		return a, s.enums[classPath{class, path}], a.profiles, ""
	}
	raw := strings.Split(path, ".")
	a, ok := s.fields[classPath{class, strings.TrimSuffix(raw[0], "[]")}]
	if !ok {
		return attr{}, nil, nil, fmt.Sprintf("class %d has no attribute %q", class, raw[0])
	}
	enum, profiles := s.enums[classPath{class, strings.TrimSuffix(raw[0], "[]")}], slices.Clone(a.profiles)
	for i := 1; i < len(raw); i++ {
		if a.typ == "object" || a.typ == "json_t" {
			return attr{typ: "any"}, nil, profiles, ""
		}
		if strings.HasSuffix(raw[i-1], "[]") != a.array {
			return attr{}, nil, nil, strings.Join(raw[:i], ".") + ": array-ness differs from OCSF"
		}
		seg := strings.TrimSuffix(raw[i], "[]")
		next, ok := s.objects[objAttr{a.typ, seg}]
		if !ok {
			return attr{}, nil, nil, fmt.Sprintf("object %q has no attribute %q", a.typ, seg)
		}
		enum = s.objectEnums[objAttr{a.typ, seg}]
		profiles = append(profiles, next.profiles...)
		a = next
	}
	return a, enum, profiles, ""
}

// check lists what is wrong with rec (decoded from JSON) against the
// tables: unknown paths, wrong types or array-ness, values outside an enum,
// undeclared profiles, missing required attributes, broken constraints, and
// a type_uid other than class_uid*100+activity_id.
func (s *schema) check(rec map[string]any) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	class, ok := rec["class_uid"].(int64)
	if _, known := s.fields[classPath{int(class), "class_uid"}]; !ok || !known {
		return []string{fmt.Sprintf("class_uid %v is not a tabled class", rec["class_uid"])}
	}
	var declared []string
	if md, ok := rec["metadata"].(map[string]any); ok {
		for _, p := range asSlice(md["profiles"]) {
			if p, ok := p.(string); ok {
				declared = append(declared, p)
			}
		}
	}
	var leaves []leaf
	var nodes []leaf
	flatten("", rec, &leaves, &nodes)
	for _, l := range leaves {
		a, enum, profiles, why := s.lookup(int(class), l.path)
		if why != "" {
			bad("%s: not in OCSF (%s)", l.path, why)
			continue
		}
		if a.typ != "any" {
			if _, isArray := l.value.([]any); isArray != a.array {
				bad("%s: array-ness differs from OCSF (%s, array %v)", l.path, a.typ, a.array)
				continue
			}
		}
		for _, v := range elements(l.value) {
			if !s.typeOK(a.typ, v) {
				bad("%s = %#v: not %s", l.path, v, a.typ)
			} else if enum != nil && !isContainer(v) && !enum[fmt.Sprint(v)] {
				bad("%s = %#v: not an allowed value", l.path, v)
			}
		}
		for _, p := range profiles {
			if !slices.Contains(declared, p) {
				bad("%s: needs profile %q, which metadata.profiles does not declare", l.path, p)
			}
		}
	}
	for cp, a := range s.fields {
		if cp.class == int(class) && !strings.Contains(cp.path, ".") && a.required && subset(a.profiles, declared) {
			if _, ok := rec[cp.path]; !ok {
				bad("%s: required by class %d, missing", cp.path, class)
			}
		}
	}
	problems = append(problems, s.constraintProblems(strconv.Itoa(int(class)), "record", rec)...)
	for _, n := range nodes {
		a, _, _, why := s.lookup(int(class), n.path)
		if why != "" || s.isScalar(a.typ) || a.typ == "object" || a.typ == "any" {
			continue
		}
		obj := n.value.(map[string]any)
		for oa, oattr := range s.objects {
			if oa.object == a.typ && oattr.required && subset(oattr.profiles, declared) {
				if _, ok := obj[oa.attr]; !ok {
					bad("%s.%s: required in object %s, missing", n.path, oa.attr, a.typ)
				}
			}
		}
		problems = append(problems, s.constraintProblems(a.typ, n.path, obj)...)
	}
	activity, _ := rec["activity_id"].(int64)
	if rec["type_uid"] != class*100+activity {
		bad("type_uid %v != class_uid*100+activity_id (%d)", rec["type_uid"], class*100+activity)
	}
	slices.Sort(problems)
	return problems
}

func (s *schema) constraintProblems(owner, where string, obj map[string]any) []string {
	var out []string
	for _, c := range s.constraints[owner] {
		n := 0
		for _, name := range c.names {
			if _, ok := obj[name]; ok {
				n++
			}
		}
		if c.kind == "at_least_one" && n == 0 || c.kind == "just_one" && n != 1 {
			out = append(out, fmt.Sprintf("%s: %s of %s (%d present)", where, c.kind, strings.Join(c.names, ", "), n))
		}
	}
	return out
}

func (s *schema) isScalar(typ string) bool { _, ok := s.types[typ]; return ok }

func (s *schema) typeOK(typ string, v any) bool {
	if typ == "any" || typ == "json_t" {
		return true
	}
	st, ok := s.types[typ]
	if !ok { // an object
		_, isMap := v.(map[string]any)
		return isMap
	}
	switch st.base {
	case "string_t":
		str, ok := v.(string)
		return ok && (st.maxLen == 0 || len(str) <= st.maxLen) && (st.regex == nil || st.regex.MatchString(str))
	case "integer_t", "long_t":
		_, ok := v.(int64)
		return ok
	case "float_t":
		switch v.(type) {
		case int64, float64:
			return true
		}
	case "boolean_t":
		_, ok := v.(bool)
		return ok
	}
	return false
}

type leaf struct {
	path  string
	value any
}

// flatten collects the leaves (scalars, arrays, empty objects) and the
// objects of a record, named as the tables name them: objects inside arrays
// add "[]" (observables[].type_id).
func flatten(prefix string, v any, leaves, nodes *[]leaf) {
	switch v := v.(type) {
	case map[string]any:
		if prefix != "" {
			*nodes = append(*nodes, leaf{prefix, v})
			if len(v) == 0 {
				*leaves = append(*leaves, leaf{prefix, v})
			}
		}
		for k, x := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, x, leaves, nodes)
		}
	case []any:
		*leaves = append(*leaves, leaf{prefix, v})
		for _, e := range v {
			if m, ok := e.(map[string]any); ok {
				flatten(prefix+"[]", m, leaves, nodes)
			}
		}
	default:
		*leaves = append(*leaves, leaf{prefix, v})
	}
}

func elements(v any) []any {
	if a, ok := v.([]any); ok {
		return a
	}
	return []any{v}
}

func asSlice(v any) []any { a, _ := v.([]any); return a }

func isContainer(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
