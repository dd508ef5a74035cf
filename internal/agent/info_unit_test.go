package agent

// What the agent reports about itself and its node (agent_info,
// stat targets, the GPU allocation map, accelerator measures), the node
// resources the manager hands out (assign_port), do_volume_mount's
// refusals, and the registry calls of the manager (check_creating,
// check_running, sync_kernel_registry, reset_agent), on the fake runtime.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/device/mock"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// unitMockGPU is the mock accelerator plugin (two "cuda" devices,
// gpu-a and gpu-b, with fixed statistics) or, with conf, another mock.
func unitMockGPU(t *testing.T, conf string) device.Accelerator {
	t.Helper()
	if conf == "" {
		conf = testutil.MockTwoGPUs
	}
	path := filepath.Join(t.TempDir(), "mock-accelerator.toml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := mock.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := mock.New(cfg, device.ShareConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func unitWithGPU(t *testing.T) func(*Options) {
	acc := unitMockGPU(t, "")
	return func(o *Options) { o.Accelerators = []device.Accelerator{acc} }
}

func TestAgentInfo_Fake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                                  string
		publicHost, advertised, bind, wantPub string
		ip, wantIP                            string
	}{
		{"public host wins", "pub.example", "adv.example", "127.0.0.1", "pub.example", "10.0.0.1", "10.0.0.1"},
		{"advertised host next", "", "adv.example", "127.0.0.1", "adv.example", "", "rpc.example"},
		{"bind host last", "", "", "127.0.0.2", "127.0.0.2", "", "rpc.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCore(t, func(cfg *config.Config) {
				cfg.Agent.PublicHost, cfg.Container.AdvertisedHost, cfg.Container.BindHost = tc.publicHost, tc.advertised, tc.bind
				cfg.Agent.Region, cfg.Agent.InitialResourceGroupName = "eu-1", "gpu-group"
				cfg.Agent.ForceTerminateAbusingContainers = true
				cfg.Agent.RPCListenAddr.Host = "rpc.example"
			}, unitWithGPU(t))
			info := c.agent.AgentInfo(InfoOptions{IP: tc.ip, Addr: "tcp://x:6001", PublicKey: "key"})
			if info.PublicHost != tc.wantPub || info.IP != tc.wantIP {
				t.Fatalf("public host %q ip %q, want %q %q", info.PublicHost, info.IP, tc.wantPub, tc.wantIP)
			}
			if info.Region != "eu-1" || info.ScalingGroup != "gpu-group" || info.Addr != "tcp://x:6001" || info.PublicKey != "key" ||
				!info.AutoTerminateAbusing || info.Version != Version || info.Architecture != Architecture() {
				t.Fatalf("agent info %+v", info)
			}
			if len(info.Plugins) != 3 || info.Plugins["cpu"].Extra["agent_version"] != Version || info.Plugins["cuda"].Version == "" {
				t.Fatalf("plugins %+v", info.Plugins)
			}
			if !info.Available["cuda.device"].Equal(decimal.NewFromInt(2)) || !info.Available["cpu"].Equal(decimal.NewFromInt(4)) {
				t.Fatalf("available %v", info.Available)
			}
			if info.SlotTypes["cuda.device"] == "" || info.SlotTypes["mem"] != resource.SlotType("bytes") {
				t.Fatalf("slot types %v", info.SlotTypes)
			}
		})
	}
}

// The agent's accessors describe what it was built with.
func TestAgentAccessors_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, unitWithGPU(t))
	a := c.agent
	if a.ID() != c.cfg.Agent.ID || a.Config() != c.cfg || a.Log() == nil {
		t.Fatal("id, config or log")
	}
	if len(a.Accelerators()) != 1 || a.Accelerators()[0].Key() != "cuda" {
		t.Fatalf("accelerators %v", a.Accelerators())
	}
	var keys []string
	for _, p := range a.Plugins() {
		keys = append(keys, string(p.Key()))
	}
	if strings.Join(keys, ",") != "cpu,mem,cuda" {
		t.Fatalf("plugins %v", keys)
	}
	if _, ok := a.SlotTypes()["cuda.device"]; !ok {
		t.Fatalf("slot types %v", a.SlotTypes())
	}
	if got := a.KernelHost(); got != "127.0.0.1" {
		t.Fatalf("kernel host %q", got)
	}
}

