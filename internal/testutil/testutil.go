package testutil

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/bai-agent/bai-agent/internal/backend/docker"
)

// Required reports whether missing services must fail tests.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("AGENT_REQUIRE_INTEGRATION") == "1"
}

// Missing fails (under CI) or skips the test.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("required service missing: %s", msg)
	}
	t.Skipf("skipping: %s (set CI=true to make this a failure)", msg)
}

var (
	dockerOnce sync.Once
	dockerBE   *docker.Backend
	dockerErr  error
)

// RequireDocker returns a backend connected to the real dockerd.
func RequireDocker(t testing.TB) *docker.Backend {
	t.Helper()
	dockerOnce.Do(func() {
		be, err := docker.New()
		if err != nil {
			dockerErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := be.Ping(ctx); err != nil {
			dockerErr = err
			return
		}
		dockerBE = be
	})
	if dockerErr != nil {
		Missing(t, "docker engine: %v", dockerErr)
	}
	// Every kernel a test creates runs the kernel runner.
	KrunnerBinary(t)
	return dockerBE
}

// RequireRoot fails (under CI) or skips unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root privileges")
	}
}

// ModuleRoot finds the repository root (the folder with go.mod).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ImageLabels are the labels of the test kernel image.
var ImageLabels = map[string]string{
	"ai.backend.kernelspec":       "1",
	"ai.backend.features":         "uid-match",
	"ai.backend.service-ports":    "jupyter:http:8080",
	"ai.backend.resource.min.cpu": "1",
	"ai.backend.resource.min.mem": "32m",
	"ai.backend.runtime-type":     "app",
	"ai.backend.envs.corecount":   "OMP_NUM_THREADS",
	"ai.backend.base-distro":      "busybox",
}

var (
	imageOnce sync.Once
	imageRef  string
	imageErr  error
)

// TestImage builds (once per content) and returns the test kernel image:
// a docker import of busybox-static and testkernel, tagged
// bai-test/kernel:<content hash>.
func TestImage(t testing.TB) string {
	t.Helper()
	be := RequireDocker(t)
	imageOnce.Do(func() { imageRef, imageErr = buildImage(be.Client(), ModuleRoot(t), ImageLabels) })
	if imageErr != nil {
		t.Fatalf("build test image: %v", imageErr)
	}
	return imageRef
}

