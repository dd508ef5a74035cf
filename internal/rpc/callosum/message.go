package callosum

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/snappy"

	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// Callosum message types.
const (
	TypeNull      = 0
	TypeFunction  = 1
	TypeResult    = 2
	TypeFailure   = 3
	TypeError     = 4
	TypeCancel    = 5
	TypeCancelled = 6
)

// MaxBodySize is callosum's declared body limit; larger frames are
// refused with an ERROR reply.
const MaxBodySize = 10 << 20

// Header is a decoded header frame. Meth, Okey and Seq keep the exact
// msgpack type they arrived with (str vs bin for okey), because the client
// matches replies on (meth, okey, seq) with Python equality.
type Header struct {
	Type int64
	Meth any
	Okey any
	Seq  any
	Zip  bool
}

// MethodName returns meth as a string ("" if it is not str or bin).
func (h *Header) MethodName() string {
	switch m := h.Meth.(type) {
	case string:
		return m
	case []byte:
		return string(m)
	}
	return ""
}

// ErrBadHeader is wrapped by header decoding errors.
var ErrBadHeader = errors.New("malformed header")

// DecodeHeader decodes a header frame. On error the returned header holds
// whatever fields could be read, so the caller can still address an ERROR
// reply when meth, okey and seq are present.
func DecodeHeader(b []byte) (Header, bool, error) {
	var h Header
	v, err := msgpack.Unmarshal(b, nil)
	if err != nil {
		return h, false, fmt.Errorf("%w: %v", ErrBadHeader, err)
	}
	m, ok := v.(msgpack.Map)
	if !ok {
		return h, false, fmt.Errorf("%w: header is %T, not a map", ErrBadHeader, v)
	}
	meth, hasMeth := m.Get("meth")
	okey, hasOkey := m.Get("okey")
	seq, hasSeq := m.Get("seq")
	h.Meth, h.Okey, h.Seq = meth, okey, seq
	addressable := hasMeth && hasOkey && hasSeq
	t, hasType := m.Get("type")
	ti, isInt := t.(int64)
	if !hasType || !isInt {
		return h, addressable, fmt.Errorf("%w: missing or non-integer type", ErrBadHeader)
	}
	h.Type = ti
	if !addressable {
		return h, false, fmt.Errorf("%w: missing meth, okey or seq", ErrBadHeader)
	}
	if _, ok := meth.(string); !ok {
		return h, true, fmt.Errorf("%w: meth is %T, not str", ErrBadHeader, meth)
	}
	z, hasZip := m.Get("zip")
	zb, isBool := z.(bool)
	if !hasZip || !isBool {
		return h, true, fmt.Errorf("%w: missing or non-boolean zip", ErrBadHeader)
	}
	h.Zip = zb
	return h, true, nil
}

// EncodeHeader encodes a header frame (5 entries, callosum's key order).
func EncodeHeader(h Header) ([]byte, error) {
	e := &msgpack.Encoder{}
	e.MapHeader(5)
	e.String("type")
	e.Int(h.Type)
	e.String("meth")
	if err := e.Encode(h.Meth); err != nil {
		return nil, err
	}
	e.String("okey")
	if err := e.Encode(h.Okey); err != nil {
		return nil, err
	}
	e.String("seq")
	if err := e.Encode(h.Seq); err != nil {
		return nil, err
	}
	e.String("zip")
	e.Bool(h.Zip)
	return e.Bytes(), nil
}

// Body is a decoded body frame.
type Body struct {
	Meta    []byte
	Payload []byte
	HasBody bool // false when body is nil
}

// DecodeBody decodes a body frame, un-snappying it when zip is set.
func DecodeBody(b []byte, zip bool) (Body, error) {
	if zip {
		n, err := snappy.DecodedLen(b)
		if err != nil || n > MaxBodySize {
			return Body{}, fmt.Errorf("body: bad snappy block: %v", err)
		}
		b, err = snappy.Decode(nil, b)
		if err != nil {
			return Body{}, fmt.Errorf("body: snappy: %w", err)
		}
	}
	v, err := msgpack.Unmarshal(b, nil)
	if err != nil {
		return Body{}, fmt.Errorf("body: %w", err)
	}
	m, ok := v.(msgpack.Map)
	if !ok {
		return Body{}, fmt.Errorf("body is %T, not a map", v)
	}
	meta, ok1 := m.Get("meta")
	body, ok2 := m.Get("body")
	if !ok1 || !ok2 {
		return Body{}, errors.New("body: missing meta or body")
	}
	out := Body{}
	switch x := meta.(type) {
	case []byte:
		out.Meta = x
	case nil:
	default:
		return Body{}, fmt.Errorf("body: meta is %T, not bin", meta)
	}
	switch x := body.(type) {
	case []byte:
		out.Payload, out.HasBody = x, true
	case nil:
	default:
		return Body{}, fmt.Errorf("body: body is %T, not bin", body)
	}
	return out, nil
}

// EncodeBody encodes a body frame; payload nil encodes body as nil.
func EncodeBody(meta []byte, payload []byte) []byte {
	e := &msgpack.Encoder{}
	e.MapHeader(2)
	e.String("meta")
	e.Binary(meta)
	e.String("body")
	if payload == nil {
		e.Nil()
	} else {
		e.Binary(payload)
	}
	return e.Bytes()
}

// EmptyArrayMeta is msgpack of an empty array, the meta of RESULT, CANCEL
// and CANCELLED.
var EmptyArrayMeta = []byte{0x90}

// ErrorMeta encodes [name, repr, traceback].
func ErrorMeta(name, repr, tb string) []byte {
	e := &msgpack.Encoder{}
	e.ArrayHeader(3)
	e.String(name)
	e.String(repr)
	e.String(tb)
	return e.Bytes()
}
