package testutil

import (
	"context"
	"fmt"

	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitTCP(t testing.TB, addr, what string) {
	t.Helper()
	Eventually(t, 30*time.Second, what+" listening on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// Redis is a redis-server process owned by a test.
type Redis struct {
	Addr string
	dir  string
	cmd  *exec.Cmd
	t    testing.TB
}

// StartRedis runs Debian's redis-server on a free loopback port (no
// persistence). Stop and Start let a test take it away and bring it back
// on the same address.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		Missing(t, "redis-server (apt-get install redis-server)")
	}
	r := &Redis{Addr: freeAddr(t), dir: t.TempDir(), t: t}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start (re)starts the server on its address.
func (r *Redis) Start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.Addr)
	r.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log"))
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	waitTCP(r.t, r.Addr, "redis-server")
}

// Stop kills the server.
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// Etcd is an etcd process owned by a test.
type Etcd struct {
	Addr string
}

// StartEtcd runs Debian's etcd on free loopback ports with its data in a
// temp dir.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		Missing(t, "etcd (apt-get install etcd-server)")
	}
	client, peer := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--name", "test", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "test=http://"+peer, "--log-level", "error")
	logf, _ := os.Create(filepath.Join(dir, "etcd.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+os.Getenv("GOARCH"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	waitTCP(t, client, "etcd")
	// The client port opens before etcd serves; wait for a real answer.
	Eventually(t, 30*time.Second, "etcd answers", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return exec.CommandContext(ctx, "etcdctl", "--endpoints", client, "endpoint", "health").Run() == nil
	})
	return &Etcd{Addr: client}
}

// Put writes a key with etcdctl (API v3).
func (e *Etcd) Put(t testing.TB, key, value string) {
	t.Helper()
	out, err := exec.Command("etcdctl", "--endpoints", e.Addr, "put", key, value).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdctl put %s: %v %s", key, err, out)
	}
}

// Get reads a key with etcdctl.
func (e *Etcd) Get(t testing.TB, key string) string {
	t.Helper()
	out, err := exec.Command("etcdctl", "--endpoints", e.Addr, "get", "--print-value-only", key).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdctl get %s: %v %s", key, err, out)
	}
	return string(trimNL(out))
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// FreePort asks the kernel for an unused loopback TCP port.
func FreePort(t testing.TB) int {
	t.Helper()
	return freeAddrPort(t)
}

func freeAddrPort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}

var (
	agentBinOnce sync.Once
	agentBinPath string
	agentBinErr  error
)

// AgentBinary builds bin/bai-agent once per test process (into a temp
// dir) and returns its path.
func AgentBinary(t testing.TB) string {
	t.Helper()
	agentBinOnce.Do(func() {
		// One folder for every test process; binaries older than an hour
		// are from finished runs.
		dir := filepath.Join(os.TempDir(), "bai-agent-test-bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			agentBinErr = err
			return
		}
		if ents, err := os.ReadDir(dir); err == nil {
			for _, e := range ents {
				if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
					_ = os.Remove(filepath.Join(dir, e.Name()))
				}
			}
		}
		agentBinPath = filepath.Join(dir, fmt.Sprintf("bai-agent-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-o", agentBinPath, "./cmd/bai-agent")
		cmd.Dir = ModuleRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			agentBinErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if agentBinErr != nil {
		t.Fatal(agentBinErr)
	}
	return agentBinPath
}

// RemoveContainers force-removes every container whose labels match (the
// test's own agent), so no kernel outlives a test whatever failed.
func RemoveContainers(t testing.TB, labels map[string]string) {
	t.Helper()
	be := RequireDocker(t)
	list, err := be.List(context.Background(), labels)
	if err != nil {
		t.Errorf("list leftover containers: %v", err)
		return
	}
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Add(1)
		go func(id string) { defer wg.Done(); _ = be.Remove(context.Background(), id) }(c.ID)
	}
	wg.Wait()
}
