package krunner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"

	zmq "github.com/pebbe/zmq4"
)

// freePort is a loopback port below the ephemeral range (testutil's
// window): a port taken from ":0" and released is in the range every
// outgoing connection of the machine draws from, and another process can
// take it before the test binds it again.
func freePort(t *testing.T) int { return testutil.FreePort(t) }

// agent plays the agent's side of the protocol with libzmq.
type agent struct {
	t        *testing.T
	ctx      *zmq.Context
	out, in  *zmq.Socket
	r        *Runner
	cancel   context.CancelFunc
	finished chan struct{}
}

// testTermToken is the web terminal token of startRunner's runners.
const testTermToken = "0123456789abcdef-test-token"

func startRunner(t *testing.T, runtime string, mutate ...func(*Options)) *agent {
	t.Helper()
	work, cfg := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(cfg, "environ.txt"), []byte("BAI_TEST_VAR=from-environ\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{Runtime: runtime, Addr: "127.0.0.1", InPort: freePort(t), OutPort: freePort(t), WorkDir: work, ConfigDir: cfg,
		SSHPorts: []int{freePort(t)}, TermPorts: []int{freePort(t)},
		Env: []string{"PATH=" + os.Getenv("PATH")}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), TermToken: testTermToken}
	for _, m := range mutate {
		m(&o)
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{t: t, r: r, cancel: cancel, finished: make(chan struct{})}
	go func() { _ = r.Serve(ctx); close(a.finished) }()
	a.ctx, _ = zmq.NewContext()
	a.out, _ = a.ctx.NewSocket(zmq.PUSH)
	a.in, _ = a.ctx.NewSocket(zmq.PULL)
	_ = a.out.SetLinger(50 * time.Millisecond)
	_ = a.in.SetLinger(0)
	in, out := r.Ports()
	_ = a.out.Connect(fmt.Sprintf("tcp://127.0.0.1:%d", in))
	_ = a.in.Connect(fmt.Sprintf("tcp://127.0.0.1:%d", out))
	_ = a.in.SetRcvtimeo(20 * time.Second)
	t.Cleanup(func() {
		cancel()
		<-a.finished
		a.out.Close()
		a.in.Close()
		a.ctx.Term()
	})
	return a
}

func (a *agent) send(kind, payload string) {
	a.t.Helper()
	if _, err := a.out.SendMessage(kind, payload); err != nil {
		a.t.Fatal(err)
	}
}

type record struct{ kind, data string }

// until collects records up to one of the terminal types.
func (a *agent) until(terminal ...string) ([]record, record) {
	a.t.Helper()
	var got []record
	for {
		m, err := a.in.RecvMessageBytes(0)
		if err != nil {
			a.t.Fatalf("no terminal %v; got %v: %v", terminal, got, err)
		}
		rec := record{string(m[0]), string(m[1])}
		for _, k := range terminal {
			if rec.kind == k {
				return got, rec
			}
		}
		got = append(got, rec)
	}
}

func stream(recs []record, kind string) string {
	var b strings.Builder
	for _, r := range recs {
		if r.kind == kind {
			b.WriteString(r.data)
		}
	}
	return b.String()
}

func exitOf(t *testing.T, rec record) int {
	t.Helper()
	var m struct {
		ExitCode int `json:"exitCode"`
	}
	if err := json.Unmarshal([]byte(rec.data), &m); err != nil {
		t.Fatalf("%s payload %q: %v", rec.kind, rec.data, err)
	}
	return m.ExitCode
}

func TestStatusAndApps(t *testing.T) {
	a := startRunner(t, "app")
	a.send("status", "")
	_, st := a.until("status")
	b := []byte(st.data)
	if len(b) != 21 || b[0] != 0x81 || string(b[2:12]) != "started_at" || b[12] != 0xCB {
		t.Fatalf("status payload % x", b)
	}
	if got := math.Float64frombits(beUint64(b[13:])); got != a.r.StartedAt() || got <= 0 {
		t.Fatalf("started_at %v, want %v", got, a.r.StartedAt())
	}
	a.send("get-apps", "")
	_, apps := a.until("apps-result")
	if apps.data != `{"data":[],"status":"done"}` {
		t.Fatalf("apps-result %s", apps.data)
	}
	a.send("no-such-type", "x")
	a.send("status", "")
	a.until("status") // still serving
	// app has no query mode.
	a.send("code", "print(1)")
	recs, fin := a.until("finished")
	if exitOf(t, fin) != 127 || !strings.Contains(stream(recs, "stderr"), "query mode is disabled") {
		t.Fatalf("app query: %v %v", recs, fin)
	}
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

func TestBatchSteps(t *testing.T) {
	a := startRunner(t, "app")
	for _, tc := range []struct {
		clean, build, exec string
		want               []string // statuses with exit codes
		stdout             string
	}{
		{"", "", "echo hi $BAI_TEST_VAR $_BACKEND_BATCH_MODE", []string{"clean-finished 0", "build-finished 0", "finished 0"}, "hi from-environ 1\n"},
		{"", "exit 4", "echo never", []string{"clean-finished 0", "build-finished 4", "finished 127"}, ""},
		{"true", "", "echo x; exit 3", []string{"clean-finished 0", "build-finished 0", "finished 3"}, "x\n"},
		{"", "", "no-such-command-anywhere", []string{"clean-finished 0", "build-finished 0", "finished 127"}, ""},
	} {
		a.send("clean", tc.clean)
		a.send("build", tc.build)
		a.send("exec", tc.exec)
		var got []string
		var out string
		for _, term := range []string{"clean-finished", "build-finished", "finished"} {
			recs, rec := a.until(term)
			out += stream(recs, "stdout")
			got = append(got, fmt.Sprintf("%s %d", rec.kind, exitOf(t, rec)))
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") || out != tc.stdout {
			t.Errorf("exec %q: %v %q, want %v %q", tc.exec, got, out, tc.want, tc.stdout)
		}
	}
}

// startInterruptible starts a Python run that says through a FIFO that it
// reached user code (a fixed wait could interrupt before anything runs on
// a loaded machine), then sleeps in short steps: CPython acts on a SIGINT
// at a bytecode boundary, so one that lands just before a long sleep's
// syscall would wait for that sleep to end.
func startInterruptible(t *testing.T, a *agent) {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "ready")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	a.send("code", "import time\nwith open("+strconvQuote(fifo)+", 'w') as f:\n    f.write('x')\nwhile True:\n    time.sleep(0.05)")
	if b := readFIFO(t, fifo); b != "x" {
		t.Fatalf("fifo %q", b)
	}
}

