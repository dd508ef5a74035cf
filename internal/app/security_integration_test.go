package app_test

// The security tier: each test reproduces one attack a kernel (whose user
// is root in a sudo session, emulated here with `docker exec -u 0`) or a
// hostile manager request can make on the agent's file RPCs and on
// create_kernels. They drive the agent binary over real Callosum RPC, as
// the manager does, and judge only what the manager and the host can see:
// the RPC answers, the host's files and devices, `docker inspect`, the
// agent's log and memory. Every call has a deadline, so a hang fails the
// test instead of the suite.

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// secCallTimeout bounds a file RPC: an answer takes milliseconds, so a
// call still running after this is a hang.
var secCallTimeout = testutil.Slow(5 * time.Second)

// secAgent is the agent binary on its own: no control plane (events are
// only logged), its own id, scratch root, port range and log file.
type secAgent struct {
	t       *testing.T
	id      string
	rpc     string // tcp://127.0.0.1:PORT
	root    string
	scratch string
	logPath string
	cmd     *exec.Cmd
	image   string
}

var secPorts = struct {
	sync.Mutex
	next int
}{next: 24000} // below Linux's ephemeral range (32768-60999)

// startSecAgent runs the agent binary with the kernel user set to uid and
// gid 1000 (so LOCAL_USER_ID=0 is never the legitimate value).
func startSecAgent(t *testing.T) *secAgent {
	t.Helper()
	testutil.RequireDocker(t)
	testutil.RequireRoot(t)
	img := testutil.TestImage(t)
	bin := testutil.AgentBinary(t)
	secPorts.Lock()
	first := secPorts.next
	secPorts.next += 20
	secPorts.Unlock()
	root := t.TempDir()
	s := &secAgent{t: t, id: "i-sec-" + uuid.NewString()[:8], root: root, scratch: filepath.Join(root, "scratch"),
		logPath: filepath.Join(root, "agent.log"), image: img}
	port := testutil.FreePort(t)
	s.rpc = fmt.Sprintf("tcp://127.0.0.1:%d", port)
	vfroot := filepath.Join(root, "vfroot")
	if err := os.MkdirAll(vfroot, 0o755); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`[agent]
backend = "docker"
id = %q
rpc-listen-addr = "127.0.0.1:%d"
control-plane = "none"
internal-addr = "127.0.0.1:0"
var-base-path = %q
mount-path = %q
[agent.sync-container-lifecycles]
interval = 2
[container]
port-range = [%d, %d]
port-reuse-cooldown-sec = 0
bind-host = "127.0.0.1"
scratch-root = %q
kernel-uid = 1000
kernel-gid = 1000
[resource]
reserved-cpu = 0
reserved-mem = "64M"
[logging]
level = "DEBUG"
`, s.id, port, filepath.Join(root, "var"), vfroot, first, first+19, s.scratch)
	cfg := filepath.Join(root, "agent.toml")
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "start-server", "-f", cfg)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A handler stuck in open(2) on a FIFO would keep a graceful
		// shutdown waiting: the process is killed, its kernels removed.
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		logf.Close()
		testutil.RemoveContainers(t, map[string]string{"ai.backend.owner": s.id})
		if t.Failed() {
			b, _ := os.ReadFile(s.logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("agent log (tail):\n%s", b)
		}
	})
	testutil.Eventually(t, 60*time.Second, "agent answers PING", func() bool {
		c, err := client.Dial(s.rpc, 500*time.Millisecond, nil)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return s
}

// call runs one RPC on its own connection with a deadline: a hang comes
// back as context.DeadlineExceeded and leaves other calls free.
func (s *secAgent) call(timeout time.Duration, meth string, args ...any) (any, error) {
	c, err := client.Dial(s.rpc, 5*time.Second, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.Call(ctx, meth, args, nil)
}

// mustAnswer asserts the agent still serves: ping and bai_status answer.
func (s *secAgent) mustAnswer(t *testing.T, after string) {
	t.Helper()
	if v, err := s.call(secCallTimeout, "ping", "still-there"); err != nil || v != "still-there" {
		t.Fatalf("after %s the agent no longer answers ping: %v %v", after, v, err)
	}
	if _, err := s.call(secCallTimeout, "bai_status"); err != nil {
		t.Fatalf("after %s the agent no longer answers bai_status: %v", after, err)
	}
}

// secConfig is one kernel's creation config as the manager sends it.
func (s *secAgent) secConfig(kid, sid string) map[string]any {
	return map[string]any{
		"image": map[string]any{"canonical": s.image, "is_local": true, "auto_pull": "none",
			"registry": map[string]any{"name": "", "url": ""}, "labels": map[string]any{}},
		"kernel_id":      kid,
		"session_id":     sid,
		"owner_user_id":  "f38dea23-50fa-42a0-b5ae-338f5f4693f4",
		"network_id":     sid,
		"session_type":   "interactive",
		"cluster_mode":   "single-node",
		"cluster_role":   "main",
		"cluster_idx":    1,
		"local_rank":     0,
		"resource_slots": map[string]any{"cpu": "1", "mem": "134217728"},
		"resource_opts":  map[string]any{"shmem": 16 << 20},
		"environ":        map[string]any{"BACKENDAI_SESSION_ID": sid},
		"mounts":         []any{},
		"preopen_ports":  []any{},
	}
}

type secKernel struct {
	id, session, container string
	work                   string // the host side of /home/work
}

// tryCreate sends create_kernels for one kernel whose config mutate
// changes.
func (s *secAgent) tryCreate(mutate func(cfg map[string]any)) (*secKernel, error) {
	sid, kid := uuid.NewString(), uuid.NewString()
	cfg := s.secConfig(kid, sid)
	if mutate != nil {
		mutate(cfg)
	}
	cluster := map[string]any{"mode": "single-node", "size": 1, "replicas": map[string]any{"main": 1}, "network_config": map[string]any{"mode": "bridge"}}
	v, err := s.call(testutil.Slow(90*time.Second), "create_kernels", sid, []any{kid}, []any{cfg}, cluster, map[string]any{})
	k := &secKernel{id: kid, session: sid, work: filepath.Join(s.scratch, kid, "work")}
	if err != nil {
		return k, err
	}
	l, ok := v.([]any)
	if !ok || len(l) != 1 {
		return k, fmt.Errorf("create_kernels answered %#v", v)
	}
	if m, ok := l[0].(msgpack.Map); ok {
		cid, _ := m.Get("container_id")
		k.container = fmt.Sprint(cid)
	}
	if k.container == "" {
		return k, fmt.Errorf("create_kernels answered no container_id: %#v", l[0])
	}
	return k, nil
}

func (s *secAgent) create(t *testing.T, mutate func(cfg map[string]any)) *secKernel {
	t.Helper()
	k, err := s.tryCreate(mutate)
	if err != nil {
		t.Fatalf("create_kernels: %v", err)
	}
	return k
}

func (s *secAgent) destroy(t *testing.T, k *secKernel) {
	t.Helper()
	if _, err := s.call(testutil.Slow(60*time.Second), "destroy_kernel", k.id, k.session, "user-requested"); err != nil {
		t.Errorf("destroy_kernel %s: %v", k.id, err)
	}
}

// rootExec runs a shell script in the kernel as root (the kernel user in
// a sudo session).
func rootExec(t *testing.T, k *secKernel, script string) string {
	t.Helper()
	out, err := rootExecErr(k, script)
	if err != nil {
		t.Fatalf("in the kernel, %q: %v\n%s", script, err, out)
	}
	return out
}

func rootExecErr(k *secKernel, script string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "exec", "-u", "0", k.container, "/bin/busybox", "sh", "-c", script).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// remoteErr returns the text of an error the agent answered with, and
// fails the test on anything else (a timeout, a broken connection).
func remoteErr(t *testing.T, what string, err error) string {
	t.Helper()
	var re *client.RemoteError
	if errors.As(err, &re) {
		return re.Name + ": " + re.Repr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s: no answer within %s (the agent hangs)", what, secCallTimeout)
	}
	t.Fatalf("%s: %v", what, err)
	return ""
}

// timed runs one call and fails the test if it takes longer than the
// file-call deadline.
func (s *secAgent) timed(t *testing.T, what, meth string, args ...any) (any, error) {
	t.Helper()
	t0 := time.Now()
	v, err := s.call(secCallTimeout, meth, args...)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s: no answer within %s (the agent blocks)", what, time.Since(t0).Round(time.Millisecond))
	}
	return v, err
}

// statusKiB reads one "Name: N kB" field of /proc/PID/status (VmRSS,
// RssAnon, RssFile).
func statusKiB(t testing.TB, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func rssKiB(t testing.TB, pid int) int64 { return statusKiB(t, pid, "VmRSS") }

// rssPeak samples the agent's resident memory every 20 ms until stop is
// called, which returns the peak in MiB.
func rssPeak(t *testing.T, pid int) (stop func() float64) {
	var peak atomic.Int64
	peak.Store(rssKiB(t, pid))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
					n, _ := strconv.ParseInt(f[1], 10, 64)
					if n > peak.Load() {
						peak.Store(n)
					}
				}
			}
		}
	}()
	return func() float64 {
		close(done)
		wg.Wait()
		return float64(peak.Load()) / 1024
	}
}

