package agent

// The core's unit tier: the agent against the in-memory runtime
// (internal/backend/fake), no Docker. Every creation step is made to fail
// in turn and nothing may be left behind; every runtime call is made to
// hang in turn and the operation must fail in time while the agent keeps
// serving.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

const fakeImage = "bai-test/kernel:fake"

var fakeImageLabels = map[string]string{
	"ai.backend.kernelspec":       "1",
	"ai.backend.features":         "uid-match",
	"ai.backend.service-ports":    "jupyter:http:8080",
	"ai.backend.resource.min.cpu": "1",
	"ai.backend.resource.min.mem": "32m",
}

var fakePorts = struct {
	sync.Mutex
	next int
}{next: 20000} // 20000-23999: no real port is probed (PortProbe), and none is in the ephemeral range

type core struct {
	t      *testing.T
	be     *fake.Backend
	cfg    *config.Config
	events *recorder
	agent  *Agent
	steps  sync.Map // "op/step" -> *atomic.Int32
	opts   Options
}

// newCore builds an agent on a fresh in-memory runtime with its own
// scratch root and host-port range.
func newCore(t *testing.T, mutate func(*config.Config), tune func(*Options)) *core {
	t.Helper()
	root := t.TempDir()
	fakePorts.Lock()
	first := fakePorts.next
	if fakePorts.next += 20; fakePorts.next > 23980 {
		fakePorts.next = 20000
	}
	fakePorts.Unlock()
	doc := fmt.Sprintf(`
[agent]
backend = "docker"
id = "i-core-%s"
image-commit-path = %q
[agent.sync-container-lifecycles]
interval = 3600
[container]
port-range = [%d, %d]
port-reuse-cooldown-sec = 0
bind-host = "127.0.0.1"
scratch-root = %q
kernel-runner = false
[resource]
reserved-cpu = 0
reserved-mem = "64M"
`, uuid.NewString()[:8], filepath.Join(root, "commit"), first, first+19, filepath.Join(root, "scratches"))
	res, err := config.Load("", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(res.Config)
	}
	be := fake.New()
	be.AddImage(backend.Image{ID: "sha256:fake", Tags: []string{fakeImage}, Labels: fakeImageLabels, Architecture: "amd64"})
	c := &core{t: t, be: be, cfg: res.Config, events: &recorder{}}
	c.opts = Options{
		Config: res.Config, Backend: be, Events: c.events, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Host:        &device.Host{Cores: []int{0, 1, 2, 3}, NUMANode: map[int]int{}, MemTotal: 8 << 30},
		StopTimeout: 100 * time.Millisecond,
		// The fake runtime binds nothing: no host port is probed, so no
		// other process on the machine can make a fake test fail.
		PortProbe: func(int) bool { return true },
		OnStepFailure: func(op, step string) {
			n, _ := c.steps.LoadOrStore(op+"/"+step, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		},
	}
	if tune != nil {
		tune(&c.opts)
	}
	c.agent = c.start()
	t.Cleanup(func() { c.agent.Close() })
	return c
}

func (c *core) start() *Agent {
	c.t.Helper()
	a, err := New(context.Background(), c.opts)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	return a
}

func fakeRequest(kid string, mutate func(*CreationConfig)) *CreateRequest {
	sid := uuid.NewString()
	cfg := CreationConfig{
		Image:         ImageConfig{Canonical: fakeImage, Architecture: "x86_64", IsLocal: true, AutoPull: "none"},
		KernelID:      kid,
		SessionID:     sid,
		SessionType:   "interactive",
		ClusterRole:   "main",
		ResourceSlots: map[string]string{"cpu": "1", "mem": "134217728"},
		Environ:       map[string]string{"BACKENDAI_SESSION_ID": sid},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	return &CreateRequest{SessionID: sid, KernelIDs: []string{kid}, Configs: []CreationConfig{cfg}}
}

func (c *core) create(mutate func(*CreationConfig)) (*KernelInfo, error) {
	kid := uuid.NewString()
	res, err := c.agent.CreateKernels(context.Background(), fakeRequest(kid, mutate))
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// assertNothingTaken fails when any allocation, host port, scratch dir,
// container or registry entry is left.
func (c *core) assertNothingTaken(what string) {
	c.t.Helper()
	for s, v := range c.agent.Allocator().Used() {
		if !v.IsZero() {
			c.t.Errorf("%s: slot %s still allocated: %s", what, s, v)
		}
	}
	if n := c.agent.Ports().InUse(); n != 0 {
		c.t.Errorf("%s: %d host ports still taken", what, n)
	}
	if ents, _ := os.ReadDir(c.cfg.Container.ScratchRoot); len(ents) != 0 {
		c.t.Errorf("%s: scratch dirs left: %v", what, ents)
	}
	if cs := c.be.Containers(); len(cs) != 0 {
		c.t.Errorf("%s: containers left: %d", what, len(cs))
	}
	if ks := c.agent.Kernels(); len(ks) != 0 {
		c.t.Errorf("%s: kernels still registered: %d", what, len(ks))
	}
}

func (c *core) stepFailures(op, step string) int {
	n, ok := c.steps.Load(op + "/" + step)
	if !ok {
		return 0
	}
	return int(n.(*atomic.Int32).Load())
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The Docker client of the integration tier keeps idle HTTP
		// connections for the life of the process.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func TestCreateAndDestroy_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, ok := c.agent.Kernel(info.ID)
	if !ok || k.State() != kernel.Running {
		t.Fatalf("kernel not running: %v", ok)
	}
	cs := c.be.Containers()
	if len(cs) != 1 || !cs[0].Running || cs[0].Labels[LabelKernelID] != info.ID || cs[0].Image != fakeImage {
		t.Fatalf("containers: %+v", cs)
	}
	if cs[0].CpusetCpus == "" || cs[0].Memory != 134217728 {
		t.Fatalf("limits not applied: cpuset %q memory %d", cs[0].CpusetCpus, cs[0].Memory)
	}
	if got := c.events.names(info.ID); strings.Join(got, ",") != "kernel_preparing,kernel_creating,kernel_started" {
		t.Fatalf("events %v", got)
	}
	if len(info.ServicePorts) != 3 || info.ReplInPort == 0 {
		t.Fatalf("result %+v", info)
	}
	if err := c.agent.DestroyKernel(context.Background(), info.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	ev, ok := c.events.find("kernel_terminated", info.ID)
	if !ok || ev["reason"] != ReasonUserRequested {
		t.Fatalf("kernel_terminated %v", ev)
	}
	c.assertNothingTaken("after destroy")
}

// Each step of creation fails in turn: the steps before it are undone in
// reverse, nothing is left, the failed step is reported, and only a
// failure once the container exists tells the manager the kernel
// terminated.
func TestCreateStepFailures_Fake(t *testing.T) {
	t.Parallel()
	injected := errors.New("injected failure")
	// The reason the manager hears: none before the container exists,
	// failed-to-create until it was started, failed-to-start after.
	reasons := map[string]string{"container": ReasonFailedToCreate, "start": ReasonFailedToCreate, "wait-ready": ReasonFailedToStart, "runner": ReasonFailedToStart, "publish": ReasonFailedToStart}
	for _, mode := range []string{"fails instead", "fails after its work"} {
		for _, s := range createSteps {
			t.Run(mode+"/"+s.name, func(t *testing.T) {
				c := newCore(t, nil, nil)
				plan := append([]step[*createJob](nil), createSteps...)
				for i := range plan {
					if plan[i].name != s.name {
						continue
					}
					real := plan[i].do
					plan[i].do = func(j *createJob, ctx context.Context) error {
						if mode == "fails after its work" {
							// What the step took must be given back by
							// its own undo.
							if err := real(j, ctx); err != nil {
								t.Fatalf("step %s itself failed: %v", s.name, err)
							}
						}
						return injected
					}
				}
				c.agent.createPlan = plan
				kid := uuid.NewString()
				_, err := c.agent.CreateKernels(context.Background(), fakeRequest(kid, nil))
				var se *StepError
				if !errors.As(err, &se) || se.Step != s.name || !errors.Is(err, injected) {
					t.Fatalf("error %v, want a StepError of %s", err, s.name)
				}
				if n := c.stepFailures("create", s.name); n != 1 {
					t.Errorf("step failure reported %d times", n)
				}
				c.assertNothingTaken("after the failure")
				ev, got := c.events.find("kernel_terminated", kid)
				if want := reasons[s.name]; got != (want != "") || (got && ev["reason"] != want) {
					t.Errorf("kernel_terminated %v (%v), want reason %q", got, ev["reason"], want)
				}
				// The agent still creates kernels.
				c.agent.createPlan = createSteps
				if _, err := c.create(nil); err != nil {
					t.Fatalf("create after the failure: %v", err)
				}
			})
		}
	}
}

// Real failures of the steps that take something, each with its cause.
func TestCreateRealFailures_Fake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, step, want string
		mutate           func(*config.Config)
		prepare          func(*core)
		request          func(*CreationConfig)
	}{
		{name: "image missing", step: "image", want: "is not on this node", request: func(r *CreationConfig) { r.Image.Canonical = "bai-test/none:1" }},
		{name: "image inspect fails", step: "image", want: "engine down", prepare: func(c *core) {
			c.be.Inject(fake.CallInspectImage, &fake.Fault{Err: errors.New("engine down")})
		}},
		{name: "no such slot", step: "validate", want: "not available", request: func(r *CreationConfig) { r.ResourceSlots["cuda.device"] = "1" }},
		{name: "over-allocation", step: "allocate", want: "requested 100", request: func(r *CreationConfig) { r.ResourceSlots["cpu"] = "100" }},
		{name: "port pool exhausted", step: "ports", want: "need 5", mutate: func(c *config.Config) {
			c.Container.PortRange = config.PortRange{c.Container.PortRange[0], c.Container.PortRange[0] + 2}
		}},
		{name: "scratch root gone", step: "scratch", want: "not a directory", prepare: func(c *core) {
			// The scratch root turns into a file under the running agent.
			root := c.cfg.Container.ScratchRoot
			if err := os.RemoveAll(root); err != nil {
				c.t.Fatal(err)
			}
			if err := os.WriteFile(root, nil, 0o644); err != nil {
				c.t.Fatal(err)
			}
			c.t.Cleanup(func() { _ = os.Remove(root); _ = os.MkdirAll(root, 0o755) })
		}},
		{name: "create refused", step: "container", want: "no space", prepare: func(c *core) {
			c.be.Inject(fake.CallCreate, &fake.Fault{Err: errors.New("no space"), Times: 1})
		}},
		{name: "start refused", step: "start", want: "port is already allocated", prepare: func(c *core) {
			c.be.Inject(fake.CallStart, &fake.Fault{Err: errors.New("port is already allocated"), Times: 1})
		}},
		{name: "inspect after start fails", step: "wait-ready", want: "gone", prepare: func(c *core) {
			c.be.Inject(fake.CallInspect, &fake.Fault{Err: errors.New("gone"), Times: 1})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCore(t, tc.mutate, nil)
			if tc.prepare != nil {
				tc.prepare(c)
			}
			_, err := c.create(tc.request)
			var se *StepError
			if !errors.As(err, &se) || se.Step != tc.step || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want step %s with %q", err, tc.step, tc.want)
			}
			if tc.name == "scratch root gone" {
				_ = os.Remove(c.cfg.Container.ScratchRoot)
				_ = os.MkdirAll(c.cfg.Container.ScratchRoot, 0o755)
			}
			c.assertNothingTaken("after " + tc.name)
		})
	}
}

// Each runtime call hangs in turn: the operation fails with a timeout
// naming the call, in about the configured time, and the agent keeps
// creating other kernels meanwhile.
func TestHangingRuntimeCalls_Fake(t *testing.T) {
	t.Parallel()
	short := Timeouts{Inspect: 300 * time.Millisecond, Create: 300 * time.Millisecond, Start: 300 * time.Millisecond,
		Stop: 300 * time.Millisecond, Remove: 300 * time.Millisecond, List: 300 * time.Millisecond, Logs: 300 * time.Millisecond}
	for _, tc := range []struct {
		call, op, want string
	}{
		{fake.CallInspectImage, "create", "image inspect did not answer"},
		{fake.CallCreate, "create", "create did not answer"},
		{fake.CallStart, "create", "start did not answer"},
		{fake.CallInspect, "create", "inspect did not answer"},
		// A stop that does not answer is logged and the container removed
		// by force: the destroy succeeds, in bounded time.
		{fake.CallStop, "destroy", ""},
		{fake.CallRemove, "destroy", "remove did not answer"},
	} {
		t.Run(tc.call, func(t *testing.T) {
			c := newCore(t, nil, func(o *Options) { o.Timeouts = short })
			var victim *KernelInfo
			if tc.op == "destroy" {
				var err error
				if victim, err = c.create(nil); err != nil {
					t.Fatal(err)
				}
			}
			calls := c.be.CallCount(tc.call)
			c.be.Inject(tc.call, &fake.Fault{Hang: true, Times: 1})
			done := make(chan error, 1)
			t0 := time.Now()
			go func() {
				if tc.op == "create" {
					_, err := c.create(nil)
					done <- err
					return
				}
				k, _ := c.agent.Kernel(victim.ID)
				done <- c.agent.DestroyKernel(context.Background(), victim.ID, k.SessionID, "", false)
			}()
			// Once the call hangs, another kernel comes up meanwhile (the
			// fault hits one call only).
			waitFor(t, 5*time.Second, tc.call+" entered", func() bool { return c.be.CallCount(tc.call) >= calls+1 })
			other, err := c.create(nil)
			if err != nil {
				t.Fatalf("another kernel while %s hangs: %v", tc.call, err)
			}
			select {
			case err := <-done:
				if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				if d := time.Since(t0); d > testutil.Slow(5*time.Second) {
					t.Fatalf("failed only after %s", d)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s with a hanging %s never returned", tc.op, tc.call)
			}
			k, ok := c.agent.Kernel(other.ID)
			if !ok || k.State() != kernel.Running {
				t.Fatal("the other kernel is not running")
			}
		})
	}
}

// A container that exits is noticed through the event stream: the kernel
// is cleaned with its exit code and everything is released.
func TestContainerExit_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.be.Exit(info.ContainerID, 3, false)
	// The exit waits up to engineVerdictWait to see whether the engine
	// went down with the container.
	waitFor(t, engineVerdictWait+10*time.Second, "kernel cleaned after exit", func() bool {
		_, ok := c.agent.Kernel(info.ID)
		return !ok
	})
	ev, ok := c.events.find("kernel_terminated", info.ID)
	if !ok || ev["reason"] != ReasonSelfTerminated || ev["exit_code"] != float64(3) {
		t.Fatalf("kernel_terminated %v", ev)
	}
	c.assertNothingTaken("after exit")
}

// An OOM-killed container is reported as 137 with the OOM recorded.
func TestOOMExit_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.be.Exit(info.ContainerID, 137, true)
	waitFor(t, 5*time.Second, "termination recorded", func() bool {
		_, ok := c.agent.LastTermination(info.ID)
		return ok
	})
	term, _ := c.agent.LastTermination(info.ID)
	if term.ExitCode != 137 || !term.OOMKilled {
		t.Fatalf("termination %+v", term)
	}
}

