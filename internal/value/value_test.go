package value

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// JSON -> value -> msgpack -> AppendJSON gives back the same JSON value.
func TestRoundTrips(t *testing.T) {
	in := `{"s":"a\"b\\c\n\u0001é","n":-12,"u":18446744073709551615,"f":1.5,"t":true,"z":null,"a":[1,{"k":[]}],"m":{}}`
	v, err := FromJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	mp := AppendMsgpack(nil, v)
	back, err := FromMsgpack(mp)
	if err != nil {
		t.Fatal(err)
	}
	js, err := AppendJSON(nil, mp)
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	json.Unmarshal([]byte(in), &want)
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatalf("AppendJSON wrote invalid JSON %s: %v", js, err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("AppendJSON: %s", js)
	}
	if !reflect.DeepEqual(v, back) {
		t.Fatalf("msgpack round trip: %#v", back)
	}
}

func TestAppendJSONOddities(t *testing.T) {
	b := msgp.AppendMapHeader(nil, 4)
	b = msgp.AppendBytes(b, []byte("bin"))
	b = msgp.AppendBytes(b, []byte{'o', 'k', 0xff})
	b = msgp.AppendInt(b, 7) // integer key
	b = msgp.AppendNil(b)
	b = msgp.AppendString(b, "nan")
	b = msgp.AppendFloat64(b, 0)
	b = msgp.AppendString(b, "ext")
	b, _ = msgp.AppendExtension(b, &msgp.RawExtension{Type: 0, Data: make([]byte, 8)})
	js, err := AppendJSON(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if string(js) != `{"bin":"ok`+"\ufffd"+`","7":null,"nan":0,"ext":null}` {
		t.Fatalf("%s", js)
	}
	if _, err := AppendJSON(nil, b[:len(b)-3]); err == nil {
		t.Fatal("truncated input accepted")
	}
}

func TestDepthIsBounded(t *testing.T) {
	var b []byte
	for range MaxDepth + 5 {
		b = msgp.AppendArrayHeader(b, 1)
	}
	b = msgp.AppendNil(b)
	if _, err := FromMsgpack(b); err != ErrTooDeep {
		t.Fatalf("FromMsgpack: %v", err)
	}
	js, err := AppendJSON(nil, b)
	if err != nil || !json.Valid(js) || !strings.HasSuffix(string(js), "null"+strings.Repeat("]", MaxDepth+1)) {
		t.Fatalf("AppendJSON: %v %s", err, js)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add([]byte{0x81, 0xa1, 'k', 0xc4, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		js, err := AppendJSON(nil, b)
		if err == nil && !json.Valid(js) {
			t.Fatalf("invalid JSON %q from %x", js, b)
		}
	})
}

// FuzzAppendJSONString: our escaper reads back as encoding/json's does,
// invalid UTF-8 included (both write U+FFFD per bad byte).
func FuzzAppendJSONString(f *testing.F) {
	f.Add("plain ascii words, eight at a time")
	f.Add("q\"b\\c\n\r\t\x01\x7f é 😀 \xff\xfe end")
	f.Fuzz(func(t *testing.T, s string) {
		var got string
		if err := json.Unmarshal(AppendJSONString(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		std, _ := json.Marshal(s)
		var want string
		json.Unmarshal(std, &want)
		if got != want {
			t.Fatalf("%q: got %q, want %q", s, got, want)
		}
	})
}

// FuzzCanonical: the canonical form of any msgpack decodes to the same
// value as the original (first of duplicate keys, bin as text, extensions
// as nil), and its JSON is the original's JSON.
func FuzzCanonical(f *testing.F) {
	b := msgp.AppendMapHeader(nil, 3)
	b = msgp.AppendBytes(b, []byte("k"))
	b = msgp.AppendInt(b, 1)
	b = msgp.AppendString(b, "k")
	b = msgp.AppendInt(b, 2)
	b = msgp.AppendInt(b, 7)
	b, _ = msgp.AppendExtension(b, &msgp.RawExtension{Type: 3, Data: []byte{1}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Canonical(b)
		if err != nil {
			return
		}
		want, err1 := FromMsgpack(b)
		got, err2 := FromMsgpack(c)
		// Compared as sorted JSON: NaN is not equal to itself.
		if (err1 == nil) != (err2 == nil) || string(ToJSON(want)) != string(ToJSON(got)) {
			t.Fatalf("canonical %x of %x decodes to %#v, not %#v", c, b, got, want)
		}
		j1, e1 := AppendJSON(nil, b)
		j2, e2 := AppendJSON(nil, c)
		if e1 != nil || e2 != nil || string(j1) != string(j2) {
			t.Fatalf("JSON %s / %s (%v %v)", j1, j2, e1, e2)
		}
	})
}
