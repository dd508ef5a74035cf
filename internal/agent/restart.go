// restart_kernel: a new container for a running kernel, keeping its
// scratch, allocation and host ports.

package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/resource"
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
	reply := make(chan restartReply, 1)
	r, err := call(ctx, k, &restartMsg{ctx: ctx, updated: updated, reply: reply}, reply)
	if errors.Is(err, errKernelGone) {
		return nil, kernelErr(kernelID, ErrKernelNotFound)
	}
	if err != nil {
		return nil, kernelErr(kernelID, err)
	}
	return r.info, r.err
}

// restart is RestartKernel in the kernel's owner.
func (a *Agent) restart(ctx context.Context, k *Kernel, updated map[string]string) (*RestartInfo, error) {
	kernelID := k.ID
	if k.State() != kernel.Running {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: it is %s", ErrRestartUnsupported, k.State()))
	}
	// The updated environment obeys the creation rules, and the mounts
	// still lead where they did: nothing taken down yet when refused.
	if err := validateEnviron(updated); err != nil {
		return nil, kernelErr(kernelID, fmt.Errorf("updated_config: %w", err))
	}
	cur := k.Spec()
	if cur == nil {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: it has no spec", ErrRestartUnsupported))
	}
	if cur.Resources != nil {
		if err := checkMountSources(cur.Resources.Mounts); err != nil {
			return nil, kernelErr(kernelID, err)
		}
		if err := checkMountPoints(cur.Scratch.Work, cur.Resources.Mounts); err != nil {
			return nil, kernelErr(kernelID, err)
		}
	}
	var kc kconfig
	if err := readJSON(cur.Scratch.Config, kconfigFile, &kc); err != nil {
		return nil, kernelErr(kernelID, fmt.Errorf("%w: restart data: %v", ErrRestartUnsupported, err))
	}
	if err := k.Transition(kernel.Restarting, ReasonRestarting); err != nil {
		return nil, err
	}
	// The new spec is a copy: readers keep the old one until the new
	// container exists.
	j := &restartJob{a: a, k: k, ks: cur.clone(), kc: &kc, updated: updated}
	if err := runSteps(ctx, "restart", restartSteps, j, a.onStepFail); err != nil {
		// The old container is gone; without a new one the kernel is dead.
		k.SetTermination(kernel.Termination{Reason: "restart-timeout", ExitCode: -1})
		_ = k.Transition(kernel.Terminating, "restart failed")
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
	ks      *KernelSpec // the spec being rebuilt (published by container and start)
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
	s := j.ks // a clone: its maps are its own
	if s.Environ == nil {
		s.Environ = map[string]string{}
	}
	if s.Config.Environ == nil {
		s.Config.Environ = map[string]string{}
	}
	for key, v := range j.updated {
		s.Environ[key] = v
		s.Config.Environ[key] = v
	}
	return writeScratchFile(s.Scratch.Config, "environ.txt", environText(s.Environ), 0o644, safefs.NoOwner)
}

func (j *restartJob) createContainer(ctx context.Context) error {
	a, k, s := j.a, j.k, j.ks
	var mounts []resource.Mount
	if s.Resources != nil {
		mounts = s.Resources.Mounts
	}
	spec, err := a.containerSpec(ctx, k, s, &j.kc.Cluster, mounts)
	if err != nil {
		return err
	}
	j.spec = spec
	cid, err := a.be.Create(ctx, j.spec)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCreationFailed, err)
	}
	s.ContainerID, s.Pid, s.OCIRuntime = cid, 0, spec.Runtime
	if s.Resources != nil {
		s.Resources.ContainerID = cid
	}
	// Published now: a failure from here on cleans the new container.
	k.publish(s)
	j.ks = s.clone()
	if s.Resources == nil {
		return nil
	}
	return writeScratchFile(s.Scratch.Config, "resource.txt", s.Resources.Marshal(a.slotTypes), 0o644, safefs.NoOwner)
}

func (j *restartJob) start(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, seconds(j.a.cfg.KernelLifecycles.InitTimeoutSec))
	defer cancel()
	if err := j.a.be.Start(sctx, j.ks.ContainerID); err != nil {
		return fmt.Errorf("%w: %v", ErrCreationFailed, err)
	}
	if ins, err := j.a.be.Inspect(sctx, j.ks.ContainerID); err == nil {
		j.ks.Pid = ins.Pid
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
	c, err := j.a.connectRunner(j.k, j.ks)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCreationFailed, err)
	}
	return j.a.handshake(ctx, j.k, j.ks, c)
}

func (j *restartJob) publish(ctx context.Context) error {
	a, k, s := j.a, j.k, j.ks
	k.publish(s)
	k.ClearTermination()
	if err := k.Transition(kernel.Running, "restarted"); err != nil {
		return err
	}
	a.events.Publish(ctx, event.KernelStarted{
		KernelLifecycle: event.KernelLifecycle{KernelID: k.ID, SessionID: k.SessionID, Reason: ReasonRestarting}, CreationInfo: a.creationInfo(s),
	})
	j.result = &RestartInfo{ContainerID: s.ContainerID, ReplInPort: s.ReplIn, ReplOutPort: s.ReplOut, ServicePorts: publicServices(s.Services)}
	// An inference kernel's model services start again, as on creation.
	if s.Config.SessionType == "inference" && isMainRole(s.Config.ClusterRole) {
		if models, _, err := modelDefinition(&s.Config, nil); err == nil {
			var cmd []string
			if img, err := a.be.InspectImage(ctx, s.ImageName); err == nil {
				cmd = img.Cmd
			}
			a.startModelServices(k, models, cmd)
		}
	}
	return nil
}
