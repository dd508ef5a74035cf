package stats

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/cgroup"
	"github.com/bai-agent/bai-agent/internal/safefs"
)

// Target is one kernel to measure.
type Target struct {
	KernelID    string
	SessionID   string
	UserID      string
	ProjectID   string
	ContainerID string
	Pid         int
	ScratchDir  string
	ScratchSize int64
	// NoHostProcesses: the kernel's processes are not host processes
	// (gVisor: they live inside the Sentry; the cgroup holds the sandbox,
	// its gofer and, on the ptrace platform, its stub processes). The
	// per-process figures are then left out (unavailable, not zero):
	// those of the cgroup's processes would be the sandbox's.
	NoHostProcesses bool
}

// KernelSnapshot is the serialized metrics of one kernel.
type KernelSnapshot struct {
	Target  Target
	Metrics map[string]map[string]any
	// Procs maps pid to its serialized metrics.
	Procs map[int]map[string]map[string]any
}

type kernelState struct {
	target   Target
	paths    cgroup.Paths
	pathsPid int
	// files keeps the container's cgroup and /proc files open between
	// cycles (closed when the kernel goes or its cgroup changes).
	files *cgroup.Handles
	// retired is set when the kernel went while its read was in flight:
	// that reader closes the files when it returns (readKernel owns
	// files and paths while inflight).
	retired  bool
	metrics  map[string]*Metric
	procs    map[int]map[string]*Metric
	inflight bool
	readOnce bool
	// memLimit is the limit the mem metric's capacity was made from.
	memLimit uint64
	// netErr is why the last read had no network counters (nil: it had).
	netErr error
	// stuck lists the processes last seen in uninterruptible sleep (D:
	// a FUSE or NFS mount that does not answer, a hung device).
	stuck []int
	// Per-process I/O, for hosts whose blkio controller accounts nothing
	// (buffered writes on cgroup v1, some virtual disks): counters of
	// processes seen alive, plus the last counters of those that exited.
	procIO            map[int][2]uint64
	deadRead, deadWrt uint64
	oomKills          uint64
}

// DockerUsage is one container sample from the Docker stats API.
type DockerUsage struct {
	CPUUsec, MemUsage, MemLimit, IORead, IOWrite, NetRx, NetTx uint64
}

// metric returns the kernel's metric for d, creating it, and refreshes its
// capacity when one is given. The caller holds c.mu.
func (st *kernelState) metric(d Def, capacity *decimal.Decimal) *Metric {
	m, ok := st.metrics[d.Key]
	if !ok {
		m = newMetric(d, capacity)
		st.metrics[d.Key] = m
	}
	if capacity != nil {
		m.Capacity = capacity
	}
	return m
}

// DefContainerCPUUtil is a container's CPU use: CPU msec samples, the
// rate as current, one core (1000 msec/s) as capacity.
var DefContainerCPUUtil = Def{Key: "cpu_util", Unit: "percent", Filter: []string{"avg", "max"}, Current: CurrentRate}

var oneCore = decimal.NewFromInt(1000)

// updateCounters records one sample of the counters every source
// provides. The caller holds c.mu.
func (st *kernelState) updateCounters(now time.Time, cpuUsec, memUsage, memLimit, ioRead, ioWrite uint64) {
	// Microseconds are thousandths of the milliseconds reported.
	st.metric(DefContainerCPUUtil, &oneCore).Stats.UpdateThousandths(cpuUsec, now)
	st.metric(DefCPUUsed, nil).Stats.UpdateThousandths(cpuUsec, now)
	mem := st.metric(DefMem, nil)
	if memLimit > 0 && (mem.Capacity == nil || memLimit != st.memLimit) {
		v := dec(memLimit)
		mem.Capacity = &v
		st.memLimit = memLimit
	}
	mem.Stats.UpdateUint(memUsage, now)
	st.metric(DefIORead, nil).Stats.UpdateUint(ioRead, now)
	st.metric(DefIOWrite, nil).Stats.UpdateUint(ioWrite, now)
}