// Accelerators are ordered by [resource] allocation-order, the others
// after them by name.
func TestOrderAccelerators_Fake(t *testing.T) {
	t.Parallel()
	cuda := unitMockGPU(t, "")
	rocm := unitMockGPU(t, strings.Replace(testutil.MockTwoGPUs, `slot_name = "cuda"`, `slot_name = "rocm"`, 1))
	tpu := unitMockGPU(t, strings.Replace(testutil.MockTwoGPUs, `slot_name = "cuda"`, `slot_name = "tpu"`, 1))
	for _, tc := range []struct {
		order []string
		want  string
	}{
		{nil, "cuda,rocm,tpu"},
		{[]string{"tpu"}, "tpu,cuda,rocm"},
		{[]string{"rocm", "cuda"}, "rocm,cuda,tpu"},
		{[]string{"tpu", "rocm", "cuda"}, "tpu,rocm,cuda"},
	} {
		got := orderAccelerators([]device.Accelerator{tpu, cuda, rocm}, tc.order)
		var keys []string
		for _, a := range got {
			keys = append(keys, string(a.Key()))
		}
		if strings.Join(keys, ",") != tc.want {
			t.Errorf("order %v: %v, want %s", tc.order, keys, tc.want)
		}
	}
}

// unitRenamed is an accelerator that claims another device name.
type unitRenamed struct {
	device.Accelerator
	key resource.DeviceName
}

func (r unitRenamed) Key() resource.DeviceName { return r.key }

