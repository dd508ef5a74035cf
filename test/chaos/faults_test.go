package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fault is one kind of failure the driver injects. group: faults of one
// group never overlap each other (one agent, one engine); faults of
// different groups do.
type fault struct {
	name, group string
	run         func(k *soak, rnd *rand.Rand) string // injects, waits, restores; says what the agent did
}

var allFaults = []fault{
	{"agent-sigkill", "agent", (*soak).agentKill},
	{"agent-sigterm", "agent", (*soak).agentTerm},
	{"redis-stop", "redis", (*soak).redisStop},
	{"etcd-stop", "etcd", (*soak).etcdStop},
	{"dockerd-restart", "engine", (*soak).engineRestart},
	{"dockerd-freeze", "engine", (*soak).engineFreeze},
	{"kernel-oom", "oom", (*soak).kernelOOM},
	{"scratch-full", "scratch", (*soak).scratchFull},
	{"fuse-hang", "fuse", (*soak).fuseHang},
	{"redis-link-cut", "link", (*soak).linkCut},
	{"redis-link-delay", "link", (*soak).linkDelay},
}

// span picks a duration in [lo, hi) seconds.
func span(rnd *rand.Rand, lo, hi int) time.Duration {
	return time.Duration(lo*1000+rnd.IntN((hi-lo)*1000)) * time.Millisecond
}

// outage is how long a component stays away: the 5-60 s in the
// long form, 5-10 s in the short one (a few minutes in all).
func (k *soak) outage(rnd *rand.Rand) time.Duration {
	if k.o.long {
		return span(rnd, 5, 60)
	}
	return span(rnd, 5, 10)
}

// drive injects faults for d: first every kind once in a shuffled order
// (so the short form sees each), then kinds at random; a kind whose group
// is busy waits for a later turn. Gaps between injections are shorter
// than outages, so faults overlap.
func (k *soak) drive(d time.Duration) {
	rnd := rand.New(rand.NewPCG(k.o.seed, 0xc4a05))
	queue := make([]fault, len(allFaults))
	copy(queue, allFaults)
	rnd.Shuffle(len(queue), func(i, j int) { queue[i], queue[j] = queue[j], queue[i] })
	var mu sync.Mutex
	busy := map[string]bool{}
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		gap := span(rnd, 3, 7)
		if k.o.long {
			gap = span(rnd, 5, 30)
		}
		time.Sleep(gap)
		var f *fault
		mu.Lock()
		for i := range queue {
			if !busy[queue[i].group] {
				f = &queue[i]
				queue = append(queue[:i:i], queue[i+1:]...)
				break
			}
		}
		if f == nil && len(queue) == 0 {
			c := allFaults[rnd.IntN(len(allFaults))]
			if !busy[c.group] {
				f = &c
			}
		}
		if f == nil {
			mu.Unlock()
			continue
		}
		busy[f.group] = true
		mu.Unlock()
		seed := rnd.Uint64()
		wg.Add(1)
		go func(f fault) {
			defer wg.Done()
			frnd := rand.New(rand.NewPCG(seed, 1))
			t0 := time.Now()
			k.t.Logf("fault %s: injected", f.name)
			outcome := f.run(k, frnd)
			el := time.Since(t0)
			k.t.Logf("fault %s: over after %s: %s", f.name, el.Round(100*time.Millisecond), outcome)
			k.mu.Lock()
			fs := k.faults[f.name]
			if fs == nil {
				fs = &faultStat{outcome: map[string]int{}}
				k.faults[f.name] = fs
			}
			fs.count++
			fs.total += el
			fs.outcome[outcome]++
			k.mu.Unlock()
			mu.Lock()
			busy[f.group] = false
			mu.Unlock()
		}(*f)
	}
	wg.Wait()
}

// restartAgent brings the agent back after a fault ended it; the agent is
// given as long as an overlapping etcd or Redis outage can last.
func (k *soak) restartAgent() string {
	t0 := time.Now()
	if err := k.start(3 * time.Minute); err != nil {
		k.violate("agent restart: %v", err)
		return "did not come back: " + err.Error()
	}
	return fmt.Sprintf("answering RPC again in %s", roundS(time.Since(t0)))
}

