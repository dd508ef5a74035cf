package resource

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// capGPUs builds cuda devices from "id=capacity" pairs.
func capGPUs(slot SlotName, pairs ...string) []Device {
	var out []Device
	for _, p := range pairs {
		id, c, _ := strings.Cut(p, "=")
		out = append(out, Device{ID: DeviceID(id), Slot: slot, Type: SlotCount, Capacity: d(c), NUMANode: -1})
	}
	return out
}

func renderChanges(cs []DeviceChange) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s %s used=%s %s->%s", c.Kind, c.Device, FormatAmount(c.Used), FormatAmount(c.OldCapacity), FormatAmount(c.NewCapacity)))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func newGPUAllocator(t *testing.T, slot SlotName, fractional bool, devs []Device) *Allocator {
	t.Helper()
	m, err := newGPUMap(slot, fractional, devs)
	if err != nil {
		t.Fatal(err)
	}
	return NewAllocator([]*AllocMap{m}, map[SlotName]SlotType{slot: SlotCount}, Slots{slot: m.Capacity()}, []string{"cuda"})
}

func newGPUMap(slot SlotName, fractional bool, devs []Device) (*AllocMap, error) {
	if fractional {
		return NewFractionAllocMap(devs, Fill, Interleaved, d("0.1"))
	}
	return NewAllocMap(devs, Evenly, Interleaved, true)
}

// TestAllocatorUpdateDevices: a rescan never invalidates what kernels
// hold; lost devices are not handed out; returned ones are.
func TestAllocatorUpdateDevices(t *testing.T) {
	for _, tc := range []struct {
		name       string
		slot       SlotName
		fractional bool
		before     []string // id=capacity
		held       []string // requests allocated before the rescan
		after      []string // the rescan's devices (nil: all gone)
		wantChange string
		wantAvail  string
		wantUsed   string
		wantLost   string
		next       string // a request after the rescan
		wantNext   string // its devices, or "insufficient"
		freeHeld   bool   // free the held allocations, rescan again with after
		wantFinal  string // lost devices after that second rescan
	}{
		{
			name: "removed while allocated", slot: "cuda.device",
			before: []string{"gpu-a=1", "gpu-b=1", "gpu-c=1"}, held: []string{"1"},
			after:      []string{"gpu-b=1", "gpu-c=1"},
			wantChange: "removed gpu-a used=1 1->0", wantAvail: "2", wantUsed: "1", wantLost: "gpu-a",
			next: "2", wantNext: "gpu-b:1,gpu-c:1", freeHeld: true, wantFinal: "",
		},
		{
			name: "removed device is not handed out", slot: "cuda.device",
			before: []string{"gpu-a=1", "gpu-b=1"}, held: []string{"1"},
			after:      []string{"gpu-b=1"},
			wantChange: "removed gpu-a used=1 1->0", wantAvail: "1", wantUsed: "1", wantLost: "gpu-a",
			next: "2", wantNext: "insufficient",
		},
		{
			name: "removed unheld is dropped", slot: "cuda.device",
			before:     []string{"gpu-a=1", "gpu-b=1"},
			after:      []string{"gpu-a=1"},
			wantChange: "removed gpu-b used=0 1->0", wantAvail: "1", wantUsed: "0", wantLost: "",
			next: "1", wantNext: "gpu-a:1",
		},
		{
			name: "all gone", slot: "cuda.device",
			before: []string{"gpu-a=1"}, held: []string{"1"},
			after:      nil,
			wantChange: "removed gpu-a used=1 1->0", wantAvail: "0", wantUsed: "1", wantLost: "gpu-a",
			next: "1", wantNext: "insufficient", freeHeld: true, wantFinal: "",
		},
		{
			name: "returned", slot: "cuda.device",
			before: []string{"gpu-a=1", "gpu-b=1"}, held: []string{"2"},
			after:      []string{"gpu-a=1", "gpu-b=1", "gpu-c=1"},
			wantChange: "added gpu-c used=0 0->1", wantAvail: "3", wantUsed: "2", wantLost: "",
			next: "1", wantNext: "gpu-c:1",
		},
		{
			name: "memory shrank under a share", slot: "cuda.shares", fractional: true,
			before: []string{"gpu-a=4", "gpu-b=4"}, held: []string{"3"},
			after:      []string{"gpu-a=2", "gpu-b=4"},
			wantChange: "resized gpu-a used=3 4->2", wantAvail: "6", wantUsed: "3", wantLost: "",
			next: "4", wantNext: "gpu-b:4",
		},
		{
			name: "memory grew", slot: "cuda.shares", fractional: true,
			before: []string{"gpu-a=2"}, held: []string{"2"},
			after:      []string{"gpu-a=5"},
			wantChange: "resized gpu-a used=2 2->5", wantAvail: "5", wantUsed: "2", wantLost: "",
			next: "3", wantNext: "gpu-a:3",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newGPUAllocator(t, tc.slot, tc.fractional, capGPUs(tc.slot, tc.before...))
			var held []Allocation
			for _, r := range tc.held {
				al, err := a.Allocate(Slots{tc.slot: d(r)})
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, al)
			}
			rescan := func() []DeviceChange {
				t.Helper()
				var fresh []*AllocMap
				avail := Slots{}
				if tc.after != nil {
					m, err := newGPUMap(tc.slot, tc.fractional, capGPUs(tc.slot, tc.after...))
					if err != nil {
						t.Fatal(err)
					}
					fresh = append(fresh, m)
					avail[tc.slot] = m.Capacity()
				}
				ch, ignored, err := a.UpdateDevices("cuda", fresh, avail)
				if err != nil || len(ignored) != 0 {
					t.Fatalf("UpdateDevices: %v (ignored %v)", err, ignored)
				}
				return ch
			}
			if got := renderChanges(rescan()); got != tc.wantChange {
				t.Errorf("changes %q, want %q", got, tc.wantChange)
			}
			if got := FormatAmount(a.Available()[tc.slot]); got != tc.wantAvail {
				t.Errorf("available %s, want %s", got, tc.wantAvail)
			}
			if got := FormatAmount(a.Used()[tc.slot]); got != tc.wantUsed {
				t.Errorf("used %s, want %s", got, tc.wantUsed)
			}
			if got := lostOf(a, tc.slot); got != tc.wantLost {
				t.Errorf("lost %q, want %q", got, tc.wantLost)
			}
			// A second identical rescan reports nothing new.
			if got := renderChanges(rescan()); got != "" {
				t.Errorf("second rescan: changes %q, want none", got)
			}
			al, err := a.Allocate(Slots{tc.slot: d(tc.next)})
			switch {
			case tc.wantNext == "insufficient":
				if !errors.Is(err, ErrInsufficient) {
					t.Fatalf("next allocation: %v %v, want insufficient", al, err)
				}
			case err != nil:
				t.Fatalf("next allocation: %v", err)
			default:
				if got := render(al[tc.slot]); got != tc.wantNext {
					t.Fatalf("next allocation got %s, want %s", got, tc.wantNext)
				}
				a.Free(al)
			}
			if tc.freeHeld {
				for _, h := range held {
					a.Free(h)
				}
				rescan()
				if got := lostOf(a, tc.slot); got != tc.wantFinal {
					t.Errorf("lost after free %q, want %q", got, tc.wantFinal)
				}
				if u := a.Used()[tc.slot]; !u.IsZero() {
					t.Errorf("used after free %s", u)
				}
			}
		})
	}
}

