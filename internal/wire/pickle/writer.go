package pickle

import (
	"encoding/binary"
	"math"
)

// Writer builds a protocol-5 pickle the way CPython's pickler lays out the
// simple objects Backend.AI puts in msgpack extensions: PROTO 5, one
// FRAME, MEMOIZE after every memoizable push, STOP.
type Writer struct {
	body []byte
}

func (w *Writer) op(b ...byte) { w.body = append(w.body, b...) }
func (w *Writer) memoize()     { w.op(0x94) }

// Str pushes a str.
func (w *Writer) Str(s string) {
	switch {
	case len(s) < 256:
		w.op(0x8c, byte(len(s)))
	case len(s) <= math.MaxUint32:
		w.op('X')
		w.body = binary.LittleEndian.AppendUint32(w.body, uint32(len(s)))
	}
	w.body = append(w.body, s...)
	w.memoize()
}

// Int pushes an int.
func (w *Writer) Int(n int64) {
	switch {
	case n >= 0 && n < 256:
		w.op('K', byte(n))
	case n >= 0 && n < 65536:
		w.op('M')
		w.body = binary.LittleEndian.AppendUint16(w.body, uint16(n))
	case n >= math.MinInt32 && n <= math.MaxInt32:
		w.op('J')
		w.body = binary.LittleEndian.AppendUint32(w.body, uint32(int32(n)))
	default:
		// LONG1 with the minimal two's complement little-endian bytes.
		var b []byte
		v := n
		for {
			b = append(b, byte(v))
			v >>= 8
			if (v == 0 && b[len(b)-1]&0x80 == 0) || (v == -1 && b[len(b)-1]&0x80 != 0) {
				break
			}
		}
		w.op(0x8a, byte(len(b)))
		w.body = append(w.body, b...)
	}
}

// Bool pushes True or False.
func (w *Writer) Bool(b bool) {
	if b {
		w.op(0x88)
	} else {
		w.op(0x89)
	}
}

// None pushes None.
func (w *Writer) None() { w.op('N') }

// Global pushes module.name (STACK_GLOBAL).
func (w *Writer) Global(module, name string) {
	w.Str(module)
	w.Str(name)
	w.op(0x93)
	w.memoize()
}

// Tuple packs the top n stack items into a tuple.
func (w *Writer) Tuple(n int) {
	switch n {
	case 0:
		w.op(')')
		return
	case 1:
		w.op(0x85)
	case 2:
		w.op(0x86)
	case 3:
		w.op(0x87)
	default:
		panic("pickle.Writer.Tuple: use Mark and TupleMark for more than 3 items")
	}
	w.memoize()
}

// Mark pushes a MARK.
func (w *Writer) Mark() { w.op('(') }

// EmptyDict pushes {}.
func (w *Writer) EmptyDict() {
	w.op('}')
	w.memoize()
}

// SetItems adds the key/value pairs pushed since the last Mark to the
// dict below them.
func (w *Writer) SetItems() { w.op('u') }

// SetItem adds one key/value pair to the dict below them.
func (w *Writer) SetItem() { w.op('s') }

// Reduce calls the callable with the argument tuple.
func (w *Writer) Reduce() {
	w.op('R')
	w.memoize()
}

// NewObj calls cls.__new__(cls, *args).
func (w *Writer) NewObj() {
	w.op(0x81)
	w.memoize()
}

// Build applies the state on top of the stack to the object below it.
func (w *Writer) Build() { w.op('b') }

// Bytes returns the finished pickle.
func (w *Writer) Bytes() []byte {
	payload := append(append([]byte{}, w.body...), '.')
	out := []byte{0x80, 5}
	if len(payload) >= 4 {
		out = append(out, 0x95)
		out = binary.LittleEndian.AppendUint64(out, uint64(len(payload)))
	}
	return append(out, payload...)
}
