package agent

import (
	"context"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/stats"
)

// measureDeadline bounds one accelerator plugin's measure call: a driver
// call that hangs (NVML on a failing GPU) costs that plugin its sample,
// never the other metrics.
var measureDeadline = 5 * time.Second

// stuckCalls remembers plugins whose last call has not returned yet, so a
// hung driver does not pile up goroutines: the plugin is skipped until
// its call comes back.
var stuckCalls sync.Map // "<key>/<kind>" -> struct{}

func callWithDeadline[T any](ctx context.Context, id string, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	if _, busy := stuckCalls.LoadOrStore(id, struct{}{}); busy {
		return zero, context.DeadlineExceeded
	}
	ctx, cancel := context.WithTimeout(ctx, measureDeadline)
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		defer stuckCalls.Delete(id)
		v, err := fn(ctx)
		ch <- result{v, err}
	}()
	defer cancel()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// AcceleratorNodeMeasures gathers every accelerator's node measures, each
// under its own deadline.
func (a *Agent) AcceleratorNodeMeasures(ctx context.Context) []stats.NodeMeasure {
	var out []stats.NodeMeasure
	for _, acc := range a.accels {
		ms, err := callWithDeadline(ctx, a.id+"/"+string(acc.Key())+"/node", acc.NodeMeasures)
		if err != nil {
			a.log.Warn("accelerator node measures", "plugin", acc.Key(), "error", err)
			continue
		}
		out = append(out, ms...)
	}
	return out
}

// AcceleratorContainerMeasures gathers per-kernel accelerator measures for
// the running kernels, attributed through their allocations.
func (a *Agent) AcceleratorContainerMeasures(ctx context.Context) []stats.ContainerMeasure {
	if len(a.accels) == 0 {
		return nil
	}
	var ks []device.KernelDevices
	for _, k := range a.Kernels() {
		if s := k.Spec(); k.State() == kernel.Running && s != nil {
			ks = append(ks, device.KernelDevices{KernelID: k.ID, Allocation: s.Allocation})
		}
	}
	var out []stats.ContainerMeasure
	for _, acc := range a.accels {
		ms, err := callWithDeadline(ctx, a.id+"/"+string(acc.Key())+"/container", func(ctx context.Context) ([]stats.ContainerMeasure, error) {
			return acc.ContainerMeasures(ctx, ks)
		})
		if err != nil {
			a.log.Warn("accelerator container measures", "plugin", acc.Key(), "error", err)
			continue
		}
		out = append(out, ms...)
	}
	return out
}
