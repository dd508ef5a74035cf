package krunner

import (
	"bufio"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed pyboot.py
var pyBoot string

// syncMarker ends the helper's output of one run on stdout and stderr, so
// "finished" goes out only after every byte of the run was forwarded.
const syncMarker = "\x1e\x1fBAI-SYNC\x1f\x1e"

type pyHelper struct {
	cmd   *exec.Cmd
	req   *os.File
	evs   chan map[string]any
	syncs map[string]chan struct{}
	busy  sync.Mutex
	wmu   sync.Mutex
	exit  chan struct{}
}

func (h *pyHelper) send(v any) error {
	b, _ := json.Marshal(v)
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	h.wmu.Lock()
	defer h.wmu.Unlock()
	if _, err := h.req.Write(n[:]); err != nil {
		return err
	}
	_, err := h.req.Write(b)
	return err
}

func (h *pyHelper) interrupt() {
	if h.cmd.Process != nil {
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGINT)
	}
}

func (h *pyHelper) stop() {
	_ = h.req.Close()
	if h.cmd.Process != nil {
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGTERM)
	}
	select {
	case <-h.exit:
	case <-time.After(2 * time.Second):
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (r *Runner) helper() *pyHelper {
	r.helperMu.Lock()
	defer r.helperMu.Unlock()
	return r.py
}

// pythonPath is the interpreter: the runtime-path label, else python3 or
// python on the kernel's PATH.
func (r *Runner) pythonPath() string {
	if r.o.RuntimePath != "" {
		if exists(r.o.RuntimePath) {
			return r.o.RuntimePath
		}
		return ""
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range r.env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, name := range []string{"python3", "python"} {
		for _, dir := range filepath.SplitList(path) {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	return ""
}

func (r *Runner) startHelper() (*pyHelper, error) {
	rt := r.pythonPath()
	if rt == "" {
		return nil, os.ErrNotExist
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return nil, err
	}
	cmd := exec.Command(rt, "-u", "-c", pyBoot)
	cmd.Dir = r.o.WorkDir
	cmd.Env = r.childEnv(false)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.ExtraFiles = []*os.File{reqR, evW}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		reqR.Close()
		reqW.Close()
		evR.Close()
		evW.Close()
		return nil, err
	}
	reqR.Close()
	evW.Close()
	h := &pyHelper{cmd: cmd, req: reqW, evs: make(chan map[string]any, 64), exit: make(chan struct{}),
		syncs: map[string]chan struct{}{"stdout": make(chan struct{}, 16), "stderr": make(chan struct{}, 16)}}
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); r.pumpSync("stdout", stdout, h.syncs["stdout"]) }()
	go func() { defer pumps.Done(); r.pumpSync("stderr", stderr, h.syncs["stderr"]) }()
	go func() {
		defer close(h.evs)
		br := bufio.NewReader(evR)
		for {
			var n [4]byte
			if _, err := io.ReadFull(br, n[:]); err != nil {
				return
			}
			b := make([]byte, binary.BigEndian.Uint32(n[:]))
			if _, err := io.ReadFull(br, b); err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				h.evs <- m
			}
		}
	}()
	go func() {
		pumps.Wait()
		_ = cmd.Wait()
		evR.Close()
		close(h.exit)
	}()
	return h, nil
}

// pumpSync forwards a helper stream, cutting out the sync markers and
// signalling each. A tail that could start a marker is held back until
// the next read tells.
func (r *Runner) pumpSync(stream string, rd io.Reader, synced chan<- struct{}) {
	buf := make([]byte, chunk)
	var pending []byte
	for {
		n, err := rd.Read(buf)
		pending = append(pending, buf[:n]...)
		for {
			i := strings.Index(string(pending), syncMarker)
			if i < 0 {
				break
			}
			if i > 0 {
				r.emit(stream, append([]byte{}, pending[:i]...))
			}
			pending = pending[i+len(syncMarker):]
			select {
			case synced <- struct{}{}:
			default:
			}
		}
		hold := 0
		for k := len(syncMarker) - 1; k > 0; k-- {
			if len(pending) >= k && string(pending[len(pending)-k:]) == syncMarker[:k] {
				hold = k
				break
			}
		}
		if out := pending[:len(pending)-hold]; len(out) > 0 {
			r.emit(stream, append([]byte{}, out...))
		}
		pending = append([]byte{}, pending[len(pending)-hold:]...)
		if err != nil {
			if len(pending) > 0 {
				r.emit(stream, pending)
			}
			return
		}
	}
}

