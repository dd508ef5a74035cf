package nvidia

import "errors"

// ErrNotSupported is a query the device or driver does not support
// (NVML_ERROR_NOT_SUPPORTED: MIG instances have no temperature, power or
// utilisation). Callers report such values as absent, never as failure.
var ErrNotSupported = errors.New("not supported")

// ErrUnavailable means there is no usable NVML: no driver library, no
// kernel module, no permission.
var ErrUnavailable = errors.New("NVIDIA management library unavailable")

// Lib is the part of NVML the plugin uses.
type Lib interface {
	// Init loads and initialises the library; an error wraps
	// ErrUnavailable with the reason.
	Init() error
	Shutdown() error
	// Path is the library file that was loaded.
	Path() string
	DriverVersion() (string, error)
	// CudaDriverVersion is the driver's CUDA version as an int (12040 =
	// 12.4).
	CudaDriverVersion() (int, error)
	DeviceCount() (int, error)
	Device(i int) (Dev, error)
}

// Dev is one GPU or MIG instance.
type Dev interface {
	UUID() (string, error)
	Name() (string, error)
	// Memory is total and used framebuffer memory in bytes.
	Memory() (total, used uint64, err error)
	// PCIBusID is "00000000:1B:00.0" (NVML's 8-digit domain form).
	PCIBusID() (string, error)
	Minor() (int, error)
	ComputeCapability() (major, minor int, err error)
	// NumCores is the number of CUDA cores (the SM count times the cores
	// per SM of the architecture).
	NumCores() (int, error)
	Utilization() (gpuPercent uint32, err error)
	// Power and PowerLimit are in milliwatts.
	Power() (uint32, error)
	PowerLimit() (uint32, error)
	Temperature() (uint32, error)
	// MIGEnabled tells whether MIG mode is on now.
	MIGEnabled() (bool, error)
	// MIGDevices lists the MIG instances of a GPU in MIG mode.
	MIGDevices() ([]MIGDev, error)
	// ProcessMemory maps the PIDs of running compute processes to their
	// GPU memory in bytes.
	ProcessMemory() (map[int]uint64, error)
}

// MIGDev is a MIG instance with its slice geometry.
type MIGDev struct {
	Dev
	GPUSlices, ComputeSlices int
	MemoryMB                 uint64
	SMs                      int
}
