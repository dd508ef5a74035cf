package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend/docker"
)

// Engine is a dockerd owned by a test: its own config file, socket,
// data-root, exec-root, pid file and bridge, iptables off. The machine's
// own engine is never touched (never --bridge=none: dockerd would delete
// the host's docker0).
type Engine struct {
	Sock   string // unix socket path
	Host   string // DOCKER_HOST value
	dir    string
	bridge string
	addr   string // the bridge's address on the host
	swarm  bool
	// gwbridge is set when joining a swarm made the host's
	// docker_gwbridge, which the cleanup then removes.
	gwbridge bool
	args     []string
	cmd      *exec.Cmd
	waited   chan struct{} // closed when cmd has exited (and been waited for)
	frozen   bool
	// hideUnified: dockerd runs in its own mount namespace without the
	// hybrid host's cgroup2 mount.
	hideUnified bool
	t           testing.TB
}

// EngineOptions configure a test engine.
type EngineOptions struct {
	// LiveRestore sets "live-restore".
	LiveRestore bool
	// Runtimes is daemon.json's "runtimes": name to path and arguments.
	Runtimes map[string]EngineRuntime
	// HideUnifiedCgroup runs the engine in a mount namespace of its own
	// without the cgroup2 mount of a hybrid host (/sys/fs/cgroup/unified),
	// so runtimes that refuse hybrid mode (crun 1.8) see a v1 host. The
	// machine's own mounts are unchanged.
	HideUnifiedCgroup bool
}

// EngineRuntime is one entry of daemon.json's "runtimes".
type EngineRuntime struct {
	Path        string   `json:"path"`
	RuntimeArgs []string `json:"runtimeArgs,omitempty"`
}

// StartEngine starts a test engine; liveRestore sets "live-restore".
func StartEngine(t testing.TB, liveRestore bool) *Engine {
	t.Helper()
	return StartEngineWith(t, EngineOptions{LiveRestore: liveRestore})
}

