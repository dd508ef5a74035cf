package rocm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/stats"
)

// Version is the ROCm plugin's version.
const Version = "bai-agent-rocm/1"

// part is one KFD GPU node (a whole GPU, a die or a partition).
type part struct {
	renderMinor int
	card        int // -1 when no card node matches
	uniqueID    string
	bdf         string
	pciDir      string // /sys/bus/pci/devices/<bdf>, for metrics
	cus         int
	vram        int64
	gfx         string
}

// gpu is one rocm.device: the parts sharing a serial number.
type gpu struct {
	info  device.DeviceInfo
	parts []part
}

// Plugin is the ROCm compute plugin.
type Plugin struct {
	root   string // "" in production; a fixture tree in tests
	log    *slog.Logger
	gpus   []gpu
	driver string
	mask   map[string]bool
	gids   []string
}

// Options configure Discover.
type Options struct {
	// Root prefixes /sys and /dev (tests build fixture trees).
	Root   string
	Config map[string]any // config/plugins/accelerator/rocm: device_mask
	Log    *slog.Logger
}

func readProps(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Discover finds the AMD GPUs. ok=false means the host has none (no KFD
// GPU node), which is not an error.
func Discover(o Options) (*Plugin, bool, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p := &Plugin{root: o.Root, log: o.Log, mask: map[string]bool{}}
	if v, ok := o.Config["device_mask"].(string); ok {
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				p.mask[id] = true
			}
		}
	}
	nodesDir := filepath.Join(o.Root, "/sys/class/kfd/kfd/topology/nodes")
	ents, err := os.ReadDir(nodesDir)
	if err != nil {
		return nil, false, nil
	}
	// card<N> by PCI device, to pass the card node along with the render
	// node (the ROCm device plugin does both).
	cards := map[string]int{}
	if drm, err := os.ReadDir(filepath.Join(o.Root, "/sys/class/drm")); err == nil {
		for _, e := range drm {
			n, ok := strings.CutPrefix(e.Name(), "card")
			if !ok || strings.Contains(n, "-") {
				continue
			}
			idx, err := strconv.Atoi(n)
			if err != nil {
				continue
			}
			if dev, err := filepath.EvalSymlinks(filepath.Join(o.Root, "/sys/class/drm", e.Name(), "device")); err == nil {
				cards[filepath.Base(dev)] = idx
			}
		}
	}
	bySerial := map[string]int{}
	sort.Slice(ents, func(i, j int) bool {
		a, _ := strconv.Atoi(ents[i].Name())
		b, _ := strconv.Atoi(ents[j].Name())
		return a < b
	})
	for _, e := range ents {
		props := readProps(filepath.Join(nodesDir, e.Name(), "properties"))
		simd, _ := strconv.Atoi(props["simd_count"])
		if simd == 0 {
			continue // a CPU node
		}
		if v := props["vendor_id"]; v != "" && v != "4098" {
			continue // not AMD (0x1002)
		}
		minor, err := strconv.Atoi(props["drm_render_minor"])
		if err != nil {
			continue
		}
		loc, _ := strconv.Atoi(props["location_id"])
		dom, _ := strconv.Atoi(props["domain"])
		bdf := fmt.Sprintf("%04x:%02x:%02x.%d", dom, loc>>8, (loc>>3)&0x1f, loc&7)
		pciDir := filepath.Join(o.Root, "/sys/bus/pci/devices", bdf)
		perCU, _ := strconv.Atoi(props["simd_per_cu"])
		cus := simd
		if perCU > 0 {
			cus = simd / perCU
		}
		var vram int64
		if banks, err := os.ReadDir(filepath.Join(nodesDir, e.Name(), "mem_banks")); err == nil {
			for _, b := range banks {
				bp := readProps(filepath.Join(nodesDir, e.Name(), "mem_banks", b.Name(), "properties"))
				if bp["heap_type"] == "1" || bp["heap_type"] == "2" { // HSA_HEAPTYPE_FRAME_BUFFER_PUBLIC/PRIVATE
					n, _ := strconv.ParseInt(bp["size_in_bytes"], 10, 64)
					vram += n
				}
			}
		}
		if vram == 0 {
			vram, _ = strconv.ParseInt(readTrim(filepath.Join(pciDir, "mem_info_vram_total")), 10, 64)
		}
		card := -1
		if c, ok := cards[bdf]; ok {
			card = c
		}
		uid := ""
		if u, err := strconv.ParseUint(props["unique_id"], 10, 64); err == nil && u != 0 {
			uid = fmt.Sprintf("%016x", u)
		}
		pt := part{renderMinor: minor, card: card, uniqueID: uid, bdf: bdf, pciDir: pciDir, cus: cus, vram: vram, gfx: props["gfx_target_version"]}
		// One device per serial number (dies and partitions of one board
		// group together); the id must not contain ':' (resource.txt).
		serial := readTrim(filepath.Join(pciDir, "serial_number"))
		if serial == "" {
			serial = uid
		}
		if serial == "" {
			serial = "render" + strconv.Itoa(minor)
		}
		serial = strings.ReplaceAll(serial, ":", "-")
		if p.mask[serial] {
			continue
		}
		model := readTrim(filepath.Join(pciDir, "product_name"))
		if model == "" {
			model = "AMD GPU gfx" + pt.gfx
		}
		numa := -1
		if n, err := strconv.Atoi(readTrim(filepath.Join(pciDir, "numa_node"))); err == nil && n >= 0 {
			numa = n
		}
		i, seen := bySerial[serial]
		if !seen {
			i = len(p.gpus)
			bySerial[serial] = i
			p.gpus = append(p.gpus, gpu{info: device.DeviceInfo{ID: resource.DeviceID(serial), Slot: "rocm.device", Model: model, UUID: serial, HWLocation: bdf, NUMANode: numa}})
		}
		g := &p.gpus[i]
		g.parts = append(g.parts, pt)
		g.info.MemorySize += vram
		g.info.Processing += cus
	}
	if len(p.gpus) == 0 {
		return nil, false, nil
	}
	p.driver = readTrim(filepath.Join(o.Root, "/sys/module/amdgpu/version"))
	// Numeric groups of the device nodes: images need not have "video"
	// or "render" groups for the kernel user to open them.
	seen := map[string]bool{}
	for _, path := range p.nodesOf(p.gpus) {
		if st, err := os.Stat(path.PathOnHost); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Gid != 0 {
				g := strconv.Itoa(int(sys.Gid))
				if !seen[g] {
					seen[g] = true
					p.gids = append(p.gids, g)
				}
			}
		}
	}
	return p, true, nil
}