func (st *kernelState) updateNet(now time.Time, rx, tx uint64) {
	st.metric(DefNetRx, nil).Stats.UpdateUint(rx, now)
	st.metric(DefNetTx, nil).Stats.UpdateUint(tx, now)
}

// Collector owns the per-kernel and node metric state.
type Collector struct {
	FS cgroup.FS
	// Docker, when set, replaces the cgroup reads (stats-type = "docker",
	// for hosts whose cgroups the agent cannot read). Never the default:
	// each call is a 1 s round trip through dockerd.
	Docker   func(ctx context.Context, containerID string) (DockerUsage, error)
	Deadline time.Duration // per container read
	Now      func() time.Time

	mu      sync.Mutex // guards the maps; never held across I/O
	kernels map[string]*kernelState
	node    map[string]*Metric
	cores   map[string]*Metric
	// devs holds compute plugins' per-device metrics: key -> device id.
	devs map[string]map[string]*Metric
	// hostDevs holds the intrinsic per-device node metrics as upstream's
	// memory plugin reports them: mem/"root", disk/<block device>,
	// net_rx and net_tx/"node".
	hostDevs map[string]map[string]*Metric
	nodeAt   time.Time
}

// NewCollector returns a collector with a 2 s per-container deadline.
func NewCollector() *Collector {
	return &Collector{Deadline: 2 * time.Second, Now: time.Now, kernels: map[string]*kernelState{}, node: map[string]*Metric{}, cores: map[string]*Metric{}}
}

// CycleResult tells what one container cycle did.
type CycleResult struct {
	Collected int
	Skipped   int // still stuck from an earlier cycle
	TimedOut  int // did not finish within the deadline this cycle
	Failed    int
	Gone      []string // kernels whose series must be removed
	OOMKilled []string // kernels with a new OOM kill since the last cycle
	// Problems says, per kernel, why it was not (fully) measured this
	// cycle: a failed read (its cgroup or process is gone) or a missing
	// network namespace (measured without network counters).
	Problems map[string]string
}

func dec(v uint64) decimal.Decimal { return decimal.NewFromUint64(v) }

func newMetric(d Def, capacity *decimal.Decimal) *Metric { return &Metric{Def: d, Capacity: capacity} }

// CollectContainers reads every target in parallel, each under the
// deadline, and forgets kernels no longer listed.
func (c *Collector) CollectContainers(ctx context.Context, targets []Target) CycleResult {
	var res CycleResult
	live := map[string]bool{}
	type job struct {
		st *kernelState
		t  Target
	}
	var jobs []job
	c.mu.Lock()
	for _, t := range targets {
		live[t.KernelID] = true
		st, ok := c.kernels[t.KernelID]
		if !ok || st.target.ContainerID != t.ContainerID {
			if ok {
				st.retire()
			}
			st = &kernelState{target: t, metrics: map[string]*Metric{}, procs: map[int]map[string]*Metric{}}
			c.kernels[t.KernelID] = st
		}
		st.target = t
		if st.inflight {
			res.Skipped++
			continue
		}
		st.inflight = true
		jobs = append(jobs, job{st, t})
	}
	for id, st := range c.kernels {
		if !live[id] {
			st.retire()
			delete(c.kernels, id)
			res.Gone = append(res.Gone, id)
		}
	}
	c.mu.Unlock()

	type outcome struct {
		id      string
		err     error
		oom     bool
		partial error
	}
	done := make(chan outcome, len(jobs))
	for _, j := range jobs {
		go func(j job) {
			err, oom := c.readKernel(j.st, j.t)
			c.mu.Lock()
			j.st.inflight = false
			if j.st.retired {
				j.st.files.Close()
			}
			var partial error
			switch {
			case j.st.netErr != nil:
				partial = fmt.Errorf("network counters unavailable: %w", j.st.netErr)
			case len(j.st.stuck) > 0:
				partial = fmt.Errorf("processes in uninterruptible sleep (D; a mount or device that does not answer): %v", j.st.stuck)
			}
			c.mu.Unlock()
			done <- outcome{j.t.KernelID, err, oom, partial}
		}(j)
	}
	timer := time.NewTimer(c.Deadline)
	defer timer.Stop()
	for pending := len(jobs); pending > 0; pending-- {
		select {
		case o := <-done:
			if o.err != nil {
				res.Failed++
			} else {
				res.Collected++
			}
			if o.err != nil || o.partial != nil {
				if res.Problems == nil {
					res.Problems = map[string]string{}
				}
				if o.err != nil {
					res.Problems[o.id] = o.err.Error()
				} else {
					res.Problems[o.id] = o.partial.Error()
				}
			}
			if o.oom {
				res.OOMKilled = append(res.OOMKilled, o.id)
			}
		case <-timer.C:
			res.TimedOut += pending
			return res
		case <-ctx.Done():
			res.TimedOut += pending
			return res
		}
	}
	return res
}

