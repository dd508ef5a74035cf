package device

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/stats"
	"github.com/bai-agent/bai-agent/internal/units"
)

// DeviceRequest is a Docker HostConfig.DeviceRequests entry (the nvidia
// or cdi device driver).
type DeviceRequest struct {
	Driver       string
	Count        int
	DeviceIDs    []string
	Capabilities [][]string
	Options      map[string]string
}

// DeviceMapping is a Docker HostConfig.Devices entry (a device node
// passed into the container: /dev/kfd, /dev/dri/renderD128, /dev/accel0).
type DeviceMapping struct {
	PathOnHost        string
	PathInContainer   string
	CgroupPermissions string
}

// DeviceInfo is one allocatable unit of an accelerator (upstream
// AbstractComputeDevice).
type DeviceInfo struct {
	ID         resource.DeviceID // the wire device_id
	Slot       resource.SlotName // the slot this unit belongs to (MIG: cuda.device:<profile>-mig)
	Model      string
	UUID       string // GPU-…, MIG-…, serial
	HWLocation string // PCI bus id or name
	MemorySize int64  // bytes
	Processing int    // SMs / compute units
	NUMANode   int    // -1 when unknown
}

// HWInfo is one entry of gather_hwinfo (upstream HardwareMetadata).
type HWInfo struct {
	Status     string // healthy, degraded, offline, unavailable
	StatusInfo *string
	Metadata   map[string]string
}

// KernelDevices is a running kernel and what it holds, for per-kernel
// accelerator measures (attributed from the agent's own allocation
// record, which works for every way a device reaches a container).
type KernelDevices struct {
	KernelID   string
	Allocation resource.Allocation
}

// Accelerator is a compute plugin for a device type beyond cpu and mem
// (cuda, rocm, tpu, the mock). Its methods must not block for long: the
// agent calls the measure methods under a deadline and skips a plugin
// that misses it.
type Accelerator interface {
	Plugin
	// ExclusiveSlots are fnmatch patterns of slots that must not be asked
	// together (upstream exclusive_slot_types).
	ExclusiveSlots() []string
	// Devices lists the allocatable units (empty when disabled).
	Devices() []DeviceInfo
	// ExtraInfo joins "version" in the heartbeat's compute_plugins entry.
	ExtraInfo() map[string]any
	// NodeHWInfo is the gather_hwinfo entry; ok=false leaves the plugin
	// out, as upstream does for NotImplementedError.
	NodeHWInfo() (HWInfo, bool)
	// ResourceData are the KEY=VALUE lines the plugin adds to
	// resource.txt for an allocation (called even for zero allocations,
	// as upstream).
	ResourceData(alloc resource.Allocation) map[string]string
	NodeMeasures(ctx context.Context) ([]stats.NodeMeasure, error)
	ContainerMeasures(ctx context.Context, kernels []KernelDevices) ([]stats.ContainerMeasure, error)
	// Close releases the plugin's handles (NVML's Shutdown).
	Close() error
}

// HasAllocation tells whether alloc holds a positive amount of any of
// the plugin's slots: only then are its container arguments applied
// (upstream's device_list rule), so a CPU-only kernel on a GPU node gets
// no GPU runtime.
func HasAllocation(p Plugin, alloc resource.Allocation) bool {
	for _, s := range p.Slots() {
		if alloc.Total(s.Name).IsPositive() {
			return true
		}
	}
	return false
}

// Merge folds r into the reservation as upstream's update_nested_dict
// does: lists extend, scalars overwrite (when set).
func (r *Reservation) Merge(o Reservation) {
	if o.CpusetCpus != "" {
		r.CpusetCpus = o.CpusetCpus
	}
	if o.Memory > 0 {
		r.Memory = o.Memory
	}
	if len(o.Env) > 0 {
		if r.Env == nil {
			r.Env = map[string]string{}
		}
		for k, v := range o.Env {
			r.Env[k] = v
		}
	}
	r.EnvList = append(r.EnvList, o.EnvList...)
	if o.Runtime != "" {
		r.Runtime = o.Runtime
	}
	r.DeviceRequests = append(r.DeviceRequests, o.DeviceRequests...)
	r.Devices = append(r.Devices, o.Devices...)
	r.GroupAdd = append(r.GroupAdd, o.GroupAdd...)
	r.SecurityOpt = append(r.SecurityOpt, o.SecurityOpt...)
}

