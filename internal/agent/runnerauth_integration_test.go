package agent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"github.com/bai-agent/bai-agent/internal/krunner/kauth"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// The runner's REPL ports serve this agent alone: from the host, a fresh
// libzmq peer with the NULL mechanism, one with another CURVE client key
// and one with the wrong server key each send code that would create a
// file, and a PULL of theirs waits for the runner's output; nothing runs
// and nothing is read, while the agent's own execute works. The secret
// is root's in the container, and the runner cannot be replaced.
func TestRunnerAuth_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := testutil.TestImageWith(t, map[string]string{"ai.backend.runtime-type": "shell"})
	uid := 1234
	info := e.create(func(c *CreationConfig) { c.Image.Canonical = img; c.UID, c.MainGID = &uid, &uid })
	k, _ := e.agent.Kernel(info.ID)
	ctx := context.Background()

	// The secret: 0600 on the host, a CURVE client for the agent.
	st, err := os.Stat(filepath.Join(k.Spec().Scratch.Config, kauth.File))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("runner secret on the host: %v %v", st, err)
	}
	sec, err := readRunnerAuth(k.Spec().Scratch.Config)
	if err != nil || sec == nil {
		t.Fatalf("runner secret: %v", err)
	}
	if res := e.exec(info.ID, "r0", "query", "echo agent-$((6*7))", flushIn(20*time.Second)); console(res, "stdout") != "agent-42\n" {
		t.Fatalf("the agent's own execute: %v", res)
	}

	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	var socks []*zmq.Socket
	defer func() {
		for _, s := range socks {
			s.Close()
		}
		zctx.Term()
	}()
	otherPub, otherSec, _ := zmq.NewCurveKeypair()
	otherServer, _, _ := zmq.NewCurveKeypair()
	strangers := []struct{ name, server, pub, sec string }{
		{"null", "", "", ""},
		{"wrong-client-key", sec.ServerPublic, otherPub, otherSec},
		{"wrong-server-key", otherServer, sec.ClientPublic, sec.ClientSecret},
	}
	var thieves []*zmq.Socket
	for _, s := range strangers {
		for _, kind := range []zmq.Type{zmq.PUSH, zmq.PULL} {
			sock, err := zctx.NewSocket(kind)
			if err != nil {
				t.Fatal(err)
			}
			socks = append(socks, sock)
			_ = sock.SetLinger(0)
			_ = sock.SetSndtimeo(time.Second)
			if s.server != "" {
				_ = sock.SetCurveServerkey(s.server)
				_ = sock.SetCurvePublickey(s.pub)
				_ = sock.SetCurveSecretkey(s.sec)
			}
			port := k.Spec().ReplIn
			if kind == zmq.PULL {
				port = k.Spec().ReplOut
				thieves = append(thieves, sock)
			}
			if err := sock.Connect(fmt.Sprintf("tcp://127.0.0.1:%d", port)); err != nil {
				t.Fatal(err)
			}
			if kind == zmq.PUSH {
				_, _ = sock.SendMessage("code", "touch /home/work/pwned-"+s.name)
				_, _ = sock.SendMessage("exec", "touch /home/work/pwned-batch-"+s.name)
			}
		}
	}
	time.Sleep(2 * time.Second)
	// The agent's run still works, and its output reaches the agent, not
	// a stranger's PULL (the runner's PUSH serves its newest peer).
	if res := e.exec(info.ID, "r1", "query", "ls /home/work; echo secret-output", flushIn(20*time.Second)); !strings.HasSuffix(console(res, "stdout"), "secret-output\n") || strings.Contains(console(res, "stdout"), "pwned") {
		t.Fatalf("after strangers: %v", res)
	}
	for i, th := range thieves {
		_ = th.SetRcvtimeo(300 * time.Millisecond)
		if m, err := th.RecvMessage(0); err == nil {
			t.Fatalf("stranger %s read the runner's output %q", strangers[i].name, m)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(k.Spec().Scratch.Work, "pwned*")); len(m) > 0 {
		t.Fatalf("a stranger's code ran: %v", m)
	}

	// The kernel user can read neither the secret nor the runner's
	// memory and descriptors (the runner is not dumpable).
	res := e.exec(info.ID, "r2", "query", `cat /home/config/`+kauth.File+`; echo "rc=$?"; p=$(pidof bai-krunner | tr ' ' '\n' | head -1); [ -n "$p" ] && [ -r /proc/$p/stat ] && echo "pid=ok"; cat /proc/$p/environ >/dev/null; echo "env=$?"; ls /proc/$p/fd >/dev/null; echo "fd=$?"`, flushIn(20*time.Second))
	out := console(res, "stdout")
	for _, want := range []string{"pid=ok", "rc=1", "env=1", "fd=1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the kernel user reached the secret (%s missing): %q %q", want, out, console(res, "stderr"))
		}
	}

	// /opt/kernel/bai-krunner is the host's file, read-only: neither the
	// kernel user nor root in the container (docker exec -u 0) replaces
	// it, and /home/config takes no writes.
	before, err := os.ReadFile(e.agent.krunner)
	if err != nil {
		t.Fatal(err)
	}
	res = e.exec(info.ID, "r3", "query", `for c in "cp /bin/sh /opt/kernel/bai-krunner" "mv /opt/kernel/bai-krunner /opt/kernel/x" "rm -f /opt/kernel/bai-krunner" "touch /home/config/x" "mv /home/config/`+kauth.File+` /home/config/y"; do sh -c "$c" 2>/dev/null && echo "ALLOWED: $c"; done; echo done`, flushIn(20*time.Second))
	if out := console(res, "stdout"); strings.Contains(out, "ALLOWED") || !strings.Contains(out, "done") {
		t.Fatalf("as the kernel user: %q", out)
	}
	for _, c := range []string{
		"echo x > /opt/kernel/bai-krunner",
		"cp /bin/sh /opt/kernel/bai-krunner",
		"mv /opt/kernel/bai-krunner /tmp/x",
		"rm -f /opt/kernel/bai-krunner",
		"umount /opt/kernel/bai-krunner",
		"mount -o remount,rw /opt/kernel/bai-krunner",
		"touch /home/config/x",
		"echo x > /home/config/" + kauth.File,
		"umount /home/config",
	} {
		if code, out := testutil.Exec(ctx, e.be, info.ContainerID, "sh", "-c", c); code == 0 {
			t.Errorf("root in the container: %q succeeded: %s", c, out)
		}
	}
	after, _ := os.ReadFile(e.agent.krunner)
	if sha256.Sum256(before) != sha256.Sum256(after) {
		t.Fatal("the runner binary on the host changed")
	}
	if code, out := testutil.Exec(ctx, e.be, info.ContainerID, "sh", "-c", "/opt/kernel/bai-krunner 2>&1 | head -1"); code != 0 || !strings.Contains(out, "usage") {
		t.Fatalf("the runner in the container after the attempts: %d %q", code, out)
	}
}
