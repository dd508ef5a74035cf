package agent

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"log/slog"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/bgtask"
	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/ports"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/safefs"
	"github.com/bai-agent/bai-agent/internal/sandbox"
	"github.com/bai-agent/bai-agent/internal/scratch"
	"github.com/bai-agent/bai-agent/internal/vfolder"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// Version is the agent version reported to the manager.
var Version = "26.8.0-bai.0"

// Container labels.
const (
	LabelAgentID           = "ai.backend.agent-id"
	LabelKernelID          = "ai.backend.kernel-id"
	LabelSessionID         = "ai.backend.session-id"
	LabelOwnerUserID       = "ai.backend.owner-user-id"
	LabelOwnerProjectID    = "ai.backend.owner-project-id"
	LabelOwner             = "ai.backend.owner"
	LabelBlockServicePorts = "ai.backend.internal.block-service-ports"
	LabelServicePorts      = "ai.backend.service-ports"
)

// EventSink receives the agent's events (kernel_started, ...). The Redis
// publisher implements it; without a control plane, events are logged.
type EventSink = event.Sink

// LogSink logs events.
type LogSink struct{ Log *slog.Logger }

// Publish implements EventSink.
func (s LogSink) Publish(_ context.Context, ev event.Event) {
	s.Log.Info("event", "name", ev.EventName(), "payload", ev)
}

// Kernel is the registry entry of one kernel: its identity, which never
// changes, its state machine, and the spec its creation published.
type Kernel struct {
	*kernel.Machine
	ID        string
	SessionID string
	// Network is the session network the kernel joined: its name, "host"
	// for the host's namespace, "" for the default bridge. Set before the
	// kernel is registered, never after (the network sweep reads it).
	Network   string
	CreatedAt time.Time

	// spec is what the kernel is made of, published once by its creation
	// (or adoption) and replaced whole by a restart; nil until then.
	spec atomic.Pointer[KernelSpec]
	// own is the kernel's owner goroutine's inbox (owner.go); set by
	// register, never replaced.
	own *owner
	// files bounds the kernel's file RPCs in flight (fileCalls): a kernel
	// whose calls hang (a FUSE mount that never answers, a huge tree)
	// uses up its own slots, not the node's.
	files atomic.Pointer[safefs.Limiter]

	runMu  sync.Mutex
	runner *coderunner.Client
}

// KernelSpec is what a kernel is made of: its image, configuration,
// allocation, host ports, scratch, environment and container. The
// creation builds it privately and publishes it once; after that it is
// never written: a restart publishes a changed copy (clone). Every reader
// (RPC, stats, heartbeat, sync, files) holds a consistent snapshot.
type KernelSpec struct {
	ImageRef   wire.ImageRef
	ImageName  string
	Kernelspec int
	Config     CreationConfig
	Allocation resource.Allocation
	// Resources is the resource spec written to resource.txt (slots,
	// allocation, scratch size, mounts).
	Resources *resource.Spec
	Scratch   scratch.Dir
	ReplIn    int
	ReplOut   int
	Services  []image.ServicePort
	HostPorts []int
	Environ   map[string]string
	// RuntimeType and RuntimePath are the runner's runtime (the image's
	// ai.backend.runtime-type and runtime-path labels).
	RuntimeType string
	RuntimePath string
	ContainerID string
	// Pid is the container's main process on the host (0: unknown).
	// Under gVisor it is the sandbox's process, not the kernel's.
	Pid int
	// OCIRuntime is the runtime the container runs under
	// (HostConfig.Runtime; "": the engine's default).
	OCIRuntime string
}

// kernelUser is the kernel user's uid and gid (LOCAL_USER_ID and
// LOCAL_GROUP_ID); false when unknown.
func (s *KernelSpec) kernelUser() (uid, gid int, ok bool) {
	if s == nil {
		return 0, 0, false
	}
	u, err1 := strconv.Atoi(s.Environ["LOCAL_USER_ID"])
	g, err2 := strconv.Atoi(s.Environ["LOCAL_GROUP_ID"])
	return u, g, err1 == nil && err2 == nil
}

// clone is a copy a restart may change: the maps and slices it changes
// are new.
func (s *KernelSpec) clone() *KernelSpec {
	c := *s
	c.Environ = maps.Clone(s.Environ)
	c.Config.Environ = maps.Clone(s.Config.Environ)
	c.Services = append([]image.ServicePort(nil), s.Services...)
	if s.Resources != nil {
		r := *s.Resources
		c.Resources = &r
	}
	return &c
}