// nodesOf lists the device nodes of gpus (host paths under root).
func (p *Plugin) nodesOf(gs []gpu) []device.DeviceMapping {
	var out []device.DeviceMapping
	add := func(path string) {
		out = append(out, device.DeviceMapping{PathOnHost: filepath.Join(p.root, path), PathInContainer: path, CgroupPermissions: "rwm"})
	}
	add("/dev/kfd")
	for _, g := range gs {
		for _, pt := range g.parts {
			add(fmt.Sprintf("/dev/dri/renderD%d", pt.renderMinor))
			if pt.card >= 0 {
				add(fmt.Sprintf("/dev/dri/card%d", pt.card))
			}
		}
	}
	return out
}

// Key implements device.Plugin.
func (p *Plugin) Key() resource.DeviceName { return "rocm" }

// Slots implements device.Plugin.
func (p *Plugin) Slots() []resource.SlotInfo {
	return []resource.SlotInfo{{Name: "rocm.device", Type: resource.SlotCount}}
}

// ExclusiveSlots implements device.Accelerator.
func (p *Plugin) ExclusiveSlots() []string { return []string{"rocm.device"} }

// Devices implements device.Accelerator.
func (p *Plugin) Devices() []device.DeviceInfo {
	out := make([]device.DeviceInfo, len(p.gpus))
	for i, g := range p.gpus {
		out[i] = g.info
	}
	return out
}

