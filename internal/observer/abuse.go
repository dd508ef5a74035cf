package observer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/bai-agent/bai-agent/internal/safefs"
)

// Upstream's values (tasks/cleanup_reported_kernels.py,
// agent.py cleanup_reported_kernels, common/lock.py FileLock).
const (
	// DefaultAbuseInterval is _CLEANUP_REPORTED_KERNELS_INTERVAL.
	DefaultAbuseInterval = 30 * time.Second
	// ReasonAnomalyDetected is KernelLifecycleEventReason.ANOMALY_DETECTED,
	// used when a report names no reason of that enum.
	ReasonAnomalyDetected = "anomaly-detected"
	// ReportLock is the lock file writers and the agent flock.
	ReportLock = "report.lock"
	// ReportPattern matches the report files.
	ReportPattern = "report.*.json"
	// lockTimeout is FileLock.default_timeout.
	lockTimeout = 3 * time.Second
	// maxReportSize caps one report file (they hold a few short strings).
	maxReportSize = 64 << 10
	// maxReportEntries caps the folder listing.
	maxReportEntries = 10000
	// fileTimeout bounds each pass over the folder (lock, list, read).
	fileTimeout = 20 * time.Second
)

// lifecycleReasons are KernelLifecycleEventReason's values: a report's
// reason is used as the termination reason only when it is one of them
// (upstream's from_value), else anomaly-detected.
var lifecycleReasons = map[string]bool{
	"agent-termination": true, "already-terminated": true, "anomaly-detected": true, "exec-timeout": true,
	"failed-to-create": true, "failed-to-start": true, "force-terminated": true, "bootstrap-timeout": true,
	"hang-timeout": true, "idle-timeout": true, "idle-session-lifetime": true, "idle-utilization": true,
	"killed-by-event": true, "service-scaled-down": true, "new-container-started": true, "pending-timeout": true,
	"restarting": true, "restart-timeout": true, "resuming-agent-operation": true, "self-terminated": true,
	"task-failed": true, "task-timeout": true, "task-cancelled": true, "task-finished": true,
	"terminated-unknown-container": true, "unknown": true, "user-requested": true, "user-purged": true,
	"not-found-in-manager": true, "container-not-found": true,
}

// AbuseStore keeps the abuse_report hash. Implementations bound each call
// by a deadline.
type AbuseStore interface {
	// ReplaceAbuseReport replaces the whole hash with report.
	ReplaceAbuseReport(ctx context.Context, report map[string]string) error
}

// AbuseOptions configure AbuseReports.
type AbuseOptions struct {
	// Dir is [agent] abuse-report-path (created when missing).
	Dir string
	// Terminate is [agent] force-terminate-abusing-containers.
	Terminate bool
	Agent     Agent
	// Store is nil without Redis (control-plane = "none"): reports are
	// still acted on, nothing is published.
	Store    AbuseStore
	Interval time.Duration // DefaultAbuseInterval when zero
	Log      *slog.Logger
}

// AbuseReports acts on the abuse reports in a folder.
type AbuseReports struct {
	o    AbuseOptions
	loop *loop
}

// StartAbuseReports creates the folder when missing and starts the scans;
// the first runs at once.
func StartAbuseReports(o AbuseOptions) *AbuseReports {
	if o.Interval <= 0 {
		o.Interval = DefaultAbuseInterval
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		o.Log.Warn("cannot create the abuse report folder", "path", o.Dir, "error", err)
	}
	o.Log.Info("monitoring abnormal kernel activities reported in the abuse report folder", "path", o.Dir, "force_terminate", o.Terminate)
	a := &AbuseReports{o: o}
	a.loop = startLoop("cleanup_reported_kernels", o.Interval, o.Log, a.Tick)
	return a
}

// Close stops the scans and waits for the one in progress.
func (a *AbuseReports) Close() { a.loop.Close() }

// Report is one report file.
type Report struct {
	File string // its name in the folder
	// KernelID is the canonical form of the file's "ID".
	KernelID    string
	ContainerID string // "CID"
	Reason      string // "reason"
}

// ParseReport reads a report file's body: a JSON object with "ID" (the
// kernel's UUID), "CID" (its container) and optionally "reason".
func ParseReport(name string, body []byte) (Report, error) {
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return Report{}, fmt.Errorf("report %s: %w", name, err)
	}
	r := Report{File: name}
	id, ok := raw["ID"].(string)
	if !ok {
		return Report{}, fmt.Errorf("report %s: no string \"ID\"", name)
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return Report{}, fmt.Errorf("report %s: \"ID\" %q: %w", name, id, err)
	}
	r.KernelID = u.String()
	r.ContainerID, _ = raw["CID"].(string)
	r.Reason, _ = raw["reason"].(string)
	return r, nil
}

// TerminationReason is the report's reason when it is a lifecycle reason
// upstream knows, else anomaly-detected.
func (r Report) TerminationReason() string {
	if lifecycleReasons[r.Reason] {
		return r.Reason
	}
	return ReasonAnomalyDetected
}

// AbuseDecision is what one scan does.
type AbuseDecision struct {
	// Hash is the new abuse_report hash.
	Hash map[string]string
	// Terminate lists the kernels to destroy with the report file of each.
	Terminate []AbuseTarget
}

// AbuseTarget is a reported kernel to destroy.
type AbuseTarget struct {
	Kernel
	Reason string
	File   string
}

