package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/sandbox"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// sandboxEngine is a test engine with crun and runsc registered. runsc
// (Debian's 2022 build) cannot set up its own network stack in Docker's
// network namespace here ("cannot run with network enabled in root
// network namespace"), so "runsc" passes the container's namespace
// through (--network=host: the sandbox uses Docker's per-container
// namespace, not the machine's) on the ptrace platform; "runsc-netstack"
// is runsc with its defaults, for the refusal path.
func sandboxEngine(t testing.TB, hideUnified bool) *testutil.Engine {
	t.Helper()
	testutil.KrunnerBinary(t)
	rts := map[string]testutil.EngineRuntime{}
	for _, bin := range []string{"crun", "runsc"} {
		path, err := exec.LookPath(bin)
		if err != nil {
			testutil.Missing(t, "%s (apt-get install crun runsc)", bin)
		}
		switch bin {
		case "crun":
			rts["crun"] = testutil.EngineRuntime{Path: path}
		case "runsc":
			rts["runsc"] = testutil.EngineRuntime{Path: path, RuntimeArgs: []string{"--platform=ptrace", "--network=host"}}
			rts["runsc-netstack"] = testutil.EngineRuntime{Path: path}
		}
	}
	return testutil.StartEngineWith(t, testutil.EngineOptions{Runtimes: rts, HideUnifiedCgroup: hideUnified})
}

