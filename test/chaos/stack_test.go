package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// Port range of the soak's kernels: below the ephemeral range and outside
// the ranges other tests use.
const portLo, portHi = 24600, 24799

// stack is the system under test: the agent binary and what it talks to.
type stack struct {
	t       *testing.T
	bin     string
	eng     *testutil.Engine
	img     string
	redis   *testutil.Redis
	etcd    *testutil.Etcd
	proxy   *toxiproxy.Proxy
	id      string
	ns      string
	root    string
	cfg     string
	rpc     string // host:port of the agent's RPC
	metrics string // http://host:port/metrics
	vfroot  string
	scratch string
	logPath string
	stream  *redis.Client // DB 4: the events stream, read as the manager does
	stat    *redis.Client // DB 0: stat keys
	live    *redis.Client // DB 2: presence keys

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd ends
	expected bool          // the running agent's end is a fault's doing
	gen      int           // agent starts so far: a call spanning two saw a restart
	up       bool          // the agent answered since its start and no fault ended it
	log      *os.File
	// startMu serialises start: a fault and the monitor may both want
	// the agent back.
	startMu sync.Mutex
	// refusals counts start-ups the agent ended itself (exit status 1:
	// etcd or Redis away at that moment), by the reason it printed.
	refusals map[string]int
}

func newStack(t *testing.T, img string, eng *testutil.Engine) *stack {
	s := &stack{t: t, bin: testutil.AgentBinary(t), eng: eng, img: img, root: t.TempDir(), id: "i-chaos-" + uuid.NewString()[:8]}
	s.redis = testutil.StartRedis(t)
	// Every write is on disk before Redis acknowledges it, so a SIGKILLed
	// Redis comes back with the stream and the consumer group: an event
	// missing afterwards is the agent's loss, not Redis'.
	s.redis.Args = []string{"--appendonly", "yes", "--appendfsync", "always"}
	s.redis.Stop()
	s.redis.Start()
	s.etcd = testutil.StartEtcd(t)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	s.proxy = toxiproxy.NewProxy(srv, "redis", "127.0.0.1:0", s.redis.Addr)
	if err := s.proxy.Start(); err != nil {
		t.Fatalf("start the Redis fault proxy: %v", err)
	}
	t.Cleanup(s.proxy.Stop)
	s.ns = "ns" + uuid.NewString()[:6]
	s.etcd.Put(t, "/sorna/"+s.ns+"/config/redis/addr", s.proxy.Listen)
	s.etcd.Put(t, "/sorna/"+s.ns+"/nodes/manager/i-mgr", "up")
	s.rpc = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	internal := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	s.metrics = "http://" + internal + "/metrics"
	s.vfroot = filepath.Join(s.root, "vfroot")
	s.scratch = filepath.Join(s.root, "scratch")
	if err := os.MkdirAll(s.vfroot, 0o755); err != nil {
		t.Fatal(err)
	}
	s.cfg = filepath.Join(s.root, "agent.toml")
	doc := fmt.Sprintf(`[etcd]
namespace = %q
addr = %q
[agent]
backend = "docker"
id = %q
rpc-listen-addr = %q
internal-addr = %q
var-base-path = %q
mount-path = %q
[agent.sync-container-lifecycles]
interval = 2
[agent.utilization-metric.node]
interval = 5
[agent.utilization-metric.container]
interval = 5
[agent.utilization-metric.process]
interval = 5
[container]
port-range = [%d, %d]
port-reuse-cooldown-sec = 0
bind-host = "127.0.0.1"
scratch-root = %q
scratch-type = "hostfile"
scratch-size = "32M"
[resource]
reserved-cpu = 0
reserved-mem = "64M"
[debug]
heartbeat-interval = 1.0
`, s.ns, s.etcd.Addr, s.id, s.rpc, internal, filepath.Join(s.root, "var"), s.vfroot, portLo, portHi, s.scratch)
	if err := os.WriteFile(s.cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	s.logPath = filepath.Join(s.root, "agent.log")
	s.stream = redis.NewClient(&redis.Options{Addr: s.redis.Addr, DB: 4})
	s.stat = redis.NewClient(&redis.Options{Addr: s.redis.Addr, DB: 0})
	s.live = redis.NewClient(&redis.Options{Addr: s.redis.Addr, DB: 2})
	t.Cleanup(func() {
		s.kill()
		s.stream.Close()
		s.stat.Close()
		s.live.Close()
		if t.Failed() {
			if b, err := os.ReadFile(s.logPath); err == nil {
				if len(b) > 200_000 {
					b = b[len(b)-200_000:]
				}
				t.Logf("agent log (tail):\n%s", b)
			}
		}
	})
	// The manager's consumer group exists before agents start.
	if err := s.stream.XGroupCreateMkStream(context.Background(), "events", "manager", "$").Err(); err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		t.Fatal(err)
	}
	return s
}

