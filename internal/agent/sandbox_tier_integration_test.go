package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/backend/docker"
	"github.com/bai-agent/bai-agent/internal/cgroup"
	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/krunner/kauth"
	"github.com/bai-agent/bai-agent/internal/metrics"
	"github.com/bai-agent/bai-agent/internal/monitor"
	"github.com/bai-agent/bai-agent/internal/redisconn"
	"github.com/bai-agent/bai-agent/internal/sandbox"
	"github.com/bai-agent/bai-agent/internal/stats"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// The rest of issue 26's "everything still works inside the sandbox",
// beyond TestSandboxKernels_Integration: the security tier's other
// attacks, host-side statistics, OOM detection and the scratch quota,
// under crun and runsc. One engine and one kernel per runtime carry most
// of it. crun runs on an engine without the hybrid host's cgroup2 mount
// (crun 1.8 refuses hybrid hosts); runsc on a plain one, because the
// hidden-cgroup2 engine lives in a private mount namespace that never
// sees the agent's later host mounts (the hostfile scratch's loop mount).
func TestSandboxTiers_Integration(t *testing.T) {
	testutil.RequireRoot(t)
	for _, rt := range []string{"crun", "runsc"} {
		t.Run(rt, func(t *testing.T) {
			eng := sandboxEngine(t, rt == "crun")
			be := eng.Backend()
			img := eng.ImportTestImageWith(map[string]string{"ai.backend.runtime-type": "shell"})
			hostfile := rt == "runsc"
			e := newEnvOn(t, be, img, func(c *config.Config) {
				c.Container.SandboxType = rt
				if hostfile {
					c.Container.ScratchType = "hostfile"
					c.Container.ScratchSize = 32 << 20
				}
			})
			info := e.create(func(c *CreationConfig) {
				c.ResourceSlots = map[string]string{"cpu": "1", "mem": "268435456"}
			})
			t.Run("raw sockets", func(t *testing.T) { tierRawSockets(t, e, info, rt) })
			t.Run("ptrace of the runner", func(t *testing.T) { tierPtrace(t, e, info) })
			t.Run("planted nodes", func(t *testing.T) { tierPlanted(t, e, info) })
			t.Run("stats", func(t *testing.T) { tierStats(t, e, info, rt) })
			if hostfile {
				t.Run("scratch quota", func(t *testing.T) { tierScratchQuota(t, e, info) })
			}
			t.Run("oom", func(t *testing.T) { tierOOM(t, be, img, rt) })
			if rt == "runsc" {
				t.Run("recovery after SIGKILL", func(t *testing.T) {
					se, kid := tierSIGKILL(t, eng, img, rt)
					// The adopted kernel (runner on, 128 MiB) serves next;
					// the env ends with this subtest.
					t.Run("oom inside a run", func(t *testing.T) { tierOOMInRun(t, se, kid, rt) })
				})
			}
		})
	}
}

// tierRun executes code through the runner as the kernel user and returns
// its stdout.
func tierRun(t *testing.T, e *env, kid, code string) string {
	t.Helper()
	res := e.exec(kid, "", "query", code, flushIn(30*time.Second))
	if res["status"] != "finished" {
		t.Fatalf("execute %q: %v", code, res)
	}
	return console(res, "stdout")
}

// Sockets that need CAP_NET_RAW: the kernel user has no capabilities.
// Root in the container (docker exec) is the control: Docker's default
// capability set includes NET_RAW, so the same program succeeds there
// under runc and crun, which shows the probe can tell. gVisor with the
// host network has no raw or packet sockets at all (root too).
func tierRawSockets(t *testing.T, e *env, info *KernelInfo, rt string) {
	out := tierRun(t, e, info.ID, "TEST_MODE=rawsock /bin/testkernel")
	t.Logf("as the kernel user: %q", out)
	for _, kind := range []string{"packet", "packet-dgram", "inet-raw-icmp", "inet-raw"} {
		if !strings.Contains(out, kind+"=err:") {
			t.Errorf("%s socket opened by the kernel user (or no answer): %q", kind, out)
		}
	}
	_, rootOut := testutil.Exec(context.Background(), e.be, info.ContainerID, "env", "TEST_MODE=rawsock", "/bin/testkernel")
	t.Logf("as root in the container (control): %q", rootOut)
	if !sandbox.IsGVisor(rt) && !strings.Contains(rootOut, "packet=ok") {
		t.Errorf("control: root with NET_RAW could not open a packet socket either: %q", rootOut)
	}
}

