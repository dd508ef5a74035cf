package jupyter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/bai-agent/bai-agent/internal/krunner/zmtp"
)

// replyAfterIdle bounds the wait for execute_reply once the kernel said
// it is idle.
var replyAfterIdle = 30 * time.Second

// ErrDied is returned when the kernel process exits mid-request.
var ErrDied = errors.New("jupyter: the kernel process exited")

// ErrBusy is returned by Complete while code runs (the kernel would only
// answer after the run).
var ErrBusy = errors.New("jupyter: the kernel is busy")

// Options launch a kernel.
type Options struct {
	Spec *Spec
	// Env is the kernel's environment (KEY=VALUE); the spec's env is
	// laid over it, with ${VAR} expanded from it.
	Env []string
	// Dir is the kernel's working directory.
	Dir string
	// RuntimeDir is where the kernel's own folder (connection file, Unix
	// sockets) is made ("": the system's temporary folder).
	RuntimeDir string
	// Output receives the kernel process' own stdout and stderr (its
	// logs; nil: discarded).
	Output io.Writer
	// Transport is "tcp" to force TCP on 127.0.0.1; otherwise a kernel
	// known to speak it (ipykernel) gets Unix sockets in RuntimeDir.
	Transport string
	// StartTimeout bounds launch until the kernel answers kernel_info on
	// shell and publishes on iopub (0: 30 s).
	StartTimeout time.Duration
}

// Kernel is a running kernel and this client's connection to it.
type Kernel struct {
	Spec  *Spec
	Info  *ConnInfo
	sess  *Session
	cmd   *exec.Cmd
	file  string
	rmDir string

	shell, control, stdin, iopub *zmtp.Conn

	exited  chan struct{}
	readers sync.WaitGroup

	mu      sync.Mutex
	waiters map[string]chan *Message // shell/control replies by parent msg_id
	current string                   // the msg_id whose iopub output is wanted
	sub     chan *Message
	seen    chan struct{} // closed at the first iopub message
	seenOne sync.Once
	stdinCh chan *Message

	busy sync.Mutex
}

// Start writes a connection file, launches the kernel from the spec's
// argv and waits until it answers.
func Start(ctx context.Context, o Options) (*Kernel, error) {
	if o.StartTimeout == 0 {
		o.StartTimeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()
	k := &Kernel{Spec: o.Spec, exited: make(chan struct{}),
		waiters: map[string]chan *Message{}, seen: make(chan struct{}), stdinCh: make(chan *Message, 16)}
	// A folder of this kernel's own (0700, whatever RuntimeDir's mode):
	// its Unix sockets live there.
	dir, err := os.MkdirTemp(o.RuntimeDir, "bai-jupyter-")
	if err != nil {
		return nil, err
	}
	k.rmDir = dir
	id := NewID()
	var info *ConnInfo
	if o.Spec.speaksIPC() && o.Transport != "tcp" {
		// No quiet fall-back to TCP when the path is too long: that is
		// the exposure the sockets avoid. The caller decides.
		info, err = NewIPCConnInfo(filepath.Join(dir, "k-"+id[:8]), o.Spec.Name)
	} else {
		info, err = NewConnInfo("127.0.0.1", o.Spec.Name)
	}
	if err != nil {
		k.cleanup()
		return nil, err
	}
	k.Info, k.sess = info, NewSession([]byte(info.Key), "kernel")
	k.file = filepath.Join(dir, "kernel-"+id+".json")
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(k.file, b, 0o600); err != nil {
		k.cleanup()
		return nil, err
	}
	env := append([]string{}, o.Env...)
	lookup := func(name string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], name+"="); ok {
				return v
			}
		}
		return ""
	}
	for kk, v := range o.Spec.Env {
		env = append(env, kk+"="+os.Expand(v, lookup))
	}
	argv := make([]string, len(o.Spec.Argv))
	for i, a := range o.Spec.Argv {
		a = strings.ReplaceAll(a, "{connection_file}", k.file)
		argv[i] = strings.ReplaceAll(a, "{resource_dir}", o.Spec.Dir)
	}
	if !strings.Contains(argv[0], "/") {
		p, err := lookPath(argv[0], lookup("PATH"))
		if err != nil {
			k.cleanup()
			return nil, fmt.Errorf("jupyter: kernel %s: %w", o.Spec.Name, err)
		}
		argv[0] = p
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, o.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if o.Output != nil {
		cmd.Stdout, cmd.Stderr = o.Output, o.Output
	}
	if err := cmd.Start(); err != nil {
		k.cleanup()
		return nil, fmt.Errorf("jupyter: start kernel %s: %w", o.Spec.Name, err)
	}
	k.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(k.exited)
	}()
	if err := k.connect(ctx); err != nil {
		k.Shutdown()
		return nil, err
	}
	return k, nil
}

