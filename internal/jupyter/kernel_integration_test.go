package jupyter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startIPyKernel launches Debian's ipykernel through a kernelspec in a
// temporary data dir.
func startIPyKernel(t *testing.T, interruptMode string) *Kernel {
	t.Helper()
	requirePyModule(t, "ipykernel")
	data := t.TempDir()
	spec := map[string]any{"argv": []string{debianPython, "-m", "ipykernel_launcher", "-f", "{connection_file}"},
		"display_name": "Python 3", "language": "python"}
	if interruptMode != "" {
		spec["interrupt_mode"] = interruptMode
	}
	b, _ := json.Marshal(spec)
	if err := os.MkdirAll(filepath.Join(data, "kernels", "python3"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "kernels", "python3", "kernel.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := FindSpec([]string{data}, "python")
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k, err := Start(ctx, Options{Spec: s, Env: []string{"HOME=" + home, "PATH=/usr/bin:/bin", "IPYTHONDIR=" + filepath.Join(home, ".ipython")}, Dir: home})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Shutdown)
	return k
}

type rec struct{ kind, content string }

type capture struct {
	mu   sync.Mutex
	recs []rec
	ch   chan string // msg types as they arrive
}

func newCapture() *capture { return &capture{ch: make(chan string, 1024)} }

func (c *capture) hooks(inputs <-chan string, asked func(string, bool)) Hooks {
	return Hooks{
		Output: func(tp string, content json.RawMessage) {
			c.mu.Lock()
			c.recs = append(c.recs, rec{tp, string(content)})
			c.mu.Unlock()
			c.ch <- tp
		},
		Input:  asked,
		Inputs: inputs,
	}
}

func (c *capture) get(tp string) []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, r := range c.recs {
		if r.kind == tp {
			var m map[string]any
			_ = json.Unmarshal([]byte(r.content), &m)
			out = append(out, m)
		}
	}
	return out
}

func (c *capture) stream(name string) string {
	var b strings.Builder
	for _, m := range c.get("stream") {
		if m["name"] == name {
			b.WriteString(m["text"].(string))
		}
	}
	return b.String()
}

func run(t *testing.T, k *Kernel, code string, h Hooks) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := k.Execute(ctx, code, h)
	if err != nil {
		t.Fatalf("execute %q: %v", code, err)
	}
	var m map[string]any
	_ = json.Unmarshal(r, &m)
	return m
}

func TestIPyKernel_Integration(t *testing.T) {
	k := startIPyKernel(t, "")

	c := newCapture()
	if r := run(t, k, "import sys\nx = 41\nprint(x + 1)\nprint('oops', file=sys.stderr)", c.hooks(nil, nil)); r["status"] != "ok" {
		t.Fatalf("reply %v", r)
	}
	if c.stream("stdout") != "42\n" || c.stream("stderr") != "oops\n" {
		t.Fatalf("streams %+v", c.recs)
	}

	c = newCapture()
	run(t, k, "x + 1", c.hooks(nil, nil))
	if res := c.get("execute_result"); len(res) != 1 || res[0]["data"].(map[string]any)["text/plain"] != "42" {
		t.Fatalf("execute_result %+v", c.recs)
	}

	c = newCapture()
	run(t, k, "from IPython.display import HTML, display\ndisplay(HTML('<b>hi</b>'))", c.hooks(nil, nil))
	if d := c.get("display_data"); len(d) != 1 || d[0]["data"].(map[string]any)["text/html"] != "<b>hi</b>" {
		t.Fatalf("display_data %+v", c.recs)
	}

	c = newCapture()
	if r := run(t, k, "1/0", c.hooks(nil, nil)); r["status"] != "error" || r["ename"] != "ZeroDivisionError" {
		t.Fatalf("reply %v", r)
	}
	if e := c.get("error"); len(e) != 1 || e[0]["ename"] != "ZeroDivisionError" || len(e[0]["traceback"].([]any)) == 0 {
		t.Fatalf("error %+v", c.recs)
	}

	// input(): the request reaches the hook, the reply resumes the run.
	c = newCapture()
	inputs := make(chan string, 1)
	var asked []string
	h := c.hooks(inputs, func(prompt string, pw bool) {
		asked = append(asked, prompt)
		inputs <- "bob"
	})
	run(t, k, "name = input('n? ')\nprint('hi', name)", h)
	if len(asked) != 1 || asked[0] != "n? " || c.stream("stdout") != "hi bob\n" {
		t.Fatalf("input: asked %q, %+v", asked, c.recs)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := k.Complete(ctx, "import os\nos.pa")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range m {
		found = found || strings.HasSuffix(s, "path")
	}
	if !found {
		t.Fatalf("completions %q", m)
	}
}

func testInterrupt(t *testing.T, mode string) {
	k := startIPyKernel(t, mode)
	c := newCapture()
	done := make(chan map[string]any, 1)
	// The run tells it reached user code through a FIFO: an interrupt
	// while ipykernel itself flushes output (e.g. right after a print)
	// breaks the kernel's streams, with jupyter_client as with us.
	fifo := filepath.Join(t.TempDir(), "ready")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Short sleeps in a loop, not one long one: CPython acts on a
		// SIGINT only at a bytecode boundary or when a sleep returns
		// EINTR, so a signal that lands between the FIFO's close and the
		// sleep's syscall would wait for the whole sleep (seen 1 run in
		// 20). The loop's backward jump takes it within 50 ms.
		code := fmt.Sprintf("import time\nwith open(%q, 'w') as f:\n    f.write('x')\nwhile True:\n    time.sleep(0.05)", fifo)
		r, err := k.Execute(ctx, code, c.hooks(nil, nil))
		var m map[string]any
		if err == nil {
			_ = json.Unmarshal(r, &m)
		}
		done <- m
	}()
	// The FIFO is read beside the run: a run that ends (or never starts)
	// without opening it must fail the test, not block it.
	ready := make(chan string, 1)
	go func() {
		b, err := os.ReadFile(fifo)
		if err != nil {
			b = []byte(err.Error())
		}
		ready <- string(b)
	}()
	t.Cleanup(func() {
		// Unblocks the reader if the run never opened the FIFO.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	select {
	case b := <-ready:
		if b != "x" {
			t.Fatalf("ready fifo: %q", b)
		}
	case r := <-done:
		t.Fatalf("the run ended before it reached user code: %v, output %+v", r, c.recs)
	case <-time.After(2 * time.Minute):
		t.Fatal("the run did not reach user code in two minutes")
	}
	if err := k.Interrupt(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r["ename"] != "KeyboardInterrupt" {
		t.Fatalf("interrupted reply %v, output %+v", r, c.recs)
	}
	// The kernel lives on.
	c = newCapture()
	run(t, k, "print('after')", c.hooks(nil, nil))
	if c.stream("stdout") != "after\n" {
		t.Fatalf("after interrupt: %+v; interrupted run %v", c.recs, r)
	}
}

func TestIPyKernelInterruptSignal_Integration(t *testing.T)  { testInterrupt(t, "") }
func TestIPyKernelInterruptMessage_Integration(t *testing.T) { testInterrupt(t, "message") }

func TestIPyKernelDies_Integration(t *testing.T) {
	k := startIPyKernel(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := k.Execute(ctx, "import os\nos._exit(3)", Hooks{})
	if !errors.Is(err, ErrDied) {
		t.Fatalf("err %v", err)
	}
	<-k.Exited()
	if k.ExitCode() != 3 {
		t.Fatalf("exit code %d", k.ExitCode())
	}
}
