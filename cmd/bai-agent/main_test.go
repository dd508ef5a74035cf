package main

import (
	"regexp"

	"github.com/bai-agent/bai-agent/internal/testutil"

	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runBin(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(testutil.AgentBinary(t), args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", "[agent]\nbackend = \"docker\"\nfrobnicate = 1\n")
	bad := write("bad.toml", "[agent]\nbackend = \"docker\"\n\n[container]\nport-range = [1, 2]\n")
	deadEtcd := write("deadetcd.toml", "[agent]\nbackend = \"docker\"\ncontrol-plane = \"etcd\"\nrpc-listen-addr = \"127.0.0.1:1\"\n[etcd]\naddr = \"127.0.0.1:1\"\n[container]\nscratch-root = \""+filepath.Join(dir, "scratch")+"\"\n")
	jail := write("refused.toml", "[agent]\nbackend = \"docker\"\nevent-loop = \"uvloop\"\n[container]\nalternative-bridge = \"br1\"\n")
	nokey := write("nokey.toml", "[agent]\nbackend = \"docker\"\nrpc-listen-addr = \"127.0.0.1:1\"\nrpc-auth-agent-keypair = \"missing.key_secret\"\nrpc-auth-manager-public-key = \"manager.key\"\n")
	multi := write("multi.toml", "[agent]\nbackend = \"docker\"\nrpc-listen-addr = \"127.0.0.1:6011\"\n[container]\nscratch-root = \"/s\"\n"+
		"[[agents]]\n[agents.agent]\nid = \"m1\"\n[[agents]]\n[agents.agent]\nid = \"m2\"\nrpc-listen-addr = \"127.0.0.1:6012\"\n")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"version", []string{"version"}, 0, []string{"bai-agent "}},
		{"check ok with unknown key", []string{"config", "check", good}, 0, []string{"good.toml:3:1: agent.frobnicate: unknown key", ": ok"}},
		{"check invalid value", []string{"config", "check", bad}, 2, []string{"bad.toml:5:1", "container.port-range"}},
		{"check refused key", []string{"config", "check", jail}, 2, []string{"refused  container.alternative-bridge = \"br1\"  (" + jail + ":5:1)", "warned   agent.event-loop", "start-server would refuse this config: 1 key(s) refused"}},
		{"check multi-agent", []string{"config", "check", multi}, 0, []string{"ok (2 agents, allocation-mode shared, one allocator)", "agent m1, rpc 127.0.0.1:6011, scratch hostdir at /s/m1", "agent m2, rpc 127.0.0.1:6012, scratch hostdir at /s/m2"}},
		{"check upstream defaults", []string{"config", "check", "../../internal/config/testdata/upstream-defaults.toml"}, 0, []string{"neutral  agent.agent-sock-port = 6007", ": ok"}},
		{"start-server refused key", []string{"start-server", "-f", jail}, 2, []string{jail + ":5:1: container.alternative-bridge = \"br1\" is not supported by bai-agent: ", `daemon.json`}},
		{"start-server invalid value", []string{"start-server", "-f", bad}, 2, []string{"container.port-range"}},
		{"start-server missing key file", []string{"start-server", "-f", nokey}, 2, []string{"missing.key_secret"}},
		{"missing config file", []string{"start-server", "-f", filepath.Join(dir, "nope.toml")}, 2, []string{"nope.toml"}},
		{"keygen", []string{"keygen", dir, "agent"}, 0, []string{"agent.key_secret"}},
		{"unknown command", []string{"frobnicate"}, 2, []string{"unknown command"}},
		{"doctor, etcd unreachable", []string{"doctor", "-f", deadEtcd}, 1, []string{"FAIL  etcd", "not ready"}},
		{"unknown flag", []string{"version", "--nope"}, 2, []string{"--nope"}},
		{"wrong arguments", []string{"keygen", dir}, 2, []string{"accepts 2 arg(s)"}},
		{"unknown subcommand", []string{"config", "nope"}, 2, []string{"nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runBin(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestConfigShowEffective runs "config show --effective" against a real
// etcd that overrides two values of the file: each line names the layer
// that set it, and secrets are not printed.
func TestConfigShowEffective(t *testing.T) {
	etcd := testutil.StartEtcd(t)
	const ns = "showeff"
	etcd.Put(t, "/sorna/"+ns+"/config/redis/addr", "127.0.0.1:1")
	etcd.Put(t, "/sorna/"+ns+"/config/agent/container-logs/driver", "json-file")
	etcd.Put(t, "/sorna/"+ns+"/config/container/kernel-uid", "1100")
	// The node's resource group ("default") asks for gVisor; another
	// group's value does not apply.
	etcd.Put(t, "/sorna/"+ns+"/config/container/sandbox-type/default", "gvisor")
	etcd.Put(t, "/sorna/"+ns+"/config/container/sandbox-type/gpu", "kata")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.toml")
	body := "[agent]\nbackend = \"docker\"\ncontrol-plane = \"etcd\"\n\n[etcd]\nnamespace = \"" + ns + "\"\naddr = \"" + etcd.Addr + "\"\npassword = \"hunter2\"\n\n[container-logs]\ndriver = \"local\"\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(env []string, args ...string) (int, string) {
		cmd := exec.Command(testutil.AgentBinary(t), args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	lineOf := func(out, key string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, key+" = ") {
				return l
			}
		}
		t.Fatalf("no line for %s in:\n%s", key, out)
		return ""
	}
	env := []string{"BACKEND_SCRATCH_ROOT=" + filepath.Join(dir, "scratch")}

	code, out := run(env, "config", "show", "--effective", "-f", cfg)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, tc := range []struct{ key, want string }{
		{"driver", `driver = "json-file"`},
		{"driver", "# etcd config/agent/container-logs/driver"},
		{"kernel-uid", "kernel-uid = 1100"},
		{"kernel-uid", "# etcd config/container/kernel-uid"},
		{"kernel-gid", "# default"},
		{"sandbox-type", `sandbox-type = "gvisor"`},
		{"sandbox-type", "# etcd config/container/sandbox-type/default"},
		{"control-plane", "# file " + cfg + ":3:1"},
		{"scratch-root", "# environment BACKEND_SCRATCH_ROOT"},
		{"password", `password = "<redacted>"`},
	} {
		if l := lineOf(out, tc.key); !strings.Contains(l, tc.want) {
			t.Errorf("%s: %q lacks %q", tc.key, l, tc.want)
		}
	}
	if strings.Contains(out, "hunter2") {
		t.Fatalf("secret printed:\n%s", out)
	}

	// doctor checks the runtime the agent would run with: the group's
	// gVisor (not registered with this machine's engine, unless it is).
	_, out = run(env, "doctor", "-f", cfg)
	if !regexp.MustCompile(`(?m)^\S+\s+sandbox\s+.*runsc`).MatchString(out) {
		t.Errorf("doctor's sandbox line does not check runsc:\n%s", out)
	}
	// A group value the agent would refuse is a doctor finding.
	etcd.Put(t, "/sorna/"+ns+"/config/container/sandbox-type/default", "kata")
	code, out = run(env, "doctor", "-f", cfg)
	if code != 1 || !regexp.MustCompile(`(?m)^FAIL\s+etcd config\s+.*config/container/sandbox-type/default.*not known to be stricter`).MatchString(out) {
		t.Errorf("doctor with an unrankable group runtime: exit %d:\n%s", code, out)
	}
	etcd.Put(t, "/sorna/"+ns+"/config/container/sandbox-type/default", "gvisor")

	// Without --effective etcd is not read: the file's value stands.
	_, out = run(env, "config", "show", "-f", cfg)
	if l := lineOf(out, "driver"); !strings.Contains(l, `"local"`) || !strings.Contains(l, "# file "+cfg+":11:1") {
		t.Fatalf("without --effective: %q", l)
	}

	// etcd down: the file's values are still printed, and the exit status
	// says that they lack etcd's overrides.
	dead := filepath.Join(dir, "dead.toml")
	if err := os.WriteFile(dead, []byte(strings.Replace(body, etcd.Addr, "127.0.0.1:1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = run(env, "config", "show", "--effective", "-f", dead)
	if code != 1 || !strings.Contains(out, "lack etcd's overrides") || !strings.Contains(lineOf(out, "driver"), `"local"`) {
		t.Fatalf("etcd down: exit %d:\n%s", code, out)
	}
}

// TestConfigCheck runs the command function in-process: each listed key
// carries its status, its source and its reason; refusal is a ConfigError
// (exit status 2); the environment counts as at start-up.
func TestConfigCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.toml")
	doc := "[agent]\nbackend = \"docker\"\n[debug]\nlog-stats = true\n[debug.coredump]\npath = \"/var/crash\"\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		refused bool
		want    []string
	}{
		{"warned and neutral", nil, false, []string{
			"warned   debug.log-stats = true  (" + path + ":4:1)", `logging.level = "DEBUG"`,
			"neutral  debug.coredump.path = \"/var/crash\"", "used only with debug.coredump.enabled = true",
			path + ": ok"}},
		{"invalid from the environment", map[string]string{"BACKEND_SANDBOX_TYPE": "jail"}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			err := configCheck(&out, path, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if got := err != nil; got != tc.refused {
				t.Fatalf("refused = %v (%v), want %v\n%s", got, err, tc.refused, out.String())
			}
			if tc.refused && exitCode(err) != 2 {
				t.Fatalf("exit code %d, want 2", exitCode(err))
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Fatalf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