func lookPath(name, path string) (string, error) {
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	for _, d := range filepath.SplitList(path) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH", name)
}

// dial connects one channel, retrying while the kernel is still binding.
func (k *Kernel) dial(ctx context.Context, kind string, port int) (*zmtp.Conn, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		// shell and stdin share the session's identity: the kernel sends
		// input_request to the identity the execute_request came from.
		c, err := zmtp.DialIdentity(ctx, kind, k.Info.addr(port), []byte(k.sess.ID))
		if err == nil {
			return c, nil
		}
		select {
		case <-k.exited:
			return nil, fmt.Errorf("%w during start-up (%v)", ErrDied, k.cmd.ProcessState)
		case <-ctx.Done():
			return nil, fmt.Errorf("jupyter: kernel did not open port %d: %v", port, err)
		case <-t.C:
		}
	}
}

func (k *Kernel) connect(ctx context.Context) error {
	var err error
	if k.iopub, err = k.dial(ctx, "SUB", k.Info.IOPubPort); err != nil {
		return err
	}
	if k.shell, err = k.dial(ctx, "DEALER", k.Info.ShellPort); err != nil {
		return err
	}
	if k.control, err = k.dial(ctx, "DEALER", k.Info.ControlPort); err != nil {
		return err
	}
	if k.stdin, err = k.dial(ctx, "DEALER", k.Info.StdinPort); err != nil {
		return err
	}
	k.readers.Add(4)
	go k.readReplies(k.shell)
	go k.readReplies(k.control)
	go k.readIOPub()
	go k.readStdin()
	// Ready: kernel_info answered on shell and the subscription live on
	// iopub (every request makes the kernel publish busy/idle); resend
	// until both, as jupyter_client's wait_for_ready does.
	for {
		if _, err := k.request(ctx, k.shell, "kernel_info_request", map[string]any{}); err != nil {
			return fmt.Errorf("jupyter: kernel_info: %w", err)
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-k.seen:
			t.Stop()
			return nil
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("jupyter: no iopub messages from the kernel: %w", ctx.Err())
		}
	}
}

func (k *Kernel) readReplies(c *zmtp.Conn) {
	defer k.readers.Done()
	for frames := range c.Messages() {
		m, err := k.sess.Deserialize(frames)
		if err != nil {
			continue
		}
		k.mu.Lock()
		w := k.waiters[m.Parent.MsgID]
		delete(k.waiters, m.Parent.MsgID)
		k.mu.Unlock()
		if w != nil {
			w <- m
		}
	}
}

func (k *Kernel) readIOPub() {
	defer k.readers.Done()
	for frames := range k.iopub.Messages() {
		m, err := k.sess.Deserialize(frames)
		if err != nil {
			continue
		}
		k.seenOne.Do(func() { close(k.seen) })

		k.mu.Lock()
		sub := k.sub
		if m.Parent.MsgID != k.current {
			sub = nil
		}
		k.mu.Unlock()
		if sub != nil {
			sub <- m // the run drains it until idle
		}
	}
}

func (k *Kernel) readStdin() {
	defer k.readers.Done()
	for frames := range k.stdin.Messages() {
		if m, err := k.sess.Deserialize(frames); err == nil {
			select {
			case k.stdinCh <- m:
			default:
			}
		}
	}
}

func (k *Kernel) send(c *zmtp.Conn, m *Message) error {
	frames, err := k.sess.Serialize(m)
	if err != nil {
		return err
	}
	return c.Send(frames...)
}

