package doctor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/backend/docker"
	"github.com/bai-agent/bai-agent/internal/cgroup"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/device/accel"
	"github.com/bai-agent/bai-agent/internal/etcdconfig"
	"github.com/bai-agent/bai-agent/internal/kuser"
	"github.com/bai-agent/bai-agent/internal/ports"
	"github.com/bai-agent/bai-agent/internal/redisconn"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/sandbox"
	"github.com/bai-agent/bai-agent/internal/scratch"
)

// Level of a finding.
type Level int

// Levels: a failure makes the node not ready; a warning does not.
const (
	OK Level = iota
	Info
	Warn
	Fail
)

func (l Level) String() string { return [...]string{"ok", "info", "WARN", "FAIL"}[l] }

// Finding is one line of the report.
type Finding struct {
	Check string
	Level Level
	Msg   string
}

// Options tune the checks (tests point them elsewhere).
type Options struct {
	// Root is where /sys and /proc are read ("" : the host's).
	Root string
	// DockerHost overrides DOCKER_HOST.
	DockerHost string
	// Timeout bounds each network check (default 5 s).
	Timeout time.Duration
}

// Run runs every check and returns the findings in order.
func Run(ctx context.Context, cfg *config.Config, o Options) []Finding {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	var out []Finding
	add := func(check string, l Level, format string, args ...any) {
		out = append(out, Finding{Check: check, Level: l, Msg: fmt.Sprintf(format, args...)})
	}
	checkDocker(ctx, o, add)
	checkCgroups(o, add)
	checkScratch(ctx, cfg, add)
	checkPorts(cfg, add)
	checkControlPlane(ctx, cfg, o, add)
	checkRunner(cfg, add)
	checkSandbox(ctx, cfg, o, add)
	checkKernelUser(cfg, add)
	checkExposure(cfg, add)
	checkAccelerators(ctx, cfg, o, add)
	return out
}

// Ready reports whether no finding failed.
func Ready(fs []Finding) bool {
	for _, f := range fs {
		if f.Level == Fail {
			return false
		}
	}
	return true
}

// Print writes the report, one line per finding, and a verdict.
func Print(w io.Writer, fs []Finding) {
	for _, f := range fs {
		fmt.Fprintf(w, "%-4s  %-14s %s\n", f.Level, f.Check, f.Msg)
	}
	if Ready(fs) {
		fmt.Fprintln(w, "ready: this node can run bai-agent")
	} else {
		fmt.Fprintln(w, "not ready: fix the FAIL lines above")
	}
}

type adder func(check string, l Level, format string, args ...any)

func checkDocker(ctx context.Context, o Options, add adder) {
	var be *docker.Backend
	var err error
	if o.DockerHost != "" {
		be, err = docker.NewHost(o.DockerHost)
	} else {
		be, err = docker.New()
	}
	if err != nil {
		add("docker", Fail, "no client: %v", err)
		return
	}
	defer be.Close()
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	api, err := be.Ping(pctx)
	if err != nil {
		add("docker", Fail, "the engine does not answer: %v (is dockerd running? DOCKER_HOST?)", err)
		return
	}
	v, err := be.Client().ServerVersion(pctx, client.ServerVersionOptions{})
	if err != nil {
		add("docker", Warn, "API %s, but the version is unknown: %v", api, err)
		return
	}
	if !atLeast(v.Version, 20, 10) {
		add("docker", Fail, "Docker %s is older than 20.10", v.Version)
		return
	}
	add("docker", OK, "Docker %s, API %s", v.Version, api)
}

// atLeast compares a "major.minor..." version.
func atLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

