package agent

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// imageWithRootBootstrap is the Python test image plus an executable
// /opt/container/bootstrap.sh (as many Backend.AI images ship) that, as
// image bootstraps do, runs python3 by name and exports variables into
// the kernel (one of them PATH, extended).
func imageWithRootBootstrap(t *testing.T) string {
	t.Helper()
	base := testutil.PythonImage(t)
	script := []byte("#!/bin/sh\n# image bootstrap: check the runtime, export the image's settings\n" +
		"python3 -c 'import sys' >/dev/null 2>&1 || true\n" +
		"export FROM_IMAGE_BOOTSTRAP=yes\nexport PATH=/opt/bootstrap-bin:$PATH\n")
	tag := "bai-test/root-bootstrap:" + strings.ReplaceAll(strings.TrimPrefix(base, "bai-test/python:"), ":", "-")
	if exec.Command("docker", "image", "inspect", tag).Run() == nil {
		return tag
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "opt/container/", Typeflag: tar.TypeDir, Mode: 0o755})
	_ = tw.WriteHeader(&tar.Header{Name: "opt/container/bootstrap.sh", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(script))})
	_, _ = tw.Write(script)
	_ = tw.Close()
	out, err := exec.Command("docker", "create", base).Output()
	if err != nil {
		t.Fatalf("docker create: %v", err)
	}
	cid := strings.TrimSpace(string(out))
	defer exec.Command("docker", "rm", "-f", cid).Run()
	cp := exec.Command("docker", "cp", "-", cid+":/")
	cp.Stdin = &buf
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("docker cp: %v %s", err, out)
	}
	if out, err := exec.Command("docker", "commit", cid, tag).CombinedOutput(); err != nil {
		t.Fatalf("docker commit: %v %s", err, out)
	}
	return tag
}

// hijackMark is what every hijacking program runs: it records its uid
// and copies the root-only runner secret.
const hijackMark = "id -u >> /home/work/.hijack-uid\ncat /home/config/krunner-auth.json > /home/work/.hijack-secret 2>/dev/null\n"

// hijackBin are dotfiles planting a python3 and an env in
// /home/work/.hijack-bin that run hijackMark first.
func hijackBin() []any {
	return []any{
		map[string]any{"path": ".hijack-bin/python3", "perm": "755", "data": "#!/bin/sh\n" + hijackMark + "exec /usr/bin/python3 \"$@\"\n"},
		map[string]any{"path": ".hijack-bin/env", "perm": "755", "data": "#!/bin/sh\n" + hijackMark + "exec /usr/bin/env \"$@\"\n"},
	}
}

// assertNoRootHijack fails when a hijacking program of the kernel ran as
// uid 0 (in the entrypoint's root phase).
func assertNoRootHijack(t *testing.T, e *env, kernelID string, uid int, how string) {
	t.Helper()
	k, _ := e.agent.Kernel(kernelID)
	b, _ := os.ReadFile(filepath.Join(k.Spec().Scratch.Work, ".hijack-uid"))
	for _, l := range strings.Fields(string(b)) {
		if l == "0" {
			secret, _ := os.ReadFile(filepath.Join(k.Spec().Scratch.Work, ".hijack-secret"))
			t.Fatalf("%s chose a program the entrypoint ran as uid 0 (kernel uid %d); it copied the root-only runner secret (%d bytes)", how, uid, len(secret))
		}
	}
	t.Logf("hijacked programs ran as %q (the kernel user's own code)", strings.Fields(string(b)))
}

// The request's environment cannot choose what the runner's entrypoint
// runs as root. The request sets PATH to a folder of its dotfiles (which
// it also chooses, mode 0755) holding a python3, and PYTHONPATH, BASH_ENV
// and ENV to its own files; the image's bootstrap.sh, which the
// entrypoint runs as root before it becomes the kernel user, runs python3
// by name. Every hijacked program records its uid and copies the
// root-only runner secret: none may run as uid 0. The kernel's own
// processes still get the request's environment (the runner overlays
// environ.txt, so the request's PATH wins over the bootstrap's) and what
// the image's bootstrap exports.
func TestEnvironCannotHijackRootPhase_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := imageWithRootBootstrap(t)
	uid := 1234
	info := e.create(func(c *CreationConfig) {
		c.Image.Canonical = img
		c.UID, c.MainGID = &uid, &uid
		c.Environ["PATH"] = "/home/work/.hijack-bin:/usr/bin:/bin"
		c.Environ["PYTHONPATH"] = "/home/work/.hijack-py"
		c.Environ["BASH_ENV"] = "/home/work/.hijack-rc"
		c.Environ["ENV"] = "/home/work/.hijack-rc"
		c.InternalData = map[string]any{"dotfiles": append(hijackBin(),
			map[string]any{"path": ".hijack-rc", "perm": "644", "data": hijackMark},
			map[string]any{"path": ".hijack-py/sitecustomize.py", "perm": "644", "data": "import os, subprocess\n" +
				"subprocess.run(['/bin/sh', '-c', " + "'" + strings.ReplaceAll(hijackMark, "\n", "; ") + "'])\n"},
		)}
	})
	// The runner answers only after the entrypoint's root phase ended.
	res := e.exec(info.ID, "env", "query", "import os\nprint(os.getuid(), os.environ['PATH'], os.environ.get('FROM_IMAGE_BOOTSTRAP'), os.environ.get('PYTHONPATH'))", flushIn(30*time.Second))
	want := "1234 /home/work/.hijack-bin:/usr/bin:/bin yes /home/work/.hijack-py\n"
	if got := console(res, "stdout"); got != want {
		t.Errorf("the kernel's environment: %q, want %q (%v)", got, want, res)
	}
	assertNoRootHijack(t, e, info.ID, uid, "the request's environment")
}
