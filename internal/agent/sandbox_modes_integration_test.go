package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/coder/websocket"
)

// Every execute mode the manager uses works inside each sandbox runtime:
// streaming with continue and an interrupt that ends the command's whole
// process group, batch mode through the runner, a batch session's result
// event, the web terminal (a pty shell through its host port), and
// input() answered through "input" in a Python kernel.
func TestSandboxExecuteModes_Integration(t *testing.T) {
	testutil.RequireRoot(t)
	eng := sandboxEngine(t, true)
	be := eng.Backend()
	shell := eng.ImportTestImageWith(map[string]string{"ai.backend.runtime-type": "shell"})
	py := eng.ImportPythonImage()
	// (built once, used by the runsc case)
	for _, sandboxType := range []string{"crun", "runsc"} {
		t.Run(sandboxType, func(t *testing.T) {
			e := newEnvOn(t, be, shell, func(c *config.Config) { c.Container.SandboxType = sandboxType })
			ctx := context.Background()
			info := e.create(nil)

			// Streaming, then an interrupt that ends the group.
			e.startSleeps(info.ID, info.ContainerID, "s", 2*time.Second)
			if err := e.agent.Interrupt(info.ID); err != nil {
				t.Fatal(err)
			}
			res := e.exec(info.ID, "s", "continue", "", flushIn(30*time.Second))
			if res["status"] != "finished" || res["exitCode"] != -2 {
				t.Fatalf("after interrupt: %v", res)
			}
			// The group is killed when the run ends; a sandbox may take a
			// moment to reap what the kill left to its init.
			var left string
			deadline := time.Now().Add(testutil.Slow(10 * time.Second))
			for i := 0; ; i++ {
				res = e.exec(info.ID, fmt.Sprintf("p%d", i), "query", "ps -o comm= 2>/dev/null || ps", flushIn(30*time.Second))
				if left = console(res, "stdout"); !strings.Contains(left, "sleep") || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if strings.Contains(left, "sleep") {
				t.Fatalf("the interrupted command left processes: %q", left)
			}

			// Batch mode through the runner: its exit code and output.
			ectx, cancel := context.WithTimeout(ctx, testutil.Slow(time.Minute))
			defer cancel()
			r, err := e.agent.Execute(ectx, "", info.ID, coderunner.Request{RunID: "b", Mode: "batch", Opts: map[string]any{"exec": "echo batch-ok; exit 3"}, APIVersion: 3, Flush: flushIn(30 * time.Second)})
			for err == nil && r["status"] != "finished" {
				r, err = e.agent.Execute(ectx, "", info.ID, coderunner.Request{RunID: "b", Mode: "continue", APIVersion: 3, Flush: flushIn(30 * time.Second)})
			}
			if err != nil || r["exitCode"] != 3 || !strings.Contains(console(r, "stdout"), "batch-ok") {
				t.Fatalf("batch mode: %v %v", r, err)
			}

			// The web terminal through its host port: a pty shell of the
			// kernel user inside the sandbox.
			var ttyPort int
			for _, sp := range info.ServicePorts {
				if sp.Name == "ttyd" && len(sp.HostPorts) > 0 {
					ttyPort = sp.HostPorts[0]
				}
			}
			sctx, scancel := context.WithTimeout(ctx, testutil.Slow(60*time.Second))
			defer scancel()
			sr, err := e.agent.StartService(sctx, info.ID, "ttyd", nil)
			token, _ := sr["token"].(string)
			if err != nil || sr["status"] != "running" || token == "" || ttyPort == 0 {
				t.Fatalf("start ttyd: %v %v (host port %d)", sr, err, ttyPort)
			}
			ws, _, err := websocket.Dial(sctx, fmt.Sprintf("ws://%s:%d/ws?token=%s", info.KernelHost, ttyPort, token), &websocket.DialOptions{Subprotocols: []string{"tty"}})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			_ = ws.Write(sctx, websocket.MessageBinary, []byte(`{"AuthToken":"","columns":80,"rows":24}`))
			_ = ws.Write(sctx, websocket.MessageBinary, []byte("0echo tty=$(tty) uid=$(id -u)\r"))
			var term strings.Builder
			for !strings.Contains(term.String(), "uid=1000") {
				_, msg, err := ws.Read(sctx)
				if err != nil {
					t.Fatalf("web terminal: read: %v; so far %q", err, term.String())
				}
				if len(msg) > 0 && msg[0] == '0' {
					term.Write(msg[1:])
				}
			}
			if !strings.Contains(term.String(), "tty=/dev/pts/") {
				t.Fatalf("the web terminal's shell has no pty: %q", term.String())
			}
			ws.Close(websocket.StatusNormalClosure, "")

			// A batch session: trigger_batch_execution and its event.
			bs := e.create(func(c *CreationConfig) { c.SessionType = "batch"; c.StartupCommand = "echo done; exit 4" })
			k, _ := e.agent.Kernel(bs.ID)
			if err := e.agent.TriggerBatch(ctx, k.SessionID, bs.ID, "echo done; exit 4", nil); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, testutil.Slow(60*time.Second), "session_failure of the batch session", func() bool {
				return e.events.findSession("session_failure", k.SessionID) != nil
			})
			if ev := e.events.findSession("session_failure", k.SessionID); ev["reason"] != "task-failed" || ev["exit_code"] != float64(4) {
				t.Fatalf("batch session event: %v", ev)
			}

			// input() in a Python kernel (this node has two cpu slots),
			// under gVisor only: its pipes and ptys are the Sentry's own;
			// crun's are the host kernel's, as under runc.
			if sandboxType != "runsc" {
				return
			}
			for _, id := range []string{info.ID, bs.ID} {
				kk, _ := e.agent.Kernel(id)
				if err := e.agent.DestroyKernel(ctx, id, kk.SessionID, "", false); err != nil {
					t.Fatal(err)
				}
			}
			pk := e.create(func(c *CreationConfig) { c.Image.Canonical = py })
			res = e.exec(pk.ID, "in", "query", "n = input('name? '); print('hi', n)", flushIn(60*time.Second))
			if res["status"] != "waiting-input" || fmt.Sprint(res["options"]) != "map[is_password:false]" || console(res, "stdout") != "name? " {
				t.Fatalf("input: %v", res)
			}
			res = e.exec(pk.ID, "in", "input", "bob", flushIn(60*time.Second))
			if res["status"] != "finished" || console(res, "stdout") != "hi bob\n" {
				t.Fatalf("after input: %v", res)
			}
		})
	}
}
