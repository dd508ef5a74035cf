package monitor_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/moby/moby/client"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/metrics"
	"github.com/bai-agent/bai-agent/internal/monitor"
	"github.com/bai-agent/bai-agent/internal/stats"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// start100 runs n idle test kernels straight through Docker (the agent
// cannot host 100 one-core kernels on a 2-core node) and returns them as
// stat targets.
func startN(b testing.TB, n int, env ...string) []stats.Target {
	be := testutil.RequireDocker(b)
	img := testutil.TestImage(b)
	ctx := context.Background()
	owner := "bench-" + uuid.NewString()[:8]
	b.Cleanup(func() {
		list, _ := be.List(context.Background(), map[string]string{"bai.bench": owner})
		var wg sync.WaitGroup
		for _, c := range list {
			wg.Add(1)
			go func(id string) { defer wg.Done(); _ = be.Remove(context.Background(), id) }(c.ID)
		}
		wg.Wait()
	})
	targets := make([]stats.Target, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var mu sync.Mutex
	var firstErr error
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			id, err := be.Create(ctx, &backend.ContainerSpec{Name: fmt.Sprintf("%s-%d", owner, i), Image: img, Labels: map[string]string{"bai.bench": owner}, Memory: 512 << 20, Init: true, Env: env})
			if err == nil {
				err = be.Start(ctx, id)
			}
			var ins *backend.Container
			if err == nil {
				ins, err = be.Inspect(ctx, id)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			targets[i] = stats.Target{KernelID: uuid.NewString(), SessionID: uuid.NewString(), ContainerID: id, Pid: ins.Pid}
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return targets
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// BenchmarkCollect100 compares one full container collection cycle for
// 100 running containers (cgroup files and /proc, in parallel, each under
// its deadline) with the Docker stats API for the same 100 containers
// (GET /containers/{id}/stats?stream=0, 8 in flight as an async client
// would), in the same run.
func BenchmarkCollect100(b *testing.B) {
	targets := startN(b, 100)
	be := testutil.RequireDocker(b)
	cli := be.Client()
	c := stats.NewCollector()
	ctx := context.Background()
	c.CollectContainers(ctx, targets) // warm the path cache
	var ours, docker, cpus []time.Duration
	cpuNow := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for i := 0; i < b.N; i++ {
		c0 := cpuNow()
		t0 := time.Now()
		res := c.CollectContainers(ctx, targets)
		ours = append(ours, time.Since(t0))
		cpus = append(cpus, cpuNow()-c0)
		if res.Collected != len(targets) {
			b.Fatalf("collected %d of %d (%+v)", res.Collected, len(targets), res)
		}
		if os.Getenv("BAI_BENCH_SKIP_DOCKERAPI") == "1" {
			continue // profiling our side alone
		}
		t0 = time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, t := range targets {
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				r, err := cli.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: false})
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}(t.ContainerID)
		}
		wg.Wait()
		docker = append(docker, time.Since(t0))
	}
	if len(docker) == 0 {
		docker = []time.Duration{0}
	}
	mo, md := median(ours), median(docker)
	b.ReportMetric(float64(median(cpus).Microseconds())/float64(len(targets)), "cpu-us/container")
	b.ReportMetric(float64(mo.Microseconds())/1000, "sysfs-ms/cycle")
	b.ReportMetric(float64(md.Microseconds())/1000, "dockerapi-ms/cycle")
	b.ReportMetric(float64(md)/float64(mo), "x-cheaper")
}

