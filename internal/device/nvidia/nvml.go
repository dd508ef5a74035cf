package nvidia

import (
	"errors"
	"fmt"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// LibraryPaths are tried in order when no path is configured: the soname
// through the loader cache, then where drivers are mounted in containers
// and the distributions' library directories.
var LibraryPaths = []string{
	"libnvidia-ml.so.1",
	"/usr/local/nvidia/lib64/libnvidia-ml.so.1",
	"/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
	"/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1",
	"/usr/lib64/libnvidia-ml.so.1",
}

// NVML is Lib over go-nvml.
type NVML struct {
	paths []string
	lib   nvml.Interface
	path  string
}

// NewNVML returns a Lib that loads the first loadable of paths (nil:
// LibraryPaths).
func NewNVML(paths ...string) *NVML {
	if len(paths) == 0 {
		paths = LibraryPaths
	}
	return &NVML{paths: paths}
}

func ret(r nvml.Return) error {
	switch r {
	case nvml.SUCCESS:
		return nil
	case nvml.ERROR_NOT_SUPPORTED:
		return ErrNotSupported
	}
	return errors.New(nvml.ErrorString(r))
}

// Init implements Lib.
func (n *NVML) Init() error {
	var why []string
	for _, p := range n.paths {
		lib := nvml.New(nvml.WithLibraryPath(p))
		r := lib.Init()
		if r == nvml.SUCCESS {
			n.lib, n.path = lib, p
			return nil
		}
		why = append(why, fmt.Sprintf("%s: %s", p, nvml.ErrorString(r)))
		if r != nvml.ERROR_LIBRARY_NOT_FOUND {
			// The library loaded but the driver refused (not loaded, no
			// permission): another copy will not do better.
			break
		}
	}
	return fmt.Errorf("%w: %s", ErrUnavailable, strings.Join(why, "; "))
}

// Shutdown implements Lib.
func (n *NVML) Shutdown() error {
	if n.lib == nil {
		return nil
	}
	return ret(n.lib.Shutdown())
}

// Path implements Lib.
func (n *NVML) Path() string { return n.path }

// DriverVersion implements Lib.
func (n *NVML) DriverVersion() (string, error) {
	v, r := n.lib.SystemGetDriverVersion()
	return v, ret(r)
}

// CudaDriverVersion implements Lib.
func (n *NVML) CudaDriverVersion() (int, error) {
	v, r := n.lib.SystemGetCudaDriverVersion()
	return v, ret(r)
}

// DeviceCount implements Lib.
func (n *NVML) DeviceCount() (int, error) {
	c, r := n.lib.DeviceGetCount()
	return c, ret(r)
}

// Device implements Lib.
func (n *NVML) Device(i int) (Dev, error) {
	d, r := n.lib.DeviceGetHandleByIndex(i)
	if err := ret(r); err != nil {
		return nil, err
	}
	return nvDev{d}, nil
}

type nvDev struct{ d nvml.Device }

func (x nvDev) UUID() (string, error) { v, r := x.d.GetUUID(); return v, ret(r) }
func (x nvDev) Name() (string, error) { v, r := x.d.GetName(); return v, ret(r) }
func (x nvDev) Memory() (uint64, uint64, error) {
	m, r := x.d.GetMemoryInfo()
	return m.Total, m.Used, ret(r)
}
func (x nvDev) PCIBusID() (string, error) {
	p, r := x.d.GetPciInfo()
	if err := ret(r); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, c := range p.BusId {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String(), nil
}
func (x nvDev) Minor() (int, error) { v, r := x.d.GetMinorNumber(); return v, ret(r) }
func (x nvDev) ComputeCapability() (int, int, error) {
	a, b, r := x.d.GetCudaComputeCapability()
	return a, b, ret(r)
}
func (x nvDev) NumCores() (int, error) { v, r := x.d.GetNumGpuCores(); return v, ret(r) }
func (x nvDev) Utilization() (uint32, error) {
	u, r := x.d.GetUtilizationRates()
	return u.Gpu, ret(r)
}
func (x nvDev) Power() (uint32, error)      { v, r := x.d.GetPowerUsage(); return v, ret(r) }
func (x nvDev) PowerLimit() (uint32, error) { v, r := x.d.GetEnforcedPowerLimit(); return v, ret(r) }
func (x nvDev) Temperature() (uint32, error) {
	v, r := x.d.GetTemperature(nvml.TEMPERATURE_GPU)
	return v, ret(r)
}
func (x nvDev) MIGEnabled() (bool, error) {
	cur, _, r := x.d.GetMigMode()
	if r == nvml.ERROR_NOT_SUPPORTED {
		return false, nil
	}
	return cur == nvml.DEVICE_MIG_ENABLE, ret(r)
}
func (x nvDev) MIGDevices() ([]MIGDev, error) {
	n, r := x.d.GetMaxMigDeviceCount()
	if err := ret(r); err != nil {
		return nil, err
	}
	var out []MIGDev
	for j := 0; j < n; j++ {
		m, r := x.d.GetMigDeviceHandleByIndex(j)
		if r == nvml.ERROR_NOT_FOUND || r == nvml.ERROR_INVALID_ARGUMENT {
			continue
		}
		if err := ret(r); err != nil {
			return nil, err
		}
		a, r := m.GetAttributes()
		if err := ret(r); err != nil {
			return nil, err
		}
		out = append(out, MIGDev{Dev: nvDev{m}, GPUSlices: int(a.GpuInstanceSliceCount), ComputeSlices: int(a.ComputeInstanceSliceCount), MemoryMB: a.MemorySizeMB, SMs: int(a.MultiprocessorCount)})
	}
	return out, nil
}
func (x nvDev) ProcessMemory() (map[int]uint64, error) {
	ps, r := x.d.GetComputeRunningProcesses()
	if err := ret(r); err != nil {
		return nil, err
	}
	out := map[int]uint64{}
	for _, p := range ps {
		out[int(p.Pid)] += p.UsedGpuMemory
	}
	return out, nil
}
