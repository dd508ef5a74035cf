package monitor_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/cgroup"
	"github.com/bai-agent/bai-agent/internal/metrics"
	"github.com/bai-agent/bai-agent/internal/monitor"
	"github.com/bai-agent/bai-agent/internal/stats"
)

// fakeKernelHost is a cgroup v1 tree with one container (init pid 100)
// whose cgroup holds the given pids.
func fakeKernelHost(t *testing.T) (root string, setProcs func(pids ...int)) {
	t.Helper()
	root = t.TempDir()
	cg := filepath.Join(root, "sys/fs/cgroup")
	w := func(p, c string) {
		full := filepath.Join(root, p)
		_ = os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Error(err)
		}
	}
	w("proc/self/mountinfo", "1 0 0:1 / "+cg+"/cpuacct rw - cgroup cgroup rw,cpuacct\n2 0 0:2 / "+cg+"/memory rw - cgroup cgroup rw,memory\n3 0 0:3 / "+cg+"/blkio rw - cgroup cgroup rw,blkio\n")
	w("proc/100/cgroup", "3:blkio:/docker/c1\n2:memory:/docker/c1\n1:cpuacct:/docker/c1\n")
	w("sys/fs/cgroup/cpuacct/docker/c1/cpuacct.usage", "1000000000\n")
	w("sys/fs/cgroup/memory/docker/c1/memory.usage_in_bytes", "1048576\n")
	w("sys/fs/cgroup/memory/docker/c1/memory.limit_in_bytes", "2097152\n")
	w("sys/fs/cgroup/blkio/docker/c1/blkio.throttle.io_service_bytes", "Total 0\n")
	w("proc/100/net/dev", "x\ny\n eth0: 100 0 0 0 0 0 0 0 200 0 0 0 0 0 0 0\n")
	var mu sync.Mutex
	setProcs = func(pids ...int) {
		mu.Lock()
		defer mu.Unlock()
		var b strings.Builder
		for _, pid := range pids {
			fmt.Fprintf(&b, "%d\n", pid)
			// comm, state, then fields 4..: utime=50, stime=25, rss=10 pages.
			w(fmt.Sprintf("proc/%d/stat", pid), fmt.Sprintf("%d (sh) S 1 1 1 0 -1 0 0 0 0 0 50 25 0 0 20 0 1 0 0 4096 10 0\n", pid))
			w(fmt.Sprintf("proc/%d/io", pid), "read_bytes: 4096\nwrite_bytes: 8192\n")
		}
		w("sys/fs/cgroup/cpuacct/docker/c1/cgroup.procs", b.String())
	}
	setProcs(100, 101)
	return root, setProcs
}