// unblockFIFO opens a FIFO's other end without blocking, so that an agent
// thread stuck opening it gets free (a thread in open(2) would otherwise
// survive until the process is killed).
func unblockFIFO(p string) {
	for _, flag := range []int{unix.O_RDONLY, unix.O_WRONLY} {
		if fd, err := unix.Open(p, flag|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
			time.Sleep(50 * time.Millisecond)
			unix.Close(fd)
		}
	}
}

// requireLoopDevices fails under CI (skips otherwise) when this host
// cannot make loop devices.
func requireLoopDevices(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("losetup"); err != nil {
		testutil.Missing(t, "losetup (apt-get install mount)")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		testutil.Missing(t, "loop devices (/dev/loop-control: %v)", err)
	}
}

// Attack 1: the kernel plants device nodes and a FIFO in /home/work under
// names the manager then uploads to. The agent (root on the host) must
// not open them: a block node with a host loop device's numbers would let
// upload_file write any host block device; a FIFO would block the upload
// forever. Either the node is replaced by a regular file holding the
// upload, or the upload is refused with an error; the device stays
// untouched and the call answers in time.
func TestSecurityUploadOntoDeviceNodes_Integration(t *testing.T) {
	requireLoopDevices(t)
	s := startSecAgent(t)
	// A loop device over a file this test owns, filled with a pattern.
	backing := filepath.Join(t.TempDir(), "loop-backing.img")
	pattern := bytes.Repeat([]byte("BAI-SECURITY-LOOP-PATTERN."), (1<<20)/26+1)[:1<<20]
	if err := os.WriteFile(backing, pattern, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", backing).CombinedOutput()
	if err != nil {
		testutil.Missing(t, "a free loop device (losetup -f --show): %v %s", err, out)
	}
	loopDev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", loopDev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", loopDev, err, out)
		}
	})
	var st unix.Stat_t
	if err := unix.Stat(loopDev, &st); err != nil {
		t.Fatal(err)
	}
	major, minor := unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))

	k := s.create(t, nil)
	// /dev/null's numbers for the char node: harmless if written, and
	// detectable (a write through it leaves the node in place).
	if out, err := rootExecErr(k, fmt.Sprintf("cd /home/work && busybox mknod blk b %d %d && busybox mknod chr c 1 3 && busybox mkfifo fifo", major, minor)); err != nil {
		testutil.Missing(t, "mknod as root in a kernel (Docker's default CAP_MKNOD): %v %s", err, out)
	}
	payload := []byte("uploaded by the manager\n")

	check := func(t *testing.T, name string) {
		t.Helper()
		t0 := time.Now()
		_, err := s.call(secCallTimeout, "upload_file", k.id, name, payload)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("upload_file onto %s: no answer within %s (the agent opened the node and blocks)", name, time.Since(t0).Round(time.Millisecond))
			return
		}
		host := filepath.Join(k.work, name)
		fi, lerr := os.Lstat(host)
		if err != nil {
			t.Logf("upload_file onto %s refused: %s", name, remoteErr(t, "upload_file "+name, err))
			return
		}
		switch {
		case lerr != nil:
			t.Errorf("upload_file onto %s answered OK, but the host path: %v", name, lerr)
		case !fi.Mode().IsRegular():
			t.Errorf("upload_file onto %s answered OK and the entry is still %v: the agent wrote through the node instead of replacing it", name, fi.Mode().Type())
		default:
			if got, _ := os.ReadFile(host); !bytes.Equal(got, payload) {
				t.Errorf("upload_file onto %s: the new file holds %q", name, got)
			}
		}
	}
	t.Run("block device", func(t *testing.T) {
		check(t, "blk")
		_ = exec.Command("blockdev", "--flushbufs", loopDev).Run()
		got, err := os.ReadFile(backing)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pattern) {
			n := 0
			for n < len(got) && n < len(pattern) && got[n] == pattern[n] {
				n++
			}
			t.Errorf("the host loop device %s was written through the planted node: backing file differs from byte %d (now %q...)", loopDev, n, got[:min(len(got), 40)])
		}
	})
	t.Run("char device", func(t *testing.T) { check(t, "chr") })
	t.Run("fifo", func(t *testing.T) {
		t.Cleanup(func() { unblockFIFO(filepath.Join(k.work, "fifo")) })
		check(t, "fifo")
	})
	s.mustAnswer(t, "uploads onto device nodes")
}