// The kernel user cannot attach to the runner nor read its memory (the
// runner keys), while a child of its own is open to it (the control:
// gVisor applies Yama's ptrace_scope 1 by default, so a process that is
// not a descendant would be refused there whatever the runner does).
// The runner's environment holds none of the runner keys: gVisor lets
// the same uid read /proc/PID/environ of a non-dumpable process, which
// is harmless only because the keys never enter the environment.
func tierPtrace(t *testing.T, e *env, info *KernelInfo) {
	out := tierRun(t, e, info.ID, `p=$(pidof bai-krunner); echo "runner=$p"; PIDS="$p child" TEST_MODE=ptrace /bin/testkernel`)
	var runner, control string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "runner="); ok {
			runner = v
		}
		if v, ok := strings.CutPrefix(line, "child="); ok {
			control = v
		}
		if !strings.Contains(line, "environ-data:") {
			t.Log(line)
		}
	}
	if runner == "" || control == "" {
		t.Fatalf("no runner or control pid: %q", out)
	}
	for _, what := range []string{"attach", "environ", "mem"} {
		if !strings.Contains(out, control+" "+what+"=ok") {
			t.Errorf("control %s failed (the probe cannot tell): %q", what, out)
		}
	}
	k, _ := e.agent.Kernel(info.ID)
	keys, err := os.ReadFile(filepath.Join(k.Spec().Scratch.Config, kauth.File))
	if err != nil {
		t.Fatal(err)
	}
	var secrets map[string]string
	if err := json.Unmarshal(keys, &secrets); err != nil || len(secrets) == 0 {
		t.Fatalf("%s: %v", kauth.File, err)
	}
	// pidof lists every bai-krunner: the entrypoint's exec'd run (the
	// kernel user, not dumpable).
	for _, pid := range strings.Fields(runner) {
		for _, what := range []string{"attach", "mem"} {
			if !strings.Contains(out, pid+" "+what+"=err:") {
				t.Errorf("runner pid %s: %s not refused: %q", pid, what, out)
			}
		}
		if strings.Contains(out, pid+" environ=ok") {
			t.Logf("runner pid %s: environ readable by the kernel user", pid)
		}
	}
	for name, v := range secrets {
		if len(v) >= 16 && strings.Contains(out, v) {
			t.Errorf("the kernel user read the runner's %s", name)
		}
	}
}

