package jupyter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/krunner/zmtp"
)

// startIPyKernel launches Debian's ipykernel through a kernelspec in a
// temporary data dir.
func startIPyKernel(t *testing.T, interruptMode string, mutate ...func(*Options)) *Kernel {
	t.Helper()
	spec := map[string]any{"argv": []string{debianPython, "-m", "ipykernel_launcher", "-f", "{connection_file}"},
		"display_name": "Python 3", "language": "python"}
	if interruptMode != "" {
		spec["interrupt_mode"] = interruptMode
	}
	return startSpec(t, spec, mutate...)
}

// startSpec launches the kernel of a kernelspec written to a temporary
// data dir.
func startSpec(t *testing.T, spec map[string]any, mutate ...func(*Options)) *Kernel {
	t.Helper()
	requirePyModule(t, "ipykernel")
	data := t.TempDir()
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
	o := Options{Spec: s, Env: []string{"HOME=" + home, "PATH=/usr/bin:/bin", "IPYTHONDIR=" + filepath.Join(home, ".ipython")}, Dir: home}
	for _, m := range mutate {
		m(&o)
	}
	k, err := Start(ctx, o)
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

// tcpListeners returns the TCP ports pid listens on (its socket inodes
// matched against /proc/net/tcp and tcp6).
func tcpListeners(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// local_address rem_address st ... inode (10th field)
			if len(fs) > 9 && fs[3] == "0A" && inodes[fs[9]] {
				out = append(out, fs[1])
			}
		}
	}
	return out
}

// ipykernel talks over Unix sockets in a 0700 folder, not TCP on
// 127.0.0.1: in a host-network kernel that loopback is the host's, and
// any local user could subscribe to the kernel's iopub (every output,
// every cell's code). TCP stays available for kernels that need it.
func TestIPyKernelUsesUnixSockets_Integration(t *testing.T) {
	k := startIPyKernel(t, "")
	if k.Info.Transport != "ipc" {
		t.Fatalf("transport %q, want ipc", k.Info.Transport)
	}
	// ipykernel keeps one TCP listener of its own whatever the transport:
	// the PULL end of its fork pipe (output of forked children, accepted
	// only behind a random key; it serves nothing). No channel may be
	// reachable over TCP: no PUB to subscribe to, no ROUTER to talk to.
	for _, l := range tcpListeners(t, k.cmd.Process.Pid) {
		port, err := strconv.ParseUint(l[strings.Index(l, ":")+1:], 16, 16)
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		for _, kind := range []string{"SUB", "DEALER"} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := zmtp.Dial(ctx, kind, addr)
			cancel()
			if err == nil {
				c.Close()
				t.Fatalf("a %s reached the kernel over TCP at %s", kind, addr)
			}
		}
	}
	st, err := os.Stat(filepath.Dir(k.Info.IP))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("socket folder %v %v, want mode 0700", st, err)
	}
	if r := run(t, k, "print(6 * 7)", Hooks{}); r["status"] != "ok" {
		t.Fatalf("reply %v", r)
	}
	sock := strings.TrimPrefix(k.Info.addr(k.Info.IOPubPort), "ipc://")
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("iopub socket: %v", err)
	}
	k.Shutdown()
	if _, err := os.Stat(filepath.Dir(sock)); err == nil {
		t.Fatal("the socket folder outlived the kernel")
	}

	kt := startIPyKernel(t, "", func(o *Options) { o.Transport = "tcp" })
	c := newCapture()
	if r := run(t, kt, "print(6 * 7)", c.hooks(nil, nil)); r["status"] != "ok" || c.stream("stdout") != "42\n" {
		t.Fatalf("over TCP: %v %+v", r, c.recs)
	}
	// The same probe finds the channels of a kernel on TCP: it can fail.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sub, err := zmtp.Dial(ctx, "SUB", kt.Info.addr(kt.Info.IOPubPort))
	if err != nil {
		t.Fatalf("the probe does not reach a TCP kernel's iopub: %v", err)
	}
	sub.Close()
}

// A kernel that goes idle but never sends execute_reply (not a working
// one) does not hold the caller for ever: the runner calls with a
// context that never ends.
func TestNoReplyAfterIdle_Integration(t *testing.T) {
	old := replyAfterIdle
	replyAfterIdle = 2 * time.Second
	t.Cleanup(func() { replyAfterIdle = old })
	// ipykernel with its execute_reply dropped on the way out.
	code := `import jupyter_client.session as s
orig = s.Session.send
def send(self, stream, msg_or_type, *a, **k):
    t = msg_or_type if isinstance(msg_or_type, str) else msg_or_type["header"]["msg_type"]
    if t == "execute_reply":
        return None
    return orig(self, stream, msg_or_type, *a, **k)
s.Session.send = send
from ipykernel import kernelapp
kernelapp.launch_new_instance()`
	k := startSpec(t, map[string]any{"argv": []string{debianPython, "-c", code, "-f", "{connection_file}"}, "display_name": "mute", "language": "python"})
	c := newCapture()
	done := make(chan error, 1)
	go func() {
		_, err := k.Execute(context.Background(), "print('ran')", c.hooks(nil, nil))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no execute_reply") {
			t.Fatalf("execute without a reply: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("execute waited for an execute_reply that never comes")
	}
	if c.stream("stdout") != "ran\n" {
		t.Fatalf("the run's output was not delivered: %+v", c.recs)
	}
}