// BenchmarkMetrics100 renders /metrics after a monitor cycle over 100
// running containers (container and process series) and reports the body
// size and the render time.
func BenchmarkMetrics100(b *testing.B) {
	targets := startN(b, 100)
	am := metrics.NewAgent()
	mon := monitor.Start(monitor.Options{
		AgentID: "i-bench", Collector: stats.NewCollector(), Metrics: am, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Targets:      func() []stats.Target { return targets },
		NodeInterval: time.Second, ContainerInterval: 500 * time.Millisecond, ProcessInterval: 500 * time.Millisecond,
		NodeEnabled: true, ContainerEnabled: true, ProcessEnabled: true,
	})
	defer mon.Close()
	time.Sleep(2 * time.Second)
	var buf bytes.Buffer
	var lat []time.Duration
	for i := 0; i < b.N; i++ {
		buf.Reset()
		t0 := time.Now()
		if err := am.Reg.WriteText(&buf); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.ReportMetric(float64(buf.Len())/1024, "KiB-body")
	b.ReportMetric(float64(median(lat).Microseconds())/1000, "ms/render")
	b.ReportMetric(float64(am.Container.Len()), "container-series")
}

// A paused (frozen) container delays nobody: the cycle over it and two
// running ones stays fast, and the running ones are measured.
func TestPausedContainerDoesNotDelayOthers_Integration(t *testing.T) {
	targets := startN(t, 3)
	be := testutil.RequireDocker(t)
	ctx := context.Background()
	if _, err := be.Client().ContainerPause(ctx, targets[1].ContainerID, client.ContainerPauseOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = be.Client().ContainerUnpause(ctx, targets[1].ContainerID, client.ContainerUnpauseOptions{})
	}()
	c := stats.NewCollector()
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		res := c.CollectContainers(ctx, targets)
		el := time.Since(t0)
		if el > time.Second || res.Collected < 2 {
			t.Fatalf("cycle %d with a paused container: %s, %+v", i, el, res)
		}
		t.Logf("cycle %d: %s, %+v", i, el, res)
	}
	snap := c.Snapshot()
	measured := 0
	for _, ks := range snap {
		if ks.Target.ContainerID != targets[1].ContainerID && ks.Metrics["mem"] != nil {
			measured++
		}
	}
	if measured != 2 {
		t.Fatalf("running containers measured: %d", measured)
	}
}

// stats-type = "docker": the same metrics through the Docker stats API.
func TestDockerStatsSource_Integration(t *testing.T) {
	targets := startN(t, 1)
	be := testutil.RequireDocker(t)
	c := stats.NewCollector()
	c.Deadline = 5 * time.Second
	c.Docker = func(ctx context.Context, id string) (stats.DockerUsage, error) {
		u, err := be.Stats(ctx, id)
		return stats.DockerUsage(u), err
	}
	res := c.CollectContainers(context.Background(), targets)
	if res.Collected != 1 {
		t.Fatalf("%+v", res)
	}
	snap := c.Snapshot()
	if len(snap) != 1 || snap[0].Metrics["mem"]["capacity"] != fmt.Sprint(512<<20) || snap[0].Metrics["cpu_used"] == nil {
		t.Fatalf("docker-sourced metrics: %v", snap)
	}
}

// A kernel with thousands of processes is slow to measure (its process
// metrics read /proc per PID); it must not hold up a normal kernel.
func TestProcessHeavyContainerDelaysOnlyItself_Integration(t *testing.T) {
	heavy := startN(t, 1, "TEST_MODE=procs", "PROCS=3000")
	normal := startN(t, 1)
	be := testutil.RequireDocker(t)
	ctx := context.Background()
	testutil.Eventually(t, 60*time.Second, "3000 processes started", func() bool {
		b, err := be.Logs(ctx, heavy[0].ContainerID, false, 0)
		return err == nil && bytes.Contains(b, []byte("procs started"))
	})
	c := stats.NewCollector()
	targets := append(heavy, normal...)
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		res := c.CollectContainers(ctx, targets)
		el := time.Since(t0)
		t.Logf("cycle %d: %s %+v", i, el, res)
		if el > c.Deadline+500*time.Millisecond {
			t.Fatalf("cycle took %s", el)
		}
	}
	for _, ks := range c.Snapshot() {
		if ks.Target.ContainerID == normal[0].ContainerID && ks.Metrics["mem"] == nil {
			t.Fatal("the normal kernel was not measured")
		}
		if ks.Target.ContainerID == heavy[0].ContainerID {
			t.Logf("heavy kernel: %d processes measured", len(ks.Procs))
		}
	}
}
