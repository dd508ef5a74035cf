package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/kernel"
)

// Termination reasons (KernelLifecycleEventReason values).
const (
	ReasonUserRequested     = "user-requested"
	ReasonAlreadyTerminated = "already-terminated"
	ReasonNotFoundInManager = "not-found-in-manager"
	ReasonSelfTerminated    = "self-terminated"
	ReasonContainerNotFound = "container-not-found"
	// ReasonAnomalyDetected is sent for a kernel whose container the
	// container engine stopped when it went down or restarted (upstream's
	// enum has no closer value).
	ReasonAnomalyDetected   = "anomaly-detected"
	ReasonUnknownContainer  = "terminated-unknown-container"
	ReasonFailedToCreate    = "failed-to-create"
	ReasonFailedToStart     = "failed-to-start"
	ReasonRestarting        = "restarting"
	ReasonResumingOperation = "resuming-agent-operation"
	cleanTimeout            = 90 * time.Second
)

// DestroyKernel stops and cleans a kernel and returns when the CLEAN phase
// has finished. An unknown kernel is not an error: the manager is told it
// is already terminated (unless events are suppressed).
func (a *Agent) DestroyKernel(ctx context.Context, kernelID, sessionID, reason string, suppressEvents bool) error {
	if reason == "" {
		reason = ReasonUserRequested
	}
	k, ok := a.Kernel(kernelID)
	if !ok {
		if !suppressEvents {
			a.events.Publish(ctx, event.KernelTerminated{KernelID: kernelID, SessionID: sessionID, Reason: ReasonAlreadyTerminated, ExitCode: -1})
		}
		return nil
	}
	reply := make(chan error, 1)
	err, cerr := call(ctx, k, &destroyMsg{ctx: ctx, reason: reason, suppressEvents: suppressEvents, reply: reply}, reply)
	if errors.Is(cerr, errKernelGone) {
		return nil // it ended meanwhile
	}
	if cerr != nil {
		return kernelErr(kernelID, cerr)
	}
	return err
}

// destroy is DestroyKernel in the kernel's owner.
func (a *Agent) destroy(ctx context.Context, k *Kernel, reason string, suppressEvents bool) error {
	switch k.State() {
	case kernel.Terminated:
		return nil
	case kernel.Preparing, kernel.Pulling, kernel.Creating:
		// The owner runs creations to their end before this, so a kernel
		// still in creation is one whose creation was never handled.
		return nil
	}
	k.SetTermination(kernel.Termination{Reason: reason, ExitCode: -1})
	if err := k.Transition(kernel.Terminating, reason); err != nil && !errors.Is(err, kernel.ErrIllegalTransition) {
		return err
	}
	if k.ContainerID() != "" {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.stopTime+30*time.Second)
		err := a.be.Stop(sctx, k.ContainerID(), a.stopTime)
		cancel()
		if err != nil && !errors.Is(err, backend.ErrNotFound) {
			a.log.Warn("stop kernel container", "kernel_id", k.ID, "error", err)
		}
	}
	return a.clean(context.WithoutCancel(ctx), k, suppressEvents)
}

// cleanJob is what the CLEAN phase carries from step to step.
type cleanJob struct {
	a              *Agent
	k              *Kernel
	log            *slog.Logger
	suppressEvents bool
}

// cleanSteps is the CLEAN phase. Only removing the container can fail the
// phase: the registry entry then stays and the sync loop retries, and
// nothing is released while the container may still hold it. Other
// failures are logged.
var cleanSteps = []step[*cleanJob]{
	{name: "exit-status", do: (*cleanJob).exitStatus},
	{name: "logs", do: (*cleanJob).keepLogs},
	{name: "remove-container", do: (*cleanJob).removeContainer},
	{name: "scratch", do: (*cleanJob).removeScratch},
	{name: "release", do: (*cleanJob).release},
	{name: "publish", do: (*cleanJob).publish},
	{name: "network", do: (*cleanJob).network},
}

// network removes the session network this agent created once its last
// kernel is gone (the manager's destroy_local_network may never come if
// it lost track of the session).
func (j *cleanJob) network(ctx context.Context) error {
	if j.k.Network != "" && j.k.Network != "host" {
		j.a.networks.sweep(ctx, j.k.Network)
	}
	return nil
}

// clean is the CLEAN phase: read the exit status, keep the logs, remove
// the container, scratch, ports and allocation, drop the registry entry,
// publish kernel_terminated. Only the kernel's owner calls it. It is
// idempotent.
func (a *Agent) clean(ctx context.Context, k *Kernel, suppressEvents bool) error {
	if k.own.cleaned {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, cleanTimeout)
	defer cancel()
	j := &cleanJob{a: a, k: k, log: a.log.With("kernel_id", k.ID, "session_id", k.SessionID), suppressEvents: suppressEvents}
	if err := runSteps(ctx, "clean", cleanSteps, j, a.onStepFail); err != nil {
		return kernelErr(k.ID, err)
	}
	return nil
}

