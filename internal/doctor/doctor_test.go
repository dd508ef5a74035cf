package doctor

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

func TestAtLeast(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want bool
	}{{"20.10.24+dfsg1", true}, {"28.2.2", true}, {"20.9.1", false}, {"19.03.15", false}, {"", false}, {"x.y", false}} {
		if got := atLeast(tt.v, 20, 10); got != tt.want {
			t.Errorf("atLeast(%q) = %v", tt.v, got)
		}
	}
}

func load(t *testing.T, doc string) *config.Config {
	t.Helper()
	res, err := config.Load("", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Config
}

func find(fs []Finding, check string) Finding {
	for _, f := range fs {
		if f.Check == check {
			return f
		}
	}
	return Finding{Check: check, Level: -1}
}

// On this machine with a standalone config the node is ready; a port
// range that is all taken, an etcd nobody answers and a real etcd +
// Redis each give the right line.
func TestDoctor_Integration(t *testing.T) {
	testutil.RequireDocker(t)
	testutil.RequireRoot(t)
	first := 29410 // test port ranges stay below the ephemeral range (32768-60999)
	scratchRoot := filepath.Join(t.TempDir(), "scratch")
	base := fmt.Sprintf("[agent]\nbackend = \"docker\"\nrpc-listen-addr = \"127.0.0.1:%d\"\n%%s[container]\nport-range = [%d, %d]\nbind-host = \"127.0.0.1\"\nscratch-root = %q\n%%s",
		testutil.FreePort(t), 29400, 29409, scratchRoot)
	ctx := context.Background()

	fs := Run(ctx, load(t, fmt.Sprintf(base, "control-plane = \"none\"\n", "")), Options{})
	var sb strings.Builder
	Print(&sb, fs)
	t.Logf("report:\n%s", sb.String())
	if !Ready(fs) || !strings.Contains(sb.String(), "ready: this node") {
		t.Fatalf("this machine is not ready:\n%s", sb.String())
	}
	for _, c := range []string{"docker", "cgroups", "scratch", "port-range", "rpc"} {
		if f := find(fs, c); f.Level != OK {
			t.Errorf("%s: %v %s", c, f.Level, f.Msg)
		}
	}

	if f := find(fs, "kernel runner"); f.Level != OK {
		t.Errorf("kernel runner: %v %s", f.Level, f.Msg)
	}
	bad := load(t, fmt.Sprintf(base, "control-plane = \"none\"\n", ""))
	bad.Container.KrunnerBinary = "/nonexistent/bai-krunner"
	if f := find(Run(ctx, bad, Options{}), "kernel runner"); f.Level != Fail || !strings.Contains(f.Msg, "/nonexistent/bai-krunner") {
		t.Errorf("missing runner: %v %s", f.Level, f.Msg)
	}
	if f := find(fs, "accelerators"); f.Level != Info || !strings.Contains(f.Msg, "CPU-only") {
		t.Errorf("no accelerator configured: %v %s", f.Level, f.Msg)
	}
	mockCfg := filepath.Join(testutil.ModuleRoot(t), "configs", "accelerator", "mock-accelerator.toml")
	fs = Run(ctx, load(t, fmt.Sprintf(base, fmt.Sprintf("control-plane = \"none\"\nallow-compute-plugins = [\"ai.backend.accelerator.mock\"]\nmock-accelerator-config = %q\n", mockCfg), "")), Options{})
	if f := find(fs, "accelerator cuda"); f.Level != OK || !strings.Contains(f.Msg, "4 device(s), offers cuda.device=4") {
		t.Errorf("mock accelerator: %v %s", f.Level, f.Msg)
	}
	fs = Run(ctx, load(t, fmt.Sprintf(base, "control-plane = \"none\"\nallow-compute-plugins = [\"ai.backend.accelerator.mock\"]\nmock-accelerator-config = \"/nonexistent.toml\"\n", "")), Options{})
	if f := find(fs, "accelerators"); f.Level != Fail || !strings.Contains(f.Msg, "mock-accelerator-config") {
		t.Errorf("missing mock file: %v %s", f.Level, f.Msg)
	}

	// Every port of the range taken.
	var held []net.Listener
	for p := first; p < first+3; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			held = append(held, l)
		}
	}
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	if len(held) == 3 {
		cfg := load(t, fmt.Sprintf(base, "control-plane = \"none\"\n", ""))
		cfg.Container.PortRange = config.PortRange{first, first + 2}
		fs = Run(ctx, cfg, Options{})
		if f := find(fs, "port-range"); f.Level != Fail || Ready(fs) {
			t.Errorf("all ports taken: %v %s", f.Level, f.Msg)
		}
	}

	// An etcd nobody answers.
	dead := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	fs = Run(ctx, load(t, fmt.Sprintf(base, "control-plane = \"etcd\"\n", fmt.Sprintf("[etcd]\naddr = %q\n", dead))), Options{Timeout: 2e9})
	if f := find(fs, "etcd"); f.Level != Fail || !strings.Contains(f.Msg, dead) || Ready(fs) {
		t.Errorf("dead etcd: %v %s", f.Level, f.Msg)
	}

	// A real control plane: etcd, Redis and the clock.
	e := testutil.StartEtcd(t)
	r := testutil.StartRedis(t)
	e.Put(t, "/sorna/doc/config/redis/addr", r.Addr)
	fs = Run(ctx, load(t, fmt.Sprintf(base, "control-plane = \"etcd\"\n", fmt.Sprintf("[etcd]\naddr = %q\nnamespace = \"doc\"\n", e.Addr))), Options{})
	for _, c := range []string{"etcd", "redis", "clock"} {
		if f := find(fs, c); f.Level != OK {
			t.Errorf("%s with a live control plane: %v %s", c, f.Level, f.Msg)
		}
	}
}

