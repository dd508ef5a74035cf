package tpu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/stats"
)

// Version is the TPU plugin's version.
const Version = "bai-agent-tpu/1"

// ValidChipCounts are the slice sizes libtpu accepts on one host.
var ValidChipCounts = []int{1, 2, 4, 8}

type chip struct {
	index int
	node  string // /dev/accel3 or /dev/vfio/12
}

// Plugin is the TPU compute plugin.
type Plugin struct {
	root  string
	chips []chip
	vfio  bool
	accel string // accelerator type (v5litepod-8), when known
}

// Options configure Discover.
type Options struct {
	Root   string // prefixes /dev and /sys (tests)
	Getenv func(string) string
	// VFIO allows numbered /dev/vfio groups as chips. VFIO groups are
	// also how NICs and GPUs are passed through, so they count as TPU
	// chips only on a known TPU VM (TPU_ACCELERATOR_TYPE set) or when the
	// tpu plugin is named in allow-compute-plugins.
	VFIO bool
}

// googleVendor is Google's PCI vendor id; an accel-class device of another
// vendor (an Intel NPU, a Habana card) is not a TPU.
const googleVendor = "0x1ae0"

// Discover finds TPU chips; ok=false when there are none.
func Discover(o Options) (*Plugin, bool, error) {
	p := &Plugin{root: o.Root}
	if o.Getenv != nil {
		p.accel = o.Getenv("TPU_ACCELERATOR_TYPE")
	}
	matches, _ := filepath.Glob(filepath.Join(o.Root, "/dev/accel*"))
	for _, m := range matches {
		n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(m), "accel"))
		if v, verr := os.ReadFile(filepath.Join(o.Root, "/sys/class/accel", filepath.Base(m), "device/vendor")); verr == nil && strings.TrimSpace(string(v)) != googleVendor {
			continue
		}
		if err == nil {
			p.chips = append(p.chips, chip{index: n, node: "/dev/" + filepath.Base(m)})
		}
	}
	if len(p.chips) == 0 && (o.VFIO || p.accel != "") {
		ents, _ := os.ReadDir(filepath.Join(o.Root, "/dev/vfio"))
		var groups []int
		for _, e := range ents {
			if n, err := strconv.Atoi(e.Name()); err == nil {
				groups = append(groups, n)
			}
		}
		sort.Ints(groups)
		for i, g := range groups {
			p.chips = append(p.chips, chip{index: i, node: "/dev/vfio/" + strconv.Itoa(g)})
		}
		p.vfio = len(p.chips) > 0
	}
	sort.Slice(p.chips, func(i, j int) bool { return p.chips[i].index < p.chips[j].index })
	if !p.vfio {
		// Chip ids are positions 0..n-1 whatever the accel numbering.
		for i := range p.chips {
			p.chips[i].index = i
		}
	}
	return p, len(p.chips) > 0, nil
}

// Key implements device.Plugin.
func (p *Plugin) Key() resource.DeviceName { return "tpu" }

// Slots implements device.Plugin.
func (p *Plugin) Slots() []resource.SlotInfo {
	return []resource.SlotInfo{{Name: "tpu.device", Type: resource.SlotCount}}
}

// ExclusiveSlots implements device.Accelerator.
func (p *Plugin) ExclusiveSlots() []string { return nil }

// Devices implements device.Accelerator.
func (p *Plugin) Devices() []device.DeviceInfo {
	var out []device.DeviceInfo
	for _, c := range p.chips {
		out = append(out, device.DeviceInfo{ID: resource.DeviceID(strconv.Itoa(c.index)), Slot: "tpu.device", Model: p.model(), UUID: c.node, HWLocation: c.node, Processing: 1, NUMANode: -1})
	}
	return out
}

func (p *Plugin) model() string {
	if p.accel != "" {
		return "Cloud TPU " + p.accel
	}
	return "Cloud TPU"
}

// CheckRequest implements device.RequestChecker: a slice is 1, 2, 4 or 8
// chips (or all of the host's).
func (p *Plugin) CheckRequest(req resource.Slots) error {
	n := req["tpu.device"]
	if !n.IsPositive() {
		return nil
	}
	if !n.IsInteger() {
		return fmt.Errorf("%w: tpu.device must be a whole number of chips, got %s", resource.ErrInvalidArgument, resource.FormatAmount(n))
	}
	c := int(n.IntPart())
	if c == len(p.chips) {
		return nil
	}
	for _, v := range ValidChipCounts {
		if c == v {
			return nil
		}
	}
	return fmt.Errorf("%w: tpu.device=%d: a TPU slice on one host has 1, 2, 4 or 8 chips", resource.ErrInvalidArgument, c)
}