// After the agent stops (kernels keep running) a new agent re-adopts the
// running kernel with the same allocation and ports, and cleans one whose
// container died meanwhile.
func TestRecovery_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	keep, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	lost, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	used := c.agent.Allocator().Used()
	c.agent.Close()
	c.be.Exit(lost.ContainerID, 1, false)
	c.events = &recorder{}
	c.opts.Events = c.events
	c.agent = c.start()
	k, ok := c.agent.Kernel(keep.ID)
	if !ok || k.State() != kernel.Running || k.Spec().ReplIn != keep.ReplInPort || k.ContainerID() != keep.ContainerID {
		t.Fatalf("kernel not re-adopted as it was: %v %+v", ok, k)
	}
	if _, ok := c.events.find("kernel_started", keep.ID); !ok {
		t.Fatal("no kernel_started on re-adoption")
	}
	if _, ok := c.agent.Kernel(lost.ID); ok {
		t.Fatal("the dead kernel was adopted")
	}
	if _, ok := c.events.find("kernel_terminated", lost.ID); !ok {
		t.Fatal("no kernel_terminated for the kernel that died while the agent was away")
	}
	// Two equal kernels were running; the adopted one holds half.
	after := c.agent.Allocator().Used()
	for _, s := range []resource.SlotName{"cpu", "mem"} {
		if !after[s].Add(after[s]).Equal(used[s]) {
			t.Fatalf("%s allocated after recovery %s, before %s (two kernels)", s, after[s], used[s])
		}
	}
	if err := c.agent.DestroyKernel(context.Background(), keep.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	c.assertNothingTaken("after recovery and destroy")
}

