package wire

import (
	"sort"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
	"github.com/bai-agent/bai-agent/internal/wire/pickle"
)

// Python values written as msgpack extensions, for peers that unpickle
// them (managers <= 26.8.1 expect Decimals, enums and ResourceSlots in
// several places).

// PyDecimal encodes as ext 3, a pickled decimal.Decimal.
type PyDecimal struct{ decimal.Decimal }

// MarshalMsgpack implements msgpack.Marshaler.
func (d PyDecimal) MarshalMsgpack(e *msgpack.Encoder) error {
	e.ExtValue(ExtDecimal, PickleDecimal(d.Decimal))
	return nil
}

func pickleDecimalInto(w *pickle.Writer, d decimal.Decimal) {
	w.Global("decimal", "Decimal")
	w.Str(d.String())
	w.Tuple(1)
	w.Reduce()
}

// PickleDecimal returns pickle.dumps(Decimal(d), protocol=5).
func PickleDecimal(d decimal.Decimal) []byte {
	w := &pickle.Writer{}
	pickleDecimalInto(w, d)
	return w.Bytes()
}

// MarshalMsgpack encodes an enum member as ext 6, in CPython 3.12+'s
// cls(value) form.
func (e Enum) MarshalMsgpack(enc *msgpack.Encoder) error {
	enc.ExtValue(ExtEnum, PickleEnum(e))
	return nil
}

// PickleEnum returns the pickle of an enum member.
func PickleEnum(e Enum) []byte {
	mod, cls := splitClass(e.Class)
	w := &pickle.Writer{}
	w.Global(mod, cls)
	w.Str(e.Value)
	w.Tuple(1)
	w.Reduce()
	return w.Bytes()
}

func splitClass(c string) (string, string) {
	for i := len(c) - 1; i >= 0; i-- {
		if c[i] == '.' {
			return c[:i], c[i+1:]
		}
	}
	return "builtins", c
}

const typesModule = "ai.backend.common.types"

// MarshalMsgpack encodes a BinarySize as ext 16.
func (b BinarySize) MarshalMsgpack(e *msgpack.Encoder) error {
	w := &pickle.Writer{}
	w.Global(typesModule, "BinarySize")
	w.Int(int64(b))
	w.Tuple(1)
	w.NewObj()
	e.ExtValue(ExtBinarySize, w.Bytes())
	return nil
}

// MarshalMsgpack encodes a SlotName as ext 9.
func (s SlotName) MarshalMsgpack(e *msgpack.Encoder) error {
	w := &pickle.Writer{}
	w.Global(typesModule, "SlotName")
	w.Str(string(s))
	w.Tuple(1)
	w.NewObj()
	// state: ({"data": value}, {slot attributes})
	w.EmptyDict()
	w.Str("data")
	w.Str(string(s))
	w.SetItem()
	w.EmptyDict()
	w.Mark()
	for _, kv := range [][2]string{{"_parsed", ""}, {"_device_name", ""}, {"_major_type", ""}, {"_minor_type", ""}} {
		w.Str(kv[0])
		if kv[0] == "_parsed" {
			w.Bool(false)
		} else {
			w.Str(kv[1])
		}
	}
	w.SetItems()
	w.Tuple(2)
	w.Build()
	e.ExtValue(ExtSlotName, w.Bytes())
	return nil
}

// MarshalMsgpack encodes a ResourceSlot as ext 8 (a UserDict with
// __slots__ = ("data",), values as Decimals).
func (r ResourceSlot) MarshalMsgpack(e *msgpack.Encoder) error {
	w := &pickle.Writer{}
	w.Global(typesModule, "ResourceSlot")
	w.Tuple(0)
	w.NewObj()
	w.None()
	w.EmptyDict()
	w.Str("data")
	w.EmptyDict()
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 0 {
		w.Mark()
		for _, k := range keys {
			w.Str(k)
			pickleDecimalInto(w, r[k])
		}
		w.SetItems()
	}
	w.SetItem()
	w.Tuple(2)
	w.Build()
	e.ExtValue(ExtResourceSlot, w.Bytes())
	return nil
}

// MarshalMsgpack encodes an ImageRef as ext 7 (the dataclass's fields).
func (r ImageRef) MarshalMsgpack(e *msgpack.Encoder) error {
	w := &pickle.Writer{}
	w.Global("ai.backend.common.docker", "ImageRef")
	w.Tuple(0)
	w.NewObj()
	w.EmptyDict()
	w.Mark()
	for _, kv := range [][2]string{{"name", r.Name}, {"project", r.Project}, {"tag", r.Tag}, {"registry", r.Registry}, {"architecture", r.Architecture}} {
		w.Str(kv[0])
		w.Str(kv[1])
	}
	w.Str("is_local")
	w.Bool(r.IsLocal)
	w.SetItems()
	w.Build()
	e.ExtValue(ExtImageRef, w.Bytes())
	return nil
}
