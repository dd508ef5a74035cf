package wire

import (
	"reflect"
	"testing"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

func TestPlain(t *testing.T) {
	id := uuid.MustParse("6b1f0d2e-1c7a-4a53-9d7e-2f5b8c3a9e10")
	in := msgpack.Map{
		{Key: []byte("b"), Val: []any{id, decimal.RequireFromString("1.5"), Enum{Class: "X", Value: "v"}, SlotName("cpu"), Path("/p"), BinarySize(2048)}},
		{Key: int64(7), Val: msgpack.Map{{Key: "k", Val: []byte("bytes")}}},
	}
	want := map[string]any{
		"b": []any{"6b1f0d2e-1c7a-4a53-9d7e-2f5b8c3a9e10", "1.5", "v", "cpu", "/p", int64(2048)},
		"7": map[string]any{"k": "bytes"},
	}
	if got := Plain(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("Plain: %#v\nwant %#v", got, want)
	}
}
