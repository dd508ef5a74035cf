package krunner

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/bai-agent/bai-agent/internal/krunner/zmtp"
)

// Options configure a Runner.
type Options struct {
	// Runtime is app, shell or python (unknown: app, with a warning).
	Runtime string
	// RuntimePath is the interpreter for python ("" : python3 or python
	// on the child PATH).
	RuntimePath string
	// Addr is the host to bind; InPort/OutPort the request and output
	// ports (2000/2001).
	Addr            string
	InPort, OutPort int
	// SSHPorts and TermPorts are where the built-in SSH server and web
	// terminal start at boot ([2200] and [7681]; host ports in a
	// host-network kernel).
	SSHPorts, TermPorts []int
	WorkDir             string // /home/work
	ConfigDir           string // /home/config
	Env                 []string
	Log                 *slog.Logger
	// Curve, when set, makes the REPL sockets serve CurveZMQ to the
	// agent's client key alone (nil: NULL, anyone who can connect).
	Curve *zmtp.Curve
	// TermToken is the web terminal's credential ("": the terminal
	// refuses everyone).
	TermToken string
	// HostNetwork: the kernel shares the host's network namespace, so
	// its loopback is the host's (SSH forwards nothing).
	HostNetwork bool
	// JupyterDirs are where the python runtime looks for kernelspecs
	// (<dir>/kernels/<name>/kernel.json); nil: jupyter_path's order for
	// the kernel's environment; empty: never (the built-in helper only).
	JupyterDirs []string
}

// Runner serves one kernel.
type Runner struct {
	o       Options
	log     *slog.Logger
	in, out *zmtp.Socket
	started float64 // CLOCK_MONOTONIC seconds at start, for status
	env     []string

	work chan job

	childMu sync.Mutex
	child   *child

	helperMu sync.Mutex
	// interrupting is set while an interrupt is being delivered.
	interrupting atomic.Bool
	py           *pyHelper
	jup          jupyterState // the Jupyter kernel, under helperMu

	inputs chan string // input frames for a waiting python run

	buildOK bool
	svc     services

	sshMu sync.Mutex
	ssh   *sshServer
	term  *webTerm
}

type job struct{ kind, payload string }

// New binds the sockets.
func New(o Options) (*Runner, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	switch o.Runtime {
	case "app", "shell", "python":
	default:
		o.Log.Warn("unknown runtime type; using app", "runtime", o.Runtime)
		o.Runtime = "app"
	}
	if o.InPort == 0 {
		o.InPort = 2000
	}
	if o.OutPort == 0 {
		o.OutPort = 2001
	}
	if len(o.SSHPorts) == 0 {
		o.SSHPorts = []int{2200}
	}
	if len(o.TermPorts) == 0 {
		o.TermPorts = []int{7681}
	}
	if o.WorkDir == "" {
		o.WorkDir = "/home/work"
	}
	if o.ConfigDir == "" {
		o.ConfigDir = "/home/config"
	}
	if o.Env == nil {
		o.Env = os.Environ()
	}
	r := &Runner{o: o, log: o.Log, started: monotonic(), work: make(chan job, 1024), inputs: make(chan string, 16), buildOK: true,
		svc: services{running: map[string]*svcProc{}}}
	r.env = buildEnv(o.Env, filepath.Join(o.ConfigDir, "environ.txt"))
	var err error
	if o.Curve == nil {
		o.Log.Warn("no runner secret: the REPL ports take any peer (NULL mechanism)")
	}
	if r.in, err = zmtp.ListenCurve("PULL", fmt.Sprintf("%s:%d", o.Addr, o.InPort), o.Curve); err != nil {
		return nil, fmt.Errorf("bind the request port %d: %w", o.InPort, err)
	}
	if r.out, err = zmtp.ListenCurve("PUSH", fmt.Sprintf("%s:%d", o.Addr, o.OutPort), o.Curve); err != nil {
		r.in.Close()
		return nil, fmt.Errorf("bind the output port %d: %w", o.OutPort, err)
	}
	return r, nil
}

