package device

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/shopspring/decimal"
)

// Version is reported as the intrinsic plugins' version.
const Version = "bai-agent-intrinsic/1"

// CPUPlugin offers slot "cpu": one device per usable core, each with
// capacity = the CPU overcommit factor, allocated EVENLY.
type CPUPlugin struct {
	host     Host
	factor   decimal.Decimal
	reserved int
	strategy resource.Strategy
}

// NewCPUPlugin builds the CPU plugin. factor must be a whole number,
// because cores are allocated in whole units.
func NewCPUPlugin(h Host, factor decimal.Decimal, reserved int, strategy resource.Strategy) (*CPUPlugin, error) {
	if !factor.IsInteger() {
		return nil, fmt.Errorf("BACKEND_CPU_OVERCOMMIT_FACTOR must be a whole number for CPU cores, got %s", factor)
	}
	if strategy == "" {
		strategy = resource.Evenly
	}
	p := &CPUPlugin{host: h, factor: factor, reserved: reserved, strategy: strategy}
	if !p.Available()["cpu"].IsPositive() {
		return nil, fmt.Errorf("no CPU left to offer: %d cores x %s overcommit - %d reserved", len(h.Cores), factor, reserved)
	}
	return p, nil
}

// Key implements Plugin.
func (p *CPUPlugin) Key() resource.DeviceName { return "cpu" }

// Slots implements Plugin.
func (p *CPUPlugin) Slots() []resource.SlotInfo {
	return []resource.SlotInfo{{Name: "cpu", Type: resource.SlotCount}}
}

// AllocMaps implements Plugin.
func (p *CPUPlugin) AllocMaps(policy resource.AffinityPolicy) ([]*resource.AllocMap, error) {
	var devs []resource.Device
	for _, c := range p.host.Cores {
		numa, ok := p.host.NUMANode[c]
		if !ok {
			numa = -1
		}
		devs = append(devs, resource.Device{ID: resource.DeviceID(strconv.Itoa(c)), Slot: "cpu", Type: resource.SlotCount, Capacity: p.factor, NUMANode: numa})
	}
	m, err := resource.NewAllocMap(devs, p.strategy, policy, true)
	if err != nil {
		return nil, err
	}
	return []*resource.AllocMap{m}, nil
}

// Available implements Plugin.
func (p *CPUPlugin) Available() resource.Slots {
	total := decimal.NewFromInt(int64(len(p.host.Cores))).Mul(p.factor)
	return resource.Slots{"cpu": total.Sub(decimal.NewFromInt(int64(p.reserved)))}
}

// Reserve implements Plugin: the container is pinned to the allocated
// cores.
func (p *CPUPlugin) Reserve(alloc resource.Allocation) Reservation {
	ids := alloc.Devices("cpu")
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = string(id)
	}
	return Reservation{CpusetCpus: strings.Join(parts, ",")}
}

// CoreCount is the number of distinct cores a kernel got.
func CoreCount(alloc resource.Allocation) int { return len(alloc.Devices("cpu")) }

// AttachedDevices implements Plugin.
func (p *CPUPlugin) AttachedDevices(alloc resource.Allocation) []AttachedDevice {
	var out []AttachedDevice
	for _, id := range alloc.Devices("cpu") {
		n := alloc["cpu"][id]
		out = append(out, AttachedDevice{DeviceID: string(id), ModelName: "", Data: map[string]any{"cores": resource.FormatAmount(n)}})
	}
	return out
}

// Version implements Plugin.
func (p *CPUPlugin) Version() string { return Version }

// Metadata implements Plugin (computer.metadata "cpu").
func (p *CPUPlugin) Metadata() map[string]any {
	return map[string]any{
		"slot_name": "cpu", "description": "CPU", "human_readable_name": "CPU", "display_unit": "Core",
		"number_format": map[string]any{"binary": false, "round_length": 0}, "display_icon": "cpu",
	}
}

// HWInfo implements Plugin.
func (p *CPUPlugin) HWInfo() map[string]string {
	return map[string]string{"cores": strconv.Itoa(len(p.host.Cores)), "overcommit_factor": p.factor.String(), "arch": runtime.GOARCH}
}

// MemPlugin offers slot "mem": one device "root" of factor x total RAM,
// allocated FILL.
type MemPlugin struct {
	host     Host
	factor   decimal.Decimal
	reserved int64
	align    int64
}

// NewMemPlugin builds the memory plugin.
func NewMemPlugin(h Host, factor decimal.Decimal, reserved, align int64) (*MemPlugin, error) {
	p := &MemPlugin{host: h, factor: factor, reserved: reserved, align: align}
	if !p.Available()["mem"].IsPositive() {
		return nil, fmt.Errorf("no memory left to offer: %d bytes x %s overcommit - %d reserved", h.MemTotal, factor, reserved)
	}
	return p, nil
}

func (p *MemPlugin) capacity() decimal.Decimal {
	return decimal.NewFromInt(p.host.MemTotal).Mul(p.factor).Floor()
}

// Key implements Plugin.
func (p *MemPlugin) Key() resource.DeviceName { return "mem" }

// Slots implements Plugin.
func (p *MemPlugin) Slots() []resource.SlotInfo {
	return []resource.SlotInfo{{Name: "mem", Type: resource.SlotBytes}}
}

// AllocMaps implements Plugin.
func (p *MemPlugin) AllocMaps(policy resource.AffinityPolicy) ([]*resource.AllocMap, error) {
	m, err := resource.NewAllocMap([]resource.Device{{ID: "root", Slot: "mem", Type: resource.SlotBytes, Capacity: p.capacity(), NUMANode: -1}}, resource.Fill, policy, true)
	if err != nil {
		return nil, err
	}
	return []*resource.AllocMap{m}, nil
}

// Available implements Plugin: capacity minus the reserve, aligned down to
// memory-align-size (the remainder joins the reserve).
func (p *MemPlugin) Available() resource.Slots {
	avail := p.capacity().IntPart() - p.reserved
	if p.align > 0 {
		avail -= avail % p.align
	}
	if avail < 0 {
		avail = 0
	}
	return resource.Slots{"mem": decimal.NewFromInt(avail)}
}

// Reserve implements Plugin: Memory = MemorySwap = the allocation.
func (p *MemPlugin) Reserve(alloc resource.Allocation) Reservation {
	return Reservation{Memory: alloc.Total("mem").IntPart()}
}

// AttachedDevices implements Plugin.
func (p *MemPlugin) AttachedDevices(alloc resource.Allocation) []AttachedDevice {
	var out []AttachedDevice
	for _, id := range alloc.Devices("mem") {
		out = append(out, AttachedDevice{DeviceID: string(id), ModelName: "", Data: map[string]any{"mem": resource.FormatAmount(alloc["mem"][id])}})
	}
	return out
}

// Version implements Plugin.
func (p *MemPlugin) Version() string { return Version }

// Metadata implements Plugin (computer.metadata "ram").
func (p *MemPlugin) Metadata() map[string]any {
	return map[string]any{
		"slot_name": "ram", "description": "Memory", "human_readable_name": "RAM", "display_unit": "GiB",
		"number_format": map[string]any{"binary": true, "round_length": 0}, "display_icon": "ram",
	}
}

// HWInfo implements Plugin.
func (p *MemPlugin) HWInfo() map[string]string {
	return map[string]string{"total": strconv.FormatInt(p.host.MemTotal, 10), "overcommit_factor": p.factor.String()}
}
