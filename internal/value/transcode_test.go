package value

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
)

var transcodeSeeds = []string{
	`{"eventVersion":"1.08","eventTime":"2024-01-02T00:05:12Z","userIdentity":{"type":"IAMUser","accessKeyId":"AKIA"},"requestParameters":null,"readOnly":false,"n":-12,"f":1.5e3,"a":[1,2,{"x":[]}],"e":{}}`,
	`{"s":"q\"b\\c\/\n\r\t\b\f \u00e9 \ud83d\ude00 \ud800 x \udc00"}`,
	`[1, 2.0, -0, 9223372036854775807, 9223372036854775808, -9223372036854775809, 1E2, 0.1e-3]`,
	`{"k":1,"k":2}`,
	`  "top"  `, `true`, `null`, `{"a":01}`, `{"a":1,}`, `[1 2]`, `{"a" 1}`, `"\x01"`, `{"a":"\u12"}`, `1e999`, `{} x`,
	`{"many":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16}}`,
}

// FuzzTranscodeAgrees: the transcoder takes exactly the texts
// encoding/json takes (less numbers past float64 and nesting past
// MaxDepth), and what it writes decodes to what FromJSON reads.
func FuzzTranscodeAgrees(f *testing.F) {
	for _, s := range transcodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if !utf8.Valid(src) {
			return // passed through as it is; encoding/json would replace it
		}
		var tc Transcoder
		out, err := tc.Append([]byte("prefix"), src)
		if string(out[:6]) != "prefix" {
			t.Fatalf("dst clobbered: %q", out)
		}
		out = out[6:]
		// Wrapped: jsoniter misreads a number that ends the text.
		wrapped, werr := FromJSON(append(append([]byte("["), src...), ']'))
		valid := json.Valid(src)
		switch {
		case err != nil && valid && werr == nil && !errors.Is(err, ErrTooDeep):
			t.Fatalf("%q: refused valid JSON: %v", src, err)
		case err != nil:
			if len(out) != 0 {
				t.Fatalf("%q: error %v left %x", src, err, out)
			}
			return
		case !valid:
			t.Fatalf("%q: took invalid JSON", src)
		}
		if rest, err := msgp.Skip(out); err != nil || len(rest) != 0 {
			t.Fatalf("%q: not one msgpack object: %x (%v)", src, out, err)
		}
		got, err := FromMsgpack(out)
		if err != nil || werr != nil {
			t.Fatalf("%q: %v / %v", src, err, werr)
		}
		want := wrapped.([]any)[0]
		if g, w := string(ToJSON(got)), string(ToJSON(want)); g != w {
			t.Fatalf("%q:\n got %s\nwant %s", src, g, w)
		}
	})
}

// The header sizes: 15 and 16 entries, 65535 and 65536 (the 5-byte
// form), extra entries counted at the top only, and the top-level
// strings seen unescaped.
func TestTranscodeHeaders(t *testing.T) {
	for _, n := range []int{0, 15, 16, 65535, 65536} {
		var arr, obj strings.Builder
		arr.WriteString("[")
		obj.WriteString(`{"in":{`)
		for i := range n {
			if i > 0 {
				arr.WriteString(",")
				obj.WriteString(",")
			}
			arr.WriteString("1")
			obj.WriteString(`"k` + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + `":` + "1")
		}
		arr.WriteString("]")
		obj.WriteString(`}}`)
		var tc Transcoder
		out, err := tc.Append(nil, []byte(arr.String()))
		if err != nil {
			t.Fatal(err)
		}
		if sz, _, err := msgp.ReadArrayHeaderBytes(out); err != nil || int(sz) != n {
			t.Fatalf("array of %d: header says %d (%v)", n, sz, err)
		}
		if out, err = tc.Append(nil, []byte(obj.String())); err != nil {
			t.Fatal(err)
		}
		if _, err := FromMsgpack(out); err != nil {
			t.Fatalf("object of %d: %v", n, err)
		}
	}
	var seen []string
	tc := Transcoder{Extra: 1, Top: func(k, v []byte) { seen = append(seen, string(k)+"="+string(v)) }}
	out, err := tc.Append(nil, []byte(`{"eventTime":"2024-01-02T00:05:12Z","nested":{"eventTime":"no"},"e\u0073c":"a\nb","n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	out = msgp.AppendString(msgp.AppendString(out, "s3_key"), "k")
	v, err := FromMsgpack(out)
	if err != nil || v.(map[string]any)["s3_key"] != "k" || len(v.(map[string]any)) != 5 {
		t.Fatalf("%#v %v", v, err)
	}
	if strings.Join(seen, "|") != "eventTime=2024-01-02T00:05:12Z|esc=a\nb" {
		t.Fatalf("top strings: %q", seen)
	}
	if _, err := tc.Append(nil, []byte(`[1]`)); err != ErrNotObject {
		t.Fatalf("extra entries in an array: %v", err)
	}
}
