package device

import (
	"testing"

	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/shopspring/decimal"
)

func TestParseCPUList(t *testing.T) {
	got, err := ParseCPUList("0-2,5,7-8")
	if err != nil || len(got) != 6 || got[3] != 5 || got[5] != 8 {
		t.Fatalf("got %v %v", got, err)
	}
	for _, bad := range []string{"a", "3-1", "1-x"} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestOvercommitFactor(t *testing.T) {
	env := map[string]string{"A": "4", "B": "0.5", "C": "11", "D": "x"}
	get := func(k string) string { return env[k] }
	if f, err := OvercommitFactor("A", get); err != nil || !f.Equal(decimal.NewFromInt(4)) {
		t.Fatalf("A: %v %v", f, err)
	}
	if f, err := OvercommitFactor("unset", get); err != nil || !f.Equal(decimal.NewFromInt(1)) {
		t.Fatalf("unset: %v %v", f, err)
	}
	for _, k := range []string{"B", "C", "D"} {
		if _, err := OvercommitFactor(k, get); err == nil {
			t.Errorf("%s accepted", k)
		}
	}
}

func TestIntrinsicPlugins(t *testing.T) {
	h := Host{Cores: []int{0, 1}, NUMANode: map[int]int{0: 0, 1: 0}, MemTotal: 4 << 30}
	cpu, err := NewCPUPlugin(h, decimal.NewFromInt(4), 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := cpu.Available()["cpu"]; !got.Equal(decimal.NewFromInt(7)) {
		t.Fatalf("cpu available %s, want 7 (2 cores x 4 - 1)", got)
	}
	mem, err := NewMemPlugin(h, decimal.NewFromInt(2), 1<<30, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := mem.Available()["mem"]; !got.Equal(decimal.NewFromInt(7 << 30)) {
		t.Fatalf("mem available %s", got)
	}
	alloc := resource.Allocation{"cpu": {"1": decimal.NewFromInt(1), "0": decimal.NewFromInt(2)}, "mem": {"root": decimal.NewFromInt(1 << 28)}}
	if r := cpu.Reserve(alloc); r.CpusetCpus != "0,1" {
		t.Fatalf("cpuset %q", r.CpusetCpus)
	}
	if r := mem.Reserve(alloc); r.Memory != 1<<28 {
		t.Fatalf("memory %d", r.Memory)
	}
	if _, err := NewCPUPlugin(Host{Cores: []int{0}}, decimal.NewFromInt(1), 1, ""); err == nil {
		t.Fatal("zero cpu accepted")
	}
	if _, err := NewCPUPlugin(h, decimal.RequireFromString("1.5"), 0, ""); err == nil {
		t.Fatal("fractional cpu overcommit accepted")
	}
}
