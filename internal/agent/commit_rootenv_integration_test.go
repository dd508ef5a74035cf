package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The root phase keeps the image's own ENV as trusted (RootEnv: only the
// names in environ.txt are the request's), but a committed session is an
// image whose ENV is the old container's environment, the old request's
// environ included: Agent.Commit is a docker commit with LABEL changes
// only. A user without sudo sets PATH to a folder of their dotfiles in
// one session, commits it, and starts a second session from that image
// without naming PATH: the second kernel's environ.txt lacks PATH, so the
// entrypoint runs the image's bootstrap.sh as root with the user's PATH,
// and the user's "env"/"python3" run as uid 0 and copy the runner secret.
func TestCommittedSessionEnvironCannotHijackRootPhase_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := imageWithRootBootstrap(t)
	uid := 1234
	const mark = "id -u >> /home/work/.hijack-uid\ncat /home/config/krunner-auth.json > /home/work/.hijack-secret 2>/dev/null\n"
	dotfiles := []any{
		map[string]any{"path": ".hijack-bin/python3", "perm": "755", "data": "#!/bin/sh\n" + mark + "exec /usr/bin/python3 \"$@\"\n"},
		map[string]any{"path": ".hijack-bin/env", "perm": "755", "data": "#!/bin/sh\n" + mark + "exec /usr/bin/env \"$@\"\n"},
	}
	first := e.create(func(c *CreationConfig) {
		c.Image.Canonical = img
		c.UID, c.MainGID = &uid, &uid
		c.Environ["PATH"] = "/home/work/.hijack-bin:/usr/bin:/bin"
		c.InternalData = map[string]any{"dotfiles": dotfiles}
	})
	e.exec(first.ID, "w1", "query", "print(1)", flushIn(30*time.Second))
	k1, ok := e.agent.Kernel(first.ID)
	if !ok {
		t.Fatal("no kernel")
	}
	// What Agent.Commit does: docker commit with LABEL changes only.
	tag := "bai-test/probe2-committed:" + uuid.NewString()[:8]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.be.CommitContainer(ctx, k1.ContainerID(), tag, []string{`LABEL ai.backend.probe2="1"`}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
	out, _ := exec.Command("docker", "image", "inspect", "-f", "{{json .Config.Env}}", tag).Output()
	t.Logf("committed image ENV: %s", out)

	// The second session does not name PATH.
	second := e.create(func(c *CreationConfig) {
		c.Image.Canonical = tag
		c.UID, c.MainGID = &uid, &uid
		c.InternalData = map[string]any{"dotfiles": dotfiles}
	})
	e.exec(second.ID, "w2", "query", "print(1)", flushIn(30*time.Second))
	k2, _ := e.agent.Kernel(second.ID)
	b, _ := os.ReadFile(filepath.Join(k2.Scratch.Work, ".hijack-uid"))
	for _, l := range strings.Fields(string(b)) {
		if l == "0" {
			secret, _ := os.ReadFile(filepath.Join(k2.Scratch.Work, ".hijack-secret"))
			t.Fatalf("the first session's request PATH, carried by the committed image's ENV, chose a program the second kernel's entrypoint ran as uid 0 (kernel uid %d); it copied the root-only runner secret (%d bytes)", uid, len(secret))
		}
	}
	t.Logf("hijacked programs ran as %q", strings.Fields(string(b)))
}