func lostOf(a *Allocator, s SlotName) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []string
	for _, id := range a.maps[s].Lost() {
		ids = append(ids, string(id))
	}
	return strings.Join(ids, ",")
}

// TestAllocatorReturnedDevice: a device lost while held comes back with
// its holder's amount still counted; freed, it is allocatable again.
func TestAllocatorReturnedDevice(t *testing.T) {
	const slot SlotName = "cuda.device"
	a := newGPUAllocator(t, slot, false, capGPUs(slot, "gpu-a=1", "gpu-b=1"))
	held, err := a.Allocate(Slots{slot: d("1")}) // gpu-a (ids break the tie)
	if err != nil {
		t.Fatal(err)
	}
	update := func(pairs ...string) string {
		m, err := newGPUMap(slot, false, capGPUs(slot, pairs...))
		if err != nil {
			t.Fatal(err)
		}
		ch, _, err := a.UpdateDevices("cuda", []*AllocMap{m}, Slots{slot: m.Capacity()})
		if err != nil {
			t.Fatal(err)
		}
		return renderChanges(ch)
	}
	if got := update("gpu-b=1"); got != "removed gpu-a used=1 1->0" {
		t.Fatalf("removal: %s", got)
	}
	if got := update("gpu-a=1", "gpu-b=1"); got != "returned gpu-a used=1 0->1" {
		t.Fatalf("return: %s", got)
	}
	if _, err := a.Allocate(Slots{slot: d("2")}); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("gpu-a is still held: want insufficient, got %v", err)
	}
	a.Free(held)
	al, err := a.Allocate(Slots{slot: d("2")})
	if err != nil {
		t.Fatal(err)
	}
	if got := render(al[slot]); got != "gpu-a:1,gpu-b:1" {
		t.Fatalf("after return: %s", got)
	}
}

// TestAllocatorUpdateDevicesRefuses: a scan of the wrong device name or a
// duplicate id changes nothing; a slot unknown at start is not adopted.
func TestAllocatorUpdateDevicesRefuses(t *testing.T) {
	const slot SlotName = "cuda.device"
	a := newGPUAllocator(t, slot, false, capGPUs(slot, "gpu-a=1"))
	other, _ := NewAllocMap(capGPUs("rocm.device", "r0=1"), Evenly, Interleaved, true)
	if _, _, err := a.UpdateDevices("cuda", []*AllocMap{other}, nil); err == nil {
		t.Fatal("a rocm map in a cuda rescan was accepted")
	}
	mig, _ := NewAllocMap(capGPUs("cuda.device:1g.10gb-mig", "MIG-x=1"), Evenly, Interleaved, true)
	same, _ := NewAllocMap(capGPUs(slot, "gpu-a=1"), Evenly, Interleaved, true)
	_, ignored, err := a.UpdateDevices("cuda", []*AllocMap{same, mig}, Slots{slot: d("1"), "cuda.device:1g.10gb-mig": d("1")})
	if err != nil || len(ignored) != 1 || ignored[0] != "cuda.device:1g.10gb-mig" {
		t.Fatalf("new slot: ignored %v err %v", ignored, err)
	}
	if _, ok := a.Available()["cuda.device:1g.10gb-mig"]; ok {
		t.Fatal("an unknown slot became available")
	}
	m := a.maps[slot]
	if _, err := m.SetDevices(append(capGPUs(slot, "gpu-b=1"), capGPUs(slot, "gpu-b=1")...)); err == nil {
		t.Fatal("duplicate ids accepted")
	}
	if got := len(m.Devices()); got != 1 || m.Devices()[0].ID != "gpu-a" {
		t.Fatalf("a refused SetDevices changed the map: %v", m.Devices())
	}
}
