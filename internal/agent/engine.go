// The container engine's availability: a dockerd that stops or restarts is
// noticed, kernels whose containers it stopped are cleaned with a reason
// that says so, and the registry is reconciled as soon as it is back.

package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
)

// enginePoll is how often the engine is pinged.
const enginePoll = 2 * time.Second

// engineState remembers the engine's last outage.
type engineState struct {
	mu     sync.Mutex
	down   bool
	downAt time.Time // start of the last outage
	backAt time.Time // end of the last outage (zero while down)
	why    error     // what the failed ping said
}

// watchEngine pings the engine and logs its outages; when it is back, a
// sync pass reconciles every kernel at once.
func (a *Agent) watchEngine(ctx context.Context) {
	defer a.bg.Done()
	t := time.NewTicker(enginePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := a.be.Ping(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.markEngineDown(err)
			continue
		}
		a.markEngineUp()
	}
}

// markEngineUp ends an outage (once): a sync pass reconciles every
// kernel at once.
func (a *Agent) markEngineUp() {
	a.engine.mu.Lock()
	if !a.engine.down {
		a.engine.mu.Unlock()
		return
	}
	a.engine.down, a.engine.backAt = false, time.Now()
	outage := a.engine.backAt.Sub(a.engine.downAt)
	a.engine.mu.Unlock()
	a.log.Warn("container engine is back; reconciling kernels", "outage", outage.Round(time.Millisecond))
	a.requestSync()
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

// awaitEngineVerdict pings the engine for up to d and records an outage
// as soon as it does not answer.
func (a *Agent) awaitEngineVerdict(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := a.be.Ping(pctx)
		cancel()
		if err != nil {
			a.markEngineDown(err)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// markEngineDown starts an outage (once).
func (a *Agent) markEngineDown(err error) {
	a.engine.mu.Lock()
	if a.engine.down {
		a.engine.mu.Unlock()
		return
	}
	a.engine.down, a.engine.downAt, a.engine.backAt, a.engine.why = true, time.Now(), time.Time{}, err
	a.engine.mu.Unlock()
	a.log.Warn("container engine unavailable; kernel operations fail until it is back", "error", err)
}

// engineRestartGrace widens an outage at both ends: containers stop while
// the engine shuts down, before its socket refuses, and it may clean
// containers for a while after it answers again.
const engineRestartGrace = 30 * time.Second

// exitedWithEngine reports whether a container that finished at t did so
// because the engine stopped or restarted (within its last outage).
func (a *Agent) exitedWithEngine(t time.Time) bool {
	if t.IsZero() {
		return false
	}
	a.engine.mu.Lock()
	defer a.engine.mu.Unlock()
	if a.engine.downAt.IsZero() {
		return false
	}
	end := a.engine.backAt
	if a.engine.down || end.IsZero() {
		end = time.Now()
	}
	return !t.Before(a.engine.downAt.Add(-engineRestartGrace)) && !t.After(end.Add(engineRestartGrace))
}

// engineDownErr fails a creation at once while the engine is known not
// to answer: a hung engine (it accepts connections and never replies)
// would otherwise hold each creation, and what it took, until its first
// runtime call timed out.
// It pings once more first (the watcher polls every 2 s and the engine
// may have just come back).
func (a *Agent) engineDownErr(ctx context.Context) error {
	if a.EngineAvailable() {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, engineRecheck)
	_, err := a.be.Ping(pctx)
	cancel()
	if err == nil {
		a.markEngineUp()
		return nil
	}
	a.engine.mu.Lock()
	defer a.engine.mu.Unlock()
	return fmt.Errorf("%w since %s (its last ping: %v); nothing was created", backend.ErrUnavailable,
		a.engine.downAt.UTC().Format(time.RFC3339), a.engine.why)
}

// engineRecheck bounds the ping a creation makes during an outage.
const engineRecheck = 2 * time.Second

// EngineAvailable reports whether the last ping of the engine answered.
func (a *Agent) EngineAvailable() bool {
	a.engine.mu.Lock()
	defer a.engine.mu.Unlock()
	return !a.engine.down
}
