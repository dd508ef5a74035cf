// One goroutine owns each kernel (as Nomad's task runner and the kubelet's
// pod worker do): it is started when the kernel enters the registry and
// ends once the kernel has been cleaned (or its creation failed). Every
// lifecycle change reaches it as a typed message in its inbox, and it
// alone performs transitions, so no two of them ever overlap and none of
// the flags that used to join four actors (restarting, cleaned, exit
// claims) is needed.
//
// Messages and who sends them:
//
//	createMsg   create_kernels (the RPC waits for the reply)
//	destroyMsg  destroy_kernel, sync_kernel_registry, reset (reply)
//	restartMsg  restart_kernel (reply)
//	exitMsg     the event watcher (a "die" event) and the sync loop (a dead
//	            container in its listing)
//	verdictMsg  the owner itself: an exit after the inspect and the engine's
//	            verdict, which run beside the owner so that a destroy is
//	            never kept waiting behind them
//	goneMsg     the sync loop: a running kernel whose container is missing
//	            (and the owner itself, once the engine confirmed it)
//	retryMsg    the sync loop: a TERMINATING kernel whose CLEAN failed
//
// Order guarantees: messages are handled one at a time in the order they
// entered the inbox; a reply is sent before the next message is taken; an
// exit names the container it is about, and one about any other container
// than the kernel's current one (a restart replaced it) or about a kernel
// that is not running is dropped; an exit already awaiting its verdict is
// not judged twice (the die event and the sync loop may both see it).
// Once the owner has ended, a message is answered with errKernelGone:
// callers read that as "already terminated".

package agent

import (
	"context"
	"errors"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/kernel"
)

// errKernelGone answers a message sent to a kernel whose owner has ended.
var errKernelGone = errors.New("kernel owner ended")

// ownerInbox is the inbox's capacity: exits and sync verdicts are posted
// without waiting while the owner is busy (a creation may pull for
// minutes); callers with a reply wait anyway.
const ownerInbox = 32

type kernelMsg interface{ msgName() string }

type createMsg struct {
	ctx   context.Context
	job   *createJob
	reply chan error
}

type destroyMsg struct {
	ctx            context.Context
	reason         string
	suppressEvents bool
	reply          chan error
}

type restartMsg struct {
	ctx     context.Context
	updated map[string]string
	reply   chan restartReply
}

type restartReply struct {
	info *RestartInfo
	err  error
}

// exitMsg: the container exited (as far as the sender saw).
type exitMsg struct {
	containerID string
	exitCode    int
	oom         bool
	finished    time.Time
}

// verdictMsg is an exit after its inspect and the engine's verdict.
type verdictMsg struct {
	exitMsg
	// alive: the container is running after all (a stale listing).
	alive bool
}

type goneMsg struct {
	containerID string
	// confirmed: the engine said the container does not exist.
	confirmed bool
}
type retryMsg struct{}

func (*createMsg) msgName() string  { return "create" }
func (*destroyMsg) msgName() string { return "destroy" }
func (*restartMsg) msgName() string { return "restart" }
func (*exitMsg) msgName() string    { return "exit" }
func (*verdictMsg) msgName() string { return "exit-verdict" }
func (*goneMsg) msgName() string    { return "container-gone" }
func (*retryMsg) msgName() string   { return "retry-clean" }

// owner is a kernel's inbox and what only its goroutine touches.
type owner struct {
	inbox chan kernelMsg
	done  chan struct{} // closed when the goroutine has ended
	// The goroutine's own state (never read elsewhere).
	judging string // the container whose exit awaits its verdict
	cleaned bool   // CLEAN released everything; the owner ends
}

func newOwner() *owner {
	return &owner{inbox: make(chan kernelMsg, ownerInbox), done: make(chan struct{})}
}

// post puts m in k's inbox, waiting while it is full.
func (k *Kernel) post(ctx context.Context, m kernelMsg) error {
	select {
	case k.own.inbox <- m:
		return nil
	case <-k.own.done:
		return errKernelGone
	case <-ctx.Done():
		return ctx.Err()
	}
}

// call posts m and waits for its reply on reply.
func call[R any](ctx context.Context, k *Kernel, m kernelMsg, reply chan R) (R, error) {
	if err := k.post(ctx, m); err != nil {
		var zero R
		return zero, err
	}
	return await(ctx, k, reply)
}

