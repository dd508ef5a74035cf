package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	gossh "golang.org/x/crypto/ssh"

	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

func flushIn(d time.Duration) *time.Duration { return &d }

func (e *env) exec(kid, runID, mode, code string, flush *time.Duration) map[string]any {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := e.agent.Execute(ctx, "", kid, coderunner.Request{RunID: runID, Mode: mode, Code: code, APIVersion: 3, Flush: flush})
	if err != nil {
		e.t.Fatalf("execute %q: %v", code, err)
	}
	return res
}

// startSleeps starts "echo start; sleep 100 & sleep 100" as run runID and
// returns once both sleeps sleep: the first flush may come before the
// command printed anything on a loaded machine, and a SIGINT that reaches
// the shell before it forked its foreground command is not acted on.
func (e *env) startSleeps(kid, containerID, runID string, flush time.Duration) {
	e.t.Helper()
	res := e.exec(kid, runID, "query", "echo start; sleep 100 & sleep 100", &flush)
	out := console(res, "stdout")
	deadline := time.Now().Add(testutil.Slow(30 * time.Second))
	for res["status"] == "continued" && out == "" && time.Now().Before(deadline) {
		res = e.exec(kid, runID, "continue", "", &flush)
		out += console(res, "stdout")
	}
	if res["status"] != "continued" || out != "start\n" {
		e.t.Fatalf("continued: %v (stdout so far %q)", res, out)
	}
	ctx := context.Background()
	// Lines whose command is the sleep itself (not the shell's own
	// "sh -c ... sleep 100 & sleep 100", which some shells keep).
	testutil.Eventually(e.t, 20*time.Second, "both sleeps running", func() bool {
		_, ps := testutil.Exec(ctx, e.be, containerID, "ps")
		n := 0
		for _, line := range strings.Split(ps, "\n") {
			if strings.HasSuffix(strings.TrimSpace(line), " sleep 100") && !strings.Contains(line, "sh -c") {
				n++
			}
		}
		return n == 2
	})
}

func console(res map[string]any, stream string) string {
	var b strings.Builder
	for _, c := range res["console"].([]any) {
		rec := c.([]any)
		if rec[0] == stream {
			b.WriteString(rec[1].(string))
		}
	}
	return b.String()
}

