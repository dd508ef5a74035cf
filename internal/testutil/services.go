package testutil

import (
	"context"

	"net"
	"os"
	"os/exec"
	"path/filepath"
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
		out, err := exec.CommandContext(ctx, "etcdctl", "--endpoints", client, "endpoint", "health").CombinedOutput()
		_ = out
		return err == nil
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
