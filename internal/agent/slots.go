package agent

// The periodic re-scan of the compute plugins' devices (upstream's
// UpdateSlotsTask, every 30 s, which refreshes agent.slots from
// scan_available_resources). Upstream only changes the heartbeat's
// available slots; here the alloc maps follow too, so a device that went
// away is not handed out, and the kernels still holding it are reported.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/resource"
)

// slotRescanTimeout bounds one plugin's Rescan.
const slotRescanTimeout = 10 * time.Second

// slotScanner owns the rescan loop. One rescan runs at a time.
type slotScanner struct {
	a        *Agent
	interval time.Duration
	log      *slog.Logger
	mu       sync.Mutex
}

// startSlotScanner starts the loop under a.bg (Close waits for it).
func startSlotScanner(ctx context.Context, a *Agent) *slotScanner {
	s := &slotScanner{
		a:        a,
		interval: time.Duration(float64(a.cfg.Debug.SlotRescanInterval) * float64(time.Second)),
		log:      a.log.With("component", "slot-rescan"),
	}
	if s.interval <= 0 {
		s.interval = 30 * time.Second
	}
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		s.run(ctx)
	}()
	return s
}

// run ticks first: the plugins were scanned when the agent was built.
func (s *slotScanner) run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.rescan(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("rescanning compute devices", "error", err)
		}
	}
}

// RescanSlots re-scans every plugin that can (device.Rescanner) now and
// applies what changed to the allocator, as the periodic task does.
func (a *Agent) RescanSlots(ctx context.Context) error {
	if a.slots == nil {
		return errors.New("rescan slots: the agent is not started")
	}
	return a.slots.rescan(ctx)
}

// rescan runs each rescannable plugin's Rescan under a deadline. A plugin
// that fails keeps its devices and the others go on.
func (s *slotScanner) rescan(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, p := range s.a.plugins {
		r, ok := p.(device.Rescanner)
		if !ok {
			continue
		}
		if err := s.rescanPlugin(ctx, p, r); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Key(), err))
		}
	}
	return errors.Join(errs...)
}

func (s *slotScanner) rescanPlugin(ctx context.Context, p device.Plugin, r device.Rescanner) error {
	rctx, cancel := context.WithTimeout(ctx, slotRescanTimeout)
	defer cancel()
	changed, err := r.Rescan(rctx)
	if err != nil {
		return err
	}
	// Plugins shared by the process' agents report a change to the first
	// agent that rescans; the others compare their own allocator anyway
	// (UpdateDevices diffs), or they would keep offering a lost device.
	if !changed && !s.a.sharedAccels {
		return nil
	}
	maps, err := p.AllocMaps(resource.AffinityPolicy(s.a.cfg.Resource.AffinityPolicy))
	if err != nil {
		return err
	}
	changes, ignored, err := s.a.alloc.UpdateDevices(p.Key(), maps, p.Available())
	if err != nil {
		return err
	}
	for _, sl := range ignored {
		s.log.Warn("a rescan found a slot unknown at start; restart the agent to offer it", "plugin", p.Key(), "slot", sl)
	}
	if !changed && len(changes) == 0 {
		return nil
	}
	s.log.Info("compute devices changed", "plugin", p.Key(), "available", s.a.alloc.Available())
	for _, c := range changes {
		s.report(ctx, c)
	}
	return nil
}

// report logs one device change and, when running kernels hold more of
// the device than it now has (it is gone, or shrank below their use),
// names each of them in a warning and an agent_error event.
func (s *slotScanner) report(ctx context.Context, c resource.DeviceChange) {
	log := s.log.With("slot", c.Slot, "device", c.Device, "used", resource.FormatAmount(c.Used))
	switch c.Kind {
	case resource.DeviceAdded:
		log.Info("compute device appeared", "capacity", resource.FormatAmount(c.NewCapacity))
	case resource.DeviceReturned:
		log.Info("compute device is back", "capacity", resource.FormatAmount(c.NewCapacity))
	case resource.DeviceRemoved:
		log.Warn("compute device is gone")
	case resource.DeviceResized:
		log.Info("compute device changed capacity", "old_capacity", resource.FormatAmount(c.OldCapacity), "capacity", resource.FormatAmount(c.NewCapacity))
	}
	if !c.Used.IsPositive() || (c.Kind != resource.DeviceRemoved && (c.Kind != resource.DeviceResized || !c.Used.GreaterThan(c.NewCapacity))) {
		return
	}
	for _, k := range s.a.Kernels() {
		spec := k.Spec()
		if spec == nil {
			continue
		}
		held := spec.Allocation[c.Slot][c.Device]
		if !held.IsPositive() {
			continue
		}
		msg, what := "a kernel holds a compute device that is gone", "is no longer present"
		if c.Kind == resource.DeviceResized {
			msg, what = "a kernel holds more of a compute device than it has", "shrank to "+resource.FormatAmount(c.NewCapacity)
		}
		log.Warn(msg, "kernel_id", k.ID, "session_id", k.SessionID, "held", resource.FormatAmount(held))
		ev := event.NewAgentError(fmt.Sprintf("DeviceLost: kernel %s holds %s of %s device %s, which %s", k.ID, resource.FormatAmount(held), c.Slot, c.Device, what), "")
		ev.Severity = event.SeverityWarning
		ev.ContextEnv = map[string]string{"kernel_id": k.ID, "session_id": k.SessionID, "slot": string(c.Slot), "device_id": string(c.Device)}
		s.a.events.Publish(ctx, ev)
	}
}
