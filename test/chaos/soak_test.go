package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/backend/docker"
	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// options of one soak run.
type options struct {
	faultPhase time.Duration // how long faults are injected
	seed       uint64
	long       bool // outages of the lengths (Redis 5-60 s)
	workers    int
}

// Bounds the agent must stay within whatever happens (it idles at about
// 35 MiB and 45 goroutines with no kernel; docs/PERFORMANCE.md).
const (
	maxRSS        = 150 << 20
	maxGoroutines = 600
	maxOpenFiles  = 1000
)

// Per-call deadlines of the workload, above the agent's own bounds for a
// hung engine (a creation fails within 45 s) and a kernel that does not
// answer (30 s).
var deadlines = map[string]time.Duration{
	"create_kernels": 90 * time.Second, "destroy_kernel": 90 * time.Second, "restart_kernel": 90 * time.Second,
	"execute": 45 * time.Second, "start_service": 45 * time.Second, "upload_file": 45 * time.Second,
}

type opStat struct{ ok, failed, late int }

type faultStat struct {
	count   int
	total   time.Duration
	outcome map[string]int // what the agent did, counted
}

// soak is one run's state.
type soak struct {
	*stack
	be   *docker.Backend
	t    *testing.T
	o    options
	stop chan struct{}

	mu         sync.Mutex
	ops        map[string]*opStat
	faults     map[string]*faultStat
	violations []string
	created    map[string]bool // kernels create_kernels answered with
	destroyed  map[string]bool // kernels destroy_kernel answered for
	started    map[string]int  // kernel_started events per kernel
	terminated map[string]int  // kernel_terminated events per kernel
	evCount    map[string]int
	maxRSS     float64
	maxGor     float64
	maxFiles   float64
	fuseHeld   int          // stuck FUSE mounts not yet released
	hostPorts  map[int]bool // every host port a kernel of the soak was given
}

func (k *soak) violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	k.mu.Lock()
	k.violations = append(k.violations, time.Now().UTC().Format("15:04:05")+" "+msg)
	k.mu.Unlock()
	k.t.Logf("VIOLATION: %s", msg)
}

// call runs one RPC under its deadline and counts it. A call that neither
// answered nor failed by its deadline is a violation unless the agent was
// restarted under it (a killed agent answers nothing).
func (k *soak) call(r *rpcConn, meth string, args ...any) (any, error) {
	d := deadlines[meth]
	if d == 0 {
		d = 30 * time.Second
	}
	gen, up := k.generation()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	t0 := time.Now()
	v, err := r.call(ctx, meth, args...)
	el := time.Since(t0)
	k.mu.Lock()
	st := k.ops[meth]
	if st == nil {
		st = &opStat{}
		k.ops[meth] = st
	}
	if err == nil {
		st.ok++
	} else {
		st.failed++
	}
	late := err != nil && ctx.Err() != nil
	if late {
		st.late++
	}
	k.mu.Unlock()
	if gen1, up1 := k.generation(); late && up && up1 && gen1 == gen {
		k.violate("%s unanswered after %s with the agent running throughout (%v)", meth, el.Round(time.Millisecond), err)
	}
	return v, err
}

func (k *soak) ok(op string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.ops[op]
	if st == nil {
		st = &opStat{}
		k.ops[op] = st
	}
	st.ok++
}

func (k *soak) failed(op string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.ops[op]
	if st == nil {
		st = &opStat{}
		k.ops[op] = st
	}
	st.failed++
}

// kernel is what a worker knows of a kernel it created.
type kernel struct {
	id, sid string
	web     int // host port of the "web" service
}

