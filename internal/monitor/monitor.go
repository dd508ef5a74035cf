package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sort"
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
	o          Options
	rdb        *redis.Client
	releaseRdb func()
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	// seriesMu orders the process cycle's series updates against the
	// container cycle's removal of a gone kernel's series, so that a
	// process cycle holding an older snapshot cannot bring them back.
	seriesMu sync.Mutex
	// procSeries lists, per kernel id, the pids with process series.
	procSeries map[string]map[string]bool

	mu        sync.Mutex
	problems  map[string]string  // kernel id -> last reported problem
	devSeries map[[2]string]bool // (metric, device id) pairs with /metrics series
}

// Start starts the loops.
func Start(o Options) *Monitor {
	m := &Monitor{o: o}
	if o.Redis != nil {
		m.rdb, m.releaseRdb = o.Redis.Shared(redisconn.RoleStatistics, 0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if o.NodeEnabled {
		m.loop(ctx, "node", o.NodeInterval, m.node)
	}
	if o.ContainerEnabled {
		m.loop(ctx, "container", o.ContainerInterval, m.containers)
	}
	if o.ProcessEnabled {
		m.loop(ctx, "process", o.ProcessInterval, m.processes)
	}
	m.loop(ctx, "agent", 10*time.Second, m.self)
	return m
}

// Close stops the loops.
func (m *Monitor) Close() {
	m.cancel()
	m.wg.Wait()
	if m.rdb != nil {
		m.releaseRdb()
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
			m.o.Metrics.Device.DeleteWhere(map[string]string{"device_metric_name": k[0], "agent_id": m.o.AgentID, "device_id": k[1]})
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
	m.seriesMu.Lock()
	for _, id := range res.Gone {
		m.o.Metrics.ForgetKernel(id)
		delete(m.procSeries, id)
	}
	m.seriesMu.Unlock()
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

// processes is the process-scope cycle (upstream's
// collect_per_container_process_stat): the per-process metrics the
// container cycle reads from /proc (cpu_util, cpu_used, mem, io_read,
// io_write of every process in the kernel's cgroup) go to
// backendai_process_utilization (current, and capacity where the metric
// has one, as upstream) and to the Redis key {container_id} as
// {pid: {metric: MetricValue}} with a TTL of 4 process intervals. Series
// of processes that exited are removed.
func (m *Monitor) processes(ctx context.Context) error {
	m.seriesMu.Lock()
	snaps := m.o.Collector.Snapshot()
	live := make(map[string]map[string]bool, len(snaps))
	tables := map[string]msgpack.Map{}
	for _, ks := range snaps {
		t := ks.Target
		if t.NoHostProcesses {
			// Unavailable (gVisor): no process key at all rather than an
			// empty table that reads as "no processes".
			continue
		}
		pids := make(map[string]bool, len(ks.Procs))
		table := make(msgpack.Map, 0, len(ks.Procs))
		for pid, pm := range ks.Procs {
			p := strconv.Itoa(pid)
			pids[p] = true
			vals := make(map[string]any, len(pm))
			for name, mv := range pm {
				vals[name] = mv
				m.o.Metrics.Process.Set(f64(mv["current"]), name, m.o.AgentID, t.KernelID, t.SessionID, t.UserID, t.ProjectID, t.ContainerID, p, "current")
				if mv["capacity"] != nil {
					m.o.Metrics.Process.Set(f64(mv["capacity"]), name, m.o.AgentID, t.KernelID, t.SessionID, t.UserID, t.ProjectID, t.ContainerID, p, "capacity")
				}
			}
			table = append(table, msgpack.KV{Key: pid, Val: vals})
		}
		// Integer pid keys, as upstream packs them; in pid order.
		sort.Slice(table, func(i, j int) bool { return table[i].Key.(int) < table[j].Key.(int) })
		live[t.KernelID] = pids
		if t.ContainerID != "" {
			tables[t.ContainerID] = table
		}
	}
	for kid, pids := range m.procSeries {
		for pid := range pids {
			if !live[kid][pid] {
				m.o.Metrics.Process.DeleteWhere(map[string]string{"kernel_id": kid, "pid": pid})
			}
		}
	}
	m.procSeries = live
	m.seriesMu.Unlock()
	if m.rdb == nil || len(tables) == 0 {
		return nil
	}
	pipe := m.rdb.Pipeline()
	for cid, table := range tables {
		b, err := msgpack.Marshal(table)
		if err != nil {
			return err
		}
		pipe.Set(ctx, cid, b, 4*m.o.ProcessInterval)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := pipe.Exec(wctx); err != nil {
		return fmt.Errorf("write process stat keys: %w", err)
	}
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
	// The figures are the process's: with several agents in one process
	// ([[agents]]) they share one sample (reading /proc/self/fd alone
	// costs a readdir of every socket of every kernel).
	p := procSelf.sample()
	if p.cpuValid {
		m.o.Metrics.AgentCPU.Set(p.cpuPct, m.o.AgentID)
		m.o.Metrics.ProcCPUPercent.Set(p.cpuPct)
	}
	if p.rss > 0 {
		m.o.Metrics.AgentMem.Set(p.rss, m.o.AgentID)
		m.o.Metrics.ProcMemRSS.Set(p.rss)
	}
	if p.vms > 0 {
		m.o.Metrics.ProcMemVMS.Set(p.vms)
	}
	m.o.Metrics.AgentGPU.Set(0, m.o.AgentID)
	m.o.Metrics.AgentGoroutines.Set(p.goroutines, m.o.AgentID)
	m.o.Metrics.AsyncTaskCount.Set(p.goroutines)
	if p.fds >= 0 {
		m.o.Metrics.AgentOpenFiles.Set(p.fds, m.o.AgentID)
	}
	return nil
}

// procSelf is the process's one sampler of its own figures.
var procSelf = &selfSampler{}

// selfSampleTTL is how long one sample of the process serves every agent
// of it (their self loops run every 10 s).
const selfSampleTTL = 5 * time.Second

type selfFigures struct {
	cpuPct     float64 // since the previous sample
	cpuValid   bool
	rss, vms   float64 // bytes
	goroutines float64
	fds        float64 // -1: unreadable
}

type selfSampler struct {
	mu      sync.Mutex
	at      time.Time
	last    selfFigures
	cpuMsec uint64
	cpuAt   time.Time
}

func (s *selfSampler) sample() selfFigures {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if !s.at.IsZero() && now.Sub(s.at) < selfSampleTTL {
		return s.last
	}
	f := selfFigures{fds: -1, goroutines: float64(runtime.NumGoroutine())}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		st := string(b)
		if i := strings.LastIndexByte(st, ')'); i >= 0 {
			if fs := strings.Fields(st[i+1:]); len(fs) > 13 {
				ut, _ := strconv.ParseUint(fs[11], 10, 64)
				sy, _ := strconv.ParseUint(fs[12], 10, 64)
				cpu := (ut + sy) * 10
				if !s.cpuAt.IsZero() {
					if ms := now.Sub(s.cpuAt).Milliseconds(); ms > 0 {
						f.cpuPct, f.cpuValid = float64(cpu-s.cpuMsec)/float64(ms)*100, true
					}
				}
				s.cpuMsec, s.cpuAt = cpu, now
			}
		}
	}
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				if fs := strings.Fields(rest); len(fs) > 0 {
					kb, _ := strconv.ParseFloat(fs[0], 64)
					f.rss = kb * 1024
				}
			}
			if rest, ok := strings.CutPrefix(line, "VmSize:"); ok {
				if fs := strings.Fields(rest); len(fs) > 0 {
					kb, _ := strconv.ParseFloat(fs[0], 64)
					f.vms = kb * 1024
				}
			}
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		f.fds = float64(len(fds))
	}
	s.at, s.last = now, f
	return f
}
