package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// BenchmarkMultiAgentScale runs BAI_SCALE_AGENTS agents (default 15) in one
// process ([[agents]], shared-overcommit, BACKEND_CPU_OVERCOMMIT_FACTOR=10)
// and grows the idle kernels, created through each agent's RPC with its
// agent_id, through the counts of BAI_SCALE_KERNELS (default "20,100,300").
// At each count, after BAI_SCALE_SETTLE (default 65s: two statistics
// cycles at the default 30 s) it logs the
// process's RSS, CPU, goroutines and open files, the mean container
// statistics cycle (and per container), RPC ping p99, execute p99 while
// the statistics cycles run, the longest heartbeat gap, the bytes Redis
// received per 30-s period, and the /metrics size and scrape time; at the
// end, the time to destroy all.
//
//	BAI_SCALE_KERNELS=20,100 go test -run '^$' -bench MultiAgentScale -benchtime 1x -timeout 1h ./internal/app/
func BenchmarkMultiAgentScale(b *testing.B) {
	nAgents := 15
	if v := os.Getenv("BAI_SCALE_AGENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			b.Fatalf("BAI_SCALE_AGENTS=%q: want a number >= 2", v)
		}
		nAgents = n
	}
	var steps []int
	for _, f := range strings.Split(envOr("BAI_SCALE_KERNELS", "20,100,300"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("BAI_SCALE_KERNELS: %q is not a count", f)
		}
		steps = append(steps, n)
	}
	settle, err := time.ParseDuration(envOr("BAI_SCALE_SETTLE", "65s"))
	if err != nil {
		b.Fatal(err)
	}
	img := testutil.TestImage(b)
	ags := make([]multiAgent, nAgents)
	var tail strings.Builder
	for i := range ags {
		ags[i].id = fmt.Sprintf("i-scale-%02d", i)
		fmt.Fprintf(&tail, "[[agents]]\n[agents.agent]\nid = %q\n", ags[i].id)
		if i > 0 {
			ags[i].rpc = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(b))
			fmt.Fprintf(&tail, "rpc-listen-addr = %q\n", ags[i].rpc)
		}
	}
	// Five host ports per kernel: 29410-31499 holds 300 kernels' and is
	// outside the test suite's ranges.
	// BAI_SCALE_PROFILE=DIR writes the agent's heap and CPU profiles
	// (over the settle time) at each count: heap-N.pprof, cpu-N.pprof.
	profDir := os.Getenv("BAI_SCALE_PROFILE")
	debugKeys := ""
	if profDir != "" {
		debugKeys = "pprof = true"
	}
	// The targets are at the default intervals: heartbeats every
	// 20 s (BAI_SCALE_HEARTBEAT changes it), statistics every 30 s, the
	// container sync every 10 s.
	hb, err := strconv.ParseFloat(envOr("BAI_SCALE_HEARTBEAT", "20"), 64)
	if err != nil || hb <= 0 {
		b.Fatalf("BAI_SCALE_HEARTBEAT: want seconds (%v)", err)
	}
	s := newStackWith(b, "", stackOpts{portRange: [2]int{29410, 31499}, tail: tail.String(), resource: "shared-overcommit = true",
		env: []string{"BACKEND_CPU_OVERCOMMIT_FACTOR=10"}, debug: debugKeys, heartbeat: hb, sync: 10})
	ags[0].rpc = s.rpc
	b.Cleanup(func() {
		for _, a := range ags {
			testutil.RemoveContainers(b, map[string]string{"ai.backend.owner": a.id})
		}
	})
	s.start()
	for _, a := range ags {
		testutil.Eventually(b, testutil.Slow(60*time.Second), "agent "+a.id+" answers", func() bool {
			_, err := a.call(b, 5*time.Second, a.id, "ping", "x")
			return err == nil
		})
	}
	metricsURL := "http://" + s.internalAddr() + "/metrics"
	scrape := func() (string, time.Duration) {
		t0 := time.Now()
		resp, err := http.Get(metricsURL)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(body), time.Since(t0)
	}
	// maxOf is the largest series of a gauge (the process-wide gauges are
	// repeated under each agent_id); sumOf adds a metric's series that
	// match the label filter.
	maxOf := func(body, name string) float64 {
		best := -1.0
		for _, m := range regexp.MustCompile(`(?m)^`+name+`\{[^}]*\} (\S+)$`).FindAllStringSubmatch(body, -1) {
			if v, _ := strconv.ParseFloat(m[1], 64); v > best {
				best = v
			}
		}
		return best
	}
	sumOf := func(body, name, filter string) float64 {
		total := 0.0
		for _, m := range regexp.MustCompile(`(?m)^`+name+`\{([^}]*)\} (\S+)$`).FindAllStringSubmatch(body, -1) {
			if strings.Contains(m[1], filter) {
				v, _ := strconv.ParseFloat(m[2], 64)
				total += v
			}
		}
		return total
	}
	clients := make([]*client.Client, nAgents)
	for i, a := range ags {
		c, err := client.Dial("tcp://"+a.rpc, 5*time.Second, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	pingP99 := func(n int) time.Duration {
		ds := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			t0 := time.Now()
			_, err := clients[i%nAgents].Call(ctx, "ping", []any{"p"}, map[string]any{"agent_id": ags[i%nAgents].id})
			ds = append(ds, time.Since(t0))
			cancel()
			if err != nil {
				b.Fatalf("ping %s: %v", ags[i%nAgents].id, err)
			}
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)*99/100]
	}
	// heartbeatGap polls the events stream (trimmed to ~128 entries, so
	// every second) for d and returns the longest gap between two
	// heartbeats of one agent (stream ids are Redis' clock) and their count.
	heartbeatGap := func(d time.Duration) (time.Duration, int) {
		last := map[string]int64{}
		var worst int64
		n := 0
		next := strconv.FormatInt(time.Now().UnixMilli(), 10)
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			time.Sleep(time.Second)
			msgs, err := s.rdb.XRange(context.Background(), "events", next, "+").Result()
			if err != nil && err != redis.Nil {
				b.Fatal(err)
			}
			for _, m := range msgs {
				next = "(" + m.ID
				if fmt.Sprint(m.Values["name"]) != "agent_heartbeat" {
					continue
				}
				n++
				ms, _ := strconv.ParseInt(strings.SplitN(m.ID, "-", 2)[0], 10, 64)
				src := fmt.Sprint(m.Values["source"])
				if p, ok := last[src]; ok && ms-p > worst {
					worst = ms - p
				}
				last[src] = ms
			}
		}
		return time.Duration(worst) * time.Millisecond, n
	}
	// redisIn is the bytes Redis has received (every client's commands:
	// the agents' writes, plus this benchmark's small XRANGE polls).
	redisIn := func() float64 {
		info := s.rdb.Info(context.Background(), "stats").Val()
		m := regexp.MustCompile(`total_net_input_bytes:(\d+)`).FindStringSubmatch(info)
		if m == nil {
			b.Fatalf("no total_net_input_bytes in INFO stats")
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	type kern struct {
		agent    int
		kid, sid string
	}
	// execLatencies runs `echo` in query mode on one kernel of each agent
	// in turn until stop closes (statistics cycles run meanwhile) and
	// returns each execute's time to its finished result.
	execLatencies := func(live []kern, stop <-chan struct{}) []time.Duration {
		var ds []time.Duration
		for i := 0; ; i++ {
			select {
			case <-stop:
				return ds
			case <-time.After(100 * time.Millisecond):
			}
			k := live[i%min(len(live), nAgents)]
			t0 := time.Now()
			runID := coderunner.NewRunID()
			mode, code := "query", "echo x"
			for try := 0; try < 50; try++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				v, err := clients[k.agent].Call(ctx, "execute", []any{k.sid, k.kid, 3, runID, mode, code, map[string]any{}, 0.3}, map[string]any{"agent_id": ags[k.agent].id})
				cancel()
				if err != nil {
					b.Errorf("execute on %s: %v", k.kid, err) // not Fatal: another goroutine
					return ds
				}
				if res, _ := plain(v).(map[string]any); res["status"] == "finished" {
					break
				}
				mode, code = "continue", ""
			}
			ds = append(ds, time.Since(t0))
		}
	}
	var live []kern
	var mu sync.Mutex
	failed := 0
	for _, target := range steps {
		t0 := time.Now()
		need := target - len(live)
		work := make(chan int, need)
		for i := 0; i < need; i++ {
			work <- (len(live) + i) % nAgents
		}
		close(work)
		var wg sync.WaitGroup
		var firstErr error
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ai := range work {
					// A host port another process holds fails a start
					// (the agent frees what it took): tried up to 3 times,
					// the failures counted.
					var kid, sid string
					var err error
					for try := 0; try < 3; try++ {
						if kid, sid, _, err = ags[ai].create(b, img, 1); err == nil {
							break
						}
						mu.Lock()
						failed++
						mu.Unlock()
					}
					mu.Lock()
					if err != nil && firstErr == nil {
						firstErr = fmt.Errorf("create on %s: %w", ags[ai].id, err)
					}
					if err == nil {
						live = append(live, kern{ai, kid, sid})
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			b.Fatalf("at %d kernels: %v", len(live), firstErr)
		}
		created := time.Since(t0)
		before, _ := scrape()
		profDone := make(chan struct{})
		if profDir != "" {
			go func() {
				defer close(profDone)
				saveProfile(b, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.internalAddr(), int(settle.Seconds())-5), filepath.Join(profDir, fmt.Sprintf("cpu-%d.pprof", len(live))))
			}()
		} else {
			close(profDone)
		}
		in0 := redisIn()
		cpu0, at0 := cpuTicks(b, s.cmd.Process.Pid), time.Now()
		gap, hbs := heartbeatGap(settle)
		// CPU over the whole window, libzmq's own threads included (a Go
		// profile sees only Go and cgo calls).
		cpuWindow := float64(cpuTicks(b, s.cmd.Process.Pid)-cpu0) * 10 / float64(time.Since(at0).Milliseconds()) * 100
		redisPerPeriod := (redisIn() - in0) / settle.Seconds() * 30
		<-profDone
		goMem := ""
		if profDir != "" {
			saveProfile(b, "http://"+s.internalAddr()+"/debug/pprof/heap", filepath.Join(profDir, fmt.Sprintf("heap-%d.pprof", len(live))))
			txt := filepath.Join(profDir, fmt.Sprintf("heap-%d.txt", len(live)))
			saveProfile(b, "http://"+s.internalAddr()+"/debug/pprof/heap?debug=1", txt)
			goMem = "; Go runtime: " + memStats(b, txt)
		}
		// The idle figures are taken; then executes for a statistics
		// period (every agent's container cycle runs during it).
		body, scrapeTime := scrape()
		anon, file := float64(statusKiB(b, s.cmd.Process.Pid, "RssAnon"))/1024, float64(statusKiB(b, s.cmd.Process.Pid, "RssFile"))/1024
		stopExec := make(chan struct{})
		execDone := make(chan []time.Duration)
		go func() { execDone <- execLatencies(live, stopExec) }()
		time.Sleep(32 * time.Second)
		close(stopExec)
		execs := <-execDone
		sort.Slice(execs, func(i, j int) bool { return execs[i] < execs[j] })
		if len(execs) == 0 {
			b.Fatal("no execute finished")
		}
		execP99 := execs[len(execs)*99/100]
		dSum := sumOf(body, "backendai_stat_task_duration_sec_sum", `stat_scope="container"`) - sumOf(before, "backendai_stat_task_duration_sec_sum", `stat_scope="container"`)
		dCount := sumOf(body, "backendai_stat_task_duration_sec_count", `stat_scope="container"`) - sumOf(before, "backendai_stat_task_duration_sec_count", `stat_scope="container"`)
		cycle := "n/a"
		if dCount > 0 {
			cycle = fmt.Sprintf("%.1f ms", 1000*dSum/dCount)
		}
		perContainer := "n/a"
		if dCount > 0 {
			perContainer = fmt.Sprintf("%.2f ms", 1000*dSum/dCount/float64(len(live))*float64(nAgents))
		}
		b.Logf("%d agents, %d kernels: created in %s (%d failed tries so far); RSS %.1f MiB (anonymous %.1f, file %.1f%s), CPU %.1f %% of a core (gauge; %.1f %% over the window), %v goroutines, %v open files; container stats cycle (mean per agent over %v cycles) %s, %s per container; ping p99 %s; execute p99 %s over %d runs (statistics cycles meanwhile); longest heartbeat gap %s over %d heartbeats (interval %gs); Redis received %.0f KB per 30-s period; /metrics %d bytes in %s",
			nAgents, len(live), created.Round(time.Millisecond), failed, maxOf(body, "backendai_agent_mem_usage")/(1<<20), anon, file, goMem, maxOf(body, "backendai_agent_cpu_usage"), cpuWindow,
			maxOf(body, "backendai_agent_goroutines"), maxOf(body, "backendai_agent_open_files"), dCount, cycle, perContainer, pingP99(200).Round(10*time.Microsecond),
			execP99.Round(10*time.Microsecond), len(execs), gap, hbs, hb, redisPerPeriod/1000, len(body), scrapeTime.Round(10*time.Microsecond))
	}
	t0 := time.Now()
	work := make(chan kern, len(live))
	for _, k := range live {
		work <- k
	}
	close(work)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range work {
				if _, err := ags[k.agent].call(b, testutil.Slow(60*time.Second), ags[k.agent].id, "destroy_kernel", k.kid, k.sid, "user-requested"); err != nil {
					b.Errorf("destroy %s on %s: %v", k.kid, ags[k.agent].id, err)
				}
			}
		}()
	}
	wg.Wait()
	b.Logf("destroyed %d kernels in %s", len(live), time.Since(t0).Round(time.Millisecond))
	for i := 0; i < b.N; i++ {
	}
}

// cpuTicks is the process's user and system time in clock ticks (10 ms).
func cpuTicks(b *testing.B, pid int) uint64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(st)[strings.LastIndexByte(string(st), ')')+1:])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	sy, _ := strconv.ParseUint(f[12], 10, 64)
	return ut + sy
}

// memStats summarizes the runtime.MemStats lines of a heap?debug=1 page.
func memStats(b *testing.B, path string) string {
	txt, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for _, name := range []string{"Sys", "HeapSys", "HeapInuse", "HeapReleased", "StackInuse"} {
		if m := regexp.MustCompile(`(?m)^# ` + name + ` = (\d+)`).FindStringSubmatch(string(txt)); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			out = append(out, fmt.Sprintf("%s %.1f", name, v/(1<<20)))
		}
	}
	return strings.Join(out, ", ")
}

// saveProfile writes what url serves to path.
func saveProfile(b *testing.B, url, path string) {
	resp, err := http.Get(url)
	if err != nil {
		b.Errorf("profile %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Errorf("profile %s: %d %v", url, resp.StatusCode, err)
		return
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		b.Error(err)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
