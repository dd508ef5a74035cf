package msgpack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// MaxDepth bounds the nesting of arrays and maps a decoder accepts.
const MaxDepth = 256

// ErrTruncated is returned when the input ends inside a value.
var ErrTruncated = errors.New("msgpack: unexpected end of data")

// Ext is an extension value the decoder had no ExtDecoder for, or that the
// decoder was told to keep raw.
type Ext struct {
	Code int8
	Data []byte
}

// KV is one entry of a Map.
type KV struct {
	Key any
	Val any
}

// Map is a msgpack map with its entries in wire order. Keys may be any
// decoded value, including extension values.
type Map []KV

// Get returns the value stored under the string key k.
func (m Map) Get(k string) (any, bool) {
	for _, kv := range m {
		switch key := kv.Key.(type) {
		case string:
			if key == k {
				return kv.Val, true
			}
		case []byte:
			if string(key) == k {
				return kv.Val, true
			}
		}
	}
	return nil, false
}

// ExtDecoder turns an extension payload into a Go value. Returning the
// error aborts decoding.
type ExtDecoder func(code int8, data []byte) (any, error)

// Decoder decodes msgpack values from a byte slice.
type Decoder struct {
	buf   []byte
	pos   int
	ext   ExtDecoder
	depth int
}

// Unmarshal decodes exactly one value from b. Trailing bytes are an error.
func Unmarshal(b []byte, ext ExtDecoder) (any, error) {
	d := &Decoder{buf: b, ext: ext}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	if d.pos != len(d.buf) {
		return nil, fmt.Errorf("msgpack: %d trailing bytes after value", len(d.buf)-d.pos)
	}
	return v, nil
}

func (d *Decoder) need(n int) ([]byte, error) {
	if n < 0 || len(d.buf)-d.pos < n {
		return nil, ErrTruncated
	}
	b := d.buf[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

func (d *Decoder) byte1() (byte, error) {
	b, err := d.need(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *Decoder) uint(n int) (uint64, error) {
	b, err := d.need(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	default:
		return binary.BigEndian.Uint64(b), nil
	}
}

func (d *Decoder) length(n int) (int, error) {
	v, err := d.uint(n)
	if err != nil {
		return 0, err
	}
	if v > uint64(len(d.buf)) {
		// No container or string can be longer than the input itself;
		// refusing early keeps hostile length prefixes from allocating.
		return 0, ErrTruncated
	}
	return int(v), nil
}

func (d *Decoder) value() (any, error) {
	c, err := d.byte1()
	if err != nil {
		return nil, err
	}
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c&0xf0 == 0x80:
		return d.mapN(int(c & 0x0f))
	case c&0xf0 == 0x90:
		return d.arrayN(int(c & 0x0f))
	case c&0xe0 == 0xa0:
		return d.str(int(c & 0x1f))
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6:
		n, err := d.length(1 << (c - 0xc4))
		if err != nil {
			return nil, err
		}
		b, err := d.need(n)
		if err != nil {
			return nil, err
		}
		return append([]byte{}, b...), nil
	case 0xc7, 0xc8, 0xc9:
		n, err := d.length(1 << (c - 0xc7))
		if err != nil {
			return nil, err
		}
		return d.extN(n)
	case 0xca:
		v, err := d.uint(4)
		return float32frombits(v), err
	case 0xcb:
		v, err := d.uint(8)
		return math.Float64frombits(v), err
	case 0xcc, 0xcd, 0xce, 0xcf:
		v, err := d.uint(1 << (c - 0xcc))
		if err != nil {
			return nil, err
		}
		if v <= math.MaxInt64 {
			return int64(v), nil
		}
		return v, nil
	case 0xd0:
		v, err := d.uint(1)
		return int64(int8(v)), err
	case 0xd1:
		v, err := d.uint(2)
		return int64(int16(v)), err
	case 0xd2:
		v, err := d.uint(4)
		return int64(int32(v)), err
	case 0xd3:
		v, err := d.uint(8)
		return int64(v), err
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return d.extN(1 << (c - 0xd4))
	case 0xd9, 0xda, 0xdb:
		n, err := d.length(1 << (c - 0xd9))
		if err != nil {
			return nil, err
		}
		return d.str(n)
	case 0xdc, 0xdd:
		n, err := d.length(2 << (c - 0xdc))
		if err != nil {
			return nil, err
		}
		return d.arrayN(n)
	case 0xde, 0xdf:
		n, err := d.length(2 << (c - 0xde))
		if err != nil {
			return nil, err
		}
		return d.mapN(n)
	}
	return nil, fmt.Errorf("msgpack: invalid type byte 0x%02x at offset %d", c, d.pos-1)
}

func float32frombits(v uint64) float32 { return math.Float32frombits(uint32(v)) }

func (d *Decoder) str(n int) (any, error) {
	b, err := d.need(n)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func (d *Decoder) extN(n int) (any, error) {
	t, err := d.byte1()
	if err != nil {
		return nil, err
	}
	b, err := d.need(n)
	if err != nil {
		return nil, err
	}
	data := append([]byte{}, b...)
	if d.ext != nil {
		return d.ext(int8(t), data)
	}
	return Ext{Code: int8(t), Data: data}, nil
}

func (d *Decoder) enter() error {
	d.depth++
	if d.depth > MaxDepth {
		return fmt.Errorf("msgpack: nesting deeper than %d", MaxDepth)
	}
	return nil
}

func (d *Decoder) arrayN(n int) (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer func() { d.depth-- }()
	if n > len(d.buf)-d.pos {
		return nil, ErrTruncated
	}
	out := make([]any, 0, n)
	for i := 0; i < n; i++ {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (d *Decoder) mapN(n int) (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer func() { d.depth-- }()
	if 2*n > len(d.buf)-d.pos {
		return nil, ErrTruncated
	}
	out := make(Map, 0, n)
	for i := 0; i < n; i++ {
		k, err := d.value()
		if err != nil {
			return nil, err
		}
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		out = append(out, KV{Key: k, Val: v})
	}
	return out, nil
}
