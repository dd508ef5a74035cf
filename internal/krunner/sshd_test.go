package krunner

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/coder/websocket"
	"github.com/pkg/sftp"
	gossh "golang.org/x/crypto/ssh"
)

// The built-in sshd: public-key login against authorized_keys, exec with
// the exit code, a PTY shell, SFTP put and get; a wrong key is refused.
func TestBuiltinSSH(t *testing.T) {
	a := startRunner(t, "shell")
	work := a.r.o.WorkDir
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := gossh.NewPublicKey(pub)
	_ = os.MkdirAll(filepath.Join(work, ".ssh"), 0o700)
	if err := os.WriteFile(filepath.Join(work, ".ssh", "authorized_keys"), gossh.MarshalAuthorizedKey(sshPub), 0o600); err != nil {
		t.Fatal(err)
	}
	// The SSH server starts at boot (as upstream's dropbear does), so
	// start_service finds it running.
	port := a.r.o.SSHPorts[0]
	body, _ := json.Marshal(map[string]any{"name": "sshd", "port": port, "ports": []int{port}, "protocol": "tcp", "options": map[string]any{}})
	a.send("start-service", string(body))
	if _, rec := a.until("service-result"); !strings.Contains(rec.data, `"running"`) {
		t.Fatalf("start of the intrinsic sshd: %s", rec.data)
	}
	signer, _ := gossh.NewSignerFromKey(priv)
	cfg := &gossh.ClientConfig{User: "work", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
	cli, err := gossh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	sess, _ := cli.NewSession()
	out, err := sess.CombinedOutput("echo hi; pwd")
	if err != nil || string(out) != "hi\n"+work+"\n" {
		t.Fatalf("exec: %q %v", out, err)
	}
	sess, _ = cli.NewSession()
	if err := sess.Run("exit 7"); err == nil || !strings.Contains(err.Error(), "7") {
		t.Fatalf("exit code: %v", err)
	}
	// A PTY shell.
	sess, _ = cli.NewSession()
	if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(stdin, "echo pty-$((6*7)); exit\n")
	got, _ := io.ReadAll(stdout)
	if !strings.Contains(string(got), "pty-42") {
		t.Fatalf("pty shell output %q", got)
	}
	// SFTP.
	sc, err := sftp.NewClient(cli)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sc.Create("up.txt")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.Write([]byte("via sftp"))
	f.Close()
	if b, _ := os.ReadFile(filepath.Join(work, "up.txt")); string(b) != "via sftp" {
		t.Fatalf("sftp put: %q", b)
	}
	rf, err := sc.Open("up.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rf)
	rf.Close()
	if string(b) != "via sftp" {
		t.Fatalf("sftp get: %q", b)
	}
	sc.Close()
	// Another key is refused.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	os2, _ := gossh.NewSignerFromKey(other)
	cfg.Auth = []gossh.AuthMethod{gossh.PublicKeys(os2)}
	if c, err := gossh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), cfg); err == nil {
		c.Close()
		t.Fatal("an unknown key logged in")
	}
	a.send("shutdown-service", `"sshd"`)
	// The service stops beside the message loop: wait for it, bounded.
	testutil.Eventually(t, 10*time.Second, "sshd refuses logins after shutdown-service", func() bool {
		c, err := gossh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &gossh.ClientConfig{User: "work", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: time.Second})
		if err == nil {
			c.Close()
			return false
		}
		return true
	})
	// Started again on request.
	a.send("start-service", string(body))
	if _, rec := a.until("service-result"); !strings.Contains(rec.data, `"started"`) {
		t.Fatalf("restart sshd: %s", rec.data)
	}
	c, err := gossh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &gossh.ClientConfig{User: "work", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("sshd after restart: %v", err)
	}
	c.Close()
}

// The web terminal speaks ttyd's protocol: a shell answers typed input,
// a resize reaches the PTY, the page is served.
func TestWebTerminal(t *testing.T) {
	a := startRunner(t, "shell")
	port := a.r.o.TermPorts[0]
	body, _ := json.Marshal(map[string]any{"name": "ttyd", "port": port, "ports": []int{port}, "protocol": "http", "options": map[string]any{}})
	a.send("start-service", string(body))
	_, rec := a.until("service-result")
	if !strings.Contains(rec.data, `"running"`) {
		t.Fatalf("start ttyd: %s", rec.data)
	}
	if !strings.Contains(rec.data, testTermToken) {
		t.Fatalf("start ttyd gives no token: %s", rec.data)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	resp, err := http.Get(base + "/?token=" + testTermToken)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "xterm.js") || !strings.Contains(string(page), `["tty"]`) {
		t.Fatalf("page: %s", page)
	}
	if len(resp.Cookies()) != 0 {
		t.Fatalf("the page sets cookies: %v", resp.Cookies())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws?token=%s", port, testTermToken), &websocket.DialOptions{Subprotocols: []string{"tty"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "tty" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	_ = c.Write(ctx, websocket.MessageBinary, []byte(`{"AuthToken":"","columns":80,"rows":24}`))
	_ = c.Write(ctx, websocket.MessageBinary, []byte(`1{"columns":101,"rows":33}`))
	_ = c.Write(ctx, websocket.MessageBinary, []byte("0echo web-$((6*7)); stty size\r"))
	var out strings.Builder
	for !strings.Contains(out.String(), "web-42") || !strings.Contains(out.String(), "33 101") {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v; so far %q", err, out.String())
		}
		if len(msg) > 0 && msg[0] == '0' {
			out.Write(msg[1:])
		}
	}
}