// create asks for one kernel as the manager does (ctl's create_kernels
// shape). extra changes the config before it is sent.
func (k *soak) create(r *rpcConn, mem int64, extra func(cfg map[string]any)) (*kernel, error) {
	sid, kid := uuid.NewString(), uuid.NewString()
	cfg := map[string]any{
		"image":            map[string]any{"canonical": k.img, "is_local": true, "auto_pull": "none", "registry": map[string]any{"name": "", "url": ""}, "labels": map[string]any{}},
		"kernel_id":        kid,
		"session_id":       sid,
		"owner_user_id":    "",
		"network_id":       sid,
		"session_type":     "interactive",
		"cluster_mode":     "single-node",
		"cluster_role":     "main",
		"cluster_idx":      1,
		"local_rank":       0,
		"resource_slots":   map[string]any{"cpu": "1", "mem": strconv.FormatInt(mem, 10)},
		"resource_opts":    map[string]any{"shmem": int64(8 << 20)},
		"environ":          map[string]any{"BACKENDAI_SESSION_ID": sid},
		"mounts":           []any{},
		"preopen_ports":    []any{},
		"startup_command":  "",
		"bootstrap_script": "",
		"internal_data":    map[string]any{},
	}
	if extra != nil {
		extra(cfg)
	}
	cluster := map[string]any{"mode": "single-node", "size": 1, "replicas": map[string]any{"main": 1}, "network_config": map[string]any{"mode": "bridge"}}
	v, err := k.call(r, "create_kernels", sid, []any{kid}, []any{cfg}, cluster, map[string]any{})
	if err != nil {
		return nil, err
	}
	kn := &kernel{id: kid, sid: sid}
	res, _ := v.([]any)
	if len(res) != 1 {
		k.violate("create_kernels answered %v for one kernel", v)
		return kn, nil
	}
	m, _ := res[0].(map[string]any)
	if m["id"] != kid {
		k.violate("create_kernels answered kernel %v for %s", m["id"], kid)
	}
	sps, _ := m["service_ports"].([]any)
	k.mu.Lock()
	for _, p := range []any{m["repl_in_port"], m["repl_out_port"]} {
		k.hostPorts[toInt(p)] = true
	}
	for _, sp := range sps {
		spm, _ := sp.(map[string]any)
		hp, _ := spm["host_ports"].([]any)
		for _, p := range hp {
			k.hostPorts[toInt(p)] = true
		}
	}
	k.mu.Unlock()
	for _, sp := range sps {
		spm, _ := sp.(map[string]any)
		if spm["name"] == "web" {
			if hp, _ := spm["host_ports"].([]any); len(hp) > 0 {
				kn.web = toInt(hp[0])
			}
		}
	}
	k.mu.Lock()
	k.created[kid] = true
	k.mu.Unlock()
	return kn, nil
}

func toInt(v any) int {
	switch x := v.(type) {
	case int64:
		return int(x)
	case uint64:
		return int(x)
	case int:
		return x
	case float64:
		return int(x)
	}
	n, _ := strconv.Atoi(fmt.Sprint(v))
	return n
}

// exec runs code in query or batch mode to the end and returns stdout.
func (k *soak) exec(r *rpcConn, kn *kernel, mode, code string) (string, error) {
	runID := coderunner.NewRunID()
	opts := map[string]any{}
	text := code
	if mode == "batch" {
		opts["exec"], text = code, ""
	}
	var out strings.Builder
	m, t := mode, text
	for i := 0; i < 100; i++ {
		v, err := k.call(r, "execute", kn.sid, kn.id, 3, runID, m, t, opts, 0.3)
		if err != nil {
			return out.String(), err
		}
		res, _ := v.(map[string]any)
		cons, _ := res["console"].([]any)
		for _, c := range cons {
			if rec, _ := c.([]any); len(rec) == 2 && rec[0] == "stdout" {
				out.WriteString(fmt.Sprint(rec[1]))
			}
		}
		switch res["status"] {
		case "finished":
			return out.String(), nil
		case "waiting-input":
			m, t = "input", ""
		default:
			m, t = "continue", ""
		}
	}
	return out.String(), fmt.Errorf("execute did not finish after 100 continues")
}

func (k *soak) destroy(r *rpcConn, kn *kernel) error {
	_, err := k.call(r, "destroy_kernel", kn.id, kn.sid, "user-requested", false)
	if err == nil {
		k.mu.Lock()
		k.destroyed[kn.id] = true
		k.mu.Unlock()
	}
	return err
}

// gone says whether an error means the kernel no longer exists on the
// agent (it died in an engine restart, or a destroy went through before
// the agent was killed).
func gone(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "KernelNotFound") || strings.Contains(strings.ToLower(err.Error()), "not found"))
}