// Attack 2a: the kernel swaps a small file and a 64 MiB sparse file onto
// the same name as fast as it can, so that download_single's size check
// sees the small one and its read the big one. No answer may exceed the
// 1 MiB limit, and the agent's memory must not follow the big file. The
// kernel's renames are made from the host side of its /home/work (the
// same directory, the same rename(2)): a shell loop in the container
// swaps too slowly to hit the window between check and read.
func TestSecurityDownloadSingleSwapRace_Integration(t *testing.T) {
	s := startSecAgent(t)
	k := s.create(t, nil)
	rootExec(t, k, "cd /home/work && echo small-file-content > small && busybox truncate -s 64M big && cp small f")
	var (
		swapping = make(chan struct{})
		swapDone = make(chan struct{})
		swaps    atomic.Int64
	)
	go func() {
		defer close(swapDone)
		w := func(n string) string { return filepath.Join(k.work, n) }
		for {
			select {
			case <-swapping:
				return
			default:
			}
			for _, src := range []string{"small", "big"} {
				_ = os.Remove(w("t-" + src))
				if os.Link(w(src), w("t-"+src)) == nil && os.Rename(w("t-"+src), w("f")) == nil {
					swaps.Add(1)
				}
			}
		}
	}()
	stopSwapping := sync.OnceFunc(func() { close(swapping); <-swapDone })
	t.Cleanup(stopSwapping)
	pid := s.cmd.Process.Pid
	time.Sleep(300 * time.Millisecond)
	idle := float64(rssKiB(t, pid)) / 1024
	stop := rssPeak(t, pid)
	var (
		calls, small, tooLarge, other atomic.Int64
		mu                            sync.Mutex
		biggest                       int
		hangs                         []string
	)
	deadline := time.Now().Add(testutil.Slow(5 * time.Second))
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.Dial(s.rpc, 5*time.Second, nil)
			if err != nil {
				mu.Lock()
				hangs = append(hangs, err.Error())
				mu.Unlock()
				return
			}
			defer c.Close()
			for time.Now().Before(deadline) && calls.Load() < 1000 {
				calls.Add(1)
				ctx, cancel := context.WithTimeout(context.Background(), secCallTimeout)
				v, err := c.Call(ctx, "download_single", []any{k.id, "f"}, nil)
				cancel()
				if err != nil {
					var re *client.RemoteError
					switch {
					case errors.As(err, &re) && (strings.Contains(re.Repr, "1 MiB") || strings.Contains(strings.ToLower(re.Repr), "too large") || strings.Contains(strings.ToLower(re.Repr), "limit")):
						tooLarge.Add(1)
					case errors.As(err, &re):
						other.Add(1)
					default:
						mu.Lock()
						hangs = append(hangs, err.Error())
						mu.Unlock()
						return
					}
					continue
				}
				b, _ := v.([]byte)
				mu.Lock()
				if len(b) > biggest {
					biggest = len(b)
				}
				mu.Unlock()
				if len(b) <= 1<<20 {
					small.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	peak := stop()
	stopSwapping()
	t.Logf("%d renames; %d download_single calls: %d answers within the limit, %d refused as too large, %d other errors; biggest answer %d bytes; RSS idle %.1f MiB, peak %.1f MiB",
		swaps.Load(), calls.Load(), small.Load(), tooLarge.Load(), other.Load(), biggest, idle, peak)
	if len(hangs) > 0 {
		t.Errorf("%d download_single calls got no answer within %s (the agent was reading a swapped-in 64 MiB file), first: %s", len(hangs), secCallTimeout, hangs[0])
	}
	if biggest > 1<<20 {
		t.Errorf("download_single answered %d bytes, over the 1 MiB limit: the file was swapped between the size check and the read", biggest)
	}
	if peak > idle+48 {
		t.Errorf("the agent's RSS rose from %.1f MiB to %.1f MiB while answering a file capped at 1 MiB", idle, peak)
	}
	if small.Load() == 0 && tooLarge.Load() == 0 {
		t.Error("the race never ran: neither file was ever seen")
	}
	s.mustAnswer(t, "the swap race")
}

// Attack 2b: a 100 GiB sparse file (no disk used) is asked for whole. Both
// download_single and download_file must refuse it with a size error,
// quickly and without reading it into memory.
func TestSecurityHugeSparseDownload_Integration(t *testing.T) {
	s := startSecAgent(t)
	k := s.create(t, nil)
	rootExec(t, k, "busybox truncate -s 100G /home/work/huge")
	pid := s.cmd.Process.Pid
	idle := float64(rssKiB(t, pid)) / 1024
	for _, meth := range []string{"download_single", "download_file"} {
		t.Run(meth, func(t *testing.T) {
			stop := rssPeak(t, pid)
			t0 := time.Now()
			v, err := s.timed(t, meth+" of a 100 GiB file", meth, k.id, "huge")
			el := time.Since(t0)
			peak := stop()
			if err == nil {
				b, _ := v.([]byte)
				t.Fatalf("%s of a 100 GiB file answered %d bytes instead of a size error", meth, len(b))
			}
			if errors.Is(err, context.DeadlineExceeded) {
				return
			}
			msg := remoteErr(t, meth, err)
			if !strings.Contains(msg, "1 MiB") && !strings.Contains(strings.ToLower(msg), "too large") && !strings.Contains(strings.ToLower(msg), "limit") {
				t.Errorf("%s of a 100 GiB file: the error does not name the size limit: %s", meth, msg)
			}
			if el > testutil.Slow(2*time.Second) {
				t.Errorf("%s took %s to refuse", meth, el)
			}
			if peak > idle+48 {
				t.Errorf("%s: the agent's RSS rose from %.1f MiB to %.1f MiB", meth, idle, peak)
			}
			t.Logf("%s refused in %s: %s (RSS peak %.1f MiB, idle %.1f MiB)", meth, el.Round(time.Millisecond), msg, peak, idle)
		})
	}
	s.mustAnswer(t, "the huge downloads")
}

// Attack 3: the kernel makes /home/work/p a FIFO. list_files,
// download_file and download_single on it must answer (an error or an
// entry) in time instead of blocking in open(2) forever, and the agent
// keeps serving.
func TestSecurityFIFOReadsAnswerInTime_Integration(t *testing.T) {
	s := startSecAgent(t)
	k := s.create(t, nil)
	rootExec(t, k, "cd /home/work && busybox mkfifo p && busybox mkdir d && busybox mkfifo d/q && echo ok > d/r")
	t.Cleanup(func() {
		unblockFIFO(filepath.Join(k.work, "p"))
		unblockFIFO(filepath.Join(k.work, "d", "q"))
	})
	for _, c := range []struct{ meth, path string }{
		{"list_files", "p"},
		{"download_single", "p"},
		{"download_file", "p"},
		{"download_file", "d"},
		{"list_files", "d"},
	} {
		t.Run(c.meth+" "+c.path, func(t *testing.T) {
			v, err := s.timed(t, c.meth+" on a FIFO", c.meth, k.id, c.path)
			switch {
			case errors.Is(err, context.DeadlineExceeded):
			case err != nil:
				t.Logf("answered with an error: %s", remoteErr(t, c.meth, err))
			default:
				if b, ok := v.([]byte); ok {
					t.Logf("answered %d bytes", len(b))
				} else {
					t.Logf("answered %v", v)
				}
			}
			s.mustAnswer(t, c.meth+" on a FIFO")
		})
	}
	// Something else on the same kernel still answers.
	if _, err := s.call(secCallTimeout, "list_files", k.id, "."); err != nil {
		t.Fatalf("list_files of /home/work after the FIFO calls: %v", err)
	}
}

// tarHas reports whether a tar archive holds needle in any member's
// name, link target or content.
func tarHas(b []byte, needle string) bool {
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			return bytes.Contains(b, []byte(needle))
		}
		if strings.Contains(h.Name, needle) || strings.Contains(h.Linkname, needle) {
			return true
		}
		data, _ := io.ReadAll(tr)
		if bytes.Contains(data, []byte(needle)) {
			return true
		}
	}
}

