// Package value converts between msgpack, JSON and one small set of Go
// values: map[string]any, []any, string, int64, uint64, float64, bool and
// nil. Only candidate records (the rare ones that might be quarantine events)
// are decoded this way, so clarity wins over speed here; the hot path never
// gets this far.
package value

import (
	"errors"
	"maps"
	"slices"
	"strconv"

	jsoniter "github.com/json-iterator/go"
	"github.com/tinylib/msgp/msgp"
)

// MaxDepth bounds nesting, so hostile input cannot exhaust the stack or
// build unbounded trees. CloudTrail events nest fewer than ten levels.
const MaxDepth = 64

// ErrTooDeep is returned for input nested deeper than MaxDepth.
var ErrTooDeep = errors.New("nested deeper than 64 levels")

// FromMsgpack decodes one msgpack object. Strings may be str or bin (Fluent
// Bit emits both); map keys that are not strings are written as text;
// extensions become nil.
func FromMsgpack(b []byte) (any, error) {
	v, _, err := decoder{}.fromMsgpack(b, 0)
	return v, err
}

// FromMsgpackSkipping decodes like FromMsgpack but keeps the values of the
// named map keys, at any depth, as undecoded Raw bytes: parts of an event
// no rule reads cost one copy instead of a tree of allocations.
func FromMsgpackSkipping(b []byte, opaque map[string]bool) (any, error) {
	v, _, err := decoder{opaque}.fromMsgpack(b, 0)
	return v, err
}

// Raw is msgpack left undecoded. It encodes to JSON and msgpack as the
// value it holds.
type Raw []byte

// MarshalJSON transcodes the msgpack to JSON (see AppendJSON).
func (r Raw) MarshalJSON() ([]byte, error) { return AppendJSON(nil, r) }

// Decoded is v with every part left undecoded (Raw), at any depth,
// decoded: what reading it whole would have given. v is not changed.
func Decoded(v any) any {
	switch x := v.(type) {
	case Raw:
		d, _ := FromMsgpack(x)
		return d
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = Decoded(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Decoded(e)
		}
		return out
	}
	return v
}

type decoder struct{ opaque map[string]bool }

func (d decoder) fromMsgpack(b []byte, depth int) (any, []byte, error) {
	if depth > MaxDepth {
		return nil, b, ErrTooDeep
	}
	switch msgp.NextType(b) {
	case msgp.MapType:
		n, rest, err := msgp.ReadMapHeaderBytes(b)
		if err != nil {
			return nil, b, err
		}
		m := make(map[string]any, min(n, 64))
		for range n {
			var key string
			if key, rest, err = d.mapKey(rest, depth); err != nil {
				return nil, rest, err
			}
			var v any
			if d.opaque[key] {
				var after []byte
				if after, err = msgp.Skip(rest); err != nil {
					return nil, rest, err
				}
				v, rest = Raw(append([]byte(nil), rest[:len(rest)-len(after)]...)), after
			} else if v, rest, err = d.fromMsgpack(rest, depth+1); err != nil {
				return nil, rest, err
			}
			if _, dup := m[key]; !dup { // first wins, as for config keys
				m[key] = v
			}
		}
		return m, rest, nil
	case msgp.ArrayType:
		n, rest, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil {
			return nil, b, err
		}
		a := make([]any, 0, min(n, 64))
		for range n {
			var v any
			if v, rest, err = d.fromMsgpack(rest, depth+1); err != nil {
				return nil, rest, err
			}
			a = append(a, v)
		}
		return a, rest, nil
	case msgp.StrType, msgp.BinType:
		s, rest, err := ReadText(b)
		return Intern(s), rest, err
	case msgp.IntType:
		return wrap(msgp.ReadInt64Bytes(b))
	case msgp.UintType:
		return wrap(msgp.ReadUint64Bytes(b))
	case msgp.Float32Type, msgp.Float64Type:
		return wrap(msgp.ReadFloat64Bytes(b))
	case msgp.BoolType:
		return wrap(msgp.ReadBoolBytes(b))
	case msgp.NilType:
		rest, err := msgp.ReadNilBytes(b)
		return nil, rest, err
	default: // extensions and anything else: keep the framing, drop the value
		rest, err := msgp.Skip(b)
		return nil, rest, err
	}
}

// mapKey reads a map key: a string (str or bin) without allocating when it
// is a CloudTrail key name, anything else as its JSON text, exactly as
// AppendJSON writes it, so both ways of reading an event name its keys alike.
func (d decoder) mapKey(b []byte, depth int) (string, []byte, error) {
	if s, rest, err := ReadText(b); err == nil {
		return Intern(s), rest, nil
	}
	k, rest, err := mapKeyText(b, depth)
	return string(k), rest, err
}

// ReadText reads a msgpack str or bin without copying: Fluent Bit writes
// text as either.
func ReadText(b []byte) (text, rest []byte, err error) {
	if msgp.NextType(b) == msgp.BinType {
		return msgp.ReadBytesZC(b)
	}
	return msgp.ReadStringZC(b)
}

