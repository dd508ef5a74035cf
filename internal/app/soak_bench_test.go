package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// BenchmarkSoak runs the agent binary with etcd and Redis under a churn of
// creates, executes and destroys (up to 4 kernels at once) with
// statistics every 5 s and heartbeats every second, for BAI_SOAK (a Go
// duration, default 5m; the hardening issue asks for 1h), and reports the
// agent's RSS, goroutines and open files and Redis' memory after a
// warm-up and at the end: a leak shows as growth.
//
//	BAI_SOAK=1h go test -run '^$' -bench Soak -benchtime 1x -timeout 2h ./internal/app/
func BenchmarkSoak(b *testing.B) {
	d := 5 * time.Minute
	if v := os.Getenv("BAI_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			b.Fatalf("BAI_SOAK=%q: %v", v, err)
		}
	}
	img := testutil.TestImage(b)
	// Its own port range: it may run beside the test suite.
	s := newStackWith(b, "", stackOpts{portRange: [2]int{28300, 28499}})
	cfg, _ := os.ReadFile(s.cfg)
	_ = os.WriteFile(s.cfg, append(cfg, []byte("\n[agent.utilization-metric.node]\ninterval = 5\n[agent.utilization-metric.container]\ninterval = 5\n[agent.utilization-metric.process]\ninterval = 5\n")...), 0o644)
	s.env = []string{"BACKEND_CPU_OVERCOMMIT_FACTOR=2"}
	s.start()
	metricsURL := "http://" + s.internalAddr() + "/metrics"
	gauge := func(name string) float64 {
		resp, err := http.Get(metricsURL)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`(?m)^` + name + `\{[^}]*\} (\S+)$`).FindSubmatch(body)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	redisMem := func() float64 {
		info, _ := s.rdb.Info(context.Background(), "memory").Result()
		m := regexp.MustCompile(`used_memory:(\d+)`).FindStringSubmatch(info)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	type sample struct{ rss, goroutines, files, redis float64 }
	take := func() sample {
		return sample{gauge("backendai_agent_mem_usage") / (1 << 20), gauge("backendai_agent_goroutines"), gauge("backendai_agent_open_files"), redisMem() / (1 << 20)}
	}
	var live []string
	ops := 0
	churn := func() {
		if len(live) >= 4 {
			s.ctl("destroy", live[0])
			live = live[1:]
		}
		kid := s.createKernel(img)
		live = append(live, kid)
		out := s.ctl("exec", kid, "--mode", "batch", fmt.Sprintf("echo soak-%d", ops))
		if !strings.Contains(out, fmt.Sprintf("soak-%d", ops)) {
			b.Fatalf("exec: %s", out)
		}
		ops++
	}
	// Both samples with no kernel left, after a statistics cycle.
	drain := func() sample {
		for _, kid := range live {
			s.ctl("destroy", kid)
		}
		live = nil
		time.Sleep(6 * time.Second)
		return take()
	}
	warm := time.Now().Add(time.Minute)
	for time.Now().Before(warm) {
		churn()
	}
	start := drain()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		churn()
	}
	last := drain()
	b.Logf("after warm-up: RSS %.1f MiB, %v goroutines, %v open files, Redis %.2f MiB", start.rss, start.goroutines, start.files, start.redis)
	b.Logf("after %s and %d create/exec/destroy rounds: RSS %.1f MiB, %v goroutines, %v open files, Redis %.2f MiB", d, ops, last.rss, last.goroutines, last.files, last.redis)
	for i := 0; i < b.N; i++ {
	}
	b.ReportMetric(float64(ops), "rounds")
	b.ReportMetric(last.rss-start.rss, "MiB-rss-growth")
	b.ReportMetric(last.goroutines-start.goroutines, "goroutine-growth")
	b.ReportMetric(last.files-start.files, "fd-growth")
	b.ReportMetric(last.redis-start.redis, "MiB-redis-growth")
}
