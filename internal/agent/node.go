// Node resources outside a kernel's own: session networks, host ports
// handed to the manager, and the accelerator allocation map.

package agent

import (
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/shopspring/decimal"
)

// AssignPort takes a host port, skipping the reuse cooldown.
func (a *Agent) AssignPort() (int, error) {
	p, err := a.ports.TakeNoCooldown(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

// ReleasePort returns a port taken with AssignPort.
func (a *Agent) ReleasePort(p int) { a.ports.Release(p) }

// ScanGPUAllocMap sums cuda.device and cuda.shares per device over the
// live kernels.
func (a *Agent) ScanGPUAllocMap() map[string]string {
	sum := map[resource.DeviceID]decimal.Decimal{}
	for _, k := range a.Kernels() {
		ks := k.Spec()
		if ks == nil {
			continue // still being created: its allocation is not final
		}
		for _, s := range []resource.SlotName{"cuda.device", "cuda.shares"} {
			for id, v := range ks.Allocation[s] {
				sum[id] = sum[id].Add(v)
			}
		}
	}
	out := map[string]string{}
	for id, v := range sum {
		out[string(id)] = resource.FormatAmount(v)
	}
	return out
}