// roundS rounds to whole seconds, for outcome tables that count alike
// outcomes together.
func roundS(d time.Duration) string {
	switch {
	case d < time.Second:
		return "<1s"
	case d < 5*time.Second:
		return "1-5s"
	case d < 15*time.Second:
		return "5-15s"
	default:
		return ">15s"
	}
}

func (k *soak) agentKill(rnd *rand.Rand) string {
	k.signal(syscall.SIGKILL)
	time.Sleep(span(rnd, 0, 2))
	return "killed; " + k.restartAgent()
}

func (k *soak) agentTerm(rnd *rand.Rand) string {
	took, clean := k.signal(syscall.SIGTERM)
	if !clean {
		k.violate("the agent did not end within 60 s of SIGTERM")
	}
	return fmt.Sprintf("shut down in %s; %s", roundS(took), k.restartAgent())
}

// heartbeats counts agent_heartbeat events read so far.
func (k *soak) heartbeats() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.evCount["agent_heartbeat"]
}

// pingAnswers says whether the agent answers RPC within 5 s (during an
// outage of something else); an agent that another fault is restarting
// meanwhile counts as answering.
func (k *soak) pingAnswers() bool {
	g0, up0 := k.generation()
	err := pingOnce(k.rpc, 5*time.Second)
	g1, up1 := k.generation()
	return err == nil || !up0 || !up1 || g0 != g1
}

func (k *soak) redisStop(rnd *rand.Rand) string {
	k.redis.Stop()
	time.Sleep(k.outage(rnd))
	rpcOK := k.pingAnswers()
	k.redis.Start()
	return k.afterRedis(rpcOK)
}

// afterRedis waits for heartbeats to come through again.
func (k *soak) afterRedis(rpcOK bool) string {
	hb := k.heartbeats()
	t0 := time.Now()
	for time.Since(t0) < 90*time.Second && k.heartbeats() <= hb {
		time.Sleep(200 * time.Millisecond)
	}
	out := "RPC answered during the outage"
	if !rpcOK {
		out = "RPC did NOT answer during the outage"
		k.violate("the agent stopped answering RPC while Redis was away")
	}
	if k.heartbeats() <= hb {
		k.violate("no heartbeat within 90 s of Redis coming back")
		return out + "; no heartbeat after"
	}
	return out + "; heartbeats resumed in " + roundS(time.Since(t0))
}

func (k *soak) etcdStop(rnd *rand.Rand) string {
	k.etcd.Stop()
	time.Sleep(k.outage(rnd))
	rpcOK := k.pingAnswers()
	k.etcd.Start()
	if !rpcOK {
		k.violate("the agent stopped answering RPC while etcd was away")
		return "RPC did NOT answer during the outage"
	}
	return "RPC answered during the outage"
}

func (k *soak) engineRestart(rnd *rand.Rand) string {
	sig, how := syscall.SIGTERM, "SIGTERM (an orderly stop: its containers stop)"
	if rnd.IntN(2) == 0 {
		sig, how = syscall.SIGKILL, "SIGKILL (a crash: its containers are cleaned when it is back)"
	}
	k.eng.Stop(sig)
	time.Sleep(span(rnd, 1, 5))
	rpcOK := k.pingAnswers()
	k.eng.Start()
	out := "dockerd " + how + ": "
	if !rpcOK {
		k.violate("the agent stopped answering RPC while dockerd was down")
		return out + "RPC did NOT answer"
	}
	return out + "RPC answered; kernels reported terminated (checked at the end)"
}

func (k *soak) engineFreeze(rnd *rand.Rand) string {
	k.eng.Freeze()
	time.Sleep(span(rnd, 5, 15))
	rpcOK := k.pingAnswers()
	k.eng.Thaw()
	if !rpcOK {
		k.violate("the agent stopped answering RPC while dockerd was frozen")
		return "RPC did NOT answer"
	}
	return "RPC answered while dockerd was frozen"
}

// victim creates a kernel for a fault of its own; the outcome says why
// when it cannot (another fault took the agent or the engine away).
func (k *soak) victim(r *rpcConn, mem int64, extra func(map[string]any)) (*kernel, string) {
	for try := 0; try < 5; try++ {
		kn, err := k.create(r, mem, extra)
		if err == nil {
			return kn, ""
		}
		time.Sleep(2 * time.Second)
	}
	return nil, "no kernel to fault (creation failed under other faults)"
}