// AllocMaps implements device.Plugin.
func (p *Plugin) AllocMaps(policy resource.AffinityPolicy) ([]*resource.AllocMap, error) {
	var devs []resource.Device
	for _, d := range p.Devices() {
		devs = append(devs, resource.Device{ID: d.ID, Slot: "tpu.device", Type: resource.SlotCount, Capacity: decimal.NewFromInt(1), NUMANode: -1})
	}
	m, err := resource.NewAllocMap(devs, resource.Fill, policy, true)
	if err != nil {
		return nil, err
	}
	return []*resource.AllocMap{m}, nil
}

// Available implements device.Plugin.
func (p *Plugin) Available() resource.Slots {
	return resource.Slots{"tpu.device": decimal.NewFromInt(int64(len(p.chips)))}
}

func (p *Plugin) allocated(alloc resource.Allocation) []chip {
	var out []chip
	for _, c := range p.chips {
		if alloc["tpu.device"][resource.DeviceID(strconv.Itoa(c.index))].IsPositive() {
			out = append(out, c)
		}
	}
	return out
}

// Reserve implements device.Plugin.
func (p *Plugin) Reserve(alloc resource.Allocation) device.Reservation {
	cs := p.allocated(alloc)
	if len(cs) == 0 {
		return device.Reservation{}
	}
	var r device.Reservation
	var ids []string
	for _, c := range cs {
		ids = append(ids, strconv.Itoa(c.index))
		r.Devices = append(r.Devices, device.DeviceMapping{PathOnHost: filepath.Join(p.root, c.node), PathInContainer: c.node, CgroupPermissions: "rwm"})
	}
	if p.vfio {
		r.Devices = append(r.Devices, device.DeviceMapping{PathOnHost: filepath.Join(p.root, "/dev/vfio/vfio"), PathInContainer: "/dev/vfio/vfio", CgroupPermissions: "rwm"})
	}
	r.EnvList = append(r.EnvList, "TPU_VISIBLE_CHIPS="+strings.Join(ids, ","))
	// libtpu's single-process bounds for a partial host; with every chip
	// it finds the topology itself.
	if len(cs) < len(p.chips) {
		switch len(cs) {
		case 1:
			r.EnvList = append(r.EnvList, "TPU_CHIPS_PER_HOST_BOUNDS=1,1,1", "TPU_HOST_BOUNDS=1,1,1")
		case 2:
			r.EnvList = append(r.EnvList, "TPU_CHIPS_PER_HOST_BOUNDS=1,2,1", "TPU_HOST_BOUNDS=1,1,1")
		}
	}
	return r
}

// ResourceData implements device.Accelerator.
func (p *Plugin) ResourceData(alloc resource.Allocation) map[string]string {
	cs := p.allocated(alloc)
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%d:%d", i, c.index)
	}
	return map[string]string{"TPU_GLOBAL_DEVICE_IDS": strings.Join(parts, ",")}
}

// AttachedDevices implements device.Plugin (upstream sends proc, not smp).
func (p *Plugin) AttachedDevices(alloc resource.Allocation) []device.AttachedDevice {
	var out []device.AttachedDevice
	for _, c := range p.allocated(alloc) {
		out = append(out, device.AttachedDevice{DeviceID: strconv.Itoa(c.index), ModelName: p.model(), Data: map[string]any{"proc": int64(1)}})
	}
	return out
}

// Version implements device.Plugin.
func (p *Plugin) Version() string { return Version }

// Metadata implements device.Plugin.
func (p *Plugin) Metadata() map[string]any {
	return map[string]any{
		"slot_name": "tpu.device", "description": "TPU", "human_readable_name": "TPU", "display_unit": "TPU",
		"number_format": map[string]any{"binary": false, "round_length": 0}, "display_icon": "tpu",
	}
}

// HWInfo implements device.Plugin.
func (p *Plugin) HWInfo() map[string]string {
	h, _ := p.NodeHWInfo()
	return h.Metadata
}

// NodeHWInfo implements device.Accelerator.
func (p *Plugin) NodeHWInfo() (device.HWInfo, bool) {
	md := map[string]string{"plugin_version": Version, "chips": strconv.Itoa(len(p.chips)), "accelerator_type": p.accel}
	for _, c := range p.chips {
		md["chip"+strconv.Itoa(c.index)] = c.node
	}
	return device.HWInfo{Status: "healthy", Metadata: md}, true
}

// ExtraInfo implements device.Accelerator.
func (p *Plugin) ExtraInfo() map[string]any {
	return map[string]any{"tpu_support": "true", "accelerator_type": p.accel}
}

// NodeMeasures implements device.Accelerator: none (as upstream).
func (p *Plugin) NodeMeasures(context.Context) ([]stats.NodeMeasure, error) { return nil, nil }

// ContainerMeasures implements device.Accelerator: none.
func (p *Plugin) ContainerMeasures(context.Context, []device.KernelDevices) ([]stats.ContainerMeasure, error) {
	return nil, nil
}

// Close implements device.Accelerator.
func (p *Plugin) Close() error { return nil }

var (
	_ device.Accelerator    = (*Plugin)(nil)
	_ device.RequestChecker = (*Plugin)(nil)
)