// The process scope is its own stat task (stat_scope="process"), its
// series carry upstream's labels and value types, a process that exits
// loses its series and a kernel that goes loses all of them.
func TestProcessScopeSeries(t *testing.T) {
	root, setProcs := fakeKernelHost(t)
	am := metrics.NewAgent()
	col := stats.NewCollector()
	col.FS = cgroup.FS{Root: root}
	var mu sync.Mutex
	targets := []stats.Target{{KernelID: "k1", SessionID: "s1", UserID: "u1", ProjectID: "p1", ContainerID: "c1", Pid: 100}}
	mon := monitor.Start(monitor.Options{
		AgentID: "i-p", Collector: col, Metrics: am, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Targets: func() []stats.Target {
			mu.Lock()
			defer mu.Unlock()
			return append([]stats.Target{}, targets...)
		},
		NodeInterval: time.Hour, ContainerInterval: 20 * time.Millisecond, ProcessInterval: 20 * time.Millisecond,
		ContainerEnabled: true, ProcessEnabled: true,
	})
	defer mon.Close()
	body := func() string {
		var b strings.Builder
		if err := am.Reg.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	waitFor := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok(body()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s; /metrics:\n%s", what, body())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	lbl := func(metric, pid, vt string) string {
		return fmt.Sprintf(`backendai_process_utilization{process_metric_name=%q,agent_id="i-p",kernel_id="k1",session_id="s1",user_id="u1",project_id="p1",container_id="c1",pid=%q,value_type=%q}`, metric, pid, vt)
	}
	waitFor("process series of pids 100 and 101", func(s string) bool {
		return strings.Contains(s, lbl("mem", "101", "current")+" 40960") && strings.Contains(s, lbl("cpu_used", "100", "current")+" 750") &&
			strings.Contains(s, lbl("cpu_util", "101", "capacity")+" 1000") && strings.Contains(s, lbl("io_write", "100", "current")+" 8192") &&
			strings.Contains(s, `backendai_stat_task_success_count_total{agent_id="i-p",stat_scope="process"}`)
	})
	if s := body(); strings.Contains(s, lbl("mem", "101", "capacity")) || strings.Contains(s, lbl("mem", "101", "pct")) {
		t.Fatalf("process mem has a capacity or pct series (upstream: current, and capacity only where the measure has one):\n%s", s)
	}
	setProcs(100)
	waitFor("the exited process's series removed", func(s string) bool {
		return !strings.Contains(s, `pid="101"`) && strings.Contains(s, lbl("mem", "100", "current"))
	})
	mu.Lock()
	targets = nil
	mu.Unlock()
	waitFor("every series of the gone kernel removed", func(s string) bool { return !strings.Contains(s, `kernel_id="k1"`) })
	// No process cycle brings them back: watched over ten cycles (20 ms
	// each), a gauge re-created by any of them would show.
	for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if s := body(); strings.Contains(s, `kernel_id="k1"`) {
			t.Fatalf("series of the gone kernel came back:\n%s", s)
		}
	}
}

// A kernel whose processes are not host processes (gVisor): its
// container figures are kept, the cgroup's processes' I/O included (the
// gofer does the kernel's file I/O), but no per-process figures are
// made or published: they would describe the sandbox's processes.
func TestProcessScopeUnavailableUnderGVisor_Fake(t *testing.T) {
	root, _ := fakeKernelHost(t)
	am := metrics.NewAgent()
	col := stats.NewCollector()
	col.FS = cgroup.FS{Root: root}
	targets := []stats.Target{{KernelID: "k1", SessionID: "s1", UserID: "u1", ProjectID: "p1", ContainerID: "c1", Pid: 100, NoHostProcesses: true}}
	mon := monitor.Start(monitor.Options{
		AgentID: "i-g", Collector: col, Metrics: am, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Targets:      func() []stats.Target { return targets },
		NodeInterval: time.Hour, ContainerInterval: 20 * time.Millisecond, ProcessInterval: 20 * time.Millisecond,
		ContainerEnabled: true, ProcessEnabled: true,
	})
	defer mon.Close()
	body := func() string {
		var b strings.Builder
		if err := am.Reg.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	// Two successful process cycles after the container figures exist.
	done := `backendai_stat_task_success_count_total{agent_id="i-g",stat_scope="process"} `
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := body()
		n := 0
		if i := strings.Index(s, done); i >= 0 {
			_, _ = fmt.Sscan(s[i+len(done):], &n)
		}
		if n >= 3 && strings.Contains(s, `container_metric_name="cpu_used"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no container figures and process cycles:\n%s", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := body(); strings.Contains(s, "backendai_process_utilization{") {
		t.Fatalf("process series for a gVisor kernel:\n%s", s)
	}
	snaps := col.Snapshot()
	if len(snaps) != 1 || len(snaps[0].Procs) != 0 {
		t.Fatalf("per-process figures kept: %+v", snaps)
	}
	m := snaps[0].Metrics
	// cpuacct.usage 1 s; blkio accounts nothing, so I/O is the two
	// processes' 8192 written bytes each.
	if m["cpu_used"]["current"] != "1000" || m["io_write"]["current"] != "16384" || m["mem"]["current"] != "1048576" {
		t.Fatalf("container figures: cpu_used %v io_write %v mem %v", m["cpu_used"], m["io_write"], m["mem"])
	}
}