// Spec returns the kernel's published spec; nil while it is being
// created.
func (k *Kernel) Spec() *KernelSpec { return k.spec.Load() }

// publish makes s the kernel's spec; s is not written after this.
func (k *Kernel) publish(s *KernelSpec) { k.spec.Store(s) }

// Pid returns the container's main process id on the host (0 if unknown).
func (k *Kernel) Pid() int {
	if s := k.Spec(); s != nil {
		return s.Pid
	}
	return 0
}

// ContainerID returns the kernel's current container id ("" while it is
// being created).
func (k *Kernel) ContainerID() string {
	if s := k.Spec(); s != nil {
		return s.ContainerID
	}
	return ""
}

// maxFileCallsPerKernel bounds one kernel's file RPCs in flight.
const maxFileCallsPerKernel = 16

// fileCalls is the kernel's file-RPC limiter.
func (k *Kernel) fileCalls() *safefs.Limiter {
	if l := k.files.Load(); l != nil {
		return l
	}
	k.files.CompareAndSwap(nil, safefs.NewLimiter(maxFileCallsPerKernel))
	return k.files.Load()
}

// Agent is the node agent core.
type Agent struct {
	cfg     *config.Config
	id      string
	log     *slog.Logger
	be      backend.Backend
	plugins []device.Plugin
	// accels are the accelerator plugins (also in plugins), in the
	// configured allocation order.
	accels []device.Accelerator
	// sharedAccels: the accelerators are the process's (multi-agent
	// mode); Close leaves them open.
	sharedAccels bool
	alloc        *resource.Allocator
	slotTypes    map[resource.SlotName]resource.SlotType
	slots        *slotScanner // the periodic device rescan (slots.go)
	scratch      *scratch.Manager
	ports        *ports.Pool
	mounts       vfolder.Policy
	events       EventSink
	logs         LogCollector
	onSync       func(error)
	onChange     func(kernelID string, running bool)
	engine       *engineMonitor
	khost        string
	stepFail     func(op, step string)
	// createPlan is createSteps; tests substitute a plan with a failing
	// step.
	createPlan []step[*createJob]
	sem        chan struct{}
	bindHost   string
	krunner    string // the runner binary, when kernel-runner is on
	// sandbox is [container] sandbox-type: the runtime kernels get.
	sandbox  sandbox.Policy
	stopTime time.Duration
	pullTime time.Duration

	reg *registry

	tasks *bgtask.Manager
	// The parts the agent is composed of.
	*imageService
	*networks
	*fileOps
	*runnerOps

	bg sync.WaitGroup
	// life ends with Close (New to Close, unlike ctx): kernel owners and
	// what they start beside them stop with it.
	life    context.Context
	endLife context.CancelFunc
	owners  sync.WaitGroup // kernel owners and their helpers
	// subscribed is closed once the event watcher has asked the engine
	// for its event stream (Start waits for it before recovering).
	subscribed     chan struct{}
	subscribedOnce sync.Once
	cancel         context.CancelFunc
	// ctx is the agent's run context (Start to Close), for background
	// work that outlives an RPC.
	ctx    context.Context
	syncCh chan struct{}
	// assigned holds the ports AssignPort handed out that no kernel has
	// claimed yet.
	assignedMu sync.Mutex
	assigned   map[int]bool
	closed     chan struct{}
	// syncs counts finished sync passes (tests wait on it).
	syncs atomic.Uint64
}

// LogCollector keeps a finished container's logs for the manager.
type LogCollector interface {
	CollectLogs(ctx context.Context, kernelID, containerID string, logs []byte) error
}

