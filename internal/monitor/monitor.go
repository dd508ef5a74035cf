package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/redisconn"

	"github.com/bai-agent/bai-agent/internal/metrics"
	"github.com/bai-agent/bai-agent/internal/stats"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// Options configure a Monitor.
type Options struct {
	AgentID           string
	Collector         *stats.Collector
	Targets           func() []stats.Target
	Metrics           *metrics.Agent
	Redis             *redisconn.Conn // nil: no Redis keys
	NodeInterval      time.Duration
	ContainerInterval time.Duration
	ProcessInterval   time.Duration
	NodeEnabled       bool
	ContainerEnabled  bool
	ProcessEnabled    bool
	// OnOOM is told about kernels with a new OOM kill (for the kernel's
	// termination reason).
	OnOOM func(kernelID string)
	// Plugins, if set, adds the accelerator plugins' measures to the node
	// and kernel statistics.
	Plugins PluginMeasures
	Log     *slog.Logger
}

// PluginMeasures is the agent's view of its accelerator plugins' measures
// (each already bounded by a deadline).
type PluginMeasures interface {
	AcceleratorNodeMeasures(ctx context.Context) []stats.NodeMeasure
	AcceleratorContainerMeasures(ctx context.Context) []stats.ContainerMeasure
}

// Monitor owns the loops.
type Monitor struct {
	o      Options
	rdb    *redis.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	lastProcPub time.Time
	problems    map[string]string  // kernel id -> last reported problem
	devSeries   map[[2]string]bool // (metric, device id) pairs with /metrics series
	// The agent's own CPU time at the previous sample (self loop only).
	selfCPUMsec uint64
	selfAt      time.Time
}