// A kernel on a shell-runtime busybox image: the runner is the
// entrypoint, the kernel user is set up from LOCAL_USER_ID and friends,
// code runs as that user, interrupts reach the whole process group,
// destroy takes about a second.
func TestRunnerShellKernel_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := testutil.TestImageWith(t, map[string]string{"ai.backend.runtime-type": "shell"})
	uid, gid := 1234, 2345
	info := e.create(func(c *CreationConfig) {
		c.Image.Canonical = img
		c.UID, c.MainGID = &uid, &gid
		c.SupplementaryGIDs = []int{3456}
		c.Environ["FROM_MANAGER"] = "yes"
	})
	ctx := context.Background()
	ins, err := e.be.Inspect(ctx, info.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	ro := false
	for _, m := range ins.Mounts {
		if m.Target == KrunnerPath {
			ro = m.ReadOnly
		}
	}
	if !ro {
		t.Fatalf("the runner is not mounted read-only at %s: %+v", KrunnerPath, ins.Mounts)
	}
	res := e.exec(info.ID, "r1", "query", "echo hi $FROM_MANAGER; id -u; id -g; id -G; pwd", flushIn(20*time.Second))
	want := "hi yes\n1234\n2345\n"
	if res["status"] != "finished" || res["exitCode"] != 0 || !strings.HasPrefix(console(res, "stdout"), want) {
		t.Fatalf("query as the kernel user: %v", res)
	}
	if groups := console(res, "stdout"); !strings.Contains(groups, "3456") || !strings.Contains(groups, "42") || !strings.HasSuffix(groups, "/home/work\n") {
		t.Fatalf("supplementary groups or cwd: %q", groups)
	}
	if code, pw := testutil.Exec(ctx, e.be, info.ContainerID, "grep", "^work:", "/etc/passwd"); code != 0 || !strings.HasPrefix(pw, "work:x:1234:2345:") {
		t.Fatalf("/etc/passwd work entry: %q", pw)
	}
	// Streaming with continue, then an interrupt that ends the group.
	e.startSleeps(info.ID, info.ContainerID, "r2", 500*time.Millisecond)
	if err := e.agent.Interrupt(info.ID); err != nil {
		t.Fatal(err)
	}
	res = e.exec(info.ID, "r2", "continue", "", flushIn(10*time.Second))
	if res["status"] != "finished" || res["exitCode"] != -2 {
		t.Fatalf("after interrupt: %v", res)
	}
	if _, out := testutil.Exec(ctx, e.be, info.ContainerID, "ps"); strings.Contains(out, "sleep 100") {
		t.Fatalf("the interrupted command left processes: %s", out)
	}
	started, err := e.agent.PingKernel(ctx, info.ID)
	if err != nil || started <= 0 {
		t.Fatalf("ping_kernel %v %v", started, err)
	}
	// The agent restarts: the runner is re-attached, same started_at.
	e.agent.Close()
	e.agent = e.start()
	again, err := e.agent.PingKernel(ctx, info.ID)
	if err != nil || again != started {
		t.Fatalf("after agent restart: started_at %v (was %v) %v", again, started, err)
	}
	if res := e.exec(info.ID, "r3", "query", "echo back", flushIn(20*time.Second)); console(res, "stdout") != "back\n" {
		t.Fatalf("execute after restart: %v", res)
	}
	k, _ := e.agent.Kernel(info.ID)
	t0 := time.Now()
	if err := e.agent.DestroyKernel(ctx, info.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	// The runner ends on the engine's SIGTERM: not killed after the
	// 10-s stop timeout (exit 137), however loaded this machine is.
	d := time.Since(t0)
	if term := waitTermination(t, e, info.ID); term.ExitCode == 137 || d > testutil.Slow(10*time.Second) {
		t.Fatalf("destroying an idle kernel took %s, exit code %d (137: killed after the stop timeout)", d, term.ExitCode)
	}
	t.Logf("destroy took %s", d)
}

// Batch sessions: trigger_batch_execution returns at once; the result
// arrives as session_success / session_failure with upstream's reasons.
func TestRunnerBatch_Integration(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		code    string
		timeout *time.Duration
		event   string
		reason  string
		exit    float64
	}{
		{"echo ok", nil, "session_success", "task-finished", 0},
		{"echo x; exit 3", nil, "session_failure", "task-failed", 3},
		{"sleep 30", flushIn(time.Second), "session_failure", "task-timeout", -2},
	} {
		info := e.create(func(c *CreationConfig) { c.SessionType = "batch"; c.StartupCommand = tc.code })
		k, _ := e.agent.Kernel(info.ID)
		t0 := time.Now()
		if err := e.agent.TriggerBatch(context.Background(), k.SessionID, info.ID, tc.code, tc.timeout); err != nil {
			t.Fatal(err)
		}
		if time.Since(t0) > time.Second {
			t.Fatal("trigger_batch_execution did not return at once")
		}
		testutil.Eventually(t, 30*time.Second, tc.event+" for "+tc.code, func() bool {
			return e.events.findSession(tc.event, k.SessionID) != nil
		})
		ev := e.events.findSession(tc.event, k.SessionID)
		if ev["reason"] != tc.reason || ev["exit_code"] != tc.exit {
			t.Errorf("%q: %s %v", tc.code, tc.event, ev)
		}
		_ = e.agent.DestroyKernel(context.Background(), info.ID, k.SessionID, "", false)
	}
}

// Python runtime on an image made from the host's python3.11: a
// persistent namespace, Jupyter-like display of the last value, input()
// as waiting-input, completions from the live namespace.
func TestRunnerPythonKernel_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := testutil.PythonImage(t)
	info := e.create(func(c *CreationConfig) { c.Image.Canonical = img })
	for _, tc := range []struct{ code, stdout string }{
		{"print(1+1)", "2\n"},
		{"x = 41", ""},
		{"x + 1", "42"},
	} {
		res := e.exec(info.ID, "", "query", tc.code, flushIn(30*time.Second))
		if res["status"] != "finished" || res["exitCode"] != 0 || console(res, "stdout") != tc.stdout {
			t.Fatalf("%q: %v", tc.code, res)
		}
	}
	res := e.exec(info.ID, "", "query", "1/0", flushIn(30*time.Second))
	if res["exitCode"] != 1 || !strings.Contains(console(res, "stderr"), "ZeroDivisionError") {
		t.Fatalf("1/0: %v", res)
	}
	res = e.exec(info.ID, "in", "query", "n = input('name? '); print('hi', n)", flushIn(30*time.Second))
	if res["status"] != "waiting-input" || fmt.Sprint(res["options"]) != "map[is_password:false]" || console(res, "stdout") != "name? " {
		t.Fatalf("input: %v", res)
	}
	res = e.exec(info.ID, "in", "input", "bob", flushIn(30*time.Second))
	if res["status"] != "finished" || console(res, "stdout") != "hi bob\n" {
		t.Fatalf("after input: %v", res)
	}
	sugg, err := e.agent.Completions(context.Background(), info.ID, "impo", nil)
	if err != nil || !strings.Contains(fmt.Sprint(sugg), "import") {
		t.Fatalf("completions %v %v", sugg, err)
	}
	// The image's http-server service (python -m http.server from its
	// service definition) serves a file the code wrote.
	e.exec(info.ID, "", "query", "open('hello.txt', 'w').write('from python')", flushIn(30*time.Second))
	var port int
	for _, sp := range info.ServicePorts {
		if sp.Name == "http-server" {
			port = sp.HostPorts[0]
		}
	}
	if r, err := e.agent.StartService(context.Background(), info.ID, "http-server", nil); err != nil || r["status"] != "started" {
		t.Fatalf("start http-server: %v %v", r, err)
	}
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/hello.txt", info.KernelHost, port))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "from python" {
		t.Fatalf("http-server: %q", b)
	}
}