// listNames decodes list_files' answer into file names and its error text.
func listNames(t *testing.T, v any) ([]string, string) {
	t.Helper()
	m, ok := v.(msgpack.Map)
	if !ok {
		t.Fatalf("list_files answered %#v", v)
	}
	filesV, _ := m.Get("files")
	errV, _ := m.Get("errors")
	var files []struct {
		Filename string `json:"filename"`
	}
	if fs, _ := filesV.(string); fs != "" {
		if err := json.Unmarshal([]byte(fs), &files); err != nil {
			t.Fatalf("list_files files %q: %v", fs, err)
		}
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Filename)
	}
	e, _ := errV.(string)
	return names, e
}

// Attack 4: the kernel plants symlinks in /home/work to host paths (an
// absolute one to /etc, one to a host directory the test owns, a relative
// one up into the scratch's config dir, .ssh to a host directory), and a
// hard link between two files of /home/work. Uploads, downloads and
// listings through them must neither read nor write outside the kernel's
// /home/work.
func TestSecuritySymlinkEscapes_Integration(t *testing.T) {
	s := startSecAgent(t)
	hostDir := t.TempDir()
	secret := "HOST-SECRET-" + uuid.NewString()
	if err := os.WriteFile(filepath.Join(hostDir, "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	sshDir := t.TempDir()
	k := s.create(t, nil)
	rootExec(t, k, fmt.Sprintf(`cd /home/work && busybox ln -s /etc x && busybox ln -s %s hd && busybox ln -s %s/secret.txt hf &&
busybox ln -s ../config cfg && busybox ln -s ../../.. up && busybox rm -rf .ssh && busybox ln -s %s .ssh &&
echo original > a && busybox ln a hl`, hostDir, hostDir, sshDir))
	hostPasswd, _ := os.ReadFile("/etc/passwd")
	hostEnviron, _ := os.ReadFile(filepath.Join(s.scratch, k.id, "config", "environ.txt"))
	leaks := func(b []byte) string {
		switch {
		case bytes.Contains(b, []byte(secret)):
			return "the host directory's secret"
		case len(hostPasswd) > 0 && bytes.Contains(b, hostPasswd):
			return "the host's /etc/passwd"
		case len(hostEnviron) > 0 && bytes.Contains(b, hostEnviron):
			return "the scratch's config/environ.txt"
		case bytes.Contains(b, []byte("agent.toml")):
			return "the agent's own directory"
		}
		return ""
	}
	t.Run("download through symlinks", func(t *testing.T) {
		for _, p := range []string{"x/passwd", "hd/secret.txt", "hf", "cfg/environ.txt", "up/agent.toml", "/home/work/hd/secret.txt"} {
			for _, meth := range []string{"download_single", "download_file"} {
				v, err := s.timed(t, meth+" "+p, meth, k.id, p)
				if err != nil {
					continue
				}
				b, _ := v.([]byte)
				if what := leaks(b); what != "" {
					t.Errorf("%s %s returned %s", meth, p, what)
				}
			}
		}
		for _, p := range []string{".", "hd", "x", "up"} {
			v, err := s.timed(t, "download_file "+p, "download_file", k.id, p)
			if err != nil {
				continue
			}
			b, _ := v.([]byte)
			if tarHas(b, secret) || (len(hostPasswd) > 0 && tarHas(b, string(hostPasswd))) {
				t.Errorf("download_file %s: the archive holds host content", p)
			}
		}
	})
	t.Run("list through symlinks", func(t *testing.T) {
		for _, p := range []string{"hd", "x", "up", "cfg", ".ssh"} {
			v, err := s.timed(t, "list_files "+p, "list_files", k.id, p)
			if err != nil {
				continue
			}
			names, _ := listNames(t, v)
			for _, n := range names {
				if n == "secret.txt" || n == "passwd" || n == "agent.toml" || n == "environ.txt" || n == "scratch" {
					t.Errorf("list_files %s lists the host's %s", p, n)
				}
			}
		}
	})
	t.Run("upload through symlinks", func(t *testing.T) {
		name := "bai-sec-planted-" + uuid.NewString()[:8]
		t.Cleanup(func() { _ = os.Remove(filepath.Join("/etc", name)) })
		for _, p := range []string{"x/" + name, "hd/" + name, "hd/sub/" + name, "hf", "cfg/" + name, "up/" + name, ".ssh/authorized_keys", "/home/work/hd/" + name} {
			_, _ = s.timed(t, "upload_file "+p, "upload_file", k.id, p, []byte("planted"))
		}
		if _, err := os.Stat(filepath.Join("/etc", name)); err == nil {
			t.Errorf("upload_file wrote /etc/%s on the host", name)
		}
		for _, dir := range []string{hostDir, sshDir, filepath.Join(s.scratch, k.id, "config"), s.root} {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "bai-sec-planted") || e.Name() == "sub" || e.Name() == "authorized_keys" {
					t.Errorf("upload_file wrote %s on the host", filepath.Join(dir, e.Name()))
				}
			}
		}
		if b, _ := os.ReadFile(filepath.Join(hostDir, "secret.txt")); string(b) != secret {
			t.Errorf("upload_file through hf overwrote the host file: %q", b)
		}
	})
	t.Run("hard link inside /home/work", func(t *testing.T) {
		_, err := s.timed(t, "upload_file hl", "upload_file", k.id, "hl", []byte("replaced\n"))
		if err != nil {
			t.Logf("upload_file onto a hard link refused: %v", err)
			return
		}
		v, err := s.timed(t, "download_single hl", "download_single", k.id, "hl")
		if err != nil {
			t.Fatalf("download_single of the uploaded hard link: %v", err)
		}
		if b, _ := v.([]byte); string(b) != "replaced\n" {
			t.Errorf("download_single hl after the upload: %q", b)
		}
		a, _ := os.ReadFile(filepath.Join(k.work, "a"))
		t.Logf("after upload_file onto hl, its other name a holds %q", a)
		if v, err := s.timed(t, "download_file .", "download_file", k.id, "."); err != nil {
			t.Logf("download_file of /home/work (hard link, planted symlinks) refused: %v", err)
		} else if b, _ := v.([]byte); !tarHas(b, "replaced") {
			t.Error("download_file of /home/work lacks the uploaded content")
		}
	})
	s.mustAnswer(t, "the symlink attacks")
}

