package resource

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/shopspring/decimal"
)

// Strategy picks devices for a request.
type Strategy string

// Allocation strategies of Backend.AI's alloc maps.
const (
	// Fill takes from the most-free device first and fills it before
	// moving on (memory).
	Fill Strategy = "FILL"
	// Evenly spreads the request over as many devices as possible, one unit
	// at a time, most-free first (CPU cores).
	Evenly Strategy = "EVENLY"
)

// AffinityPolicy orders devices by NUMA node.
type AffinityPolicy string

// Affinity policies of [resource] affinity-policy.
const (
	Interleaved      AffinityPolicy = "INTERLEAVED"
	PreferSingleNode AffinityPolicy = "PREFER_SINGLE_NODE"
)

// Device is one allocatable device of one slot.
type Device struct {
	ID       DeviceID
	Slot     SlotName
	Type     SlotType
	Capacity decimal.Decimal
	NUMANode int // -1 when unknown
}

// Sentinel errors; they map to Backend.AI's exception names at the RPC edge.
var (
	ErrInsufficient        = errors.New("insufficient resource")
	ErrInvalidArgument     = errors.New("invalid resource argument")
	ErrUnsupportedResource = errors.New("unsupported resource")
	// ErrNotMultipleOfQuantum: a positive fractional request that rounds
	// down to zero at the map's quantum (upstream NotMultipleOfQuantum, a
	// kind of InvalidResourceArgument).
	ErrNotMultipleOfQuantum = fmt.Errorf("%w: not a multiple of the quantum", ErrInvalidArgument)
	// ErrInvalidCombination: two slots of one plugin that exclude each
	// other were asked together (upstream InvalidResourceCombination).
	ErrInvalidCombination = errors.New("invalid resource combination")
)

// InsufficientError says what was asked and what is free.
type InsufficientError struct {
	Slot      SlotName
	Requested decimal.Decimal
	Free      decimal.Decimal
	Capacity  decimal.Decimal
	Reason    string
}

func (e *InsufficientError) Error() string {
	msg := fmt.Sprintf("%s: requested %s, free %s of %s", e.Slot, FormatAmount(e.Requested), FormatAmount(e.Free), FormatAmount(e.Capacity))
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrInsufficient) work.
func (e *InsufficientError) Unwrap() error { return ErrInsufficient }

// AllocMap tracks how much of each device is allocated. It is not safe for
// concurrent use; the Allocator serializes access.
type AllocMap struct {
	devices  []Device
	byID     map[DeviceID]int
	used     map[DeviceID]decimal.Decimal
	strategy Strategy
	policy   AffinityPolicy
	discrete bool
	// quantum is the smallest fraction a non-discrete map hands out;
	// requests are rounded down to it.
	quantum decimal.Decimal
	// slot is the map's slot, kept when every device has gone.
	slot SlotName
	// gone marks devices a rescan no longer found while kernels still held
	// them: kept (capacity 0) so those allocations can be freed, never
	// handed out again. They are dropped at the first rescan after their
	// last holder freed them.
	gone map[DeviceID]bool
}

// NewAllocMap builds a map over devices of one slot. Discrete maps accept
// whole-unit requests only.
func NewAllocMap(devices []Device, strategy Strategy, policy AffinityPolicy, discrete bool) (*AllocMap, error) {
	m := &AllocMap{
		devices:  append([]Device{}, devices...),
		byID:     map[DeviceID]int{},
		used:     map[DeviceID]decimal.Decimal{},
		strategy: strategy,
		policy:   policy,
		discrete: discrete,
		quantum:  Quantum,
	}
	for i, d := range m.devices {
		if _, dup := m.byID[d.ID]; dup {
			return nil, fmt.Errorf("duplicate device id %q", d.ID)
		}
		if i > 0 && d.Slot != m.devices[0].Slot {
			return nil, fmt.Errorf("alloc map mixes slots %s and %s", m.devices[0].Slot, d.Slot)
		}
		m.byID[d.ID] = i
		m.used[d.ID] = decimal.Zero
	}
	if len(m.devices) > 0 {
		m.slot = m.devices[0].Slot
	}
	return m, nil
}

// NewFractionAllocMap builds a non-discrete map whose requests are rounded
// down to quantum (upstream FractionAllocMap's quantum_size).
func NewFractionAllocMap(devices []Device, strategy Strategy, policy AffinityPolicy, quantum decimal.Decimal) (*AllocMap, error) {
	if !quantum.IsPositive() {
		return nil, fmt.Errorf("quantum %s must be positive", quantum)
	}
	if !quantum.Equal(quantum.Truncate(3)) {
		return nil, fmt.Errorf("quantum %s has more than 3 decimal places", quantum)
	}
	m, err := NewAllocMap(devices, strategy, policy, false)
	if err != nil {
		return nil, err
	}
	m.quantum = quantum
	return m, nil
}

// Quantum returns the map's allocation unit for fractional requests.
func (m *AllocMap) Quantum() decimal.Decimal { return m.quantum }

// Slot returns the slot this map allocates.
func (m *AllocMap) Slot() SlotName { return m.slot }