// A runner that never answers: creation fails after init-timeout-sec
// and leaves nothing (container, ports, scratch, allocation).
func TestRunnerNeverAnswers_Integration(t *testing.T) {
	silent := testutil.TestkernelBinary(t) // static; sleeps, never serves
	e := newEnv(t, func(c *config.Config) {
		c.Container.KrunnerBinary = silent
		c.KernelLifecycles.InitTimeoutSec = 3
		c.KernelLifecycles.InitPollingTimeoutSec = 3
	})
	kid := uuid.NewString()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := e.agent.CreateKernels(ctx, e.request(kid, nil))
	if !errors.Is(err, ErrCreationFailed) {
		t.Fatalf("create with a silent runner: %v", err)
	}
	if list, _ := e.be.List(ctx, map[string]string{LabelKernelID: kid}); len(list) != 0 {
		t.Fatal("the container was left behind")
	}
	if n := e.agent.Ports().InUse(); n != 0 {
		t.Fatalf("%d ports still taken", n)
	}
	for s, v := range e.agent.Allocator().Used() {
		if !v.IsZero() {
			t.Fatalf("slot %s still allocated", s)
		}
	}
	if _, err := os.Stat(e.agent.scratch.Paths(kid).Base); !os.IsNotExist(err) {
		t.Fatal("scratch left behind")
	}
}

// An image with nothing but /etc/passwd: the runner starts, answers and
// says why a command cannot run; a non-root kernel user is set up by
// editing the files directly.
func TestRunnerAnyImage_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := testutil.ScratchImage(t)
	uid, gid := 4321, 4321
	info := e.create(func(c *CreationConfig) { c.Image.Canonical = img; c.UID, c.MainGID = &uid, &gid })
	res := e.exec(info.ID, "b", "batch", "", flushIn(20*time.Second))
	// Batch with no exec step: clean, build and exec all skip with 0.
	for res["status"] != "finished" {
		res = e.exec(info.ID, "b", "continue", "", flushIn(20*time.Second))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := e.agent.Execute(ctx, "", info.ID, coderunner.Request{RunID: "c", Mode: "batch", Opts: map[string]any{"exec": "echo hi"}, APIVersion: 3, Flush: flushIn(20 * time.Second)})
	for err == nil && r["status"] != "finished" {
		r, err = e.agent.Execute(ctx, "", info.ID, coderunner.Request{RunID: "c", Mode: "continue", APIVersion: 3, Flush: flushIn(20 * time.Second)})
	}
	if err != nil || r["exitCode"] != 127 || !strings.Contains(console(r, "stderr"), "/bin/sh not found") {
		t.Fatalf("a command on an image without a shell: %v %v", r, err)
	}
	res = e.exec(info.ID, "", "query", "anything", flushIn(20*time.Second))
	if res["exitCode"] != 127 {
		t.Fatalf("query on app: %v", res)
	}
}