// A container removed behind the agent's back is found by the sync pass.
func TestSyncFindsVanishedContainer_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Remove it without the agent seeing the events: faults nothing, but
	// the agent's event stream is a separate subscriber; to be sure the
	// sync pass (not the event) does the work, stop the watcher first.
	c.agent.cancel()
	c.agent.bg.Wait()
	if err := c.be.Remove(context.Background(), info.ContainerID); err != nil {
		t.Fatal(err)
	}
	if err := c.agent.SyncOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The pass tells the kernel's owner, which cleans it.
	waitFor(t, 10*time.Second, "the kernel of a vanished container is cleaned", func() bool {
		_, ok := c.agent.Kernel(info.ID)
		return !ok
	})
	if ev, ok := c.events.find("kernel_terminated", info.ID); !ok || ev["reason"] != ReasonContainerNotFound {
		t.Fatalf("kernel_terminated: %v", ev)
	}
	c.assertNothingTaken("after sync")
}

// restart_kernel keeps the kernel's ports and allocation with a new
// container.
func TestRestart_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := c.agent.Kernel(info.ID)
	used := c.agent.Allocator().Used()
	ri, err := c.agent.RestartKernel(context.Background(), k.SessionID, info.ID, map[string]string{"NEW": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if ri.ContainerID == info.ContainerID || ri.ReplInPort != info.ReplInPort {
		t.Fatalf("restart result %+v (was %s, %d)", ri, info.ContainerID, info.ReplInPort)
	}
	if cs := c.be.Containers(); len(cs) != 1 || cs[0].ID != ri.ContainerID {
		t.Fatalf("containers after restart: %d", len(cs))
	}
	for s, v := range c.agent.Allocator().Used() {
		if !v.Equal(used[s]) {
			t.Fatalf("allocation changed on restart: %s %s -> %s", s, used[s], v)
		}
	}
	if err := c.agent.DestroyKernel(context.Background(), info.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	c.assertNothingTaken("after restart and destroy")
}

// check_and_pull through the fake registry: a present image answers
// "Image already exists", a pullable one is pulled, and create_kernels
// pulls a missing image itself.
func TestPulls_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	c.be.AddRegistryImage("reg.example:5000/bai/pulled:1", backend.Image{ID: "sha256:pulled", Labels: fakeImageLabels, Architecture: "amd64"})
	ids, err := c.agent.CheckAndPull(context.Background(), map[string]ImageConfig{
		"reg.example:5000/bai/pulled:1": {Canonical: "reg.example:5000/bai/pulled:1", Project: "bai", Registry: RegistryInfo{Name: "reg.example:5000"}, AutoPull: "tag"},
	})
	if err != nil || len(ids["reg.example:5000/bai/pulled:1"]) != 32 {
		t.Fatalf("check_and_pull: %v %v", ids, err)
	}
	waitFor(t, 5*time.Second, "image_pull_finished", func() bool { return c.events.has("image_pull_finished") })
	if !c.events.has("image_pull_started") {
		t.Fatal("no image_pull_started for a pull")
	}
	c.be.AddRegistryImage("reg.example:5000/bai/other:1", backend.Image{ID: "sha256:other", Labels: fakeImageLabels, Architecture: "amd64"})
	info, err := c.create(func(r *CreationConfig) {
		r.Image = ImageConfig{Canonical: "reg.example:5000/bai/other:1", Project: "bai", Registry: RegistryInfo{Name: "reg.example:5000"}, Architecture: "x86_64", AutoPull: "digest"}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.events.names(info.ID), ","); got != "kernel_preparing,kernel_pulling,kernel_creating,kernel_started" {
		t.Fatalf("events %s", got)
	}
}

func (r *recorder) names(kernelID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Payload["kernel_id"] == kernelID {
			out = append(out, e.Name)
		}
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A restart whose new container does not start leaves a dead kernel
// cleaned, not a half-restarted one.
func TestRestartFailure_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := c.agent.Kernel(info.ID)
	c.be.Inject(fake.CallStart, &fake.Fault{Err: errors.New("exec format error"), Times: 1})
	_, err = c.agent.RestartKernel(context.Background(), k.SessionID, info.ID, nil)
	var se *StepError
	if !errors.As(err, &se) || se.Op != "restart" || se.Step != "start" {
		t.Fatalf("error %v, want the restart's start step", err)
	}
	if c.stepFailures("restart", "start") != 1 {
		t.Fatal("restart step failure not reported")
	}
	if _, ok := c.events.find("kernel_terminated", info.ID); !ok {
		t.Fatal("no kernel_terminated after a failed restart")
	}
	c.assertNothingTaken("after a failed restart")
}

// A container that cannot be removed keeps its kernel registered (and
// everything it holds) so that a later pass retries; the retry frees all.
func TestCleanRetriesRemoval_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := c.agent.Kernel(info.ID)
	c.be.Inject(fake.CallRemove, &fake.Fault{Err: errors.New("device or resource busy"), Times: 1})
	err = c.agent.DestroyKernel(context.Background(), info.ID, k.SessionID, "", false)
	var se *StepError
	if !errors.As(err, &se) || se.Op != "clean" || se.Step != "remove-container" {
		t.Fatalf("error %v, want the clean's remove-container step", err)
	}
	if _, ok := c.agent.Kernel(info.ID); !ok || c.agent.Ports().InUse() == 0 {
		t.Fatal("kernel released while its container may still exist")
	}
	if err := c.agent.SyncOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the retry cleans the kernel", func() bool {
		_, ok := c.agent.Kernel(info.ID)
		return !ok
	})
	c.assertNothingTaken("after the retry")
}

