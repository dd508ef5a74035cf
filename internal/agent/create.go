package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// kernelTTY: kernel containers run with a TTY (as the Python agent
// creates them), so their log stream is raw.
const kernelTTY = true

// Container-side REPL ports of the kernel runner.
const (
	replInContainerPort  = 2000
	replOutContainerPort = 2001
)

// CreateKernels runs create_kernels: every kernel concurrently under the
// kernel-creation-concurrency semaphore. It returns the result list in
// request order, or the first error (kernels that did start stay up; the
// manager destroys the session, as with the Python agent).
func (a *Agent) CreateKernels(ctx context.Context, req *CreateRequest) ([]*KernelInfo, error) {
	if len(req.KernelIDs) != len(req.Configs) {
		return nil, fmt.Errorf("%w: %d kernel ids but %d configs", ErrInvalidArgument, len(req.KernelIDs), len(req.Configs))
	}
	seen := map[string]bool{}
	for _, id := range req.KernelIDs {
		if seen[id] {
			return nil, fmt.Errorf("%w: kernel id %s appears twice", ErrInvalidArgument, id)
		}
		seen[id] = true
	}
	out := make([]*KernelInfo, len(req.KernelIDs))
	errs := make([]error, len(req.KernelIDs))
	var wg sync.WaitGroup
	for i := range req.KernelIDs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ref, ok := req.ImageRefs[req.KernelIDs[i]]
			if !ok {
				var err error
				if ref, err = ImageRefOf(req.Configs[i].Image); err != nil {
					errs[i] = kernelErr(req.KernelIDs[i], fmt.Errorf("kernel_configs[%d].image: %w", i, err))
					return
				}
			}
			out[i], errs[i] = a.createKernel(ctx, req.SessionID, req.KernelIDs[i], &req.Configs[i], &req.Cluster, ref)
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// createKernel checks the request, registers the kernel (refusing
// duplicates), which starts its owner, and has the owner run the
// creation.
func (a *Agent) createKernel(ctx context.Context, sessionID, kernelID string, cfg *CreationConfig, cluster *ClusterInfo, ref wire.ImageRef) (*KernelInfo, error) {
	select {
	case <-a.closed:
		return nil, ErrAgentShuttingDown
	default:
	}
	if err := a.engine.downErr(ctx); err != nil {
		return nil, kernelErr(kernelID, err)
	}
	policy := cfg.AutoPull
	if policy == "" {
		policy = cfg.Image.AutoPull
	}
	if err := ValidateAutoPull(policy); err != nil {
		return nil, kernelErr(kernelID, err)
	}
	if err := validateCreation(cfg); err != nil {
		return nil, kernelErr(kernelID, err)
	}
	k := &Kernel{
		Machine:   kernel.NewMachine(kernelID, kernel.Preparing),
		ID:        kernelID,
		SessionID: sessionID,
		CreatedAt: time.Now(),
		// Set before the kernel is registered (and never after): the
		// network sweep reads it from other goroutines.
		Network: cluster.kernelNetwork(),
	}
	j := &createJob{
		a: a, k: k, cfg: cfg, cluster: cluster, ref: ref, policy: policy,
		ks:  &KernelSpec{ImageRef: ref, Config: withoutSecrets(cfg)},
		lc:  event.KernelLifecycle{KernelID: kernelID, SessionID: sessionID},
		log: a.log.With("kernel_id", kernelID, "session_id", sessionID),
	}
	if err := a.register(k); err != nil {
		return nil, err
	}
	// The kernel's owner runs the creation: a destroy or an exit that
	// arrives meanwhile waits in its inbox until the creation is done.
	reply := make(chan error, 1)
	// Posted whatever ctx says (the inbox is new and empty): a creation
	// never posted would leave the kernel registered in Preparing, with
	// nothing ever to remove it. The owner sees the cancelled context and
	// refuses, undoing the registration.
	var err error
	cerr := k.post(context.WithoutCancel(ctx), &createMsg{ctx: ctx, job: j, reply: reply})
	if cerr == nil {
		err, cerr = await(ctx, k, reply)
	}
	switch {
	case errors.Is(cerr, errKernelGone):
		return nil, kernelErr(kernelID, ErrAgentShuttingDown)
	case cerr != nil:
		// The caller gave up; the owner still runs (or refuses) the
		// creation on the cancelled context and undoes what it took.
		return nil, kernelErr(kernelID, cerr)
	case err != nil:
		return nil, kernelErr(kernelID, err)
	}
	return j.info, nil
}

// runCreation is the creation, run by the kernel's owner: a creation
// slot, then the steps (create_steps.go). On failure the steps' undos
// have given everything back; what the manager hears depends on how far
// it got (createStage). The agent's shutdown cancels it.
func (a *Agent) runCreation(ctx context.Context, j *createJob) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(a.life, cancel)()
	select {
	case a.sem <- struct{}{}:
		defer func() { <-a.sem }()
	case <-ctx.Done():
		a.unregister(j.k.ID, j.k)
		_ = j.k.Transition(kernel.Terminated, "creation cancelled")
		return ctx.Err()
	}
	if err := runSteps(ctx, "create", a.createPlan, j, a.onStepFail); err != nil {
		a.createFailed(ctx, j, err)
		return err
	}
	return nil
}

// createFailed records a failed creation. As with the Python agent, a
// failure before the container exists only raises (the manager may retry
// or reschedule); one while creating or starting the container also
// publishes kernel_terminated (failed-to-create), and one after it
// started publishes failed-to-start.
func (a *Agent) createFailed(ctx context.Context, j *createJob, err error) {
	k := j.k
	reason := ReasonFailedToCreate
	if j.stage == stageStarted {
		reason = ReasonFailedToStart
	}
	t := k.SetTermination(kernel.Termination{Reason: reason, ExitCode: -1})
	_ = k.Transition(kernel.Terminated, reason)
	a.unregister(k.ID, k)
	if j.stage == stagePrepare {
		j.log.Warn("kernel creation refused before any container existed; nothing is left", "error", err)
		return
	}
	j.log.Warn("kernel creation failed", "error", err, "reason", reason)
	a.events.Publish(context.WithoutCancel(ctx), event.KernelTerminated{KernelID: k.ID, SessionID: k.SessionID, Reason: t.Reason, ExitCode: t.ExitCode})
}