// Options configure New.
type Options struct {
	// Logs, if set, receives each kernel's logs before its container is
	// removed.
	Logs LogCollector
	// OnSync, if set, is called after each sync pass with its error.
	OnSync func(error)
	// Timeouts bound the container-runtime calls (zero fields: defaults).
	Timeouts Timeouts
	// OnStepFailure, if set, hears the operation ("create", "clean",
	// "restart") and step name of every failed step (the
	// backendai_kernel_create_step_failures_total metric).
	OnStepFailure func(op, step string)
	// TaskObserver, if set, hears background tasks start and end.
	TaskObserver bgtask.Observer
	// KernelHost is kernel_host in creation results (where service ports
	// are dialled); "" derives it from [container] and [agent] alone.
	KernelHost string
	// OnKernelChange, if set, is called when a kernel starts running
	// (running true) and once it has been cleaned (false); the Redis
	// presence keys follow there. It must not block.
	OnKernelChange func(kernelID string, running bool)
	Config         *config.Config
	Backend        backend.Backend
	Log            *slog.Logger
	Events         EventSink
	Host           *device.Host // nil: scan this machine
	// Accelerators are the loaded accelerator plugins (cuda, rocm, tpu,
	// mock); the agent owns them from here and closes them in Close.
	Accelerators []device.Accelerator
	Getenv       func(string) string
	// StopTimeout is how long destroy waits for a kernel to stop before
	// SIGKILL (Docker's default is 10 s).
	StopTimeout time.Duration
	// PullTimeout bounds an image pull (default: [api] pull-timeout, which
	// etcd config/agent/api overrides).
	PullTimeout time.Duration
	// Shared, set in multi-agent mode, is the allocator and host-port
	// pools this agent shares with the process's other agents (nil: its
	// own; with [resource] shared-overcommit, the agent keeps its own
	// allocator and shares the ports only). The accelerators are then the
	// process's and Close leaves them open.
	Shared *Shared
	// PortProbe replaces the host-port probe (tests on the fake runtime
	// touch no real port); nil binds each port on bind-host for a moment.
	PortProbe func(port int) bool
}

// ForbidEphemeralPortsEnv, set to 1 (the test suite does), turns the
// warning about a port-range inside the host's ephemeral range into a
// start-up error: such a range makes kernels' starts fail at random.
const ForbidEphemeralPortsEnv = "BAI_TEST_FORBID_EPHEMERAL_PORTS"

// KernelView is what a kernel shows to readers outside its lifecycle
// (ctl's status, listings).
type KernelView struct {
	ID, SessionID string
	State         kernel.State
	// The rest is known once the kernel runs; before, it is empty.
	ImageName   string
	ContainerID string
	Allocation  resource.Allocation
	ReplIn      int
	ReplOut     int
	Services    []image.ServicePort
	CreatedAt   time.Time
}

// View returns the kernel as readers may see it: a kernel still being
// created shows its id and state only.
func (k *Kernel) View() KernelView {
	v := KernelView{ID: k.ID, SessionID: k.SessionID, State: k.State(), CreatedAt: k.CreatedAt}
	switch v.State {
	case kernel.Preparing, kernel.Pulling, kernel.Creating:
		return v
	}
	sp := k.Spec()
	if sp == nil {
		return v
	}
	v.ImageName, v.ContainerID, v.Allocation = sp.ImageName, sp.ContainerID, sp.Allocation
	v.ReplIn, v.ReplOut, v.Services = sp.ReplIn, sp.ReplOut, sp.Services
	return v
}