func checkCgroups(o Options, add adder) {
	fs := cgroup.FS{Root: o.Root}
	sys := filepath.Join(o.Root, "/sys/fs/cgroup")
	switch fs.Detect() {
	case cgroup.Unified:
		b, err := os.ReadFile(filepath.Join(sys, "cgroup.controllers"))
		if err != nil {
			add("cgroups", Fail, "v2, but cgroup.controllers is unreadable: %v", err)
			return
		}
		have := map[string]bool{}
		for _, c := range strings.Fields(string(b)) {
			have[c] = true
		}
		var missing []string
		for _, c := range []string{"cpu", "cpuset", "memory", "io", "pids"} {
			if !have[c] {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			add("cgroups", Fail, "v2 without the %s controller(s): limits and statistics need them", strings.Join(missing, ", "))
			return
		}
		add("cgroups", OK, "v2 with cpu, cpuset, memory, io, pids")
	default:
		var missing []string
		for _, c := range []string{"cpuacct", "memory", "blkio", "cpuset", "pids"} {
			if _, err := os.Stat(filepath.Join(sys, c)); err != nil {
				missing = append(missing, c)
			}
		}
		layout := "v1"
		if fs.Detect() == cgroup.Hybrid {
			layout = "hybrid (v1 controllers)"
		}
		if len(missing) > 0 {
			add("cgroups", Fail, "%s without the %s controller(s)", layout, strings.Join(missing, ", "))
			return
		}
		add("cgroups", OK, "%s with cpuacct, memory, blkio, cpuset, pids", layout)
	}
}

func checkScratch(ctx context.Context, cfg *config.Config, add adder) {
	m := &scratch.Manager{Root: cfg.Container.ScratchRoot, Type: cfg.Container.ScratchType, Size: int64(cfg.Container.ScratchSize)}
	if err := m.Check(ctx); err != nil {
		add("scratch", Fail, "%v", err)
		return
	}
	add("scratch", OK, "%s under %s", cfg.Container.ScratchType, cfg.Container.ScratchRoot)
}

func checkPorts(cfg *config.Config, add adder) {
	first, last := cfg.Container.PortRange[0], cfg.Container.PortRange[1]
	host := cfg.Container.BindHost
	if host == "" {
		host = "0.0.0.0"
	}
	free := 0
	for p := first; p <= last; p++ {
		if l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p))); err == nil {
			l.Close()
			free++
		}
	}
	total := last - first + 1
	switch {
	case free == 0:
		add("port-range", Fail, "none of the %d ports %d-%d is free on %s", total, first, last, host)
	case free < total/2:
		add("port-range", Warn, "only %d of the %d ports %d-%d are free on %s", free, total, first, last, host)
	default:
		add("port-range", OK, "%d of %d ports %d-%d free (a kernel takes 2 plus one per service port)", free, total, first, last)
	}
	if over, msg := ports.OverlapsEphemeral(first, last); over {
		add("port-range", Warn, "%s: outgoing connections may hold a kernel's port and fail its start; move the range below or above it", msg)
	}
	rpc := cfg.Agent.RPCListenAddr.String()
	if l, err := net.Listen("tcp", rpc); err != nil {
		add("rpc", Warn, "cannot bind %s (%v): another agent running?", rpc, err)
	} else {
		l.Close()
		add("rpc", OK, "%s is free", rpc)
	}
}

func checkControlPlane(ctx context.Context, cfg *config.Config, o Options, add adder) {
	if cfg.Agent.ControlPlane != "etcd" {
		add("control-plane", Info, "none: a standalone node (no etcd, no Redis)")
		return
	}
	var endpoints []string
	for _, hp := range cfg.Etcd.Addr {
		endpoints = append(endpoints, hp.String())
	}
	ectx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	ec, err := etcdconfig.Dial(ectx, etcdconfig.Options{Endpoints: endpoints, Namespace: cfg.Etcd.Namespace, User: cfg.Etcd.User, Password: cfg.Etcd.Password, Timeout: o.Timeout})
	if err != nil {
		add("etcd", Fail, "%v", err)
		return
	}
	defer ec.Close()
	g, err := ec.Load(ectx)
	if err != nil {
		add("etcd", Fail, "global config: %v", err)
		return
	}
	add("etcd", OK, "%v, namespace %s", endpoints, cfg.Etcd.Namespace)
	conn, err := redisconn.New(g.Redis)
	if err != nil {
		add("redis", Fail, "%v", err)
		return
	}
	rc := conn.Client(redisconn.RoleStream, 4, nil)
	defer rc.Close()
	rctx, rcancel := context.WithTimeout(ctx, o.Timeout)
	defer rcancel()
	t0 := time.Now()
	now, err := rc.Time(rctx).Result()
	if err != nil {
		add("redis", Fail, "%s: %v", g.Redis.Describe(), err)
		return
	}
	add("redis", OK, "%s", g.Redis.Describe())
	// The manager compares presence timestamps from Redis TIME with its own
	// clock: a skewed node looks stale or alive for too long.
	rtt := time.Since(t0)
	skew := now.Sub(t0.Add(rtt / 2))
	if skew < 0 {
		skew = -skew
	}
	switch {
	case skew > 30*time.Second:
		add("clock", Fail, "%s off Redis TIME: fix NTP", skew.Round(time.Millisecond))
	case skew > time.Second:
		add("clock", Warn, "%s off Redis TIME", skew.Round(time.Millisecond))
	default:
		add("clock", OK, "within %s of Redis TIME", skew.Round(time.Millisecond))
	}
}

