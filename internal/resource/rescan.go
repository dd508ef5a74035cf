package resource

import (
	"fmt"
	"sort"

	"github.com/shopspring/decimal"
)

// ChangeKind says what a rescan found out about one device.
type ChangeKind string

// Kinds of DeviceChange.
const (
	// DeviceAdded: a device the map did not know (or had dropped).
	DeviceAdded ChangeKind = "added"
	// DeviceRemoved: a known device is no longer there. Used says what
	// kernels still hold of it.
	DeviceRemoved ChangeKind = "removed"
	// DeviceReturned: a device lost while still held is back; it is
	// allocatable again and its holders' amounts count against it.
	DeviceReturned ChangeKind = "returned"
	// DeviceResized: the device's capacity changed (memory size, shares).
	DeviceResized ChangeKind = "resized"
)

// DeviceChange is one difference a rescan made to an alloc map.
type DeviceChange struct {
	Kind   ChangeKind
	Slot   SlotName
	Device DeviceID
	// Used is what allocations hold of the device at the time.
	Used decimal.Decimal
	// OldCapacity and NewCapacity are the device's capacity before and
	// after (0 for a device that is not there).
	OldCapacity, NewCapacity decimal.Decimal
}

// SetDevices replaces the map's devices with a fresh scan of the same
// slot and keeps every allocation valid: a present device keeps its usage
// (even over a smaller capacity: the kernels run already); a device that
// vanished while held stays as a lost device of capacity 0, so it is
// never handed out again but its holders can free it; one that vanished
// unheld is dropped. A lost device that comes back is allocatable again.
// On error (a device of another slot, a duplicate id) nothing changes.
func (m *AllocMap) SetDevices(devs []Device) ([]DeviceChange, error) {
	byID := map[DeviceID]int{}
	for i, d := range devs {
		if _, dup := byID[d.ID]; dup {
			return nil, fmt.Errorf("duplicate device id %q", d.ID)
		}
		if m.slot != "" && d.Slot != m.slot {
			return nil, fmt.Errorf("alloc map of %s got a device of %s", m.slot, d.Slot)
		}
		byID[d.ID] = i
	}
	var changes []DeviceChange
	old := map[DeviceID]Device{}
	for _, d := range m.devices {
		old[d.ID] = d
	}
	next := make([]Device, 0, len(devs))
	used := map[DeviceID]decimal.Decimal{}
	gone := map[DeviceID]bool{}
	for _, d := range devs {
		u := m.used[d.ID]
		used[d.ID] = u
		next = append(next, d)
		o, known := old[d.ID]
		switch {
		case !known:
			changes = append(changes, DeviceChange{Kind: DeviceAdded, Slot: d.Slot, Device: d.ID, Used: u, NewCapacity: d.Capacity})
		case m.gone[d.ID]:
			changes = append(changes, DeviceChange{Kind: DeviceReturned, Slot: d.Slot, Device: d.ID, Used: u, NewCapacity: d.Capacity})
		case !o.Capacity.Equal(d.Capacity):
			changes = append(changes, DeviceChange{Kind: DeviceResized, Slot: d.Slot, Device: d.ID, Used: u, OldCapacity: o.Capacity, NewCapacity: d.Capacity})
		}
	}
	var lost []Device
	for _, o := range m.devices {
		if _, ok := byID[o.ID]; ok {
			continue
		}
		u := m.used[o.ID]
		if !m.gone[o.ID] {
			changes = append(changes, DeviceChange{Kind: DeviceRemoved, Slot: o.Slot, Device: o.ID, Used: u, OldCapacity: o.Capacity})
		}
		if u.IsPositive() {
			o.Capacity = decimal.Zero
			lost = append(lost, o)
			used[o.ID] = u
			gone[o.ID] = true
		}
	}
	sort.SliceStable(lost, func(i, j int) bool { return lessDeviceID(lost[i].ID, lost[j].ID) })
	next = append(next, lost...)
	m.devices, m.used, m.gone = next, used, gone
	m.byID = make(map[DeviceID]int, len(next))
	for i, d := range next {
		m.byID[d.ID] = i
	}
	if m.slot == "" && len(next) > 0 {
		m.slot = next[0].Slot
	}
	return changes, nil
}

// Lost lists the devices a rescan lost while allocations still hold them.
func (m *AllocMap) Lost() []DeviceID {
	var out []DeviceID
	for _, d := range m.devices {
		if m.gone[d.ID] {
			out = append(out, d.ID)
		}
	}
	return out
}

// UpdateDevices applies a fresh scan of one plugin (device name dev):
// every alloc map of dev takes the devices of the fresh map of its slot
// (none when the scan has no map for it: every device of the slot is
// gone), and the advertised amounts of dev's slots become available's
// (0 where it has none). Allocations stay valid (AllocMap.SetDevices). A
// fresh map of a slot the allocator does not know is not adopted (the
// slot types were advertised at start): it is returned in ignored.
// On error nothing changes.
func (a *Allocator) UpdateDevices(dev DeviceName, fresh []*AllocMap, available Slots) (changes []DeviceChange, ignored []SlotName, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	bySlot := map[SlotName]*AllocMap{}
	for _, f := range fresh {
		s := f.Slot()
		if s == "" {
			continue // a map without devices: the slot's devices are all gone
		}
		if s.DeviceName() != dev {
			return nil, nil, fmt.Errorf("rescan of %s returned a map of %s", dev, s)
		}
		if _, ok := a.maps[s]; !ok {
			ignored = append(ignored, s)
			continue
		}
		bySlot[s] = f
	}
	// Check every map first so a bad scan changes nothing.
	var slots []SlotName
	for s := range a.maps {
		if s.DeviceName() == dev {
			slots = append(slots, s)
		}
	}
	sort.Slice(slots, func(i, j int) bool { return slots[i] < slots[j] })
	staged := map[SlotName]*AllocMap{}
	for _, s := range slots {
		cp := a.maps[s].clone()
		var devs []Device
		if f := bySlot[s]; f != nil {
			devs = f.devices
		}
		ch, err := cp.SetDevices(devs)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s, err)
		}
		staged[s] = cp
		changes = append(changes, ch...)
	}
	for s, cp := range staged {
		a.maps[s] = cp
	}
	for s := range a.available {
		if s.DeviceName() == dev {
			if _, known := a.maps[s]; known {
				v, ok := available[s]
				if !ok {
					v = decimal.Zero
				}
				a.available[s] = v
			}
		}
	}
	return changes, ignored, nil
}

// clone copies the map (devices, usage, lost marks).
func (m *AllocMap) clone() *AllocMap {
	cp := *m
	cp.devices = append([]Device{}, m.devices...)
	cp.byID = make(map[DeviceID]int, len(m.byID))
	for k, v := range m.byID {
		cp.byID[k] = v
	}
	cp.used = m.UsedBy()
	cp.gone = make(map[DeviceID]bool, len(m.gone))
	for k, v := range m.gone {
		cp.gone[k] = v
	}
	return &cp
}
