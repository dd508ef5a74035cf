package resource

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func cores(n int, capacity string, numa func(i int) int) []Device {
	var out []Device
	for i := 0; i < n; i++ {
		out = append(out, Device{ID: DeviceID(fmt.Sprint(i)), Slot: "cpu", Type: SlotCount, Capacity: d(capacity), NUMANode: numa(i)})
	}
	return out
}

func render(per map[DeviceID]decimal.Decimal) string {
	a := Allocation{"x": per}
	var parts []string
	for _, id := range a.Devices("x") {
		parts = append(parts, fmt.Sprintf("%s:%s", id, FormatAmount(per[id])))
	}
	return strings.Join(parts, ",")
}

func TestAllocMapStrategies(t *testing.T) {
	one := func(int) int { return 0 }
	twoNodes := func(i int) int { return i / 4 } // 0-3 node 0, 4-7 node 1
	for _, tc := range []struct {
		name     string
		devs     []Device
		strategy Strategy
		policy   AffinityPolicy
		reqs     []string
		want     []string
	}{
		{"evenly spreads", cores(4, "1", one), Evenly, Interleaved, []string{"2", "1"}, []string{"0:1,1:1", "2:1"}},
		{"evenly overcommit spreads before stacking", cores(2, "4", one), Evenly, Interleaved, []string{"3", "1"}, []string{"0:2,1:1", "1:1"}},
		{"fill packs", cores(4, "2", one), Fill, Interleaved, []string{"3"}, []string{"0:2,1:1"}},
		{"interleaved alternates nodes", cores(8, "1", twoNodes), Evenly, Interleaved, []string{"4"}, []string{"0:1,1:1,4:1,5:1"}},
		{"prefer single node", cores(8, "1", twoNodes), Evenly, PreferSingleNode, []string{"3", "3"}, []string{"0:1,1:1,2:1", "4:1,5:1,6:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewAllocMap(tc.devs, tc.strategy, tc.policy, true)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range tc.reqs {
				per, err := m.Allocate(d(r))
				if err != nil {
					t.Fatal(err)
				}
				if got := render(per); got != tc.want[i] {
					t.Fatalf("request %d (%s): got %s, want %s", i, r, got, tc.want[i])
				}
			}
		})
	}
}

func TestAllocMapErrors(t *testing.T) {
	m, _ := NewAllocMap(cores(2, "1", func(int) int { return 0 }), Evenly, Interleaved, true)
	if _, err := m.Allocate(d("0.5")); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("fractional cpu: %v", err)
	}
	if _, err := m.Allocate(d("3")); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("over capacity: %v", err)
	} else if !strings.Contains(err.Error(), "requested 3, free 2 of 2") {
		t.Fatalf("message: %v", err)
	}
	if m.Used().Sign() != 0 {
		t.Fatal("failed allocation changed the map")
	}
}

func newTestAllocator(t *testing.T, reservedCPU string) *Allocator {
	t.Helper()
	cpu, _ := NewAllocMap(cores(4, "1", func(int) int { return 0 }), Evenly, Interleaved, true)
	mem, _ := NewAllocMap([]Device{{ID: "root", Slot: "mem", Type: SlotBytes, Capacity: d("1073741824"), NUMANode: -1}}, Fill, Interleaved, true)
	avail := Slots{"cpu": d("4").Sub(d(reservedCPU)), "mem": d("1073741824")}
	return NewAllocator([]*AllocMap{mem, cpu}, map[SlotName]SlotType{"cpu": SlotCount, "mem": SlotBytes}, avail, []string{"cuda", "cpu", "mem"})
}

func TestAllocatorAllOrNothing(t *testing.T) {
	a := newTestAllocator(t, "0")
	// cpu fits, mem does not: the cpu part must be rolled back.
	_, err := a.Allocate(Slots{"cpu": d("2"), "mem": d("2147483648")})
	var ie *InsufficientError
	if !errors.As(err, &ie) || ie.Slot != "mem" {
		t.Fatalf("got %v", err)
	}
	if used := a.Used(); !used["cpu"].IsZero() || !used["mem"].IsZero() {
		t.Fatalf("partial state left behind: %v", used)
	}
	alloc, err := a.Allocate(Slots{"cpu": d("2"), "mem": d("268435456")})
	if err != nil {
		t.Fatal(err)
	}
	a.Free(alloc)
	if used := a.Used(); !used["cpu"].IsZero() || !used["mem"].IsZero() {
		t.Fatalf("free left usage: %v", used)
	}
}

