package krunner

import (
	"os"
	"os/exec"
	"sync"

	"github.com/creack/pty"
)

// ptyShell is a command on a PTY, shared by the SSH server and the web
// terminal: resizes may come from another goroutine until the PTY is
// closed, and never after.
type ptyShell struct {
	cmd    *exec.Cmd
	f      *os.File
	mu     sync.Mutex
	closed bool
}

func startPTY(cmd *exec.Cmd, cols, rows uint16) (*ptyShell, error) {
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: cols, Rows: rows})
	if err != nil {
		return nil, err
	}
	return &ptyShell{cmd: cmd, f: f}, nil
}

func (p *ptyShell) Read(b []byte) (int, error)  { return p.f.Read(b) }
func (p *ptyShell) Write(b []byte) (int, error) { return p.f.Write(b) }

// Resize changes the terminal size (ignored once closed).
func (p *ptyShell) Resize(cols, rows uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed && cols > 0 && rows > 0 {
		_ = pty.Setsize(p.f, &pty.Winsize{Cols: cols, Rows: rows})
	}
}

// Close closes the PTY.
func (p *ptyShell) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.f.Close()
	}
}
