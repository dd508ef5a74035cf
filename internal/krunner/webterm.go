package krunner

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"os/exec"
	"strings"
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
		// Only an authenticated caller gets here (termAuth), as ttyd's
		// /token behind its -c credential.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]string{"token": r.o.TermToken})
	})
	mux.HandleFunc("/ws", r.webTermSession)
	t := &webTerm{srv: &http.Server{Handler: r.termAuth(mux), ReadHeaderTimeout: 10 * time.Second}}
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

// withTermToken adds the terminal's token to a start-service result.
func (r *Runner) withTermToken(res map[string]any) map[string]any {
	if r.o.TermToken != "" {
		res["token"] = r.o.TermToken
	}
	return res
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

// termCookie carries the token after the page was opened with ?token=.
const termCookie = "bai_ttyd_token"

// Credential kinds a request may carry: one it chose to send (the query
// token, a bearer header), or one the browser adds by itself (the
// cookie, cached basic credentials), which a page of another site can
// make it send too.
type termCred int

const (
	credNone termCred = iota
	credExplicit
	credAmbient
)

type termCredKey struct{}

// termCredential reports which credential req carries that matches the
// kernel's terminal token (compared in constant time).
func (r *Runner) termCredential(req *http.Request) termCred {
	tok := r.o.TermToken
	if tok == "" {
		return credNone
	}
	eq := func(s string) bool { return subtle.ConstantTimeCompare([]byte(s), []byte(tok)) == 1 }
	if q := req.URL.Query().Get("token"); q != "" && eq(q) {
		return credExplicit
	}
	if h, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok && eq(strings.TrimSpace(h)) {
		return credExplicit
	}
	if _, pw, ok := req.BasicAuth(); ok && eq(pw) {
		return credAmbient
	}
	if c, err := req.Cookie(termCookie); err == nil && eq(c.Value) {
		return credAmbient
	}
	return credNone
}

// termAuth lets through only requests that carry the kernel's terminal
// token: upstream runs ttyd without credentials and relies on the app
// proxy in front of it, but the service's host port is reachable without
// the proxy, so the runner checks by itself. The token is accepted as
// ?token= (which also sets a cookie for the page's assets and
// WebSocket), as a bearer token, or as the password of HTTP basic
// credentials (any user name), as ttyd's -c. No token configured
// refuses everyone.
func (r *Runner) termAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		cred := r.termCredential(req)
		if cred == credNone {
			if r.o.TermToken == "" {
				http.Error(w, "the web terminal has no credential configured", http.StatusForbidden)
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="bai-krunner terminal", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if cred == credExplicit && req.URL.Query().Get("token") != "" && req.URL.Path != "/ws" {
			http.SetCookie(w, &http.Cookie{Name: termCookie, Value: r.o.TermToken, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		}
		next.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), termCredKey{}, cred)))
	})
}

func (r *Runner) webTermSession(w http.ResponseWriter, req *http.Request) {
	cred, _ := req.Context().Value(termCredKey{}).(termCred)
	if cred == credNone {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	// A credential the browser adds by itself (cookie, basic) is also
	// sent for a page of another origin that opens this WebSocket; then
	// the origin must be this host, and the first message must carry the
	// token (which only a same-origin page can read from /token).
	c, err := websocket.Accept(w, req, &websocket.AcceptOptions{Subprotocols: []string{"tty"}, InsecureSkipVerify: cred == credExplicit})
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
		AuthToken string `json:"AuthToken"`
		Columns   uint16 `json:"columns"`
		Rows      uint16 `json:"rows"`
	}
	_ = json.Unmarshal(first, &hello)
	if cred != credExplicit && subtle.ConstantTimeCompare([]byte(hello.AuthToken), []byte(r.o.TermToken)) != 1 {
		_ = c.Close(websocket.StatusPolicyViolation, "authentication required")
		return
	}
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
