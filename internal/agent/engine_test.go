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
	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

func TestEngineMonitorOutage_Fake(t *testing.T) {
	t.Parallel()
	be := fake.New()
	var backs atomic.Int32
	m := newEngineMonitor(be, slog.New(slog.NewTextHandler(io.Discard, nil)), func() { backs.Add(1) })
	ctx := context.Background()
	if !m.available() || m.downErr(ctx) != nil {
		t.Fatal("a fresh monitor reports an outage")
	}
	if m.exitedWith(time.Now()) {
		t.Fatal("an exit is blamed on an outage that never was")
	}
	refused := errors.New("connection refused")
	be.Inject(fake.CallPing, &fake.Fault{Err: refused})
	m.awaitVerdict(ctx, time.Second)
	if m.available() {
		t.Fatal("a refused ping did not start an outage")
	}
	err := m.downErr(ctx)
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("downErr during the outage: %v", err)
	}
	if !m.exitedWith(time.Now()) || !m.exitedWith(time.Now().Add(-engineRestartGrace/2)) {
		t.Fatal("an exit during the outage (or just before it) is not blamed on it")
	}
	if m.exitedWith(time.Now().Add(-2 * engineRestartGrace)) {
		t.Fatal("an exit long before the outage is blamed on it")
	}
	// The engine answers again: downErr pings once more and ends the
	// outage, once.
	be.Inject(fake.CallPing, nil)
	if err := m.downErr(ctx); err != nil {
		t.Fatalf("downErr once the engine answers: %v", err)
	}
	m.markUp()
	if !m.available() || backs.Load() != 1 {
		t.Fatalf("available %v, onBack ran %d times (want 1)", m.available(), backs.Load())
	}
	if !m.exitedWith(time.Now()) {
		t.Fatal("an exit within the grace after the outage is not blamed on it")
	}
	if m.exitedWith(time.Time{}) {
		t.Fatal("an unknown finish time is blamed on the outage")
	}
}

// awaitVerdict returns after its wait when the engine keeps answering.
func TestEngineMonitorVerdictWhileUp_Fake(t *testing.T) {
	t.Parallel()
	m := newEngineMonitor(fake.New(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	start := time.Now()
	m.awaitVerdict(context.Background(), 300*time.Millisecond)
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Fatalf("awaitVerdict took %s", d)
	}
	if !m.available() {
		t.Fatal("an answering engine is marked down")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	m.awaitVerdict(ctx, time.Minute)
	if time.Since(start) > testutil.Slow(time.Second) {
		t.Fatal("awaitVerdict ignored its cancelled context")
	}
}