// Attack 4b: files the agent writes itself. The kernel replaces
// /home/work/.ssh and a dotfile's directory with symlinks to host
// directories and id_container with a symlink to a host file; a restart
// (which may write the SSH keypair and dotfiles again) must not write
// there.
func TestSecurityRestartThroughPlantedSymlinks_Integration(t *testing.T) {
	s := startSecAgent(t)
	sshDir, dotDir := t.TempDir(), t.TempDir()
	hostFile := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(hostFile, []byte("host-owned\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k := s.create(t, func(cfg map[string]any) {
		cfg["internal_data"] = map[string]any{
			"ssh_keypair": map[string]any{"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBaiSecTestKey bai-sec", "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nbai-sec-test\n-----END OPENSSH PRIVATE KEY-----\n"},
			"dotfiles":    []any{map[string]any{"path": "dots/tool.conf", "data": "setting=1", "perm": "644"}},
		}
	})
	rootExec(t, k, fmt.Sprintf("cd /home/work && test -f .ssh/authorized_keys && test -f dots/tool.conf && busybox rm -rf .ssh dots id_container && busybox ln -s %s .ssh && busybox ln -s %s dots && busybox ln -s %s id_container",
		sshDir, dotDir, hostFile))
	// Refusing the restart is acceptable; writing through the links is not.
	if _, err := s.call(testutil.Slow(90*time.Second), "restart_kernel", k.session, k.id, nil, map[string]any{}); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("restart_kernel: no answer: %v", err)
		}
		t.Logf("restart_kernel refused: %v", err)
	}
	for _, dir := range []string{sshDir, dotDir} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			t.Errorf("the restart wrote %s on the host through a planted symlink", filepath.Join(dir, e.Name()))
		}
	}
	if b, _ := os.ReadFile(hostFile); string(b) != "host-owned\n" {
		t.Errorf("the restart overwrote the host file through id_container: %q", b)
	}
	if fi, err := os.Lstat(hostFile); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the host file's owner changed: %v", err)
	}
	s.mustAnswer(t, "the restart")
}

