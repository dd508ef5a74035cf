package coderunner

import (
	"fmt"

	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// parseStartedAt reads the status payload, msgpack {"started_at": float}.
func parseStartedAt(b []byte) (float64, error) {
	v, err := msgpack.Unmarshal(b, nil)
	if err != nil {
		return 0, fmt.Errorf("status: %w", err)
	}
	m, ok := v.(msgpack.Map)
	if !ok {
		return 0, fmt.Errorf("status is not a map")
	}
	x, ok := m.Get("started_at")
	if !ok {
		return 0, fmt.Errorf("no started_at in status")
	}
	switch f := x.(type) {
	case float64:
		return f, nil
	case float32:
		return float64(f), nil
	case int64:
		return float64(f), nil
	case uint64:
		return float64(f), nil
	}
	return 0, fmt.Errorf("status started_at is %T, not a number", x)
}
