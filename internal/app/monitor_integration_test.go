package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/metrics"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

const fastStats = `[agent.utilization-metric.node]
interval = 1
[agent.utilization-metric.container]
interval = 1
[agent.utilization-metric.process]
interval = 1`

func (s *stack) internalAddr() string {
	s.t.Helper()
	var addr string
	re := regexp.MustCompile(`internal_http=(\S+)`)
	testutil.Eventually(s.t, 10*time.Second, "internal http address in the log", func() bool {
		b, _ := os.ReadFile(s.logf.Name())
		if m := re.FindSubmatch(b); m != nil {
			addr = string(m[1])
			return true
		}
		return false
	})
	return addr
}

func (s *stack) createWith(img string, args ...string) string {
	s.t.Helper()
	var res []map[string]any
	out := s.ctl(append([]string{"--json", "create", "--image", img}, args...)...)
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		s.t.Fatalf("create: %v %s", err, out)
	}
	return res[0]["id"].(string)
}

func kernelStats(t *testing.T, rdb *redis.Client, kid string) map[string]map[string]string {
	t.Helper()
	b, err := rdb.Get(context.Background(), kid).Bytes()
	if err != nil {
		return nil
	}
	v, err := wire.Decode(b)
	if err != nil {
		t.Fatalf("stat key of %s is not msgpack: %v", kid, err)
	}
	out := map[string]map[string]string{}
	for _, kv := range v.(msgpack.Map) {
		mv := map[string]string{}
		for _, x := range kv.Val.(msgpack.Map) {
			mv[x.Key.(string)] = fmt.Sprint(x.Val)
		}
		out[kv.Key.(string)] = mv
	}
	return out
}

func num(t *testing.T, s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return f
}