// request sends a request and waits for its reply.
func (k *Kernel) request(ctx context.Context, c *zmtp.Conn, msgType string, content any) (*Message, error) {
	m, err := k.sess.New(msgType, content, nil)
	if err != nil {
		return nil, err
	}
	w := make(chan *Message, 1)
	k.mu.Lock()
	k.waiters[m.Header.MsgID] = w
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		delete(k.waiters, m.Header.MsgID)
		k.mu.Unlock()
	}()
	if err := k.send(c, m); err != nil {
		return nil, err
	}
	select {
	case r := <-w:
		return r, nil
	case <-k.exited:
		return nil, ErrDied
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Hooks receive what one execution produces.
type Hooks struct {
	// Output gets each iopub message of the run but status and
	// execute_input (stream, display_data, execute_result, error, …).
	Output func(msgType string, content json.RawMessage)
	// Input is called on an input_request; the reply is the next string
	// read from Inputs.
	Input  func(prompt string, password bool)
	Inputs <-chan string
}

// Execute runs code and returns the execute_reply's content once the
// kernel went idle. ErrDied means the kernel exited during the run.
//
// A request that arrives while the kernel still aborts its queue after
// an error (stop_on_error) is answered "aborted" without running; it is
// sent again (at most twice more), since nothing of it ran.
func (k *Kernel) Execute(ctx context.Context, code string, h Hooks) (json.RawMessage, error) {
	k.busy.Lock()
	defer k.busy.Unlock()
	for attempt := 0; ; attempt++ {
		r, err := k.execute(ctx, code, h)
		if err != nil || attempt == 2 {
			return r, err
		}
		var st struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(r, &st) != nil || st.Status != "aborted" {
			return r, nil
		}
	}
}

func (k *Kernel) execute(ctx context.Context, code string, h Hooks) (json.RawMessage, error) {
	m, err := k.sess.New("execute_request", map[string]any{
		"code": code, "silent": false, "store_history": true, "user_expressions": map[string]any{},
		"allow_stdin": h.Inputs != nil, "stop_on_error": true,
	}, nil)
	if err != nil {
		return nil, err
	}
	id := m.Header.MsgID
	sub := make(chan *Message, 256)
	reply := make(chan *Message, 1)
	k.mu.Lock()
	k.current, k.sub = id, sub
	k.waiters[id] = reply
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.current, k.sub = "", nil
		delete(k.waiters, id)
		k.mu.Unlock()
		for len(sub) > 0 { // unblock a reader mid-send
			<-sub
		}
	}()
	// Stale input requests belong to an earlier run.
	for len(k.stdinCh) > 0 {
		<-k.stdinCh
	}
	if err := k.send(k.shell, m); err != nil {
		return nil, err
	}
	var inputs <-chan string
	var asked *Header
	output := func(m *Message) (idle bool) {
		switch m.Header.MsgType {
		case "status":
			var st struct {
				State string `json:"execution_state"`
			}
			_ = json.Unmarshal(m.Content, &st)
			return st.State == "idle"
		case "execute_input":
		default:
			if h.Output != nil {
				h.Output(m.Header.MsgType, m.Content)
			}
		}
		return false
	}
	for {
		select {
		case im := <-sub:
			if output(im) {
				// The reply travels on shell, beside iopub's idle: it is
				// milliseconds behind, or the kernel is not a working one
				// (and the runner, whose context never ends, must not
				// wait on it for ever).
				t := time.NewTimer(replyAfterIdle)
				defer t.Stop()
				select {
				case r := <-reply:
					return r.Content, nil
				case <-k.exited:
					return nil, ErrDied
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-t.C:
					return nil, fmt.Errorf("jupyter: no execute_reply %s after the kernel went idle", replyAfterIdle)
				}
			}
		case sm := <-k.stdinCh:
			if sm.Header.MsgType != "input_request" || sm.Parent.MsgID != id {
				continue
			}
			// Output published before the request goes out first.
		drain:
			for {
				select {
				case im := <-sub:
					if output(im) {
						break drain
					}
				default:
					break drain
				}
			}
			var req struct {
				Prompt   string `json:"prompt"`
				Password bool   `json:"password"`
			}
			_ = json.Unmarshal(sm.Content, &req)
			hdr := sm.Header
			asked, inputs = &hdr, h.Inputs
			if h.Input != nil {
				h.Input(req.Prompt, req.Password)
			}
		case text := <-inputs:
			rm, err := k.sess.New("input_reply", map[string]any{"value": text, "status": "ok"}, asked)
			if err != nil {
				return nil, err
			}
			asked, inputs = nil, nil
			if err := k.send(k.stdin, rm); err != nil {
				return nil, err
			}
		case <-k.exited:
			return nil, ErrDied
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Complete asks the kernel for completions of code with the cursor at
// its end (ErrBusy while code runs).
func (k *Kernel) Complete(ctx context.Context, code string) ([]string, error) {
	if !k.busy.TryLock() {
		return nil, ErrBusy
	}
	defer k.busy.Unlock()
	r, err := k.request(ctx, k.shell, "complete_request", map[string]any{"code": code, "cursor_pos": utf8.RuneCountInString(code)})
	if err != nil {
		return nil, err
	}
	var c struct {
		Matches []string `json:"matches"`
	}
	if err := json.Unmarshal(r.Content, &c); err != nil {
		return nil, err
	}
	return c.Matches, nil
}

// Interrupt interrupts the running code the way the kernelspec asks:
// an interrupt_request on the control channel for interrupt_mode
// "message", else SIGINT to the kernel's process group.
func (k *Kernel) Interrupt() error {
	if k.Spec.InterruptMode == "message" {
		m, err := k.sess.New("interrupt_request", map[string]any{}, nil)
		if err != nil {
			return err
		}
		return k.send(k.control, m)
	}
	return syscall.Kill(-k.cmd.Process.Pid, syscall.SIGINT)
}

// Exited is closed when the kernel process has exited.
func (k *Kernel) Exited() <-chan struct{} { return k.exited }

// ExitCode is the exited kernel's exit status (-signal when killed).
func (k *Kernel) ExitCode() int {
	st := k.cmd.ProcessState
	if st == nil {
		return -1
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -int(ws.Signal())
	}
	return st.ExitCode()
}

// Shutdown asks the kernel to exit (shutdown_request on control), then
// terminates its process group if it lingers, and closes the channels.
func (k *Kernel) Shutdown() {
	if k.cmd != nil && k.cmd.Process != nil {
		if k.control != nil {
			if m, err := k.sess.New("shutdown_request", map[string]any{"restart": false}, nil); err == nil {
				_ = k.send(k.control, m)
			}
		}
		pg := -k.cmd.Process.Pid
		for _, step := range []struct {
			sig  syscall.Signal
			wait time.Duration
		}{{0, 2 * time.Second}, {syscall.SIGTERM, 2 * time.Second}, {syscall.SIGKILL, 5 * time.Second}} {
			if step.sig != 0 {
				_ = syscall.Kill(pg, step.sig)
			}
			t := time.NewTimer(step.wait)
			select {
			case <-k.exited:
			case <-t.C:
			}
			t.Stop()
			select {
			case <-k.exited:
			default:
				continue
			}
			break
		}
		_ = syscall.Kill(pg, syscall.SIGKILL) // leftovers of the group
	}
	for _, c := range []*zmtp.Conn{k.shell, k.control, k.stdin, k.iopub} {
		if c != nil {
			c.Close()
		}
	}
	k.readers.Wait()
	k.cleanup()
}

func (k *Kernel) cleanup() {
	if k.file != "" {
		os.Remove(k.file)
	}
	if k.Info != nil && k.Info.Transport == "ipc" {
		for _, p := range []int{k.Info.ShellPort, k.Info.IOPubPort, k.Info.StdinPort, k.Info.ControlPort, k.Info.HBPort} {
			os.Remove(strings.TrimPrefix(k.Info.addr(p), "ipc://"))
		}
	}
	if k.rmDir != "" {
		os.RemoveAll(k.rmDir)
	}
}
