package backend

import (
	"context"
	"errors"
	"io"
	"time"
)

// LabelProbe marks the short-lived containers a backend makes to read an
// image's files: never a kernel, whatever other labels they carry.
const LabelProbe = "ai.backend.bai-agent.probe"

// Sentinel errors every implementation maps its failures onto.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")
	ErrUnavailable = errors.New("container engine unavailable")
)

// Mount is one mount of a container.
type Mount struct {
	Type     string // "bind", "volume" or "tmpfs"
	Source   string
	Target   string
	ReadOnly bool
}

// PortBinding publishes a container port on the host.
type PortBinding struct {
	ContainerPort int
	Protocol      string // tcp
	HostIP        string
	HostPort      int
}

// Throttle limits one block device.
type Throttle struct {
	Path string
	Rate uint64
}

// Ulimit is one resource limit.
type Ulimit struct {
	Name       string
	Soft, Hard int64
}

// ContainerSpec is everything needed to create a kernel container.
type ContainerSpec struct {
	Name        string
	Image       string
	Labels      map[string]string
	Env         []string
	Entrypoint  []string
	Cmd         []string
	WorkingDir  string
	Hostname    string
	User        string
	Tty         bool
	OpenStdin   bool
	StopSignal  string
	Init        bool
	CapAdd      []string
	SecurityOpt []string
	Ulimits     []Ulimit
	CpusetCpus  string
	NanoCPUs    int64 // CPU quota in 1e-9 CPUs (0: none)
	Memory      int64
	ShmSize     int64
	// Block I/O throttling (bytes per second per device).
	ReadBps   []Throttle
	WriteBps  []Throttle
	PidsLimit int64
	Mounts    []Mount
	Ports     []PortBinding
	// Network is a network name to join, or "host" for the host's
	// network namespace (no port bindings then).
	Network        string
	NetworkAliases []string
	// NetworkDriverOpts are the endpoint's driver options (overlay: the
	// interface name inside the container).
	NetworkDriverOpts map[string]string
	// ExtraHosts are "name:address" lines for /etc/hosts.
	ExtraHosts []string
	LogDriver  string
	LogOpts    map[string]string
	// Accelerators: GPUs through a device driver (nvidia, cdi), the legacy
	// nvidia runtime, device nodes (/dev/kfd, /dev/dri/renderD*), extra
	// groups.
	Runtime        string
	DeviceRequests []DeviceRequest
	Devices        []DeviceMapping
	GroupAdd       []string
}

// DeviceRequest is HostConfig.DeviceRequests' entry.
type DeviceRequest struct {
	Driver       string
	Count        int
	DeviceIDs    []string
	Capabilities [][]string
	Options      map[string]string
}

// DeviceMapping is HostConfig.Devices' entry.
type DeviceMapping struct {
	PathOnHost, PathInContainer, CgroupPermissions string
}

// EngineInfo is what accelerator plugins need to know about the engine to
// pick how GPUs reach containers.
type EngineInfo struct {
	Name          string // "Docker Engine", "Podman Engine"
	ServerVersion string
	Runtimes      []string
	CDISpecDirs   []string
}

// EngineInspector is implemented by backends that can describe their
// engine.
type EngineInspector interface {
	EngineInfo(ctx context.Context) (*EngineInfo, error)
}

// Container is what the agent needs to know about a container.
type Container struct {
	ID         string
	Name       string
	Image      string
	Labels     map[string]string
	Status     string // created, running, paused, restarting, removing, exited, dead
	Running    bool
	ExitCode   int
	OOMKilled  bool
	Pid        int
	Tty        bool
	StartedAt  time.Time
	FinishedAt time.Time
	CpusetCpus string
	NanoCPUs   int64
	Memory     int64
	ShmSize    int64
	PidsLimit  int64
	WriteBps   []Throttle
	Ports      []PortBinding
	Mounts     []Mount
	// Runtime is HostConfig.Runtime: the OCI runtime the container runs
	// under ("" or "runc": the engine's default).
	Runtime string
}

// Alive reports whether the container counts as active (running,
// restarting or paused), as the real agent groups statuses.
func (c *Container) Alive() bool {
	switch c.Status {
	case "running", "restarting", "paused":
		return true
	}
	return false
}

// Event is a container event from the engine.
type Event struct {
	ContainerID string
	Action      string // start, die, oom, destroy
	Labels      map[string]string
	ExitCode    int
	Time        time.Time
}

// Image is what the agent reads from a local image.
type Image struct {
	ID           string
	Tags         []string
	Labels       map[string]string
	Architecture string
	// Cmd is the image's default command (Config.Cmd).
	Cmd []string
}

// Backend is the runtime contract.
type Backend interface {
	Create(ctx context.Context, spec *ContainerSpec) (string, error)
	Start(ctx context.Context, id string) error
	// Stop sends the stop signal and kills after timeout. A container that
	// is not running is not an error.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Remove force-removes a container and its anonymous volumes. A
	// missing container is not an error.
	Remove(ctx context.Context, id string) error
	Inspect(ctx context.Context, id string) (*Container, error)
	// List returns ALL containers (running or not) whose labels match.
	List(ctx context.Context, labels map[string]string) ([]Container, error)
	// Events streams container events until ctx ends or the stream breaks;
	// the error channel then receives why.
	Events(ctx context.Context) (<-chan Event, <-chan error)
	InspectImage(ctx context.Context, ref string) (*Image, error)
	// ReadImageFile returns a regular file of an image (at most limit
	// bytes), read through a container that is created, never started,
	// and removed. ErrNotFound when the image has no such regular file.
	ReadImageFile(ctx context.Context, ref, path string, limit int64) ([]byte, error)
	// Logs returns stdout+stderr (the tail, at most limit bytes when
	// limit > 0). tty says whether the container has a TTY (raw stream)
	// or not (multiplexed stream).
	Logs(ctx context.Context, id string, tty bool, limit int64) ([]byte, error)
	Ping(ctx context.Context) (string, error)
}

// Progress reports bytes done out of total (total 0 when unknown).
type Progress func(current, total int64)

// Images is the image side of a runtime (optional: the core type-asserts
// for it). Auth is the registry credential as Docker's X-Registry-Auth
// value ("" for none).
type Images interface {
	ListImages(ctx context.Context) ([]Image, error)
	PullImage(ctx context.Context, ref, auth string, progress Progress) error
	PushImage(ctx context.Context, ref, auth string, progress Progress) error
	CommitContainer(ctx context.Context, containerID, ref string, changes []string) (string, error)
	SaveImage(ctx context.Context, ref string, w io.Writer) error
	RemoveImage(ctx context.Context, ref string, force, noPrune bool) error
}

// Networks is the network side of a runtime (optional).
type Networks interface {
	// CreateNetwork creates a bridge network; an existing one is fine.
	CreateNetwork(ctx context.Context, name string, labels map[string]string) error
	// RemoveNetwork removes a network; a missing one is fine.
	RemoveNetwork(ctx context.Context, name string) error
	// ListNetworks lists the networks carrying all the given labels.
	ListNetworks(ctx context.Context, labels map[string]string) ([]Network, error)
	// InspectNetwork describes one network (ErrNotFound when missing).
	InspectNetwork(ctx context.Context, name string) (*Network, error)
}

// Network is what the agent needs to know about a network.
type Network struct {
	ID, Name, Driver string
	Labels           map[string]string
	Created          time.Time
	Subnets          []string
	// Containers is how many containers are attached (on this engine).
	Containers int
}
