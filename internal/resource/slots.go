package resource

import (
	"fmt"
	"sort"
	"strings"

	"github.com/bai-agent/bai-agent/internal/units"
	"github.com/shopspring/decimal"
)

// SlotName is "device" or "device.type[:subtype]", e.g. "cpu", "mem",
// "cuda.device".
type SlotName string

// DeviceName is the prefix of a slot name ("cpu", "mem", "cuda").
func (s SlotName) DeviceName() DeviceName {
	name, _, _ := strings.Cut(string(s), ".")
	return DeviceName(name)
}

// DeviceName names a compute plugin ("cpu", "mem", "cuda").
type DeviceName string

// DeviceID identifies one device of a plugin ("0", "root").
type DeviceID string

// SlotType is how a slot is measured.
type SlotType string

// Slot types of ai.backend.common.types.SlotTypes.
const (
	SlotCount   SlotType = "count"
	SlotBytes   SlotType = "bytes"
	SlotUnique  SlotType = "unique"
	SlotUnified SlotType = "unified"
)

// Quantum is the precision counts are normalized to (3 decimals).
var Quantum = decimal.New(1, -3)

// Slots maps slot names to amounts.
type Slots map[SlotName]decimal.Decimal

// Clone returns a copy.
func (s Slots) Clone() Slots {
	out := make(Slots, len(s))
	for k, v := range s {
		out[k] = v
	}
	return out
}

// Names returns the slot names in sorted order.
func (s Slots) Names() []SlotName {
	out := make([]SlotName, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// FormatAmount writes an amount the way Backend.AI prints decimals on the
// wire: no exponent, trailing zeros stripped ("1", "0.5", "268435456").
func FormatAmount(d decimal.Decimal) string {
	s := d.String()
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// ParseAmount parses a slot amount. Bytes slots accept BinarySize text
// ("4g"); count slots are normalized to Quantum.
func ParseAmount(slot SlotName, typ SlotType, raw string) (decimal.Decimal, error) {
	raw = strings.TrimSpace(raw)
	if typ == SlotBytes {
		if d, err := decimal.NewFromString(raw); err == nil {
			if !d.IsInteger() {
				return decimal.Decimal{}, fmt.Errorf("slot %s: %q is not a whole number of bytes", slot, raw)
			}
			if d.IsNegative() {
				return decimal.Decimal{}, fmt.Errorf("slot %s: %q is negative", slot, raw)
			}
			return d, nil
		}
		n, err := units.ParseBinarySize(raw)
		if err != nil {
			return decimal.Decimal{}, fmt.Errorf("slot %s: %w", slot, err)
		}
		return decimal.NewFromInt(n), nil
	}
	d, err := decimal.NewFromString(raw)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("slot %s: cannot convert %q to decimal", slot, raw)
	}
	if d.IsNegative() {
		return decimal.Decimal{}, fmt.Errorf("slot %s: %q is negative", slot, raw)
	}
	if !d.Equal(d.Truncate(3)) {
		return decimal.Decimal{}, fmt.Errorf("slot %s: %q has more than 3 decimal places", slot, raw)
	}
	return d, nil
}

// Allocation is what one kernel holds: per slot, per device.
type Allocation map[SlotName]map[DeviceID]decimal.Decimal

// Clone returns a deep copy.
func (a Allocation) Clone() Allocation {
	out := make(Allocation, len(a))
	for s, per := range a {
		m := make(map[DeviceID]decimal.Decimal, len(per))
		for d, v := range per {
			m[d] = v
		}
		out[s] = m
	}
	return out
}

// Slots returns the allocation's slot names, sorted.
func (a Allocation) Slots() []SlotName {
	out := make([]SlotName, 0, len(a))
	for s := range a {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Total returns the amount of slot s summed over devices.
func (a Allocation) Total(s SlotName) decimal.Decimal {
	sum := decimal.Zero
	for _, v := range a[s] {
		sum = sum.Add(v)
	}
	return sum
}

// Devices returns the device ids holding a non-zero amount of s, sorted
// numerically where the ids are numbers.
func (a Allocation) Devices(s SlotName) []DeviceID {
	var out []DeviceID
	for d, v := range a[s] {
		if v.IsPositive() {
			out = append(out, d)
		}
	}
	sortDeviceIDs(out)
	return out
}

func sortDeviceIDs(ids []DeviceID) {
	sort.Slice(ids, func(i, j int) bool { return lessDeviceID(ids[i], ids[j]) })
}

func lessDeviceID(a, b DeviceID) bool {
	ai, aerr := decimal.NewFromString(string(a))
	bi, berr := decimal.NewFromString(string(b))
	if aerr == nil && berr == nil {
		return ai.LessThan(bi)
	}
	return a < b
}
