package zmq_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/moby/moby/api/types/network"
	mobyclient "github.com/moby/moby/client"

	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration{}, d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func createArgs(img string) (string, string, []any) {
	sid, kid := uuid.NewString(), uuid.NewString()
	cfg := map[string]any{
		"image": map[string]any{"canonical": img, "architecture": "x86_64", "is_local": true, "auto_pull": "none",
			"registry": map[string]any{"name": "", "url": ""}, "labels": map[string]any{}},
		"kernel_id": kid, "session_id": sid, "owner_user_id": "f38dea23-50fa-42a0-b5ae-338f5f4693f4",
		"network_id": sid, "session_type": "interactive", "cluster_mode": "single-node", "cluster_role": "main",
		"cluster_idx": 1, "cluster_hostname": "main1", "local_rank": 0,
		"resource_slots": map[string]any{"cpu": "1", "mem": "134217728"},
		"resource_opts":  map[string]any{"shmem": 16 << 20},
		"environ":        map[string]any{"BACKENDAI_SESSION_ID": sid},
		"mounts":         []any{},
	}
	cluster := map[string]any{"mode": "single-node", "size": 1, "replicas": map[string]any{"main": 1},
		"network_config": map[string]any{"mode": "bridge", "network_name": nil}}
	return sid, kid, []any{sid, []any{kid}, []any{cfg}, cluster, map[string]any{}}
}

// BenchmarkCreateKernel compares, in one run and interleaved, the agent's
// create-kernel path through Callosum RPC (bind arguments, allocate,
// scratch, ports, config files, docker create + start, inspect, reply)
// with raw Docker API create + start of the identical container config
// (taken from a kernel the agent created). Reported: medians and the
// median overhead in percent.
func BenchmarkCreateKernel(b *testing.B) {
	addr, _, _ := startAgent(b, nil)
	img := testutil.TestImage(b)
	be := testutil.RequireDocker(b)
	cli := be.Client()
	c, err := client.Dial(addr, 5*time.Second, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	// Template: the exact config of a kernel container the agent made.
	sid, kid, args := createArgs(img)
	if _, err := c.Call(ctx, "create_kernels", args, nil); err != nil {
		b.Fatal(err)
	}
	list, err := be.List(ctx, map[string]string{"ai.backend.kernel-id": kid})
	if err != nil || len(list) != 1 {
		b.Fatalf("template container: %v %d", err, len(list))
	}
	tmpl, err := cli.ContainerInspect(ctx, list[0].ID, mobyclient.ContainerInspectOptions{})
	if err != nil {
		b.Fatal(err)
	}
	// Keep the template's scratch dirs for the raw containers' mounts.
	rawScratch := b.TempDir()
	for i, m := range tmpl.Container.HostConfig.Mounts {
		if strings.HasPrefix(m.Target, "/home/") {
			dst := filepath.Join(rawScratch, filepath.Base(m.Target))
			if err := os.MkdirAll(dst, 0o755); err != nil {
				b.Fatal(err)
			}
			tmpl.Container.HostConfig.Mounts[i].Source = dst
		}
	}
	if _, err := c.Call(ctx, "destroy_kernel", []any{kid, sid, "user-requested", false}, nil); err != nil {
		b.Fatal(err)
	}
	rawPort := 31500 // below the ephemeral range (32768+) and every test's port range
	rawCreate := func() time.Duration {
		hc := *tmpl.Container.HostConfig
		hc.PortBindings = network.PortMap{}
		for p := range tmpl.Container.HostConfig.PortBindings {
			hc.PortBindings[p] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(rawPort)}}
			rawPort++
		}
		name := "bai-bench-raw-" + uuid.NewString()
		t0 := time.Now()
		cr, err := cli.ContainerCreate(ctx, mobyclient.ContainerCreateOptions{Config: tmpl.Container.Config, HostConfig: &hc, Name: name})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cli.ContainerStart(ctx, cr.ID, mobyclient.ContainerStartOptions{}); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		if _, err := cli.ContainerRemove(ctx, cr.ID, mobyclient.ContainerRemoveOptions{Force: true}); err != nil {
			b.Fatal(err)
		}
		return d
	}
	agentCreate := func() time.Duration {
		sid, kid, args := createArgs(img)
		t0 := time.Now()
		if _, err := c.Call(ctx, "create_kernels", args, nil); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		if _, err := c.Call(ctx, "destroy_kernel", []any{kid, sid, "user-requested", false}, nil); err != nil {
			b.Fatal(err)
		}
		return d
	}
	var raw, viaAgent []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate the order so drift in dockerd affects both alike.
		if i%2 == 0 {
			raw = append(raw, rawCreate())
			viaAgent = append(viaAgent, agentCreate())
		} else {
			viaAgent = append(viaAgent, agentCreate())
			raw = append(raw, rawCreate())
		}
	}
	b.StopTimer()
	mr, ma := median(raw), median(viaAgent)
	b.ReportMetric(float64(mr.Microseconds())/1000, "raw-ms/median")
	b.ReportMetric(float64(ma.Microseconds())/1000, "agent-ms/median")
	b.ReportMetric(100*(float64(ma)-float64(mr))/float64(mr), "overhead-%")
}

