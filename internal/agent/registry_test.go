package agent

import (
	"errors"
	"fmt"
	"testing"

	"github.com/bai-agent/bai-agent/internal/kernel"
)

func TestRegistry(t *testing.T) {
	t.Parallel()
	r := newRegistry()
	mk := func(id string) *Kernel { return &Kernel{Machine: kernel.NewMachine(id, kernel.Preparing), ID: id} }
	b, a := mk("b"), mk("a")
	started := 0
	for _, k := range []*Kernel{b, a} {
		if err := r.add(k, func(*Kernel) { started++ }); err != nil {
			t.Fatal(err)
		}
	}
	if started != 2 {
		t.Fatalf("started called %d times, want 2", started)
	}
	if err := r.add(mk("a"), func(*Kernel) { t.Fatal("started for a refused duplicate") }); !errors.Is(err, ErrKernelExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	if got := r.list(); len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("list is not sorted by id: %v", got)
	}
	// Removing under a stale pointer leaves a newer kernel of the same id.
	r.remove("a", mk("a"))
	if k, ok := r.get("a"); !ok || k != a {
		t.Fatal("a stale remove dropped the live kernel")
	}
	r.remove("a", a)
	if _, ok := r.get("a"); ok {
		t.Fatal("kernel still there after remove")
	}
}

func TestRegistryRemembersBoundedTerminations(t *testing.T) {
	t.Parallel()
	r := newRegistry()
	for i := 0; i < maxRecent+10; i++ {
		r.remember(fmt.Sprint(i), kernel.Termination{Reason: "r", ExitCode: i})
	}
	if _, ok := r.termination("0"); ok {
		t.Fatal("the oldest termination is still remembered beyond maxRecent")
	}
	if got, ok := r.termination(fmt.Sprint(maxRecent + 9)); !ok || got.ExitCode != maxRecent+9 {
		t.Fatalf("newest termination: %v %v", got, ok)
	}
	// Remembering an id again updates it in place.
	r.remember("100", kernel.Termination{Reason: "again"})
	if got, _ := r.termination("100"); got.Reason != "again" {
		t.Fatalf("updated termination: %v", got)
	}
	if len(r.order) != maxRecent || len(r.recent) != maxRecent {
		t.Fatalf("kept %d/%d terminations, want %d", len(r.order), len(r.recent), maxRecent)
	}
}

func (r *recorder) findName(name string) (map[string]any, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Name == name {
			return r.events[i].Payload, true
		}
	}
	return nil, false
}

func (r *recorder) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Name == name {
			n++
		}
	}
	return n
}