// await waits for the reply to a posted message.
func await[R any](ctx context.Context, k *Kernel, reply chan R) (R, error) {
	var zero R
	select {
	case r := <-reply:
		return r, nil
	case <-k.own.done:
		// A reply sent just before the owner ended still counts.
		select {
		case r := <-reply:
			return r, nil
		default:
			return zero, errKernelGone
		}
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// tell posts m from a loop that must not wait (the event watcher, the
// sync loop): when the inbox is full, a tracked goroutine waits instead.
func (a *Agent) tell(k *Kernel, m kernelMsg) {
	select {
	case k.own.inbox <- m:
		return
	case <-k.own.done:
		return
	default:
	}
	a.owners.Add(1)
	go func() {
		defer a.owners.Done()
		_ = k.post(a.life, m)
	}()
}

// hint posts m if the inbox has room and drops it otherwise: for what a
// periodic loop finds again on its next pass (the sync loop's retries,
// vanished containers, missed exits). A busy owner must not collect one
// waiting goroutine per pass.
func (a *Agent) hint(k *Kernel, m kernelMsg) {
	select {
	case k.own.inbox <- m:
	default:
	}
}

// startOwner starts k's goroutine; register calls it.
func (a *Agent) startOwner(k *Kernel) {
	a.owners.Add(1)
	go a.runOwner(k)
}

func (a *Agent) runOwner(k *Kernel) {
	defer a.owners.Done()
	defer close(k.own.done)
	for {
		select {
		case m := <-k.own.inbox:
			if a.handle(k, m) {
				return
			}
		case <-a.life.Done():
			return
		}
	}
}

// handle performs one message; true when the kernel is gone.
func (a *Agent) handle(k *Kernel, m kernelMsg) bool {
	switch m := m.(type) {
	case *createMsg:
		err := a.runCreation(m.ctx, m.job)
		m.reply <- err
		return err != nil
	case *destroyMsg:
		m.reply <- a.destroy(m.ctx, k, m.reason, m.suppressEvents)
	case *restartMsg:
		info, err := a.restart(m.ctx, k, m.updated)
		m.reply <- restartReply{info, err}
	case *exitMsg:
		a.onExit(k, m)
	case *verdictMsg:
		a.onVerdict(k, m)
	case *goneMsg:
		a.onGone(k, m)
	case *retryMsg:
		if k.State() == kernel.Terminating && !k.own.cleaned {
			if err := a.clean(a.life, k, false); err != nil {
				a.log.Warn("retrying clean of a terminating kernel", "kernel_id", k.ID, "error", err)
			}
		}
	default:
		a.log.Error("kernel owner: unknown message", "kernel_id", k.ID, "message", m.msgName())
	}
	return k.own.cleaned
}

// stale reports whether an exit of containerID no longer concerns k.
func (k *Kernel) stale(containerID string) bool {
	if k.ContainerID() != containerID {
		return true // a previous container (replaced by a restart)
	}
	s := k.State()
	return s != kernel.Running && s != kernel.Terminating
}

// onExit judges an exit: a kernel the agent is not stopping itself waits
// for the engine's verdict first (beside the owner), so that a container
// stopped by an engine shutdown is reported as such whichever path saw
// it.
func (a *Agent) onExit(k *Kernel, m *exitMsg) {
	if k.stale(m.containerID) || k.own.judging == m.containerID {
		return
	}
	k.own.judging = m.containerID
	a.owners.Add(1)
	go func() {
		defer a.owners.Done()
		v := &verdictMsg{exitMsg: *m}
		ictx, cancel := context.WithTimeout(a.life, 10*time.Second)
		if ins, err := a.be.Inspect(ictx, m.containerID); err == nil {
			v.alive = ins.Running
			v.exitCode, v.oom = ins.ExitCode, ins.OOMKilled
			if !ins.FinishedAt.IsZero() {
				v.finished = ins.FinishedAt
			}
		}
		cancel()
		if !v.alive && !v.oom && !a.engine.exitedWith(v.finished) && k.State() == kernel.Running {
			// An engine that shuts down stops every container first
			// (their processes may well exit 0) and only then stops
			// answering: give it a moment to show it, so that the
			// manager hears why the kernel ended.
			wait := engineVerdictWait
			if stoppedBySignal(v.exitCode) {
				wait = engineStopVerdictWait
			}
			a.engine.awaitVerdict(a.life, wait)
		}
		_ = k.post(a.life, v)
	}()
}

// onVerdict cleans a kernel whose container exited.
func (a *Agent) onVerdict(k *Kernel, v *verdictMsg) {
	if k.own.judging == v.containerID {
		k.own.judging = ""
	}
	if v.alive || k.stale(v.containerID) {
		return
	}
	t := kernel.ClassifyExit(v.exitCode, v.oom)
	t.Reason = ReasonSelfTerminated
	if a.engine.exitedWith(v.finished) {
		// The engine stopped or restarted under the kernel (without
		// live-restore it stops every container).
		t.Reason = ReasonAnomalyDetected
		a.log.Warn("kernel's container stopped with the container engine", "kernel_id", k.ID, "exit_code", v.exitCode)
	}
	k.SetTermination(t)
	if err := a.clean(a.life, k, false); err != nil {
		a.log.Error("clean exited kernel", "kernel_id", k.ID, "error", err)
	}
}

// onGone cleans a running kernel whose container is gone, once the
// engine confirms it (the sync loop's listing may predate a restart). The
// inspect runs beside the owner, as an exit's does, and comes back as a
// confirmed goneMsg.
func (a *Agent) onGone(k *Kernel, m *goneMsg) {
	if k.State() != kernel.Running || k.ContainerID() != m.containerID {
		return
	}
	if m.containerID != "" && !m.confirmed {
		a.owners.Add(1)
		go func() {
			defer a.owners.Done()
			ictx, cancel := context.WithTimeout(a.life, 10*time.Second)
			_, err := a.be.Inspect(ictx, m.containerID)
			cancel()
			if errors.Is(err, backend.ErrNotFound) {
				_ = k.post(a.life, &goneMsg{containerID: m.containerID, confirmed: true})
			} // there after all, or the engine cannot tell: next pass
		}()
		return
	}
	k.SetTermination(kernel.Termination{Reason: ReasonContainerNotFound, ExitCode: -1})
	if err := a.clean(a.life, k, false); err != nil {
		a.log.Error("clean kernel without container", "kernel_id", k.ID, "error", err)
	}
}