// worker drives the mixed workload with at most two kernels of its own.
func (k *soak) worker(n int) {
	r := &rpcConn{addr: k.rpc}
	defer r.close()
	rnd := rand.New(rand.NewPCG(k.o.seed, uint64(n)))
	var mine []*kernel
	seq := 0
	for {
		select {
		case <-k.stop:
			for _, kn := range mine {
				_ = k.destroy(r, kn)
			}
			return
		default:
		}
		seq++
		if len(mine) == 0 || (len(mine) < 2 && rnd.IntN(4) == 0) {
			kn, err := k.create(r, 128<<20, nil)
			if err == nil {
				mine = append(mine, kn)
			} else {
				time.Sleep(500 * time.Millisecond) // the agent or its engine is away
			}
			continue
		}
		i := rnd.IntN(len(mine))
		kn := mine[i]
		drop := false
		switch op := rnd.IntN(12); {
		case op < 3:
			want := fmt.Sprintf("chaos-%d-%d", n, seq)
			out, err := k.exec(r, kn, "query", "echo "+want)
			if err == nil && !strings.Contains(out, want) {
				k.violate("execute in %s answered %q, want %q", kn.id[:8], out, want)
			}
			drop = gone(err)
		case op < 5:
			want := fmt.Sprintf("batch-%d-%d", n, seq)
			out, err := k.exec(r, kn, "batch", "echo "+want)
			if err == nil && !strings.Contains(out, want) {
				k.violate("batch in %s answered %q, want %q", kn.id[:8], out, want)
			}
			drop = gone(err)
		case op < 7:
			body := fmt.Sprintf("web-%d-%d\n", n, seq)
			_, err := k.call(r, "upload_file", kn.id, "index.html", []byte(body))
			if err == nil {
				var res any
				res, err = k.call(r, "start_service", kn.id, "web", map[string]any{})
				if m, _ := res.(map[string]any); err == nil && m["status"] == "failed" {
					err = fmt.Errorf("start_service: %v", m["error"])
				}
			}
			if err == nil && kn.web != 0 {
				// The HTTP server starts beside start_service's answer.
				var got string
				var gerr error
				for try := 0; try < 20; try++ {
					got, gerr = httpGet(context.Background(), fmt.Sprintf("http://127.0.0.1:%d/index.html", kn.web))
					if gerr == nil {
						break
					}
					time.Sleep(250 * time.Millisecond)
				}
				switch {
				case gerr != nil:
					k.failed("http")
				case got != body:
					// A restart keeps the scratch; the body is this upload's.
					k.violate("HTTP through host port %d of %s answered %q, want %q", kn.web, kn.id[:8], got, body)
				default:
					k.ok("http")
				}
			}
			drop = gone(err)
		case op < 9:
			_, err := k.call(r, "restart_kernel", kn.sid, kn.id, nil, map[string]any{})
			drop = gone(err)
		default:
			err := k.destroy(r, kn)
			drop = err == nil || gone(err)
		}
		if drop {
			mine = append(mine[:i], mine[i+1:]...)
		}
	}
}

// collect consumes the events stream as the manager does (consumer group
// "manager", acknowledged as read) until stop closes.
func (k *soak) collect(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	ctx := context.Background()
	for {
		select {
		case <-stop:
			return
		default:
		}
		res, err := k.stream.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "manager", Consumer: "chaos", Streams: []string{"events", ">"}, Count: 200, Block: 300 * time.Millisecond}).Result()
		if err != nil {
			if err != redis.Nil {
				time.Sleep(200 * time.Millisecond)
			}
			continue
		}
		for _, st := range res {
			for _, m := range st.Messages {
				name := fmt.Sprint(m.Values["name"])
				var p map[string]any
				if s, ok := m.Values["payload"].(string); ok {
					_ = json.Unmarshal([]byte(s), &p)
				}
				kid, _ := p["kernel_id"].(string)
				k.mu.Lock()
				k.evCount[name]++
				switch name {
				case "kernel_started":
					k.started[kid]++
				case "kernel_terminated":
					k.terminated[kid]++
				}
				k.mu.Unlock()
				_ = k.stream.XAck(ctx, "events", "manager", m.ID)
			}
		}
	}
}