// New builds the agent: plugins, allocator, scratch, ports. It does not
// touch containers; Start does.
func New(ctx context.Context, o Options) (*Agent, error) {
	cfg := o.Config
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Events == nil {
		o.Events = LogSink{Log: o.Log}
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.PullTimeout == 0 {
		o.PullTimeout = time.Duration(float64(cfg.API.PullTimeout) * float64(time.Second))
	}
	var host device.Host
	if o.Host != nil {
		host = *o.Host
	} else {
		h, err := device.ScanHost()
		if err != nil {
			return nil, fmt.Errorf("scan host: %w", err)
		}
		host = h
	}
	cpuF, err := device.OvercommitFactor("BACKEND_CPU_OVERCOMMIT_FACTOR", o.Getenv)
	if err != nil {
		return nil, err
	}
	memF, err := device.OvercommitFactor("BACKEND_MEM_OVERCOMMIT_FACTOR", o.Getenv)
	if err != nil {
		return nil, err
	}
	cpu, err := device.NewCPUPlugin(host, cpuF, cfg.Resource.ReservedCPU, resource.Strategy(cfg.Resource.CPUAllocStrategy))
	if err != nil {
		return nil, fmt.Errorf("resource.reserved-cpu: %w", err)
	}
	mem, err := device.NewMemPlugin(host, memF, int64(cfg.Resource.ReservedMem), int64(cfg.Resource.MemoryAlignSize))
	if err != nil {
		return nil, fmt.Errorf("resource.reserved-mem: %w", err)
	}
	a := &Agent{
		cfg:        cfg,
		id:         cfg.Agent.ID,
		log:        o.Log.With("agent_id", cfg.Agent.ID),
		be:         &timedBackend{inner: o.Backend, t: o.Timeouts.withDefaults()},
		plugins:    []device.Plugin{cpu, mem},
		slotTypes:  map[resource.SlotName]resource.SlotType{},
		events:     o.Events,
		logs:       o.Logs,
		onSync:     o.OnSync,
		onChange:   o.OnKernelChange,
		khost:      o.KernelHost,
		stepFail:   o.OnStepFailure,
		createPlan: createSteps,
		sem:        make(chan struct{}, cfg.Agent.KernelCreationConcurrency),
		reg:        newRegistry(),
		stopTime:   o.StopTimeout,
		pullTime:   o.PullTimeout,
		syncCh:     make(chan struct{}, 1),
		assigned:   map[int]bool{},
		closed:     make(chan struct{}),
	}
	if a.sandbox, err = sandbox.NewPolicy(cfg.Container.SandboxType); err != nil {
		return nil, err
	}
	a.life, a.endLife = context.WithCancel(context.Background())
	a.subscribed = make(chan struct{})
	a.engine = newEngineMonitor(a.be, a.log, a.requestSync)
	a.tasks = bgtask.New(func(ctx context.Context, ev event.Event) {
		a.events.Publish(ctx, ev)
		if f, ok := ev.(event.BgtaskFailed); ok && f.Message != nil {
			// A failed background task is an agent error too.
			a.events.Publish(ctx, event.NewAgentError(*f.Message, "background task "+f.TaskID))
		}
	})
	a.tasks.SetObserver(o.TaskObserver)
	a.networks = newNetworks(a.be, a.id, a.log, a.Kernels)
	a.imageService = newImageService(a.be, cfg, a.id, a.log, a.events, a.tasks, a.pullTime, a.reg.running)
	a.fileOps = newFileOps(a.reg, a.be)
	a.runnerOps = &runnerOps{reg: a.reg, events: a.events, log: a.log, closed: a.closed, runCtx: a.runCtx, bg: &a.bg,
		life: a.life, owners: &a.owners, destroy: a.DestroyKernel}
	if cfg.Container.KernelRunner {
		if a.krunner, err = ResolveKrunner(cfg.Container.KrunnerBinary, o.Getenv); err != nil {
			return nil, err
		}
	}
	keys := map[resource.DeviceName]bool{"cpu": true, "mem": true}
	for _, acc := range o.Accelerators {
		if keys[acc.Key()] {
			return nil, fmt.Errorf("two compute plugins use the device name %q (for example the cuda plugin and a mock with slot_name = %q): allow only one", acc.Key(), acc.Key())
		}
		keys[acc.Key()] = true
		for _, s := range acc.Slots() {
			if s.Name.DeviceName() != acc.Key() {
				return nil, fmt.Errorf("compute plugin %s: slot %s must start with %q", acc.Key(), s.Name, string(acc.Key())+".")
			}
		}
		a.plugins = append(a.plugins, acc)
	}
	a.accels = orderAccelerators(o.Accelerators, cfg.Resource.AllocationOrder)
	var maps []*resource.AllocMap
	avail := resource.Slots{}
	for _, p := range a.plugins {
		for _, s := range p.Slots() {
			a.slotTypes[s.Name] = s.Type
		}
		ms, err := p.AllocMaps(resource.AffinityPolicy(cfg.Resource.AffinityPolicy))
		if err != nil {
			return nil, err
		}
		maps = append(maps, ms...)
		for k, v := range p.Available() {
			avail[k] = v
		}
	}
	buildAlloc := func() *resource.Allocator {
		al := resource.NewAllocator(maps, a.slotTypes, avail, cfg.Resource.AllocationOrder)
		for _, acc := range a.accels {
			al.SetExclusive(acc.Key(), acc.ExclusiveSlots())
		}
		return al
	}
	if o.Shared != nil {
		a.sharedAccels = true
	}
	if o.Shared != nil && !cfg.Resource.SharedOvercommit {
		a.alloc, _ = o.Shared.allocator(buildAlloc)
	} else {
		a.alloc = buildAlloc()
	}
	uid, gid := cfg.Container.KernelUID, cfg.Container.KernelGID
	a.scratch = &scratch.Manager{Root: cfg.Container.ScratchRoot, Type: cfg.Container.ScratchType, Size: int64(cfg.Container.ScratchSize), UID: uid, GID: gid}
	if err := a.scratch.Check(ctx); err != nil {
		return nil, fmt.Errorf("container.scratch-type %s: %w", cfg.Container.ScratchType, err)
	}
	a.bindHost = cfg.Container.BindHost
	if a.bindHost == "" {
		a.bindHost = "0.0.0.0"
	}
	if over, msg := ports.OverlapsEphemeral(cfg.Container.PortRange[0], cfg.Container.PortRange[1]); over {
		if os.Getenv(ForbidEphemeralPortsEnv) == "1" {
			return nil, fmt.Errorf("container.port-range: %s (%s=1)", msg, ForbidEphemeralPortsEnv)
		}
		a.log.Warn("kernels' host ports may be taken by outgoing connections", "reason", msg)
	}
	buildPorts := func() *ports.Pool {
		return ports.New(cfg.Container.PortRange[0], cfg.Container.PortRange[1], ports.Options{
			Cooldown:  time.Duration(float64(cfg.Container.PortReuseCooldownSec) * float64(time.Second)),
			ProbeHost: a.bindHost,
			Probe:     o.PortProbe,
		})
	}
	if o.Shared != nil {
		a.ports = o.Shared.portPool(cfg.Container.PortRange, buildPorts)
	} else {
		a.ports = buildPorts()
	}
	roots := append([]string{}, cfg.Agent.ExtraMountRoots...)
	if cfg.Agent.MountPath != "" {
		roots = append(roots, cfg.Agent.MountPath)
	}
	// The scratch root holds every kernel's secrets (runner keys): never
	// a vfolder, nor inside one, whatever the configured list says.
	deny := append(slices.Clone(cfg.Container.VFolderDenyPaths), cfg.Container.ScratchRoot)
	a.mounts = vfolder.Policy{Mode: cfg.Container.VFolderMountPolicy, HostRoots: roots, KernelRoots: cfg.Container.AllowedKernelMountRoots, Deny: deny}
	return a, nil
}

// onStepFail reports a failed step to the OnStepFailure hook.
func (a *Agent) onStepFail(op, step string) {
	a.log.Warn("kernel operation step failed", "op", op, "step", step)
	if a.stepFail != nil {
		a.stepFail(op, step)
	}
}

// Log returns the agent's logger.
func (a *Agent) Log() *slog.Logger { return a.log }

// ID returns the agent id.
func (a *Agent) ID() string { return a.id }

// Config returns the agent's configuration.
func (a *Agent) Config() *config.Config { return a.cfg }

// Allocator exposes the allocator (read-only use: hwinfo, tests).
func (a *Agent) Allocator() *resource.Allocator { return a.alloc }

// Ports exposes the port pool (read-only use: tests, assign_port).
func (a *Agent) Ports() *ports.Pool { return a.ports }

// orderAccelerators sorts plugins by [resource] allocation-order (unknown
// names last, by name), the order upstream builds attached_devices in.
func orderAccelerators(accs []device.Accelerator, order []string) []device.Accelerator {
	rank := map[string]int{}
	for i, n := range order {
		rank[n] = i + 1
	}
	out := append([]device.Accelerator{}, accs...)
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := rank[string(out[i].Key())], rank[string(out[j].Key())]
		if ri == 0 {
			ri = len(order) + 1
		}
		if rj == 0 {
			rj = len(order) + 1
		}
		if ri != rj {
			return ri < rj
		}
		return out[i].Key() < out[j].Key()
	})
	return out
}