// Devices returns the present devices (not those a rescan lost).
func (m *AllocMap) Devices() []Device {
	out := make([]Device, 0, len(m.devices))
	for _, d := range m.devices {
		if !m.gone[d.ID] {
			out = append(out, d)
		}
	}
	return out
}

// Capacity is the sum of device capacities (a lost device has none).
func (m *AllocMap) Capacity() decimal.Decimal {
	sum := decimal.Zero
	for _, d := range m.devices {
		sum = sum.Add(d.Capacity)
	}
	return sum
}

// Used is the sum of allocated amounts, on lost devices too.
func (m *AllocMap) Used() decimal.Decimal {
	sum := decimal.Zero
	for _, v := range m.used {
		sum = sum.Add(v)
	}
	return sum
}

// usedPresent is what counts against the capacity that can still be
// handed out: the usage of present devices, each capped at the device's
// capacity (a lost device, or the excess on a device that shrank under
// its holders, takes nothing from the others).
func (m *AllocMap) usedPresent() decimal.Decimal {
	sum := decimal.Zero
	for _, d := range m.devices {
		if !m.gone[d.ID] {
			sum = sum.Add(decimal.Min(m.used[d.ID], d.Capacity))
		}
	}
	return sum
}

// UsedBy returns the per-device usage.
func (m *AllocMap) UsedBy() map[DeviceID]decimal.Decimal {
	out := make(map[DeviceID]decimal.Decimal, len(m.used))
	for k, v := range m.used {
		out[k] = v
	}
	return out
}

func (m *AllocMap) free(d Device) decimal.Decimal { return d.Capacity.Sub(m.used[d.ID]) }

// snapshot and restore support all-or-nothing allocation.
func (m *AllocMap) snapshot() map[DeviceID]decimal.Decimal { return m.UsedBy() }
func (m *AllocMap) restore(s map[DeviceID]decimal.Decimal) { m.used = s }

// ordered returns devices in allocation order: affinity grouping by NUMA
// node first, most-free first inside a group, ids as the tie-breaker.
//
// hint, if not empty, names the NUMA nodes of devices already given to the
// same kernel (its GPUs): under PREFER_SINGLE_NODE, devices on those nodes
// (and devices whose node is unknown) come first.
func (m *AllocMap) ordered(amount decimal.Decimal, hint map[int]bool) []Device {
	out := m.orderedNoHint(amount)
	if len(hint) == 0 || m.policy != PreferSingleNode {
		return out
	}
	sort.SliceStable(out, func(i, j int) bool {
		hi := out[i].NUMANode < 0 || hint[out[i].NUMANode]
		hj := out[j].NUMANode < 0 || hint[out[j].NUMANode]
		return hi && !hj
	})
	return out
}

func (m *AllocMap) orderedNoHint(amount decimal.Decimal) []Device {
	devs := append([]Device{}, m.devices...)
	byFree := func(ds []Device) {
		sort.SliceStable(ds, func(i, j int) bool {
			fi, fj := m.free(ds[i]), m.free(ds[j])
			if !fi.Equal(fj) {
				return fi.GreaterThan(fj)
			}
			return lessDeviceID(ds[i].ID, ds[j].ID)
		})
	}
	groups := map[int][]Device{}
	var nodes []int
	for _, d := range devs {
		if _, ok := groups[d.NUMANode]; !ok {
			nodes = append(nodes, d.NUMANode)
		}
		groups[d.NUMANode] = append(groups[d.NUMANode], d)
	}
	if len(nodes) <= 1 {
		byFree(devs)
		return devs
	}
	groupFree := func(n int) decimal.Decimal {
		sum := decimal.Zero
		for _, d := range groups[n] {
			sum = sum.Add(m.free(d))
		}
		return sum
	}
	sort.SliceStable(nodes, func(i, j int) bool {
		fi, fj := groupFree(nodes[i]), groupFree(nodes[j])
		if !fi.Equal(fj) {
			return fi.GreaterThan(fj)
		}
		return nodes[i] < nodes[j]
	})
	for _, n := range nodes {
		byFree(groups[n])
	}
	if m.policy == PreferSingleNode {
		// The most-free node that can hold the whole request goes first, so
		// the request lands on one node whenever one node can take it.
		for i, n := range nodes {
			if groupFree(n).GreaterThanOrEqual(amount) {
				nodes[0], nodes[i] = nodes[i], nodes[0]
				break
			}
		}
		var out []Device
		for _, n := range nodes {
			out = append(out, groups[n]...)
		}
		return out
	}
	// INTERLEAVED: round-robin across nodes so a multi-core request gets
	// cores from every node in turn.
	var out []Device
	for i := 0; len(out) < len(devs); i++ {
		for _, n := range nodes {
			if i < len(groups[n]) {
				out = append(out, groups[n][i])
			}
		}
	}
	return out
}

