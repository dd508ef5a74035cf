package testutil

import (
	"context"
	"fmt"
	"github.com/bai-agent/bai-agent/internal/webbundle"

	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	// Args are extra redis-server arguments (e.g. --replicaof).
	Args []string
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
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log")}, r.Args...)
	r.cmd = exec.Command("redis-server", args...)
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

// Sentinel is a Redis master, one replica and a redis-sentinel watching
// them (quorum 1, down after 1 s), all owned by a test.
type Sentinel struct {
	Addr       string // the sentinel's host:port
	MasterName string
	Master     *Redis
	Replica    *Redis
}

// StartSentinel runs the three processes and waits until the sentinel
// knows the master and its replica.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin, err := exec.LookPath("redis-sentinel")
	if err != nil {
		Missing(t, "redis-sentinel (apt-get install redis-sentinel)")
	}
	master := StartRedis(t)
	replica := &Redis{Addr: freeAddr(t), dir: t.TempDir(), t: t}
	mh, mp, _ := net.SplitHostPort(master.Addr)
	replica.Args = []string{"--replicaof", mh, mp}
	replica.Start()
	t.Cleanup(replica.Stop)
	s := &Sentinel{Addr: freeAddr(t), MasterName: "baimaster", Master: master, Replica: replica}
	dir := t.TempDir()
	_, sp, _ := net.SplitHostPort(s.Addr)
	conf := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\n",
		sp, dir, filepath.Join(dir, "sentinel.log"), s.MasterName, mh, mp, s.MasterName, s.MasterName)
	cf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, cf)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-sentinel: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitTCP(t, s.Addr, "redis-sentinel")
	Eventually(t, 30*time.Second, "sentinel sees the replica", func() bool {
		out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", sp, "sentinel", "replicas", s.MasterName).CombinedOutput()
		return err == nil && strings.Contains(string(out), "slave") && !strings.Contains(string(out), "s_down")
	})
	return s
}

// CurrentMaster asks the sentinel for the master's address.
func (s *Sentinel) CurrentMaster(t testing.TB) string {
	t.Helper()
	_, sp, _ := net.SplitHostPort(s.Addr)
	out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", sp, "sentinel", "get-master-addr-by-name", s.MasterName).CombinedOutput()
	if err != nil {
		t.Fatalf("sentinel get-master-addr-by-name: %v %s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("sentinel answered %q", out)
	}
	return net.JoinHostPort(f[0], f[1])
}

// Etcd is an etcd process owned by a test.
type Etcd struct {
	Addr string
	// CACert is the CA file of a TLS etcd ("" for plain HTTP).
	CACert string
	// ctlAuth is "user:password" once auth is enabled.
	ctlAuth string
}

// EtcdOptions change how StartEtcdWith runs etcd.
type EtcdOptions struct {
	// TLS serves the client port over HTTPS with a certificate for
	// 127.0.0.1 signed by a CA made for the test (Etcd.CACert).
	TLS bool
	// Args are extra etcd flags (e.g. --auth-token-ttl).
	Args []string
}

// StartEtcd runs Debian's etcd on free loopback ports with its data in a
// temp dir.
func StartEtcd(t testing.TB) *Etcd { return StartEtcdWith(t, EtcdOptions{}) }

// StartEtcdWith runs etcd with options.
func StartEtcdWith(t testing.TB, o EtcdOptions) *Etcd {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		Missing(t, "etcd (apt-get install etcd-server)")
	}
	client, peer := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	e := &Etcd{Addr: client}
	scheme := "http://"
	args := []string{"--name", "test", "--data-dir", filepath.Join(dir, "data"),
		"--listen-peer-urls", "http://" + peer, "--initial-advertise-peer-urls", "http://" + peer,
		"--initial-cluster", "test=http://" + peer, "--log-level", "error"}
	if o.TLS {
		scheme = "https://"
		ca, cert, key := WriteTestCerts(t, dir)
		e.CACert = ca
		args = append(args, "--cert-file", cert, "--key-file", key)
	}
	args = append(args, "--listen-client-urls", scheme+client, "--advertise-client-urls", scheme+client)
	args = append(args, o.Args...)
	cmd := exec.Command(bin, args...)
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
		return exec.CommandContext(ctx, "etcdctl", e.ctlArgs("endpoint", "health")...).Run() == nil
	})
	return e
}

func (e *Etcd) ctlArgs(args ...string) []string {
	out := []string{"--endpoints", e.Addr}
	if e.CACert != "" {
		out = []string{"--endpoints", "https://" + e.Addr, "--cacert", e.CACert}
	}
	if e.ctlAuth != "" {
		out = append(out, "--user", e.ctlAuth)
	}
	return append(out, args...)
}

// Ctl runs etcdctl against this etcd and returns its output.
func (e *Etcd) Ctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("etcdctl", e.ctlArgs(args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdctl %v: %v %s", args, err, out)
	}
	return string(out)
}

// EnableAuth creates root with password and a user with read-write access
// to every key, then turns authentication on; etcdctl calls use root.
func (e *Etcd) EnableAuth(t testing.TB, user, password string) {
	t.Helper()
	e.Ctl(t, "user", "add", "root:"+password)
	e.Ctl(t, "user", "add", user+":"+password)
	e.Ctl(t, "role", "add", "agent")
	e.Ctl(t, "role", "grant-permission", "agent", "--prefix=true", "readwrite", "/")
	e.Ctl(t, "user", "grant-role", user, "agent")
	e.Ctl(t, "auth", "enable")
	e.ctlAuth = "root:" + password
}

// Put writes a key with etcdctl (API v3).
func (e *Etcd) Put(t testing.TB, key, value string) {
	t.Helper()
	e.Ctl(t, "put", key, value)
}

// Get reads a key with etcdctl.
func (e *Etcd) Get(t testing.TB, key string) string {
	t.Helper()
	return string(trimNL([]byte(e.Ctl(t, "get", "--print-value-only", key))))
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

var (
	krunnerOnce sync.Once
	krunnerPath string
	krunnerErr  error
)

// KrunnerBinary builds bai-krunner (static, CGO_ENABLED=0) once per test
// process and points $BAI_KRUNNER_BINARY at it, so agents started by the
// test (in-process or as a binary) find their kernel runner.
func KrunnerBinary(t testing.TB) string {
	t.Helper()
	krunnerOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "bai-agent-test-bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			krunnerErr = err
			return
		}
		krunnerPath = filepath.Join(dir, fmt.Sprintf("bai-krunner-%d", os.Getpid()))
		// The web terminal's xterm.js, as `make build` embeds it.
		assets := filepath.Join(ModuleRoot(t), "internal", "krunner", "webassets")
		if err := webbundle.WriteXtermAssets(webbundle.XtermLib, webbundle.XtermAssets, assets); err != nil {
			if os.Getenv("CI") == "true" {
				krunnerErr = fmt.Errorf("web terminal assets (apt-get install node-xterm libjs-xterm): %w", err)
				return
			}
			fmt.Fprintln(os.Stderr, "testutil: the web terminal page will have no xterm.js:", err)
		}
		cmd := exec.Command("go", "build", "-trimpath", "-o", krunnerPath, "./cmd/bai-krunner")
		cmd.Dir = ModuleRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			krunnerErr = fmt.Errorf("build bai-krunner: %v: %s", err, out)
			return
		}
		krunnerErr = os.Setenv("BAI_KRUNNER_BINARY", krunnerPath)
	})
	if krunnerErr != nil {
		t.Fatal(krunnerErr)
	}
	return krunnerPath
}
