// The container engine's availability: a dockerd that stops or restarts is
// noticed, kernels whose containers it stopped are cleaned with a reason
// that says so, and the registry is reconciled as soon as it is back.

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
)

// enginePoll is how often the engine is pinged.
const enginePoll = 2 * time.Second

// engineMonitor pings the container engine, remembers its last outage,
// and answers the questions the rest of the agent asks about it: is it
// there, did a container stop because the engine went down.
type engineMonitor struct {
	be  backend.Backend
	log *slog.Logger
	// onBack runs when an outage ends (the agent asks for a sync pass).
	onBack func()

	mu     sync.Mutex
	down   bool
	downAt time.Time // start of the last outage
	backAt time.Time // end of the last outage (zero while down)
	why    error     // what the failed ping said
}

func newEngineMonitor(be backend.Backend, log *slog.Logger, onBack func()) *engineMonitor {
	if onBack == nil {
		onBack = func() {}
	}
	return &engineMonitor{be: be, log: log, onBack: onBack}
}

// run pings the engine every enginePoll until ctx ends.
func (m *engineMonitor) run(ctx context.Context) {
	t := time.NewTicker(enginePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := m.be.Ping(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.markDown(err)
			continue
		}
		m.markUp()
	}
}

// markUp ends an outage (once): a sync pass reconciles every kernel at
// once.
func (m *engineMonitor) markUp() {
	m.mu.Lock()
	if !m.down {
		m.mu.Unlock()
		return
	}
	m.down, m.backAt = false, time.Now()
	outage := m.backAt.Sub(m.downAt)
	m.mu.Unlock()
	m.log.Warn("container engine is back; reconciling kernels", "outage", outage.Round(time.Millisecond))
	m.onBack()
}

// engineVerdictWait is how long a container's stop waits to see whether
// the engine goes down with it. Kernel runners exit within milliseconds
// of dockerd's stop signal, and dockerd may take a few seconds more to
// stop answering (containerd, the network controller): 2 s was too short
// on a loaded 2-core machine.
const engineVerdictWait = 5 * time.Second

// engineStopVerdictWait is the wait for a kernel stopped by a signal from
// outside the agent (its runner exits with 128+SIGINT or SIGTERM, or
// 137 after the stop timeout): that is how an engine shutdown begins,
// and a loaded engine may take well over 5 s more to stop answering.
const engineStopVerdictWait = 20 * time.Second

// stoppedBySignal reports whether an exit code says the container's main
// process was stopped (SIGINT, SIGTERM, SIGKILL).
func stoppedBySignal(code int) bool { return code == 130 || code == 143 || code == 137 }

// awaitVerdict pings the engine for up to d and records an outage as
// soon as it does not answer.
func (m *engineMonitor) awaitVerdict(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := m.be.Ping(pctx)
		cancel()
		if err != nil {
			m.markDown(err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// markDown starts an outage (once).
func (m *engineMonitor) markDown(err error) {
	m.mu.Lock()
	if m.down {
		m.mu.Unlock()
		return
	}
	m.down, m.downAt, m.backAt, m.why = true, time.Now(), time.Time{}, err
	m.mu.Unlock()
	m.log.Warn("container engine unavailable; kernel operations fail until it is back", "error", err)
}

// engineRestartGrace widens an outage at both ends: containers stop while
// the engine shuts down, before its socket refuses, and it may clean
// containers for a while after it answers again.
const engineRestartGrace = 30 * time.Second

// exitedWith reports whether a container that finished at t did so
// because the engine stopped or restarted (within its last outage).
func (m *engineMonitor) exitedWith(t time.Time) bool {
	if t.IsZero() {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.downAt.IsZero() {
		return false
	}
	end := m.backAt
	if m.down || end.IsZero() {
		end = time.Now()
	}
	return !t.Before(m.downAt.Add(-engineRestartGrace)) && !t.After(end.Add(engineRestartGrace))
}

// downErr fails a creation at once while the engine is known not to
// answer: a hung engine (it accepts connections and never replies) would
// otherwise hold each creation, and what it took, until its first
// runtime call timed out. It pings once more first (the monitor polls
// every 2 s and the engine may have just come back).
func (m *engineMonitor) downErr(ctx context.Context) error {
	if m.available() {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, engineRecheck)
	_, err := m.be.Ping(pctx)
	cancel()
	if err == nil {
		m.markUp()
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Errorf("%w since %s (its last ping: %v); nothing was created", backend.ErrUnavailable,
		m.downAt.UTC().Format(time.RFC3339), m.why)
}

// engineRecheck bounds the ping a creation makes during an outage.
const engineRecheck = 2 * time.Second

// available reports whether the last ping of the engine answered.
func (m *engineMonitor) available() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.down
}

// EngineAvailable reports whether the last ping of the engine answered.
func (a *Agent) EngineAvailable() bool { return a.engine.available() }
