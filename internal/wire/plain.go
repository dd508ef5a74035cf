package wire

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// Plain turns a decoded Backend.AI value into plain Go values (maps with
// string keys, slices, strings, numbers, bools, nil), as JSON or a person
// reads it: map keys are printed, ext types become their string or number
// form, bytes become strings.
func Plain(v any) any {
	switch x := v.(type) {
	case msgpack.Map:
		out := make(map[string]any, len(x))
		for _, kv := range x {
			out[fmt.Sprint(Plain(kv.Key))] = Plain(kv.Val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = Plain(x[i])
		}
		return out
	case uuid.UUID:
		return x.String()
	case decimal.Decimal:
		return x.String()
	case Enum:
		return x.Value
	case SlotName:
		return string(x)
	case Path:
		return string(x)
	case BinarySize:
		return int64(x)
	case []byte:
		return string(x)
	}
	return v
}
