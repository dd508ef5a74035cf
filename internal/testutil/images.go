package testutil

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

var (
	variantMu sync.Mutex
	variants  = map[string]string{}
)

// TestImageWith is the test kernel image with some labels changed (for
// example ai.backend.runtime-type = shell), built once per label set.
func TestImageWith(t testing.TB, override map[string]string) string {
	t.Helper()
	be := RequireDocker(t)
	labels := map[string]string{}
	for k, v := range ImageLabels {
		labels[k] = v
	}
	for k, v := range override {
		labels[k] = v
	}
	key := fmt.Sprint(labels)
	variantMu.Lock()
	defer variantMu.Unlock()
	if ref, ok := variants[key]; ok {
		return ref
	}
	ref, err := buildImage(be.Client(), ModuleRoot(t), labels)
	if err != nil {
		t.Fatalf("build test image variant: %v", err)
	}
	variants[key] = ref
	return ref
}

var (
	pyOnce sync.Once
	pyRef  string
	pyErr  error
)

// PythonImage is a kernel image made from this host's Debian python3.11:
// the interpreter, its standard library (without tests), the shared
// libraries they load, and busybox for /bin/sh. Labels: runtime-type
// python, runtime-path /usr/bin/python3.11.
func PythonImage(t testing.TB) string {
	t.Helper()
	be := RequireDocker(t)
	pyOnce.Do(func() { pyRef, pyErr = buildPythonImage(be.Client()) })
	if pyErr != nil {
		Missing(t, "python kernel image: %v", pyErr)
	}
	return pyRef
}

// lddClosure lists the shared objects files need (ldd), with the loader.
func lddClosure(files []string) ([]string, error) {
	seen := map[string]bool{}
	for _, f := range files {
		out, err := exec.Command("ldd", f).Output()
		if err != nil {
			continue // not dynamic
		}
		for _, line := range strings.Split(string(out), "\n") {
			for _, field := range strings.Fields(line) {
				if strings.HasPrefix(field, "/") {
					seen[field] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

func buildPythonImage(cli *client.Client) (string, error) {
	const py = "/usr/bin/python3.11"
	const lib = "/usr/lib/python3.11"
	if _, err := os.Stat(py); err != nil {
		return "", fmt.Errorf("%s missing (apt-get install python3.11-minimal)", py)
	}
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		return "", fmt.Errorf("busybox-static is not installed")
	}
	var files []string
	var sos []string
	skip := map[string]bool{"test": true, "__pycache__": true, "dist-packages": true, "site-packages": true, "idlelib": true, "tkinter": true, "ensurepip": true, "lib2to3": true, "turtledemo": true, "pydoc_data": true}
	err := filepath.WalkDir(lib, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && skip[d.Name()] {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			files = append(files, p)
			if strings.HasSuffix(p, ".so") {
				sos = append(sos, p)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	libs, err := lddClosure(append([]string{py}, sos...))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range append(append([]string{py, bb}, libs...), files...) {
		st, err := os.Stat(f)
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s %d %d\n", f, st.Size(), st.ModTime().Unix())
	}
	tag := "bai-test/python:" + hex.EncodeToString(h.Sum(nil))[:12]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		return tag, nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdirs := func(p string) {
		var parts []string
		for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
			parts = append([]string{d}, parts...)
		}
		for _, d := range parts {
			if !dirs[d] {
				dirs[d] = true
				_ = tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(d, "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755})
			}
		}
	}
	add := func(src, dst string) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		st, _ := os.Stat(src)
		mkdirs(dst)
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(dst, "/"), Typeflag: tar.TypeReg, Mode: int64(st.Mode().Perm()), Size: int64(len(b))}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	}
	for _, d := range []string{"/home/work/x", "/home/config/x", "/tmp/x", "/proc/x", "/sys/x", "/dev/x", "/etc/x", "/opt/x"} {
		mkdirs(d)
	}
	if err := add(py, py); err != nil {
		return "", err
	}
	for _, l := range libs {
		real, err := filepath.EvalSymlinks(l)
		if err != nil {
			continue
		}
		if err := add(real, l); err != nil {
			return "", err
		}
	}
	for _, f := range files {
		if err := add(f, f); err != nil {
			return "", err
		}
	}
	if err := add(bb, "/bin/busybox"); err != nil {
		return "", err
	}
	for _, app := range []string{"sh", "ls", "cat", "echo", "sleep", "env", "id", "ps", "true", "false"} {
		_ = tw.WriteHeader(&tar.Header{Name: "bin/" + app, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	_ = tw.WriteHeader(&tar.Header{Name: "usr/bin/python3", Typeflag: tar.TypeSymlink, Linkname: "python3.11", Mode: 0o777})
	for name, body := range map[string]string{"/etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "/etc/group": "root:x:0:\n"} {
		mkdirs(name)
		_ = tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(name, "/"), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		_, _ = tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	changes := []string{`CMD ["/bin/sh"]`, "ENV PATH=/usr/bin:/bin", "ENV LANG=C.UTF-8"}
	labels := map[string]string{
		"ai.backend.kernelspec": "1", "ai.backend.features": "uid-match", "ai.backend.runtime-type": "python",
		"ai.backend.runtime-path": "/usr/bin/python3.11", "ai.backend.resource.min.cpu": "1", "ai.backend.resource.min.mem": "32m",
		"ai.backend.base-distro": "debian",
	}
	for k, v := range labels {
		changes = append(changes, fmt.Sprintf("LABEL %s=%q", k, v))
	}
	res, err := cli.ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, tag, client.ImageImportOptions{Changes: changes})
	if err != nil {
		return "", fmt.Errorf("docker import: %w", err)
	}
	_, _ = io.Copy(io.Discard, res)
	res.Close()
	return tag, nil
}

var (
	tkOnce sync.Once
	tkPath string
	tkErr  error
)

// TestkernelBinary builds the static testkernel (a program that sleeps
// and serves nothing) once per test process.
func TestkernelBinary(t testing.TB) string {
	t.Helper()
	tkOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "bai-agent-test-bin")
		if tkErr = os.MkdirAll(dir, 0o755); tkErr != nil {
			return
		}
		tkPath = filepath.Join(dir, fmt.Sprintf("testkernel-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-o", tkPath, "./internal/testutil/testkernel")
		cmd.Dir = ModuleRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			tkErr = fmt.Errorf("build testkernel: %v: %s", err, out)
		}
	})
	if tkErr != nil {
		t.Fatal(tkErr)
	}
	return tkPath
}