// A kernel under each sandbox runtime: created with HostConfig.Runtime,
// code executed through the runner, its exit detected, destroyed.
func TestSandboxKernels_Integration(t *testing.T) {
	testutil.RequireRoot(t)
	// crun 1.8 refuses a hybrid cgroup host; the engine runs without the
	// cgroup2 mount in a namespace of its own (see sandboxEngine).
	eng := sandboxEngine(t, true)
	be := eng.Backend()
	img := eng.ImportTestImageWith(map[string]string{"ai.backend.runtime-type": "shell"})
	for _, tc := range []struct{ sandboxType, runtime string }{
		{"crun", "crun"},
		{"runsc", "runsc"},
	} {
		t.Run(tc.runtime, func(t *testing.T) {
			e := newEnvOn(t, be, img, func(c *config.Config) { c.Container.SandboxType = tc.sandboxType })
			rw := filepath.Join(e.vfroot, "rw1")
			// Writable by the kernel user (uid 1000), whatever the umask.
			if err := os.MkdirAll(rw, 0o755); err != nil || os.Chmod(rw, 0o777) != nil {
				t.Fatal(err)
			}
			info := e.create(func(c *CreationConfig) {
				c.Mounts = []MountSpec{{Name: "rw1", HostPath: rw, KernelPath: "/home/work/rw1", MountPerm: "rw"}}
			})
			ctx := context.Background()
			rt, err := be.Client().ContainerInspect(ctx, info.ContainerID, client.ContainerInspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := rt.Container.HostConfig.Runtime; got != tc.runtime {
				t.Fatalf("HostConfig.Runtime = %q, want %q", got, tc.runtime)
			}
			res := e.exec(info.ID, "r1", "query", "echo hi; id -u; cat /proc/version", flushIn(30*time.Second))
			out := console(res, "stdout")
			if res["status"] != "finished" || res["exitCode"] != 0 || !strings.HasPrefix(out, "hi\n") {
				t.Fatalf("execute under %s: %v", tc.runtime, res)
			}
			t.Logf("%s: %q", tc.runtime, out)
			// A vfolder mounted rw: what the kernel writes is on the host.
			res = e.exec(info.ID, "r2", "query", "echo from-sandbox > /home/work/rw1/f && cat /home/work/rw1/f", flushIn(30*time.Second))
			if res["exitCode"] != 0 {
				t.Fatalf("vfolder write under %s: %v", tc.runtime, res)
			}
			if b, err := os.ReadFile(filepath.Join(rw, "f")); err != nil || string(b) != "from-sandbox\n" {
				t.Fatalf("vfolder file on the host: %q %v", b, err)
			}
			// A service through its host port, as the app proxy reaches
			// it: the runner's SSH server answers with its banner.
			var sshPort int
			for _, sp := range info.ServicePorts {
				if sp.Name == "sshd" && len(sp.HostPorts) > 0 {
					sshPort = sp.HostPorts[0]
				}
			}
			var banner string
			testutil.Eventually(t, 30*time.Second, "the SSH banner through the host port", func() bool {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", sshPort), time.Second)
				if err != nil {
					return false
				}
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				b := make([]byte, 64)
				n, _ := c.Read(b)
				banner = string(b[:n])
				return strings.HasPrefix(banner, "SSH-2.0-")
			})
			// The security tier's device-node and mount attacks fail inside
			// the sandbox too (the kernel user, no capabilities).
			res = e.exec(info.ID, "r3", "query", "mknod /home/work/null c 1 3 2>/dev/null; echo mknod=$?; mount -t tmpfs none /home/work/rw1 2>/dev/null; echo mount=$?", flushIn(30*time.Second))
			if got := console(res, "stdout"); strings.Contains(got, "mknod=0") || strings.Contains(got, "mount=0") || !strings.Contains(got, "mknod=") {
				t.Fatalf("an attack succeeded under %s: %q", tc.runtime, got)
			}
			// A new agent adopts the sandboxed kernel (the old one left
			// its container running, as a killed one would) and reaches
			// its runner again.
			e.agent.Close()
			e.agent = e.start()
			if k, ok := e.agent.Kernel(info.ID); !ok || k.State() != kernel.Running {
				t.Fatalf("sandboxed kernel not adopted under %s", tc.runtime)
			}
			res = e.exec(info.ID, "r4", "query", "cat /home/work/rw1/f", flushIn(30*time.Second))
			if console(res, "stdout") != "from-sandbox\n" {
				t.Fatalf("execute after adoption under %s: %v", tc.runtime, res)
			}
			// Exit detection: the kernel's main process ends.
			if _, err := be.Client().ContainerKill(ctx, info.ContainerID, client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 60*time.Second, "kernel terminated after its container died", func() bool {
				k, ok := e.agent.Kernel(info.ID)
				return !ok || k.View().State == kernel.Terminated
			})
			// And a second kernel destroyed by the agent.
			info2 := e.create(nil)
			k, _ := e.agent.Kernel(info2.ID)
			if err := e.agent.DestroyKernel(ctx, info2.ID, k.SessionID, "", false); err != nil {
				t.Fatal(err)
			}
			if _, err := be.Inspect(ctx, info2.ContainerID); err == nil {
				t.Fatalf("container %s still exists after destroy", info2.ContainerID)
			}
		})
	}
}

// The image label asks for a stricter runtime than the node's; never a
// weaker one.
func TestSandboxImageLabel_Integration(t *testing.T) {
	testutil.RequireRoot(t)
	eng := sandboxEngine(t, true)
	be := eng.Backend()
	img := eng.ImportTestImage()
	e := newEnvOn(t, be, img, func(c *config.Config) { c.Container.SandboxType = "crun" })
	ctx := context.Background()
	for label, want := range map[string]string{"gvisor": "runsc", "docker": "crun"} {
		info := e.create(func(c *CreationConfig) {
			c.Image.Labels = map[string]string{sandbox.LabelRuntime: label}
		})
		c, err := be.Client().ContainerInspect(ctx, info.ContainerID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Container.HostConfig.Runtime; got != want {
			t.Fatalf("label %s on a crun node: runtime %q, want %q", label, got, want)
		}
	}
}

// Start-up refuses a runtime the engine does not know, and one whose
// probe container fails, naming the runtime and the engine's error.
func TestSandboxStartupRefusal_Integration(t *testing.T) {
	testutil.RequireRoot(t)
	eng := sandboxEngine(t, false)
	be := eng.Backend()
	img := eng.ImportTestImage()
	e := newEnvOn(t, be, img, nil)
	e.agent.Close()
	e.agent = nil
	for _, tc := range []struct {
		sandboxType string
		want        []string
	}{
		{"kata", []string{`"kata" is not registered`, "runsc-netstack"}},
		// Debian's runsc with its own network stack fails to start here.
		{"runsc-netstack", []string{`"runsc-netstack"`, "does not start", "network"}},
		// crun 1.8 refuses this hybrid cgroup host.
		{"crun", []string{`"crun"`, "does not start", "hybrid"}},
	} {
		e.cfg.Container.SandboxType = tc.sandboxType
		a, err := New(context.Background(), Options{Config: e.cfg, Backend: be, Events: e.events, Log: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		err = a.Start(context.Background())
		a.Close()
		if err == nil {
			t.Fatalf("%s: start-up accepted", tc.sandboxType)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v\ndoes not say %s", tc.sandboxType, err, w)
			}
		}
		t.Logf("%s: %v", tc.sandboxType, err)
		list, _ := be.List(context.Background(), map[string]string{backend.LabelProbe: "sandbox"})
		if len(list) != 0 {
			t.Fatalf("%s: probe containers left: %d", tc.sandboxType, len(list))
		}
	}
}
