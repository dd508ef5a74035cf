package testutil

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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
	frozen   bool
	t        testing.TB
}

// StartEngine starts a test engine; liveRestore sets "live-restore".
func StartEngine(t testing.TB, liveRestore bool) *Engine {
	t.Helper()
	RequireRoot(t)
	if _, err := exec.LookPath("dockerd"); err != nil {
		Missing(t, "dockerd (apt-get install docker.io)")
	}
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bai-eng-")
	if err != nil {
		t.Fatal(err)
	}
	n := rand.IntN(200) + 20
	e := &Engine{dir: dir, bridge: fmt.Sprintf("bai-t%d", n), addr: fmt.Sprintf("10.213.%d.1", n), t: t}
	e.Sock = filepath.Join(dir, "docker.sock")
	e.Host = "unix://" + e.Sock
	cfg := `{}`
	if liveRestore {
		cfg = `{"live-restore": true}`
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"ip", "link", "add", e.bridge, "type", "bridge"},
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
	t.Cleanup(e.cleanup)
	e.Start()
	return e
}

// Start (re)starts the engine and waits until it answers.
func (e *Engine) Start() {
	e.t.Helper()
	logf, err := os.OpenFile(filepath.Join(e.dir, "dockerd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	e.cmd = exec.Command("dockerd", e.args...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("start dockerd: %v", err)
	}
	logf.Close()
	Eventually(e.t, 60*time.Second, "test engine answers", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return exec.CommandContext(ctx, "docker", "-H", e.Host, "info").Run() == nil
	})
}

// Stop signals the engine (SIGTERM: an orderly shutdown; SIGKILL: a
// crash) and waits until it is gone.
func (e *Engine) Stop(sig syscall.Signal) {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = e.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = e.cmd.Process.Kill()
		<-done
	}
	e.cmd = nil
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
