package krunner

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// chunk is the largest stdout/stderr frame, as the reference runner reads.
const chunk = 4096

// child is a running subprocess in its own process group.
type child struct {
	cmd         *exec.Cmd
	stdin       io.WriteCloser
	interrupted atomic.Bool
}

// runProc runs argv (a /bin/sh -c command line when shell), streaming its
// output through emit, and returns the exit code: the status, -signum when
// a signal ended it, 127 when the program is missing.
func (r *Runner) runProc(argv []string, batch bool) int {
	if _, err := os.Stat(argv[0]); err != nil && argv[0] == "/bin/sh" {
		r.emit("stderr", []byte("/bin/sh not found: this image has no shell to run the command\n"))
		return 127
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = r.o.WorkDir
	cmd.Env = r.childEnv(batch)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Our own pipes, not cmd.StdoutPipe: a background grandchild may keep
	// the write ends open after the command exits, and the run must still
	// finish.
	outR, outW, err := os.Pipe()
	if err != nil {
		r.emit("stderr", []byte(err.Error()+"\n"))
		return -1
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		r.emit("stderr", []byte(err.Error()+"\n"))
		return -1
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	stdin, err := cmd.StdinPipe()
	if err != nil {
		r.emit("stderr", []byte(err.Error()+"\n"))
		return -1
	}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		r.emit("stderr", []byte(err.Error()+"\n"))
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
			return 127
		}
		return -1
	}
	c := &child{cmd: cmd, stdin: stdin}
	r.setChild(c)
	defer r.setChild(nil)
	pumped := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); r.pump("stdout", outR) }()
		go func() { defer wg.Done(); r.pump("stderr", errR) }()
		wg.Wait()
		close(pumped)
	}()
	err = cmd.Wait()
	_ = stdin.Close()
	if c.interrupted.Load() {
		// What the interrupted command left behind in its group goes too
		// (a backgrounded job ignores SIGINT in a non-interactive shell).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	// Output already written is forwarded before "finished"; a descendant
	// that keeps the pipes open does not hold the run.
	select {
	case <-pumped:
	case <-time.After(time.Second):
		outR.Close()
		errR.Close()
		<-pumped
	}
	outR.Close()
	errR.Close()
	return exitCode(cmd, err)
}

func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		return -1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

func (r *Runner) pump(stream string, rd io.Reader) {
	buf := make([]byte, chunk)
	for {
		n, err := rd.Read(buf)
		if n > 0 {
			r.emit(stream, bytes.Clone(buf[:n]))
		}
		if err != nil {
			return
		}
	}
}

func (r *Runner) setChild(c *child) {
	r.childMu.Lock()
	r.child = c
	r.childMu.Unlock()
}

// interrupt sends SIGINT to the running command's process group (the
// reference signals only the shell, leaving grandchildren holding the
// pipes), else to the python helper.
func (r *Runner) interrupt() {
	if !r.interruptChild() {
		r.interruptPython(true)
	}
}

// interruptChild signals the running command's group, if a command runs.
func (r *Runner) interruptChild() bool {
	r.childMu.Lock()
	c := r.child
	r.childMu.Unlock()
	if c == nil || c.cmd.Process == nil {
		return false
	}
	c.interrupted.Store(true)
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGINT)
	return true
}

// interruptPython interrupts the Jupyter kernel or the Python helper.
// Without wait it gives up (false) while helperMu is held: a Jupyter
// kernel is being started, for up to its start timeout.
func (r *Runner) interruptPython(wait bool) bool {
	if wait {
		r.helperMu.Lock()
	} else if !r.helperMu.TryLock() {
		return false
	}
	k, h := r.jup.k, r.py
	r.helperMu.Unlock()
	switch {
	case k != nil:
		if err := k.Interrupt(); err != nil {
			r.log.Warn("the Jupyter kernel was not interrupted", "error", err)
		}
	case h != nil:
		h.interrupt()
	}
	return true
}

// feedInput writes text to the running command's stdin (shell and batch
// runs read it with read(1) or input()).
func (r *Runner) feedInput(text string) bool {
	r.childMu.Lock()
	c := r.child
	r.childMu.Unlock()
	if c == nil {
		return false
	}
	if len(text) == 0 || text[len(text)-1] != '\n' {
		text += "\n"
	}
	_, err := io.WriteString(c.stdin, text)
	return err == nil
}
