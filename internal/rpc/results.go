package rpc

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// The core returns typed results; this file renders them as the Python
// agent's dicts. legacy (agent.manager-compat = "26.8.1", decided by
// config.AgentConfig.LegacyWire) swaps the decimal strings for pickled
// Decimals and ResourceSlots, as those managers expect.

// kernelInfoWire is one element of create_kernels' result list.
func kernelInfoWire(k *agent.KernelInfo, legacy bool) map[string]any {
	sp := make([]any, 0, len(k.ServicePorts))
	for _, p := range k.ServicePorts {
		sp = append(sp, servicePortWire(p))
	}
	return map[string]any{
		"id":               k.ID,
		"kernel_host":      k.KernelHost,
		"repl_in_port":     k.ReplInPort,
		"repl_out_port":    k.ReplOutPort,
		"stdin_port":       0,
		"stdout_port":      0,
		"service_ports":    sp,
		"container_id":     k.ContainerID,
		"resource_spec":    resourceSpecWire(k.Spec, k.ContainerID, legacy),
		"attached_devices": attachedDevicesWire(k.Attached),
		"agent_addr":       k.AgentAddr,
		"scaling_group":    k.ScalingGroup,
	}
}

func servicePortWire(p image.ServicePort) map[string]any {
	return event.ServicePortInfo(p).Wire()
}

// resourceSpecWire is KernelResourceSpec.to_json_serializable_dict():
// amounts as decimal strings, or (legacy) slots as a pickled ResourceSlot
// and allocations as pickled Decimals.
func resourceSpecWire(spec *resource.Spec, containerID string, legacy bool) map[string]any {
	if spec == nil {
		return map[string]any{}
	}
	var slots any
	if legacy {
		rs := wire.ResourceSlot{}
		for s, v := range spec.Slots {
			rs[string(s)] = v
		}
		slots = rs
	} else {
		m := map[string]any{}
		for s, v := range spec.Slots {
			m[string(s)] = resource.FormatAmount(v)
		}
		slots = m
	}
	allocs := map[string]any{}
	for s, per := range spec.Allocation {
		devName := string(s.DeviceName())
		dm, _ := allocs[devName].(map[string]any)
		if dm == nil {
			dm = map[string]any{}
			allocs[devName] = dm
		}
		pd := map[string]any{}
		for id, v := range per {
			if legacy {
				pd[string(id)] = wire.PyDecimal{Decimal: v}
			} else {
				pd[string(id)] = resource.FormatAmount(v)
			}
		}
		dm[string(s)] = pd
	}
	ms := make([]any, len(spec.Mounts))
	for i, m := range spec.Mounts {
		ms[i] = m.String()
	}
	return map[string]any{"container_id": containerID, "slots": slots, "allocations": allocs, "scratch_disk_size": spec.ScratchSize, "mounts": ms}
}

func attachedDevicesWire(att map[string][]device.AttachedDevice) map[string]any {
	out := map[string]any{}
	for key, devs := range att {
		l := make([]any, 0, len(devs))
		for _, d := range devs {
			l = append(l, map[string]any{"device_id": d.DeviceID, "model_name": d.ModelName, "data": d.Data})
		}
		out[key] = l
	}
	return out
}

// listingWire is list_files' dict: "files" is a JSON string laid out as
// Python's json.dumps writes it (", " and ": " separators, floats with a
// decimal point), as the manager passes it on unparsed.
func listingWire(l *agent.Listing) map[string]any {
	parts := make([]string, 0, len(l.Files))
	for _, e := range l.Files {
		name, _ := json.Marshal(e.Filename)
		mode, _ := json.Marshal(e.Mode)
		parts = append(parts, fmt.Sprintf(`{"mode": %s, "size": %d, "ctime": %s, "mtime": %s, "atime": %s, "filename": %s}`,
			mode, e.Size, pyFloat(e.Ctime), pyFloat(e.Mtime), pyFloat(e.Atime), name))
	}
	return map[string]any{"files": "[" + strings.Join(parts, ", ") + "]", "errors": l.Error, "abspath": l.Abspath}
}

// pyFloat formats a float as Python's repr does for these values.
func pyFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

// restartInfoWire is restart_kernel's result.
func restartInfoWire(r *agent.RestartInfo) map[string]any {
	sp := make([]any, 0, len(r.ServicePorts))
	for _, p := range r.ServicePorts {
		sp = append(sp, servicePortWire(p))
	}
	return map[string]any{"container_id": r.ContainerID, "repl_in_port": r.ReplInPort, "repl_out_port": r.ReplOutPort, "stdin_port": 0, "stdout_port": 0, "service_ports": sp}
}
