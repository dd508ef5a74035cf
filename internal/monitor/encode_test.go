package monitor

import (
	"testing"

	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// The process key's table has integer pid keys, as upstream packs it.
func TestProcessTableEncodes(t *testing.T) {
	table := msgpack.Map{{Key: 7, Val: map[string]any{"mem": map[string]any{"current": "1"}}}}
	b, err := msgpack.Marshal(table)
	if err != nil {
		t.Fatal(err)
	}
	v, err := wire.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	m := v.(msgpack.Map)
	if len(m) != 1 {
		t.Fatalf("decoded %v", v)
	}
	switch k := m[0].Key.(type) {
	case int64, uint64, int:
	default:
		t.Fatalf("pid key decoded as %T", k)
	}
}