// buildEnv is the children's environment: the runner's own, overlaid
// with environ.txt (what the agent decided for the kernel).
func buildEnv(base []string, environ string) []string {
	m := map[string]string{}
	var order []string
	add := func(kv string) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return
		}
		if _, seen := m[k]; !seen {
			order = append(order, k)
		}
		m[k] = v
	}
	for _, kv := range base {
		add(kv)
	}
	if f, err := os.Open(environ); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			add(sc.Text())
		}
		f.Close()
	}
	if _, ok := m["HOME"]; !ok {
		add("HOME=/home/work")
	}
	if _, ok := m["PATH"]; !ok {
		add("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	add("TERM=xterm")
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+m[k])
	}
	return out
}

func (r *Runner) childEnv(batch bool) []string {
	env := append([]string{}, r.env...)
	if batch {
		env = append(env, "_BACKEND_BATCH_MODE=1")
	}
	return env
}

// emit sends one output record; an undeliverable one is logged (the PUSH
// socket queues while the agent is away).
func (r *Runner) emit(kind string, payload []byte) {
	if err := r.out.Send([]byte(kind), payload); err != nil {
		r.log.Warn("output not sent", "type", kind, "error", err)
	}
}

func (r *Runner) emitJSON(kind string, v any) {
	b, _ := json.Marshal(v)
	r.emit(kind, b)
}

// statusPayload is msgpack {"started_at": float64}.
func (r *Runner) statusPayload() []byte {
	b := []byte{0x81, 0xAA}
	b = append(b, "started_at"...)
	b = append(b, 0xCB)
	var f [8]byte
	binary.BigEndian.PutUint64(f[:], math.Float64bits(r.started))
	return append(b, f[:]...)
}

// Serve runs until ctx ends.
func (r *Runner) Serve(ctx context.Context) error {
	defer r.close()
	go r.worker(ctx)
	r.startIntrinsic()
	for {
		msg, err := r.in.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(msg) != 2 {
			r.log.Warn("message skipped: not two frames", "frames", len(msg))
			continue
		}
		kind := string(msg[0])
		if !utf8.Valid(msg[1]) {
			r.log.Warn("message skipped: payload is not UTF-8", "type", kind)
			continue
		}
		payload := string(msg[1])
		switch kind {
		case "code", "clean", "build", "exec":
			select {
			case r.work <- job{kind, payload}:
			default:
				r.log.Error("run queue full; request dropped", "type", kind)
			}
		case "status":
			r.emit("status", r.statusPayload())
		case "interrupt":
			// At once, in order with the messages around it (an
			// interrupt followed by the next cell's code must not reach
			// that cell), except while a Jupyter kernel is being started:
			// then beside the loop, which must go on answering status
			// pings; one at a time.
			if !r.interruptChild() && !r.interruptPython(false) && r.interrupting.CompareAndSwap(false, true) {
				go func() {
					defer r.interrupting.Store(false)
					r.interruptPython(true)
				}()
			}
		case "input":
			if !r.feedInput(payload) {
				select {
				case r.inputs <- payload:
				default:
				}
			}
		case "complete":
			go r.complete(payload)
		case "get-apps":
			r.emitJSON("apps-result", map[string]any{"status": "done", "data": r.apps()})
		case "event":
			r.log.Info("event from the agent", "event", payload)
		case "start-service":
			go func(b []byte) { r.emitJSON("service-result", r.startService(b)) }(msg[1])
		case "start-model-service":
			go func(b []byte) { r.emitJSON("model-service-result", r.startModelService(b)) }(msg[1])
		case "shutdown-service":
			var name string
			if err := json.Unmarshal(msg[1], &name); err != nil {
				name = payload
			}
			go r.shutdownService(name)
		default:
			r.log.Warn("unknown message type; ignored", "type", kind)
		}
	}
}

// startIntrinsic prepares cluster SSH and starts the SSH server and the
// web terminal at boot, as upstream's runner does with dropbear and ttyd:
// the other kernels of a cluster session reach this one over SSH without
// anyone calling start_service here. A failure is logged; start_service
// tries again.
func (r *Runner) startIntrinsic() {
	if err := r.prepareClusterSSH(); err != nil {
		r.log.Warn("cluster SSH config not written", "error", err)
	}
	if err := r.startSSH(r.o.SSHPorts); err != nil {
		r.log.Warn("the SSH server did not start", "ports", r.o.SSHPorts, "error", err)
	}
	if err := r.startWebTerm(r.o.TermPorts); err != nil {
		r.log.Warn("the web terminal did not start", "ports", r.o.TermPorts, "error", err)
	}
}