// Two plugins with one device name, or a plugin with a slot of another
// device, are refused.
func TestNewRefusesPluginClash_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	cuda := unitMockGPU(t, "")
	for _, tc := range []struct {
		accs []device.Accelerator
		want string
	}{
		{[]device.Accelerator{unitRenamed{cuda, "cpu"}}, `device name "cpu"`},
		{[]device.Accelerator{cuda, cuda}, `device name "cuda"`},
		{[]device.Accelerator{unitRenamed{cuda, "rocm"}}, `must start with "rocm."`},
	} {
		o := c.opts
		o.Accelerators = tc.accs
		if _, err := New(context.Background(), o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

// A GPU kernel: the allocation map, the GPU environment written for the
// kernel, stat targets and accelerator measures.
func TestGPUKernel_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, unitWithGPU(t))
	if m := c.agent.ScanGPUAllocMap(); len(m) != 0 {
		t.Fatalf("allocation map without kernels: %v", m)
	}
	info, err := c.create(func(r *CreationConfig) {
		r.ResourceSlots["cuda.device"] = "1"
		r.OwnerUserID, r.OwnerProjectID = "user-1", "project-1"
	})
	if err != nil {
		t.Fatal(err)
	}
	m := c.agent.ScanGPUAllocMap()
	if len(m) != 1 || (m["gpu-a"] != "1" && m["gpu-b"] != "1") {
		t.Fatalf("allocation map %v", m)
	}
	if got := info.Attached["cuda"]; len(got) != 1 {
		t.Fatalf("attached devices %+v", info.Attached)
	}
	env := unitEnviron(t, c, info.ContainerID)
	if env["GPU_COUNT"] != "1" || env["N_GPUS"] != "1" {
		t.Fatalf("GPU environment: GPU_COUNT=%q N_GPUS=%q", env["GPU_COUNT"], env["N_GPUS"])
	}
	ev, ok := c.events.find("kernel_started", info.ID)
	if !ok {
		t.Fatal("no kernel_started")
	}
	if !strings.Contains(strings.ToLower(fmt.Sprint(ev)), "mock h100") {
		t.Fatalf("kernel_started does not name the device model: %v", ev)
	}

	targets := c.agent.StatTargets()
	if len(targets) != 1 {
		t.Fatalf("stat targets %+v", targets)
	}
	st := targets[0]
	if st.KernelID != info.ID || st.ContainerID != info.ContainerID || st.Pid <= 0 || st.UserID != "user-1" || st.ProjectID != "project-1" ||
		st.ScratchDir != unitMountSource(t, c, info.ContainerID, "/home/work") {
		t.Fatalf("stat target %+v", st)
	}
	nodes := c.agent.AcceleratorNodeMeasures(context.Background())
	if len(nodes) == 0 {
		t.Fatal("no accelerator node measures")
	}
	cms := c.agent.AcceleratorContainerMeasures(context.Background())
	found := false
	for _, cm := range cms {
		for kid := range cm.PerKernel {
			if kid == info.ID {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no accelerator measure of the kernel: %+v", cms)
	}
	k, _ := c.agent.Kernel(info.ID)
	if err := c.agent.DestroyKernel(context.Background(), info.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	if m := c.agent.ScanGPUAllocMap(); len(m) != 0 {
		t.Fatalf("allocation map after destroy: %v", m)
	}
	if ts := c.agent.StatTargets(); len(ts) != 0 {
		t.Fatalf("stat targets after destroy: %+v", ts)
	}
}

// Without accelerators there is nothing to measure and no GPU.
func TestNoAccelerators_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cms := c.agent.AcceleratorContainerMeasures(context.Background()); cms != nil {
		t.Fatalf("measures %v", cms)
	}
	if ns := c.agent.AcceleratorNodeMeasures(context.Background()); len(ns) != 0 {
		t.Fatalf("node measures %v", ns)
	}
	if env := unitEnviron(t, c, info.ContainerID); env["GPU_COUNT"] != "0" || env["N_GPUS"] != "0" {
		t.Fatalf("GPU environment without GPUs: %q %q", env["GPU_COUNT"], env["N_GPUS"])
	}
}

// unitEnviron reads the environ.txt the agent wrote for a kernel (its
// /home/config on the host).
func unitEnviron(t *testing.T, c *core, containerID string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(unitMountSource(t, c, containerID, "/home/config"), "environ.txt"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	return env
}

func TestAssignPort_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	lo, hi := c.cfg.Container.PortRange[0], c.cfg.Container.PortRange[1]
	var got []int
	for i := 0; i <= hi-lo; i++ {
		p, err := c.agent.AssignPort()
		if err != nil {
			t.Fatal(err)
		}
		if p < lo || p > hi {
			t.Fatalf("port %d outside %d-%d", p, lo, hi)
		}
		got = append(got, p)
	}
	if _, err := c.agent.AssignPort(); err == nil {
		t.Fatal("a port beyond the range")
	}
	if c.agent.Ports().InUse() != len(got) {
		t.Fatalf("in use %d", c.agent.Ports().InUse())
	}
	// A kernel cannot be created while the manager holds every port.
	if _, err := c.create(nil); err == nil {
		t.Fatal("a kernel without ports")
	}
	for _, p := range got {
		c.agent.ReleasePort(p)
	}
	if c.agent.Ports().InUse() != 0 {
		t.Fatal("ports not released")
	}
	// Released ports are free again at once (no cooldown for them).
	if _, err := c.create(nil); err != nil {
		t.Fatal(err)
	}
}

func TestHandleVolume_Fake(t *testing.T) {
	t.Parallel()
	mountPath := t.TempDir()
	for _, tc := range []struct {
		name                      string
		cohabiting                bool
		mountPath                 string
		mount                     bool
		dir, loc, fsType, options string
		wantTarget, wantErr       string
	}{
		{name: "cohabiting storage proxy", cohabiting: true, mountPath: mountPath, mount: true, dir: "v1", loc: "/nonexistent"},
		{name: "dir name with a slash", mountPath: mountPath, mount: true, dir: "../etc", wantErr: "plain name"},
		{name: "no mount path", mount: true, dir: "v1", wantErr: "mount-path is not configured"},
		{name: "unmount of nothing mounted", mountPath: mountPath, dir: "v2", wantTarget: filepath.Join(mountPath, "v2")},
		{name: "mount(8) fails", mountPath: mountPath, mount: true, dir: "v3", loc: "/nonexistent-device-for-bai-test", fsType: "no-such-fs", options: "ro",
			wantTarget: filepath.Join(mountPath, "v3"), wantErr: "mount /nonexistent-device-for-bai-test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCore(t, func(cfg *config.Config) {
				cfg.Agent.CohabitingStorageProxy = tc.cohabiting
				cfg.Agent.MountPath = tc.mountPath
			}, nil)
			target, msg := c.agent.HandleVolumeRequest(context.Background(), VolumeRequest{Mount: tc.mount, DirName: tc.dir, FSLocation: tc.loc, FSType: tc.fsType, CmdOptions: tc.options})
			if target != tc.wantTarget || (tc.wantErr == "") != (msg == "") || !strings.Contains(msg, tc.wantErr) {
				t.Fatalf("HandleVolume = %q, %q; want %q, %q", target, msg, tc.wantTarget, tc.wantErr)
			}
		})
	}
	// The unmount removed the (empty) mount point.
	if err := os.Mkdir(filepath.Join(mountPath, "v4"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newCore(t, func(cfg *config.Config) { cfg.Agent.CohabitingStorageProxy, cfg.Agent.MountPath = false, mountPath }, nil)
	if _, msg := c.agent.HandleVolumeRequest(context.Background(), VolumeRequest{DirName: "v4"}); msg != "" {
		t.Fatal(msg)
	}
	if _, err := os.Stat(filepath.Join(mountPath, "v4")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mount point left: %v", err)
	}
}

// check_creating and check_running; an OOM mark survives into the
// termination.
func TestRegistryQueries_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.agent.IsCreating(info.ID) || !c.agent.IsRunning(info.ID) {
		t.Fatal("a running kernel is not creating/running")
	}
	if c.agent.IsCreating("nope") || c.agent.IsRunning("nope") {
		t.Fatal("an unknown kernel is creating/running")
	}
	c.agent.MarkOOM(info.ID)
	c.agent.MarkOOM("nope") // no kernel: nothing happens
	k, _ := c.agent.Kernel(info.ID)
	if err := c.agent.DestroyKernel(context.Background(), info.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	term, ok := c.agent.LastTermination(info.ID)
	if !ok || !term.OOMKilled || term.Reason != ReasonUserRequested {
		t.Fatalf("termination %+v %v", term, ok)
	}
	if c.agent.IsRunning(info.ID) || c.agent.IsCreating(info.ID) {
		t.Fatal("a destroyed kernel is still running")
	}
}

// sync_kernel_registry: the manager's kernels unknown here are reported
// terminated, this agent's kernels the manager does not know are
// destroyed quietly, the others stay.
func TestSyncKernelRegistry_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	keep, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	drop, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	kk, _ := c.agent.Kernel(keep.ID)
	if err := c.agent.SyncKernelRegistry(context.Background(), [][2]string{{keep.ID, kk.SessionID}, {"ghost", "ghost-session"}}); err != nil {
		t.Fatal(err)
	}
	if !c.agent.IsRunning(keep.ID) {
		t.Fatal("a kernel the manager knows was destroyed")
	}
	if c.agent.IsCreating(drop.ID) {
		t.Fatal("a kernel the manager does not know is still there")
	}
	if _, ok := c.events.find("kernel_terminated", drop.ID); ok {
		t.Fatal("the quiet destroy published kernel_terminated")
	}
	if term, ok := c.agent.LastTermination(drop.ID); !ok || term.Reason != ReasonNotFoundInManager {
		t.Fatalf("termination of the dropped kernel %+v", term)
	}
	ev, ok := c.events.find("kernel_terminated", "ghost")
	if !ok || ev["reason"] != ReasonAlreadyTerminated || ev["session_id"] != "ghost-session" {
		t.Fatalf("kernel_terminated of the ghost %v", ev)
	}
	if len(c.be.Containers()) != 1 {
		t.Fatalf("containers %d", len(c.be.Containers()))
	}
	// A destroy that fails is reported.
	c.be.Inject(fake.CallRemove, &fake.Fault{Err: errors.New("busy"), Times: 1})
	if err := c.agent.SyncKernelRegistry(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("sync with a failing destroy: %v", err)
	}
}

