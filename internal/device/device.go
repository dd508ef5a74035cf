package device

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/shopspring/decimal"
)

// Reservation is what a plugin asks of the container for one allocation
// (upstream generate_docker_args, as data the backend applies).
type Reservation struct {
	CpusetCpus string
	Memory     int64 // bytes; 0 = unlimited
	Env        map[string]string
	// EnvList is ordered KEY=VALUE lines; they also go to environ.txt.
	EnvList        []string
	Runtime        string // HostConfig.Runtime ("nvidia" for the legacy runtime)
	DeviceRequests []DeviceRequest
	Devices        []DeviceMapping
	GroupAdd       []string
	SecurityOpt    []string
}

// AttachedDevice is one entry of a kernel's attached_devices.
type AttachedDevice struct {
	DeviceID  string         `json:"device_id"`
	ModelName string         `json:"model_name"`
	Data      map[string]any `json:"data"`
}

// Plugin is a compute plugin (Backend.AI's AbstractComputePlugin, reduced
// to what the agent core uses).
type Plugin interface {
	// Key is the device name ("cpu", "mem").
	Key() resource.DeviceName
	Slots() []resource.SlotInfo
	// AllocMaps builds fresh alloc maps over the plugin's devices.
	AllocMaps(policy resource.AffinityPolicy) ([]*resource.AllocMap, error)
	// Available is the advertised amount per slot after the reserve.
	Available() resource.Slots
	// Reserve maps an allocation to container settings.
	Reserve(alloc resource.Allocation) Reservation
	AttachedDevices(alloc resource.Allocation) []AttachedDevice
	Version() string
	Metadata() map[string]any
	HWInfo() map[string]string
}

// Host describes the machine for the intrinsic plugins; tests build their
// own to model NUMA hosts.
type Host struct {
	Cores    []int
	NUMANode map[int]int
	MemTotal int64
}

// ScanHost reads the usable cores (Docker's cgroup cpuset, then the
// scheduler affinity, then the CPU count), their NUMA nodes from sysfs and
// the memory size from /proc/meminfo.
func ScanHost() (Host, error) {
	h := Host{NUMANode: map[int]int{}}
	for _, p := range []string{
		"/sys/fs/cgroup/cpuset/docker/cpuset.effective_cpus",
		"/sys/fs/cgroup/docker/cpuset.cpus.effective",
		"/sys/fs/cgroup/system.slice/cpuset.cpus.effective",
		"/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
		"/sys/fs/cgroup/cpuset.cpus.effective",
	} {
		if b, err := os.ReadFile(p); err == nil {
			if cores, err := ParseCPUList(strings.TrimSpace(string(b))); err == nil && len(cores) > 0 {
				h.Cores = cores
				break
			}
		}
	}
	if len(h.Cores) == 0 {
		h.Cores = affinityCores()
	}
	if len(h.Cores) == 0 {
		for i := 0; i < runtime.NumCPU(); i++ {
			h.Cores = append(h.Cores, i)
		}
	}
	if nodes, err := os.ReadDir("/sys/devices/system/node"); err == nil {
		for _, n := range nodes {
			id, ok := strings.CutPrefix(n.Name(), "node")
			if !ok {
				continue
			}
			nid, err := strconv.Atoi(id)
			if err != nil {
				continue
			}
			b, err := os.ReadFile("/sys/devices/system/node/" + n.Name() + "/cpulist")
			if err != nil {
				continue
			}
			cores, _ := ParseCPUList(strings.TrimSpace(string(b)))
			for _, c := range cores {
				h.NUMANode[c] = nid
			}
		}
	}
	mem, err := memTotal()
	if err != nil {
		return h, err
	}
	h.MemTotal = mem
	return h, nil
}

func memTotal() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("read /proc/meminfo: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("MemTotal: %w", err)
				}
				return kb * 1024, nil
			}
		}
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}

// ParseCPUList parses "0-3,5,7-8".
func ParseCPUList(s string) ([]int, error) {
	var out []int
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		x, err := strconv.Atoi(a)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		y := x
		if isRange {
			if y, err = strconv.Atoi(b); err != nil || y < x {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for i := x; i <= y; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}

// OvercommitFactor reads BACKEND_CPU_OVERCOMMIT_FACTOR or
// BACKEND_MEM_OVERCOMMIT_FACTOR: a number from 1 to 10, default 1.
func OvercommitFactor(name string, getenv func(string) string) (decimal.Decimal, error) {
	raw := strings.TrimSpace(getenv(name))
	if raw == "" {
		return decimal.NewFromInt(1), nil
	}
	f, err := decimal.NewFromString(raw)
	if err != nil || f.LessThan(decimal.NewFromInt(1)) || f.GreaterThan(decimal.NewFromInt(10)) {
		return decimal.Decimal{}, fmt.Errorf("%s=%q: must be a number from 1 to 10", name, raw)
	}
	return f, nil
}

// Rescanner is a plugin whose devices can change while the agent runs (a
// GPU that falls off the bus, a mock file edited). Rescan looks again and
// reports whether anything the agent uses changed: the devices (ids,
// slots, memory, processing units), hence AllocMaps, Available, Devices
// and the hwinfo. On error the plugin keeps
// what it had. The agent calls it periodically (upstream's
// UpdateSlotsTask, every 30 s) and rebuilds its alloc maps when changed.
type Rescanner interface {
	Rescan(ctx context.Context) (changed bool, err error)
}