// readFIFO reads the FIFO a run writes when it reached user code; a run
// that ends without opening it fails the test instead of blocking it.
func readFIFO(t *testing.T, fifo string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		b, err := os.ReadFile(fifo)
		if err != nil {
			b = []byte(err.Error())
		}
		got <- string(b)
	}()
	select {
	case b := <-got:
		return b
	case <-time.After(testutil.Slow(time.Minute)):
		// Unblock the reader before failing.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("the run did not reach user code (its FIFO was never opened)")
		return ""
	}
}

// sleepingInGroup waits until n processes of the running command's group
// run cmdline (NUL-separated): exec'd, so the SIGINT is theirs.
func sleepingInGroup(t *testing.T, r *Runner, cmdline string, n int) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%d × %q in the command's group", n, cmdline), func() bool {
		r.childMu.Lock()
		c := r.child
		r.childMu.Unlock()
		if c == nil || c.cmd.Process == nil {
			return false
		}
		pgid := c.cmd.Process.Pid
		procs, _ := os.ReadDir("/proc")
		found := 0
		for _, p := range procs {
			pid, err := strconv.Atoi(p.Name())
			if err != nil {
				continue
			}
			if g, err := syscall.Getpgid(pid); err != nil || g != pgid {
				continue
			}
			if cl, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline")); string(cl) == cmdline {
				found++
			}
		}
		return found == n
	})
}

func TestShellInterruptAndInput(t *testing.T) {
	a := startRunner(t, "shell")
	// The input run says it started before the test types: the runner
	// feeds the running command, and a fixed wait could come before the
	// shell exists on a loaded machine.
	ready := func() {
		t.Helper()
		if recs, rec := a.until("stdout", "finished"); rec.kind != "stdout" || rec.data != "ready\n" {
			t.Fatalf("want ready on stdout, got %v then %v", recs, rec)
		}
	}
	// A SIGINT that reaches dash before it forks the foreground command
	// is noted and then forgotten, so the interrupt waits until both
	// sleeps run.
	a.send("code", "sleep 100 & sleep 100; echo done")
	sleepingInGroup(t, a.r, "sleep\x00100\x00", 2)
	t0 := time.Now()
	a.send("interrupt", "")
	_, fin := a.until("finished")
	if code := exitOf(t, fin); code != -2 && code != 130 {
		t.Fatalf("interrupted exit code %d", code)
	}
	if time.Since(t0) > 3*time.Second {
		t.Fatal("interrupt took too long")
	}
	a.send("code", "echo ready; read name; echo hello $name")
	ready()
	a.send("input", "bob")
	recs, fin := a.until("finished")
	if exitOf(t, fin) != 0 || stream(recs, "stdout") != "hello bob\n" {
		t.Fatalf("input: %v %v", recs, fin)
	}
	// Invalid UTF-8 from a command arrives as raw bytes; the agent decodes.
	a.send("code", `printf '\377ok'`)
	recs, _ = a.until("finished")
	if stream(recs, "stdout") != "\xffok" {
		t.Fatalf("raw bytes: %q", stream(recs, "stdout"))
	}
}

// helperOnly keeps query mode in the built-in helper even where the
// host has a Jupyter kernelspec.
func helperOnly(o *Options) { o.JupyterDirs = []string{} }