// BenchmarkAgentIdleRSS starts the real bai-agent binary on a throwaway
// config, waits until it answers ping and has been idle for 3 s, and
// reports its resident set size.
func BenchmarkAgentIdleRSS(b *testing.B) {
	testutil.RequireDocker(b)
	bin := testutil.AgentBinary(b)
	dir := b.TempDir()
	port := testutil.FreePort(b)
	cfg := filepath.Join(dir, "agent.toml")
	doc := fmt.Sprintf("[agent]\nbackend=\"docker\"\nid=\"i-rss-%s\"\nrpc-listen-addr=\"127.0.0.1:%d\"\ncontrol-plane=\"none\"\ninternal-addr=\"127.0.0.1:0\"\n[container]\nport-range=[29000,29099]\nscratch-root=%q\n[resource]\nreserved-cpu=0\nreserved-mem=\"64M\"\n", uuid.NewString()[:8], port, filepath.Join(dir, "scratch"))
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "start-server", "-f", cfg)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var c *client.Client
	testutil.Eventually(b, 30*time.Second, "agent answers PING", func() bool {
		var err error
		c, err = client.Dial(fmt.Sprintf("tcp://127.0.0.1:%d", port), 500*time.Millisecond, nil)
		return err == nil
	})
	if _, err := c.Call(context.Background(), "ping", []any{"x"}, nil); err != nil {
		b.Fatal(err)
	}
	c.Close()
	time.Sleep(3 * time.Second)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	var rssKB float64
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			rssKB, _ = strconv.ParseFloat(f[1], 64)
		}
	}
	for i := 0; i < b.N; i++ {
	}
	b.ReportMetric(rssKB/1024, "MiB-rss")
}

// burst is the shared setup of the burst benchmarks: an agent allowing 20
// one-core kernels, four RPC clients, and the container config of a
// kernel the agent made, for the raw Docker side.
type burst struct {
	b       *testing.B
	img     string
	cli     *mobyclient.Client
	clients []*client.Client
	tmpl    mobyclient.ContainerInspectResult
}

const burstTotal, burstPar = 20, 4

func newBurst(b *testing.B) *burst {
	b.Setenv("BACKEND_CPU_OVERCOMMIT_FACTOR", "10")
	addr, _, _ := startAgent(b, nil)
	bu := &burst{b: b, img: testutil.TestImage(b)}
	be := testutil.RequireDocker(b)
	bu.cli = be.Client()
	ctx := context.Background()
	for i := 0; i < burstPar; i++ {
		c, err := client.Dial(addr, 5*time.Second, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		bu.clients = append(bu.clients, c)
	}
	sid, kid, args := createArgs(bu.img)
	if _, err := bu.clients[0].Call(ctx, "create_kernels", args, nil); err != nil {
		b.Fatal(err)
	}
	list, err := be.List(ctx, map[string]string{"ai.backend.kernel-id": kid})
	if err != nil || len(list) != 1 {
		b.Fatalf("template container: %v %d", err, len(list))
	}
	if bu.tmpl, err = bu.cli.ContainerInspect(ctx, list[0].ID, mobyclient.ContainerInspectOptions{}); err != nil {
		b.Fatal(err)
	}
	// The raw containers must not look like the agent's own (its sync loop
	// would remove them as strays).
	labels := map[string]string{}
	for k, v := range bu.tmpl.Container.Config.Labels {
		if k != "ai.backend.owner" && k != "ai.backend.agent-id" && k != "ai.backend.kernel-id" {
			labels[k] = v
		}
	}
	bu.tmpl.Container.Config.Labels = labels
	rawScratch := b.TempDir()
	for i, m := range bu.tmpl.Container.HostConfig.Mounts {
		if strings.HasPrefix(m.Target, "/home/") {
			dst := filepath.Join(rawScratch, filepath.Base(m.Target))
			if err := os.MkdirAll(dst, 0o755); err != nil {
				b.Fatal(err)
			}
			bu.tmpl.Container.HostConfig.Mounts[i].Source = dst
		}
	}
	if _, err := bu.clients[0].Call(ctx, "destroy_kernel", []any{kid, sid, "user-requested", false}, nil); err != nil {
		b.Fatal(err)
	}
	return bu
}

// run does burstTotal jobs on burstPar workers and returns the wall time.
func (bu *burst) run(job func(worker, i int)) time.Duration {
	next := make(chan int, burstTotal)
	for i := 0; i < burstTotal; i++ {
		next <- i
	}
	close(next)
	t0 := time.Now()
	done := make(chan struct{})
	for w := 0; w < burstPar; w++ {
		go func(w int) {
			for i := range next {
				job(w, i)
			}
			done <- struct{}{}
		}(w)
	}
	for w := 0; w < burstPar; w++ {
		<-done
	}
	return time.Since(t0)
}

// rawCreate creates and starts container i of the raw side.
func (bu *burst) rawCreate(i int) string {
	ctx := context.Background()
	hc := *bu.tmpl.Container.HostConfig
	hc.PortBindings = network.PortMap{}
	n := 0
	for p := range bu.tmpl.Container.HostConfig.PortBindings {
		hc.PortBindings[p] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(31700 + i*10 + n)}}
		n++
	}
	cr, err := bu.cli.ContainerCreate(ctx, mobyclient.ContainerCreateOptions{Config: bu.tmpl.Container.Config, HostConfig: &hc, Name: "bai-burst-raw-" + uuid.NewString()})
	if err != nil {
		bu.b.Error(err)
		return ""
	}
	if _, err := bu.cli.ContainerStart(ctx, cr.ID, mobyclient.ContainerStartOptions{}); err != nil {
		bu.b.Error(err)
	}
	return cr.ID
}