// Nodes planted in /home/work where the agent reads and writes (the
// manager's upload_file, download_file, download_single, list_files): a
// FIFO, a character device (root in the container has CAP_MKNOD), and
// symlinks to the host's /etc/shadow and /etc. Every call answers in
// time; none reads or writes host files through them.
func tierPlanted(t *testing.T, e *env, info *KernelInfo) {
	ctx := context.Background()
	code, out := testutil.Exec(ctx, e.be, info.ContainerID, "sh", "-c",
		"cd /home/work && mkfifo fifo; mknod chr c 1 3; ln -s /etc/shadow shadow; ln -s /etc etc; ls -l /home/work")
	t.Logf("planted (exit %d): %s", code, out)
	k, _ := e.agent.Kernel(info.ID)
	work := k.Spec().Scratch.Work
	t.Cleanup(func() { unblockHostFIFO(filepath.Join(work, "fifo")) })
	for _, n := range []string{"fifo", "chr", "shadow", "etc"} {
		if fi, err := os.Lstat(filepath.Join(work, n)); err != nil {
			t.Logf("%s: not on the host side of /home/work: %v", n, err)
		} else {
			t.Logf("%s: on the host as %v", n, fi.Mode().Type())
		}
	}
	shadow, _ := os.ReadFile("/etc/shadow")
	leak := func(b []byte) bool {
		return (len(shadow) > 0 && bytes.Contains(b, shadow)) || bytes.Contains(b, []byte("root:"))
	}
	within := func(what string, f func(ctx context.Context) error) {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, testutil.Slow(20*time.Second))
		defer cancel()
		t0 := time.Now()
		err := f(cctx)
		d := time.Since(t0)
		if errors.Is(err, context.DeadlineExceeded) && d >= testutil.Slow(20*time.Second) {
			t.Errorf("%s: no answer in %s", what, d)
		}
		t.Logf("%s: %v (%s)", what, err, d.Round(time.Millisecond))
	}
	for _, p := range []string{"fifo", "chr", "shadow", "etc/shadow", "etc/passwd"} {
		within("download_single "+p, func(ctx context.Context) error {
			b, err := e.agent.DownloadSingle(ctx, info.ID, p)
			if err == nil && leak(b) {
				t.Errorf("download_single %s returned host content", p)
			}
			return err
		})
		within("download_file "+p, func(ctx context.Context) error {
			b, err := e.agent.DownloadFile(ctx, info.ID, p)
			if err == nil && leak(b) {
				t.Errorf("download_file %s returned host content", p)
			}
			return err
		})
	}
	for _, p := range []string{"fifo", "etc", "."} {
		within("list_files "+p, func(ctx context.Context) error {
			l, err := e.agent.ListFiles(ctx, info.ID, p)
			if err == nil {
				for _, f := range l.Files {
					if p == "etc" && (f.Filename == "shadow" || f.Filename == "passwd") {
						t.Errorf("list_files etc lists the host's /etc (%s)", f.Filename)
					}
				}
			}
			return err
		})
	}
	shadowBefore, _ := os.Stat("/etc/shadow")
	for _, p := range []string{"fifo", "chr", "shadow", "etc/bai-planted"} {
		within("upload_file "+p, func(ctx context.Context) error {
			return e.agent.UploadFile(ctx, info.ID, p, []byte("uploaded\n"))
		})
	}
	if _, err := os.Stat("/etc/bai-planted"); err == nil {
		_ = os.Remove("/etc/bai-planted")
		t.Error("upload_file wrote /etc/bai-planted on the host")
	}
	if after, _ := os.Stat("/etc/shadow"); shadowBefore != nil && (after == nil || !after.ModTime().Equal(shadowBefore.ModTime()) || after.Size() != shadowBefore.Size()) {
		t.Error("upload_file through the shadow symlink changed the host's /etc/shadow")
	}
	// The kernel still answers.
	if got := tierRun(t, e, info.ID, "echo alive"); got != "alive\n" {
		t.Fatalf("after the planted nodes: %q", got)
	}
}

// unblockHostFIFO opens a FIFO's write end without blocking so that a
// reader stuck on it (there should be none) returns.
func unblockHostFIFO(p string) {
	if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		f.Close()
	}
}

