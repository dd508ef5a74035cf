package rpc

import (
	"math"
	"strconv"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/units"
	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// Call is one decoded FUNCTION request.
type Call struct {
	Method string
	Args   []any
	Kwargs msgpack.Map
}

// Arg returns positional argument i, or keyword name, or (nil, false).
func (c *Call) Arg(i int, name string) (any, bool) {
	if i < len(c.Args) {
		return c.Args[i], true
	}
	if v, ok := c.Kwargs.Get(name); ok {
		return v, true
	}
	return nil, false
}

// Required returns an argument or a TypeError naming it.
func (c *Call) Required(i int, name string) (any, error) {
	v, ok := c.Arg(i, name)
	if !ok {
		return nil, typeError("%s() missing required argument: %s", c.Method, PyRepr(name))
	}
	return v, nil
}

func wrongType(path, want string, v any) error {
	return typeError("%s: expected %s, got %s", path, want, wire.TypeName(v))
}

// asStr accepts str, bytes, UUID, enum and SlotName as strings.
func asStr(v any, path string) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case uuid.UUID:
		return x.String(), nil
	case wire.Enum:
		return x.Value, nil
	case wire.SlotName:
		return string(x), nil
	case wire.Path:
		return string(x), nil
	}
	return "", wrongType(path, "str", v)
}

func asInt(v any, path string) (int, error) {
	switch x := v.(type) {
	case int64:
		if x > math.MaxInt32*2 || x < math.MinInt32*2 {
			return 0, typeError("%s: %d is out of range", path, x)
		}
		return int(x), nil
	case uint64:
		if x > math.MaxInt32 {
			return 0, typeError("%s: %d is out of range", path, x)
		}
		return int(x), nil
	case wire.BinarySize:
		return int(x), nil
	}
	return 0, wrongType(path, "int", v)
}

func asBool(v any, path string) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, wrongType(path, "bool", v)
	}
	return b, nil
}

func asMap(v any, path string) (msgpack.Map, error) {
	m, ok := v.(msgpack.Map)
	if !ok {
		return nil, wrongType(path, "dict", v)
	}
	return m, nil
}

func asList(v any, path string) ([]any, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, wrongType(path, "list", v)
	}
	return l, nil
}

// asStrMap reads {str: str} (values may also be numbers or decimals, as
// resource_slots can carry them).
func asStrMap(v any, path string) (map[string]string, error) {
	if v == nil {
		return map[string]string{}, nil
	}
	m, err := asMap(v, path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(m))
	for _, kv := range m {
		k, err := asStr(kv.Key, path+" key")
		if err != nil {
			return nil, err
		}
		p := path + "[" + PyRepr(k) + "]"
		switch x := kv.Val.(type) {
		case decimal.Decimal:
			out[k] = x.String()
		case int64:
			out[k] = strconv.FormatInt(x, 10)
		case uint64:
			out[k] = strconv.FormatUint(x, 10)
		case wire.BinarySize:
			out[k] = strconv.FormatInt(int64(x), 10)
		case float64:
			out[k] = strconv.FormatFloat(x, 'f', -1, 64)
		default:
			s, err := asStr(kv.Val, p)
			if err != nil {
				return nil, err
			}
			out[k] = s
		}
	}
	return out, nil
}

// asBytesSize reads a size in bytes: int, BinarySize, Decimal or text.
func asBytesSize(v any, path string) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, typeError("%s: out of range", path)
		}
		return int64(x), nil
	case wire.BinarySize:
		return int64(x), nil
	case decimal.Decimal:
		if !x.IsInteger() {
			return 0, typeError("%s: %s is not a whole number of bytes", path, x)
		}
		return x.IntPart(), nil
	case string:
		n, err := units.ParseBinarySize(x)
		if err != nil {
			return 0, typeError("%s: %v", path, err)
		}
		return n, nil
	}
	return 0, wrongType(path, "int (bytes)", v)
}
