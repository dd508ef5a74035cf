package observer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Upstream's values (valkey_schedule/client.py and
// orphan_kernel_cleanup.py).
const (
	// OrphanThreshold: a kernel whose last_check is older than the
	// agent's last_check minus this is an orphan (ORPHAN_KERNEL_THRESHOLD_SEC).
	OrphanThreshold = 600
	// DefaultOrphanInterval is OrphanKernelCleanupObserver.observe_interval.
	DefaultOrphanInterval = 300 * time.Second
	// ReasonNotFoundInManager is KernelLifecycleEventReason.NOT_FOUND_IN_MANAGER.
	ReasonNotFoundInManager = "not-found-in-manager"
)

// AgentLastCheckKey is the key (live database) where the manager's
// stale-kernel sweep stamps the agents it checked: a decimal integer of
// the Redis server's clock in seconds, expiring after 1200 s.
func AgentLastCheckKey(agentID string) string { return "agent:last_check:" + agentID }

// PresenceKey is a kernel's presence hash (live database): presence and
// last_presence written by the agent, last_check by the manager, each a
// decimal integer string.
func PresenceKey(kernelID string) string { return "kernel:presence:" + kernelID }

// PresenceStore reads what the manager wrote. Implementations bound each
// call by a deadline.
type PresenceStore interface {
	// AgentLastCheck returns agent:last_check:{agentID}; found is false
	// when the key does not exist.
	AgentLastCheck(ctx context.Context, agentID string) (value string, found bool, err error)
	// KernelPresence returns the presence hash of each kernel; a kernel
	// without a key is absent from the map (or maps to an empty hash).
	KernelPresence(ctx context.Context, kernelIDs []string) (map[string]map[string]string, error)
}

// OrphanOptions configure an OrphanReaper.
type OrphanOptions struct {
	AgentID  string
	Agent    Agent
	Store    PresenceStore
	Interval time.Duration // DefaultOrphanInterval when zero
	Log      *slog.Logger
}

// OrphanReaper destroys kernels the manager no longer checks.
type OrphanReaper struct {
	o    OrphanOptions
	loop *loop
}

// StartOrphanReaper starts the reaper; its first pass runs at once.
func StartOrphanReaper(o OrphanOptions) *OrphanReaper {
	if o.Interval <= 0 {
		o.Interval = DefaultOrphanInterval
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := &OrphanReaper{o: o}
	r.loop = startLoop("orphan_kernel_cleanup", o.Interval, o.Log, r.Tick)
	return r
}

// Close stops the reaper and waits for a pass in progress.
func (r *OrphanReaper) Close() { r.loop.Close() }

// Verdict is the decision about one kernel.
type Verdict struct {
	Kernel
	Orphan bool
	// Why says why the kernel is kept (or, for an orphan, its stamps).
	Why string
}

// parseStamp reads a stamp as upstream's int() does (surrounding spaces
// allowed, no fraction).
func parseStamp(s string) (int64, error) {
	return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
}

// DecideOrphans applies upstream's strict condition to each kernel: the
// manager has checked this agent (agentLastCheck, given), the kernel has a
// presence hash with its presence field (a hash the manager's HSET made
// alone, without the agent's fields, counts as none) and a last_check
// field, and last_check < agentLastCheck - OrphanThreshold. Every other
// case is kept: there is not enough information to decide.
func DecideOrphans(agentLastCheck int64, kernels []Kernel, presence map[string]map[string]string) []Verdict {
	out := make([]Verdict, 0, len(kernels))
	limit := agentLastCheck - OrphanThreshold
	for _, k := range kernels {
		v := Verdict{Kernel: k}
		h := presence[k.ID]
		raw, hasCheck := h["last_check"]
		switch {
		case len(h) == 0:
			v.Why = "no presence hash"
		case !hasKey(h, "presence"):
			v.Why = "presence hash has no presence field"
		case !hasCheck:
			v.Why = "never checked by the manager (no last_check)"
		default:
			lc, err := parseStamp(raw)
			switch {
			case err != nil:
				v.Why = fmt.Sprintf("last_check %q is not an integer", raw)
			case lc < limit:
				v.Orphan = true
				v.Why = fmt.Sprintf("last_check %d < agent last_check %d - %d", lc, agentLastCheck, OrphanThreshold)
			default:
				v.Why = fmt.Sprintf("last_check %d >= agent last_check %d - %d", lc, agentLastCheck, OrphanThreshold)
			}
		}
		out = append(out, v)
	}
	return out
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// Tick runs one pass (exported for tests; the loop calls it).
func (r *OrphanReaper) Tick(ctx context.Context) error {
	log := r.o.Log
	raw, found, err := r.o.Store.AgentLastCheck(ctx, r.o.AgentID)
	if err != nil {
		return fmt.Errorf("read %s: %w", AgentLastCheckKey(r.o.AgentID), err)
	}
	if !found {
		log.Debug("orphan kernel cleanup skipped: the manager has not checked this agent", "agent_id", r.o.AgentID)
		return nil
	}
	alc, err := parseStamp(raw)
	if err != nil {
		return fmt.Errorf("%s = %q: not an integer: %w", AgentLastCheckKey(r.o.AgentID), raw, err)
	}
	kernels := r.o.Agent.ListKernels()
	if len(kernels) == 0 {
		return nil
	}
	ids := make([]string, len(kernels))
	for i, k := range kernels {
		ids[i] = k.ID
	}
	presence, err := r.o.Store.KernelPresence(ctx, ids)
	if err != nil {
		return fmt.Errorf("read kernel presence of %d kernels: %w", len(ids), err)
	}
	var orphans []target
	for _, v := range DecideOrphans(alc, kernels, presence) {
		if !v.Orphan {
			log.Debug("orphan kernel check: kept", "kernel_id", v.ID, "why", v.Why)
			continue
		}
		log.Info("orphan kernel detected", "kernel_id", v.ID, "session_id", v.SessionID, "why", v.Why)
		orphans = append(orphans, target{Kernel: v.Kernel, Reason: ReasonNotFoundInManager})
	}
	if len(orphans) == 0 {
		return nil
	}
	var errs []error
	for _, err := range destroyAll(ctx, r.o.Agent, orphans, true, log) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
