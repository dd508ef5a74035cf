package zmq_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// rssKiB reads VmRSS of a host pid.
func rssKiB(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

// descendants lists pid's descendant processes (host pids) with names.
func descendants(pid int) map[int]string {
	out := map[int]string{}
	var walk func(int)
	walk = func(p int) {
		// Children hang off the thread that forked them: read every task.
		var b []byte
		tasks, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p), "task"))
		for _, t := range tasks {
			cb, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "task", t.Name(), "children"))
			b = append(b, ' ')
			b = append(b, cb...)
		}
		for _, f := range strings.Fields(string(b)) {
			c, _ := strconv.Atoi(f)
			comm, _ := os.ReadFile(filepath.Join("/proc", f, "comm"))
			out[c] = strings.TrimSpace(string(comm))
			walk(c)
		}
	}
	walk(pid)
	return out
}

// BenchmarkExecuteQuery runs a trivial query ("1") in a python kernel
// (the demo image from the host's python3.11) through Callosum RPC,
// execute to result, and reports the median and p99; it also reports the
// resident memory of the kernel runner, idle and with the python helper.
func BenchmarkExecuteQuery(b *testing.B) {
	addr, _, _ := startAgent(b, nil)
	img := testutil.PythonImage(b)
	be := testutil.RequireDocker(b)
	c, err := client.Dial(addr, 10*time.Second, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	sid, kid, args := createArgs(img)
	if _, err := c.Call(ctx, "create_kernels", args, nil); err != nil {
		b.Fatal(err)
	}
	defer func() { _, _ = c.Call(ctx, "destroy_kernel", []any{kid, sid, "user-requested", false}, nil) }()
	list, _ := be.List(ctx, map[string]string{"ai.backend.kernel-id": kid})
	if len(list) != 1 {
		b.Fatal("no kernel container")
	}
	ins, _ := be.Inspect(ctx, list[0].ID)
	runnerRSS := func() (runner, helper int) {
		for pid, name := range descendants(ins.Pid) {
			switch {
			case name == "bai-krunner":
				runner += rssKiB(pid)
			case strings.HasPrefix(name, "python"):
				helper += rssKiB(pid)
			}
		}
		return
	}
	idle, _ := runnerRSS()
	exec := func() time.Duration {
		t0 := time.Now()
		v, err := c.Call(ctx, "execute", []any{sid, kid, 3, "", "query", "1", map[string]any{}, 30.0}, nil)
		d := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		m := v.(msgpack.Map)
		if st, _ := m.Get("status"); st != "finished" {
			b.Fatalf("execute: %v", m)
		}
		return d
	}
	exec() // starts the python helper
	b.ResetTimer()
	lat := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		lat = append(lat, exec())
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	runner, helper := runnerRSS()
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(idle)/1024, "runner-idle-MiB")
	b.ReportMetric(float64(runner)/1024, "runner-busy-MiB")
	b.ReportMetric(float64(helper)/1024, "python-helper-MiB")
}
