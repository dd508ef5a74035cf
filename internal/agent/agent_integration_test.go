package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/moby/moby/client"

	"github.com/bai-agent/bai-agent/internal/backend/docker"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// recorder is an EventSink that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []recorded
}

type recorded struct {
	Name    string
	Payload map[string]any
}

// Publish keeps the event's JSON payload, as the manager would read it.
func (r *recorder) Publish(_ context.Context, ev event.Event) {
	b, err := json.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("event %s does not encode: %v", ev.EventName(), err))
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		panic(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, recorded{ev.EventName(), p})
}

func (r *recorder) find(name, kernelID string) (map[string]any, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Name == name && e.Payload["kernel_id"] == kernelID {
			return e.Payload, true
		}
	}
	return nil, false
}

// findSession returns the newest event name for a session.
func (r *recorder) findSession(name, sessionID string) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if e := r.events[i]; e.Name == name && e.Payload["session_id"] == sessionID {
			return e.Payload
		}
	}
	return nil
}

func (r *recorder) has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Name == name {
			return true
		}
	}
	return false
}

type env struct {
	t      testing.TB
	be     *docker.Backend
	image  string
	cfg    *config.Config
	root   string
	vfroot string
	events *recorder
	agent  *Agent
}

var portBase = struct {
	sync.Mutex
	next int
}{next: 25000} // 25000-27999, below Linux's ephemeral range (32768-60999)

// newEnv makes a config with its own agent id, scratch root, vfolder root
// and port range, so tests never see each other's kernels.
func newEnv(t *testing.T, mutate func(*config.Config)) *env {
	t.Helper()
	be := testutil.RequireDocker(t)
	testutil.RequireRoot(t)
	return newEnvOn(t, be, testutil.TestImage(t), mutate)
}

// newEnvOn is newEnv on a given engine (a test engine of its own) with
// its test image img.
func newEnvOn(t testing.TB, be *docker.Backend, img string, mutate func(*config.Config)) *env {
	t.Helper()
	root := t.TempDir()
	portBase.Lock()
	first := portBase.next
	if portBase.next += 40; portBase.next > 27960 {
		portBase.next = 25000
	}
	portBase.Unlock()
	doc := fmt.Sprintf(`
[agent]
backend = "docker"
id = "i-test-%s"
rpc-listen-addr = "127.0.0.1:16011"
mount-path = %q
[agent.sync-container-lifecycles]
interval = 1
[container]
port-range = [%d, %d]
port-reuse-cooldown-sec = 0
bind-host = "127.0.0.1"
scratch-root = %q
[resource]
reserved-cpu = 0
reserved-mem = "64M"
`, uuid.NewString()[:8], filepath.Join(root, "vfroot"), first, first+39, filepath.Join(root, "scratches"))
	res, err := config.Load("", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(res.Config)
	}
	if err := os.MkdirAll(filepath.Join(root, "vfroot"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, be: be, image: img, cfg: res.Config, root: root, vfroot: filepath.Join(root, "vfroot"), events: &recorder{}}
	e.agent = e.start()
	t.Cleanup(func() {
		if e.agent != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = e.agent.ResetAgent(ctx)
			e.agent.Close()
		}
		// Belt and braces: no container of this agent may outlive the test.
		list, _ := be.List(context.Background(), map[string]string{LabelOwner: e.cfg.Agent.ID})
		for _, c := range list {
			_ = be.Remove(context.Background(), c.ID)
			t.Errorf("container %s leaked", c.Name)
		}
	})
	return e
}

func (e *env) start() *Agent {
	e.t.Helper()
	ctx := context.Background()
	accels := loadAccels(e.t, e.cfg, e.be)
	a, err := New(ctx, Options{Config: e.cfg, Backend: e.be, Events: e.events, Log: testLogger(), StopTimeout: 2 * time.Second, Accelerators: accels})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		e.t.Fatal(err)
	}
	return a
}