func (k *soak) kernelOOM(rnd *rand.Rand) string {
	r := &rpcConn{addr: k.rpc}
	defer r.close()
	kn, why := k.victim(r, 64<<20, nil)
	if kn == nil {
		return why
	}
	defer func() { _ = k.destroy(r, kn) }()
	// busybox dd allocates its block: 128 MiB in a 64 MiB kernel.
	out, err := k.exec(r, kn, "query", "dd if=/dev/zero of=/dev/null bs=128M count=1 2>/dev/null; echo rc=$?")
	switch {
	case err != nil:
		return "execute failed: " + short(err)
	case strings.Contains(out, "rc=137"):
	default:
		k.violate("a 128 MiB dd in a 64 MiB kernel was not OOM-killed: %q", out)
		return "not OOM-killed: " + out
	}
	if out, err := k.exec(r, kn, "query", "echo alive"); err != nil || !strings.Contains(out, "alive") {
		return fmt.Sprintf("process OOM-killed; the kernel did not answer after (%q %v)", out, err)
	}
	return "process OOM-killed (rc 137), kernel answers after"
}

func (k *soak) scratchFull(rnd *rand.Rand) string {
	r := &rpcConn{addr: k.rpc}
	defer r.close()
	kn, why := k.victim(r, 128<<20, nil)
	if kn == nil {
		return why
	}
	defer func() { _ = k.destroy(r, kn) }()
	out, err := k.exec(r, kn, "query", "dd if=/dev/zero of=/home/work/fill bs=1M count=64 2>&1; echo rc=$?")
	if err != nil {
		return "execute failed: " + short(err)
	}
	if !strings.Contains(out, "No space left") {
		k.violate("64 MiB written to a 32 MiB hostfile scratch without ENOSPC: %q", out)
		return "no ENOSPC"
	}
	out, err = k.exec(r, kn, "query", "rm -f /home/work/fill; echo freed")
	if err != nil || !strings.Contains(out, "freed") {
		return fmt.Sprintf("ENOSPC; the kernel did not answer after (%q %v)", out, err)
	}
	return "ENOSPC in the kernel; it answers and frees the space"
}

// stuckRoot is a FUSE filesystem whose one file's reads never answer
// until release closes: a reader sleeps uninterruptibly (D), as on an NFS
// or FUSE mount whose server hangs.
type stuckRoot struct {
	fs.Inode
	release chan struct{}
}

func (r *stuckRoot) OnAdd(ctx context.Context) {
	r.AddChild("model.bin", r.NewPersistentInode(ctx, &stuckFile{release: r.release}, fs.StableAttr{Mode: fuse.S_IFREG}), false)
}

func (r *stuckRoot) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFDIR | 0o755
	return 0
}

type stuckFile struct {
	fs.Inode
	release chan struct{}
}

func (f *stuckFile) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode, out.Size = fuse.S_IFREG|0o444, 1<<20
	return 0
}

func (f *stuckFile) Open(context.Context, uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *stuckFile) Read(ctx context.Context, _ fs.FileHandle, _ []byte, _ int64) (fuse.ReadResult, syscall.Errno) {
	select {
	case <-f.release:
	case <-ctx.Done():
	}
	return fuse.ReadResultData(nil), 0
}