// checkRunner finds the kernel runner the agent will mount into kernels
// and checks it would run in any image (static).
func checkRunner(cfg *config.Config, add adder) {
	if !cfg.Container.KernelRunner {
		add("kernel runner", Warn, "[container] kernel-runner = false: kernels run their images' own commands; no code execution or apps")
		return
	}
	p, err := agent.ResolveKrunner(cfg.Container.KrunnerBinary, os.Getenv)
	if err != nil {
		add("kernel runner", Fail, "%v", err)
		return
	}
	add("kernel runner", OK, "%s (static)", p)
}

// checkSandbox reports [container] sandbox-type: the engine lists the
// runtime and a probe container starts with it (the agent's own start-up
// check, internal/sandbox).
func checkSandbox(ctx context.Context, cfg *config.Config, o Options, add adder) {
	pol, err := sandbox.NewPolicy(cfg.Container.SandboxType)
	if err != nil {
		add("sandbox", Fail, "%v", err)
		return
	}
	if pol.Node == sandbox.RuntimeDefault {
		add("sandbox", OK, "sandbox-type %q: the engine's default runtime (no second wall; see docs/SECURITY.md)", cfg.Container.SandboxType)
		return
	}
	var be *docker.Backend
	if o.DockerHost != "" {
		be, err = docker.NewHost(o.DockerHost)
	} else {
		be, err = docker.New()
	}
	if err != nil {
		add("sandbox", Fail, "no client: %v", err)
		return
	}
	defer be.Close()
	bin, _ := agent.ResolveKrunner(cfg.Container.KrunnerBinary, os.Getenv)
	p := sandbox.Probe{Backend: be, Binary: bin, Args: []string{"probe"}}
	if err := p.Check(ctx, pol.Node); err != nil {
		add("sandbox", Fail, "%v", err)
		return
	}
	if bin == "" {
		add("sandbox", Warn, "runtime %q is registered; no runner binary to start a probe container with", pol.Node)
		return
	}
	add("sandbox", OK, "runtime %q: a probe container started and exited 0", pol.Node)
}

// checkKernelUser says who user code in kernels runs as, and warns when
// that is root.
func checkKernelUser(cfg *config.Config, add adder) {
	switch uid := cfg.Container.KernelUID; {
	case uid == 0:
		add("kernel user", Warn, "[container] kernel-uid = 0: user code in uid-match kernels runs as root; set a non-zero uid, or -1 for the image's own user")
	case uid == -1 && os.Geteuid() == 0:
		add("kernel user", OK, "kernel-uid -1 with a root agent: user code runs as the image's own user (its work user, else 1000), never as root unless the manager sends uid 0")
	case uid == -1:
		add("kernel user", OK, "kernel-uid -1: uid-match kernels run as the agent's uid %d", os.Geteuid())
	default:
		add("kernel user", OK, "kernel-uid %d", uid)
	}
	// A host account with the kernel's uid can read kernels' files through
	// /proc/PID/root and signal their processes (same uid, dumpable).
	uid := cfg.Container.KernelUID
	if uid == -1 {
		uid = os.Geteuid()
		if uid == 0 {
			uid = kuser.Default // the image's own user, usually
		}
	}
	if uid > 0 {
		if b, err := os.ReadFile("/etc/passwd"); err == nil {
			if name := hostAccount(b, uid); name != "" {
				add("kernel user", Warn, "host account %q has uid %d, which kernels' user code runs as: it can read kernels' files through /proc/PID/root; set [container] kernel-uid (and the images' work user) to a uid no host account uses", name, uid)
			}
		}
	}
}