// Check validates a request against the map's kind, whatever is free: a
// unique slot takes exactly 1, a discrete one whole numbers, a fractional
// one is rounded down to the quantum (a positive request that rounds to 0
// is ErrNotMultipleOfQuantum). It returns the amount to allocate.
func (m *AllocMap) Check(amount decimal.Decimal) (decimal.Decimal, error) {
	slot := m.Slot()
	if amount.IsNegative() {
		return amount, fmt.Errorf("%w: %s: negative amount %s", ErrInvalidArgument, slot, amount)
	}
	if amount.IsZero() {
		return amount, nil
	}
	if len(m.devices) > 0 && m.devices[0].Type == SlotUnique && !amount.Equal(decimal.NewFromInt(1)) {
		return amount, fmt.Errorf("%w: %s is a unique slot: request exactly 1, got %s", ErrInvalidArgument, slot, FormatAmount(amount))
	}
	if m.discrete && !amount.IsInteger() {
		return amount, fmt.Errorf("%w: %s must be a whole number, got %s", ErrInvalidArgument, slot, FormatAmount(amount))
	}
	if !m.discrete {
		rounded := amount.Div(m.quantum).Floor().Mul(m.quantum)
		if rounded.IsZero() {
			return amount, fmt.Errorf("%w: %s=%s is below the quantum %s", ErrNotMultipleOfQuantum, slot, FormatAmount(amount), FormatAmount(m.quantum))
		}
		amount = rounded
	}
	return amount, nil
}

// Allocate reserves amount of the map's slot and returns per-device
// amounts. On error nothing changes.
func (m *AllocMap) Allocate(amount decimal.Decimal) (map[DeviceID]decimal.Decimal, error) {
	return m.AllocateNear(amount, nil)
}

// AllocateNear is Allocate with an affinity hint: the NUMA nodes of the
// devices the kernel already got from other maps.
func (m *AllocMap) AllocateNear(amount decimal.Decimal, hint map[int]bool) (map[DeviceID]decimal.Decimal, error) {
	slot := m.Slot()
	amount, err := m.Check(amount)
	if err != nil || amount.IsZero() {
		return map[DeviceID]decimal.Decimal{}, err
	}
	totalFree := m.Capacity().Sub(m.usedPresent())
	if totalFree.IsNegative() {
		totalFree = decimal.Zero
	}
	if totalFree.LessThan(amount) {
		return nil, &InsufficientError{Slot: slot, Requested: amount, Free: totalFree, Capacity: m.Capacity()}
	}
	devs := m.ordered(amount, hint)
	out := map[DeviceID]decimal.Decimal{}
	remaining := amount
	switch m.strategy {
	case Evenly:
		unit := decimal.NewFromInt(1)
		if !m.discrete {
			unit = m.quantum
		}
		for remaining.IsPositive() {
			progressed := false
			for _, d := range devs {
				if !remaining.IsPositive() {
					break
				}
				free := m.free(d).Sub(out[d.ID])
				step := decimal.Min(unit, remaining)
				if free.GreaterThanOrEqual(step) {
					out[d.ID] = out[d.ID].Add(step)
					remaining = remaining.Sub(step)
					progressed = true
				}
			}
			if !progressed {
				break
			}
		}
	default: // Fill
		for _, d := range devs {
			if !remaining.IsPositive() {
				break
			}
			free := m.free(d)
			if !free.IsPositive() {
				continue
			}
			if m.discrete {
				free = free.Floor()
			}
			take := decimal.Min(free, remaining)
			if take.IsPositive() {
				out[d.ID] = take
				remaining = remaining.Sub(take)
			}
		}
	}
	if remaining.IsPositive() {
		return nil, &InsufficientError{Slot: slot, Requested: amount, Free: totalFree, Capacity: m.Capacity(), Reason: "fragmented over devices"}
	}
	for id, v := range out {
		m.used[id] = m.used[id].Add(v)
	}
	return out, nil
}

// Apply adds an existing allocation (recovery). Unknown devices are an
// error; going over capacity is allowed and reported, because the kernels
// already run and adopting them beats killing them.
func (m *AllocMap) Apply(per map[DeviceID]decimal.Decimal) (overcommitted bool, err error) {
	for id := range per {
		if _, ok := m.byID[id]; !ok {
			return false, fmt.Errorf("%s: unknown device %q", m.Slot(), id)
		}
	}
	for id, v := range per {
		m.used[id] = m.used[id].Add(v)
		if m.used[id].GreaterThan(m.devices[m.byID[id]].Capacity) {
			overcommitted = true
		}
	}
	return overcommitted, nil
}

// Free returns an allocation to the map. Freeing more than is used clamps
// at zero (a double free is a bug upstream, not a reason to go negative).
func (m *AllocMap) Free(per map[DeviceID]decimal.Decimal) {
	for id, v := range per {
		if _, ok := m.byID[id]; !ok {
			continue
		}
		n := m.used[id].Sub(v)
		if n.IsNegative() {
			n = decimal.Zero
		}
		m.used[id] = n
	}
}

// String renders the usage for debug logs.
func (m *AllocMap) String() string {
	var parts []string
	for _, d := range m.devices {
		parts = append(parts, fmt.Sprintf("%s=%s/%s", d.ID, FormatAmount(m.used[d.ID]), FormatAmount(d.Capacity)))
	}
	return string(m.Slot()) + "[" + strings.Join(parts, " ") + "]"
}
