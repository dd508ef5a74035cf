// The engine's event stream: a container's exit, OOM and removal reach
// its kernel's state machine here.

package agent

import (
	"context"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/kernel"
)

// watchEvents follows the Docker event stream and reconnects when it
// drops; after a reconnect it asks for a sync, since events may have been
// missed.
func (a *Agent) watchEvents(ctx context.Context) {
	defer a.bg.Done()
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		evs, errc := a.be.Events(ctx)
		connected := time.Now()
	loop:
		for {
			select {
			case ev, ok := <-evs:
				if !ok {
					break loop
				}
				a.handleEvent(ctx, ev)
			case <-ctx.Done():
				return
			}
		}
		err := <-errc
		if ctx.Err() != nil {
			return
		}
		if time.Since(connected) > 10*time.Second {
			backoff = 500 * time.Millisecond
		}
		a.log.Warn("docker event stream closed; reconnecting", "error", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		if backoff < 10*time.Second {
			backoff *= 2
		}
		a.requestSync()
	}
}

// handleExit handles the exit of a kernel's container, seen by a die
// event (inspect: look up the OOM flag and the finish time) or by the
// sync loop (which has them). The first to see a container's exit claims
// it; a kernel the agent is not stopping itself waits for the engine's
// verdict first, so that a container stopped by an engine shutdown is
// reported as such whichever path saw it.
func (a *Agent) handleExit(ctx context.Context, kid, containerID string, exitCode int, oom bool, finished time.Time, inspect bool) {
	k, known := a.Kernel(kid)
	if known {
		claim, ok := k.claimExit(containerID)
		if !ok {
			return
		}
		// Handled (or failed: a clean the engine refused is retried by
		// the next sync pass, which needs the claim back).
		defer k.exitClaim.CompareAndSwap(claim, nil)
	}
	if inspect {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if ins, err := a.be.Inspect(ictx, containerID); err == nil {
			oom = ins.OOMKilled
			if !ins.FinishedAt.IsZero() {
				finished = ins.FinishedAt
			}
		}
		cancel()
	}
	// A kernel the agent itself is stopping, restarting or has cleaned
	// already needs no verdict, nor one whose exit falls in a known
	// outage (a retry after the engine refused the clean).
	ours := !known || k.State() != kernel.Running || k.restarting.Load() || k.cleaned.Load()
	if !oom && !ours && !a.exitedWithEngine(finished) {
		// An engine that shuts down stops every container first (their
		// processes may well exit 0) and only then stops answering: give
		// it a moment to show it, so that the manager hears why the
		// kernel ended.
		wait := engineVerdictWait
		if stoppedBySignal(exitCode) {
			wait = engineStopVerdictWait
		}
		a.awaitEngineVerdict(ctx, wait)
	}
	a.onContainerExit(context.WithoutCancel(ctx), kid, containerID, exitCode, oom, finished)
}

// claimExit takes the handling of containerID's exit; false while the
// other path has it.
func (k *Kernel) claimExit(containerID string) (*string, bool) {
	for {
		prev := k.exitClaim.Load()
		if prev != nil && *prev == containerID {
			return nil, false
		}
		claim := &containerID
		if k.exitClaim.CompareAndSwap(prev, claim) {
			return claim, true
		}
	}
}

func (a *Agent) handleEvent(ctx context.Context, ev backend.Event) {
	if ev.Labels[LabelOwner] != a.id {
		return
	}
	kid := ev.Labels[LabelKernelID]
	if kid == "" {
		return
	}
	if a.cfg.Debug.LogDockerEvents {
		a.log.Debug("docker event", "action", ev.Action, "kernel_id", kid, "exit_code", ev.ExitCode)
	}
	switch ev.Action {
	case "die":
		// Clean in the background: the event loop must keep reading.
		a.bg.Add(1)
		go func() {
			defer a.bg.Done()
			a.handleExit(ctx, kid, ev.ContainerID, ev.ExitCode, false, ev.Time, true)
		}()
	case "oom":
		if k, ok := a.Kernel(kid); ok && k.ContainerID() == ev.ContainerID {
			k.SetTermination(kernel.Termination{OOMKilled: true})
		}
	}
}
