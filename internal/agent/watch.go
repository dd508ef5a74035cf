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
		a.subscribedOnce.Do(func() { close(a.subscribed) })
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
		// The kernel's owner judges it; the event loop keeps reading.
		if k, ok := a.Kernel(kid); ok {
			a.tell(k, &exitMsg{containerID: ev.ContainerID, exitCode: ev.ExitCode, finished: ev.Time})
		}
	case "oom":
		if k, ok := a.Kernel(kid); ok && k.ContainerID() == ev.ContainerID {
			k.SetTermination(kernel.Termination{OOMKilled: true})
		}
	}
}