// StartEngineWith starts a test engine with options.
func StartEngineWith(t testing.TB, o EngineOptions) *Engine {
	t.Helper()
	liveRestore := o.LiveRestore
	RequireRoot(t)
	if _, err := exec.LookPath("dockerd"); err != nil {
		Missing(t, "dockerd (apt-get install docker.io)")
	}
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bai-eng-")
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{dir: dir, t: t}
	e.Sock = filepath.Join(dir, "docker.sock")
	e.Host = "unix://" + e.Sock
	daemon := map[string]any{}
	if liveRestore {
		daemon["live-restore"] = true
	}
	if len(o.Runtimes) > 0 {
		daemon["runtimes"] = o.Runtimes
	}
	cfg, err := json.Marshal(daemon)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	// The bridge (and its /24) is picked at random; another test process's
	// engine, or one a killed test left, may hold the name: "ip link add"
	// fails on it and another is tried.
	for try := 0; ; try++ {
		n := rand.IntN(200) + 20
		e.bridge, e.addr = fmt.Sprintf("bai-t%d", n), fmt.Sprintf("10.213.%d.1", n)
		out, err := exec.Command("ip", "link", "add", e.bridge, "type", "bridge").CombinedOutput()
		if err == nil {
			break
		}
		if !strings.Contains(string(out), "File exists") || try == 40 {
			t.Fatalf("ip link add %s type bridge: %v %s", e.bridge, err, out)
		}
	}
	for _, c := range [][]string{
		{"ip", "addr", "add", e.addr + "/24", "dev", e.bridge},
		{"ip", "link", "set", e.bridge, "up"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	e.args = []string{"--config-file", filepath.Join(dir, "daemon.json"), "--host", e.Host,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"), "--iptables=false", "--bridge", e.bridge}
	if o.HideUnifiedCgroup {
		e.hideUnified = true
	}
	t.Cleanup(e.cleanup)
	e.Start()
	return e
}

// Start (re)starts the engine and waits until it answers. A dockerd
// that exits or does not answer within a minute is stopped and started
// again (three tries), as a service manager restarts a failed unit; only
// then does the test fail (with Errorf: Start also runs on the chaos
// soak's fault goroutines, where Fatal would end only that goroutine).
func (e *Engine) Start() {
	e.t.Helper()
	var why string
	for try := 1; try <= 3; try++ {
		if why = e.startOnce(); why == "" {
			return
		}
		e.t.Logf("test engine start %d of 3 failed: %s; stopping it and its containerd", try, why)
		e.Stop(syscall.SIGKILL)
	}
	e.t.Errorf("test engine did not start in three tries: %s (log: %s)", why, filepath.Join(e.dir, "dockerd.log"))
}

// startOnce starts dockerd and says why it is not answering, if it is not.
func (e *Engine) startOnce() string {
	logf, err := os.OpenFile(filepath.Join(e.dir, "dockerd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err.Error()
	}
	cmd := exec.Command("dockerd", e.args...)
	if e.hideUnified {
		// unshare execs dockerd in place: cmd's process is dockerd's.
		script := `if grep -q ' /sys/fs/cgroup/unified cgroup2 ' /proc/self/mounts; then umount /sys/fs/cgroup/unified || exit 1; fi; exec dockerd "$@"`
		cmd = exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", script, "dockerd"}, e.args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return "start dockerd: " + err.Error()
	}
	e.cmd = cmd
	exited := make(chan struct{})
	e.waited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ok := exec.CommandContext(ctx, "docker", "-H", e.Host, "info").Run() == nil
		cancel()
		if ok {
			return ""
		}
		select {
		case <-exited:
			return "dockerd exited: " + cmd.ProcessState.String()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return "no answer within 60 s"
}

// Stop signals the engine (SIGTERM: an orderly shutdown; SIGKILL: a
// crash) and waits until it is gone, then until its containerd is gone
// too (killed if need be): a containerd that outlives its dockerd for a
// moment keeps its socket file while it exits, and a dockerd started
// meanwhile takes it for a live one, waits for it in vain and exits
// ("timeout waiting for containerd to start"; seen by the chaos soak).
// The containers' shims survive; the next dockerd's containerd adopts
// or cleans them, as after a crash of both.
func (e *Engine) Stop(sig syscall.Signal) {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Signal(sig)
	select {
	case <-e.waited:
	case <-time.After(60 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.waited
	}
	e.cmd = nil
	cdir := filepath.Join(e.dir, "exec", "containerd")
	b, err := os.ReadFile(filepath.Join(cdir, "containerd.pid"))
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && isContainerd(pid, e.dir) {
		gone := func() bool { return syscall.Kill(pid, 0) != nil || !isContainerd(pid, e.dir) }
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !gone(); time.Sleep(100 * time.Millisecond) {
		}
		if !gone() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !gone(); time.Sleep(50 * time.Millisecond) {
			}
		}
	}
	// dockerd takes a pid file naming a live process (an exiting
	// containerd, or a zombie not yet reaped) for a running containerd
	// and waits for its socket: without them it starts its own.
	_ = os.Remove(filepath.Join(cdir, "containerd.pid"))
	_ = os.Remove(filepath.Join(cdir, "containerd.sock"))
}

// isContainerd says whether pid is this engine's containerd (the pid file
// may name a reused pid).
func isContainerd(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "containerd") && strings.Contains(string(b), dir)
}

// Freeze stops the engine's process without ending it (SIGSTOP): its
// socket accepts connections and nothing answers, as a deadlocked
// dockerd does. Thaw (SIGCONT) lets it go on; cleanup thaws it first.
func (e *Engine) Freeze() {
	if e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Signal(syscall.SIGSTOP)
		e.frozen = true
	}
}

// Thaw resumes a frozen engine.
func (e *Engine) Thaw() {
	if e.cmd != nil && e.cmd.Process != nil && e.frozen {
		_ = e.cmd.Process.Signal(syscall.SIGCONT)
		e.frozen = false
	}
}

// Backend is a client of the test engine.
func (e *Engine) Backend() *docker.Backend {
	e.t.Helper()
	be, err := docker.NewHost(e.Host)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { be.Close() })
	return be
}

// ImportTestImage builds the busybox test kernel image into the engine.
func (e *Engine) ImportTestImage() string { return e.ImportTestImageWith(nil) }

// ImportTestImageWith builds it with labels overriding ImageLabels.
func (e *Engine) ImportTestImageWith(override map[string]string) string {
	e.t.Helper()
	be := e.Backend()
	labels := map[string]string{}
	for k, v := range ImageLabels {
		labels[k] = v
	}
	for k, v := range override {
		labels[k] = v
	}
	ref, err := buildImage(be.Client(), ModuleRoot(e.t), labels)
	if err != nil {
		e.t.Fatalf("build test image in the test engine: %v", err)
	}
	return ref
}

// ImportPythonImage builds the python kernel image (PythonImage's, from
// the host's python3.11) into the engine.
func (e *Engine) ImportPythonImage() string {
	e.t.Helper()
	ref, err := buildPythonImage(e.Backend().Client())
	if err != nil {
		Missing(e.t, "python kernel image in the test engine: %v", err)
	}
	return ref
}

// Docker runs the docker CLI against the engine.
func (e *Engine) Docker(args ...string) string {
	e.t.Helper()
	out, err := exec.Command("docker", append([]string{"-H", e.Host}, args...)...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// InitSwarm makes the engine a single-node swarm manager (overlay
// networks), advertising its bridge address. Swarm mode creates the
// host interface docker_gwbridge, so a host that already has one (a
// swarm member) cannot run this test.
func (e *Engine) InitSwarm() {
	e.t.Helper()
	if err := exec.Command("ip", "link", "show", "docker_gwbridge").Run(); err == nil {
		e.t.Skip("this host already has a docker_gwbridge (it is in a swarm): a test swarm would take it over")
	}
	e.gwbridge = true
	e.Docker("swarm", "init", "--advertise-addr", e.addr, "--listen-addr", e.addr+":2377")
	e.swarm = true
}

func (e *Engine) cleanup() {
	e.Thaw()
	if e.cmd != nil {
		// Remove what runs there first, then stop the engine.
		_ = exec.Command("sh", "-c", "docker -H "+e.Host+" ps -aq | xargs -r docker -H "+e.Host+" rm -f").Run()
	}
	if e.swarm && e.cmd != nil {
		_ = exec.Command("docker", "-H", e.Host, "swarm", "leave", "--force").Run()
	}
	e.Stop(syscall.SIGTERM)
	if e.gwbridge {
		_ = exec.Command("ip", "link", "del", "docker_gwbridge").Run()
	}
	// containerd-shims of a killed engine may linger; their mounts too.
	_ = exec.Command("sh", "-c", "pkill -f 'containerd.*"+e.dir+"'").Run()
	_ = exec.Command("sh", "-c", "grep ' "+e.dir+"' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l").Run()
	_ = exec.Command("ip", "link", "del", e.bridge).Run()
	_ = os.RemoveAll(e.dir)
}