// DecideAbuse applies upstream's rules: with terminate set, each reported
// kernel that is registered is marked "cleaning" and destroyed (a report
// of an unknown kernel is left alone, file included); without, every
// reported kernel is marked "detected" and nothing is destroyed.
func DecideAbuse(reports []Report, kernels []Kernel, terminate bool) AbuseDecision {
	byID := make(map[string]Kernel, len(kernels))
	for _, k := range kernels {
		byID[k.ID] = k
	}
	d := AbuseDecision{Hash: map[string]string{}}
	seen := map[string]bool{}
	for _, r := range reports {
		if !terminate {
			d.Hash[r.KernelID] = AbuseDetected
			continue
		}
		k, ok := byID[r.KernelID]
		if !ok {
			continue
		}
		d.Hash[r.KernelID] = AbuseCleaning
		if !seen[r.KernelID] {
			seen[r.KernelID] = true
			d.Terminate = append(d.Terminate, AbuseTarget{Kernel: k, Reason: r.TerminationReason(), File: r.File})
		} else {
			// A second report of the same kernel: its file goes with the
			// first's once the kernel is destroyed.
			d.Terminate = append(d.Terminate, AbuseTarget{Kernel: k, File: r.File})
		}
	}
	return d
}

// lockFolder flocks report.lock (created when missing) as upstream's
// FileLock does, retrying for lockTimeout; the returned function unlocks.
func lockFolder(ctx context.Context, root *safefs.Root) (func(), error) {
	f, err := root.OpenOrCreate(ReportLock, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(lockTimeout)
	wait := 20 * time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", ReportLock, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// readReports lists and reads the reports under the folder's lock. Files
// that cannot be read or parsed are logged and skipped (left in place).
func (a *AbuseReports) readReports(ctx context.Context) ([]Report, error) {
	return safefs.Do(ctx, "read abuse reports", func(ctx context.Context) ([]Report, error) {
		root, err := safefs.OpenRoot(a.o.Dir)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		unlock, err := lockFolder(ctx, root)
		if err != nil {
			return nil, err
		}
		defer unlock()
		entries, err := root.ReadDir(ctx, ".", maxReportEntries)
		if err != nil {
			return nil, err
		}
		var out []Report
		for _, e := range entries {
			if ok, _ := path.Match(ReportPattern, e.Name()); !ok {
				continue
			}
			if !e.Mode().IsRegular() {
				a.o.Log.Warn("abuse report skipped: not a regular file", "file", e.Name(), "mode", e.Mode().String())
				continue
			}
			body, err := root.ReadFile(e.Name(), maxReportSize)
			if err != nil {
				a.o.Log.Warn("abuse report skipped", "file", e.Name(), "error", err)
				continue
			}
			r, err := ParseReport(e.Name(), body)
			if err != nil {
				a.o.Log.Warn("abuse report skipped", "error", err)
				continue
			}
			out = append(out, r)
		}
		return out, nil
	})
}

// removeReports removes report files under the folder's lock.
func (a *AbuseReports) removeReports(ctx context.Context, files []string) error {
	_, err := safefs.Do(ctx, "remove abuse reports", func(ctx context.Context) (struct{}, error) {
		root, err := safefs.OpenRoot(a.o.Dir)
		if err != nil {
			return struct{}{}, err
		}
		defer root.Close()
		unlock, err := lockFolder(ctx, root)
		if err != nil {
			return struct{}{}, err
		}
		defer unlock()
		var errs []error
		for _, f := range files {
			if err := root.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		return struct{}{}, errors.Join(errs...)
	})
	return err
}

// Tick runs one scan (exported for tests; the loop calls it).
func (a *AbuseReports) Tick(ctx context.Context) error {
	kernels := a.o.Agent.ListKernels()
	fctx, cancel := context.WithTimeout(ctx, fileTimeout)
	reports, err := a.readReports(fctx)
	cancel()
	if err != nil {
		// Nothing known this time: the hash is left as it was.
		return fmt.Errorf("abuse reports in %s: %w", a.o.Dir, err)
	}
	d := DecideAbuse(reports, kernels, a.o.Terminate)
	for _, r := range reports {
		if d.Hash[r.KernelID] == AbuseDetected {
			a.o.Log.Debug("abusing kernel reported; not terminated (force-terminate-abusing-containers is off)", "kernel_id", r.KernelID, "reason", r.Reason)
		}
	}
	var errs []error
	if a.o.Store != nil {
		if err := a.o.Store.ReplaceAbuseReport(ctx, d.Hash); err != nil {
			errs = append(errs, fmt.Errorf("update %s (%d kernels): %w", AbuseReportHash, len(d.Hash), err))
		}
	}
	var ts []target
	for _, t := range d.Terminate {
		if t.Reason != "" {
			ts = append(ts, target{Kernel: t.Kernel, Reason: t.Reason})
		}
	}
	failed := destroyAll(ctx, a.o.Agent, ts, false, a.o.Log)
	// A report goes once its kernel is destroyed; a failed destroy keeps
	// it for the next scan.
	var done []string
	for _, t := range d.Terminate {
		if failed[t.ID] == nil {
			done = append(done, t.File)
		}
	}
	for _, err := range failed {
		errs = append(errs, err)
	}
	if len(done) > 0 {
		fctx, cancel := context.WithTimeout(ctx, fileTimeout)
		if err := a.removeReports(fctx, done); err != nil {
			errs = append(errs, fmt.Errorf("remove abuse reports in %s: %w", a.o.Dir, err))
		}
		cancel()
	}
	return errors.Join(errs...)
}