// Host-side statistics of a kernel burning a core and holding 64 MiB,
// through the monitor into Redis as the manager reads them.
func tierStats(t *testing.T, e *env, info *KernelInfo, rt string) {
	r := testutil.StartRedis(t)
	conn, err := redisconn.New(redisconn.Config{Target: redisconn.Target{Addr: r.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	// Load: one core busy, 64 MiB touched, 8 MiB written to /home/work.
	_ = tierRun(t, e, info.ID, "(TEST_MODE=spin /bin/testkernel &) ; (TEST_MODE=memhog MEMHOG_MB=64 /bin/testkernel >/dev/null &) ; (TEST_MODE=write WRITE_MB=8 /bin/testkernel >/dev/null &) ; echo started")
	col := stats.NewCollector()
	col.FS = cgroup.FS{}
	am := metrics.NewAgent()
	mon := monitor.Start(monitor.Options{
		AgentID: e.cfg.Agent.ID, Collector: col, Metrics: am, Redis: conn, Log: testLogger(),
		Targets: func() []stats.Target {
			var out []stats.Target
			for _, st := range e.agent.StatTargets() {
				out = append(out, stats.Target(st))
			}
			return out
		},
		NodeInterval: time.Hour, ContainerInterval: 500 * time.Millisecond, ProcessInterval: 500 * time.Millisecond,
		ContainerEnabled: true, ProcessEnabled: true,
	})
	defer mon.Close()
	rdb := conn.Client(redisconn.RoleStatistics, 0, nil)
	defer rdb.Close()
	var kstat msgpack.Map
	testutil.Eventually(t, testutil.Slow(30*time.Second), "cpu and memory figures of the kernel in Redis", func() bool {
		b, err := rdb.Get(context.Background(), info.ID).Bytes()
		if err != nil {
			return false
		}
		v, err := msgpack.Unmarshal(b, nil)
		if err != nil {
			return false
		}
		kstat, _ = v.(msgpack.Map)
		return cur(kstat, "cpu_util") > 10 && cur(kstat, "mem") > 64<<20
	})
	for _, kv := range kstat {
		t.Logf("%s %v: %v", rt, kv.Key, kv.Val)
	}
	// Every container figure the manager reads is there under both.
	for _, key := range []string{"cpu_util", "cpu_used", "mem", "io_read", "io_write", "net_rx", "net_tx", "io_scratch_size"} {
		if _, ok := kstat.Get(key); !ok {
			t.Errorf("%s: kernel stat key lacks %s", rt, key)
		}
	}
	body := func() string {
		var b strings.Builder
		if err := am.Reg.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	procSeries := fmt.Sprintf(`backendai_process_utilization{process_metric_name="cpu_used",agent_id=%q,kernel_id=%q`, e.cfg.Agent.ID, info.ID)
	if !sandbox.IsGVisor(rt) {
		// The kernel's own processes, by host pid.
		testutil.Eventually(t, testutil.Slow(30*time.Second), "the kernel's process key and series", func() bool {
			n, err := rdb.Exists(context.Background(), info.ContainerID).Result()
			return err == nil && n == 1 && strings.Contains(body(), procSeries)
		})
		return
	}
	// Under gVisor the per-process figures are unavailable: no process
	// key and no process series, after process cycles that did run.
	done := fmt.Sprintf(`backendai_stat_task_success_count_total{agent_id=%q,stat_scope="process"} `, e.cfg.Agent.ID)
	testutil.Eventually(t, testutil.Slow(30*time.Second), "two process cycles", func() bool {
		b := body()
		i := strings.Index(b, done)
		if i < 0 {
			return false
		}
		var n int
		_, _ = fmt.Sscan(b[i+len(done):], &n)
		return n >= 2
	})
	if n, err := rdb.Exists(context.Background(), info.ContainerID).Result(); err != nil || n != 0 {
		t.Errorf("a process key for a gVisor kernel (%d, %v): its pids would be the sandbox's", n, err)
	}
	if strings.Contains(body(), procSeries) {
		t.Errorf("process series for a gVisor kernel")
	}
}

// cur is a MetricValue's current as a number (0 when absent).
func cur(m msgpack.Map, key string) float64 {
	v, _ := m.Get(key)
	mv, ok := v.(msgpack.Map)
	if !ok {
		return 0
	}
	c, _ := mv.Get("current")
	var f float64
	_, _ = fmt.Sscan(fmt.Sprintf("%s", c), &f)
	return f
}

// The hostfile scratch (a loop-mounted file of scratch-size) bounds what
// the kernel writes to /home/work, through the gofer too; the host's own
// filesystem is untouched.
func tierScratchQuota(t *testing.T, e *env, info *KernelInfo) {
	k, _ := e.agent.Kernel(info.ID)
	work := k.Spec().Scratch.Work
	out := tierRun(t, e, info.ID, "dd if=/dev/zero of=/home/work/big bs=1M count=64 2>&1; echo rc=$?")
	t.Logf("%q", out)
	if !strings.Contains(out, "No space left on device") || strings.Contains(out, "rc=0") {
		t.Fatalf("write past the 32 MiB scratch: %q", out)
	}
	fi, err := os.Stat(filepath.Join(work, "big"))
	if err != nil || fi.Size() > 32<<20 {
		t.Fatalf("host side of the scratch: %v %v", fi, err)
	}
	// What the host gave is the image file, no more than its size.
	var st syscall.Stat_t
	img := k.Spec().Scratch.Base + ".img"
	if err := syscall.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > int64(e.cfg.Container.ScratchSize) {
		t.Fatalf("the scratch image %s holds %d bytes on the host, past its %d", img, used, e.cfg.Container.ScratchSize)
	} else {
		t.Logf("scratch image on the host: %d bytes allocated of %d", used, e.cfg.Container.ScratchSize)
	}
	// The kernel works on after the full disk, and can free it.
	if got := tierRun(t, e, info.ID, "rm /home/work/big && echo freed"); got != "freed\n" {
		t.Fatalf("after the full scratch: %q", got)
	}
}

// A kernel whose main process allocates past its 64 MiB limit (runner
// off, as in TestOOMAndShmExhaustion_Integration) is reported terminated
// with the OOM reason.
func tierOOM(t *testing.T, be *docker.Backend, img, rt string) {
	e := newEnvOn(t, be, img, func(c *config.Config) {
		c.Container.SandboxType = rt
		c.Container.KernelRunner = false
	})
	oom := e.create(func(c *CreationConfig) {
		c.ResourceSlots = map[string]string{"cpu": "1", "mem": "67108864"}
		c.Environ["TEST_MODE"] = "memhog"
		c.Environ["MEMHOG_MB"] = "256"
	})
	to := waitTermination(t, e, oom.ID)
	ev, _ := e.events.find("kernel_terminated", oom.ID)
	t.Logf("%s: %+v; event %v", rt, to, ev)
	if to.ExitCode != 137 || !to.OOMKilled || to.Reason != "self-terminated" {
		t.Fatalf("memhog under %s: %+v", rt, to)
	}
}

// A real agent process (this test binary in helper mode) creates a
// sandboxed kernel and is SIGKILLed; the next agent adopts the kernel,
// knows its runtime from the container (HostConfig.Runtime, for the
// statistics) and executes in it again.
func tierSIGKILL(t *testing.T, eng *testutil.Engine, img, rt string) (*env, string) {
	e := newEnvOn(t, eng.Backend(), img, func(c *config.Config) { c.Container.SandboxType = rt })
	e.agent.Close()
	e.agent = nil
	cfgPath := e.configFile()
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(b), "[container]\n", fmt.Sprintf("[container]\nsandbox-type=%q\n", rt), 1)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	kid := uuid.NewString()
	runHelperAndKill(t, cfgPath, kid, img, "DOCKER_HOST="+eng.Host)
	e.agent = e.start()
	k, ok := e.agent.Kernel(kid)
	if !ok || k.State() != kernel.Running {
		t.Fatalf("the %s kernel was not adopted after the SIGKILL", rt)
	}
	if got := k.Spec().OCIRuntime; got != rt {
		t.Fatalf("adopted kernel's runtime %q, want %q", got, rt)
	}
	for _, st := range e.agent.StatTargets() {
		if st.KernelID == kid && st.NoHostProcesses != sandbox.IsGVisor(rt) {
			t.Fatalf("stat target of the adopted kernel: NoHostProcesses=%v", st.NoHostProcesses)
		}
	}
	if got := tierRun(t, e, kid, "echo back; cat /proc/version"); !strings.HasPrefix(got, "back\n") {
		t.Fatalf("execute in the adopted %s kernel: %q", rt, got)
	} else {
		t.Logf("%q", got)
	}
	return e, kid
}

// A command inside a run allocates past the kernel's 128 MiB. Under runc
// the OOM killer takes the command and the kernel lives on
// (TestRunnerOOMInRun_Integration); under gVisor the cgroup's processes
// are the sandbox's, so the kill may take the whole kernel. Either way
// the agent must tell: the run ends with -9 and the kernel runs, or the
// kernel is reported terminated with the OOM reason.
func tierOOMInRun(t *testing.T, e *env, kid, rt string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := e.agent.Execute(ctx, "", kid, coderunner.Request{RunID: "m", Mode: "batch", Opts: map[string]any{"exec": "TEST_MODE=memhog MEMHOG_MB=256 /bin/testkernel"}, APIVersion: 3, Flush: flushIn(60 * time.Second)})
	for err == nil && r["status"] != "finished" {
		r, err = e.agent.Execute(ctx, "", kid, coderunner.Request{RunID: "m", Mode: "continue", APIVersion: 3, Flush: flushIn(60 * time.Second)})
	}
	t.Logf("%s: run %v, error %v", rt, r, err)
	if err == nil && r["exitCode"] == -9 {
		if k, ok := e.agent.Kernel(kid); !ok || k.State() != kernel.Running {
			t.Fatalf("%s: the run was killed and the kernel is not running", rt)
		}
		t.Logf("%s: the OOM killer took the command; the kernel lives on", rt)
		return
	}
	term := waitTermination(t, e, kid)
	t.Logf("%s: the kernel ended: %+v", rt, term)
	if term.ExitCode != 137 || !term.OOMKilled {
		t.Fatalf("%s: kernel ended without the OOM reason: %+v", rt, term)
	}
}
