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
	a.syncsMu.Lock()
	defer a.syncsMu.Unlock()
	return a.syncs
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
		a.syncsMu.Lock()
		a.syncs++
		a.syncsMu.Unlock()
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
		case k.State() == kernel.Running && !k.restarting.Load() && c.ID == k.ContainerID() && !(&c).Alive():
			ins, err := a.be.Inspect(ctx, c.ID)
			code, oom, finished := -1, false, time.Time{}
			if err == nil {
				code, oom, finished = ins.ExitCode, ins.OOMKilled, ins.FinishedAt
			}
			// The die event may be handling it already (then this
			// returns at once); if the event was missed, this waits for
			// the engine's verdict in the background as that path does.
			a.bg.Add(1)
			go func(kid, cid string) {
				defer a.bg.Done()
				a.handleExit(ctx, kid, cid, code, oom, finished, false)
			}(kid, c.ID)
		}
	}
	for _, k := range a.Kernels() {
		// A CLEAN that failed (the engine refused to remove the container)
		// left the kernel TERMINATING; retry it here.
		if k.State() == kernel.Terminating && !k.cleaned.Load() {
			if unlock, ok := a.locks.tryLock(k.ID); ok {
				if k.State() == kernel.Terminating && !k.cleaned.Load() {
					if err := a.clean(ctx, k, false); err != nil {
						a.log.Warn("retrying clean of a terminating kernel", "kernel_id", k.ID, "error", err)
					}
				}
				unlock()
			}
			continue
		}
		if k.State() != kernel.Running || k.restarting.Load() {
			continue
		}
		if _, ok := seen[k.ID]; ok {
			continue
		}
		unlock, ok := a.locks.tryLock(k.ID)
		if !ok {
			continue // lifecycle work in progress; next pass
		}
		if k.State() == kernel.Running && !k.restarting.Load() {
			k.SetTermination(kernel.Termination{Reason: ReasonContainerNotFound, ExitCode: -1})
			if err := a.clean(ctx, k, false); err != nil {
				a.log.Error("clean kernel without container", "kernel_id", k.ID, "error", err)
			}
		}
		unlock()
	}
	a.syncsMu.Lock()
	sweep := time.Since(a.lastNetSweep) >= networkSweepInterval
	if sweep {
		a.lastNetSweep = time.Now()
	}
	a.syncsMu.Unlock()
	if sweep {
		a.sweepNetworks(ctx, "")
	}
	return nil
}
