package coderunner

import (
	"encoding/binary"
	"fmt"
	"math"
)

// parseStartedAt reads the status payload, msgpack {"started_at": float}
// (float64 or float32; an int is accepted too).
func parseStartedAt(b []byte) (float64, error) {
	if len(b) < 1 {
		return 0, fmt.Errorf("empty status")
	}
	n := 0
	i := 0
	switch {
	case b[0]&0xF0 == 0x80:
		n, i = int(b[0]&0x0F), 1
	case b[0] == 0xDE && len(b) >= 3:
		n, i = int(binary.BigEndian.Uint16(b[1:3])), 3
	default:
		return 0, fmt.Errorf("status is not a map")
	}
	for ; n > 0; n-- {
		key, j, err := readStr(b, i)
		if err != nil {
			return 0, err
		}
		i = j
		if i >= len(b) {
			return 0, fmt.Errorf("truncated status")
		}
		var v float64
		switch t := b[i]; {
		case t == 0xCB && len(b) >= i+9:
			v = math.Float64frombits(binary.BigEndian.Uint64(b[i+1 : i+9]))
			i += 9
		case t == 0xCA && len(b) >= i+5:
			v = float64(math.Float32frombits(binary.BigEndian.Uint32(b[i+1 : i+5])))
			i += 5
		case t <= 0x7F:
			v = float64(t)
			i++
		default:
			return 0, fmt.Errorf("unsupported status value type 0x%02x", t)
		}
		if key == "started_at" {
			return v, nil
		}
	}
	return 0, fmt.Errorf("no started_at in status")
}

func readStr(b []byte, i int) (string, int, error) {
	if i >= len(b) {
		return "", i, fmt.Errorf("truncated status")
	}
	var n int
	switch t := b[i]; {
	case t&0xE0 == 0xA0:
		n, i = int(t&0x1F), i+1
	case t == 0xD9 && len(b) > i+1:
		n, i = int(b[i+1]), i+2
	default:
		return "", i, fmt.Errorf("status key is not a string")
	}
	if len(b) < i+n {
		return "", i, fmt.Errorf("truncated status key")
	}
	return string(b[i : i+n]), i + n, nil
}
