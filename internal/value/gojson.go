package value

import (
	"math"
	"slices"
	"strconv"
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
