package krunner

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

func TestJupyterRecords(t *testing.T) {
	for _, tc := range []struct {
		typ, content string
		kind, data   string
		exit         int
	}{
		{"stream", `{"name":"stdout","text":"hi\n"}`, "stdout", "hi\n", 0},
		{"stream", `{"name":"stderr","text":"oops"}`, "stderr", "oops", 0},
		{"error", `{"ename":"ZeroDivisionError","evalue":"division by zero","traceback":["a","b"]}`, "stderr", "a\nb", 1},
		{"error", `{"ename":"SystemExit","evalue":"3","traceback":["t"]}`, "stderr", "t", 3},
		{"error", `{"ename":"SystemExit","evalue":"","traceback":[]}`, "stderr", "", 0},
		{"error", `{"ename":"SystemExit","evalue":"bye","traceback":[]}`, "stderr", "", 1},
		{"execute_result", `{"data":{"text/plain":"2"},"execution_count":1}`, "stdout", "2", 0},
		{"display_data", `{"data":{"text/plain":"<HTML>","text/html":"<b>x</b>"}}`, "html", "<b>x</b>", 0},
		{"display_data", `{"data":{"text/plain":"<Figure>","image/png":"iVBO"}}`, "media", `{"data":"data:image/png;base64,iVBO","type":"image/png"}`, 0},
		{"display_data", `{"data":{"image/jpeg":"/9j/","text/plain":"x"}}`, "media", `{"data":"data:image/jpeg;base64,/9j/","type":"image/jpeg"}`, 0},
		{"execute_result", `{"data":{"text/plain":"<svg>","image/svg+xml":"<svg/>"}}`, "media", `{"data":"\u003csvg/\u003e","type":"image/svg+xml"}`, 0},
		// The first non-plain type wins, in the kernel's order; types
		// upstream does not show are dropped.
		{"execute_result", `{"data":{"text/plain":"md","text/markdown":"# x","text/html":"<h1>"}}`, "", "", 0},
		{"clear_output", `{"wait":false}`, "", "", 0},
		{"update_display_data", `{"data":{"text/plain":"1"}}`, "", "", 0},
	} {
		exit := 0
		recs := jupyterRecords(tc.typ, json.RawMessage(tc.content), &exit)
		if tc.kind == "" {
			if len(recs) != 0 {
				t.Errorf("%s %s: %v", tc.typ, tc.content, recs)
			}
			continue
		}
		if len(recs) != 1 || recs[0].kind != tc.kind || string(recs[0].data) != tc.data || exit != tc.exit {
			t.Errorf("%s %s: %+v exit %d", tc.typ, tc.content, recs, exit)
		}
	}
}