// start runs the agent and waits until it answers ping. A start that
// fails (etcd or Redis away at that moment) is retried as a service
// manager would restart the unit, until deadline; the error says why the
// last try failed.
func (s *stack) start(deadline time.Duration) error {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.pid() != 0 && pingOnce(s.rpc, 2*time.Second) == nil {
		return nil // another caller brought it back
	}
	end := time.Now().Add(deadline)
	tries := 0
	for {
		tries++
		s.mu.Lock()
		if s.log == nil {
			f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				s.mu.Unlock()
				return err
			}
			s.log = f
		}
		cmd := exec.Command(s.bin, "start-server", "-f", s.cfg)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+s.eng.Host, "BACKEND_CPU_OVERCOMMIT_FACTOR=6")
		cmd.Stdout, cmd.Stderr = s.log, s.log
		if err := cmd.Start(); err != nil {
			s.mu.Unlock()
			return err
		}
		exited := make(chan struct{})
		// expected until it answers: an exit at start-up is a refusal,
		// counted below, not a crash.
		s.cmd, s.exited, s.expected = cmd, exited, true
		s.gen++
		s.mu.Unlock()
		go func() { _ = cmd.Wait(); close(exited) }()
		for {
			if pingOnce(s.rpc, 2*time.Second) == nil {
				s.mu.Lock()
				select {
				case <-exited:
				default:
					s.expected, s.up = false, true
				}
				s.mu.Unlock()
				return nil
			}
			select {
			case <-exited:
			case <-time.After(300 * time.Millisecond):
				if time.Now().Before(end) {
					continue
				}
			}
			break
		}
		select {
		case <-exited:
			s.mu.Lock()
			if s.refusals == nil {
				s.refusals = map[string]int{}
			}
			s.refusals[s.lastLogLine()]++
			s.mu.Unlock()
			if time.Now().After(end) {
				return fmt.Errorf("agent exited at start-up %d times; last: %s", tries, cmd.ProcessState)
			}
			time.Sleep(time.Second)
			continue
		default:
			s.kill()
			return fmt.Errorf("agent did not answer ping within %s (%d start-up tries)", deadline, tries)
		}
	}
}

// signal ends the running agent with sig, as a fault, and waits for it
// (SIGTERM: up to 60 s, then SIGKILL; the return says how long it took).
func (s *stack) signal(sig syscall.Signal) (time.Duration, bool) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	if cmd == nil {
		s.mu.Unlock()
		return 0, true
	}
	s.expected, s.up = true, false
	s.mu.Unlock()
	t0 := time.Now()
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return time.Since(t0), true
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return time.Since(t0), false
	}
}

// lastLogLine is the agent log's last line, its reason for exiting,
// shortened to what does not change between runs (addresses masked).
func (s *stack) lastLogLine() string {
	b, _ := os.ReadFile(s.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	l := lines[len(lines)-1]
	if i := strings.Index(l, ": "); i > 0 && strings.HasPrefix(l, "bai-agent:") {
		l = l[len("bai-agent: "):]
	}
	l = addrRe.ReplaceAllString(l, "ADDR")
	if len(l) > 160 {
		l = l[:160] + "..."
	}
	return l
}

var addrRe = regexp.MustCompile(`127\.0\.0\.1:\d+`)

func (s *stack) kill() { s.signal(syscall.SIGKILL) }

// pid is the running agent's process id (0 when none runs).
func (s *stack) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	select {
	case <-s.exited:
		return 0
	default:
	}
	return s.cmd.Process.Pid
}

// generation counts agent starts; up says whether the current one is
// serving (started, answered, not ended by a fault).
func (s *stack) generation() (gen int, up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen, s.up
}

// unexpectedExit reports an agent that ended without a fault asking.
func (s *stack) unexpectedExit() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.expected {
		return "", false
	}
	select {
	case <-s.exited:
		s.expected, s.up = true, false // reported once
		return s.cmd.ProcessState.String(), true
	default:
		return "", false
	}
}