// secNothingLeft asserts a refused creation left no container, scratch
// dir or allocation.
func secNothingLeft(t *testing.T, s *secAgent, kid string) {
	t.Helper()
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=ai.backend.kernel-id="+kid).CombinedOutput()
	if strings.TrimSpace(string(out)) != "" {
		t.Errorf("a container is left: %s", out)
	}
	if _, err := os.Lstat(filepath.Join(s.scratch, kid)); err == nil {
		t.Error("a scratch dir is left")
	}
	v, err := s.call(secCallTimeout, "bai_status")
	if err != nil {
		t.Fatalf("bai_status: %v", err)
	}
	b, _ := json.Marshal(wire.Plain(v))
	var st struct {
		Slots   map[string]struct{ Used string } `json:"slots"`
		Kernels []any                            `json:"kernels"`
	}
	_ = json.Unmarshal(b, &st)
	for slot, u := range st.Slots {
		if u.Used != "" && u.Used != "0" {
			t.Errorf("slot %s still has %s allocated", slot, u.Used)
		}
	}
	if len(st.Kernels) != 0 {
		t.Errorf("%d kernels registered", len(st.Kernels))
	}
}

// containerEnv is the container's environment as docker inspect shows it.
func containerEnv(t *testing.T, cid string) []string {
	t.Helper()
	out, err := exec.Command("docker", "inspect", "--format", "{{json .Config.Env}}", cid).Output()
	if err != nil {
		t.Fatalf("docker inspect: %v", err)
	}
	var env []string
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatal(err)
	}
	return env
}