func (r *Runner) close() {
	r.stopSSH()
	r.stopWebTerm()
	r.stopServices()
	r.interrupt()
	if h := r.helper(); h != nil {
		h.stop()
	}
	if k := r.runningKernel(); k != nil {
		k.Shutdown()
	}
	// Give queued output a moment to leave.
	time.Sleep(100 * time.Millisecond)
	r.in.Close()
	r.out.Close()
}

func (r *Runner) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-r.work:
			r.do(j)
		}
	}
}

func (r *Runner) do(j job) {
	switch j.kind {
	case "code":
		r.emitJSON("finished", map[string]int{"exitCode": r.query(j.payload)})
	case "clean":
		code := 0
		if j.payload != "" {
			code = r.batchCmd(j.payload, "clean")
		}
		r.emitJSON("clean-finished", map[string]int{"exitCode": code})
	case "build":
		code := 0
		if j.payload != "" {
			code = r.batchCmd(j.payload, "build")
		}
		r.buildOK = code == 0
		r.emitJSON("build-finished", map[string]int{"exitCode": code})
	case "exec":
		code := 0
		switch {
		case !r.buildOK:
			code = 127
			r.buildOK = true
		case j.payload != "":
			code = r.batchCmd(j.payload, "exec")
		}
		r.emitJSON("finished", map[string]int{"exitCode": code})
	}
}

// batchCmd runs a batch step: "*" picks the runtime's heuristic, anything
// else runs through /bin/sh -c.
func (r *Runner) batchCmd(cmd, step string) int {
	if cmd == "*" {
		return r.heuristic(step)
	}
	return r.runProc([]string{"/bin/sh", "-c", cmd}, true)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func (r *Runner) heuristic(step string) int {
	w := r.o.WorkDir
	switch step {
	case "build":
		if exists(filepath.Join(w, "Makefile")) {
			return r.runProc([]string{"/bin/sh", "-c", "make"}, true)
		}
		if r.o.Runtime == "python" && exists(filepath.Join(w, "setup.py")) {
			if rt := r.pythonPath(); rt != "" {
				return r.runProc([]string{rt, "-m", "pip", "install", "--user", "-e", "."}, true)
			}
		}
	case "exec":
		if r.o.Runtime == "python" && exists(filepath.Join(w, "main.py")) {
			if rt := r.pythonPath(); rt != "" {
				return r.runProc([]string{rt, "main.py"}, true)
			}
		}
		if r.o.Runtime == "python" {
			r.emit("stderr", []byte("no main.py to run\n"))
			return 127
		}
	case "clean":
	}
	r.emit("log", []byte(fmt.Sprintf("%s: no %s heuristic for this image; skipped", r.o.Runtime, step)))
	return 0
}

// query runs code in query mode.
func (r *Runner) query(code string) int {
	switch r.o.Runtime {
	case "shell":
		return r.runProc([]string{"/bin/sh", "-c", code}, false)
	case "python":
		return r.pyQuery(code)
	}
	r.emit("stderr", []byte("query mode is disabled: this kernel has no interactive runtime (runtime-type app)\n"))
	return 127
}

func (r *Runner) complete(payload string) {
	var req struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal([]byte(payload), &req)
	var sugg []string
	if r.o.Runtime == "python" {
		if k := r.runningKernel(); k != nil {
			ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
			sugg, _ = k.Complete(ctx, req.Code)
			cancel()
		} else {
			sugg = r.pyComplete(req.Code)
		}
	}
	if sugg == nil {
		sugg = []string{}
	}
	r.emitJSON("completion", map[string]any{"suggestions": sugg})
}

// StartedAt is the status' started_at.
func (r *Runner) StartedAt() float64 { return r.started }

// Ports returns the bound request and output ports.
func (r *Runner) Ports() (int, int) {
	return portOf(r.in.Addr().String()), portOf(r.out.Addr().String())
}

func portOf(addr string) int {
	_, p, _ := strings.Cut(addr[strings.LastIndex(addr, ":"):], ":")
	n, _ := strconv.Atoi(p)
	return n
}