// reset_agent destroys every kernel and releases everything.
func TestResetAgent_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	var ids []string
	for i := 0; i < 3; i++ {
		info, err := c.create(nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	if err := c.agent.ResetAgent(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if ev, ok := c.events.find("kernel_terminated", id); !ok || ev["reason"] != ReasonUserRequested {
			t.Errorf("kernel_terminated of %s: %v", id, ev)
		}
	}
	c.assertNothingTaken("after reset_agent")
	if err := c.agent.ResetAgent(context.Background()); err != nil {
		t.Fatalf("reset of an empty agent: %v", err)
	}
}

// unitLogs is a LogCollector that remembers what it was given.
type unitLogs struct {
	mu   sync.Mutex
	got  map[string]string
	fail error
}

func (l *unitLogs) CollectLogs(_ context.Context, kernelID, containerID string, logs []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.got == nil {
		l.got = map[string]string{}
	}
	l.got[kernelID] = containerID + ":" + string(logs)
	return l.fail
}

// The container's logs go to the collector before the container goes; a
// failure to read or keep them does not stop the cleanup.
func TestKeepLogs_Fake(t *testing.T) {
	t.Parallel()
	logs := &unitLogs{}
	c := newCore(t, nil, func(o *Options) { o.Logs = logs })
	destroy := func(info *KernelInfo) {
		t.Helper()
		k, _ := c.agent.Kernel(info.ID)
		if err := c.agent.DestroyKernel(context.Background(), info.ID, k.SessionID, "", false); err != nil {
			t.Fatal(err)
		}
	}
	a, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	destroy(a)
	logs.mu.Lock()
	got := logs.got[a.ID]
	logs.mu.Unlock()
	if got != a.ContainerID+":log of "+a.ContainerID[:12]+"\n" {
		t.Fatalf("collected %q", got)
	}
	b, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.be.Inject(fake.CallLogs, &fake.Fault{Err: errors.New("no logs"), Times: 1})
	destroy(b)
	logs.mu.Lock()
	_, kept := logs.got[b.ID]
	logs.fail = errors.New("collector down")
	logs.mu.Unlock()
	if kept {
		t.Fatal("logs kept that could not be read")
	}
	d, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	destroy(d)
	c.assertNothingTaken("after the destroys")
}