// jupyterDirs is a kernelspec data dir whose python3 kernel is Debian's
// ipykernel.
func ipykernelDirs(t *testing.T) []string {
	t.Helper()
	if out, err := exec.Command("/usr/bin/python3", "-c", "import ipykernel").CombinedOutput(); err != nil {
		testutil.Missing(t, "ipykernel for /usr/bin/python3 (apt-get install python3-ipykernel): %s", out)
	}
	d := t.TempDir()
	kd := filepath.Join(d, "kernels", "python3")
	if err := os.MkdirAll(kd, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := `{"argv":["/usr/bin/python3","-m","ipykernel_launcher","-f","{connection_file}"],"display_name":"Python 3","language":"python"}`
	if err := os.WriteFile(filepath.Join(kd, "kernel.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{d}
}

func TestPythonQueryJupyter_Integration(t *testing.T) {
	dirs := ipykernelDirs(t)
	a := startRunner(t, "python", func(o *Options) { o.JupyterDirs = dirs })
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
		{"raise SystemExit(3)", "", "SystemExit", 3},
		{"import os; os.environ['BAI_TEST_VAR']", "'from-environ'", "", 0},
		{"def f(:", "", "SyntaxError", 1},
	} {
		recs, code := run(tc.code)
		if code != tc.exit || stream(recs, "stdout") != tc.stdout || !strings.Contains(stream(recs, "stderr"), tc.stderr) {
			t.Errorf("%q: exit %d stdout %q stderr %q", tc.code, code, stream(recs, "stdout"), stream(recs, "stderr"))
		}
	}
	// Rich output: html as html, PNG as media with a data URL.
	recs, _ := run("from IPython.display import HTML, Image, display\ndisplay(HTML('<b>bold</b>'))")
	if len(recs) != 1 || recs[0].kind != "html" || recs[0].data != "<b>bold</b>" {
		t.Fatalf("html: %v", recs)
	}
	recs, _ = run("display(Image(data=b'\\x89PNG\\r\\n\\x1a\\n', format='png'))")
	if len(recs) != 1 || recs[0].kind != "media" || !strings.Contains(recs[0].data, `"data:image/png;base64,iVBORw0KGgo=`) {
		t.Fatalf("png: %v", recs)
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
	// Interrupt: KeyboardInterrupt ends the run with exit 1 and the
	// namespace survives.
	startInterruptible(t, a)
	a.send("interrupt", "")
	recs, fin = a.until("finished")
	if exitOf(t, fin) != 1 || !strings.Contains(stream(recs, "stderr"), "KeyboardInterrupt") {
		t.Fatalf("interrupt: %v %v", recs, fin)
	}
	if recs, _ := run("print(x)"); stream(recs, "stdout") != "41\n" {
		t.Fatalf("state lost after interrupt: %v", recs)
	}
	// Completion from the kernel.
	a.send("complete", `{"code":"import os\nos.pa"}`)
	_, comp := a.until("completion")
	if !strings.Contains(comp.data, `path`) {
		t.Fatalf("completion %s", comp.data)
	}
	// A dead kernel: its status and a clear note; the next run has a
	// fresh kernel.
	recs, code := run("import os; os._exit(7)")
	if code != 7 || !strings.Contains(stream(recs, "stderr"), "state is lost") {
		t.Fatalf("os._exit: %d %v", code, recs)
	}
	if recs, code := run("print('x' in dir())"); code != 0 || stream(recs, "stdout") != "False\n" {
		t.Fatalf("after a dead kernel: %d %v", code, recs)
	}
	// A lot of output arrives whole, in records of at most 4 KiB.
	recs, _ = run("import sys; n = sys.stdout.write('y' * 200000)")
	if out := stream(recs, "stdout"); len(out) != 200000 {
		t.Fatalf("big output: %d bytes", len(out))
	}
	for _, r := range recs {
		if len(r.data) > chunk {
			t.Fatalf("a %d-byte frame", len(r.data))
		}
	}
}

// A kernelspec whose kernel cannot start leaves the helper in charge.
func TestPythonQueryJupyterFallback(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testutil.Missing(t, "python3 for the python runtime (apt-get install python3)")
	}
	d := t.TempDir()
	kd := filepath.Join(d, "kernels", "python3")
	_ = os.MkdirAll(kd, 0o755)
	_ = os.WriteFile(filepath.Join(kd, "kernel.json"), []byte(`{"argv":["/nonexistent/python","-f","{connection_file}"]}`), 0o644)
	a := startRunner(t, "python", func(o *Options) { o.JupyterDirs = []string{d} })
	a.send("code", "print(6*7)")
	recs, fin := a.until("finished")
	if exitOf(t, fin) != 0 || stream(recs, "stdout") != "42\n" {
		t.Fatalf("fallback: %v %v", recs, fin)
	}
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// The static runner in a container made from Debian's python3.11 and
// ipykernel: query mode finds the image's python3 kernelspec and runs
// there (ANSI-coloured IPython tracebacks, html records), reached over
// the container's own address (no host ports).
func TestPythonQueryJupyterContainer_Integration(t *testing.T) {
	img := testutil.JupyterImage(t)
	bin := testutil.KrunnerBinary(t)
	name := "bai-test-jupyter-" + strings.ReplaceAll(filepath.Base(t.TempDir()), "/", "")
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	docker("run", "-d", "--name", name, "-w", "/home/work", "-v", bin+":/opt/bai-krunner:ro", "--entrypoint", "/opt/bai-krunner", img, "run", "python")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Logf("runner log:\n%s", out)
		}
		_ = exec.Command("docker", "rm", "-f", name).Run()
	})
	ip := docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name)
	a := dialAgent(t, ip, 2000, 2001)
	run := func(code string) ([]record, int) {
		t.Helper()
		a.send("code", code)
		recs, fin := a.until("finished")
		return recs, exitOf(t, fin)
	}
	if recs, code := run("print(1+1)"); code != 0 || stream(recs, "stdout") != "2\n" {
		t.Fatalf("print: %d %v", code, recs)
	}
	if recs, code := run("x = 41\nx + 1"); code != 0 || stream(recs, "stdout") != "42" {
		t.Fatalf("value: %d %v", code, recs)
	}
	recs, code := run("1/0")
	if errs := stream(recs, "stderr"); code != 1 || !strings.Contains(errs, "ZeroDivisionError") || !strings.Contains(errs, "\x1b[") {
		t.Fatalf("1/0 (an IPython traceback expected): %d %q", code, errs)
	}
	if recs, _ := run("from IPython.display import HTML\nHTML('<i>x</i>')"); len(recs) != 1 || recs[0].kind != "html" || recs[0].data != "<i>x</i>" {
		t.Fatalf("html: %v", recs)
	}
}

// dialAgent plays the agent against a runner at host (in and out ports).
func dialAgent(t *testing.T, host string, in, out int) *agent {
	t.Helper()
	a := &agent{t: t}
	a.ctx, _ = zmq.NewContext()
	a.out, _ = a.ctx.NewSocket(zmq.PUSH)
	a.in, _ = a.ctx.NewSocket(zmq.PULL)
	_ = a.out.SetLinger(50 * time.Millisecond)
	_ = a.in.SetLinger(0)
	_ = a.out.Connect(fmt.Sprintf("tcp://%s:%d", host, in))
	_ = a.in.Connect(fmt.Sprintf("tcp://%s:%d", host, out))
	_ = a.in.SetRcvtimeo(60 * time.Second)
	t.Cleanup(func() {
		a.out.Close()
		a.in.Close()
		a.ctx.Term()
	})
	return a
}