// monitor checks the continuous invariants every few seconds.
func (k *soak) monitor(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		case <-time.After(3 * time.Second):
		}
		if st, ok := k.unexpectedExit(); ok {
			k.violate("the agent exited by itself: %s", st)
			go func() {
				if err := k.start(3 * time.Minute); err != nil {
					k.violate("agent restart after its own exit: %v", err)
				}
			}()
		}
		if pid := k.pid(); pid != 0 {
			if v, err := rss(pid); err == nil {
				k.mu.Lock()
				if v > k.maxRSS {
					k.maxRSS = v
				}
				k.mu.Unlock()
				if v > maxRSS {
					k.violate("agent RSS %.1f MiB above %d MiB", v/(1<<20), maxRSS>>20)
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if vals, _, err := k.scrape(ctx); err == nil {
			g, f := vals["backendai_agent_goroutines"], vals["backendai_agent_open_files"]
			k.mu.Lock()
			k.maxGor, k.maxFiles = max(k.maxGor, g), max(k.maxFiles, f)
			k.mu.Unlock()
			if g > maxGoroutines {
				k.violate("agent goroutines %v above %d", g, maxGoroutines)
			}
			if f > maxOpenFiles {
				k.violate("agent open files %v above %d", f, maxOpenFiles)
			}
		}
		if st, err := k.status(ctx); err == nil {
			seen := map[string]bool{}
			for _, kn := range st.Kernels {
				if seen[kn.ID] {
					k.violate("bai_status lists kernel %s twice", kn.ID)
				}
				seen[kn.ID] = true
			}
		}
		// Containers per kernel in the engine (skipped while it is frozen:
		// the list times out).
		if list, err := k.be.List(ctx, map[string]string{"ai.backend.owner": k.id}); err == nil {
			per := map[string]int{}
			for _, c := range list {
				per[c.Labels["ai.backend.kernel-id"]]++
			}
			for kid, n := range per {
				if n > 1 {
					k.violate("kernel %s has %d containers", kid, n)
				}
			}
		}
		cancel()
	}
}

// quiet drops go-redis' own log lines (the test's clients retrying while
// Redis is away on purpose).
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quiet{}) }