// Accelerators returns the accelerator plugins in allocation order.
func (a *Agent) Accelerators() []device.Accelerator { return a.accels }

// Plugins returns the compute plugins.
func (a *Agent) Plugins() []device.Plugin { return a.plugins }

// SlotTypes returns every slot and its type.
func (a *Agent) SlotTypes() map[resource.SlotName]resource.SlotType { return a.slotTypes }

// Start recovers running kernels and starts the event watcher and the
// sync loop. They stop when ctx ends or Close is called.
func (a *Agent) Start(ctx context.Context) error {
	if _, err := a.be.Ping(ctx); err != nil {
		return fmt.Errorf("container engine: %w", err)
	}
	if err := a.checkSandbox(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	a.ctx = ctx
	// Watch events before listing, so a container dying during recovery is
	// not missed; the sync loop covers anything that still slips through.
	a.bg.Add(1)
	go a.watchEvents(ctx)
	// Recovery lists containers only once the event stream is asked for:
	// an exit between the two would otherwise wait for the sync loop.
	select {
	case <-a.subscribed:
	case <-time.After(5 * time.Second):
		a.log.Warn("container event stream not subscribed after 5 s; the sync loop will catch what it misses")
	case <-ctx.Done():
	}
	if err := a.recover(ctx); err != nil {
		cancel()
		a.bg.Wait()
		return fmt.Errorf("recover kernels: %w", err)
	}
	if a.cfg.Agent.SyncContainerLifecycles.Enabled {
		a.bg.Add(1)
		go a.syncLoop(ctx)
	}
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		a.engine.run(ctx)
	}()
	a.slots = startSlotScanner(ctx, a)
	a.events.Publish(ctx, event.AgentStarted{Reason: "self-started"})
	return nil
}

