package testutil

import (
	"context"
	"fmt"
	"syscall"

	"github.com/bai-agent/bai-agent/internal/webbundle"

	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test servers listen on ports from this window: below Linux's ephemeral
// range (32768-60999), so no outgoing connection of any process can take a
// port between the probe and the server's bind, and clear of the windows
// tests give agents for kernels' host ports (20000-29999: the agent
// package's 20000-23999 and 25000-27999, internal/app's 24000-24999 and
// 28000-28599, the RPC tests' 29000-29399, the doctor's 29400-29430), the
// fixed RPC port 16011 and the benchmarks' 31500-31899.
const (
	serverPortLo = 12000
	serverPortHi = 15999
)

var (
	portMu     sync.Mutex
	portGiven  = map[int]bool{}
	portCursor = serverPortLo + int(time.Now().UnixNano()%int64(serverPortHi-serverPortLo+1))
)

// freeAddr returns a loopback address nobody listens on. Ports are handed
// out round the window from a random start, never twice in one process;
// another test process can still probe the same port before the server
// binds it, which startServer answers with a retry on fresh ports.
func freeAddr(t testing.TB) string {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for i := 0; i <= serverPortHi-serverPortLo; i++ {
		p := portCursor
		portCursor++
		if portCursor > serverPortHi {
			portCursor = serverPortLo
		}
		if portGiven[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		portGiven[p] = true
		return l.Addr().String()
	}
	t.Fatalf("no free loopback port in %d-%d", serverPortLo, serverPortHi)
	return ""
}

// server is a child process a test started and waits on.
type server struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
}

// launch starts cmd with its output in logPath; the process is killed at
// the test's end.
func launch(t testing.TB, cmd *exec.Cmd, logPath string) (*server, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &server{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(s.done) }()
	t.Cleanup(s.kill)
	return s, nil
}

func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// waitListening waits until addr accepts a connection. It returns false
// at once if the process exits first (a port another process took in the
// meantime is the usual cause) and fails the test after 30 s.
func (s *server) waitListening(t testing.TB, addr, what string) bool {
	t.Helper()
	deadline := time.Now().Add(Slow(30 * time.Second))
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return true
		}
		select {
		case <-s.done:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("timed out waiting for %s listening on %s; its log ends:\n%s", what, addr, s.logTail())
	return false
}

// startServer runs a server on fresh ports until one listens: start is
// called with a new attempt number and returns the process, the address
// to wait for and the server's name. A process that exits before it
// listens is retried (three tries) with its log shown if the last fails.
func startServer(t testing.TB, start func(try int) (*server, string, string)) *server {
	t.Helper()
	for try := 1; ; try++ {
		s, addr, what := start(try)
		if s.waitListening(t, addr, what) {
			return s
		}
		if try == 3 {
			t.Fatalf("%s exited before it listened on %s (%d tries); its log ends:\n%s", what, addr, try, s.logTail())
		}
	}
}

// Redis is a redis-server process owned by a test.
type Redis struct {
	Addr string
	// Args are extra redis-server arguments (e.g. --replicaof).
	Args []string
	dir  string
	srv  *server
	t    testing.TB
}

// StartRedis runs Debian's redis-server on a free loopback port (no
// persistence). Stop and Start let a test take it away and bring it back
// on the same address.
func StartRedis(t testing.TB) *Redis { return startRedisWith(t, nil) }

func startRedisWith(t testing.TB, args []string) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		Missing(t, "redis-server (apt-get install redis-server)")
	}
	r := &Redis{Args: args, dir: t.TempDir(), t: t}
	r.srv = startServer(t, func(int) (*server, string, string) {
		r.Addr = freeAddr(t)
		return r.launch(), r.Addr, "redis-server"
	})
	t.Cleanup(r.Stop)
	return r
}

func (r *Redis) launch() *server {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.Addr)
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir}, r.Args...)
	s, err := launch(r.t, exec.Command("redis-server", args...), filepath.Join(r.dir, "redis.log"))
	if err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	return s
}

// Start restarts a stopped server on its address.
func (r *Redis) Start() {
	r.t.Helper()
	r.srv = r.launch()
	if !r.srv.waitListening(r.t, r.Addr, "redis-server") {
		r.t.Fatalf("redis-server exited before it listened on %s again; its log ends:\n%s", r.Addr, r.srv.logTail())
	}
}

