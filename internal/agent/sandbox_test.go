package agent

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/sandbox"
)

// The container spec carries the sandbox runtime: the node's, a stricter
// one the image's label asks for, never a weaker one; a label that cannot
// be ranked fails the creation before any container exists.
func TestSandboxRuntimeInSpec_Fake(t *testing.T) {
	c := newCore(t, func(cfg *config.Config) { cfg.Container.SandboxType = "crun" }, func(o *Options) {
		o.Backend.(*fake.Backend).SetRuntimes("runc", "crun", "runsc")
	})
	for label, want := range map[string]string{"": "crun", "docker": "crun", "gvisor": "runsc"} {
		info, err := c.create(func(cfg *CreationConfig) {
			if label != "" {
				cfg.Image.Labels = map[string]string{sandbox.LabelRuntime: label}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.be.Spec(info.ContainerID).Runtime; got != want {
			t.Fatalf("label %q: runtime %q, want %q", label, got, want)
		}
	}
	before := len(c.be.Containers())
	_, err := c.create(func(cfg *CreationConfig) { cfg.Image.Labels = map[string]string{sandbox.LabelRuntime: "kata"} })
	if err == nil || !errors.Is(err, ErrCreationFailed) || !strings.Contains(err.Error(), "kata") {
		t.Fatalf("unranked label: %v", err)
	}
	if n := len(c.be.Containers()); n != before {
		t.Fatalf("containers %d -> %d after a refused creation", before, n)
	}
}

// Start-up refuses a runtime the engine does not list.
func TestSandboxStartupUnregistered_Fake(t *testing.T) {
	c := newCore(t, nil, nil)
	cfg := *c.opts.Config
	cfg.Container.SandboxType = "gvisor"
	o := c.opts
	o.Config = &cfg
	a, err := New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Start(t.Context()); err == nil || !strings.Contains(err.Error(), `"runsc" is not registered`) || !strings.Contains(err.Error(), "gvisor") {
		t.Fatalf("start-up with an unregistered runtime: %v", err)
	}
}

// The kernel's runtime is kept in its spec (from the create, from the
// container on adoption, from the new container on a restart), and a
// gVisor kernel's stat target says its processes are not host
// processes.
func TestSandboxRuntimeForStats_Fake(t *testing.T) {
	c := newCore(t, func(cfg *config.Config) { cfg.Container.SandboxType = "crun" }, func(o *Options) {
		o.Backend.(*fake.Backend).SetRuntimes("runc", "crun", "runsc")
	})
	plain, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	gv, err := c.create(func(cfg *CreationConfig) { cfg.Image.Labels = map[string]string{sandbox.LabelRuntime: "gvisor"} })
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		want := map[string]bool{plain.ID: false, gv.ID: true}
		for _, st := range c.agent.StatTargets() {
			if w, ok := want[st.KernelID]; ok {
				if st.NoHostProcesses != w {
					t.Errorf("%s: kernel %s NoHostProcesses=%v", when, st.KernelID, st.NoHostProcesses)
				}
				delete(want, st.KernelID)
			}
		}
		if len(want) != 0 {
			t.Errorf("%s: no stat targets for %v", when, want)
		}
		if k, _ := c.agent.Kernel(gv.ID); k.Spec().OCIRuntime != "runsc" {
			t.Errorf("%s: spec runtime %q", when, k.Spec().OCIRuntime)
		}
	}
	check("after the create")
	c.agent.Close()
	c.agent = c.start()
	check("after adoption")
	k, _ := c.agent.Kernel(gv.ID)
	if _, err := c.agent.RestartKernel(context.Background(), k.SessionID, gv.ID, nil); err != nil {
		t.Fatal(err)
	}
	check("after a restart")
}

// A restart keeps the runtime the kernel was created with: the operator
// lowering the node's sandbox-type (and restarting the agent) applies to
// new kernels, not to running sessions' restarts.
func TestSandboxRuntimeKeptOnRestart_Fake(t *testing.T) {
	c := newCore(t, func(cfg *config.Config) { cfg.Container.SandboxType = "gvisor" }, func(o *Options) {
		o.Backend.(*fake.Backend).SetRuntimes("runc", "crun", "runsc")
	})
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.be.Spec(info.ContainerID).Runtime; got != "runsc" {
		t.Fatalf("created under %q, want runsc", got)
	}
	c.agent.Close()
	cfg := *c.opts.Config
	cfg.Container.SandboxType = "runc"
	c.opts.Config = &cfg
	c.agent = c.start()
	k, ok := c.agent.Kernel(info.ID)
	if !ok {
		t.Fatal("kernel not adopted")
	}
	if _, err := c.agent.RestartKernel(context.Background(), k.SessionID, info.ID, nil); err != nil {
		t.Fatal(err)
	}
	k, _ = c.agent.Kernel(info.ID)
	if got := c.be.Spec(k.Spec().ContainerID).Runtime; got != "runsc" {
		t.Fatalf("restarted under %q after the node was lowered to runc, want runsc", got)
	}
	// A new kernel gets the node's new runtime.
	fresh, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.be.Spec(fresh.ContainerID).Runtime; got != "runc" {
		t.Fatalf("a new kernel under %q, want runc", got)
	}
}
