package agent

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/kernel"
)

// The sweep removes exactly this agent's session networks that nothing
// uses: no container, no registered kernel, older than the grace unless
// named.
func TestNetworksSweep_Fake(t *testing.T) {
	t.Parallel()
	be := newUnitNetBackend(fake.New())
	owned := map[string]string{LabelClusterNetwork: "1", LabelNetworkOwner: "i-me"}
	old := time.Now().Add(-2 * networkSweepGrace)
	for _, n := range []backend.Network{
		{Name: "unused-old", Labels: owned, Created: old},
		{Name: "unused-new", Labels: owned, Created: time.Now()},
		{Name: "just-left", Labels: owned, Created: time.Now()},
		{Name: "has-container", Labels: owned, Created: old, Containers: 1},
		{Name: "kernel-refers", Labels: owned, Created: old},
		{Name: "someone-elses", Labels: map[string]string{LabelClusterNetwork: "1", LabelNetworkOwner: "i-other"}, Created: old},
	} {
		be.put(n)
	}
	k := &Kernel{Machine: kernel.NewMachine("k", kernel.Running), ID: "k", Network: "kernel-refers"}
	ns := newNetworks(be, "i-me", slog.New(slog.NewTextHandler(io.Discard, nil)), func() []*Kernel { return []*Kernel{k} })
	ns.sweep(context.Background(), "just-left")
	want := []string{"has-container", "kernel-refers", "someone-elses", "unused-new"}
	if got := be.names(); !reflect.DeepEqual(got, want) {
		t.Fatalf("networks after the sweep: %v, want %v", got, want)
	}
	if !ns.sweepDue() || ns.sweepDue() {
		t.Fatal("sweepDue: the first call must be due, the next not before networkSweepInterval")
	}
}
