package value

import (
	"math"
	"slices"
	"strconv"

	"github.com/tinylib/msgp/msgp"
)

// ToJSON encodes v as compact JSON with sorted map keys, so the same value
// always gives the same bytes. It never fails: NaN, infinities and values
// of types this package does not produce are written as null, as
// AppendJSON does for msgpack, so an odd field never costs an alert.
func ToJSON(v any) []byte { return AppendJSONValue(nil, v) }

// AppendJSONValue appends v (built from this package's types) as JSON.
func AppendJSONValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, k)
			dst = append(dst, ':')
			dst = AppendJSONValue(dst, v[k])
		}
		return append(dst, '}')
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONValue(dst, e)
		}
		return append(dst, ']')
	case string:
		return AppendJSONString(dst, v)
	case Raw:
		out, err := AppendJSON(dst, v)
		if err != nil {
			return append(dst, "null"...)
		}
		return out
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case int:
		return strconv.AppendInt(dst, int64(v), 10)
	case uint64:
		return strconv.AppendUint(dst, v, 10)
	case float64:
		return appendFloat(dst, v)
	case bool:
		return strconv.AppendBool(dst, v)
	}
	return append(dst, "null"...)
}

// appendFloat writes f as AppendJSON does, so both paths give one text.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

// Text is a scalar as text: a string as it is, a number or boolean written
// out (account ids sometimes arrive as numbers); anything else is "".
func Text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case float64:
		return floatText(v)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

// TextMsgpack is Text of one msgpack value, read in place; common strings
// cost no allocation.
func TextMsgpack(b []byte) string {
	switch msgp.NextType(b) {
	case msgp.StrType, msgp.BinType:
		s, _, _ := ReadText(b)
		return Intern(s)
	case msgp.IntType:
		i, _, _ := msgp.ReadInt64Bytes(b)
		return strconv.FormatInt(i, 10)
	case msgp.UintType:
		u, _, _ := msgp.ReadUint64Bytes(b)
		return strconv.FormatUint(u, 10)
	case msgp.Float32Type, msgp.Float64Type:
		f, _, _ := msgp.ReadFloat64Bytes(b)
		return floatText(f)
	case msgp.BoolType:
		v, _, _ := msgp.ReadBoolBytes(b)
		return strconv.FormatBool(v)
	}
	return ""
}

func floatText(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return ""
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
