package alert

import (
	"strconv"

	"github.com/tinylib/msgp/msgp"

	"github.com/cloudtrail-quarantine/cloudtrail_quarantine/internal/value"
)

// encoder writes one document; the alert's field list drives a JSON and a
// msgpack implementation. begin takes the entry count msgpack needs.
type encoder interface {
	begin(n int)
	end()
	array(n int)
	endArray()
	key(k string)
	str(k, v string)
	int(k string, v int)
	strs(k string, v []string)
	elemStr(v string) // an array element
	raw(json, msgpack []byte)
	// value writes a decoded or Raw value; what cannot be written is null.
	value(v any)
}

type jsonEncoder struct {
	b        []byte
	first    []bool // per open object or array: nothing written in it yet
	afterKey bool   // the next value belongs to the key just written
}

// elem starts a value: an array element needs a separator, a key's value
// does not (key wrote it).
func (e *jsonEncoder) elem() {
	if e.afterKey {
		e.afterKey = false
		return
	}
	if n := len(e.first); n > 0 {
		if !e.first[n-1] {
			e.b = append(e.b, ',')
		}
		e.first[n-1] = false
	}
}

func (e *jsonEncoder) open(c byte) {
	e.elem()
	e.b = append(e.b, c)
	e.first = append(e.first, true)
}

func (e *jsonEncoder) close(c byte) {
	e.b = append(e.b, c)
	e.first = e.first[:len(e.first)-1]
}

func (e *jsonEncoder) begin(int) { e.open('{') }
func (e *jsonEncoder) end()      { e.close('}') }
func (e *jsonEncoder) array(int) { e.open('[') }
func (e *jsonEncoder) endArray() { e.close(']') }
func (e *jsonEncoder) key(k string) {
	e.elem()
	e.b = value.AppendJSONString(e.b, k)
	e.b = append(e.b, ':')
	e.afterKey = true
}

func (e *jsonEncoder) str(k, v string) {
	e.key(k)
	e.elem()
	e.b = value.AppendJSONString(e.b, v)
}
func (e *jsonEncoder) int(k string, v int) {
	e.key(k)
	e.elem()
	e.b = strconv.AppendInt(e.b, int64(v), 10)
}
func (e *jsonEncoder) strs(k string, v []string) {
	e.key(k)
	e.elem()
	e.b = append(e.b, '[')
	for i, s := range v {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.b = value.AppendJSONString(e.b, s)
	}
	e.b = append(e.b, ']')
}
func (e *jsonEncoder) elemStr(v string) {
	e.elem()
	e.b = value.AppendJSONString(e.b, v)
}
func (e *jsonEncoder) raw(json, _ []byte) { e.elem(); e.b = append(e.b, json...) }
func (e *jsonEncoder) value(v any) {
	e.elem()
	e.b = value.AppendJSONValue(e.b, v)
}

type msgpackEncoder struct{ b []byte }

func (e *msgpackEncoder) begin(n int)     { e.b = msgp.AppendMapHeader(e.b, uint32(n)) }
func (e *msgpackEncoder) end()            {}
func (e *msgpackEncoder) array(n int)     { e.b = msgp.AppendArrayHeader(e.b, uint32(n)) }
func (e *msgpackEncoder) endArray()       {}
func (e *msgpackEncoder) key(k string)    { e.b = msgp.AppendString(e.b, k) }
func (e *msgpackEncoder) str(k, v string) { e.key(k); e.b = msgp.AppendString(e.b, v) }
func (e *msgpackEncoder) int(k string, v int) {
	e.key(k)
	e.b = msgp.AppendInt(e.b, v)
}
func (e *msgpackEncoder) strs(k string, v []string) {
	e.key(k)
	e.b = msgp.AppendArrayHeader(e.b, uint32(len(v)))
	for _, s := range v {
		e.b = msgp.AppendString(e.b, s)
	}
}
func (e *msgpackEncoder) elemStr(v string)      { e.b = msgp.AppendString(e.b, v) }
func (e *msgpackEncoder) raw(_, msgpack []byte) { e.b = append(e.b, msgpack...) }
func (e *msgpackEncoder) value(v any)           { e.b = value.AppendMsgpack(e.b, v) }