// Start starts the loops.
func Start(o Options) *Monitor {
	m := &Monitor{o: o}
	if o.Redis != nil {
		m.rdb = o.Redis.Client(redisconn.RoleStatistics, 0, nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if o.NodeEnabled {
		m.loop(ctx, "node", o.NodeInterval, m.node)
	}
	if o.ContainerEnabled {
		m.loop(ctx, "container", o.ContainerInterval, m.containers)
	}
	m.loop(ctx, "agent", 10*time.Second, m.self)
	return m
}

// Close stops the loops.
func (m *Monitor) Close() {
	m.cancel()
	m.wg.Wait()
	if m.rdb != nil {
		m.rdb.Close()
	}
}

func (m *Monitor) loop(ctx context.Context, scope string, interval time.Duration, fn func(context.Context) error) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			t0 := time.Now()
			if scope != "agent" {
				m.o.Metrics.StatTrigger.Inc(m.o.AgentID, scope)
			}
			err := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("panic: %v", r)
					}
				}()
				// The outer bound of a whole cycle (the Python agent's
				// 10-minute collection timeout, scaled down).
				cctx, cancel := context.WithTimeout(ctx, interval+30*time.Second)
				defer cancel()
				return fn(cctx)
			}()
			if scope != "agent" {
				m.o.Metrics.StatDuration.Observe(time.Since(t0).Seconds(), m.o.AgentID, scope)
				if err != nil {
					m.o.Metrics.StatFailure.Inc(m.o.AgentID, scope, excName(err))
					m.o.Log.Warn("stat collection failed", "scope", scope, "error", err)
				} else {
					m.o.Metrics.StatSuccess.Inc(m.o.AgentID, scope)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
}

func excName(err error) string {
	s := fmt.Sprintf("%T", err)
	if i := strings.LastIndex(s, "."); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimPrefix(s, "*")
}

func f64(v any) float64 {
	s, _ := v.(string)
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

func (m *Monitor) node(ctx context.Context) error {
	if err := m.o.Collector.CollectNode(m.o.NodeInterval); err != nil {
		return err
	}
	if m.o.Plugins != nil {
		m.o.Collector.RecordNodeMeasures(m.o.Plugins.AcceleratorNodeMeasures(ctx))
	}
	ns := m.o.Collector.NodeSnapshot()
	// A device that is gone (a GPU fell off the bus, a plugin stopped
	// reporting) loses its series; the ones still present are set again
	// right below.
	now := map[[2]string]bool{}
	for name, per := range ns.Devices {
		for id := range per {
			now[[2]string{name, id}] = true
		}
	}
	m.mu.Lock()
	for k := range m.devSeries {
		if !now[k] {
			m.o.Metrics.Device.DeleteWhere(map[string]string{"device_metric_name": k[0], "device_id": k[1]})
		}
	}
	m.devSeries = now
	m.mu.Unlock()
	for name, per := range ns.Devices {
		for id, mv := range per {
			m.o.Metrics.Device.Set(f64(mv["current"]), name, m.o.AgentID, id, "current")
			m.o.Metrics.Device.Set(f64(mv["pct"]), name, m.o.AgentID, id, "pct")
			if mv["capacity"] != nil && name != "cpu_util" {
				m.o.Metrics.Device.Set(f64(mv["capacity"]), name, m.o.AgentID, id, "capacity")
			}
		}
	}
	if m.rdb == nil {
		return nil
	}
	devices := map[string]any{}
	for name, per := range ns.Devices {
		d := map[string]any{}
		for id, v := range per {
			d[id] = v
		}
		devices[name] = d
	}
	node := map[string]any{}
	for k, v := range ns.Node {
		node[k] = v
	}
	b, err := msgpack.Marshal(map[string]any{"node": node, "devices": devices})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return m.rdb.Set(wctx, m.o.AgentID, b, 4*m.o.NodeInterval).Err()
}

func (m *Monitor) containers(ctx context.Context) error {
	targets := m.o.Targets()
	res := m.o.Collector.CollectContainers(ctx, targets)
	for _, id := range res.Gone {
		m.o.Metrics.ForgetKernel(id)
	}
	for _, id := range res.OOMKilled {
		m.o.Metrics.OOMKills.Inc(m.o.AgentID, id)
		if m.o.OnOOM != nil {
			m.o.OnOOM(id)
		}
	}
	m.o.Metrics.KernelCount.Set(float64(len(targets)), m.o.AgentID)
	if m.o.Plugins != nil {
		m.o.Collector.RecordContainerMeasures(m.o.Plugins.AcceleratorContainerMeasures(ctx))
	}
	snaps := m.o.Collector.Snapshot()
	m.mu.Lock()
	publishProcs := m.o.ProcessEnabled && time.Since(m.lastProcPub) >= m.o.ProcessInterval
	if publishProcs {
		m.lastProcPub = time.Now()
	}
	m.mu.Unlock()
	var pipe redis.Pipeliner
	if m.rdb != nil {
		pipe = m.rdb.Pipeline()
	}
	for _, ks := range snaps {
		t := ks.Target
		for name, mv := range ks.Metrics {
			for _, vt := range []string{"current", "capacity", "pct"} {
				if mv[vt] == nil {
					continue
				}
				m.o.Metrics.Container.Set(f64(mv[vt]), name, m.o.AgentID, t.KernelID, t.SessionID, t.UserID, t.ProjectID, vt)
			}
		}
		if publishProcs {
			m.o.Metrics.Process.DeleteMatching("kernel_id", t.KernelID)
			for pid, pm := range ks.Procs {
				for name, mv := range pm {
					m.o.Metrics.Process.Set(f64(mv["current"]), name, m.o.AgentID, t.KernelID, t.SessionID, t.UserID, t.ProjectID, t.ContainerID, strconv.Itoa(pid), "current")
				}
			}
		}
		if pipe != nil {
			vals := map[string]any{}
			for k, v := range ks.Metrics {
				vals[k] = v
			}
			b, err := msgpack.Marshal(vals)
			if err == nil {
				pipe.Set(ctx, t.KernelID, b, 24*time.Hour)
			}
		}
	}
	if pipe != nil && len(snaps) > 0 {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := pipe.Exec(wctx); err != nil {
			return fmt.Errorf("write kernel stat keys: %w", err)
		}
	}
	if res.TimedOut > 0 || res.Skipped > 0 {
		m.o.Log.Warn("some containers were slow to measure; their numbers are stale", "timed_out", res.TimedOut, "skipped", res.Skipped)
	}
	m.reportProblems(res.Problems)
	return nil
}

// reportProblems logs each kernel's measurement problem when it appears
// or changes, and when it clears (not every cycle).
func (m *Monitor) reportProblems(now map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, p := range now {
		if m.problems[id] != p {
			m.o.Log.Warn("kernel not fully measured", "kernel_id", id, "problem", p)
		}
	}
	for id := range m.problems {
		if _, still := now[id]; !still {
			m.o.Log.Info("kernel measured again", "kernel_id", id)
		}
	}
	m.problems = now
}

// self reports the agent process's own CPU and memory.
func (m *Monitor) self(context.Context) error {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return err
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 13 {
			ut, _ := strconv.ParseUint(f[11], 10, 64)
			st, _ := strconv.ParseUint(f[12], 10, 64)
			cpu := (ut + st) * 10
			now := time.Now()
			if !m.selfAt.IsZero() {
				pct := float64(cpu-m.selfCPUMsec) / float64(now.Sub(m.selfAt).Milliseconds()) * 100
				m.o.Metrics.AgentCPU.Set(pct, m.o.AgentID)
			}
			m.selfCPUMsec, m.selfAt = cpu, now
		}
	}
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseFloat(f[0], 64)
					m.o.Metrics.AgentMem.Set(kb*1024, m.o.AgentID)
				}
			}
		}
	}
	m.o.Metrics.AgentGPU.Set(0, m.o.AgentID)
	m.o.Metrics.AgentGoroutines.Set(float64(runtime.NumGoroutine()), m.o.AgentID)
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		m.o.Metrics.AgentOpenFiles.Set(float64(len(fds)), m.o.AgentID)
	}
	return nil
}
