package nvidia

import (
	"errors"
	"fmt"
	"sync"
)

// fakeLib is an NVML with scripted GPUs.
type fakeLib struct {
	initErr error
	devs    []*fakeDev
	shut    bool
}

func (f *fakeLib) Init() error                     { return f.initErr }
func (f *fakeLib) Shutdown() error                 { f.shut = true; return nil }
func (f *fakeLib) Path() string                    { return "fake" }
func (f *fakeLib) DriverVersion() (string, error)  { return "580.159.04", nil }
func (f *fakeLib) CudaDriverVersion() (int, error) { return 13000, nil }
func (f *fakeLib) DeviceCount() (int, error)       { return len(f.devs), nil }
func (f *fakeLib) Device(i int) (Dev, error) {
	if i >= len(f.devs) {
		return nil, errors.New("ERROR_INVALID_ARGUMENT")
	}
	return f.devs[i], nil
}

type fakeDev struct {
	mu          sync.Mutex
	uuid, name  string
	total, used uint64
	bus         string
	cores       int
	ccMajor     int
	ccMinor     int
	util        uint32
	utilErr     error
	power       uint32
	lost        error
	migs        []MIGDev
}

func (d *fakeDev) check() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lost
}
func (d *fakeDev) UUID() (string, error) { return d.uuid, nil }
func (d *fakeDev) Name() (string, error) { return d.name, nil }
func (d *fakeDev) Memory() (uint64, uint64, error) {
	if err := d.check(); err != nil {
		return 0, 0, err
	}
	return d.total, d.used, nil
}
func (d *fakeDev) PCIBusID() (string, error)            { return d.bus, nil }
func (d *fakeDev) Minor() (int, error)                  { return 0, nil }
func (d *fakeDev) ComputeCapability() (int, int, error) { return d.ccMajor, d.ccMinor, nil }
func (d *fakeDev) NumCores() (int, error)               { return d.cores, nil }
func (d *fakeDev) Utilization() (uint32, error) {
	if d.utilErr != nil {
		return 0, d.utilErr
	}
	return d.util, nil
}
func (d *fakeDev) Power() (uint32, error)       { return d.power, nil }
func (d *fakeDev) PowerLimit() (uint32, error)  { return 700000, nil }
func (d *fakeDev) Temperature() (uint32, error) { return 40, nil }
func (d *fakeDev) MIGEnabled() (bool, error)    { return len(d.migs) > 0, nil }
func (d *fakeDev) MIGDevices() ([]MIGDev, error) {
	return d.migs, nil
}
func (d *fakeDev) ProcessMemory() (map[int]uint64, error) { return nil, ErrNotSupported }

// h100 is one NVIDIA H100 80GB HBM3 as NVML describes it.
func h100(i int) *fakeDev {
	return &fakeDev{
		uuid: fmt.Sprintf("GPU-%08d-1111-2222-3333-444444444444", i), name: "NVIDIA H100 80GB HBM3",
		total: 85520809984, used: 1 << 30, bus: fmt.Sprintf("00000000:%02X:00.0", 0x1b+i), cores: 16896, ccMajor: 9, util: 10 * uint32(i+1), power: 70000,
	}
}

func migSlice(uuid string, gi, ci int, memMB uint64, sms int) MIGDev {
	return MIGDev{Dev: &fakeDev{uuid: uuid, name: "NVIDIA H100 80GB HBM3 MIG " + fmt.Sprint(gi) + "g", total: memMB << 20, used: 0, utilErr: ErrNotSupported}, GPUSlices: gi, ComputeSlices: ci, MemoryMB: memMB, SMs: sms}
}
