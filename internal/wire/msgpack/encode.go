package msgpack

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"sort"
)

// Marshaler lets a type choose its own msgpack encoding.
type Marshaler interface {
	MarshalMsgpack(e *Encoder) error
}

// Encoder appends msgpack values to a buffer. Integers always use the most
// compact form, as Python's msgpack does, so output is byte-identical to
// the Python peer's for the same value.
type Encoder struct {
	buf []byte
}

// Marshal encodes v.
func Marshal(v any) ([]byte, error) {
	e := &Encoder{}
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return e.buf, nil
}

// Bytes returns the encoded bytes so far.
func (e *Encoder) Bytes() []byte { return e.buf }

// Raw appends pre-encoded msgpack bytes.
func (e *Encoder) Raw(b []byte) { e.buf = append(e.buf, b...) }

// Nil appends nil.
func (e *Encoder) Nil() { e.buf = append(e.buf, 0xc0) }

// Bool appends a boolean.
func (e *Encoder) Bool(b bool) {
	if b {
		e.buf = append(e.buf, 0xc3)
	} else {
		e.buf = append(e.buf, 0xc2)
	}
}

// Int appends a signed integer in its most compact form.
func (e *Encoder) Int(v int64) {
	if v >= 0 {
		e.Uint(uint64(v))
		return
	}
	switch {
	case v >= -32:
		e.buf = append(e.buf, byte(int8(v)))
	case v >= math.MinInt8:
		e.buf = append(e.buf, 0xd0, byte(int8(v)))
	case v >= math.MinInt16:
		e.buf = append(e.buf, 0xd1)
		e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(int16(v)))
	case v >= math.MinInt32:
		e.buf = append(e.buf, 0xd2)
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(int32(v)))
	default:
		e.buf = append(e.buf, 0xd3)
		e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(v))
	}
}

// Uint appends an unsigned integer in its most compact form.
func (e *Encoder) Uint(v uint64) {
	switch {
	case v <= 0x7f:
		e.buf = append(e.buf, byte(v))
	case v <= math.MaxUint8:
		e.buf = append(e.buf, 0xcc, byte(v))
	case v <= math.MaxUint16:
		e.buf = append(e.buf, 0xcd)
		e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(v))
	case v <= math.MaxUint32:
		e.buf = append(e.buf, 0xce)
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(v))
	default:
		e.buf = append(e.buf, 0xcf)
		e.buf = binary.BigEndian.AppendUint64(e.buf, v)
	}
}

// Float appends a float64 (Python floats are always doubles).
func (e *Encoder) Float(f float64) {
	e.buf = append(e.buf, 0xcb)
	e.buf = binary.BigEndian.AppendUint64(e.buf, math.Float64bits(f))
}

// String appends a str.
func (e *Encoder) String(s string) {
	n := len(s)
	switch {
	case n <= 31:
		e.buf = append(e.buf, 0xa0|byte(n))
	case n <= math.MaxUint8:
		e.buf = append(e.buf, 0xd9, byte(n))
	case n <= math.MaxUint16:
		e.buf = append(e.buf, 0xda)
		e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(n))
	default:
		e.buf = append(e.buf, 0xdb)
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(n))
	}
	e.buf = append(e.buf, s...)
}

// Binary appends a bin.
func (e *Encoder) Binary(b []byte) {
	n := len(b)
	switch {
	case n <= math.MaxUint8:
		e.buf = append(e.buf, 0xc4, byte(n))
	case n <= math.MaxUint16:
		e.buf = append(e.buf, 0xc5)
		e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(n))
	default:
		e.buf = append(e.buf, 0xc6)
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(n))
	}
	e.buf = append(e.buf, b...)
}

// ArrayHeader appends the header of an array of n items.
func (e *Encoder) ArrayHeader(n int) {
	switch {
	case n <= 15:
		e.buf = append(e.buf, 0x90|byte(n))
	case n <= math.MaxUint16:
		e.buf = append(e.buf, 0xdc)
		e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(n))
	default:
		e.buf = append(e.buf, 0xdd)
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(n))
	}
}