// retire closes the kernel's kept files, or leaves that to the reader in
// flight. The caller holds c.mu.
func (st *kernelState) retire() {
	st.retired = true
	if !st.inflight {
		st.files.Close()
	}
}

// maxOpenPerKernel bounds the files kept open per kernel: its cgroup
// files, its network counters and two per process for the first
// processes (about 25 processes; the rest are read the plain way).
const maxOpenPerKernel = 64

// readKernel does the I/O of one kernel and updates its metrics. It runs
// on its own goroutine; it may outlive the cycle that started it.
func (c *Collector) readKernel(st *kernelState, t Target) (error, bool) {
	now := c.Now()
	if c.Docker != nil {
		return c.readKernelDocker(st, t, now)
	}
	if st.pathsPid != t.Pid || (st.paths == cgroup.Paths{}) {
		p, err := c.FS.PathsFor(t.Pid)
		if err != nil {
			return err, false
		}
		st.files.Close()
		st.paths, st.pathsPid, st.files = p, t.Pid, cgroup.NewHandles(maxOpenPerKernel)
	}
	fs := c.FS
	fs.H = st.files
	s, err := fs.Read(st.paths)
	if err != nil {
		if errors.Is(err, cgroup.ErrGone) {
			st.paths = cgroup.Paths{}
		}
		return err, false
	}
	rx, tx, nerr := fs.NetDev(t.Pid)
	scratch := scratchUsage(t.ScratchDir)
	var procs []cgroup.Proc
	if pids, err := fs.Procs(st.paths); err == nil {
		if len(pids) > 2000 {
			pids = pids[:2000] // bound the work for process bombs
		}
		alive := make(map[int]bool, len(pids))
		for _, pid := range pids {
			alive[pid] = true
			if p, err := fs.ReadProc(pid); err == nil {
				procs = append(procs, p)
			}
		}
		st.files.KeepProcs(c.FS.Root, alive)
	}
	var stuck []int
	for _, p := range procs {
		if p.State == 'D' {
			stuck = append(stuck, p.Pid)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st.netErr = nerr
	st.stuck = stuck
	if nerr == nil {
		st.updateNet(now, rx, tx)
	}
	var scap *decimal.Decimal
	if t.ScratchSize > 0 {
		v := decimal.NewFromInt(t.ScratchSize)
		scap = &v
	}
	st.metric(DefIOScratchSize, scap).Stats.UpdateUint(scratch, now)
	if st.procIO == nil {
		st.procIO = map[int][2]uint64{}
	}
	var liveRead, liveWrite uint64
	alive := map[int]bool{}
	for _, p := range procs {
		alive[p.Pid] = true
		st.procIO[p.Pid] = [2]uint64{p.IORead, p.IOWrite}
		liveRead += p.IORead
		liveWrite += p.IOWrite
	}
	for pid, io := range st.procIO {
		if !alive[pid] {
			st.deadRead += io[0]
			st.deadWrt += io[1]
			delete(st.procIO, pid)
		}
	}
	if s.IORead == 0 && s.IOWrite == 0 {
		s.IORead, s.IOWrite = liveRead+st.deadRead, liveWrite+st.deadWrt
	}
	st.updateCounters(now, s.CPUUsec, s.MemUsage, s.MemLimit, s.IORead, s.IOWrite)
	if t.NoHostProcesses {
		// The cgroup's processes are the sandbox's (Sentry, gofer,
		// stubs): their I/O above is the kernel's file I/O (the gofer
		// does it) and a D state there is the kernel's hung I/O, but
		// their per-process figures describe no process of the kernel.
		procs = nil
	}
	for _, p := range procs {
		pm, ok := st.procs[p.Pid]
		if !ok {
			pm = map[string]*Metric{
				"cpu_util": newMetric(DefContainerCPUUtil, &oneCore),
				"cpu_used": newMetric(DefCPUUsed, nil),
				"mem":      newMetric(DefMem, nil),
				"io_read":  newMetric(DefIORead, nil),
				"io_write": newMetric(DefIOWrite, nil),
			}
			st.procs[p.Pid] = pm
		}
		pm["cpu_util"].Stats.UpdateUint(p.CPUMsec, now)
		pm["cpu_used"].Stats.UpdateUint(p.CPUMsec, now)
		pm["mem"].Stats.UpdateUint(p.RSS, now)
		pm["io_read"].Stats.UpdateUint(p.IORead, now)
		pm["io_write"].Stats.UpdateUint(p.IOWrite, now)
	}
	for pid := range st.procs {
		if !alive[pid] {
			delete(st.procs, pid) // dead processes are pruned
		}
	}
	oom := false
	if s.HasOOMCount {
		oom = st.readOnce && s.OOMKills > st.oomKills
		st.oomKills = s.OOMKills
	}
	st.readOnce = true
	return nil, oom
}

// scratchUsage is the bytes used under dir: statfs for a dedicated mount
// (hostfile, memory), otherwise a bounded walk. The walk is safefs's: the
// folder is the kernel's /home/work, where its user may swap a folder for
// a link, a FIFO or a device node between our listing and our descent,
// and a plain walk would then follow the link out of the scratch, block
// on the FIFO for ever or open the host device as root.
func scratchUsage(dir string) uint64 {
	if dir == "" {
		return 0
	}
	var st, parent syscall.Statfs_t
	if syscall.Statfs(dir, &st) == nil && syscall.Statfs(filepath.Dir(dir), &parent) == nil && st.Fsid != parent.Fsid {
		return (st.Blocks - st.Bfree) * uint64(st.Bsize)
	}
	root, err := safefs.OpenRoot(dir)
	if err != nil {
		return 0
	}
	defer root.Close()
	ctx, cancel := context.WithTimeout(context.Background(), scratchWalkTimeout)
	defer cancel()
	// Depth first with a stack of names: a folder that cannot be listed
	// (gone meanwhile, swapped, too large for what is left of the budget)
	// is skipped and the rest still counted, as a folder too deep is.
	type folder struct {
		rel   string
		depth int
	}
	var total uint64
	budget := scratchWalkEntries
	stack := []folder{{".", 0}}
	for len(stack) > 0 && budget > 0 && ctx.Err() == nil {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ents, err := root.ReadDir(ctx, f.rel, budget)
		if err != nil {
			continue
		}
		budget -= len(ents)
		for _, e := range ents {
			switch {
			case e.Mode().IsRegular():
				total += uint64(e.Stat().Blocks) * 512
			case e.IsDir() && f.depth < scratchWalkDepth:
				stack = append(stack, folder{path.Join(f.rel, e.Name()), f.depth + 1})
			}
		}
	}
	return total
}

// Bounds of the scratch walk per statistics cycle.
const (
	scratchWalkEntries = 100000
	scratchWalkDepth   = 128
	scratchWalkTimeout = 5 * time.Second
)

// Snapshot serializes every kernel's metrics.
func (c *Collector) Snapshot() []KernelSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]KernelSnapshot, 0, len(c.kernels))
	for _, st := range c.kernels {
		ks := KernelSnapshot{Target: st.target, Metrics: map[string]map[string]any{}, Procs: map[int]map[string]map[string]any{}}
		for k, m := range st.metrics {
			ks.Metrics[k] = m.Value()
		}
		for pid, pm := range st.procs {
			mm := map[string]map[string]any{}
			for k, m := range pm {
				mm[k] = m.Value()
			}
			ks.Procs[pid] = mm
		}
		out = append(out, ks)
	}
	return out
}