// Attack 5: environ smuggling in create_kernels. A value with a newline
// ("x\nLOCAL_USER_ID=0") becomes its own line in the kernel's
// environ.txt (which the kernel's shells and the agent's recovery read
// back), and keys with '=' or NUL, or naming LD_PRELOAD, LOCAL_USER_ID or
// LOCAL_GROUP_ID, let the user pick the kernel's identity or preload. Each
// must be refused with an error naming the key, leaving nothing behind.
func TestSecurityEnvironSmuggling_Integration(t *testing.T) {
	s := startSecAgent(t)
	for _, c := range []struct {
		name, key, value string
	}{
		{"newline in value", "ZZZ", "x\nLOCAL_USER_ID=0"},
		{"carriage return and newline", "ZZZ", "x\r\nLOCAL_GROUP_ID=0"},
		{"equals in key", "LOCAL_USER_ID=0\nA", "x"},
		{"equals sign key", "A=B", "x"},
		{"NUL in key", "AB\x00C", "x"},
		{"NUL in value", "ZZZ", "x\x00LOCAL_USER_ID=0"},
		{"LD_PRELOAD", "LD_PRELOAD", "/home/work/evil.so"},
		{"LOCAL_USER_ID", "LOCAL_USER_ID", "0"},
		{"LOCAL_GROUP_ID", "LOCAL_GROUP_ID", "0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, err := s.tryCreate(func(cfg map[string]any) {
				cfg["environ"].(map[string]any)[c.key] = c.value
			})
			if err != nil {
				msg := remoteErr(t, "create_kernels", err)
				if strings.Contains(msg, "OCI runtime") || strings.Contains(msg, "Error response from daemon") {
					t.Errorf("refused only by Docker when the container started (the agent created it): %s", msg)
				} else if !secNamesKey(msg, c.key) {
					t.Errorf("refused, but the error does not name the key %q: %s", c.key, msg)
				}
				secNothingLeft(t, s, k.id)
				return
			}
			defer s.destroy(t, k)
			env := containerEnv(t, k.container)
			var bad []string
			for _, e := range env {
				if strings.ContainsAny(e, "\n\r\x00") {
					bad = append(bad, fmt.Sprintf("entry %q holds a line break or NUL", e))
				}
				key, val, _ := strings.Cut(e, "=")
				if (key == "LOCAL_USER_ID" || key == "LOCAL_GROUP_ID") && val != "1000" {
					bad = append(bad, fmt.Sprintf("%s=%s (the agent's kernel user is 1000)", key, val))
				}
				if key == "LD_PRELOAD" {
					bad = append(bad, "LD_PRELOAD="+val+" reached the container")
				}
			}
			envTxt, _ := os.ReadFile(filepath.Join(s.scratch, k.id, "config", "environ.txt"))
			for _, line := range strings.Split(string(envTxt), "\n") {
				if line == "LOCAL_USER_ID=0" || line == "LOCAL_GROUP_ID=0" || strings.HasPrefix(line, "LD_PRELOAD=") || strings.ContainsRune(line, 0) || strings.HasSuffix(line, "\r") {
					bad = append(bad, fmt.Sprintf("config/environ.txt has the line %q", line))
				}
			}
			if len(bad) == 0 {
				bad = append(bad, "nothing visible in docker inspect or config/environ.txt")
			}
			t.Errorf("create_kernels accepted environ {%q: %q}; observed: %s", c.key, c.value, strings.Join(bad, "; "))
		})
	}
}

