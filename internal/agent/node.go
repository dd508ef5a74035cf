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
	a.assignedMu.Lock()
	a.assigned[p[0]] = true
	a.assignedMu.Unlock()
	return p[0], nil
}

// ReleasePort returns a port taken with AssignPort that no kernel claimed;
// any other port (a kernel's) is left alone: releasing it would hand it to
// the next kernel while its owner still holds it.
func (a *Agent) ReleasePort(p int) {
	if a.claimAssigned(p) {
		a.ports.Release(p)
		return
	}
	a.log.Warn("release_port of a port not assigned or already a kernel's: ignored", "port", p)
}

// claimAssigned makes an assigned, unclaimed port the caller's: true once
// per AssignPort. A creation adopts only such ports (the manager's
// allocated host ports, its cluster sshd port); naming another kernel's
// port must not make it this kernel's, released on its undo or destroy.
func (a *Agent) claimAssigned(p int) bool {
	a.assignedMu.Lock()
	defer a.assignedMu.Unlock()
	if !a.assigned[p] {
		return false
	}
	delete(a.assigned, p)
	return true
}

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