// A command killed by the OOM killer inside a kernel reports -9; the
// runner and the kernel live on.
func TestRunnerOOMInRun_Integration(t *testing.T) {
	e := newEnv(t, nil)
	info := e.create(func(c *CreationConfig) { c.ResourceSlots = map[string]string{"cpu": "1", "mem": "67108864"} })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := e.agent.Execute(ctx, "", info.ID, coderunner.Request{RunID: "m", Mode: "batch", Opts: map[string]any{"exec": "TEST_MODE=memhog MEMHOG_MB=256 /bin/testkernel"}, APIVersion: 3, Flush: flushIn(60 * time.Second)})
	for err == nil && r["status"] != "finished" {
		r, err = e.agent.Execute(ctx, "", info.ID, coderunner.Request{RunID: "m", Mode: "continue", APIVersion: 3, Flush: flushIn(60 * time.Second)})
	}
	if err != nil || r["exitCode"] != -9 {
		t.Fatalf("memhog in a 64 MiB kernel: %v %v", r, err)
	}
	if k, _ := e.agent.Kernel(info.ID); k.State() != "running" {
		t.Fatalf("kernel state %s after an OOM kill inside a run", k.State())
	}
	res := e.exec(info.ID, "after", "batch", "", flushIn(20*time.Second))
	for res["status"] != "finished" {
		res = e.exec(info.ID, "after", "continue", "", flushIn(20*time.Second))
	}
}

// The agent restarts while a batch job runs: the new agent re-attaches to
// the job and reports its result.
func TestRunnerBatchAcrossAgentRestart_Integration(t *testing.T) {
	e := newEnv(t, nil)
	// The job ends when the test says so (after the restart), not after a
	// fixed sleep that a slow Close could outlast.
	job := "while [ ! -e /tmp/go ]; do sleep 0.1; done; echo done; exit 5"
	info := e.create(func(c *CreationConfig) { c.SessionType = "batch"; c.StartupCommand = job })
	k, _ := e.agent.Kernel(info.ID)
	if err := e.agent.TriggerBatch(context.Background(), k.SessionID, info.ID, job, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	e.agent.Close()
	if e.events.findSession("session_failure", k.SessionID) != nil {
		t.Fatal("the job finished before the restart; the test proves nothing")
	}
	e.agent = e.start()
	if code, out := testutil.Exec(context.Background(), e.be, info.ContainerID, "touch", "/tmp/go"); code != 0 {
		t.Fatalf("touch /tmp/go: %d %s", code, out)
	}
	testutil.Eventually(t, 30*time.Second, "session_failure from the restarted agent", func() bool {
		return e.events.findSession("session_failure", k.SessionID) != nil
	})
	if ev := e.events.findSession("session_failure", k.SessionID); ev["reason"] != "task-failed" || ev["exit_code"] != float64(5) {
		t.Fatalf("session_failure %v", ev)
	}
}

// internal_data's SSH keypair and dotfiles land in /home/work, owned by
// the kernel user; a dotfile that would leave /home/work is refused
// before anything is created.
func TestUserFilesFromInternalData_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := testutil.TestImageWith(t, map[string]string{"ai.backend.runtime-type": "shell"})
	uid, gid := 1500, 1500
	info := e.create(func(c *CreationConfig) {
		c.Image.Canonical = img
		c.UID, c.MainGID = &uid, &gid
		c.InternalData = map[string]any{
			"ssh_keypair": map[string]any{"public_key": "ssh-rsa AAAA test", "private_key": "-----BEGIN KEY-----\nx\n-----END KEY-----"},
			"dotfiles": []any{
				map[string]any{"path": ".vimrc", "perm": "644", "data": "set nu"},
				map[string]any{"path": "/home/work/.config/app/conf", "perm": "600", "data": "k=v\n"},
				map[string]any{"path": "/etc/evil", "perm": "644", "data": "no"},
			},
		}
	})
	res := e.exec(info.ID, "", "query", "cat .vimrc .config/app/conf .ssh/authorized_keys; stat -c '%u %a' .config/app/conf id_container .ssh", flushIn(20*time.Second))
	want := "set nu\nk=v\nssh-rsa AAAA test1500 600\n1500 600\n1500 700\n"
	if got := console(res, "stdout"); got != want {
		t.Fatalf("user files:\n%q\nwant\n%q", got, want)
	}
	if _, err := os.Stat("/etc/evil"); err == nil {
		t.Fatal("a dotfile was written on the host outside the kernel")
	}
	kid := uuid.NewString()
	_, err := e.agent.CreateKernels(context.Background(), e.request(kid, func(c *CreationConfig) {
		c.InternalData = map[string]any{"dotfiles": []any{map[string]any{"path": "../../escape", "data": "x"}}}
	}))
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a dotfile leaving /home/work: %v", err)
	}
	if list, _ := e.be.List(context.Background(), map[string]string{LabelKernelID: kid}); len(list) != 0 {
		t.Fatal("a container was created for the refused request")
	}
}