func pingOnce(addr string, timeout time.Duration) error {
	c, err := client.Dial("tcp://"+addr, timeout, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = c.Call(ctx, "ping", []any{"ping"}, nil)
	return err
}

// rpcConn is one caller's connection, redialled after any failure (a
// reply that comes after its caller gave up must not answer the next
// call).
type rpcConn struct {
	addr string
	c    *client.Client
}

func (r *rpcConn) call(ctx context.Context, meth string, args ...any) (any, error) {
	if r.c == nil {
		c, err := client.Dial("tcp://"+r.addr, 5*time.Second, nil)
		if err != nil {
			return nil, fmt.Errorf("dial: %w", err)
		}
		r.c = c
	}
	v, err := r.c.Call(ctx, meth, args, nil)
	if err != nil {
		var re *client.RemoteError
		if !errors.As(err, &re) {
			r.close()
		}
		return nil, err
	}
	return wire.Plain(v), nil
}

func (r *rpcConn) close() {
	if r.c != nil {
		r.c.Close()
		r.c = nil
	}
}

// status is bai_status, decoded.
type status struct {
	Kernels []struct {
		ID           string `json:"id"`
		SessionID    string `json:"session_id"`
		State        string `json:"state"`
		ContainerID  string `json:"container_id"`
		CPUCores     []any  `json:"cpu_cores"`
		ReplIn       int    `json:"repl_in_port"`
		ReplOut      int    `json:"repl_out_port"`
		ServicePorts []struct {
			Name      string `json:"name"`
			HostPorts []int  `json:"host_ports"`
		} `json:"service_ports"`
	} `json:"kernels"`
	Slots map[string]struct {
		Used string `json:"used"`
	} `json:"slots"`
}

func (s *stack) status(ctx context.Context) (*status, error) {
	r := &rpcConn{addr: s.rpc}
	defer r.close()
	v, err := r.call(ctx, "bai_status")
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var st status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// scrape reads /metrics: the value of each unlabelled-or-labelled gauge
// asked for (first series) and the kernel ids any series names.
func (s *stack) scrape(ctx context.Context) (map[string]float64, map[string]bool, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.metrics, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	vals := map[string]float64{}
	kids := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if m := kernelLabel.FindStringSubmatch(line); m != nil && m[1] != "" {
			kids[m[1]] = true
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i > 0 {
			name = line[:i]
		}
		if _, seen := vals[name]; seen {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			vals[name] = v
		}
	}
	return vals, kids, sc.Err()
}

var kernelLabel = regexp.MustCompile(`kernel_id="([^"]*)"`)

// rss reads VmRSS of pid in bytes.
func rss(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// httpGet fetches url with a short timeout.
func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return string(b), err
}

// portBusy says whether something listens on 127.0.0.1:port.
func portBusy(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return true
	}
	l.Close()
	return false
}

// portHolder is the process listening on a host port, as /proc shows it.
type portHolder struct {
	pid         int
	comm        string
	parent      string // the parent's comm
	args        []string
	containerIP string // a docker-proxy's -container-ip
}

// parentOf says whether the holder's parent runs with host (a dockerd's
// -H socket) on its command line.
func (h portHolder) parentOf(host string) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ppid(h.pid)))
	return strings.Contains(string(b), strings.TrimPrefix(host, "unix://"))
}

func (h portHolder) String() string {
	if h.pid == 0 {
		return "no listening process found in /proc"
	}
	return fmt.Sprintf("pid %d %s (parent %s) %s", h.pid, h.comm, h.parent, strings.Join(h.args, " "))
}

// findPortHolder finds the process listening on 127.0.0.1/0.0.0.0:port.
func findPortHolder(port int) portHolder {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(l)
			// local_address is HEXIP:HEXPORT; state 0A is LISTEN.
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			if i := strings.LastIndexByte(fs[1], ':'); i >= 0 {
				if p, err := strconv.ParseUint(fs[1][i+1:], 16, 32); err == nil && int(p) == port {
					inodes[fs[9]] = true
				}
			}
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, pe := range procs {
		pid, err := strconv.Atoi(pe.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			dst, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if err != nil || !strings.HasPrefix(dst, "socket:[") || !inodes[strings.TrimSuffix(strings.TrimPrefix(dst, "socket:["), "]")] {
				continue
			}
			h := portHolder{pid: pid, comm: comm(pid), parent: comm(ppid(pid))}
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			h.args = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
			for i, a := range h.args {
				if a == "-container-ip" && i+1 < len(h.args) {
					h.containerIP = h.args[i+1]
				}
			}
			return h
		}
	}
	return portHolder{}
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

func ppid(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	// pid (comm) state ppid ...: comm may hold spaces, so split after ")".
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 1 {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}