func TestAllocatorReserveCapsAdvertised(t *testing.T) {
	a := newTestAllocator(t, "1")
	if _, err := a.Allocate(Slots{"cpu": d("4")}); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("reserved core handed out: %v", err)
	}
	if _, err := a.Allocate(Slots{"cpu": d("3")}); err != nil {
		t.Fatal(err)
	}
}

func TestNormalize(t *testing.T) {
	a := newTestAllocator(t, "0")
	got, err := a.Normalize(map[string]string{"cpu": "1", "cuda.device": "0"})
	if err != nil {
		t.Fatal(err)
	}
	if !got["mem"].IsZero() || !got["cpu"].Equal(d("1")) {
		t.Fatalf("got %v", got)
	}
	if _, ok := got["cuda.device"]; ok {
		t.Fatal("zero unknown slot kept")
	}
	if _, err := a.Normalize(map[string]string{"cpu": "1", "cuda.device": "1"}); !errors.Is(err, ErrUnsupportedResource) {
		t.Fatalf("unknown slot: %v", err)
	}
	if got, err := a.Normalize(map[string]string{"mem": "4g"}); err != nil || !got["mem"].Equal(d("4294967296")) {
		t.Fatalf("bytes suffix: %v %v", got, err)
	}
}

func TestSpecRoundTrip(t *testing.T) {
	types := map[SlotName]SlotType{"cpu": SlotCount, "mem": SlotBytes}
	s := &Spec{
		Slots:       Slots{"cpu": d("2"), "mem": d("268435456")},
		Allocation:  Allocation{"cpu": {"0": d("1"), "3": d("1")}, "mem": {"root": d("268435456")}},
		ScratchSize: 0,
		Mounts:      []Mount{{Source: "/vf/data1", Target: "/home/work/data1", Perm: PermRO}},
	}
	text := string(s.Marshal(types))
	want := "SCRATCH_SIZE=0m\nMOUNTS=/vf/data1:/home/work/data1:ro\nSLOTS={\"cpu\": \"2\", \"mem\": \"268435456\"}\nUNIFIED_DEVICES=[]\nCPU_SHARES=0:1,3:1\nMEM_SHARES=root:256m\n"
	if text != want {
		t.Fatalf("got\n%s\nwant\n%s", text, want)
	}
	s.ContainerID = "abc"
	back, err := ParseSpec(s.Marshal(types), types)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s.Allocation, back.Allocation, cmp.Comparer(func(a, b decimal.Decimal) bool { return a.Equal(b) })); diff != "" {
		t.Fatal(diff)
	}
	if back.ContainerID != "abc" || len(back.Mounts) != 1 || back.Mounts[0] != s.Mounts[0] {
		t.Fatalf("got %+v", back)
	}
}

// A resource.txt written by the Python agent (CID first, as its
// write_to_string does) reads back.
func TestParsePythonSpec(t *testing.T) {
	py := "CID=0123abcd\nSCRATCH_SIZE=1024m\nMOUNTS=\nSLOTS={\"cpu\": \"1\", \"mem\": \"1073741824\", \"cuda.device\": \"0\"}\nCPU_SHARES=1:1\nMEM_SHARES=root:1g\n"
	s, err := ParseSpec([]byte(py), map[SlotName]SlotType{"cpu": SlotCount, "mem": SlotBytes})
	if err != nil {
		t.Fatal(err)
	}
	if s.ContainerID != "0123abcd" || s.ScratchSize != 1<<30 || !s.Allocation["mem"]["root"].Equal(d("1073741824")) || !s.Allocation["cpu"]["1"].Equal(d("1")) {
		t.Fatalf("got %+v", s)
	}
}

func gpus(slot SlotName, typ SlotType, capacity string, numa ...int) []Device {
	var out []Device
	for i, n := range numa {
		out = append(out, Device{ID: DeviceID(fmt.Sprintf("g%d", i)), Slot: slot, Type: typ, Capacity: d(capacity), NUMANode: n})
	}
	return out
}

