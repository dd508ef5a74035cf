package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// The swap from the Python agent with the Python agent's own kernel
// runner: a kernel container laid out as that agent leaves it (its
// labels, mounts and published REPL ports; resource.txt, environ.txt,
// recovery.json and the pickled kconfig.dat in its formats) whose main
// process is Backend.AI's ai.backend.kernel runner started as its
// entrypoint starts it. bai-agent adopts it and drives that runner over
// the same protocol: ping, query-mode code through ipykernel, an
// exception, batch mode, completions, interrupt; then restart_kernel
// (the kernel comes back with bai-krunner) and destroy.
//
// Opt-in: the runner's code is Backend.AI's and is not committed here;
// set BAI_UPSTREAM_SRC to a checkout's src directory (a release that runs
// on Debian's python3.11: 25.19 or older; 26.x uses 3.12 syntax).
func TestAdoptUpstreamKernelRunner_Integration(t *testing.T) {
	img, _ := testutil.UpstreamRunnerImage(t)
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	uid := 1000
	info := e.create(func(c *CreationConfig) {
		c.Image.Canonical = img
		c.UID, c.MainGID = &uid, &uid
	})
	k, _ := e.agent.Kernel(info.ID)
	cfgDir := k.Spec().Scratch.Config
	e.agent.Close()
	e.agent = nil

	// Replace bai-agent's container by the Python agent's: the same name,
	// labels, environment, mounts, limits and published ports, with the
	// runner the Python agent's entrypoint starts (as the kernel user,
	// after su-exec) instead of bai-krunner.
	cli := e.be.Client()
	old, err := cli.ContainerInspect(ctx, info.ContainerID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerRemove(ctx, info.ContainerID, client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	cfg := *old.Container.Config
	cfg.Entrypoint = nil
	cfg.Cmd = []string{"/usr/bin/python3", "-s", "-m", "ai.backend.kernel", "python", "/usr/bin/python3"}
	cfg.User = "1000:1000"
	cfg.Env = append(append([]string(nil), cfg.Env...), "PYTHONPATH=/opt/backend.ai-src", "HOME=/home/work")
	hc := *old.Container.HostConfig
	// Only the upstream runner's needs: bai-krunner's own capability
	// additions are kept (they are upstream's list too).
	name := strings.TrimPrefix(old.Container.Name, "/")
	cr, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &cfg, HostConfig: &hc, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = cli.ContainerRemove(context.Background(), cr.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := cli.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	writePythonAgentFiles(t, e.cfg.Agent.ID, k)
	logs := func() string {
		res, err := cli.ContainerLogs(ctx, cr.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "40"})
		if err != nil {
			return err.Error()
		}
		defer res.Close()
		b := new(strings.Builder)
		buf := make([]byte, 64<<10)
		n, _ := res.Read(buf)
		b.Write(buf[:n])
		return b.String()
	}

	// The Python agent stops while its kernels run: the runner is up
	// (its REPL output socket listens in the container's network
	// namespace; docker-proxy accepts on the host port regardless)
	// before bai-agent starts.
	for deadline := time.Now().Add(90 * time.Second); ; {
		st, err := cli.ContainerInspect(ctx, cr.ID, client.ContainerInspectOptions{})
		if err != nil || !st.Container.State.Running {
			t.Fatalf("the upstream runner exited: %v; its log:\n%s", err, logs())
		}
		if listening(st.Container.State.Pid, 2001) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upstream runner never bound its REPL ports; its log:\n%s", logs())
		}
		time.Sleep(300 * time.Millisecond)
	}

	e.agent = e.start()
	k2, ok := e.agent.Kernel(info.ID)
	if !ok {
		t.Fatalf("kernel not adopted; runner log:\n%s", logs())
	}
	if k2.ContainerID() != cr.ID {
		t.Fatalf("adopted container %s, want %s", k2.ContainerID(), cr.ID)
	}
	checkAdoptedAsBefore(t, k, k2)
	// The runner takes a moment to import and bind its sockets.
	var started float64
	deadline := time.Now().Add(60 * time.Second)
	for {
		if started, err = e.agent.PingKernel(ctx, info.ID); err == nil && started > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping_kernel on the upstream runner: %v; runner log:\n%s", err, logs())
		}
		time.Sleep(500 * time.Millisecond)
	}

	run := func(runID, mode, code string, opts map[string]any) map[string]any {
		t.Helper()
		res, err := e.agent.Execute(ctx, "", info.ID, coderunner.Request{RunID: runID, Mode: mode, Code: code, Opts: opts, APIVersion: 3})
		if err != nil {
			t.Fatalf("execute %q: %v; runner log:\n%s", code, err, logs())
		}
		return res
	}
	// Query mode goes to ipykernel; its first answer can take seconds.
	res := run("q1", "query", "import os\nprint(6*7, os.getuid(), flush=True)", nil)
	if res["status"] != "finished" || !strings.Contains(console(res, "stdout"), "42 1000") {
		t.Fatalf("query mode on the upstream runner: %v", res)
	}
	res = run("q2", "query", "x = 5\nraise ValueError('bad value')", nil)
	if res["status"] != "finished" || !strings.Contains(console(res, "stderr"), "ValueError") {
		t.Fatalf("an exception in query mode: %v", res)
	}
	// The exit code of a raising cell is the runner's to say (1 from
	// 25.x on, 0 before); the agent relays it.
	t.Logf("exitCode of a raising cell: %v", res["exitCode"])
	// State persists between query runs (one ipykernel).
	if res = run("q3", "query", "print(x * 2, flush=True)", nil); !strings.Contains(console(res, "stdout"), "10") {
		t.Fatalf("state between query runs: %v", res)
	}
	// Batch mode: clean, build and exec phases, each answered on its own
	// (clean-finished, build-finished, finished) and continued by the
	// client as Backend.AI's CLI does.
	var statuses []string
	var out strings.Builder
	mode, opts := "batch", map[string]any{"clean": "", "build": "", "exec": "python3 -c 'import sys; print(\"batch-out\"); sys.exit(3)'"}
	for i := 0; i < 10; i++ {
		res = run("b1", mode, "", opts)
		statuses = append(statuses, res["status"].(string))
		out.WriteString(console(res, "stdout"))
		if res["status"] == "finished" {
			break
		}
		mode, opts = "continue", nil
	}
	if got := strings.Join(statuses, ","); !strings.HasSuffix(got, "finished") || !strings.Contains(out.String(), "batch-out") {
		t.Fatalf("batch mode on the upstream runner: statuses %s, stdout %q", got, out.String())
	}
	if ec := fmt.Sprint(res["exitCode"]); ec != "3" {
		t.Fatalf("exitCode of the batch command = %s, want 3", ec)
	}
	// Upstream's runner answers completions with an empty list (its
	// jupyter completion is a TODO), and before 25.x not at all: the
	// agent gives up after its 10 s deadline (the Python agent waits
	// until the manager's RPC times out) and the kernel goes on serving.
	comps, err := e.agent.Completions(ctx, info.ID, "os.pa", map[string]any{"row": 0, "col": 5, "line": "os.pa", "code": "os.pa"})
	switch {
	case err == nil && len(comps) == 0:
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		t.Logf("this runner does not answer completions: %v", err)
	default:
		t.Fatalf("completions: %v %v", comps, err)
	}
	// interrupt reaches ipykernel: a long cell, "continued" after the
	// flush, interrupted, then finished with KeyboardInterrupt.
	flush := 2 * time.Second
	res, err = e.agent.Execute(ctx, "", info.ID, coderunner.Request{RunID: "i1", Mode: "query", Code: "import time\nfor i in range(600): time.sleep(0.1)\nprint('not interrupted')", APIVersion: 3, Flush: &flush})
	if err != nil || res["status"] != "continued" {
		t.Fatalf("long cell: %v %v", res, err)
	}
	if err := e.agent.Interrupt(info.ID); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	for i := 0; i < 10 && res["status"] != "finished"; i++ {
		res = run("i1", "continue", "", nil)
		stderr.WriteString(console(res, "stderr"))
		if strings.Contains(console(res, "stdout"), "not interrupted") {
			t.Fatal("the interrupt did not stop the cell")
		}
	}
	if res["status"] != "finished" || !strings.Contains(stderr.String(), "KeyboardInterrupt") {
		t.Fatalf("after interrupt: %v, stderr %q", res, stderr.String())
	}

	// restart_kernel recreates it from the pickled kconfig.dat as
	// bai-agent's own kernel: the same image and allocation, bai-krunner
	// as the runner.
	if _, err := e.agent.RestartKernel(ctx, k2.SessionID, info.ID, nil); err != nil {
		t.Fatalf("restart of the upstream-runner kernel: %v", err)
	}
	if res = run("r1", "query", "print('after-restart')", nil); !strings.Contains(console(res, "stdout"), "after-restart") {
		t.Fatalf("query after the restart: %v", res)
	}

	// destroy: the runner leaves on the stop signal; the kernel is gone
	// and its scratch with it.
	start := time.Now()
	if err := e.agent.DestroyKernel(ctx, info.ID, k2.SessionID, "user-requested", false); err != nil {
		t.Fatal(err)
	}
	t.Logf("destroy after the restart took %v", time.Since(start).Round(time.Millisecond))
	if _, ok := e.agent.Kernel(info.ID); ok {
		t.Fatal("kernel still registered after destroy")
	}
	if _, err := os.Stat(cfgDir); !os.IsNotExist(err) {
		t.Fatalf("scratch left after destroy: %v", err)
	}
}

// listening says whether a TCP socket listens on port in the network
// namespace of process pid.
func listening(pid, port int) bool {
	want := fmt.Sprintf(":%04X ", port)
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			// local_address is field 1, st is field 3 (0A: LISTEN).
			if len(fields) > 3 && strings.HasSuffix(fields[1]+" ", want) && fields[3] == "0A" {
				return true
			}
		}
	}
	return false
}