// AllocatedUnits lists the device ids of alloc in the plugin's slots with a
// positive amount, in device order, each once.
func AllocatedUnits(p Plugin, alloc resource.Allocation) []resource.DeviceID {
	seen := map[resource.DeviceID]bool{}
	var out []resource.DeviceID
	for _, s := range p.Slots() {
		for _, id := range alloc.Devices(s.Name) {
			if !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	return out
}

// GPUEnv is the GPU_* environment upstream derives from the first
// accelerator's attached devices: GPU_TYPE, GPU_MODEL_NAME, GPU_CONFIG,
// TF_GPU_MEMORY_ALLOC, GPU_COUNT and N_GPUS (0 when none).
func GPUEnv(devName string, attached []AttachedDevice) map[string]string {
	env := map[string]string{"GPU_COUNT": strconv.Itoa(len(attached)), "N_GPUS": strconv.Itoa(len(attached))}
	if len(attached) == 0 {
		return env
	}
	var cfg, tf []string
	for i, d := range attached {
		mem, _ := Int64(d.Data["mem"])
		cfg = append(cfg, fmt.Sprintf("%d:%s", i, units.FormatBinarySize(mem)))
		tf = append(tf, fmt.Sprintf("%d:%d", i, mem>>20))
	}
	env["GPU_TYPE"] = devName
	env["GPU_MODEL_NAME"] = attached[0].ModelName
	env["GPU_CONFIG"] = strings.Join(cfg, ",")
	env["TF_GPU_MEMORY_ALLOC"] = strings.Join(tf, ",")
	return env
}

// Int64 reads an integer from an attached device's data (int64 as the
// plugins store it; int and float64 after a round trip).
func Int64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		return int64(x), true
	}
	return 0, false
}

// pluginModule maps a Python entry point's module path to our plugin
// name, so allow/block lists written for the Python agent work unchanged.
var pluginModule = map[string]string{
	"ai.backend.accelerator.cuda_open": "cuda",
	"ai.backend.accelerator.cuda":      "cuda",
	"ai.backend.accelerator.mock":      "mock",
	"ai.backend.accelerator.rocm":      "rocm",
	"ai.backend.accelerator.tpu":       "tpu",
}

// PluginModules lists the module paths each plugin answers to.
func PluginModules(name string) []string {
	var out []string
	for mod, n := range pluginModule {
		if n == name {
			out = append(out, mod)
		}
	}
	sort.Strings(out)
	return out
}

// matchPlugin is upstream's match_plugin_list: a pattern matches a module
// path equal to it or under it ("ai.backend.accelerator" matches every
// accelerator). Our short names ("cuda", "mock") are accepted as well.
func matchPlugin(name string, patterns []string) bool {
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == name {
			return true
		}
		for _, mod := range PluginModules(name) {
			if mod == p || strings.HasPrefix(mod, p+".") {
				return true
			}
		}
	}
	return false
}

// Selection says whether a plugin is to be loaded under [agent]
// allow-compute-plugins / block-compute-plugins, and whether it was named
// explicitly (the mock loads only then).
func Selection(name string, allow, block []string) (load, explicit bool) {
	if matchPlugin(name, block) {
		return false, false
	}
	if allow == nil {
		return true, false
	}
	if matchPlugin(name, allow) {
		return true, true
	}
	return false, false
}

// RequestChecker is implemented by plugins with rules on request sizes
// beyond capacity (TPU slices come in 1, 2, 4 or 8 chips): a request that
// breaks them is refused before anything is allocated.
type RequestChecker interface {
	CheckRequest(req resource.Slots) error
}