// Apps: a service definition in the image answers HTTP through
// kernel_host:host_port once start_service says started; running on the
// second start; shutdown closes it and a new start works; preopen ports
// start nothing and reach what the user runs.
func TestRunnerServices_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := testutil.TestImageWith(t, map[string]string{"ai.backend.runtime-type": "shell", "ai.backend.service-ports": "web:http:8090"})
	info := e.create(func(c *CreationConfig) { c.Image.Canonical = img; c.PreopenPorts = []int{9000} })
	var web, pre *struct{ host int }
	for _, sp := range info.ServicePorts {
		switch sp.Name {
		case "web":
			if sp.URLTemplate != "http://{host}:{port}/" || fmt.Sprint(sp.AllowedArguments) != "[-v]" {
				t.Fatalf("web service port lacks the definition's extras: %+v", sp)
			}
			web = &struct{ host int }{sp.HostPorts[0]}
		case "9000":
			pre = &struct{ host int }{sp.HostPorts[0]}
		}
	}
	if web == nil || pre == nil {
		t.Fatalf("service ports %+v", info.ServicePorts)
	}
	e.exec(info.ID, "", "query", "echo served-by-web > index.html", flushIn(20*time.Second))
	ctx := context.Background()
	get := func(port int) (string, error) {
		c := &http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get(fmt.Sprintf("http://%s:%d/index.html", info.KernelHost, port))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	start := func(name string, opts map[string]any) map[string]any {
		t.Helper()
		r, err := e.agent.StartService(ctx, info.ID, name, opts)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := start("web", nil); r["status"] != "started" {
		t.Fatalf("start web: %v", r)
	}
	if body, err := get(web.host); err != nil || body != "served-by-web\n" {
		t.Fatalf("GET through the host port: %q %v", body, err)
	}
	if r := start("web", nil); r["status"] != "running" {
		t.Fatalf("second start: %v", r)
	}
	e.agent.ShutdownService(info.ID, "web")
	testutil.Eventually(t, 10*time.Second, "web stopped", func() bool { _, err := get(web.host); return err != nil })
	if r := start("web", nil); r["status"] != "started" {
		t.Fatalf("start after shutdown: %v", r)
	}
	for name, want := range map[string]string{"nope": "invalid service name"} {
		if r := start(name, nil); r["status"] != "failed" || r["error"] != want {
			t.Errorf("%s: %v", name, r)
		}
	}
	if r := start("web", map[string]any{"arguments": map[string]any{"--bad": nil}}); r["status"] != "running" {
		// already running: arguments are not looked at
		t.Errorf("running service with other arguments: %v", r)
	}
	// Preopen: started without spawning; the user's own server answers.
	if r := start("9000", nil); r["status"] != "started" {
		t.Fatalf("preopen: %v", r)
	}
	e.exec(info.ID, "", "query", "busybox httpd -p 9000 -h /home/work", flushIn(20*time.Second))
	testutil.Eventually(t, 10*time.Second, "the user's server on the preopen port", func() bool {
		body, err := get(pre.host)
		return err == nil && body == "served-by-web\n"
	})
}

// SSH on the sshd service port of any image: the session's keypair from
// internal_data logs in as the kernel user through kernel_host:host_port.
func TestRunnerSSH_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := testutil.TestImageWith(t, map[string]string{"ai.backend.runtime-type": "shell"})
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := gossh.NewPublicKey(pub)
	pemBlock, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	uid := 1600
	info := e.create(func(c *CreationConfig) {
		c.Image.Canonical = img
		c.UID, c.MainGID = &uid, &uid
		c.InternalData = map[string]any{"ssh_keypair": map[string]any{"public_key": string(gossh.MarshalAuthorizedKey(sshPub)), "private_key": string(pem.EncodeToMemory(pemBlock))}}
	})
	var port int
	for _, sp := range info.ServicePorts {
		if sp.Name == "sshd" {
			port = sp.HostPorts[0]
		}
	}
	// Running since boot, as upstream's intrinsic sshd.
	if r, err := e.agent.StartService(context.Background(), info.ID, "sshd", nil); err != nil || r["status"] != "running" {
		t.Fatalf("start sshd: %v %v", r, err)
	}
	// The key the user downloads is the kernel's id_container.
	k, _ := e.agent.Kernel(info.ID)
	keyPEM, err := os.ReadFile(filepath.Join(k.Spec().Scratch.Work, "id_container"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := gossh.Dial("tcp", fmt.Sprintf("%s:%d", info.KernelHost, port), &gossh.ClientConfig{User: "work", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	sess, _ := cli.NewSession()
	out, err := sess.CombinedOutput("id -u; pwd")
	if err != nil || string(out) != "1600\n/home/work\n" {
		t.Fatalf("ssh id: %q %v", out, err)
	}
	// And with Debian's OpenSSH client and sftp, as a user would.
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		testutil.Missing(t, "openssh-client (apt-get install openssh-client)")
	}
	keyFile := filepath.Join(t.TempDir(), "id_container")
	_ = os.WriteFile(keyFile, keyPEM, 0o600)
	opts := []string{"-i", keyFile, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}
	o, err := exec.Command(sshBin, append(opts, "-p", fmt.Sprint(port), "work@"+info.KernelHost, "id", "-u")...).CombinedOutput()
	if err != nil || string(o) != "1600\n" {
		t.Fatalf("OpenSSH ssh: %q %v", o, err)
	}
	local := filepath.Join(t.TempDir(), "up.txt")
	_ = os.WriteFile(local, []byte("through sftp\n"), 0o644)
	batch := filepath.Join(t.TempDir(), "batch")
	_ = os.WriteFile(batch, []byte("put "+local+" up.txt\nget up.txt "+local+".back\n"), 0o644)
	o, err = exec.Command("sftp", append(opts, "-P", fmt.Sprint(port), "-b", batch, "work@"+info.KernelHost)...).CombinedOutput()
	if err != nil {
		t.Fatalf("OpenSSH sftp: %v\n%s", err, o)
	}
	if b, _ := os.ReadFile(local + ".back"); string(b) != "through sftp\n" {
		t.Fatalf("sftp round trip: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(k.Spec().Scratch.Work, "up.txt")); string(b) != "through sftp\n" {
		t.Fatalf("the uploaded file in /home/work: %q", b)
	}
}

// The web terminal on the ttyd port of any image: the page and xterm.js
// are served (static, to anyone, never with a cookie), /token and the
// WebSocket need the kernel's token, and a WebSocket client speaking
// ttyd's protocol gets a shell of the kernel user, with the token in the
// URL or in its first message.
func TestRunnerWebTerminal_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := testutil.TestImageWith(t, map[string]string{"ai.backend.runtime-type": "shell"})
	uid := 1700
	info := e.create(func(c *CreationConfig) { c.Image.Canonical = img; c.UID, c.MainGID = &uid, &uid })
	var port int
	for _, sp := range info.ServicePorts {
		if sp.Name == "ttyd" {
			port = sp.HostPorts[0]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := e.agent.StartService(ctx, info.ID, "ttyd", nil)
	if err != nil || r["status"] != "running" {
		t.Fatalf("start ttyd: %v %v", r, err)
	}
	// The terminal's token comes back to the start_service caller; without
	// it neither /token nor the WebSocket answers.
	token, _ := r["token"].(string)
	if token == "" {
		t.Fatalf("start ttyd gave no token: %v", r)
	}
	base := fmt.Sprintf("http://%s:%d/", info.KernelHost, port)
	for _, p := range []string{"token", "token?token=nope", "ws?token=nope"} {
		resp, err := http.Get(base + p)
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /%s without the token: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
	for _, p := range []string{"", "xterm.js", "xterm.css", "?token=" + token} {
		resp, err := http.Get(base + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /%s: %v %v", p, resp, err)
		}
		resp.Body.Close()
		if c := resp.Header.Values("Set-Cookie"); len(c) > 0 {
			t.Fatalf("GET /%s sets a cookie: %q", p, c)
		}
	}
	req, _ := http.NewRequest("GET", base+"token", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.Token != token {
		t.Fatalf("/token with the bearer token: %d %q", resp.StatusCode, tok.Token)
	}
	for i, c := range []struct{ url, first string }{
		{fmt.Sprintf("ws://%s:%d/ws?token=%s", info.KernelHost, port, token), ""},
		{fmt.Sprintf("ws://%s:%d/ws", info.KernelHost, port), token},
	} {
		ws, _, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{Subprotocols: []string{"tty"}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		_ = ws.Write(ctx, websocket.MessageBinary, []byte(`{"AuthToken":"`+c.first+`","columns":80,"rows":24}`))
		_ = ws.Write(ctx, websocket.MessageBinary, []byte("0echo uid=$(id -u)\r"))
		var out strings.Builder
		for !strings.Contains(out.String(), "uid=1700") {
			_, msg, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("terminal %d: read: %v; so far %q", i, err, out.String())
			}
			if len(msg) > 0 && msg[0] == '0' {
				out.Write(msg[1:])
			}
		}
	}
}

// writePythonAgentFiles replaces the config files bai-agent wrote for
// kernel k by the ones the Python agent writes for the same kernel:
// environ.txt, resource.txt (and their _base copies) and recovery.json
// from gen_pyagent_files.py, kconfig.dat and cluster.json (a pickle, no
// kconfig.json) from gen_kconfig.py; both restate the Python agent's
// writers.
func writePythonAgentFiles(t *testing.T, agentID string, k *Kernel) {
	t.Helper()
	dir := k.Spec().Scratch.Config
	for _, f := range []string{kconfigFile, "recovery.json", "resource.txt", "environ.txt"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	var cores []string
	for _, id := range k.Spec().Allocation.Devices("cpu") {
		cores = append(cores, string(id))
	}
	facts, _ := json.Marshal(map[string]any{
		"dir": dir, "agent_id": agentID, "kernel_id": k.ID, "session_id": k.SessionID,
		"owner_user_id": k.Spec().Config.OwnerUserID, "owner_project_id": nil,
		"image": k.Spec().ImageRef, "network_id": k.Spec().Config.NetworkID, "session_type": k.Spec().Config.SessionType,
		"cores": cores, "mem": k.Spec().Allocation.Total("mem").IntPart(), "scratch_size": 0,
		"service_ports": k.Spec().Services, "repl_in": k.Spec().ReplIn, "repl_out": k.Spec().ReplOut, "environ": k.Spec().Environ,
	})
	td := filepath.Join(testutil.ModuleRoot(t), "internal", "agent", "testdata")
	cmd := exec.Command("/usr/bin/python3", filepath.Join(td, "gen_pyagent_files.py"))
	cmd.Stdin = bytes.NewReader(facts)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen_pyagent_files.py: %v %s", err, out)
	}
	if out, err := exec.Command("/usr/bin/python3", filepath.Join(td, "gen_kconfig.py"), dir, k.ID, k.SessionID).CombinedOutput(); err != nil {
		t.Fatalf("gen_kconfig.py: %v %s", err, out)
	}
}

// checkAdoptedAsBefore compares what adoption rebuilt from the Python
// agent's files with the kernel as bai-agent created it.
func checkAdoptedAsBefore(t *testing.T, before, after *Kernel) {
	t.Helper()
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"cpu cores", after.Spec().Allocation.Devices("cpu"), before.Spec().Allocation.Devices("cpu")},
		{"memory", after.Spec().Allocation.Total("mem").String(), before.Spec().Allocation.Total("mem").String()},
		{"repl ports", [2]int{after.Spec().ReplIn, after.Spec().ReplOut}, [2]int{before.Spec().ReplIn, before.Spec().ReplOut}},
		{"host ports", sorted(after.Spec().HostPorts), sorted(before.Spec().HostPorts)},
		{"service ports", portsOnly(after.Spec().Services), portsOnly(before.Spec().Services)},
		{"image", after.Spec().ImageRef, before.Spec().ImageRef},
		{"session", after.SessionID, before.SessionID},
		{"environ", after.Spec().Environ["BACKENDAI_SESSION_ID"], before.Spec().Environ["BACKENDAI_SESSION_ID"]},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("adopted %s = %v, created with %v", c.what, c.got, c.want)
		}
	}
}

// portsOnly keeps what the Python agent's recovery.json holds of a
// service port (not the URL template the runner's get-apps adds).
func portsOnly(sps []image.ServicePort) string {
	var b strings.Builder
	for _, sp := range sps {
		fmt.Fprintf(&b, "%s/%s/%v/%v/%v ", sp.Name, sp.Protocol, sp.ContainerPorts, sp.HostPorts, sp.IsInference)
	}
	return b.String()
}

func sorted(p []int) []int {
	out := append([]int(nil), p...)
	sort.Ints(out)
	return out
}

// A kernel whose files are all the Python agent's (recovery.json,
// resource.txt and environ.txt in its formats, kconfig.dat, a pickle, and
// cluster.json; no kconfig.json) is adopted with the same allocation and
// ports, and restart_kernel works on it with the pickled creation config.
func TestAdoptPythonAgentKernel_Integration(t *testing.T) {
	e := newEnv(t, nil)
	info := e.create(nil)
	k, _ := e.agent.Kernel(info.ID)
	e.agent.Close()
	e.agent = nil
	writePythonAgentFiles(t, e.cfg.Agent.ID, k)
	cfgDir := k.Spec().Scratch.Config
	e.agent = e.start()
	k2, ok := e.agent.Kernel(info.ID)
	if !ok {
		t.Fatal("kernel not adopted")
	}
	checkAdoptedAsBefore(t, k, k2)
	if k2.Spec().Config.Environ["HELLO"] != "world" || k2.Spec().Config.SessionType != "interactive" {
		t.Fatalf("pickled creation config not read: %+v", k2.Spec().Config)
	}
	if _, err := os.Stat(filepath.Join(cfgDir, kconfigFile)); err != nil {
		t.Fatalf("kconfig.json not written from kconfig.dat: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.agent.RestartKernel(ctx, k2.SessionID, info.ID, nil); err != nil {
		t.Fatalf("restart of an adopted Python-agent kernel: %v", err)
	}
	if res := e.exec(info.ID, "b", "batch", "", flushIn(20*time.Second)); res == nil {
		t.Fatal("no runner after the restart")
	}
}

// The web terminal in a real browser: headless Chromium opens the page on
// the kernel's ttyd host port with the token in the URL's fragment (as
// `ctl app KERNEL ttyd` prints it), xterm.js connects with ttyd's
// protocol and shows the kernel user's shell prompt (read back from the
// rendered DOM); with a wrong token the page opens no terminal. A
// screenshot of the page is kept and its path logged.
func TestWebTerminalInChromium_Integration(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testutil.Missing(t, "chromium (apt-get install chromium)")
	}
	e := newEnv(t, nil)
	img := testutil.TestImageWith(t, map[string]string{"ai.backend.runtime-type": "shell"})
	info := e.create(func(c *CreationConfig) {
		c.Image.Canonical = img
		c.Environ["PS1"] = "bai-webterm-$(id -u)$ "
		uid := 1700
		c.UID, c.MainGID = &uid, &uid
	})
	var port int
	for _, sp := range info.ServicePorts {
		if sp.Name == "ttyd" {
			port = sp.HostPorts[0]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := e.agent.StartService(ctx, info.ID, "ttyd", nil)
	token, _ := r["token"].(string)
	if err != nil || token == "" {
		t.Fatalf("start ttyd: %v %v", r, err)
	}
	// As `ctl app KERNEL ttyd` prints it: the token in the fragment,
	// which the browser never sends.
	url := fmt.Sprintf("http://%s:%d/#token=%s", info.KernelHost, port, token)
	domURL := fmt.Sprintf("http://%s:%d/?renderer=dom#token=%s", info.KernelHost, port, token)
	shot := filepath.Join(os.TempDir(), "bai-webterm-"+info.ID[:8]+".png")
	browse := func(url string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
			"--user-data-dir=" + t.TempDir(), "--window-size=900,400", "--virtual-time-budget=10000"}
		out, err := exec.CommandContext(ctx, chromium, append(append(base, args...), url)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}
	var dom string
	deadline := time.Now().Add(90 * time.Second)
	// The DOM renderer puts the screen's text in the page.
	screen := func(dom string) string {
		// One span per cell: the rows' text is the page without tags.
		if i := strings.Index(dom, `class="xterm-rows`); i >= 0 {
			dom = dom[i:]
		}
		return regexp.MustCompile(`<[^>]*>`).ReplaceAllString(dom, "")
	}
	for dom = screen(browse(domURL, "--dump-dom")); !strings.Contains(dom, "bai-webterm-"); dom = screen(browse(domURL, "--dump-dom")) {
		if time.Now().After(deadline) {
			t.Fatalf("no prompt in the rendered terminal:\n%s", dom)
		}
		time.Sleep(time.Second)
	}
	if !strings.Contains(dom, "bai-webterm-1700$") {
		t.Fatalf("prompt without the kernel user's uid:\n%s", dom)
	}
	if dom := screen(browse(fmt.Sprintf("http://%s:%d/?renderer=dom#token=not-the-token", info.KernelHost, port), "--dump-dom")); strings.Contains(dom, "bai-webterm-") || !strings.Contains(dom, "[disconnected]") {
		t.Fatalf("the page with a wrong token:\n%s", dom)
	}
	browse(url, "--screenshot="+shot)
	st, err := os.Stat(shot)
	if err != nil || st.Size() < 1000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("web terminal screenshot: %s (%d bytes)", shot, st.Size())
}
