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
	t := &webTerm{srv: &http.Server{Handler: r.webTermHandler(), ReadHeaderTimeout: 10 * time.Second}}
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

// webTermHandler serves the terminal: the page and its scripts (static,
// no secret in them) to anyone, /token and /ws only with the kernel's
// token. No credential is ever stored in the browser by the runner: a
// cookie is sent to every port of the host (cookies ignore ports), so
// other kernels' services and apps on the same host would receive it.
func (r *Runner) webTermHandler() http.Handler {
	sub, _ := fs.Sub(webAssets, "webassets")
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.FS(sub)))
	mux.Handle("/token", r.termAuth(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// Only an authenticated caller gets here, as ttyd's /token
		// behind its -c credential.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]string{"token": r.o.TermToken})
	})))
	mux.Handle("/ws", r.termAuthOrFirstMessage(http.HandlerFunc(r.webTermSession)))
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// The page's URL may carry the token (?token=): keep it out of
		// the Referer of anything the page loads.
		w.Header().Set("Referrer-Policy", "no-referrer")
		mux.ServeHTTP(w, req)
	})
}

// Credential kinds a request may carry: one it chose to send (the query
// token, a bearer header), one the browser adds by itself (cached basic
// credentials), which a page of another site can make it send too, or
// none yet (a WebSocket authenticated by its first message).
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
	return credNone
}

// termAuth lets through only requests that carry the kernel's terminal
// token: upstream runs ttyd without credentials and relies on the app
// proxy in front of it, but the service's host port is reachable without
// the proxy, so the runner checks by itself. The token is accepted as
// ?token=, as a bearer token, or as the password of HTTP basic
// credentials (any user name), as ttyd's -c. Nothing sets a cookie. No
// token configured refuses everyone.
func (r *Runner) termAuth(next http.Handler) http.Handler {
	return r.termCheck(next, false)
}

// termAuthOrFirstMessage is termAuth for the WebSocket, which may also
// come without any credential: then its first message must carry the
// token (ttyd's AuthToken; webTermSession checks it). A wrong credential
// is still refused.
func (r *Runner) termAuthOrFirstMessage(next http.Handler) http.Handler {
	return r.termCheck(next, true)
}

func (r *Runner) termCheck(next http.Handler, firstMessage bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.o.TermToken == "" {
			http.Error(w, "the web terminal has no credential configured", http.StatusForbidden)
			return
		}
		cred := r.termCredential(req)
		if cred == credNone && (!firstMessage || req.URL.Query().Has("token") || req.Header.Get("Authorization") != "") {
			// The basic challenge (a browser's password prompt) only
			// to a caller that sent no bearer token.
			if !strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ") {
				w.Header().Set("WWW-Authenticate", `Basic realm="bai-krunner terminal", charset="UTF-8"`)
			}
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), termCredKey{}, cred)))
	})
}

func (r *Runner) webTermSession(w http.ResponseWriter, req *http.Request) {
	cred, _ := req.Context().Value(termCredKey{}).(termCred)
	// Without the token in the request (none: the page sends it in the
	// first message; basic credentials the browser adds by itself, also
	// for a page of another origin that opens this WebSocket) the origin
	// must be this host, and the first message must carry the token
	// (which only a same-origin page can read from /token).
	c, err := websocket.Accept(w, req, &websocket.AcceptOptions{Subprotocols: []string{"tty"}, InsecureSkipVerify: cred == credExplicit})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx := req.Context()
	// The first message authenticates and sizes the terminal; an
	// unauthenticated connection does not wait for it forever.
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	_, first, err := c.Read(fctx)
	fcancel()
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