// testLogger discards the agent's log unless BAI_TEST_AGENT_LOG is set
// (then it goes to stderr at debug level).
func testLogger() *slog.Logger {
	if os.Getenv("BAI_TEST_AGENT_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (e *env) request(kid string, mutate func(*CreationConfig)) *CreateRequest {
	sid := uuid.NewString()
	c := CreationConfig{
		Image:         ImageConfig{Canonical: e.image, Architecture: Architecture(), IsLocal: true, AutoPull: "none"},
		KernelID:      kid,
		SessionID:     sid,
		OwnerUserID:   "f38dea23-50fa-42a0-b5ae-338f5f4693f4",
		SessionType:   "interactive",
		ClusterRole:   "main",
		ClusterIdx:    1,
		ResourceSlots: map[string]string{"cpu": "1", "mem": "134217728"},
		Environ:       map[string]string{"BACKENDAI_SESSION_ID": sid},
	}
	if mutate != nil {
		mutate(&c)
	}
	return &CreateRequest{SessionID: sid, KernelIDs: []string{kid}, Configs: []CreationConfig{c}}
}

func (e *env) create(mutate func(*CreationConfig)) *KernelInfo {
	e.t.Helper()
	kid := uuid.NewString()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := e.agent.CreateKernels(ctx, e.request(kid, mutate))
	if err != nil {
		e.t.Fatalf("create: %v", err)
	}
	return res[0]
}

func TestCreateDestroy_Integration(t *testing.T) {
	e := newEnv(t, nil)
	for _, d := range []string{"ro1", "rw1"} {
		if err := os.MkdirAll(filepath.Join(e.vfroot, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(e.vfroot, "ro1", "hello.txt"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	info := e.create(func(c *CreationConfig) {
		c.ResourceSlots = map[string]string{"cpu": "1", "mem": "268435456"}
		c.ShmSize = 32 << 20
		c.Mounts = []MountSpec{
			{Name: "ro1", HostPath: filepath.Join(e.vfroot, "ro1"), KernelPath: "/home/work/ro1", MountPerm: "ro"},
			{Name: "rw1", HostPath: filepath.Join(e.vfroot, "rw1"), KernelPath: "/home/work/rw1", MountPerm: "rw"},
		}
	})
	ctx := context.Background()
	ins, err := e.be.Inspect(ctx, info.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := e.agent.Kernel(info.ID)
	wantCPUs := strings.Join(func() []string {
		var s []string
		for _, id := range k.Spec().Allocation.Devices("cpu") {
			s = append(s, string(id))
		}
		return s
	}(), ",")
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"running", ins.Running, true},
		{"cpuset", ins.CpusetCpus, wantCPUs},
		{"memory", ins.Memory, int64(268435456)},
		{"shm", ins.ShmSize, int64(32 << 20)},
		{"pids", ins.PidsLimit, int64(8192)},
		{"owner label", ins.Labels[LabelOwner], e.cfg.Agent.ID},
		{"kernel label", ins.Labels[LabelKernelID], info.ID},
		{"name", ins.Name, "kernel.kernel." + info.ID},
		{"service label", ins.Labels[LabelServicePorts], "jupyter:http:8080"},
	} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if info.ReplInPort == 0 || len(info.ServicePorts) != 3 {
		t.Fatalf("result: %+v", info)
	}
	// The read-only vfolder is read-only, the rw one writable, the
	// environment carries the kernel's settings.
	if code, out := testutil.Exec(ctx, e.be, info.ContainerID, "cat", "/home/work/ro1/hello.txt"); code != 0 || out != "hi" {
		t.Fatalf("read ro vfolder: %d %q", code, out)
	}
	if code, out := testutil.Exec(ctx, e.be, info.ContainerID, "touch", "/home/work/ro1/x"); code == 0 {
		t.Fatalf("write to ro vfolder succeeded: %q", out)
	} else if !strings.Contains(out, "Read-only file system") {
		t.Fatalf("unexpected error text: %q", out)
	}
	if code, out := testutil.Exec(ctx, e.be, info.ContainerID, "touch", "/home/work/rw1/x"); code != 0 {
		t.Fatalf("write to rw vfolder failed: %q", out)
	}
	if code, out := testutil.Exec(ctx, e.be, info.ContainerID, "touch", "/home/config/x"); code == 0 {
		t.Fatalf("/home/config is writable: %q", out)
	}
	// A root agent with kernel-uid -1 names the image's own user (no
	// /etc/passwd in the test image: 1000), never its own root.
	if _, out := testutil.Exec(ctx, e.be, info.ContainerID, "sh", "-c", "echo $OMP_NUM_THREADS $LOCAL_USER_ID $LOCAL_GROUP_ID"); out != "1 1000 1000" {
		t.Fatalf("env: %q", out)
	}
	scratchDir := k.Spec().Scratch.Base
	if _, err := os.Stat(filepath.Join(scratchDir, "config", "resource.txt")); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.events.find("kernel_started", info.ID); !ok {
		t.Fatal("no kernel_started event")
	}
	// Destroy: container, scratch, ports and allocation all gone.
	if err := e.agent.DestroyKernel(ctx, info.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.be.Inspect(ctx, info.ContainerID); err == nil {
		t.Fatal("container still exists")
	}
	if _, err := os.Stat(scratchDir); !os.IsNotExist(err) {
		t.Fatalf("scratch still exists: %v", err)
	}
	if n := e.agent.Ports().InUse(); n != 0 {
		t.Fatalf("%d host ports still in use", n)
	}
	for s, v := range e.agent.Allocator().Used() {
		if !v.IsZero() {
			t.Fatalf("slot %s still allocated: %s", s, v)
		}
	}
	ev, ok := e.events.find("kernel_terminated", info.ID)
	if !ok || ev["reason"] != "user-requested" {
		t.Fatalf("kernel_terminated: %v %v", ev, ok)
	}
	// The vfolder itself is untouched.
	if _, err := os.Stat(filepath.Join(e.vfroot, "rw1", "x")); err != nil {
		t.Fatalf("vfolder content lost: %v", err)
	}
}

func TestBadRequestsLeaveNothing_Integration(t *testing.T) {
	e := newEnv(t, nil)
	outside := t.TempDir()
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		mutate func(*CreationConfig)
		want   string
	}{
		{"over-allocation", func(c *CreationConfig) { c.ResourceSlots = map[string]string{"cpu": "1000", "mem": "134217728"} }, "requested 1000"},
		{"shm over memory", func(c *CreationConfig) { c.ShmSize = 1 << 30 }, "larger than the memory slot"},
		{"denied host path", func(c *CreationConfig) {
			c.Mounts = []MountSpec{{Name: "x", HostPath: "/etc", KernelPath: "/home/work/x", MountPerm: "rw"}}
		}, "vfolder-deny-paths"},
		{"missing host path", func(c *CreationConfig) {
			c.Mounts = []MountSpec{{Name: "x", HostPath: filepath.Join(outside, "nope"), KernelPath: "/home/work/x", MountPerm: "rw"}}
		}, "no such file"},
		{"unknown auto_pull", func(c *CreationConfig) { c.AutoPull = "sometimes" }, "unknown auto_pull"},
		{"kernel path traversal", func(c *CreationConfig) {
			c.Mounts = []MountSpec{{Name: "x", HostPath: e.vfroot, KernelPath: "/home/work/../../etc", MountPerm: "rw"}}
		}, "contains '..'"},
		{"unknown slot", func(c *CreationConfig) { c.ResourceSlots["cuda.device"] = "1" }, "not available"},
		{"below image minimum", func(c *CreationConfig) { c.ResourceSlots["mem"] = "16777216" }, "below the image's minimum"},
		{"missing image", func(c *CreationConfig) { c.Image.Canonical = "bai-test/nosuch:1" }, "is not on this node"},
		{"missing registry image, auto_pull none", func(c *CreationConfig) {
			c.Image = ImageConfig{Canonical: "127.0.0.1:1/bai-test/nosuch:1", Registry: RegistryInfo{Name: "127.0.0.1:1"}, Architecture: Architecture(), AutoPull: "none"}
		}, "auto_pull is none"},
		{"malformed image name", func(c *CreationConfig) { c.Image.Canonical = "http://x/y:1" }, "not a URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kid := uuid.NewString()
			_, err := e.agent.CreateKernels(ctx, e.request(kid, tc.mutate))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if _, ok := e.agent.Kernel(kid); ok {
				t.Fatal("kernel left in the registry")
			}
			if e.agent.Ports().InUse() != 0 {
				t.Fatal("ports leaked")
			}
			for s, v := range e.agent.Allocator().Used() {
				if !v.IsZero() {
					t.Fatalf("slot %s leaked: %s", s, v)
				}
			}
			ents, _ := os.ReadDir(e.cfg.Container.ScratchRoot)
			if len(ents) != 0 {
				t.Fatalf("scratch leaked: %v", ents)
			}
			// Refused before any container existed: the manager may retry,
			// so the kernel is not reported terminated.
			if ev, ok := e.events.find("kernel_terminated", kid); ok {
				t.Fatalf("kernel_terminated published for a refused creation: %v", ev)
			}
		})
	}
	if !e.events.has("do_agent_resource_check") {
		t.Fatal("no do_agent_resource_check after the over-allocation")
	}
}

func waitTermination(t *testing.T, e *env, kid string) kernel.Termination {
	t.Helper()
	var term kernel.Termination
	testutil.Eventually(t, 60*time.Second, "kernel termination", func() bool {
		var ok bool
		term, ok = e.agent.LastTermination(kid)
		return ok
	})
	return term
}

func TestOOMAndShmExhaustion_Integration(t *testing.T) {
	// The image's own command (testkernel's memhog/shmhog) must be the
	// container's workload here, so the runner is off.
	e := newEnv(t, func(c *config.Config) { c.Container.KernelRunner = false })
	oom := e.create(func(c *CreationConfig) {
		c.ResourceSlots = map[string]string{"cpu": "1", "mem": "67108864"}
		c.Environ["TEST_MODE"] = "memhog"
		c.Environ["MEMHOG_MB"] = "256"
	})
	shm := e.create(func(c *CreationConfig) {
		c.ResourceSlots = map[string]string{"cpu": "1", "mem": "268435456"}
		c.ShmSize = 8 << 20
		c.Environ["TEST_MODE"] = "shmhog"
		c.Environ["SHMHOG_MB"] = "64"
	})
	to := waitTermination(t, e, oom.ID)
	if to.ExitCode != 137 || !to.OOMKilled || to.Reason != "self-terminated" {
		t.Fatalf("memhog: %+v", to)
	}
	ts := waitTermination(t, e, shm.ID)
	if ts.ExitCode != 135 || !ts.ShmExhausted {
		t.Fatalf("shmhog: %+v", ts)
	}
	ev, _ := e.events.find("kernel_terminated", oom.ID)
	if fmt.Sprint(ev["exit_code"]) != "137" {
		t.Fatalf("event exit code: %v", ev)
	}
	testutil.Eventually(t, 10*time.Second, "ports released", func() bool { return e.agent.Ports().InUse() == 0 })
}

func TestHostfileScratchQuota_Integration(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Container.ScratchType = "hostfile"
		c.Container.ScratchSize = 32 << 20
	})
	info := e.create(nil)
	ctx := context.Background()
	code, out := testutil.Exec(ctx, e.be, info.ContainerID, "dd", "if=/dev/zero", "of=/home/work/big", "bs=1M", "count=64")
	if code == 0 || !strings.Contains(out, "No space left on device") {
		t.Fatalf("write past the scratch size: code %d, %q", code, out)
	}
	k, _ := e.agent.Kernel(info.ID)
	base := k.Spec().Scratch.Base
	if err := e.agent.DestroyKernel(ctx, info.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(base + ".img"); !os.IsNotExist(err) {
		t.Fatalf("image file left: %v", err)
	}
	if b, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(b), base) {
		t.Fatal("loop mount left behind")
	}
}

func TestRestartKeepsScratchAndCores_Integration(t *testing.T) {
	e := newEnv(t, nil)
	info := e.create(nil)
	ctx := context.Background()
	if code, out := testutil.Exec(ctx, e.be, info.ContainerID, "sh", "-c", "echo kept > /home/work/f"); code != 0 {
		t.Fatal(out)
	}
	k, _ := e.agent.Kernel(info.ID)
	before := k.Spec().Allocation.Devices("cpu")
	ri, err := e.agent.RestartKernel(ctx, k.SessionID, info.ID, map[string]string{"NEW_VAR": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if ri.ContainerID == info.ContainerID || ri.ReplInPort != info.ReplInPort {
		t.Fatalf("restart result %+v", ri)
	}
	if _, out := testutil.Exec(ctx, e.be, ri.ContainerID, "cat", "/home/work/f"); out != "kept" {
		t.Fatalf("scratch lost across restart: %q", out)
	}
	if _, out := testutil.Exec(ctx, e.be, ri.ContainerID, "sh", "-c", "echo $NEW_VAR"); out != "1" {
		t.Fatalf("updated env: %q", out)
	}
	if after := k.Spec().Allocation.Devices("cpu"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("cores changed: %v -> %v", before, after)
	}
	if _, err := e.be.Inspect(ctx, info.ContainerID); err == nil {
		t.Fatal("old container still there")
	}
	// The old container's die event must not clean the kernel.
	testutil.Consistently(t, time.Second, "kernel running after restart", func() bool { return e.agent.IsRunning(info.ID) })
}

// TestRecoveryAfterSIGKILL_Integration runs an agent in a child process
// (this test binary in helper mode), lets it create a kernel, SIGKILLs it,
// then starts a new agent on the same state: the kernel must be adopted
// with the same container (no restart), cores and ports, and a
// half-created container and an orphaned scratch dir must be cleaned.
func TestRecoveryAfterSIGKILL_Integration(t *testing.T) {
	e := newEnv(t, nil)
	e.agent.Close()
	e.agent = nil
	cfgPath := e.configFile()
	kid := uuid.NewString()
	runHelperAndKill(t, cfgPath, kid, e.image)

	ctx := context.Background()
	list, _ := e.be.List(ctx, map[string]string{LabelKernelID: kid})
	if len(list) != 1 {
		t.Fatalf("expected the kernel's container, found %d", len(list))
	}
	before, _ := e.be.Inspect(ctx, list[0].ID)
	// Leave the debris of a crash mid-create: a created-not-started
	// container and a scratch dir without any container.
	halfID := uuid.NewString()
	half, err := e.be.Create(ctx, halfSpec(e, halfID))
	if err != nil {
		t.Fatal(err)
	}
	orphan := uuid.NewString()
	if err := os.MkdirAll(filepath.Join(e.cfg.Container.ScratchRoot, orphan, "work"), 0o755); err != nil {
		t.Fatal(err)
	}

	e.agent = e.start()
	k, ok := e.agent.Kernel(kid)
	if !ok || k.State() != kernel.Running {
		t.Fatalf("kernel not adopted: %v", ok)
	}
	after, _ := e.be.Inspect(ctx, list[0].ID)
	if !after.Running || !after.StartedAt.Equal(before.StartedAt) {
		t.Fatalf("container was restarted: %v -> %v", before.StartedAt, after.StartedAt)
	}
	if strings.Join(devStrings(k), ",") != before.CpusetCpus {
		t.Fatalf("cores differ: %v vs %s", k.Spec().Allocation.Devices("cpu"), before.CpusetCpus)
	}
	if !e.agent.Allocator().Used()["mem"].Equal(k.Spec().Allocation.Total("mem")) || k.Spec().Allocation.Total("mem").IntPart() != before.Memory {
		t.Fatalf("memory allocation not restored: %v", e.agent.Allocator().Used())
	}
	for _, p := range before.Ports {
		if !e.agent.Ports().IsUsed(p.HostPort) {
			t.Fatalf("host port %d not marked used", p.HostPort)
		}
	}
	if _, err := e.be.Inspect(ctx, half); err == nil {
		t.Fatal("half-created container survived recovery")
	}
	if _, err := os.Stat(filepath.Join(e.cfg.Container.ScratchRoot, orphan)); !os.IsNotExist(err) {
		t.Fatal("orphaned scratch survived recovery")
	}
	// A new kernel must not get the adopted kernel's cores' capacity twice.
	if err := e.agent.DestroyKernel(ctx, kid, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	if e.agent.Ports().InUse() != 0 {
		t.Fatal("ports leaked after destroying the adopted kernel")
	}
}

// configFile writes the env's agent configuration for a helper agent
// process (the same id, ports and scratch root; agentExtra goes into
// [agent]) and returns its path.
func (e *env) configFile(agentExtra ...string) string {
	e.t.Helper()
	p := filepath.Join(e.root, "agent.toml")
	doc := fmt.Sprintf("[agent]\nbackend=\"docker\"\nid=%q\nrpc-listen-addr=\"127.0.0.1:16011\"\nmount-path=%q\n"+strings.Join(agentExtra, "")+"[container]\nport-range=[%d,%d]\nbind-host=\"127.0.0.1\"\nscratch-root=%q\n[resource]\nreserved-cpu=0\nreserved-mem=\"64M\"\n",
		e.cfg.Agent.ID, e.vfroot, e.cfg.Container.PortRange[0], e.cfg.Container.PortRange[1], e.cfg.Container.ScratchRoot)
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// runHelperAndKill runs an agent in a helper process (TestHelperAgentProcess)
// that creates kernel kid, waits until it says it is ready, and SIGKILLs
// it: the kernel is left running for the next agent to adopt.
func runHelperAndKill(t *testing.T, cfgPath, kid, image string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAgentProcess$")
	cmd.Env = append(append(os.Environ(), "BAI_HELPER_CONFIG="+cfgPath, "BAI_HELPER_KERNEL="+kid, "BAI_HELPER_IMAGE="+image), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var got string
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(got, "HELPER-READY") && time.Now().Before(deadline) {
		n, rerr := out.Read(buf)
		got += string(buf[:n])
		if rerr != nil {
			break
		}
	}
	_ = cmd.Process.Signal(os.Kill)
	_ = cmd.Wait()
	if !strings.Contains(got, "HELPER-READY") {
		t.Fatalf("helper did not get ready: %q", got)
	}
}

func devStrings(k *Kernel) []string {
	var s []string
	for _, d := range k.Spec().Allocation.Devices("cpu") {
		s = append(s, string(d))
	}
	return s
}

// TestHelperAgentProcess is not a test: TestRecoveryAfterSIGKILL starts
// this binary in helper mode to run an agent it can SIGKILL.
func TestHelperAgentProcess(t *testing.T) {
	cfgPath := os.Getenv("BAI_HELPER_CONFIG")
	if cfgPath == "" {
		t.Skip("helper process only")
	}
	res, err := config.LoadFile(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	be, err := docker.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	accels := loadAccels(t, res.Config, be)
	a, err := New(ctx, Options{Config: res.Config, Backend: be, Log: slog.New(slog.NewTextHandler(os.Stderr, nil)), Accelerators: accels})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	kid := os.Getenv("BAI_HELPER_KERNEL")
	e := &env{image: os.Getenv("BAI_HELPER_IMAGE")}
	req := e.request(kid, func(c *CreationConfig) {
		if extra := os.Getenv("BAI_HELPER_SLOTS"); extra != "" {
			for _, kv := range strings.Split(extra, ",") {
				k, v, _ := strings.Cut(kv, "=")
				c.ResourceSlots[k] = v
			}
		}
	})
	// The first kernel of a cluster session on its session network.
	if nw := os.Getenv("BAI_HELPER_NETWORK"); nw != "" {
		if err := a.CreateLocalNetwork(ctx, nw); err != nil {
			t.Fatal(err)
		}
		req.SessionID = os.Getenv("BAI_HELPER_SESSION")
		req.Configs[0].SessionID = req.SessionID
		req.Cluster = ClusterInfo{Mode: "single-node", Size: 2, Replicas: map[string]int{"main": 1, "sub": 1}, NetworkMode: "bridge", NetworkName: nw}
	}
	if _, err := a.CreateKernels(ctx, req); err != nil {
		t.Fatal(err)
	}
	fmt.Println("HELPER-READY")
	select {}
}

// The sync loop destroys a live container that carries this agent's owner
// label but that the registry does not know (a leftover or a foreign
// create), and cleans a kernel whose container vanished.
func TestSyncLoopReconciles_Integration(t *testing.T) {
	// The loop's passes are asked for by the test (the loop's own wake-up
	// channel): a timed pass could find the stray between its create and
	// its start ("created", not alive) and remove it as a dead leftover.
	e := newEnv(t, func(c *config.Config) { c.Agent.SyncContainerLifecycles.Interval = 3600 })
	ctx := context.Background()
	strayKid := uuid.NewString()
	spec := halfSpec(e, strayKid)
	id, err := e.be.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.be.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	// The event, not the container's absence: the engine forgets the
	// container before the agent's destroy has cleaned its scratch and
	// published.
	var ev map[string]any
	testutil.Eventually(t, 20*time.Second, "stray container destroyed by the sync loop", func() bool {
		e.agent.requestSync()
		var ok bool
		ev, ok = e.events.find("kernel_terminated", strayKid)
		return ok
	})
	if ev["reason"] != ReasonUnknownContainer {
		t.Fatalf("event: %v", ev)
	}
	if _, err := e.be.Inspect(ctx, id); err == nil {
		t.Fatal("the stray container is still there after its kernel_terminated")
	}
	// A kernel whose container is removed behind the agent's back is
	// cleaned (by the die event or the sync loop, whichever comes first)
	// with its resources released.
	info := e.create(nil)
	if err := e.be.Remove(ctx, info.ContainerID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "kernel cleaned", func() bool {
		e.agent.requestSync()
		_, ok := e.agent.Kernel(info.ID)
		return !ok
	})
	if e.agent.Ports().InUse() != 0 {
		t.Fatal("ports not released")
	}
}

// CPU quota and scratch write throttling reach the container and bite.
func TestCgroupLimits_Integration(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Container.CPUQuota = true })
	info := e.create(func(c *CreationConfig) { c.IOWriteBps = 2 << 20 })
	ctx := context.Background()
	ins, err := e.be.Inspect(ctx, info.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	if ins.NanoCPUs != 1e9 {
		t.Fatalf("NanoCPUs %d, want 1e9", ins.NanoCPUs)
	}
	if len(ins.WriteBps) != 1 || ins.WriteBps[0].Rate != 2<<20 || !strings.HasPrefix(ins.WriteBps[0].Path, "/dev/") {
		t.Fatalf("write throttle %+v", ins.WriteBps)
	}
	t0 := time.Now()
	code, out := testutil.Exec(ctx, e.be, info.ContainerID, "dd", "if=/dev/zero", "of=/home/work/f", "bs=1M", "count=6", "oflag=direct")
	if code != 0 {
		t.Fatalf("dd: %s", out)
	}
	if el := time.Since(t0); el < 2*time.Second {
		t.Fatalf("6 MiB at 2 MiB/s took only %s: throttle not applied", el)
	}
}

// Kernels are locked down (hardening issue, item 4): inspected, and tried
// from inside.
func TestLockedDownKernel_Integration(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	info := e.create(nil)
	res, err := e.be.Client().ContainerInspect(ctx, info.ContainerID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc := res.Container.HostConfig
	if hc.Privileged {
		t.Error("kernel container is privileged")
	}
	var caps []string
	for _, c := range hc.CapAdd {
		caps = append(caps, strings.TrimPrefix(c, "CAP_")) // newer engines add the prefix
	}
	if fmt.Sprint(caps) != "[IPC_LOCK SYS_NICE]" {
		t.Errorf("added capabilities %v, want only IPC_LOCK and SYS_NICE", hc.CapAdd)
	}
	if fmt.Sprint(hc.SecurityOpt) != "[no-new-privileges:true]" {
		t.Errorf("security options %v, want no-new-privileges (and Docker's default seccomp profile)", hc.SecurityOpt)
	}
	for _, m := range res.Container.Mounts {
		if m.Destination == "/home/config" && m.RW {
			t.Error("/home/config is writable")
		}
		if strings.Contains(m.Source, "docker.sock") {
			t.Errorf("the Docker socket is mounted at %s", m.Destination)
		}
	}
	// From inside: each classic escape fails.
	for _, tc := range []struct{ name, cmd string }{
		{"mount a filesystem", "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m"},
		{"write to /home/config", "echo x > /home/config/environ.txt"},
		{"reach the Docker socket", "ls /var/run/docker.sock || ls /run/docker.sock"},
		{"raw disk access", "ls /dev/sda /dev/vda /dev/nvme0n1 2>/dev/null | grep -q ."},
	} {
		code, out, err := e.be.Exec(ctx, info.ContainerID, []string{"/bin/sh", "-c", tc.cmd})
		if err != nil {
			t.Fatalf("%s: exec: %v", tc.name, err)
		}
		if code == 0 {
			t.Errorf("%s succeeded inside the kernel: %s", tc.name, out)
		}
	}
	// With sudo_session_enabled, setuid is allowed (no no-new-privileges).
	sudo := e.create(func(c *CreationConfig) { c.InternalData = map[string]any{"sudo_session_enabled": true} })
	res, err = e.be.Client().ContainerInspect(ctx, sudo.ContainerID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Container.HostConfig.SecurityOpt) != 0 {
		t.Errorf("sudo session security options %v", res.Container.HostConfig.SecurityOpt)
	}
}