// NodeSnapshot is the node key's content.
type NodeSnapshot struct {
	Node    map[string]map[string]any
	Devices map[string]map[string]map[string]any
}

// CollectNode reads /proc/stat, /proc/meminfo, mounted disks and the
// host's network counters.
func (c *Collector) CollectNode(interval time.Duration) error {
	now := c.Now()
	statB, err := os.ReadFile(c.FS.Root + "/proc/stat")
	if err != nil {
		return err
	}
	perCore := map[string]decimal.Decimal{}
	total := decimal.Zero
	for _, line := range strings.Split(string(statB), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		user, _ := strconv.ParseUint(f[1], 10, 64)
		sys, _ := strconv.ParseUint(f[3], 10, 64)
		ms := dec((user + sys) * 10)
		perCore[strings.TrimPrefix(f[0], "cpu")] = ms
		total = total.Add(ms)
	}
	memB, err := os.ReadFile(c.FS.Root + "/proc/meminfo")
	if err != nil {
		return err
	}
	mi := map[string]uint64{}
	for _, line := range strings.Split(string(memB), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				mi[k] = n * 1024
			}
		}
	}
	disks := diskUsage(c.FS.Root)
	var diskUsed, diskCap uint64
	for _, d := range disks {
		diskUsed += d.used
		diskCap += d.capacity
	}
	rx, tx, _ := c.FS.NetDev(0)
	c.mu.Lock()
	defer c.mu.Unlock()
	ivl := decimal.NewFromInt(interval.Milliseconds())
	get := func(m map[string]*Metric, key string, d Def, capacity *decimal.Decimal) *Metric {
		x, ok := m[key]
		if !ok {
			x = newMetric(d, capacity)
			m[key] = x
		}
		if capacity != nil {
			x.Capacity = capacity
		}
		return x
	}
	cpuDef := Def{Key: "cpu_util", Unit: "msec", Filter: []string{"avg", "max"}, Current: CurrentDiff}
	get(c.node, "cpu_util", cpuDef, &ivl).Stats.Update(total, now)
	for core, v := range perCore {
		get(c.cores, core, cpuDef, &ivl).Stats.Update(v, now)
	}
	memTotal := dec(mi["MemTotal"])
	get(c.node, "mem", DefMem, &memTotal).Stats.UpdateUint(mi["MemTotal"]-mi["MemAvailable"], now)
	dcap := dec(diskCap)
	get(c.node, "disk", DefDisk, &dcap).Stats.UpdateUint(diskUsed, now)
	get(c.node, "net_rx", DefNetRx, nil).Stats.UpdateUint(rx, now)
	get(c.node, "net_tx", DefNetTx, nil).Stats.UpdateUint(tx, now)
	if c.hostDevs == nil {
		c.hostDevs = map[string]map[string]*Metric{}
	}
	dev := func(key, id string, d Def, capacity *decimal.Decimal) *Metric {
		per := c.hostDevs[key]
		if per == nil {
			per = map[string]*Metric{}
			c.hostDevs[key] = per
		}
		return get(per, id, d, capacity)
	}
	dev("mem", "root", DefMem, &memTotal).Stats.UpdateUint(mi["MemTotal"]-mi["MemAvailable"], now)
	dev("net_rx", "node", DefNetRx, nil).Stats.UpdateUint(rx, now)
	dev("net_tx", "node", DefNetTx, nil).Stats.UpdateUint(tx, now)
	seen := map[string]bool{}
	for _, d := range disks {
		seen[d.device] = true
		capacity := dec(d.capacity)
		dev("disk", d.device, DefDisk, &capacity).Stats.UpdateUint(d.used, now)
	}
	for id := range c.hostDevs["disk"] {
		if !seen[id] {
			delete(c.hostDevs["disk"], id) // unmounted: no stale series
		}
	}
	c.nodeAt = now
	return nil
}

