// restart_kernel: a new container for a running kernel, keeping its
// scratch, allocation and host ports.

package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/safefs"
)

// RestartKernel recreates a kernel's container keeping its scratch,
// allocation and host ports (spec 3.6), with updated environment values
// from updatedConfig["environ"] when given.
func (a *Agent) RestartKernel(ctx context.Context, sessionID, kernelID string, updated map[string]string) (*RestartInfo, error) {
	k, ok := a.Kernel(kernelID)
	if !ok {
		return nil, kernelErr(kernelID, ErrKernelNotFound)
	}
	unlock, err := a.locks.lock(ctx, kernelID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if k.State() != kernel.Running {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: it is %s", ErrRestartUnsupported, k.State()))
	}
	// The updated environment obeys the creation rules, and the mounts
	// still lead where they did: nothing taken down yet when refused.
	if err := validateEnviron(updated); err != nil {
		return nil, kernelErr(kernelID, fmt.Errorf("updated_config: %w", err))
	}
	if k.Spec != nil {
		if err := checkMountSources(k.Spec.Mounts); err != nil {
			return nil, kernelErr(kernelID, err)
		}
		if err := checkMountPoints(k.Scratch.Work, k.Spec.Mounts); err != nil {
			return nil, kernelErr(kernelID, err)
		}
	}
	var kc kconfig
	if err := readJSON(k.Scratch.Config, kconfigFile, &kc); err != nil {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: restart data: %v", ErrRestartUnsupported, err))
	}
	if err := k.Transition(kernel.Restarting, ReasonRestarting); err != nil {
		return nil, err
	}
	k.restarting.Store(true)
	defer func() { k.restarting.Store(false) }()
	j := &restartJob{a: a, k: k, kc: &kc, updated: updated}
	if err := runSteps(ctx, "restart", restartSteps, j, a.onStepFail); err != nil {
		// The old container is gone; without a new one the kernel is dead.
		k.SetTermination(kernel.Termination{Reason: "restart-timeout", ExitCode: -1})
		_ = k.Transition(kernel.Terminating, "restart failed")
		k.restarting.Store(false)
		if cerr := a.clean(context.WithoutCancel(ctx), k, false); cerr != nil {
			a.log.Error("clean after failed restart", "kernel_id", kernelID, "error", cerr)
		}
		return nil, kernelErr(kernelID, err)
	}
	return j.result, nil
}

// restartJob is what a restart carries from step to step.
type restartJob struct {
	a       *Agent
	k       *Kernel
	kc      *kconfig
	updated map[string]string
	spec    *backend.ContainerSpec
	result  *RestartInfo
}

// restartSteps recreate a kernel's container; a failure cleans the kernel
// (its old container is gone).
var restartSteps = []step[*restartJob]{
	{name: "stop", do: (*restartJob).stop},
	{name: "remove", do: (*restartJob).remove},
	{name: "environ", do: (*restartJob).environ},
	{name: "container", do: (*restartJob).createContainer},
	{name: "start", do: (*restartJob).start},
	{name: "runner", do: (*restartJob).runner},
	{name: "publish", do: (*restartJob).publish},
}

func (j *restartJob) stop(ctx context.Context) error {
	if err := j.a.be.Stop(ctx, j.k.ContainerID(), j.a.stopTime); err != nil && !errors.Is(err, backend.ErrNotFound) {
		return fmt.Errorf("stop for restart: %w", err)
	}
	return nil
}

func (j *restartJob) remove(ctx context.Context) error {
	if err := j.a.be.Remove(ctx, j.k.ContainerID()); err != nil {
		return fmt.Errorf("remove for restart: %w", err)
	}
	return nil
}

func (j *restartJob) environ(context.Context) error {
	k := j.k
	// New maps, never writes into the ones readers may hold (a concurrent
	// map read and write is fatal, not a report).
	env, cfgEnv := maps.Clone(k.Environ), maps.Clone(k.Config.Environ)
	if env == nil {
		env = map[string]string{}
	}
	if cfgEnv == nil {
		cfgEnv = map[string]string{}
	}
	for key, v := range j.updated {
		env[key] = v
		cfgEnv[key] = v
	}
	k.Environ, k.Config.Environ = env, cfgEnv
	k.publishOwner()
	return writeScratchFile(k.Scratch.Config, "environ.txt", environText(k.Environ), 0o644, safefs.NoOwner)
}

func (j *restartJob) createContainer(ctx context.Context) error {
	a, k := j.a, j.k
	j.spec = a.containerSpec(ctx, k, &j.kc.Cluster, k.Spec.Mounts)
	cid, err := a.be.Create(ctx, j.spec)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCreationFailed, err)
	}
	k.setContainerID(cid)
	k.Spec.ContainerID = cid
	return writeScratchFile(k.Scratch.Config, "resource.txt", k.Spec.Marshal(a.slotTypes), 0o644, safefs.NoOwner)
}

func (j *restartJob) start(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, seconds(j.a.cfg.KernelLifecycles.InitTimeoutSec))
	defer cancel()
	if err := j.a.be.Start(sctx, j.k.ContainerID()); err != nil {
		return fmt.Errorf("%w: %v", ErrCreationFailed, err)
	}
	if ins, err := j.a.be.Inspect(sctx, j.k.ContainerID()); err == nil {
		j.k.setPid(ins.Pid)
	}
	return nil
}

// runner reconnects to the new container's runner and waits for it.
func (j *restartJob) runner(ctx context.Context) error {
	if old := j.k.Runner(); old != nil {
		j.k.setRunner(nil)
		old.Close()
	}
	if j.a.krunner == "" {
		return nil
	}
	c, err := j.a.connectRunner(j.k)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCreationFailed, err)
	}
	return j.a.handshake(ctx, j.k, c)
}

func (j *restartJob) publish(ctx context.Context) error {
	a, k := j.a, j.k
	k.ClearTermination()
	if err := k.Transition(kernel.Running, "restarted"); err != nil {
		return err
	}
	a.events.Publish(ctx, event.KernelStarted{
		KernelLifecycle: event.KernelLifecycle{KernelID: k.ID, SessionID: k.SessionID, Reason: ReasonRestarting}, CreationInfo: a.creationInfo(k),
	})
	j.result = &RestartInfo{ContainerID: k.ContainerID(), ReplInPort: k.ReplIn, ReplOutPort: k.ReplOut, ServicePorts: publicServices(k.Services)}
	// An inference kernel's model services start again, as on creation.
	if k.Config.SessionType == "inference" && isMainRole(k.Config.ClusterRole) {
		if models, _, err := modelDefinition(&k.Config, nil); err == nil {
			var cmd []string
			if img, err := a.be.InspectImage(ctx, k.ImageName); err == nil {
				cmd = img.Cmd
			}
			a.startModelServices(k, models, cmd)
		}
	}
	return nil
}
