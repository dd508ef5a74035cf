package resource

import (
	"fmt"
	"path"
	"sort"
	"sync"

	"github.com/shopspring/decimal"
)

// SlotInfo describes one slot a plugin offers.
type SlotInfo struct {
	Name SlotName
	Type SlotType
}

// Allocator owns every alloc map of the node and the advertised
// (available) amounts. All methods are safe for concurrent use; one mutex
// guards the maps and is never held across I/O.
type Allocator struct {
	mu        sync.Mutex
	maps      map[SlotName]*AllocMap
	types     map[SlotName]SlotType
	available Slots
	order     []SlotName
	// exclusive holds, per device name, fnmatch patterns of slots that
	// must not be asked together (MIG slices vs whole GPUs vs shares).
	exclusive map[DeviceName][]string
}

// NewAllocator builds an allocator. available caps the total allocation of
// each slot (capacity minus reserve); order is the device-type allocation
// order (cuda, rocm, tpu, cpu, mem).
func NewAllocator(maps []*AllocMap, types map[SlotName]SlotType, available Slots, deviceOrder []string) *Allocator {
	a := &Allocator{maps: map[SlotName]*AllocMap{}, types: types, available: available.Clone()}
	for _, m := range maps {
		a.maps[m.Slot()] = m
	}
	rank := map[DeviceName]int{}
	for i, d := range deviceOrder {
		rank[DeviceName(d)] = i + 1
	}
	for s := range a.maps {
		a.order = append(a.order, s)
	}
	sort.Slice(a.order, func(i, j int) bool {
		ri, rj := rank[a.order[i].DeviceName()], rank[a.order[j].DeviceName()]
		if ri == 0 {
			ri = len(deviceOrder) + 1
		}
		if rj == 0 {
			rj = len(deviceOrder) + 1
		}
		if ri != rj {
			return ri < rj
		}
		return a.order[i] < a.order[j]
	})
	return a
}

// SetExclusive records a plugin's exclusive slot patterns (upstream
// exclusive_slot_types): two different requested slots of dev that both
// match a pattern make the request an InvalidResourceCombination. A
// pattern with '*' is matched as a shell glob. Call it before serving.
func (a *Allocator) SetExclusive(dev DeviceName, patterns []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.exclusive == nil {
		a.exclusive = map[DeviceName][]string{}
	}
	a.exclusive[dev] = append([]string{}, patterns...)
}

func (a *Allocator) checkExclusive(req Slots) error {
	byDev := map[DeviceName][]SlotName{}
	for _, s := range req.Names() {
		if req[s].IsPositive() {
			byDev[s.DeviceName()] = append(byDev[s.DeviceName()], s)
		}
	}
	for dev, pats := range a.exclusive {
		var hit []SlotName
		for _, s := range byDev[dev] {
			for _, p := range pats {
				if ok, _ := path.Match(p, string(s)); ok {
					hit = append(hit, s)
					break
				}
			}
		}
		if len(hit) > 1 {
			return fmt.Errorf("%w: %s and %s cannot be allocated together", ErrInvalidCombination, hit[0], hit[1])
		}
	}
	return nil
}

// Available returns the advertised amounts (capacity minus reserve).
// A rescan (UpdateDevices) may change them.
func (a *Allocator) Available() Slots {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.available.Clone()
}

// Used returns the allocated amount of every slot.
func (a *Allocator) Used() Slots {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := Slots{}
	for s, m := range a.maps {
		out[s] = m.Used()
	}
	return out
}

// Normalize checks a request against the known slots: unknown slots with a
// non-zero amount are refused, zero-valued unknown ones dropped, missing
// known ones filled with 0 (spec 3.3 step 8).
func (a *Allocator) Normalize(req map[string]string) (Slots, error) {
	out := Slots{}
	for k, raw := range req {
		s := SlotName(k)
		typ, known := a.types[s]
		if !known {
			d, err := ParseAmount(s, SlotCount, raw)
			if err == nil && d.IsZero() {
				continue
			}
			return nil, fmt.Errorf("%w: slot %q is not available on this agent", ErrUnsupportedResource, k)
		}
		d, err := ParseAmount(s, typ, raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidArgument, err)
		}
		out[s] = d
	}
	for s := range a.types {
		if _, ok := out[s]; !ok {
			out[s] = decimal.Zero
		}
	}
	return out, nil
}

// Allocate reserves every slot of req or nothing.
func (a *Allocator) Allocate(req Slots) (Allocation, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for s, amt := range req {
		if _, ok := a.maps[s]; !ok && amt.IsPositive() {
			return nil, fmt.Errorf("%w: slot %q is not available on this agent", ErrUnsupportedResource, s)
		}
	}
	if err := a.checkExclusive(req); err != nil {
		return nil, err
	}
	// A malformed request (half a whole GPU, two of a MIG slice) is an
	// invalid argument even when nothing is free.
	for _, s := range a.order {
		if amt := req[s]; amt.IsPositive() {
			if _, err := a.maps[s].Check(amt); err != nil {
				return nil, err
			}
		}
	}
	// Check the advertised caps first: reserved capacity stays in the maps
	// (spec 4.5) but must not be handed out.
	for _, s := range a.order {
		amt := req[s]
		if !amt.IsPositive() {
			continue
		}
		m := a.maps[s]
		if avail, ok := a.available[s]; ok {
			free := avail.Sub(m.usedPresent())
			if free.IsNegative() {
				free = decimal.Zero
			}
			if amt.GreaterThan(free) {
				return nil, &InsufficientError{Slot: s, Requested: amt, Free: free, Capacity: avail}
			}
		}
	}
	snaps := map[SlotName]map[DeviceID]decimal.Decimal{}
	for s, m := range a.maps {
		snaps[s] = m.snapshot()
	}
	out := Allocation{}
	// Device types go in allocation order (cuda before cpu); the NUMA nodes
	// of what a kernel got so far steer the next type (a GPU on node 1
	// pulls cores from node 1 under PREFER_SINGLE_NODE).
	hint := map[int]bool{}
	for _, s := range a.order {
		amt, ok := req[s]
		if !ok {
			continue
		}
		m := a.maps[s]
		per, err := m.AllocateNear(amt, hint)
		if err != nil {
			for s2, snap := range snaps {
				a.maps[s2].restore(snap)
			}
			return nil, err
		}
		out[s] = per
		for _, d := range m.devices {
			if per[d.ID].IsPositive() && d.NUMANode >= 0 {
				hint[d.NUMANode] = true
			}
		}
	}
	return out, nil
}

// Free returns an allocation.
func (a *Allocator) Free(alloc Allocation) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for s, per := range alloc {
		if m, ok := a.maps[s]; ok {
			m.Free(per)
		}
	}
}

// Restore adopts an allocation that already exists (agent restart). It
// returns whether any device is now over capacity.
func (a *Allocator) Restore(alloc Allocation) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for s := range alloc {
		if _, ok := a.maps[s]; !ok {
			return false, fmt.Errorf("%w: slot %q of a restored kernel is not available on this agent", ErrUnsupportedResource, s)
		}
	}
	over := false
	for s, per := range alloc {
		o, err := a.maps[s].Apply(per)
		if err != nil {
			return false, err
		}
		over = over || o
	}
	return over, nil
}