// interned holds the strings every CloudTrail event repeats: its key names
// and the commonest values. Returning the stored string (a map lookup keyed
// by string(b) does not allocate) saves most of a candidate's allocations.
var interned = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"eventVersion", "userIdentity", "type", "principalId", "arn", "accountId", "accessKeyId", "userName",
		"sessionContext", "sessionIssuer", "webIdFederationData", "attributes", "creationDate", "mfaAuthenticated",
		"eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent", "requestParameters",
		"responseElements", "requestID", "eventID", "readOnly", "eventType", "managementEvent", "recipientAccountId",
		"eventCategory", "sessionCredentialFromConsole", "tlsDetails", "tlsVersion", "cipherSuite",
		"clientProvidedHostHeader", "errorCode", "errorMessage", "policyArn", "policyName", "policyDocument",
		"groupName", "roleName", "Records", "detail", "detail-type", "log", "message",
		"iam.amazonaws.com", "AwsApiCall", "Management", "AssumedRole", "IAMUser", "Role", "Root", "AWSService",
		"AWS Internal", "false", "true", "us-east-1", "AccessDenied",
	} {
		m[s] = s
	}
	return m
}()

// Intern returns b as a string, without allocating for the strings every
// event repeats.
func Intern(b []byte) string {
	if s, ok := interned[string(b)]; ok {
		return s
	}
	return string(b)
}

func wrap[T any](v T, rest []byte, err error) (any, []byte, error) { return v, rest, err }

var jsonAPI = jsoniter.ConfigCompatibleWithStandardLibrary

// FromJSON decodes one JSON value with jsoniter's iterator. Numbers become
// int64 when they are integers that fit, else float64.
func FromJSON(b []byte) (any, error) {
	it := jsonAPI.BorrowIterator(b)
	defer jsonAPI.ReturnIterator(it)
	v := fromJSON(it, 0)
	if it.Error != nil {
		return nil, it.Error
	}
	if it.WhatIsNext() != jsoniter.InvalidValue { // trailing garbage
		return nil, errors.New("trailing data after JSON value")
	}
	it.Error = nil
	return v, nil
}

func fromJSON(it *jsoniter.Iterator, depth int) any {
	if depth > MaxDepth {
		it.ReportError("decode", ErrTooDeep.Error())
		return nil
	}
	switch it.WhatIsNext() {
	case jsoniter.ObjectValue:
		m := map[string]any{}
		it.ReadMapCB(func(it *jsoniter.Iterator, key string) bool {
			v := fromJSON(it, depth+1)
			if _, dup := m[key]; !dup {
				m[key] = v
			}
			return it.Error == nil
		})
		return m
	case jsoniter.ArrayValue:
		a := []any{}
		it.ReadArrayCB(func(it *jsoniter.Iterator) bool {
			a = append(a, fromJSON(it, depth+1))
			return it.Error == nil
		})
		return a
	case jsoniter.StringValue:
		return it.ReadString()
	case jsoniter.NumberValue:
		n := string(it.ReadNumber())
		if i, err := strconv.ParseInt(n, 10, 64); err == nil {
			return i
		}
		f, err := strconv.ParseFloat(n, 64)
		if err != nil {
			it.ReportError("decode", "bad number "+n)
		}
		return f
	case jsoniter.BoolValue:
		return it.ReadBool()
	case jsoniter.NilValue:
		it.ReadNil()
		return nil
	default:
		it.ReportError("decode", "not a JSON value")
		return nil
	}
}

// AppendMsgpack appends v, built from the types this package produces (or
// []byte, written as bin, and int). It never fails: a value of another type
// is written as nil, so an odd field never costs an alert.
func AppendMsgpack(b []byte, v any) []byte {
	switch v := v.(type) {
	case map[string]any:
		// Sorted, as ToJSON: the same value always gives the same bytes.
		b = msgp.AppendMapHeader(b, uint32(len(v)))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			b = AppendMsgpack(msgp.AppendString(b, k), v[k])
		}
		return b
	case []any:
		b = msgp.AppendArrayHeader(b, uint32(len(v)))
		for _, e := range v {
			b = AppendMsgpack(b, e)
		}
		return b
	case string:
		return msgp.AppendString(b, v)
	case Raw:
		// As the map path would have written the value: duplicate keys
		// dropped, text as str (see Canonical).
		c, err := Canonical(v)
		if err != nil {
			return msgp.AppendNil(b)
		}
		return append(b, c...)
	case []byte:
		return msgp.AppendBytes(b, v)
	case int64:
		return msgp.AppendInt64(b, v)
	case int:
		return msgp.AppendInt(b, v)
	case uint64:
		return msgp.AppendUint64(b, v)
	case float64:
		return msgp.AppendFloat64(b, v)
	case bool:
		return msgp.AppendBool(b, v)
	}
	return msgp.AppendNil(b)
}
