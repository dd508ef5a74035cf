package krunner

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	time.Sleep(300 * time.Millisecond)
	if c, err := gossh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &gossh.ClientConfig{User: "work", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: time.Second}); err == nil {
		c.Close()
		t.Fatal("sshd still answers after shutdown-service")
	}
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
	if _, rec := a.until("service-result"); !strings.Contains(rec.data, `"running"`) {
		t.Fatalf("start ttyd: %s", rec.data)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "xterm.js") || !strings.Contains(string(page), `["tty"]`) {
		t.Fatalf("page: %s", page)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws", port), &websocket.DialOptions{Subprotocols: []string{"tty"}})
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