// MapHeader appends the header of a map of n entries.
func (e *Encoder) MapHeader(n int) {
	switch {
	case n <= 15:
		e.buf = append(e.buf, 0x80|byte(n))
	case n <= math.MaxUint16:
		e.buf = append(e.buf, 0xde)
		e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(n))
	default:
		e.buf = append(e.buf, 0xdf)
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(n))
	}
}

// ExtValue appends an extension value, choosing fixext where it fits.
func (e *Encoder) ExtValue(code int8, data []byte) {
	n := len(data)
	switch n {
	case 1:
		e.buf = append(e.buf, 0xd4)
	case 2:
		e.buf = append(e.buf, 0xd5)
	case 4:
		e.buf = append(e.buf, 0xd6)
	case 8:
		e.buf = append(e.buf, 0xd7)
	case 16:
		e.buf = append(e.buf, 0xd8)
	default:
		switch {
		case n <= math.MaxUint8:
			e.buf = append(e.buf, 0xc7, byte(n))
		case n <= math.MaxUint16:
			e.buf = append(e.buf, 0xc8)
			e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(n))
		default:
			e.buf = append(e.buf, 0xc9)
			e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(n))
		}
	}
	e.buf = append(e.buf, byte(code))
	e.buf = append(e.buf, data...)
}

// Encode appends v. Supported: nil, bool, all integer and float kinds,
// string, []byte, Ext, Map, Marshaler, and (through reflection) slices,
// arrays and maps with string keys. Maps with string keys are written in
// sorted key order so output is deterministic.
func (e *Encoder) Encode(v any) error {
	switch x := v.(type) {
	case nil:
		e.Nil()
	case Marshaler:
		return x.MarshalMsgpack(e)
	case bool:
		e.Bool(x)
	case int:
		e.Int(int64(x))
	case int8:
		e.Int(int64(x))
	case int16:
		e.Int(int64(x))
	case int32:
		e.Int(int64(x))
	case int64:
		e.Int(x)
	case uint:
		e.Uint(uint64(x))
	case uint8:
		e.Uint(uint64(x))
	case uint16:
		e.Uint(uint64(x))
	case uint32:
		e.Uint(uint64(x))
	case uint64:
		e.Uint(x)
	case float32:
		e.Float(float64(x))
	case float64:
		e.Float(x)
	case string:
		e.String(x)
	case []byte:
		e.Binary(x)
	case Ext:
		e.ExtValue(x.Code, x.Data)
	case Map:
		e.MapHeader(len(x))
		for _, kv := range x {
			if err := e.Encode(kv.Key); err != nil {
				return err
			}
			if err := e.Encode(kv.Val); err != nil {
				return err
			}
		}
	case []any:
		e.ArrayHeader(len(x))
		for _, it := range x {
			if err := e.Encode(it); err != nil {
				return err
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		e.MapHeader(len(x))
		for _, k := range keys {
			e.String(k)
			if err := e.Encode(x[k]); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
	case map[string]string:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		e.MapHeader(len(x))
		for _, k := range keys {
			e.String(k)
			e.String(x[k])
		}
	case []string:
		e.ArrayHeader(len(x))
		for _, s := range x {
			e.String(s)
		}
	default:
		return e.reflectEncode(reflect.ValueOf(v))
	}
	return nil
}

func (e *Encoder) reflectEncode(rv reflect.Value) error {
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			e.Nil()
			return nil
		}
		return e.Encode(rv.Elem().Interface())
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			e.ArrayHeader(0)
			return nil
		}
		e.ArrayHeader(rv.Len())
		for i := 0; i < rv.Len(); i++ {
			if err := e.Encode(rv.Index(i).Interface()); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("msgpack: cannot encode map with %s keys", rv.Type().Key())
		}
		keys := rv.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		e.MapHeader(len(keys))
		for _, k := range keys {
			e.String(k.String())
			if err := e.Encode(rv.MapIndex(k).Interface()); err != nil {
				return fmt.Errorf("%s: %w", k.String(), err)
			}
		}
		return nil
	case reflect.String:
		e.String(rv.String())
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.Int(rv.Int())
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		e.Uint(rv.Uint())
		return nil
	case reflect.Bool:
		e.Bool(rv.Bool())
		return nil
	case reflect.Float32, reflect.Float64:
		e.Float(rv.Float())
		return nil
	}
	return fmt.Errorf("msgpack: cannot encode value of type %s", rv.Type())
}
