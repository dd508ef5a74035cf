package agent

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/resource"
)

// Two agents of one process (multi-agent mode, allocation-mode = "shared")
// on one runtime: one allocator and one host-port pool between them, each
// agent with its own kernels; after a restart each adopts only its own.
func TestSharedAllocation_Fake(t *testing.T) {
	c := newCore(t, nil, nil) // the runtime, the image and agent A's settings
	c.agent.Close()
	cfgB := *c.cfg
	cfgB.Agent.ID = c.cfg.Agent.ID + "-b"
	cfgB.Container.ScratchRoot = filepath.Join(filepath.Dir(c.cfg.Container.ScratchRoot), "b")
	start := func(sh *Shared) (*Agent, *Agent) {
		t.Helper()
		var out [2]*Agent
		for i, cfg := range []*config.Config{c.cfg, &cfgB} {
			o := c.opts
			o.Config, o.Shared = cfg, sh
			a, err := New(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			out[i] = a
		}
		return out[0], out[1]
	}
	a, b := start(NewShared())
	if a.Allocator() != b.Allocator() || a.Ports() != b.Ports() {
		t.Fatal("agents built with one Shared have their own allocator or port pool")
	}
	create := func(ag *Agent, cpu string) (string, error) {
		kid := uuid.NewString()
		_, err := ag.CreateKernels(context.Background(), fakeRequest(kid, func(r *CreationConfig) { r.ResourceSlots["cpu"] = cpu }))
		return kid, err
	}
	// The fake host has 4 cores: A takes 3, B the last.
	k1, err := create(a, "3")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := create(b, "1")
	if err != nil {
		t.Fatal(err)
	}
	for _, ag := range []*Agent{a, b} {
		if _, err := create(ag, "1"); !errors.Is(err, resource.ErrInsufficient) {
			t.Fatalf("%s admitted a fifth core: %v", ag.ID(), err)
		}
	}
	if len(a.Kernels()) != 1 || len(b.Kernels()) != 1 {
		t.Fatalf("kernels: A %d, B %d", len(a.Kernels()), len(b.Kernels()))
	}
	a.Close()
	b.Close()

	// Restart: each agent adopts its own kernel, into a fresh shared
	// allocator that holds both.
	a, b = start(NewShared())
	defer a.Close()
	defer b.Close()
	if _, ok := a.Kernel(k1); !ok || len(a.Kernels()) != 1 {
		t.Fatalf("A did not adopt %s alone: %d kernels", k1, len(a.Kernels()))
	}
	if _, ok := b.Kernel(k2); !ok || len(b.Kernels()) != 1 {
		t.Fatalf("B did not adopt %s alone: %d kernels", k2, len(b.Kernels()))
	}
	if used := a.Allocator().Used()["cpu"]; used.String() != "4" {
		t.Fatalf("cpu used after the restart: %s, want 4", used)
	}
	// B's destroy frees the core for A.
	if err := b.DestroyKernel(context.Background(), k2, "", ReasonUserRequested, false); err != nil {
		t.Fatal(err)
	}
	if _, err := create(a, "1"); err != nil {
		t.Fatalf("A cannot use the core B freed: %v", err)
	}
}

// With [resource] shared-overcommit each agent allocates from the whole
// node on its own, as upstream's shared mode: together they may
// over-commit it. The host ports stay one pool.
func TestSharedOvercommit_Fake(t *testing.T) {
	c := newCore(t, func(cfg *config.Config) { cfg.Resource.SharedOvercommit = true }, nil)
	c.agent.Close()
	cfgB := *c.cfg
	cfgB.Agent.ID = c.cfg.Agent.ID + "-b"
	cfgB.Container.ScratchRoot = filepath.Join(filepath.Dir(c.cfg.Container.ScratchRoot), "b")
	sh := NewShared()
	var ags []*Agent
	for _, cfg := range []*config.Config{c.cfg, &cfgB} {
		o := c.opts
		o.Config, o.Shared = cfg, sh
		a, err := New(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		ags = append(ags, a)
	}
	if ags[0].Allocator() == ags[1].Allocator() || ags[0].Ports() != ags[1].Ports() {
		t.Fatal("with shared-overcommit the agents must have their own allocators and one port pool")
	}
	// The fake host has 4 cores; each agent admits 4, and each kernel's
	// host ports come from the one pool.
	var perKernel int
	for i, ag := range ags {
		kid := uuid.NewString()
		if _, err := ag.CreateKernels(context.Background(), fakeRequest(kid, func(r *CreationConfig) { r.ResourceSlots["cpu"] = "4" })); err != nil {
			t.Fatalf("%s: %v", ag.ID(), err)
		}
		if i == 0 {
			perKernel = ag.Ports().InUse()
		}
	}
	if perKernel == 0 || ags[1].Ports().InUse() != 2*perKernel {
		t.Fatalf("host ports in the shared pool: %d after one kernel, %d after two", perKernel, ags[1].Ports().InUse())
	}
}