// agentCreate creates kernel i through worker w's client.
func (bu *burst) agentCreate(w int) [2]string {
	sid, kid, args := createArgs(bu.img)
	if _, err := bu.clients[w].Call(context.Background(), "create_kernels", args, nil); err != nil {
		bu.b.Error(err)
		return [2]string{}
	}
	return [2]string{sid, kid}
}

func (bu *burst) agentDestroy(w int, k [2]string) {
	if k[1] == "" {
		return
	}
	if _, err := bu.clients[w].Call(context.Background(), "destroy_kernel", []any{k[1], k[0], "user-requested", false}, nil); err != nil {
		bu.b.Error(err)
	}
}

func (bu *burst) rawRemove(id string, stop bool) {
	if id == "" {
		return
	}
	ctx := context.Background()
	if stop {
		timeout := 10
		if _, err := bu.cli.ContainerStop(ctx, id, mobyclient.ContainerStopOptions{Timeout: &timeout}); err != nil {
			bu.b.Error(err)
		}
	}
	if _, err := bu.cli.ContainerRemove(ctx, id, mobyclient.ContainerRemoveOptions{Force: true}); err != nil {
		bu.b.Error(err)
	}
}

// interleave runs raw and agent measurements alternately, b.N times each,
// and reports their medians and the agent's overhead.
func interleave(b *testing.B, raw, agent func() time.Duration) {
	var rs, as []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			rs, as = append(rs, raw()), append(as, agent())
		} else {
			as, rs = append(as, agent()), append(rs, raw())
		}
	}
	b.StopTimer()
	mr, ma := median(rs), median(as)
	b.ReportMetric(float64(mr.Milliseconds()), "raw-ms/burst")
	b.ReportMetric(float64(ma.Milliseconds()), "agent-ms/burst")
	b.ReportMetric(100*(float64(ma)-float64(mr))/float64(mr), "overhead-%")
}

// BenchmarkCreateBurst creates 20 kernels 4 at a time through RPC (four
// clients) and, interleaved, the same 20 container configs 4 at a time
// through the Docker API; it reports the median total time of each and
// the agent's overhead (hardening gate: within 10 %).
func BenchmarkCreateBurst(b *testing.B) {
	bu := newBurst(b)
	interleave(b, func() time.Duration {
		ids := make([]string, burstTotal)
		d := bu.run(func(_, i int) { ids[i] = bu.rawCreate(i) })
		for _, id := range ids {
			bu.rawRemove(id, false)
		}
		return d
	}, func() time.Duration {
		ks := make([][2]string, burstTotal)
		d := bu.run(func(w, i int) { ks[i] = bu.agentCreate(w) })
		for _, k := range ks {
			bu.agentDestroy(0, k)
		}
		return d
	})
}

// BenchmarkDestroyBurst destroys 20 idle kernels 4 at a time through RPC
// (stop signal, logs kept, container, scratch, ports and allocation
// released) and, interleaved, stops and removes 20 raw containers of the
// same config 4 at a time through the Docker API (hardening gate: within
// 10 %).
func BenchmarkDestroyBurst(b *testing.B) {
	bu := newBurst(b)
	interleave(b, func() time.Duration {
		ids := make([]string, burstTotal)
		bu.run(func(_, i int) { ids[i] = bu.rawCreate(i) })
		return bu.run(func(_, i int) { bu.rawRemove(ids[i], true) })
	}, func() time.Duration {
		ks := make([][2]string, burstTotal)
		bu.run(func(w, i int) { ks[i] = bu.agentCreate(w) })
		return bu.run(func(w, i int) { bu.agentDestroy(w, ks[i]) })
	})
}