func buildImage(cli *client.Client, root string, labels map[string]string) (string, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
			if _, serr := os.Stat(p); serr == nil {
				bb = p
			}
		}
	}
	if bb == "" {
		return "", fmt.Errorf("busybox-static is not installed (apt-get install busybox-static)")
	}
	tmp, err := os.MkdirTemp("", "bai-testkernel-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "testkernel")
	cmd := exec.Command("go", "build", "-o", bin, "./internal/testutil/testkernel")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build testkernel: %v: %s", err, out)
	}
	bbData, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	tkData, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(bbData)
	h.Write(tkData)
	h.Write([]byte("service-defs/web.json v1"))
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		h.Write([]byte(k + "=" + labels[k]))
	}
	tag := "bai-test/kernel:" + hex.EncodeToString(h.Sum(nil))[:12]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, tag); err == nil {
		return tag, nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) {
		_ = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode})
	}
	file := func(name string, data []byte, mode int64) {
		_ = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data))})
		_, _ = tw.Write(data)
	}
	for _, d := range []string{"bin/", "etc/", "home/", "home/work/", "home/config/", "proc/", "sys/", "dev/", "root/", "opt/"} {
		dir(d, 0o755)
	}
	dir("tmp/", 0o1777)
	file("bin/busybox", bbData, 0o755)
	file("bin/testkernel", tkData, 0o755)
	for _, app := range []string{"sh", "ls", "cat", "echo", "sleep", "dd", "id", "env", "touch", "mkdir", "rm", "df", "head", "true", "false", "grep", "ps", "sync", "stat", "wc"} {
		_ = tw.WriteHeader(&tar.Header{Name: "bin/" + app, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	// A service definition (busybox httpd serving /home/work), used when a
	// variant's service-ports label names "web".
	dir("etc/backend.ai/", 0o755)
	dir("etc/backend.ai/service-defs/", 0o755)
	file("etc/backend.ai/service-defs/web.json", []byte(`{"command": ["/bin/busybox", "httpd", "-f", "-p", "{ports[0]}", "-h", "/home/work"], "url_template": "http://{host}:{port}/", "allowed_arguments": ["-v"]}`), 0o644)
	file("etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	file("etc/group", []byte("root:x:0:\n"), 0o644)
	if err := tw.Close(); err != nil {
		return "", err
	}
	changes := []string{`CMD ["/bin/testkernel"]`, "ENV PATH=/bin"}
	for _, k := range keys {
		changes = append(changes, fmt.Sprintf("LABEL %s=%q", k, labels[k]))
	}
	res, err := cli.ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, tag, client.ImageImportOptions{Changes: changes})
	if err != nil {
		return "", fmt.Errorf("docker import: %w", err)
	}
	_, _ = io.Copy(io.Discard, res)
	res.Close()
	if _, err := cli.ImageInspect(ctx, tag); err != nil {
		return "", fmt.Errorf("imported image %s not found: %w", tag, err)
	}
	return tag, nil
}

// Exec runs a command in a container and returns its exit code and
// output, through the Engine API (no docker CLI needed).
func Exec(ctx context.Context, be *docker.Backend, id string, cmd ...string) (int, string) {
	code, out, err := be.Exec(ctx, id, cmd)
	if err != nil {
		return -1, err.Error()
	}
	return code, strings.TrimSpace(string(out))
}

// Eventually polls cond every 50 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// StartRegistry runs Debian's docker-registry on a free loopback port with
// its storage in a temp dir, and returns "127.0.0.1:PORT". Docker treats
// 127.0.0.0/8 registries as insecure (plain HTTP) by default.
func StartRegistry(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		Missing(t, "docker-registry (apt-get install docker-registry)")
	}
	dir := t.TempDir()
	var addr string
	startServer(t, func(try int) (*server, string, string) {
		addr = freeAddr(t)
		cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
		cfgPath := filepath.Join(dir, fmt.Sprintf("config-%d.yml", try))
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		srv, err := launch(t, exec.Command(bin, "serve", cfgPath), filepath.Join(dir, fmt.Sprintf("registry-%d.log", try)))
		if err != nil {
			t.Fatalf("start docker-registry: %v", err)
		}
		return srv, addr, "docker-registry"
	})
	Eventually(t, 20*time.Second, "docker-registry answers", func() bool {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return addr
}

// ImportRandomImage imports an image under ref whose single layer holds
// size random bytes, so no other local image shares it (a pull of it must
// really download).
func ImportRandomImage(t testing.TB, be *docker.Backend, ref string, size int) {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "blob", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size)})
	_, _ = tw.Write(data)
	_ = tw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := be.Client().ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, ref, client.ImageImportOptions{Changes: []string{"LABEL ai.backend.kernelspec=1"}})
	if err != nil {
		t.Fatalf("import %s: %v", ref, err)
	}
	_, _ = io.Copy(io.Discard, res)
	res.Close()
}

// slowdown is BAI_TEST_SLOWDOWN (default 1): how much slower than the
// 2-core reference machine this one is.
var slowdown = func() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("BAI_TEST_SLOWDOWN"), 64); err == nil && v >= 1 {
		return v
	}
	return 1
}()

// Slow scales a wall-clock upper bound by the machine's slowdown factor
// (BAI_TEST_SLOWDOWN), so that one setting relaxes every timing bound on a
// slower machine instead of each test guessing.
func Slow(d time.Duration) time.Duration { return time.Duration(float64(d) * slowdown) }

// Consistently fails the test if cond is false at any poll during d: an
// assertion that something does not happen, without a bare sleep.
func Consistently(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
