package agent

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/google/uuid"
)

// A committed session is an image whose ENV is the old container's
// environment, the old request's environ included (Agent.Commit is a
// docker commit with LABEL changes only). A user without sudo sets PATH
// to a folder of their dotfiles in one session, commits it, and starts a
// second session from that image without naming PATH: the root phase
// must not take that PATH from the image's ENV (it once trusted every
// variable environ.txt did not name), or the user's "env"/"python3" run
// as uid 0 and copy the runner secret.
func TestCommittedSessionEnvironCannotHijackRootPhase_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := imageWithRootBootstrap(t)
	uid := 1234
	dotfiles := hijackBin()
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
	tag := "bai-test/committed-session:" + uuid.NewString()[:8]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.be.CommitContainer(ctx, k1.ContainerID(), tag, []string{`LABEL ai.backend.test="committed"`}); err != nil {
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
	assertNoRootHijack(t, e, second.ID, uid, "the first session's request PATH, carried by the committed image's ENV,")
}