func TestCheckKernelUser(t *testing.T) {
	for _, tc := range []struct {
		uid  int
		want Level
	}{{0, Warn}, {-1, OK}, {1000, OK}} {
		cfg := config.Defaults()
		cfg.Container.KernelUID = tc.uid
		var got []Level
		var msgs []string
		checkKernelUser(cfg, func(_ string, l Level, format string, args ...any) {
			got = append(got, l)
			msgs = append(msgs, fmt.Sprintf(format, args...))
		})
		if len(got) == 0 || got[0] != tc.want {
			t.Errorf("kernel-uid %d: %v %v", tc.uid, got, msgs)
		}
	}
}

func TestHostAccount(t *testing.T) {
	pw := []byte("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n")
	if got := hostAccount(pw, 1000); got != "alice" {
		t.Errorf("uid 1000: %q", got)
	}
	if got := hostAccount(pw, 1001); got != "" {
		t.Errorf("uid 1001: %q", got)
	}
}

// doctor reports the sandbox runtime: registered and a probe container
// started, or the engine's refusal.
func TestDoctorSandbox_Integration(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.KrunnerBinary(t)
	runsc, err := exec.LookPath("runsc")
	if err != nil {
		testutil.Missing(t, "runsc (apt-get install runsc)")
	}
	eng := testutil.StartEngineWith(t, testutil.EngineOptions{Runtimes: map[string]testutil.EngineRuntime{
		"runsc":          {Path: runsc, RuntimeArgs: []string{"--platform=ptrace", "--network=host"}},
		"runsc-netstack": {Path: runsc},
	}})
	doc := "[agent]\nbackend = \"docker\"\ncontrol-plane = \"none\"\n[container]\nsandbox-type = %q\n"
	ctx := context.Background()
	for _, tc := range []struct {
		sandboxType string
		level       Level
		want        string
	}{
		{"docker", OK, "default runtime"},
		{"gvisor", OK, "probe container started"},
		{"runsc-netstack", Fail, "does not start"},
		{"kata", Fail, "not registered"},
	} {
		f := find(Run(ctx, load(t, fmt.Sprintf(doc, tc.sandboxType)), Options{DockerHost: eng.Host}), "sandbox")
		if f.Level != tc.level || !strings.Contains(f.Msg, tc.want) {
			t.Errorf("%s: %v %s; want %v and %q", tc.sandboxType, f.Level, f.Msg, tc.level, tc.want)
		}
	}
}

// The agent's own ports that answer anyone (kernels reach the host through
// their bridge's gateway) are named, with what closes them.
func TestCheckExposure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rpcHost  string
		keys     bool
		internal string
		want     map[string]Level
	}{
		{"defaults", "0.0.0.0", false, "0.0.0.0", map[string]Level{"rpc-auth": Warn, "internal-addr": Warn}},
		{"curve", "0.0.0.0", true, "127.0.0.1", map[string]Level{"rpc-auth": OK}},
		{"loopback", "127.0.0.1", false, "localhost", map[string]Level{"rpc-auth": OK}},
	} {
		cfg := config.Defaults()
		cfg.Agent.RPCListenAddr.Host = tc.rpcHost
		cfg.Agent.InternalAddr.Host = tc.internal
		if tc.keys {
			cfg.Agent.RPCAuthAgentKeypair, cfg.Agent.RPCAuthManagerPublicKey = "/k/agent.key_secret", "/k/manager.key"
		}
		got := map[string]Level{}
		var msgs []string
		checkExposure(cfg, func(check string, l Level, format string, args ...any) {
			got[check] = l
			msgs = append(msgs, fmt.Sprintf(format, args...))
		})
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v (%q)", tc.name, got, tc.want, msgs)
		}
		for _, m := range msgs {
			if strings.Contains(m, "%!") {
				t.Errorf("%s: bad format: %s", tc.name, m)
			}
		}
	}
}
