package safefs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DefaultTimeout bounds a file call whose context has no deadline.
const DefaultTimeout = 30 * time.Second

// maxInflight bounds the goroutines the agent's own file calls may hold:
// a call stuck in the kernel (a FUSE server that never answers) keeps its
// goroutine until the kernel lets go; past this many, new calls fail at
// once instead of piling up.
const maxInflight = 256

// Limiter bounds how many calls run at once through it. The agent's own
// writes use the package's (Do); each kernel's file RPCs use one of their
// own, so that a kernel that makes its calls hang starves only itself.
type Limiter struct {
	slots chan struct{}
	// drained counts the slots Drain holds (it never gives them back).
	mu      sync.Mutex
	drained int
}

// NewLimiter allows n calls at once.
func NewLimiter(n int) *Limiter { return &Limiter{slots: make(chan struct{}, n)} }

var defaultLimiter = NewLimiter(maxInflight)

// Drain waits until no call runs through l and keeps every slot, so that
// no call starts through it again (they fail at once with ErrBusy): the
// agent drains a kernel's limiter before it removes the kernel's folders,
// so that no call in flight writes into them meanwhile. It returns ctx's
// error if calls still ran when ctx ended (what it took it keeps).
func (l *Limiter) Drain(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.drained < cap(l.slots) {
		select {
		case l.slots <- struct{}{}:
			l.drained++
		case <-ctx.Done():
			return fmt.Errorf("%d calls still in progress: %w", cap(l.slots)-l.drained, ctx.Err())
		}
	}
	return nil
}

// ErrBusy: too many file calls are stuck already.
var ErrBusy = errors.New("too many file operations still in progress")

// Do runs fn under ctx's deadline (DefaultTimeout when it has none) and
// returns its result, or a context error once the deadline passes; fn
// keeps running in its goroutine until it returns and its result is then
// dropped. fn gets the context: long calls (Walk, ReadDir) stop at it.
// fn must release what it takes itself (it does: every descriptor here is
// closed by the function that opened it).
func Do[T any](ctx context.Context, what string, fn func(ctx context.Context) (T, error)) (T, error) {
	return DoLimited(ctx, defaultLimiter, what, fn)
}

// DoLimited is Do with its own limiter.
func DoLimited[T any](ctx context.Context, l *Limiter, what string, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	select {
	case l.slots <- struct{}{}:
	default:
		return zero, fmt.Errorf("%s: %w (%d)", what, ErrBusy, cap(l.slots))
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-l.slots }()
		v, err := fn(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		select {
		case r := <-done: // finished as the deadline passed
			return r.v, r.err
		default:
		}
		return zero, fmt.Errorf("%s: no answer from the file system in time: %w", what, ctx.Err())
	}
}
