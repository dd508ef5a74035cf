package agent

import (
	"context"
	"fmt"
	"time"
)

// step is one named stage of a kernel operation (creation, cleaning): do
// takes something or changes something, undo gives it back. A step
// without undo takes nothing. Adding a stage to an operation is adding
// one step to its list; runSteps does the bookkeeping. An undo runs for
// its own step's failure too (a step may take something and then fail),
// so every undo gives back only what its job records as taken, and is
// idempotent.
// The functions take the job first so that a step can name a method
// expression ((*createJob).allocate).
type step[J any] struct {
	name string
	// mark, if set, runs before do: it records how far the operation got
	// (what a failure of this step or a later one reports).
	mark func(j J)
	do   func(j J, ctx context.Context) error
	undo func(j J, ctx context.Context)
}

// StepError says which step of an operation failed.
type StepError struct {
	Op, Step string
	Err      error
}

func (e *StepError) Error() string { return fmt.Sprintf("%s step %q: %v", e.Op, e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// undoTimeout bounds all undos of one failed operation together: they
// run after the caller may have given up, so they get their own time.
const undoTimeout = 60 * time.Second

// StepTracer wraps a kernel operation and each of its steps in a span
// (internal/telemetry implements it; [otel] enabled). Start must not
// block; end records the step's error.
type StepTracer interface {
	Start(ctx context.Context, name string) (context.Context, func(err error))
}

type stepTracerKey struct{}

// WithStepTracer returns ctx carrying t: the operations run under it
// (creation, cleaning, restart) get a span "kernel.{op}" with one child
// "kernel.{op}.{step}" per step.
func WithStepTracer(ctx context.Context, t StepTracer) context.Context {
	return context.WithValue(ctx, stepTracerKey{}, t)
}

// runSteps runs steps in order. When one fails, its own undo and those of
// the steps before it run in reverse (on a context that outlives a
// cancelled caller), onFail hears the failed step's name, and the error is
// a *StepError wrapping the step's own.
func runSteps[J any](ctx context.Context, op string, steps []step[J], j J, onFail func(op, step string)) (err error) {
	tr, _ := ctx.Value(stepTracerKey{}).(StepTracer)
	if tr != nil {
		var end func(error)
		ctx, end = tr.Start(ctx, "kernel."+op)
		defer func() { end(err) }()
	}
	for i, s := range steps {
		if s.mark != nil {
			s.mark(j)
		}
		sctx, endStep := ctx, func(error) {}
		if tr != nil {
			sctx, endStep = tr.Start(ctx, "kernel."+op+"."+s.name)
		}
		err := s.do(j, sctx)
		endStep(err)
		if err != nil {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
			for k := i; k >= 0; k-- {
				if steps[k].undo != nil {
					steps[k].undo(j, uctx)
				}
			}
			cancel()
			if onFail != nil {
				onFail(op, s.name)
			}
			return &StepError{Op: op, Step: s.name, Err: err}
		}
	}
	return nil
}
