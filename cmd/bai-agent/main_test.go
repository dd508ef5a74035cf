package main

import (
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
	nokey := write("nokey.toml", "[agent]\nbackend = \"docker\"\nrpc-listen-addr = \"127.0.0.1:1\"\nrpc-auth-agent-keypair = \"missing.key_secret\"\nrpc-auth-manager-public-key = \"manager.key\"\n")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"version", []string{"version"}, 0, []string{"bai-agent "}},
		{"check ok with unknown key", []string{"config", "check", good}, 0, []string{"good.toml:3:1: agent.frobnicate: unknown key", ": ok"}},
		{"check invalid value", []string{"config", "check", bad}, 2, []string{"bad.toml:5:1", "container.port-range"}},
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