// NodeSnapshot serializes the node metrics.
func (c *Collector) NodeSnapshot() NodeSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	ns := NodeSnapshot{Node: map[string]map[string]any{}, Devices: map[string]map[string]map[string]any{"cpu_util": {}}}
	for k, m := range c.node {
		ns.Node[k] = m.Value()
	}
	for core, m := range c.cores {
		ns.Devices["cpu_util"][core] = m.Value()
	}
	for key, per := range c.hostDevs {
		d := map[string]map[string]any{}
		for id, m := range per {
			d[id] = m.Value()
		}
		ns.Devices[key] = d
	}
	for key, per := range c.devs {
		d := map[string]map[string]any{}
		for id, m := range per {
			d[id] = m.Value()
		}
		ns.Devices[key] = d
	}
	return ns
}

var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "tmpfs": true, "devtmpfs": true, "devpts": true, "cgroup": true, "cgroup2": true,
	"overlay": true, "fuse.fuse-overlayfs": true, "mqueue": true, "debugfs": true, "tracefs": true, "securityfs": true,
	"pstore": true, "bpf": true, "hugetlbfs": true, "autofs": true, "binfmt_misc": true, "configfs": true, "fusectl": true,
	"nsfs": true, "squashfs": true, "ramfs": true, "rpc_pipefs": true, "nfsd": true,
	// pruned by upstream too (pruned_disk_types)
	"vfat": true, "iso9660": true, "lxcfs": true, "fuse.lxcfs": true,
}