// Readers of the registry (ctl's status) see kernels while they are
// being created without racing the creation steps (run with -race).
func TestViewDuringCreation_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	c.be.Inject(fake.CallCreate, &fake.Fault{Delay: 20 * time.Millisecond})
	stop := make(chan struct{})
	var seen atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, k := range c.agent.Kernels() {
				v := k.View()
				if v.State == kernel.Running && (v.ContainerID == "" || v.ReplIn == 0) {
					t.Errorf("running kernel without its details: %+v", v)
				}
				seen.Add(1)
			}
		}
	}()
	var cwg sync.WaitGroup
	for i := 0; i < 4; i++ {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			if _, err := c.create(nil); err != nil {
				t.Error(err)
			}
		}()
	}
	cwg.Wait()
	close(stop)
	wg.Wait()
	if seen.Load() == 0 {
		t.Fatal("the reader never saw a kernel")
	}
}

// The engine goes away and its containers stop with it: when it is back,
// those kernels are cleaned at once with a reason that says an anomaly
// (not the kernel itself) ended them, and creations meanwhile fail
// without leaving anything.
func TestCreateWhileEngineDown_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	down := fmt.Errorf("ping: %w: connection refused", backend.ErrUnavailable)
	c.be.Inject(fake.CallPing, &fake.Fault{Err: down})
	waitFor(t, 10*time.Second, "the agent notices the engine is down", func() bool { return !c.agent.EngineAvailable() })
	c.be.Inject(fake.CallInspectImage, &fake.Fault{Err: fmt.Errorf("inspect: %w", backend.ErrUnavailable)})
	if _, err := c.create(nil); !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("create while the engine is down: %v", err)
	}
	c.be.Inject(fake.CallInspectImage, nil)
	// The engine stops the container as it goes; nobody sees the die event.
	c.agent.cancel()
	c.agent.bg.Wait()
	c.be.Exit(info.ContainerID, 143, false)
	c.be.Inject(fake.CallPing, nil)
	c.agent.Close()
	c.events = &recorder{}
	c.opts.Events = c.events
	c.agent = c.start()
	_ = c.agent.SyncOnce(context.Background())
	// The new agent never saw the outage: the container simply exited.
	waitFor(t, engineVerdictWait+10*time.Second, "kernel_terminated after the agent's restart", func() bool {
		_, ok := c.events.find("kernel_terminated", info.ID)
		return ok
	})
	if ev, ok := c.events.find("kernel_terminated", info.ID); !ok || ev["reason"] != ReasonSelfTerminated {
		t.Fatalf("after a restart of the agent too: %v", ev)
	}
}

