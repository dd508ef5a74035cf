package krunner

import (
	"context"
	"embed"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os/exec"
	"time"

	"github.com/coder/websocket"
)

// webAssets holds the terminal page; xterm.js, xterm.css and fit.js are
// copied in from Debian's libjs-xterm by `make build` (not committed).
//
//go:embed webassets
var webAssets embed.FS

// webTerm is the runner's web terminal for the ttyd service port: ttyd's
// HTTP and WebSocket protocol (subprotocol "tty"; client messages '0'
// input, '1' resize JSON; server messages '0' output, '1' title), each
// connection a login shell of the kernel user in its own PTY.
type webTerm struct {
	srv *http.Server
	lns []net.Listener
}

func (r *Runner) startWebTerm(ports []int) error {
	sub, _ := fs.Sub(webAssets, "webassets")
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.FS(sub)))
	mux.HandleFunc("/token", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"token": ""}`)
	})
	mux.HandleFunc("/ws", r.webTermSession)
	t := &webTerm{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	var err error
	if t.lns, err = listenAll(ports); err != nil {
		return err
	}
	for _, ln := range t.lns {
		go func(ln net.Listener) { _ = t.srv.Serve(ln) }(ln)
	}
	r.sshMu.Lock()
	r.term = t
	r.sshMu.Unlock()
	return nil
}

func (r *Runner) stopWebTerm() {
	r.sshMu.Lock()
	t := r.term
	r.term = nil
	r.sshMu.Unlock()
	if t != nil {
		_ = t.srv.Close()
	}
}

func (r *Runner) webTermRunning() bool {
	r.sshMu.Lock()
	defer r.sshMu.Unlock()
	return r.term != nil
}

func (r *Runner) webTermSession(w http.ResponseWriter, req *http.Request) {
	c, err := websocket.Accept(w, req, &websocket.AcceptOptions{Subprotocols: []string{"tty"}, InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx := req.Context()
	// The first message authenticates and sizes the terminal.
	_, first, err := c.Read(ctx)
	if err != nil {
		return
	}
	var hello struct {
		Columns uint16 `json:"columns"`
		Rows    uint16 `json:"rows"`
	}
	_ = json.Unmarshal(first, &hello)
	if hello.Columns == 0 || hello.Rows == 0 {
		hello.Columns, hello.Rows = 80, 24
	}
	shell := r.loginShell()
	if shell == "" {
		_ = c.Write(ctx, websocket.MessageBinary, []byte("0this image has no shell\r\n"))
		return
	}
	cmd := exec.Command(shell, "-l")
	cmd.Dir = r.o.WorkDir
	cmd.Env = append(r.childEnv(false), "TERM=xterm-256color")
	f, err := startPTY(cmd, hello.Columns, hello.Rows)
	if err != nil {
		_ = c.Write(ctx, websocket.MessageBinary, []byte("0"+err.Error()+"\r\n"))
		return
	}
	defer func() {
		f.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	_ = c.Write(ctx, websocket.MessageBinary, []byte("1"+shell+" (bai-krunner)"))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer cancel()
		buf := make([]byte, 8192)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if werr := c.Write(wctx, websocket.MessageBinary, append([]byte{'0'}, buf[:n]...)); werr != nil {
					return
				}
			}
			if err != nil {
				_ = c.Close(websocket.StatusNormalClosure, "shell exited")
				return
			}
		}
	}()
	for {
		_, msg, err := c.Read(wctx)
		if err != nil || len(msg) == 0 {
			return
		}
		switch msg[0] {
		case '0':
			_, _ = f.Write(msg[1:])
		case '1':
			var sz struct {
				Columns uint16 `json:"columns"`
				Rows    uint16 `json:"rows"`
			}
			if json.Unmarshal(msg[1:], &sz) == nil {
				f.Resize(sz.Columns, sz.Rows)
			}
		}
	}
}