func TestPythonQuery(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testutil.Missing(t, "python3 for the python runtime (apt-get install python3)")
	}
	a := startRunner(t, "python", helperOnly)
	run := func(code string) ([]record, int) {
		t.Helper()
		a.send("code", code)
		recs, fin := a.until("finished")
		return recs, exitOf(t, fin)
	}
	for _, tc := range []struct {
		code, stdout, stderr string
		exit                 int
	}{
		{"print(1+1)", "2\n", "", 0},
		{"x = 41", "", "", 0},
		{"print(x+1)", "42\n", "", 0},
		{"1+1", "2", "", 0},
		{"None", "", "", 0},
		{"1/0", "", "ZeroDivisionError", 1},
		{"raise SystemExit(3)", "", "", 3},
		{"import os; os.environ['BAI_TEST_VAR']", "'from-environ'", "", 0},
		{"def f(:", "", "SyntaxError", 1},
		{"def g():\n    raise ValueError('v')\ng()", "", "ValueError: v", 1},
	} {
		recs, code := run(tc.code)
		if code != tc.exit || stream(recs, "stdout") != tc.stdout || !strings.Contains(stream(recs, "stderr"), tc.stderr) {
			t.Errorf("%q: exit %d stdout %q stderr %q", tc.code, code, stream(recs, "stdout"), stream(recs, "stderr"))
		}
		// Tracebacks show the user's frames, never the helper's.
		if errs := stream(recs, "stderr"); strings.Contains(errs, "<string>") || strings.Contains(errs, "_exec") {
			t.Errorf("%q: the helper's frames in the traceback: %s", tc.code, errs)
		}
	}
	recs, _ := run("def g():\n    raise ValueError('v')\ng()")
	if errs := stream(recs, "stderr"); !strings.HasPrefix(errs, "Traceback (most recent call last):\n  File \"<input>\", line 3, in <module>\n") || !strings.Contains(errs, "line 2, in g") {
		t.Errorf("traceback %q", errs)
	}
	// input() becomes waiting-input; the reply continues the run.
	a.send("code", "name = input('n? '); print('hi', name)")
	recs, wait := a.until("waiting-input")
	if wait.data != `{"is_password":false}` || stream(recs, "stdout") != "n? " {
		t.Fatalf("waiting-input %v %v", recs, wait)
	}
	a.send("input", "bob")
	recs, fin := a.until("finished")
	if exitOf(t, fin) != 0 || stream(recs, "stdout") != "hi bob\n" {
		t.Fatalf("after input: %v", recs)
	}
	// Interrupt a sleeping run: KeyboardInterrupt, exit 1, the namespace
	// survives.
	startInterruptible(t, a)
	a.send("interrupt", "")
	recs, fin = a.until("finished")
	if exitOf(t, fin) != 1 || !strings.Contains(stream(recs, "stderr"), "KeyboardInterrupt") {
		t.Fatalf("interrupt: %v %v", recs, fin)
	}
	if recs, _ := run("print(x)"); stream(recs, "stdout") != "41\n" {
		t.Fatalf("state lost after interrupt: %v", recs)
	}
	// Completion from the live namespace.
	a.send("complete", `{"code":"impo"}`)
	_, comp := a.until("completion")
	if !strings.Contains(comp.data, `"import"`) {
		t.Fatalf("completion %s", comp.data)
	}
	// os._exit: the run reports the code, the next run starts afresh.
	recs, code := run("import os; os._exit(7)")
	if code != 7 || !strings.Contains(stream(recs, "stderr"), "state is lost") {
		t.Fatalf("os._exit: %d %v", code, recs)
	}
	if recs, code := run("print('x' in dir())"); code != 0 || stream(recs, "stdout") != "False\n" {
		t.Fatalf("after a lost helper: %d %v", code, recs)
	}
	// A lot of output arrives whole, in chunks of at most 4 KiB.
	recs, _ = run("import sys; n = sys.stdout.write('y' * 200000)")
	out := stream(recs, "stdout")
	if len(out) != 200000 {
		t.Fatalf("big output: %d bytes", len(out))
	}
	for _, r := range recs {
		if len(r.data) > chunk {
			t.Fatalf("a %d-byte frame", len(r.data))
		}
	}
}

// Rich values are shown as Jupyter frontends expect them: PNG as a media
// record with a data URL, HTML as an html record (not media, the
// reference's quirk).
func TestPythonDisplay(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testutil.Missing(t, "python3 for the python runtime (apt-get install python3)")
	}
	a := startRunner(t, "python", helperOnly)
	a.send("code", `
class H:
    def _repr_html_(self): return "<b>bold</b>"
class P:
    def _repr_png_(self): return b"\x89PNG"
print("before")
H()`)
	recs, fin := a.until("finished")
	last := recs[len(recs)-1]
	if exitOf(t, fin) != 0 || stream(recs, "stdout") != "before\n" || last.kind != "html" || last.data != "<b>bold</b>" {
		t.Fatalf("html display: %v", recs)
	}
	a.send("code", "P()")
	recs, _ = a.until("finished")
	if len(recs) != 1 || recs[0].kind != "media" || recs[0].data != `{"data":"data:image/png;base64,iVBORw==","type":"image/png"}` {
		t.Fatalf("png display: %v", recs)
	}
}