// AllocMaps implements device.Plugin.
func (p *Plugin) AllocMaps(policy resource.AffinityPolicy) ([]*resource.AllocMap, error) {
	var devs []resource.Device
	for _, g := range p.gpus {
		devs = append(devs, resource.Device{ID: g.info.ID, Slot: "rocm.device", Type: resource.SlotCount, Capacity: decimal.NewFromInt(1), NUMANode: g.info.NUMANode})
	}
	m, err := resource.NewAllocMap(devs, resource.Evenly, policy, true)
	if err != nil {
		return nil, err
	}
	return []*resource.AllocMap{m}, nil
}

// Available implements device.Plugin.
func (p *Plugin) Available() resource.Slots {
	return resource.Slots{"rocm.device": decimal.NewFromInt(int64(len(p.gpus)))}
}

func (p *Plugin) allocated(alloc resource.Allocation) []gpu {
	var out []gpu
	for _, g := range p.gpus {
		if alloc["rocm.device"][g.info.ID].IsPositive() {
			out = append(out, g)
		}
	}
	return out
}

// Reserve implements device.Plugin.
func (p *Plugin) Reserve(alloc resource.Allocation) device.Reservation {
	gs := p.allocated(alloc)
	if len(gs) == 0 {
		return device.Reservation{}
	}
	var rocr, hip []string
	i := 0
	for _, g := range gs {
		for _, pt := range g.parts {
			if pt.uniqueID != "" {
				rocr = append(rocr, "GPU-"+pt.uniqueID)
			} else {
				rocr = append(rocr, strconv.Itoa(i))
			}
			hip = append(hip, strconv.Itoa(i))
			i++
		}
	}
	return device.Reservation{
		Devices:     p.nodesOf(gs),
		SecurityOpt: []string{"seccomp=unconfined"},
		GroupAdd:    append([]string{}, p.gids...),
		EnvList:     []string{"ROCR_VISIBLE_DEVICES=" + strings.Join(rocr, ","), "HIP_VISIBLE_DEVICES=" + strings.Join(hip, ",")},
	}
}

// ResourceData implements device.Accelerator (upstream's mixed-case key;
// ids sorted as strings, since serials need not be numbers).
func (p *Plugin) ResourceData(alloc resource.Allocation) map[string]string {
	var ids []string
	for _, g := range p.allocated(alloc) {
		ids = append(ids, string(g.info.ID))
	}
	sort.Strings(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d:%s", i, id)
	}
	return map[string]string{"ROCm_GLOBAL_DEVICE_IDS": strings.Join(parts, ",")}
}

// AttachedDevices implements device.Plugin.
func (p *Plugin) AttachedDevices(alloc resource.Allocation) []device.AttachedDevice {
	var out []device.AttachedDevice
	for _, g := range p.allocated(alloc) {
		out = append(out, device.AttachedDevice{DeviceID: string(g.info.ID), ModelName: g.info.Model, Data: map[string]any{"smp": int64(g.info.Processing), "mem": g.info.MemorySize}})
	}
	return out
}

// Version implements device.Plugin.
func (p *Plugin) Version() string { return Version }

// Metadata implements device.Plugin (upstream's ROCm metadata).
func (p *Plugin) Metadata() map[string]any {
	return map[string]any{
		"slot_name": "rocm.device", "description": "ROCm", "human_readable_name": "ROCm Device", "display_unit": "GPU",
		"number_format": map[string]any{"binary": false, "round_length": 0}, "display_icon": "gpu2",
	}
}

// HWInfo implements device.Plugin.
func (p *Plugin) HWInfo() map[string]string {
	h, _ := p.NodeHWInfo()
	return h.Metadata
}

// NodeHWInfo implements device.Accelerator.
func (p *Plugin) NodeHWInfo() (device.HWInfo, bool) {
	md := map[string]string{"plugin_version": Version, "driver_version": p.driver, "gpu_count": strconv.Itoa(len(p.gpus))}
	for i, g := range p.gpus {
		md["gpu"+strconv.Itoa(i)] = fmt.Sprintf("%s, serial %s, %s, %d MiB, %d CUs, %d partition(s), NUMA node %d", g.info.Model, g.info.ID, g.info.HWLocation, g.info.MemorySize>>20, g.info.Processing, len(g.parts), g.info.NUMANode)
	}
	return device.HWInfo{Status: "healthy", Metadata: md}, true
}