func (k *soak) fuseHang(rnd *rand.Rand) string {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return "skipped: no /dev/fuse on this machine"
	}
	mnt := filepath.Join(k.vfroot, fmt.Sprintf("stuck-%d", rnd.Uint32()))
	if err := os.Mkdir(mnt, 0o755); err != nil {
		k.violate("fuse mount point: %v", err)
		return "no mount point"
	}
	release := make(chan struct{})
	srv, err := fs.Mount(mnt, &stuckRoot{release: release}, &fs.Options{MountOptions: fuse.MountOptions{AllowOther: true, DirectMount: true, FsName: "bai-chaos-stuck"}})
	if err != nil {
		// /dev/fuse is there: a failed mount is a failure, not a skip.
		k.violate("cannot mount FUSE: %v", err)
		return "mount failed"
	}
	k.mu.Lock()
	k.fuseHeld++
	k.mu.Unlock()
	defer func() {
		// Reads answer from here on. The FUSE connection lives while any
		// mount namespace holds the mount: a kernel whose destroy failed
		// under another fault keeps it until the final clean-up destroys
		// it, so the unmount waits in the background and the end checks
		// that every mount was released.
		close(release)
		go func() {
			_ = srv.Unmount()
			_ = os.Remove(mnt)
			k.mu.Lock()
			k.fuseHeld--
			k.mu.Unlock()
		}()
	}()
	r := &rpcConn{addr: k.rpc}
	defer r.close()
	kn, why := k.victim(r, 128<<20, func(cfg map[string]any) {
		cfg["mounts"] = []any{map[string]any{"name": filepath.Base(mnt), "host_path": mnt, "kernel_path": "/home/work/stuck", "mount_perm": "ro"}}
	})
	if kn == nil {
		return why
	}
	out, err := k.exec(r, kn, "query", "cat /home/work/stuck/model.bin >/dev/null & sleep 1; cat /proc/$!/stat")
	if err != nil {
		_ = k.destroy(r, kn)
		return "execute failed: " + short(err)
	}
	if !strings.Contains(out, ") D ") {
		k.violate("the FUSE reader is not in uninterruptible sleep: %q", out)
	}
	// The kernel stays stuck through other faults and statistics cycles.
	time.Sleep(span(rnd, 5, 15))
	gen0, up0 := k.generation()
	t0 := time.Now()
	err = k.destroy(r, kn)
	took := time.Since(t0)
	gen1, up1 := k.generation()
	// A call in flight when the agent is killed or restarted is lost with
	// it (the caller waits out its deadline): that is the restart's, not
	// the stuck mount's; the retry below measures nothing.
	restarted := !up0 || !up1 || gen0 != gen1
	for try := 0; err != nil && !gone(err) && try < 10; try++ {
		// The agent or its engine is away under another fault: the kernel
		// goes as soon as it can, so that its mount is released.
		time.Sleep(3 * time.Second)
		err = k.destroy(r, kn)
	}
	switch {
	case gone(err):
		return "stuck reader; the kernel had already ended"
	case err != nil:
		return "stuck reader; destroy failed: " + short(err)
	case restarted:
		return "stuck reader (state D); the agent restarted during the destroy, which then went through"
	case took > 30*time.Second:
		k.violate("destroying a kernel with a stuck FUSE reader took %s", took)
	}
	return "stuck reader (state D); destroy answered in " + roundS(took)
}

func (k *soak) linkCut(rnd *rand.Rand) string {
	d := span(rnd, 3, 15)
	how := "reset"
	if rnd.IntN(2) == 0 {
		// A black hole: connections stay open and nothing comes back.
		how = "black hole"
		if _, err := k.proxy.Toxics.AddToxicJson(strings.NewReader(`{"name":"hole","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`)); err != nil {
			k.violate("toxiproxy timeout: %v", err)
			return "no toxic"
		}
		time.Sleep(d)
		rpcOK := k.pingAnswers()
		_ = k.proxy.Toxics.RemoveToxic(context.Background(), "hole")
		// Connections that saw the hole stay stalled; a reset lets the
		// clients notice at once, as a dropped NAT entry would not.
		return how + "; " + k.afterRedis(rpcOK)
	}
	k.proxy.Stop()
	time.Sleep(d)
	rpcOK := k.pingAnswers()
	if err := k.proxy.Start(); err != nil {
		k.violate("restart the fault proxy: %v", err)
	}
	return how + "; " + k.afterRedis(rpcOK)
}

func (k *soak) linkDelay(rnd *rand.Rand) string {
	lat := 200 + rnd.IntN(2800)
	if _, err := k.proxy.Toxics.AddToxicJson(strings.NewReader(fmt.Sprintf(`{"name":"lag","type":"latency","stream":"downstream","attributes":{"latency":%d,"jitter":%d}}`, lat, lat/4))); err != nil {
		k.violate("toxiproxy latency: %v", err)
		return "no toxic"
	}
	time.Sleep(span(rnd, 5, 20))
	rpcOK := k.pingAnswers()
	_ = k.proxy.Toxics.RemoveToxic(context.Background(), "lag")
	return fmt.Sprintf("%s delay; ", bucketMs(lat)) + k.afterRedis(rpcOK)
}

func bucketMs(ms int) string {
	if ms < 1000 {
		return "<1s"
	}
	return "1-3s"
}

func short(err error) string {
	s := err.Error()
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}