// Known loads, measured through the Redis stat keys and /metrics.
func TestMonitoringKnownLoads_Integration(t *testing.T) {
	img := testutil.TestImage(t)
	s := newStack(t, "")
	cfg, _ := os.ReadFile(s.cfg)
	// testkernel's loads are the image's own command: no kernel runner.
	cfg = []byte(strings.Replace(string(cfg), "[container]\n", "[container]\nkernel-runner = false\n", 1))
	if err := os.WriteFile(s.cfg, append(cfg, []byte("\n"+fastStats+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	// A sink on the host for the container's traffic.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	s.env = []string{"BACKEND_CPU_OVERCOMMIT_FACTOR=4"}
	s.start()
	spin := s.createWith(img, "--cpu", "1", "--mem", "128m", "--env", "TEST_MODE=spin")
	hog := s.createWith(img, "--cpu", "1", "--mem", "256m", "--env", "TEST_MODE=memhog", "--env", "MEMHOG_MB=96")
	writer := s.createWith(img, "--cpu", "1", "--mem", "128m", "--env", "TEST_MODE=write", "--env", "WRITE_MB=24")
	sender := s.createWith(img, "--cpu", "1", "--mem", "128m", "--env", "TEST_MODE=netsend", "--env", "NET_BYTES=8388608", "--env", fmt.Sprintf("NET_PORT=%d", port))
	rdb := redis.NewClient(&redis.Options{Addr: s.redis.Addr, DB: 0})
	defer rdb.Close()
	check := func(kid, metric, field string, lo, hi float64) {
		t.Helper()
		var last string
		ok := false
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			st := kernelStats(t, rdb, kid)
			if mv, found := st[metric]; found {
				last = mv[field]
				if v := num(t, last); v >= lo && v <= hi {
					ok = true
					break
				}
			}
			time.Sleep(300 * time.Millisecond)
		}
		if !ok {
			t.Errorf("%s %s.%s = %s, want within [%g, %g]", kid[:8], metric, field, last, lo, hi)
		}
	}
	// A busy core's share depends on what else this machine runs, so
	// cpu_util is only bounded (busy, at most one core); cpu_used, the
	// cumulative CPU time, is held against the container's own cgroup
	// read around a fresh sample: exact whatever the load.
	check(spin, "cpu_util", "pct", 1, 130)
	checkCPUUsed(t, rdb, spin)
	check(hog, "mem", "current", 96<<20, (96+48)<<20)
	check(writer, "io_write", "current", 24<<20, 26<<20)
	// net_tx's current value is a rate; stats.max is the bytes sent.
	check(sender, "net_tx", "stats.max", 8<<20, (8<<20)+(1<<20))
	st := kernelStats(t, rdb, spin)
	for _, k := range []string{"cpu_util", "cpu_used", "mem", "io_read", "io_write", "net_rx", "net_tx", "io_scratch_size"} {
		if _, ok := st[k]; !ok {
			t.Errorf("stat key lacks %s: %v", k, st)
		}
	}
	if st["mem"]["capacity"] != strconv.Itoa(128<<20) || st["cpu_util"]["stats.version"] != "2" {
		t.Errorf("mem/cpu_util serialization: %v %v", st["mem"], st["cpu_util"])
	}
	node, _ := rdb.Get(context.Background(), s.id).Bytes()
	nv, err := wire.Decode(node)
	if err != nil {
		t.Fatalf("node key: %v", err)
	}
	if n, ok := nv.(msgpack.Map).Get("node"); !ok || len(n.(msgpack.Map)) < 4 {
		t.Fatalf("node metrics: %v", nv)
	}
	// Upstream's per-device node metrics: mem/root, disk/<device>,
	// net_rx and net_tx/node.
	devs, _ := nv.(msgpack.Map).Get("devices")
	for _, want := range [][2]string{{"mem", "root"}, {"net_rx", "node"}, {"net_tx", "node"}, {"disk", ""}} {
		per, ok := devs.(msgpack.Map).Get(want[0])
		if !ok || len(per.(msgpack.Map)) == 0 {
			t.Errorf("node key lacks devices.%s: %v", want[0], devs)
			continue
		}
		if want[1] != "" {
			if _, ok := per.(msgpack.Map).Get(want[1]); !ok {
				t.Errorf("node key lacks devices.%s.%s: %v", want[0], want[1], per)
			}
		}
	}
	// /metrics: the seed's names, our kernels' series, promtool clean.
	body := fetch(t, "http://"+s.internalAddr()+"/metrics")
	for _, name := range []string{"backendai_rpc_requests_total", "backendai_rpc_request_duration_seconds_bucket", "backendai_container_utilization",
		"backendai_device_utilization", "backendai_process_utilization", "backendai_stat_task_trigger_count_total", "backendai_agent_heartbeat_total",
		"backendai_agent_mem_usage", "backendai_kernel_count", "backendai_sync_container_lifecycle_trigger_count_total"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if !strings.Contains(body, `kernel_id="`+spin+`"`) {
		t.Fatal("/metrics has no series of the running kernel")
	}
	promtoolCheck(t, body)
	if !strings.Contains(body, `stat_scope="process"`) || !strings.Contains(body, `device_metric_name="mem",agent_id="`+s.id+`",device_id="root"`) {
		t.Errorf("/metrics lacks the process stat task or the mem/root device series")
	}
	if strings.Contains(body, `backendai_stat_task_failure_count_total{agent_id="`+s.id+`",stat_scope="process"`) {
		t.Errorf("process stat cycles failed:\n%s", body)
	}
	// Every metric the Grafana dashboard queries is one this agent exports.
	dash, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	used, err := metrics.DashboardMetrics(dash)
	if err != nil {
		t.Fatal(err)
	}
	have := metrics.ExposedNames(body)
	for _, m := range used {
		if !have[m] {
			t.Errorf("the dashboard queries %s, which the running agent does not export", m)
		}
	}
	for _, h := range []string{"/health", "/livez", "/readyz"} {
		if resp, err := http.Get("http://" + s.internalAddr() + h); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", h, err, resp)
		}
	}
	// Series of a destroyed kernel go away.
	s.ctl("destroy", spin)
	testutil.Eventually(t, 15*time.Second, "series of the destroyed kernel removed", func() bool {
		return !strings.Contains(fetch(t, "http://"+s.internalAddr()+"/metrics"), `kernel_id="`+spin+`"`)
	})
	s.ctl("destroy", hog, writer, sender)
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// promtoolCheck runs `promtool check metrics` and allows only the
// findings upstream's fixed names cause.
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		testutil.Missing(t, "promtool (apt-get install prometheus)")
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, _ := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		// Upstream's fixed names: gauges ending in _count, durations in _sec.
		if strings.HasPrefix(line, "backendai_kernel_count ") || strings.HasPrefix(line, "backendai_async_task_count ") || strings.HasPrefix(line, "backendai_bgtask_count ") || strings.Contains(line, "_sec ") || strings.HasPrefix(line, "backendai_stat_task_duration_sec") {
			continue
		}
		t.Errorf("promtool: %s", line)
	}
}

// BenchmarkAgentWithIdleKernels runs the agent (etcd + Redis, stats every
// 5 s) with as many idle one-core kernels as a 2-core node can hold with
// the maximum overcommit factor (10 per core, so 20), then reports its
// resident memory and CPU use over 20 s.
func BenchmarkAgentWithIdleKernels(b *testing.B) {
	img := testutil.TestImage(b)
	s := newStack(b, "")
	cfg, _ := os.ReadFile(s.cfg)
	_ = os.WriteFile(s.cfg, append(cfg, []byte("\n[agent.utilization-metric.node]\ninterval = 5\n[agent.utilization-metric.container]\ninterval = 5\n[agent.utilization-metric.process]\ninterval = 5\n")...), 0o644)
	s.env = []string{"BACKEND_CPU_OVERCOMMIT_FACTOR=10"}
	s.start()
	pid := s.cmd.Process.Pid
	cpu := func() float64 {
		b1, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		f := strings.Fields(string(b1[strings.LastIndexByte(string(b1), ')')+1:]))
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		return (ut + st) * 10 // ms
	}
	rss := func() float64 {
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
		return 0
	}
	// Measure at 0, 5, 10 and the most kernels the node holds (20 on 2
	// cores with overcommit 10): RSS, and CPU over 15 s, so that the slope
	// per kernel predicts a bigger node.
	var xs, mems, cpus []float64
	n := 0
	full := false
	for _, stage := range []int{0, 5, 10, 40} {
		for n < stage {
			out, err := exec.Command(s.bin, "ctl", "--addr", s.rpc, "create", "--image", img, "--cpu", "1", "--mem", "32m", "--shm", "8m").CombinedOutput()
			if err != nil {
				if strings.Contains(string(out), "InsufficientResource") {
					full = true
					break
				}
				b.Fatalf("create: %v %s", err, out)
			}
			n++
		}
		time.Sleep(5 * time.Second)
		c0, t0 := cpu(), time.Now()
		time.Sleep(15 * time.Second)
		c1, t1 := cpu(), time.Now()
		xs = append(xs, float64(n))
		mems = append(mems, rss())
		cpus = append(cpus, (c1-c0)/float64(t1.Sub(t0).Milliseconds())*100)
		b.Logf("%2d kernels: %.1f MiB RSS, %.2f %% of a core", n, mems[len(mems)-1], cpus[len(cpus)-1])
		if full {
			break
		}
	}
	slope := func(ys []float64) float64 {
		var sx, sy, sxx, sxy float64
		for i := range xs {
			sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
		}
		k := float64(len(xs))
		return (k*sxy - sx*sy) / (k*sxx - sx*sx)
	}
	for i := 0; i < b.N; i++ {
	}
	b.ReportMetric(float64(n), "kernels")
	b.ReportMetric(mems[len(mems)-1], "MiB-rss")
	b.ReportMetric(cpus[len(cpus)-1], "%core")
	b.ReportMetric(slope(mems), "MiB/kernel")
	b.ReportMetric(slope(cpus), "%core/kernel")
}

// checkCPUUsed brackets a kernel's cpu_used (ms) between two reads of its
// container's CPU time from the cgroup: one before the agent takes a new
// sample, one after that sample reached Redis.
func checkCPUUsed(t *testing.T, rdb *redis.Client, kid string) {
	t.Helper()
	be := testutil.RequireDocker(t)
	list, err := be.List(context.Background(), map[string]string{"ai.backend.kernel-id": kid})
	if err != nil || len(list) != 1 {
		t.Fatalf("container of %s: %v %+v", kid, err, list)
	}
	usage := func() float64 { // ms
		cid := list[0].ID
		if b, err := os.ReadFile("/sys/fs/cgroup/cpuacct/docker/" + cid + "/cpuacct.usage"); err == nil {
			return num(t, strings.TrimSpace(string(b))) / 1e6
		}
		b, err := os.ReadFile("/sys/fs/cgroup/docker/" + cid + "/cpu.stat")
		if err != nil {
			testutil.Missing(t, "cgroup CPU accounting file for %s (cgroupfs driver expected): %v", cid, err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "usage_usec" {
				return num(t, f[1]) / 1e3
			}
		}
		t.Fatalf("no usage_usec in %s", b)
		return 0
	}
	used := func() string { return kernelStats(t, rdb, kid)["cpu_used"]["current"] }
	// The second sample published after lo was read was collected after
	// it: the first may have been collected before lo and published after.
	lo := usage()
	after := used()
	for i := 0; i < 2; i++ {
		prev := after
		testutil.Eventually(t, testutil.Slow(20*time.Second), "a new cpu_used sample", func() bool {
			after = used()
			return after != "" && after != prev
		})
	}
	hi := usage()
	// The agent reports whole or decimal milliseconds: allow 1 ms of
	// rounding on each side.
	if v := num(t, after); v < lo-1 || v > hi+1 {
		t.Errorf("cpu_used = %s ms, the cgroup read %.1f ms before the sample and %.1f ms after", after, lo, hi)
	}
	if hi-lo <= 0 {
		t.Errorf("the spinning kernel used no CPU between two samples (%.1f, %.1f ms)", lo, hi)
	}
}