func TestAcceleratorAllocRules(t *testing.T) {
	mustMap := func(m *AllocMap, err error) *AllocMap {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	newAlloc := func() *Allocator {
		dev := mustMap(NewAllocMap(gpus("cuda.device", SlotCount, "1", 0, 1), Evenly, PreferSingleNode, true))
		mig := mustMap(NewAllocMap(gpus("cuda.device:1g.10gb-mig", SlotUnique, "1", 0, 0), Evenly, PreferSingleNode, true))
		cpu := mustMap(NewAllocMap(cores(4, "1", func(i int) int { return i / 2 }), Evenly, PreferSingleNode, true))
		types := map[SlotName]SlotType{"cuda.device": SlotCount, "cuda.device:1g.10gb-mig": SlotUnique, "cpu": SlotCount}
		avail := Slots{"cuda.device": d("2"), "cuda.device:1g.10gb-mig": d("2"), "cpu": d("4")}
		a := NewAllocator([]*AllocMap{dev, mig, cpu}, types, avail, []string{"cuda", "cpu", "mem"})
		a.SetExclusive("cuda", []string{"cuda.device:*-mig", "cuda.device", "cuda.shares"})
		return a
	}
	for _, tc := range []struct {
		name    string
		req     Slots
		wantErr error
		check   func(t *testing.T, got Allocation)
	}{
		{"unique slot takes exactly one", Slots{"cuda.device:1g.10gb-mig": d("2")}, ErrInvalidArgument, nil},
		{"unique slot one", Slots{"cuda.device:1g.10gb-mig": d("1")}, nil, func(t *testing.T, got Allocation) {
			if len(got.Devices("cuda.device:1g.10gb-mig")) != 1 {
				t.Fatalf("got %v", got)
			}
		}},
		{"whole GPU and MIG slice exclude each other", Slots{"cuda.device": d("1"), "cuda.device:1g.10gb-mig": d("1")}, ErrInvalidCombination, nil},
		{"zero of an exclusive slot is not a request", Slots{"cuda.device": d("1"), "cuda.device:1g.10gb-mig": d("0")}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAlloc()
			got, err := a.Allocate(tc.req)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				if used := a.Used(); !used["cuda.device"].IsZero() || !used["cuda.device:1g.10gb-mig"].IsZero() {
					t.Fatalf("failed request left %v", used)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}

	t.Run("affinity follows the GPU's node", func(t *testing.T) {
		a := newAlloc()
		first, err := a.Allocate(Slots{"cuda.device": d("1")})
		if err != nil || render(first["cuda.device"]) != "g0:1" {
			t.Fatalf("first GPU %v %v", first, err)
		}
		got, err := a.Allocate(Slots{"cuda.device": d("1"), "cpu": d("2")})
		if err != nil {
			t.Fatal(err)
		}
		if render(got["cuda.device"]) != "g1:1" || render(got["cpu"]) != "2:1,3:1" {
			t.Fatalf("GPU g1 is on node 1, its cores should be 2,3: %v", got)
		}
	})
}

func TestFractionAllocMap(t *testing.T) {
	m, err := NewFractionAllocMap(gpus("cuda.shares", SlotCount, "13.5", 0, 1), Evenly, Interleaved, d("0.1"))
	if err != nil {
		t.Fatal(err)
	}
	per, err := m.Allocate(d("0.55"))
	if err != nil {
		t.Fatal(err)
	}
	if got := (Allocation{"s": per}).Total("s"); !got.Equal(d("0.5")) {
		t.Fatalf("0.55 at quantum 0.1 gave %s, want 0.5 (rounded down)", got)
	}
	if _, err := m.Allocate(d("0.05")); !errors.Is(err, ErrNotMultipleOfQuantum) || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("0.05 below the quantum: %v", err)
	}
	for _, bad := range []string{"0", "-1", "0.0001"} {
		if _, err := NewFractionAllocMap(nil, Evenly, Interleaved, d(bad)); err == nil {
			t.Errorf("quantum %s accepted", bad)
		}
	}
}
