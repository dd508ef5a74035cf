package observer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Kernel is what the observers need to know of a registered kernel.
type Kernel struct {
	ID        string
	SessionID string
}

// Agent is the part of the agent the observers use.
type Agent interface {
	// ListKernels returns the registered kernels (any state).
	ListKernels() []Kernel
	// DestroyKernel stops and cleans a kernel; it returns when done.
	DestroyKernel(ctx context.Context, kernelID, sessionID, reason string, suppressEvents bool) error
}

// destroyTimeout bounds the wait for the kernel's owner to take the destroy
// (the destroy itself runs under the agent's own stop and clean
// deadlines).
const destroyTimeout = 5 * time.Minute

// destroyConcurrency bounds the destroys one tick runs at once.
const destroyConcurrency = 4

// loop runs tick at once and then interval after each tick ends, until
// Close, as upstream's observer runner does (observe, then sleep).
type loop struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func startLoop(name string, interval time.Duration, log *slog.Logger, tick func(ctx context.Context) error) *loop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &loop{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := runTick(ctx, tick); err != nil && ctx.Err() == nil {
				log.Warn("observer tick failed; retrying at the next one", "observer", name, "next_in", interval, "error", err)
			}
			t.Reset(interval)
		}
	}()
	return l
}

// runTick runs one tick; a panic is reported as its error, never the
// agent's end.
func runTick(ctx context.Context, tick func(ctx context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return tick(ctx)
}

// Close stops the loop and waits for the tick in progress (a destroy
// already started finishes first).
func (l *loop) Close() {
	l.once.Do(l.cancel)
	<-l.done
}

// target is a kernel to destroy and why.
type target struct {
	Kernel
	Reason string
}

// destroyAll destroys the targets, destroyConcurrency at a time, and
// returns each failure wrapped with its kernel's id.
func destroyAll(ctx context.Context, a Agent, ts []target, suppressEvents bool, log *slog.Logger) map[string]error {
	var (
		mu   sync.Mutex
		errs = map[string]error{}
		wg   sync.WaitGroup
		sem  = make(chan struct{}, destroyConcurrency)
	)
	for _, t := range ts {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			mu.Lock()
			errs[t.ID] = fmt.Errorf("destroy kernel %s (session %s): %w", t.ID, t.SessionID, ctx.Err())
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, destroyTimeout)
			defer cancel()
			log.Info("destroying kernel", "kernel_id", t.ID, "session_id", t.SessionID, "reason", t.Reason)
			if err := a.DestroyKernel(dctx, t.ID, t.SessionID, t.Reason, suppressEvents); err != nil {
				mu.Lock()
				errs[t.ID] = fmt.Errorf("destroy kernel %s (session %s, reason %s): %w", t.ID, t.SessionID, t.Reason, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}