// The web terminal's page and scripts are static and served to anyone;
// /token and the WebSocket need the kernel's token: a bearer token or
// basic credentials with the token as password for /token (a wrong one
// is 401, the basic challenge only without a bearer token), ?token= or a
// bearer token for the WebSocket, or none and the token in the first
// message (ttyd's AuthToken) from this origin. A cross-origin page gets
// no WebSocket on basic credentials or none. No response sets a cookie.
func TestWebTerminalAuth(t *testing.T) {
	a := startRunner(t, "shell")
	port := a.r.o.TermPorts[0]
	body, _ := json.Marshal(map[string]any{"name": "ttyd", "port": port, "ports": []int{port}, "protocol": "http", "options": map[string]any{}})
	a.send("start-service", string(body))
	if _, rec := a.until("service-result"); !strings.Contains(rec.data, `"running"`) {
		t.Fatalf("start ttyd: %s", rec.data)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	upgrade := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "tty"}
	with := func(h map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	basic := func(pw string) string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth("work", pw)
		return req.Header.Get("Authorization")
	}
	get := func(path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		if resp.StatusCode != http.StatusSwitchingProtocols {
			b, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		}
		resp.Body.Close()
		if c := resp.Header.Values("Set-Cookie"); len(c) > 0 {
			t.Errorf("GET %s sets a cookie: %q", path, c)
		}
		return resp, string(b)
	}
	for _, tc := range []struct {
		name, path string
		hdr        map[string]string
		code       int
		challenge  bool
	}{
		{"page", "/", nil, 200, false},
		{"page with ?token=", "/?token=" + testTermToken, nil, 200, false},
		{"asset", "/xterm.css", nil, 200, false},
		{"token", "/token", nil, 401, true},
		{"wrong bearer", "/token", map[string]string{"Authorization": "Bearer nope"}, 401, false},
		{"wrong basic", "/token", map[string]string{"Authorization": basic("nope")}, 401, true},
		{"wrong query token", "/token?token=nope", nil, 401, true},
		{"websocket, wrong query token", "/ws?token=nope", upgrade, 401, true},
		{"websocket, wrong bearer", "/ws", with(upgrade, "Authorization", "Bearer nope"), 401, false},
		{"websocket, wrong basic", "/ws", with(upgrade, "Authorization", basic("nope")), 401, true},
		{"websocket from another origin", "/ws", with(upgrade, "Origin", "http://evil.example"), 403, false},
		{"websocket from another origin, basic", "/ws", with(upgrade, "Origin", "http://evil.example", "Authorization", basic(testTermToken)), 403, false},
		{"websocket, no credential", "/ws", upgrade, http.StatusSwitchingProtocols, false},
		{"bearer", "/token", map[string]string{"Authorization": "Bearer " + testTermToken}, 200, false},
		{"basic", "/token", map[string]string{"Authorization": basic(testTermToken)}, 200, false},
	} {
		resp, body := get(tc.path, tc.hdr)
		if resp.StatusCode != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.code)
		}
		if got := strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic "); got != tc.challenge {
			t.Errorf("%s: basic challenge %v, want %v", tc.name, got, tc.challenge)
		}
		if tc.code == 200 && tc.path == "/token" {
			var tok struct{ Token string }
			if json.Unmarshal([]byte(body), &tok) != nil || tok.Token != testTermToken {
				t.Errorf("%s: /token answered %q", tc.name, body)
			}
		}
		if tc.code != 200 && strings.Contains(body, testTermToken) {
			t.Errorf("%s: the token in a refusal", tc.name)
		}
	}
	// A WebSocket without the token in its request (basic credentials,
	// or none) opens no shell without the token in the first message.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shell := func(hdr http.Header, auth string) (string, error) {
		t.Helper()
		c, resp, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws", port), &websocket.DialOptions{Subprotocols: []string{"tty"}, HTTPHeader: hdr})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if len(resp.Header.Values("Set-Cookie")) > 0 {
			t.Errorf("the WebSocket sets a cookie")
		}
		_ = c.Write(ctx, websocket.MessageBinary, []byte(`{"AuthToken":"`+auth+`","columns":80,"rows":24}`))
		_ = c.Write(ctx, websocket.MessageBinary, []byte("0echo shell-$((6*7))\r"))
		var out strings.Builder
		for !strings.Contains(out.String(), "shell-42") {
			_, msg, err := c.Read(ctx)
			if err != nil {
				return out.String(), err
			}
			out.Write(msg)
		}
		return out.String(), nil
	}
	for _, hdr := range []http.Header{nil, {"Authorization": {basic(testTermToken)}}} {
		if out, err := shell(hdr, ""); err == nil || websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Fatalf("%v: a shell without the token in the first message: %v %q", hdr, err, out)
		}
		if out, err := shell(hdr, "nope"); err == nil || websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Fatalf("%v: a shell with a wrong token in the first message: %v %q", hdr, err, out)
		}
		// The same with the token in the first message is a terminal.
		if out, err := shell(hdr, testTermToken); err != nil {
			t.Fatalf("%v: no shell with the token in the first message: %v %q", hdr, err, out)
		}
	}
	// A runner without a token refuses everyone (the static page is
	// still served: it holds nothing).
	b := startRunner(t, "shell", func(o *Options) { o.TermToken = "" })
	bport := b.r.o.TermPorts[0]
	body, _ = json.Marshal(map[string]any{"name": "ttyd", "port": bport, "ports": []int{bport}, "protocol": "http", "options": map[string]any{}})
	b.send("start-service", string(body))
	b.until("service-result")
	for _, p := range []string{"/token?token=", "/ws?token=", "/token"} {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", bport, p)); err != nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("no token configured, %s: %v %v", p, resp, err)
		}
	}
}