// With the agent running through the outage, the exit is attributed to
// the engine.
func TestEngineRestartReason_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.be.Inject(fake.CallPing, &fake.Fault{Err: fmt.Errorf("%w: connection refused", backend.ErrUnavailable)})
	waitFor(t, 10*time.Second, "the agent notices the engine is down", func() bool { return !c.agent.EngineAvailable() })
	c.be.Exit(info.ContainerID, 143, false)
	c.be.Inject(fake.CallPing, nil)
	// The event, not the registry: the kernel leaves the registry just
	// before its kernel_terminated is published.
	waitFor(t, 30*time.Second, "kernel_terminated after the outage", func() bool {
		_, ok := c.events.find("kernel_terminated", info.ID)
		return ok
	})
	ev, ok := c.events.find("kernel_terminated", info.ID)
	if !ok || ev["reason"] != ReasonAnomalyDetected {
		t.Fatalf("kernel_terminated %v, want reason %s", ev, ReasonAnomalyDetected)
	}
	if !c.agent.EngineAvailable() {
		waitFor(t, 10*time.Second, "engine seen back", c.agent.EngineAvailable)
	}
	c.assertNothingTaken("after the outage")
}

// A create whose caller already gave up leaves nothing registered: the
// owner gets the creation (and refuses it) whatever the caller's context
// says. Posting it under that context dropped it about half the time,
// leaving the kernel in Preparing for ever.
func TestCancelledCreateLeavesNothing_Fake(t *testing.T) {
	c := newCore(t, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 40 {
		kid := uuid.NewString()
		if _, err := c.agent.CreateKernels(ctx, fakeRequest(kid, nil)); err == nil {
			t.Fatal("a create with a cancelled context succeeded")
		}
		waitFor(t, 5*time.Second, "the refused kernel unregistered", func() bool {
			_, ok := c.agent.Kernel(kid)
			return !ok
		})
	}
	if n := c.agent.Ports().InUse(); n != 0 {
		t.Fatalf("%d host ports still taken", n)
	}
}