// Stop kills the server.
func (r *Redis) Stop() {
	if r.srv != nil {
		r.srv.kill()
		r.srv = nil
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
	mh, mp, _ := net.SplitHostPort(master.Addr)
	replica := startRedisWith(t, []string{"--replicaof", mh, mp})
	s := &Sentinel{MasterName: "baimaster", Master: master, Replica: replica}
	dir := t.TempDir()
	startServer(t, func(try int) (*server, string, string) {
		s.Addr = freeAddr(t)
		_, sp, _ := net.SplitHostPort(s.Addr)
		conf := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 1\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\n",
			sp, dir, s.MasterName, mh, mp, s.MasterName, s.MasterName)
		cf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", try))
		if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		srv, err := launch(t, exec.Command(bin, cf), filepath.Join(dir, fmt.Sprintf("sentinel-%d.log", try)))
		if err != nil {
			t.Fatalf("start redis-sentinel: %v", err)
		}
		return srv, s.Addr, "redis-sentinel"
	})
	_, sp, _ := net.SplitHostPort(s.Addr)
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
	ctlAuth  string
	bin      string
	args     []string
	dir      string
	srv      *server
	restarts int
	t        testing.TB
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
	dir := t.TempDir()
	e := &Etcd{}
	scheme := "http://"
	var tlsArgs []string
	if o.TLS {
		scheme = "https://"
		ca, cert, key := WriteTestCerts(t, dir)
		e.CACert = ca
		tlsArgs = []string{"--cert-file", cert, "--key-file", key}
	}
	e.dir, e.t = dir, t
	t.Cleanup(e.Stop)
	e.srv = startServer(t, func(try int) (*server, string, string) {
		client, peer := freeAddr(t), freeAddr(t)
		e.Addr = client
		args := []string{"--name", "test", "--data-dir", filepath.Join(dir, fmt.Sprintf("data-%d", try)),
			"--listen-peer-urls", "http://" + peer, "--initial-advertise-peer-urls", "http://" + peer,
			"--initial-cluster", "test=http://" + peer, "--log-level", "error"}
		args = append(args, tlsArgs...)
		args = append(args, "--listen-client-urls", scheme+client, "--advertise-client-urls", scheme+client)
		args = append(args, o.Args...)
		e.bin, e.args = bin, args
		return e.launch(try), client, "etcd"
	})
	e.waitAnswers()
	return e
}

func (e *Etcd) launch(try int) *server {
	e.t.Helper()
	cmd := exec.Command(e.bin, e.args...)
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH="+os.Getenv("GOARCH"))
	srv, err := launch(e.t, cmd, filepath.Join(e.dir, fmt.Sprintf("etcd-%d.log", try)))
	if err != nil {
		e.t.Fatalf("start etcd: %v", err)
	}
	return srv
}

// Start restarts a stopped etcd on its addresses and data dir and waits
// until it answers; Stop kills it. A test takes etcd away and brings it
// back with its keys.
func (e *Etcd) Start() {
	e.t.Helper()
	e.restarts++
	e.srv = e.launch(100 + e.restarts)
	if !e.srv.waitListening(e.t, e.Addr, "etcd") {
		e.t.Fatalf("etcd exited before it listened on %s again; its log ends:\n%s", e.Addr, e.srv.logTail())
	}
	e.waitAnswers()
}

func (e *Etcd) waitAnswers() {
	e.t.Helper()
	// The client port opens before etcd serves; wait for a real answer.
	Eventually(e.t, 30*time.Second, "etcd answers", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return exec.CommandContext(ctx, "etcdctl", e.ctlArgs("endpoint", "health")...).Run() == nil
	})
}

// Stop kills etcd (SIGKILL) and waits for it.
func (e *Etcd) Stop() {
	if e.srv != nil {
		e.srv.kill()
		e.srv = nil
	}
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
		// One folder for every test process; binaries of test processes
		// that have ended are removed.
		dir := filepath.Join(os.TempDir(), "bai-agent-test-bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			agentBinErr = err
			return
		}
		removeOrphanBinaries(dir)
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

// removeOrphanBinaries removes the binaries in dir whose test process
// (the pid their name ends with) has ended. Age is no guide: a soak or a
// benchmark runs for hours, and a binary the build cache hands back keeps
// the cache entry's older modification time.
func removeOrphanBinaries(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		i := strings.LastIndexByte(name, '-')
		pid, err := strconv.Atoi(name[i+1:])
		if i < 0 || err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			_ = os.Remove(filepath.Join(dir, name))
		}
	}
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
		removeOrphanBinaries(dir)
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
