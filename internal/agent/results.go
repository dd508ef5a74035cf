package agent

import (
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/resource"
)

func (a *Agent) kernelHost() string {
	if a.khost != "" {
		return a.khost
	}
	if a.cfg.Container.AdvertisedHost != "" {
		return a.cfg.Container.AdvertisedHost
	}
	if a.cfg.Container.BindHost != "" && a.cfg.Container.BindHost != "0.0.0.0" {
		return a.cfg.Container.BindHost
	}
	if h := a.cfg.Agent.RPCListenAddr.Host; h != "" && h != "0.0.0.0" {
		return h
	}
	return "127.0.0.1"
}

func (a *Agent) attachedDevices(alloc resource.Allocation) map[string][]device.AttachedDevice {
	out := map[string][]device.AttachedDevice{}
	for _, p := range a.plugins {
		out[string(p.Key())] = p.AttachedDevices(alloc)
	}
	return out
}

func (a *Agent) kernelInfo(k *Kernel, ks *KernelSpec) *KernelInfo {
	return &KernelInfo{
		ID:           k.ID,
		KernelHost:   a.kernelHost(),
		ReplInPort:   ks.ReplIn,
		ReplOutPort:  ks.ReplOut,
		ServicePorts: publicServices(ks.Services),
		ContainerID:  ks.ContainerID,
		Spec:         ks.Resources,
		Attached:     a.attachedDevices(ks.Allocation),
		AgentAddr:    ks.Config.AgentAddr,
		ScalingGroup: ks.Config.ScalingGroup,
	}
}

func publicServices(sp []image.ServicePort) []image.ServicePort {
	var out []image.ServicePort
	for _, s := range sp {
		if s.Protocol != "internal" {
			out = append(out, s)
		}
	}
	return out
}

// creationInfo is kernel_started's KernelCreationInfo. Intrinsic slots
// (cpu, mem) carry null model/processing/memory figures, as upstream's
// UsedDevice.from_model_info without a device model.
func (a *Agent) creationInfo(ks *KernelSpec) event.CreationInfo {
	units := map[string]map[string]event.UsedDevice{}
	for _, p := range a.plugins {
		// The model figures come from the plugin's attached devices, as
		// upstream's UsedDevices.from_allocations: processing_units from
		// data["proc"] (null for GPUs, which send "smp"), memory_size
		// from data["mem"].
		models := map[string]device.AttachedDevice{}
		if _, isAcc := p.(device.Accelerator); isAcc {
			for _, ad := range p.AttachedDevices(ks.Allocation) {
				models[ad.DeviceID] = ad
			}
		}
		per := map[string]event.UsedDevice{}
		for _, s := range p.Slots() {
			for id, v := range ks.Allocation[s.Name] {
				if !v.IsPositive() {
					continue
				}
				u, ok := per[string(id)]
				if !ok {
					u = event.UsedDevice{Used: map[string]string{}}
					if ad, ok := models[string(id)]; ok {
						name := ad.ModelName
						u.ModelName = &name
						if v, ok := device.Int64(ad.Data["proc"]); ok {
							u.ProcessingUnits = &v
						}
						if v, ok := device.Int64(ad.Data["mem"]); ok {
							u.MemorySize = &v
						}
					}
				}
				u.Used[string(s.Name)] = resource.FormatAmount(v)
				per[string(id)] = u
			}
		}
		units[string(p.Key())] = per
	}
	sp := make([]event.ServicePortInfo, 0)
	for _, s := range publicServices(ks.Services) {
		sp = append(sp, event.ServicePortInfo(s))
	}
	return event.CreationInfo{
		ContainerID: ks.ContainerID, KernelHost: a.kernelHost(), ReplInPort: ks.ReplIn, ReplOutPort: ks.ReplOut,
		ServicePorts: sp, UsedDevices: event.UsedDevices{Units: units},
	}
}

// KernelHost is the address a kernel's service ports are dialled at.
func (a *Agent) KernelHost() string { return a.kernelHost() }