// hostAccount names the passwd entry with uid, or "".
func hostAccount(passwd []byte, uid int) string {
	for _, l := range strings.Split(string(passwd), "\n") {
		f := strings.Split(l, ":")
		if len(f) >= 3 && f[2] == strconv.Itoa(uid) {
			return f[0]
		}
	}
	return ""
}

// checkAccelerators loads the accelerator plugins as the agent would
// (allow/block lists, the mock's file; without etcd's plugin settings) and
// reports what each found and whether containers can get it.
func checkAccelerators(ctx context.Context, cfg *config.Config, o Options, add adder) {
	var eng backend.EngineInspector
	var be *docker.Backend
	var err error
	if o.DockerHost != "" {
		be, err = docker.NewHost(o.DockerHost)
	} else {
		be, err = docker.New()
	}
	if err == nil {
		defer be.Close()
		eng = be
	}
	actx, cancel := context.WithTimeout(ctx, 4*o.Timeout)
	defer cancel()
	accs, err := accel.Load(actx, accel.Options{
		Allow: cfg.Agent.AllowComputePlugins, Block: cfg.Agent.BlockComputePlugins, MockConfig: cfg.Agent.MockAcceleratorConfig,
		Engine: eng, Getenv: os.Getenv, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		add("accelerators", Fail, "%v", err)
		return
	}
	if len(accs) == 0 {
		add("accelerators", Info, "no accelerator plugin loaded: a CPU-only node (allow-compute-plugins %v)", cfg.Agent.AllowComputePlugins)
		return
	}
	for _, p := range accs {
		h, _ := p.NodeHWInfo()
		var slots []string
		for _, sl := range p.Available().Names() {
			slots = append(slots, string(sl)+"="+resource.FormatAmount(p.Available()[sl]))
		}
		msg := fmt.Sprintf("%d device(s), offers %s", len(p.Devices()), strings.Join(slots, " "))
		if h.StatusInfo != nil {
			msg += ": " + *h.StatusInfo
		}
		level := OK
		switch h.Status {
		case "degraded":
			level = Warn
		case "unavailable":
			level = Fail
		}
		add("accelerator "+string(p.Key()), level, "%s", msg)
		_ = p.Close()
	}
}

// loopbackOnly reports an address only this host's loopback reaches.
func loopbackOnly(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkExposure warns about the agent's own ports that answer anyone who
// reaches them. Kernels reach every address of the host through their
// bridge's gateway, so "reachable" includes every session on this node.
func checkExposure(cfg *config.Config, add adder) {
	fw := "or firewall it from the kernels' bridges (iptables -I INPUT -i docker0 -p tcp --dport %d -j REJECT, and the same for -i br-+)"
	rpc := cfg.Agent.RPCListenAddr
	switch {
	case cfg.Agent.RPCAuthAgentKeypair != "":
		add("rpc-auth", OK, "RPC callers must hold the manager's CURVE key")
	case loopbackOnly(rpc.Host):
		add("rpc-auth", OK, "RPC listens on loopback only (%s)", rpc)
	default:
		add("rpc-auth", Warn, "the RPC port %s takes calls from anyone who reaches it, kernels on this node included (create_kernels can mount host folders): set rpc-auth-agent-keypair and rpc-auth-manager-public-key (CURVE, as the manager) "+fw, rpc, rpc.Port)
	}
	if ia := cfg.Agent.InternalAddr; !loopbackOnly(ia.Host) {
		add("internal-addr", Warn, "%s (/metrics, /health) answers anyone who reaches it, kernels on this node included, with every kernel's session, user and project ids: bind it to the address your Prometheus uses "+fw, ia, ia.Port)
	}
}
