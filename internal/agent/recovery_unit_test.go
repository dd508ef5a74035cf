package agent

// Recovery of what a previous agent left (strays, half-created and
// foreign containers, orphaned scratch), inference kernels whose model
// services cannot start, and where service ports are advertised, on the
// fake runtime.

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/kernel"
)

func TestRecoveryOfStrays_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	ctx := context.Background()
	good, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	broken, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	brokenScratch := filepath.Dir(unitMountSource(t, c, broken.ContainerID, "/home/config"))
	c.agent.Close()
	// The broken kernel's resource record is garbage now.
	if err := os.WriteFile(filepath.Join(brokenScratch, "config", "resource.txt"), []byte("cpu=lots\n\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	owner := c.cfg.Agent.ID
	mk := func(name string, labels map[string]string, start bool, cpuset string, mem int64) string {
		t.Helper()
		l := map[string]string{LabelOwner: owner}
		for k, v := range labels {
			l[k] = v
		}
		id, err := c.be.Create(ctx, &backend.ContainerSpec{Name: name, Image: fakeImage, Labels: l, CpusetCpus: cpuset, Memory: mem})
		if err != nil {
			t.Fatal(err)
		}
		if start {
			if err := c.be.Start(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		return id
	}
	// An owned container with no kernel id at all.
	junk := mk("not-a-kernel", nil, true, "", 0)
	// A container the previous agent created but never started, known
	// by its name only.
	half := uuid.NewString()
	halfID := mk("kernel.python."+half, map[string]string{LabelSessionID: "half-session"}, false, "", 0)
	// A running kernel container without any scratch: adopted from the
	// container's own limits.
	bare := uuid.NewString()
	mk("kernel.bare."+bare, map[string]string{LabelKernelID: bare, LabelSessionID: "bare-session"}, true, "3", 64<<20)
	// A scratch folder no container owns.
	orphan := filepath.Join(c.cfg.Container.ScratchRoot, uuid.NewString())
	if err := os.MkdirAll(filepath.Join(orphan, "work"), 0o755); err != nil {
		t.Fatal(err)
	}

	c.events = &recorder{}
	c.opts.Events = c.events
	c.agent = c.start()

	if k, ok := c.agent.Kernel(good.ID); !ok || k.State() != kernel.Running {
		t.Fatal("the healthy kernel was not adopted")
	}
	if _, ok := c.agent.Kernel(broken.ID); ok {
		t.Fatal("a kernel whose records are garbage was adopted")
	}
	if ev, ok := c.events.find("kernel_terminated", broken.ID); !ok || ev["reason"] != ReasonUnknownContainer {
		t.Fatalf("kernel_terminated of the broken kernel: %v", ev)
	}
	if _, err := os.Stat(brokenScratch); !os.IsNotExist(err) {
		t.Fatalf("the broken kernel's scratch is left: %v", err)
	}
	if ev, ok := c.events.find("kernel_terminated", half); !ok || ev["reason"] != ReasonSelfTerminated || ev["session_id"] != "half-session" || ev["exit_code"] != float64(-1) {
		t.Fatalf("kernel_terminated of the half-created kernel: %v", ev)
	}
	k, ok := c.agent.Kernel(bare)
	if !ok || k.State() != kernel.Running || k.SessionID != "bare-session" {
		t.Fatal("the kernel without scratch was not adopted")
	}
	if ev, ok := c.events.find("kernel_started", bare); !ok || ev["reason"] != ReasonResumingOperation {
		t.Fatalf("kernel_started of the adopted kernel: %v", ev)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("orphaned scratch left: %v", err)
	}
	for _, ct := range c.be.Containers() {
		if ct.ID == junk || ct.ID == halfID || ct.ID == broken.ContainerID {
			t.Errorf("container %s (%s) left", ct.Name, ct.ID[:12])
		}
	}
	// Core 3 and 64 MiB are the adopted kernel's: two kernels' worth of
	// the good one's share plus those.
	used := c.agent.Allocator().Used()
	if used["cpu"].IsZero() || used["mem"].IsZero() {
		t.Fatalf("allocation after recovery %v", used)
	}
	if err := c.agent.ResetAgent(ctx); err != nil {
		t.Fatal(err)
	}
	c.assertNothingTaken("after the recovered kernels were destroyed")
}

// An inference kernel whose model service cannot be started (here: no
// runner, kernel-runner = false) is destroyed as failed-to-start, as
// upstream's DESTROY lifecycle event does.
func TestInferenceWithoutRunner_Fake(t *testing.T) {
	t.Parallel()
	models := t.TempDir()
	// (A malformed VLLM_EXTRA_ARGS, which fails before any service is
	// started, is left out: it deadlocks the creation, see the report of
	// this branch.)
	for _, tc := range []struct {
		name    string
		environ map[string]string
	}{
		{"no runner connection", nil},
		{"no runner connection, with extra arguments", map[string]string{"VLLM_EXTRA_ARGS": `--max-model-len 4096`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCore(t, nil, nil)
			info, err := c.create(func(r *CreationConfig) {
				r.SessionType = "inference"
				r.Mounts = []MountSpec{{Name: "llama", VFID: "vf-1", HostPath: models, KernelPath: "/models", MountPerm: "ro", UsageMode: "model"}}
				r.InternalData = map[string]any{"model_definition": map[string]any{"models": []any{
					map[string]any{"name": "llm", "model_path": "/models", "service": map[string]any{
						"start_command": "serve", "port": 8000, "health_check": map[string]any{"enable": true, "max_retries": 1, "max_wait_time": 1.0},
					}},
				}}}
				for k, v := range tc.environ {
					r.Environ[k] = v
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			var found bool
			for _, sp := range info.ServicePorts {
				if sp.Name == "llm-8000" && sp.IsInference {
					found = true
				}
			}
			if !found {
				t.Fatalf("no inference service port in %+v", info.ServicePorts)
			}
			waitFor(t, 10*time.Second, "kernel_terminated", func() bool {
				_, ok := c.events.find("kernel_terminated", info.ID)
				return ok
			})
			if ev, _ := c.events.find("kernel_terminated", info.ID); ev["reason"] != ReasonFailedToStart {
				t.Fatalf("kernel_terminated %v", ev)
			}
			waitFor(t, 5*time.Second, "the kernel gone", func() bool { return !c.agent.IsCreating(info.ID) })
			c.assertNothingTaken("after the model service failed")
		})
	}
}

func TestModelServiceTimeout_Fake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		hc   map[string]any
		want time.Duration
	}{
		{nil, 10 * time.Second},
		{map[string]any{"enable": false, "max_retries": 100}, 10 * time.Second},
		{map[string]any{"enable": true}, (10*15 + 10) * time.Second},
		{map[string]any{"enable": true, "max_retries": 3, "max_wait_time": 2.5}, 17500 * time.Millisecond},
		{map[string]any{"enable": true, "max_retries": int64(2), "max_wait_time": uint64(4)}, 18 * time.Second},
		{map[string]any{"enable": true, "max_retries": "many"}, (10*15 + 10) * time.Second},
	} {
		got := modelServiceTimeout(ModelConfig{Service: &ModelService{HealthCheck: tc.hc}})
		if got != tc.want {
			t.Errorf("health check %v: %s, want %s", tc.hc, got, tc.want)
		}
	}
}

// kernel_host: the configured one, else the advertised host, else a
// specific bind address, else the RPC listen host, else loopback.
func TestKernelHost_Fake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                      string
		opt, adv, bind, rpc, want string
	}{
		{"option", "kh.example", "adv.example", "10.0.0.5", "rpc.example", "kh.example"},
		{"advertised", "", "adv.example", "10.0.0.5", "rpc.example", "adv.example"},
		{"bind address", "", "", "127.0.0.3", "rpc.example", "127.0.0.3"},
		{"rpc host", "", "", "0.0.0.0", "rpc.example", "rpc.example"},
		{"loopback", "", "", "0.0.0.0", "0.0.0.0", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCore(t, func(cfg *config.Config) {
				cfg.Container.AdvertisedHost, cfg.Container.BindHost, cfg.Agent.RPCListenAddr.Host = tc.adv, tc.bind, tc.rpc
			}, func(o *Options) { o.KernelHost = tc.opt })
			if got := c.agent.KernelHost(); got != tc.want {
				t.Fatalf("kernel host %q, want %q", got, tc.want)
			}
			info, err := c.create(nil)
			if err != nil {
				t.Fatal(err)
			}
			if info.KernelHost != tc.want {
				t.Fatalf("kernel_host of the result %q", info.KernelHost)
			}
		})
	}
}
