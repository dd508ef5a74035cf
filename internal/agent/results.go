package agent

import (
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

func (a *Agent) attachedDevices(alloc resource.Allocation) map[string]any {
	out := map[string]any{}
	for _, p := range a.plugins {
		var devs []any
		for _, d := range p.AttachedDevices(alloc) {
			devs = append(devs, map[string]any{"device_id": d.DeviceID, "model_name": d.ModelName, "data": d.Data})
		}
		if devs == nil {
			devs = []any{}
		}
		out[string(p.Key())] = devs
	}
	return out
}

// resourceSpecWire is KernelResourceSpec.to_json_serializable_dict().
func (a *Agent) resourceSpecWire(k *Kernel) map[string]any {
	slots := map[string]any{}
	for s, v := range k.Spec.Slots {
		slots[string(s)] = resource.FormatAmount(v)
	}
	allocs := map[string]any{}
	for s, per := range k.Allocation {
		devName := string(s.DeviceName())
		dm, _ := allocs[devName].(map[string]any)
		if dm == nil {
			dm = map[string]any{}
			allocs[devName] = dm
		}
		pd := map[string]any{}
		for id, v := range per {
			pd[string(id)] = resource.FormatAmount(v)
		}
		dm[string(s)] = pd
	}
	ms := make([]any, len(k.Spec.Mounts))
	for i, m := range k.Spec.Mounts {
		ms[i] = m.String()
	}
	return map[string]any{"container_id": k.ContainerID(), "slots": slots, "allocations": allocs, "scratch_disk_size": k.Spec.ScratchSize, "mounts": ms}
}

func (a *Agent) kernelInfo(k *Kernel) *KernelInfo {
	return &KernelInfo{
		ID:              k.ID,
		KernelHost:      a.kernelHost(),
		ReplInPort:      k.ReplIn,
		ReplOutPort:     k.ReplOut,
		ServicePorts:    publicServices(k.Services),
		ContainerID:     k.ContainerID(),
		ResourceSpec:    a.resourceSpecWire(k),
		AttachedDevices: a.attachedDevices(k.Allocation),
		AgentAddr:       k.Config.AgentAddr,
		ScalingGroup:    k.Config.ScalingGroup,
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
func (a *Agent) creationInfo(k *Kernel) event.CreationInfo {
	units := map[string]map[string]event.UsedDevice{}
	for _, p := range a.plugins {
		per := map[string]event.UsedDevice{}
		for _, s := range p.Slots() {
			for id, v := range k.Allocation[s.Name] {
				if !v.IsPositive() {
					continue
				}
				u, ok := per[string(id)]
				if !ok {
					u = event.UsedDevice{Used: map[string]string{}}
				}
				u.Used[string(s.Name)] = resource.FormatAmount(v)
				per[string(id)] = u
			}
		}
		units[string(p.Key())] = per
	}
	sp := make([]event.ServicePortInfo, 0)
	for _, s := range publicServices(k.Services) {
		sp = append(sp, event.ServicePortInfo(s))
	}
	return event.CreationInfo{
		ContainerID: k.ContainerID(), KernelHost: a.kernelHost(), ReplInPort: k.ReplIn, ReplOutPort: k.ReplOut,
		ServicePorts: sp, UsedDevices: event.UsedDevices{Units: units},
	}
}