// Close stops the background loops. Kernels keep running (SIGINT and
// SIGTERM alike leave containers alone, as the real agent does).
func (a *Agent) Close() {
	select {
	case <-a.closed:
		return
	default:
		close(a.closed)
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.endLife()
	a.tasks.Close()
	a.bg.Wait()
	a.owners.Wait()
	// Kernels keep running; their runners wait for the next agent.
	for _, k := range a.Kernels() {
		if c := k.Runner(); c != nil {
			k.setRunner(nil)
			c.Close()
		}
	}
	for _, acc := range a.accels {
		if a.sharedAccels {
			break // the process closes them after its last agent
		}
		if err := acc.Close(); err != nil {
			a.log.Warn("closing compute plugin", "plugin", acc.Key(), "error", err)
		}
	}
	a.events.Publish(context.Background(), event.AgentTerminated{Reason: "shutdown"})
}

// Kernel returns a registry entry.
func (a *Agent) Kernel(id string) (*Kernel, bool) { return a.reg.get(id) }

// Kernels returns every registry entry, sorted by id.
func (a *Agent) Kernels() []*Kernel { return a.reg.list() }

// register enters k in the registry (refusing a duplicate id) and starts
// its owner.
func (a *Agent) register(k *Kernel) error {
	k.own = newOwner()
	return a.reg.add(k, a.startOwner)
}

func (a *Agent) unregister(id string, k *Kernel) { a.reg.remove(id, k) }

// IsCreating reports whether a kernel is being created or already in the
// registry (check_creating).
func (a *Agent) IsCreating(id string) bool {
	_, ok := a.Kernel(id)
	return ok
}

// IsRunning reports whether a kernel is RUNNING (check_running).
func (a *Agent) IsRunning(id string) bool {
	k, ok := a.Kernel(id)
	return ok && k.State() == kernel.Running
}

// Architecture returns the host architecture in Backend.AI's spelling.
func Architecture() string { return image.NormalizeArch(runtime.GOARCH) }

func (a *Agent) remember(id string, t kernel.Termination) { a.reg.remember(id, t) }

// LastTermination tells how a recently terminated kernel ended (reason,
// exit code, out-of-memory, shared-memory exhaustion).
func (a *Agent) LastTermination(id string) (kernel.Termination, bool) { return a.reg.termination(id) }

// MarkOOM records that a kernel's cgroup saw an out-of-memory kill, so its
// termination reports it even when the main process survives a while.
func (a *Agent) MarkOOM(kernelID string) {
	if k, ok := a.Kernel(kernelID); ok {
		k.SetTermination(kernel.Termination{OOMKilled: true})
		// The runner logs it (upstream's notify_event "oom"); a run whose
		// process was killed reports -9 itself.
		if c := k.Runner(); c != nil {
			_ = c.Event("oom", map[string]any{})
		}
	}
}

// runCtx is the agent's run context (Background before Start).
func (a *Agent) runCtx() context.Context {
	if a.ctx == nil {
		return context.Background()
	}
	return a.ctx
}
