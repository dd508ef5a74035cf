// The sync loop reconciles the registry with every container this agent
// owns, catching what the event stream missed.

package agent

import (
	"context"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/kernel"
)

func (a *Agent) requestSync() {
	select {
	case a.syncCh <- struct{}{}:
	default:
	}
}

// SyncPasses returns how many sync passes have finished.
func (a *Agent) SyncPasses() uint64 {
	return a.syncs.Load()
}

func (a *Agent) syncLoop(ctx context.Context) {
	defer a.bg.Done()
	interval := time.Duration(float64(a.cfg.Agent.SyncContainerLifecycles.Interval) * float64(time.Second))
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.syncCh:
		}
		err := a.SyncOnce(ctx)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("sync container lifecycles", "error", err)
		}
		if a.onSync != nil && ctx.Err() == nil {
			a.onSync(err)
		}
	}
}

// SyncOnce reconciles the registry with every container this agent owns.
func (a *Agent) SyncOnce(ctx context.Context) error {
	defer func() {
		a.syncs.Add(1)
	}()
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	list, err := a.be.List(lctx, a.ownerFilter())
	cancel()
	if err != nil {
		return err
	}
	seen := map[string]backend.Container{}
	for _, c := range list {
		kid := kernelIDOf(&c)
		if kid == "" {
			continue
		}
		seen[kid] = c
		k, known := a.Kernel(kid)
		switch {
		case !known:
			// Not ours in memory: a leftover of a crash or someone else's
			// doing. Alive ones are destroyed, dead ones removed.
			ins, err := a.be.Inspect(ctx, c.ID)
			if err != nil {
				continue
			}
			reason := ReasonUnknownContainer
			if !ins.Alive() {
				reason = ReasonSelfTerminated
			}
			a.destroyStray(ctx, kid, ins, reason)
		case k.State() == kernel.Running && c.ID == k.ContainerID() && !(&c).Alive():
			// The die event may be handling it already: the owner judges
			// each container's exit once.
			a.hint(k, &exitMsg{containerID: c.ID, exitCode: -1})
		}
	}
	for _, k := range a.Kernels() {
		switch k.State() {
		case kernel.Terminating:
			// A CLEAN that failed (the engine refused to remove the
			// container) left the kernel TERMINATING; retry it.
			a.hint(k, &retryMsg{})
		case kernel.Running:
			if _, ok := seen[k.ID]; !ok {
				a.hint(k, &goneMsg{containerID: k.ContainerID()})
			}
		}
	}
	if a.networks.sweepDue() {
		a.networks.sweep(ctx, "")
	}
	return nil
}
