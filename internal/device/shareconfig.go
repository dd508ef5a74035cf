package device

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/units"
)

// ErrPluginConfig marks a malformed plugin configuration (the agent exits
// 2, naming the key).
var ErrPluginConfig = errors.New("invalid compute plugin configuration")

func configErr(key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrPluginConfig, key, fmt.Sprintf(format, args...))
}

// ShareConfig is the part of config/plugins/accelerator/<plugin>/ in etcd
// that the mock and the CUDA plugin share (the mock's keys): discrete or
// fractional allocation, what one share is, the device mask.
type ShareConfig struct {
	Fractional     bool
	UnitMem        int64
	UnitProc       int
	DeviceMask     map[string]bool
	ReservedMemory int64
	Quantum        decimal.Decimal
}

// ParseShareConfig reads the etcd keys of plugin, naming the key on
// error.
func ParseShareConfig(plugin string, m map[string]any) (ShareConfig, error) {
	pc := ShareConfig{UnitMem: 2 << 30, UnitProc: 8, DeviceMask: map[string]bool{}, Quantum: decimal.RequireFromString("0.1")}
	get := func(k string) (string, bool) {
		v, ok := m[k]
		if !ok {
			return "", false
		}
		s, isStr := v.(string)
		if !isStr {
			return fmt.Sprint(v), true
		}
		return strings.TrimSpace(s), true
	}
	pfx := "config/plugins/accelerator/" + plugin + "/"
	if v, ok := get("allocation_mode"); ok {
		switch v {
		case "discrete":
		case "fractional":
			pc.Fractional = true
		default:
			return pc, configErr(pfx+"allocation_mode", "%q: one of discrete, fractional", v)
		}
	}
	if v, ok := get("unit_mem"); ok {
		n, err := units.ParseBinarySize(v)
		if err != nil || n < 512<<20 {
			return pc, configErr(pfx+"unit_mem", "%q must be a binary size of at least 512m", v)
		}
		pc.UnitMem = n
	}
	if v, ok := get("unit_proc"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			return pc, configErr(pfx+"unit_proc", "%q must be an integer >= 2", v)
		}
		pc.UnitProc = n
	}
	if v, ok := get("device_mask"); ok {
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				pc.DeviceMask[id] = true
			}
		}
	}
	if pc.Fractional {
		pc.ReservedMemory = 64 << 20
	}
	if v, ok := get("reserved_memory"); ok {
		n, err := units.ParseBinarySize(v)
		if err != nil {
			return pc, configErr(pfx+"reserved_memory", "%q is not a size in bytes", v)
		}
		pc.ReservedMemory = n
	}
	if v, ok := get("quantum_size"); ok {
		q, err := decimal.NewFromString(v)
		if err != nil || !q.IsPositive() || !q.Equal(q.Truncate(3)) || q.GreaterThan(decimal.NewFromInt(1)) {
			return pc, configErr(pfx+"quantum_size", "%q must be a decimal in (0, 1] with at most 3 places", v)
		}
		pc.Quantum = q
	}
	return pc, nil
}

// Shares is how many shares a device offers: the smaller of its memory in
// unit_mem and its processors in unit_proc, rounded down to 0.01.
func (c ShareConfig) Shares(memBytes int64, processors int) decimal.Decimal {
	m := decimal.NewFromInt(memBytes).Div(decimal.NewFromInt(c.UnitMem))
	p := decimal.NewFromInt(int64(processors)).Div(decimal.NewFromInt(int64(c.UnitProc)))
	return decimal.Min(m, p).Truncate(2)
}

// ShareSpec is what a number of shares amounts to: memory in bytes and
// processors (at least 4).
func (c ShareConfig) ShareSpec(share decimal.Decimal) (memBytes int64, processors int64) {
	memBytes = decimal.NewFromInt(c.UnitMem).Mul(share).IntPart()
	processors = decimal.NewFromInt(int64(c.UnitProc)).Mul(share).IntPart()
	if processors < 4 {
		processors = 4
	}
	return memBytes, processors
}