// SSH forwarding stays inside the kernel: -L to its loopback works; -L
// to any other address (the host, the gateway, a name) and -R are
// refused; in a host-network kernel nothing is forwarded.
func TestSSHForwarding(t *testing.T) {
	for _, hostNet := range []bool{false, true} {
		a := startRunner(t, "shell", func(o *Options) { o.HostNetwork = hostNet })
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		sshPub, _ := gossh.NewPublicKey(pub)
		_ = os.MkdirAll(filepath.Join(a.r.o.WorkDir, ".ssh"), 0o700)
		_ = os.WriteFile(filepath.Join(a.r.o.WorkDir, ".ssh", "authorized_keys"), gossh.MarshalAuthorizedKey(sshPub), 0o600)
		signer, _ := gossh.NewSignerFromKey(priv)
		// The SSH server starts at boot in the runner's own goroutine:
		// start_service answers once it listens (dialling at once was
		// refused now and then).
		sp := a.r.o.SSHPorts[0]
		body, _ := json.Marshal(map[string]any{"name": "sshd", "port": sp, "ports": []int{sp}, "protocol": "tcp", "options": map[string]any{}})
		a.send("start-service", string(body))
		if _, rec := a.until("service-result"); !strings.Contains(rec.data, `"running"`) {
			t.Fatalf("start of the intrinsic sshd: %s", rec.data)
		}
		cli, err := gossh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", sp), &gossh.ClientConfig{User: "work", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		// A target on loopback and one on every interface (reachable by
		// the host's own address, which stands for the host here).
		ln, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte("hello"))
				c.Close()
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		var hostIP string
		if addrs, _ := net.InterfaceAddrs(); len(addrs) > 0 {
			for _, ad := range addrs {
				if ipn, ok := ad.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
					hostIP = ipn.IP.String()
				}
			}
		}
		targets := []struct {
			host string
			ok   bool
		}{
			{"127.0.0.1", !hostNet},
			{"localhost", !hostNet},
			{"0.0.0.0", false},
			{"172.17.0.1", false},
			{"host.docker.internal", false},
		}
		if hostIP != "" {
			targets = append(targets, struct {
				host string
				ok   bool
			}{hostIP, false})
		}
		for _, tc := range targets {
			c, err := cli.Dial("tcp", net.JoinHostPort(tc.host, strconv.Itoa(port)))
			if !tc.ok {
				if err == nil {
					c.Close()
					t.Errorf("host network %v: -L to %s was allowed", hostNet, tc.host)
				} else if !strings.Contains(err.Error(), "prohibited") {
					t.Errorf("host network %v: -L to %s: %v, want prohibited", hostNet, tc.host, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("-L to %s: %v", tc.host, err)
			}
			b, _ := io.ReadAll(c)
			c.Close()
			if string(b) != "hello" {
				t.Fatalf("-L to %s read %q", tc.host, b)
			}
		}
		if l, err := cli.Listen("tcp", "127.0.0.1:0"); err == nil {
			l.Close()
			t.Errorf("host network %v: -R was allowed", hostNet)
		}
		if l, err := cli.ListenUnix("/tmp/bai-krunner-fwd.sock"); err == nil {
			l.Close()
			t.Errorf("host network %v: a Unix-socket forward was allowed", hostNet)
		}
	}
}