// diskStat is one block device's filesystem usage.
type diskStat struct {
	device         string
	used, capacity uint64
}

// diskUsage lists used and total bytes of real, distinct block-device
// filesystems (pseudo filesystems and Docker's own storage excluded), each
// under its device path as upstream's per-device disk metric names it.
// Used is blocks minus the blocks available to unprivileged users, as
// upstream computes it (reserved blocks count as used).
func diskUsage(root string) []diskStat {
	b, err := os.ReadFile(root + "/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []diskStat
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || pseudoFS[f[2]] || !strings.HasPrefix(f[0], "/dev/") || strings.HasPrefix(f[1], "/var/lib/docker") || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		var st syscall.Statfs_t
		if syscall.Statfs(f[1], &st) != nil {
			continue
		}
		out = append(out, diskStat{device: f[0], used: (st.Blocks - st.Bavail) * uint64(st.Frsize), capacity: st.Blocks * uint64(st.Frsize)})
	}
	return out
}

func (c *Collector) readKernelDocker(st *kernelState, t Target, now time.Time) (error, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Deadline+5*time.Second)
	defer cancel()
	u, err := c.Docker(ctx, t.ContainerID)
	if err != nil {
		return err, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st.updateCounters(now, u.CPUUsec, u.MemUsage, u.MemLimit, u.IORead, u.IOWrite)
	st.updateNet(now, u.NetRx, u.NetTx)
	return nil, false
}