// ExtraInfo implements device.Accelerator.
func (p *Plugin) ExtraInfo() map[string]any {
	return map[string]any{"rocm_support": true, "driver_version": p.driver}
}

func dptr(d decimal.Decimal) *decimal.Decimal { return &d }

// Metric definitions (upstream's keys).
var (
	DefMem  = stats.Def{Key: "rocm_mem", Unit: "bytes", Filter: []string{"max"}}
	DefUtil = stats.Def{Key: "rocm_util", Unit: "percent", Filter: []string{"avg", "max"}}
)

// read sums VRAM use and averages busy percent over a device's parts.
func (p *Plugin) read(g gpu) (used, total int64, util decimal.Decimal, ok bool) {
	n := 0
	for _, pt := range g.parts {
		u, err1 := strconv.ParseInt(readTrim(filepath.Join(pt.pciDir, "mem_info_vram_used")), 10, 64)
		t, err2 := strconv.ParseInt(readTrim(filepath.Join(pt.pciDir, "mem_info_vram_total")), 10, 64)
		if err1 == nil && err2 == nil {
			used, total = used+u, total+t
			ok = true
		}
		if b, err := strconv.Atoi(readTrim(filepath.Join(pt.pciDir, "gpu_busy_percent"))); err == nil {
			util = util.Add(decimal.NewFromInt(int64(b)))
			n++
		}
	}
	if n > 0 {
		util = util.Div(decimal.NewFromInt(int64(n))).Round(2)
	}
	return used, total, util, ok
}

// NodeMeasures implements device.Accelerator (utilisation capacity is
// 100 per device; upstream's never counted its devices and reported 0 %).
func (p *Plugin) NodeMeasures(context.Context) ([]stats.NodeMeasure, error) {
	mem := stats.NodeMeasure{Def: DefMem, PerDevice: map[string]stats.MeasureValue{}}
	util := stats.NodeMeasure{Def: DefUtil, PerDevice: map[string]stats.MeasureValue{}}
	var used, total, u decimal.Decimal
	for _, g := range p.gpus {
		us, tot, ut, ok := p.read(g)
		if !ok {
			continue
		}
		id := string(g.info.ID)
		mem.PerDevice[id] = stats.MeasureValue{Value: decimal.NewFromInt(us), Capacity: dptr(decimal.NewFromInt(tot))}
		util.PerDevice[id] = stats.MeasureValue{Value: ut, Capacity: dptr(decimal.NewFromInt(100))}
		used, total, u = used.Add(decimal.NewFromInt(us)), total.Add(decimal.NewFromInt(tot)), u.Add(ut)
	}
	mem.Node = stats.MeasureValue{Value: used, Capacity: dptr(total)}
	util.Node = stats.MeasureValue{Value: u, Capacity: dptr(decimal.NewFromInt(int64(100 * len(p.gpus))))}
	return []stats.NodeMeasure{mem, util}, nil
}

// ContainerMeasures implements device.Accelerator, through the
// allocation record.
func (p *Plugin) ContainerMeasures(_ context.Context, ks []device.KernelDevices) ([]stats.ContainerMeasure, error) {
	mem := stats.ContainerMeasure{Def: DefMem, PerKernel: map[string]stats.MeasureValue{}}
	util := stats.ContainerMeasure{Def: DefUtil, PerKernel: map[string]stats.MeasureValue{}}
	for _, k := range ks {
		gs := p.allocated(k.Allocation)
		if len(gs) == 0 {
			continue
		}
		var used, total, u decimal.Decimal
		for _, g := range gs {
			us, tot, ut, _ := p.read(g)
			used, total, u = used.Add(decimal.NewFromInt(us)), total.Add(decimal.NewFromInt(tot)), u.Add(ut)
		}
		mem.PerKernel[k.KernelID] = stats.MeasureValue{Value: used, Capacity: dptr(total)}
		util.PerKernel[k.KernelID] = stats.MeasureValue{Value: u, Capacity: dptr(decimal.NewFromInt(int64(100 * len(gs))))}
	}
	return []stats.ContainerMeasure{mem, util}, nil
}

// Close implements device.Accelerator.
func (p *Plugin) Close() error { return nil }

var _ device.Accelerator = (*Plugin)(nil)