// secNamesKey reports whether an error text names key in some rendering
// (as is, quoted, escaped, or with its control characters dropped).
func secNamesKey(msg, key string) bool {
	msg = strings.ReplaceAll(msg, `\\`, `\`)
	q := strings.Trim(strconv.Quote(key), `"`)
	for _, form := range []string{key, q, strings.ReplaceAll(q, `\x00`, `\u0000`), strings.ReplaceAll(q, `\x00`, `\0`),
		strings.NewReplacer("\x00", "", "\n", "", "\r", "").Replace(key)} {
		if form != "" && strings.Contains(msg, form) {
			return true
		}
	}
	return false
}

// Attack 6: registry credentials in create_kernels
// (image.registry.username/password) are for pulling only. The password
// must appear in no file of the kernel's scratch (config/ is mounted into
// the kernel as /home/config), in no label or environment variable of
// its container, and not in the agent's log.
func TestSecurityRegistryPasswordNotLeaked_Integration(t *testing.T) {
	s := startSecAgent(t)
	password := "bai-sec-pw-" + uuid.NewString()
	k := s.create(t, func(cfg map[string]any) {
		cfg["image"].(map[string]any)["registry"] = map[string]any{"name": "", "url": "https://registry.bai-sec.invalid", "username": "bai-sec-user", "password": password}
	})
	defer s.destroy(t, k)
	base := filepath.Join(s.scratch, k.id)
	_ = filepath.Walk(base, func(p string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return nil
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(password)) {
			rel, _ := filepath.Rel(base, p)
			t.Errorf("the registry password is in the scratch file %s", rel)
		}
		return nil
	})
	if out := rootExec(t, k, "busybox grep -rl "+password+" /home/config /home/work 2>/dev/null; true"); out != "" {
		t.Errorf("the kernel can read the registry password in: %s", strings.ReplaceAll(out, "\n", ", "))
	}
	ins, err := exec.Command("docker", "inspect", k.container).Output()
	if err != nil {
		t.Fatalf("docker inspect: %v", err)
	}
	if bytes.Contains(ins, []byte(password)) {
		var c []struct {
			Config struct {
				Env    []string
				Labels map[string]string
			}
		}
		_ = json.Unmarshal(ins, &c)
		where := "docker inspect"
		if len(c) == 1 {
			for _, e := range c[0].Config.Env {
				if strings.Contains(e, password) {
					where += ", env " + strings.SplitN(e, "=", 2)[0]
				}
			}
			for l, v := range c[0].Config.Labels {
				if strings.Contains(v, password) {
					where += ", label " + l
				}
			}
		}
		t.Errorf("the registry password is in the container's configuration (%s)", where)
	}
	// The log is read after the agent has logged the creation.
	time.Sleep(200 * time.Millisecond)
	if b, _ := os.ReadFile(s.logPath); bytes.Contains(b, []byte(password)) {
		t.Error("the registry password is in the agent's log")
	}
}