func (j *cleanJob) exitStatus(ctx context.Context) error {
	cid := j.k.ContainerID()
	if cid == "" {
		return nil
	}
	ins, err := j.a.be.Inspect(ctx, cid)
	switch {
	case err == nil && !ins.Running:
		t := kernel.ClassifyExit(ins.ExitCode, ins.OOMKilled)
		t.Reason = ReasonSelfTerminated
		j.k.SetTermination(t)
	case err != nil && !errors.Is(err, backend.ErrNotFound):
		j.log.Warn("inspect before clean", "error", err)
	}
	return nil
}

// keepLogs hands the container's logs to the control plane first: they
// are gone with the container.
func (j *cleanJob) keepLogs(ctx context.Context) error {
	cid := j.k.ContainerID()
	if cid == "" || j.a.logs == nil {
		return nil
	}
	b, err := j.a.be.Logs(ctx, cid, kernelTTY, 0)
	if err != nil {
		j.log.Warn("container logs not read", "error", err)
		return nil
	}
	if err := j.a.logs.CollectLogs(ctx, j.k.ID, cid, b); err != nil {
		j.log.Warn("container logs not kept", "error", err)
	}
	return nil
}

func (j *cleanJob) removeContainer(ctx context.Context) error {
	cid := j.k.ContainerID()
	if cid == "" || j.a.cfg.Debug.SkipContainerDeletion {
		return nil
	}
	if err := j.a.be.Remove(ctx, cid); err != nil {
		return fmt.Errorf("remove container: %w", err)
	}
	return nil
}

func (j *cleanJob) removeScratch(ctx context.Context) error {
	// File calls that passed their "running" check before the kernel
	// began terminating may still write into its folders: let them end
	// first (new ones are refused from here on), or the removal races
	// them and leaves the scratch behind.
	dctx, cancel := context.WithTimeout(ctx, fileRPCTimeout)
	if err := j.k.fileCalls().Drain(dctx); err != nil {
		j.log.Warn("file calls still running while the scratch is removed", "error", err)
	}
	cancel()
	if err := j.a.scratch.Remove(ctx, j.k.ID); err != nil {
		j.log.Error("remove scratch", "error", err)
	}
	return nil
}

func (j *cleanJob) release(context.Context) error {
	if c := j.k.Runner(); c != nil {
		j.k.setRunner(nil)
		c.Close()
	}
	if s := j.k.Spec(); s != nil {
		j.a.ports.Release(s.HostPorts...)
		j.a.alloc.Free(s.Allocation)
	}
	j.k.own.cleaned = true
	return nil
}

func (j *cleanJob) publish(ctx context.Context) error {
	a, k := j.a, j.k
	t := k.SetTermination(kernel.Termination{Reason: ReasonSelfTerminated, ExitCode: -1})
	if k.State() != kernel.Terminating {
		_ = k.Transition(kernel.Terminating, t.Reason)
	}
	_ = k.Transition(kernel.Terminated, t.Reason)
	// The event goes out before the kernel leaves the registry: whoever
	// sees it gone can also see why.
	if !j.suppressEvents {
		a.events.Publish(ctx, event.KernelTerminated{KernelID: k.ID, SessionID: k.SessionID, Reason: t.Reason, ExitCode: t.ExitCode})
	}
	a.remember(k.ID, t)
	a.unregister(k.ID, k)
	j.log.Info("kernel terminated", "reason", t.Reason, "exit_code", t.ExitCode, "oom_killed", t.OOMKilled, "shm_exhausted", t.ShmExhausted)
	if a.onChange != nil {
		a.onChange(k.ID, false)
	}
	return nil
}

// SyncKernelRegistry reconciles with the manager's list of (kernel,
// session) pairs: pairs unknown here get kernel_terminated
// (already-terminated); local kernels absent from the list are destroyed
// quietly (not-found-in-manager).
func (a *Agent) SyncKernelRegistry(ctx context.Context, pairs [][2]string) error {
	inManager := map[string]bool{}
	for _, p := range pairs {
		inManager[p[0]] = true
		if _, ok := a.Kernel(p[0]); !ok {
			a.events.Publish(ctx, event.KernelTerminated{KernelID: p[0], SessionID: p[1], Reason: ReasonAlreadyTerminated, ExitCode: -1})
		}
	}
	var errs []error
	for _, k := range a.Kernels() {
		if inManager[k.ID] {
			continue
		}
		// As the Python agent: every registered kernel the manager does
		// not list is destroyed quietly. A kernel still being created is
		// not in the Python agent's registry yet (it enters it just before
		// its container starts), so it is left to its creation.
		switch k.State() {
		case kernel.Preparing, kernel.Pulling, kernel.Creating, kernel.Terminated:
			continue
		}
		if err := a.DestroyKernel(ctx, k.ID, k.SessionID, ReasonNotFoundInManager, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ResetAgent destroys every kernel (debug), eight at a time: each destroy
// may wait for a container to stop.
func (a *Agent) ResetAgent(ctx context.Context) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, 8)
	for _, k := range a.Kernels() {
		wg.Add(1)
		go func(k *Kernel) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := a.DestroyKernel(ctx, k.ID, k.SessionID, ReasonUserRequested, false); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(k)
	}
	wg.Wait()
	return errors.Join(errs...)
}