// runSoak runs the whole soak and checks the final invariants.
func runSoak(t *testing.T, o options) {
	testutil.RequireRoot(t)
	testutil.RequireDocker(t)
	t.Logf("chaos soak: seed %d (BAI_CHAOS_SEED), fault phase %s, %d workers", o.seed, o.faultPhase, o.workers)
	eng := testutil.StartEngine(t, false)
	img := eng.ImportTestImageWith(map[string]string{"ai.backend.runtime-type": "shell", "ai.backend.service-ports": "web:http:8090"})
	k := &soak{stack: newStack(t, img, eng), be: eng.Backend(), t: t, o: o, stop: make(chan struct{}),
		ops: map[string]*opStat{}, faults: map[string]*faultStat{}, created: map[string]bool{}, destroyed: map[string]bool{},
		started: map[string]int{}, terminated: map[string]int{}, evCount: map[string]int{}, hostPorts: map[int]bool{}}
	if v, err := k.stream.ConfigGet(context.Background(), "appendfsync").Result(); err != nil || v["appendfsync"] != "always" {
		t.Fatalf("Redis is not persisting every write (appendfsync %v %v): an outage would lose the stream", v, err)
	}
	if err := k.start(time.Minute); err != nil {
		t.Fatal(err)
	}
	stopBg := make(chan struct{})
	collDone, monDone := make(chan struct{}), make(chan struct{})
	go k.collect(stopBg, collDone)
	go k.monitor(stopBg, monDone)
	defer func() {
		select {
		case <-stopBg:
		default:
			close(stopBg)
		}
		<-collDone
		<-monDone
	}()
	var wg sync.WaitGroup
	for i := 0; i < o.workers; i++ {
		wg.Add(1)
		go func(n int) { defer wg.Done(); k.worker(n) }(i)
	}
	t0 := time.Now()
	k.drive(o.faultPhase)
	t.Logf("fault phase over after %s; stopping the workers", time.Since(t0).Round(time.Second))
	close(k.stop)
	wg.Wait()
	k.final()
	report := k.report(time.Since(t0))
	t.Log("\n" + report)
	if p := os.Getenv("BAI_CHAOS_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(report), 0o644); err != nil {
			t.Errorf("write the report: %v", err)
		}
		// The agent's own account of the run, beside the table.
		if b, err := os.ReadFile(k.logPath); err == nil {
			if err := os.WriteFile(p+".agent.log", b, 0o644); err != nil {
				t.Errorf("write the agent log: %v", err)
			}
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, v := range k.violations {
		t.Errorf("invariant violated: %s", v)
	}
	if !o.long {
		for _, f := range allFaults {
			if k.faults[f.name] == nil || k.faults[f.name].count == 0 {
				t.Errorf("fault %s was never injected", f.name)
			}
		}
	}
	if k.ops["create_kernels"] == nil || k.ops["create_kernels"].ok == 0 || k.ops["execute"] == nil || k.ops["execute"].ok == 0 {
		t.Errorf("the workload did nothing: %v", k.ops)
	}
}

// final brings everything back, lets the agent settle and checks the end
// invariants: first with the kernels that survived, then after
// destroying them all.
func (k *soak) final() {
	t := k.t
	if k.pid() == 0 {
		if err := k.start(3 * time.Minute); err != nil {
			k.violate("the agent did not come back after the faults: %v", err)
			return
		}
	}
	// Quiescence: the sync loop (2 s) adopts or reports every kernel, and
	// the outbox delivers what waited; until then the checks may not hold.
	var last []string
	check := func() []string {
		var bad []string
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		st, err := k.status(ctx)
		if err != nil {
			return []string{fmt.Sprintf("bai_status: %v", err)}
		}
		alive := map[string]bool{}
		cores, ports := map[string]string{}, map[int]string{}
		for _, kn := range st.Kernels {
			if alive[kn.ID] {
				bad = append(bad, "kernel "+kn.ID+" listed twice")
			}
			alive[kn.ID] = true
			if kn.State != "running" {
				bad = append(bad, fmt.Sprintf("kernel %s is %s at the end", kn.ID[:8], kn.State))
			}
			for _, c := range kn.CPUCores {
				if o, taken := cores[fmt.Sprint(c)]; taken {
					bad = append(bad, fmt.Sprintf("core %v held by %s and %s", c, o[:8], kn.ID[:8]))
				}
				cores[fmt.Sprint(c)] = kn.ID
			}
			hp := []int{kn.ReplIn, kn.ReplOut}
			for _, sp := range kn.ServicePorts {
				hp = append(hp, sp.HostPorts...)
			}
			for _, p := range hp {
				if o, taken := ports[p]; taken && o != kn.ID {
					bad = append(bad, fmt.Sprintf("host port %d held by %s and %s", p, o[:8], kn.ID[:8]))
				}
				ports[p] = kn.ID
			}
		}
		if used := st.Slots["cpu"].Used; used != strconv.Itoa(len(cores)) {
			bad = append(bad, fmt.Sprintf("cpu allocated %s, the kernels hold %d cores", used, len(cores)))
		}
		list, err := k.be.List(ctx, map[string]string{"ai.backend.owner": k.id})
		if err != nil {
			return append(bad, fmt.Sprintf("list containers: %v", err))
		}
		has := map[string]int{}
		for _, c := range list {
			kid := c.Labels["ai.backend.kernel-id"]
			has[kid]++
			if !alive[kid] {
				bad = append(bad, fmt.Sprintf("container %s of kernel %s leaked", c.Name, kid[:8]))
			}
		}
		for kid := range alive {
			if has[kid] != 1 {
				bad = append(bad, fmt.Sprintf("kernel %s has %d containers", kid[:8], has[kid]))
			}
		}
		ents, _ := os.ReadDir(k.scratch)
		for _, e := range ents {
			kid := strings.TrimSuffix(e.Name(), ".img")
			if !alive[kid] {
				bad = append(bad, "scratch "+e.Name()+" leaked")
			}
		}
		k.mu.Lock()
		for kid := range k.created {
			if k.started[kid] == 0 {
				bad = append(bad, fmt.Sprintf("kernel %s was created and never reported kernel_started", kid[:8]))
			}
		}
		for kid := range k.started {
			if !alive[kid] && k.terminated[kid] == 0 {
				bad = append(bad, fmt.Sprintf("kernel %s started, is gone and was never reported kernel_terminated", kid[:8]))
			}
		}
		for kid := range alive {
			if k.started[kid] == 0 {
				bad = append(bad, fmt.Sprintf("kernel %s is alive without a kernel_started event", kid[:8]))
			}
		}
		k.mu.Unlock()
		// Every live kernel has its stat key once a container cycle ran,
		// and its presence key.
		for kid := range alive {
			if n, _ := k.stat.Exists(ctx, kid).Result(); n == 0 {
				bad = append(bad, "no stat key for live kernel "+kid[:8])
			}
			if n, _ := k.live.Exists(ctx, "kernel:presence:"+kid).Result(); n == 0 {
				bad = append(bad, "no presence key for live kernel "+kid[:8])
			}
		}
		_, kids, err := k.scrape(ctx)
		if err != nil {
			return append(bad, fmt.Sprintf("scrape: %v", err))
		}
		for kid := range kids {
			if !alive[kid] {
				bad = append(bad, "metric series of dead kernel "+kid[:8])
			}
		}
		return bad
	}
	settle := func(what string) {
		deadline := time.Now().Add(testutil.Slow(90 * time.Second))
		for {
			last = check()
			if len(last) == 0 {
				return
			}
			if time.Now().After(deadline) {
				for _, b := range last {
					k.violate("%s: %s", what, b)
				}
				return
			}
			time.Sleep(2 * time.Second)
		}
	}
	t0 := time.Now()
	settle("after the faults")
	t.Logf("consistent %s after the last fault", time.Since(t0).Round(time.Second))
	// Destroy what is left; then nothing may remain.
	ctx := context.Background()
	st, err := k.status(ctx)
	if err != nil {
		k.violate("bai_status before the clean-up: %v", err)
		return
	}
	r := &rpcConn{addr: k.rpc}
	for _, kn := range st.Kernels {
		if err := k.destroy(r, &kernel{id: kn.ID, sid: kn.SessionID}); err != nil {
			k.violate("destroy %s at the end: %v", kn.ID[:8], err)
		}
	}
	r.close()
	settle("after destroying every kernel")
	st, err = k.status(ctx)
	if err == nil {
		if len(st.Kernels) != 0 {
			k.violate("%d kernels left after destroying all", len(st.Kernels))
		}
		for name, sl := range st.Slots {
			if sl.Used != "0" {
				k.violate("slot %s still allocated %s with no kernel", name, sl.Used)
			}
		}
	}
	// Ports the soak's kernels were given (another process on the machine
	// may hold others of the range).
	var busy []int
	k.mu.Lock()
	for p := range k.hostPorts {
		if p == 0 || !portBusy(p) {
			continue
		}
		h := findPortHolder(p)
		if h.comm == "docker-proxy" {
			// A dockerd killed with SIGKILL leaves its docker-proxy
			// processes listening (orphans, not its children any more);
			// a restarted dockerd may start proxies again for the port
			// mappings of containers it then cleans up. Either is the
			// engine's leftover, which the agent's port pool skips (its
			// bind probe), not a port the agent failed to release: no
			// container of the engine has the proxy's address. They are
			// removed here so that the next checks see a clean machine.
			why := ""
			if h.parent != "dockerd" {
				why = "orphaned by a dockerd SIGKILL"
			} else if !h.parentOf(k.stack.eng.Host) {
				h.args = append(h.args, "(a dockerd other than the test's)")
			} else if owner, ok := k.engineIPs()[h.containerIP]; !ok {
				why = "dockerd's proxy for a container it no longer has"
			} else {
				h.args = append(h.args, "(container "+owner+")")
			}
			if why != "" {
				t.Logf("host port %d: held by docker-proxy %d, %s (engine leftover; removed): %s", p, h.pid, why, h)
				_ = syscall.Kill(h.pid, syscall.SIGKILL)
				continue
			}
		}
		t.Logf("host port %d still listening: %s", p, h)
		busy = append(busy, p)
	}
	k.mu.Unlock()
	sort.Ints(busy)
	if len(busy) > 0 {
		k.violate("host ports still listening with no kernel: %v", busy)
	}
	// With every kernel gone no mount namespace holds a stuck FUSE mount.
	deadline := time.Now().Add(testutil.Slow(30 * time.Second))
	for {
		k.mu.Lock()
		held := k.fuseHeld
		k.mu.Unlock()
		if held == 0 {
			break
		}
		if time.Now().After(deadline) {
			k.violate("%d stuck FUSE mounts still held with no kernel left", held)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// engineIPs maps the address of every container of the test engine (any
// owner, any state) to its name.
func (k *soak) engineIPs() map[string]string {
	out, err := exec.Command("docker", "-H", k.stack.eng.Host, "ps", "-aq").Output()
	ips := map[string]string{}
	if err != nil || len(strings.TrimSpace(string(out))) == 0 {
		return ips
	}
	args := append([]string{"-H", k.stack.eng.Host, "inspect", "-f", "{{.Name}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"}, strings.Fields(string(out))...)
	out, _ = exec.Command("docker", args...).Output()
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		for _, ip := range f[min(1, len(f)):] {
			ips[ip] = f[0]
		}
	}
	return ips
}

// report is the end-of-run table.
func (k *soak) report(took time.Duration) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "chaos soak: seed %d, fault phase %s, whole run %s, %d workers\n\n", k.o.seed, k.o.faultPhase, took.Round(time.Second), k.o.workers)
	fmt.Fprintf(&b, "| fault | injected | time in fault | what the agent did (count) |\n|---|---|---|---|\n")
	for _, f := range allFaults {
		fs := k.faults[f.name]
		if fs == nil {
			fmt.Fprintf(&b, "| %s | 0 | - | - |\n", f.name)
			continue
		}
		var outs []string
		for o, n := range fs.outcome {
			outs = append(outs, fmt.Sprintf("%s (%d)", o, n))
		}
		sort.Strings(outs)
		fmt.Fprintf(&b, "| %s | %d | %s | %s |\n", f.name, fs.count, fs.total.Round(time.Second), strings.Join(outs, "; "))
	}
	fmt.Fprintf(&b, "\n| operation | answered | failed | unanswered by its deadline |\n|---|---|---|---|\n")
	var names []string
	for n := range k.ops {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		o := k.ops[n]
		fmt.Fprintf(&b, "| %s | %d | %d | %d |\n", n, o.ok, o.failed, o.late)
	}
	nTerm := 0
	for _, n := range k.terminated {
		nTerm += n
	}
	fmt.Fprintf(&b, "\nkernels created through RPC: %d; kernel_started for %d kernels; kernel_terminated events: %d; events read: %v\n", len(k.created), len(k.started), nTerm, k.evCount["kernel_started"]+k.evCount["kernel_terminated"]+k.evCount["agent_heartbeat"])
	fmt.Fprintf(&b, "agent peaks: RSS %.1f MiB (bound %d), goroutines %.0f (bound %d), open files %.0f (bound %d)\n", k.maxRSS/(1<<20), maxRSS>>20, k.maxGor, maxGoroutines, k.maxFiles, maxOpenFiles)
	k.stack.mu.Lock()
	for why, n := range k.refusals {
		fmt.Fprintf(&b, "agent start-ups refused by the agent itself (restarted as a supervisor would): %d x %q\n", n, why)
	}
	k.stack.mu.Unlock()
	if len(k.violations) == 0 {
		fmt.Fprintf(&b, "invariants: all held\n")
	} else {
		fmt.Fprintf(&b, "invariants: %d violations\n", len(k.violations))
		for _, v := range k.violations {
			fmt.Fprintf(&b, "- %s\n", v)
		}
	}
	return b.String()
}
