package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/bgtask"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/event"
)

// flakyEvents is a backend whose event stream breaks right away a few
// times; only Events and List matter to this test.
type flakyEvents struct {
	backend.Backend
	calls atomic.Int32
	lists atomic.Int32
}

func (f *flakyEvents) Events(ctx context.Context) (<-chan backend.Event, <-chan error) {
	f.calls.Add(1)
	ch := make(chan backend.Event)
	errc := make(chan error, 1)
	close(ch)
	errc <- errors.New("stream dropped")
	return ch, errc
}

func (f *flakyEvents) List(context.Context, map[string]string) ([]backend.Container, error) {
	f.lists.Add(1)
	return nil, nil
}

func TestEventStreamReconnectsAndResyncs(t *testing.T) {
	f := &flakyEvents{}
	cfg := config.Defaults()
	cfg.Agent.SyncContainerLifecycles.Interval = 3600 // only requested syncs run
	a := &Agent{cfg: cfg, id: "i-x", be: f, log: slog.New(slog.NewTextHandler(io.Discard, nil)), reg: newRegistry(), syncCh: make(chan struct{}, 1), closed: make(chan struct{}), subscribed: make(chan struct{}), tasks: bgtask.New(func(context.Context, event.Event) {})}
	a.networks = newNetworks(f, a.id, a.log, a.Kernels)
	ctx, cancel := context.WithCancel(context.Background())
	a.bg.Add(2)
	go a.watchEvents(ctx)
	go a.syncLoop(ctx)
	deadline := time.Now().Add(15 * time.Second)
	for (f.calls.Load() < 3 || a.SyncPasses() < 1) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	a.bg.Wait()
	if f.calls.Load() < 3 {
		t.Fatalf("event stream reopened %d times, want >= 3", f.calls.Load())
	}
	if a.SyncPasses() < 1 || f.lists.Load() < 1 {
		t.Fatal("no sync after the stream dropped")
	}
}