// pyQuery runs code in the persistent namespace.
func (r *Runner) pyQuery(code string) int {
	r.helperMu.Lock()
	if k := r.jupyterKernel(); k != nil {
		r.helperMu.Unlock()
		return r.jupyterQuery(k, code)
	}
	h := r.py
	if h != nil {
		select {
		case <-h.exit:
			h = nil
		default:
		}
	}
	if h == nil {
		var err error
		h, err = r.startHelper()
		if err != nil {
			r.helperMu.Unlock()
			r.emit("stderr", []byte("no Python interpreter found for the python runtime (set the image label ai.backend.runtime-path): "+err.Error()+"\n"))
			return 127
		}
		r.py = h
	}
	r.helperMu.Unlock()
	h.busy.Lock()
	defer h.busy.Unlock()
	// Input frames left from an earlier run are stale.
	for len(r.inputs) > 0 {
		<-r.inputs
	}
	if err := h.send(map[string]any{"op": "exec", "code": code}); err != nil {
		return r.helperLost(h)
	}
	for {
		select {
		case ev, ok := <-h.evs:
			if !ok {
				return r.helperLost(h)
			}
			// Every event follows a sync mark on both streams: forward
			// the output before it first.
			for _, s := range []string{"stdout", "stderr"} {
				select {
				case <-h.syncs[s]:
				case <-h.exit:
				case <-time.After(5 * time.Second):
				}
			}
			switch ev["op"] {
			case "done":
				n, _ := ev["exitCode"].(float64)
				return int(n)
			case "input":
				pw, _ := ev["password"].(bool)
				r.emitJSON("waiting-input", map[string]bool{"is_password": pw})
				select {
				case text := <-r.inputs:
					if err := h.send(map[string]any{"op": "input-reply", "text": text}); err != nil {
						return r.helperLost(h)
					}
				case <-h.exit:
					return r.helperLost(h)
				}
			case "media":
				r.emitJSON("media", map[string]any{"type": ev["type"], "data": ev["data"]})
			case "html":
				s, _ := ev["data"].(string)
				r.emit("html", []byte(s))
			}
		case <-h.exit:
			return r.helperLost(h)
		}
	}
}

// helperLost reports a helper that died mid-run (os._exit, a crash, an
// OOM kill): its exit code for the run, and a note that the namespace is
// gone; the next query starts a fresh helper.
func (r *Runner) helperLost(h *pyHelper) int {
	<-h.exit
	code := exitCode(h.cmd, nil)
	r.emit("stderr", []byte("the Python process exited; its state is lost and the next run starts afresh\n"))
	r.helperMu.Lock()
	if r.py == h {
		r.py = nil
	}
	r.helperMu.Unlock()
	return code
}

func (r *Runner) pyComplete(code string) []string {
	h := r.helper()
	if h == nil || !h.busy.TryLock() {
		return nil
	}
	defer h.busy.Unlock()
	if err := h.send(map[string]any{"op": "complete", "code": code}); err != nil {
		return nil
	}
	select {
	case ev, ok := <-h.evs:
		if !ok {
			return nil
		}
		var out []string
		if l, ok := ev["suggestions"].([]any); ok {
			for _, s := range l {
				if str, ok := s.(string); ok {
					out = append(out, str)
				}
			}
		}
		return out
	case <-time.After(5 * time.Second):
		return nil
	}
}
