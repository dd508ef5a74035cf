package testutil

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/bai-agent/bai-agent/internal/demoimage"
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

// PythonImage is the demo kernel image made from this host's Debian
// python3.11 (internal/demoimage), under a tag that follows its content.
func PythonImage(t testing.TB) string {
	t.Helper()
	be := RequireDocker(t)
	pyOnce.Do(func() { pyRef, pyErr = buildPythonImage(be.Client()) })
	if pyErr != nil {
		Missing(t, "python kernel image: %v", pyErr)
	}
	return pyRef
}

func buildPythonImage(cli *client.Client) (string, error) {
	tag, err := demoimage.ContentTag()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := demoimage.Build(ctx, cli, tag); err != nil {
		return "", err
	}
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

var (
	scratchOnce sync.Once
	scratchRef  string
	scratchErr  error
)

// ScratchImage is a kernel image holding only /etc/passwd and /etc/group:
// no shell, no libc. The runner must still start and answer.
func ScratchImage(t testing.TB) string {
	t.Helper()
	be := RequireDocker(t)
	scratchOnce.Do(func() {
		const tag = "bai-test/scratch:1"
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := be.Client().ImageInspect(ctx, tag); err == nil {
			scratchRef = tag
			return
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, d := range []string{"etc/", "home/", "home/work/", "home/config/", "tmp/", "proc/", "sys/", "dev/", "opt/"} {
			_ = tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
		}
		for name, body := range map[string]string{"etc/passwd": "root:x:0:0:root:/root:/nonexistent\n", "etc/group": "root:x:0:\n"} {
			_ = tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
			_, _ = tw.Write([]byte(body))
		}
		_ = tw.Close()
		changes := []string{`CMD ["/nothing"]`, `LABEL ai.backend.kernelspec="1"`, `LABEL ai.backend.runtime-type="app"`, `LABEL ai.backend.features="uid-match"`}
		res, err := be.Client().ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, tag, client.ImageImportOptions{Changes: changes})
		if err != nil {
			scratchErr = err
			return
		}
		_, _ = io.Copy(io.Discard, res)
		res.Close()
		scratchRef = tag
	})
	if scratchErr != nil {
		t.Fatalf("scratch image: %v", scratchErr)
	}
	return scratchRef
}

// MockTwoGPUs is a mock-accelerator.toml with two 80 GiB "cuda" devices
// and fixed statistics, for tests of the GPU path without a GPU.
const MockTwoGPUs = `slot_name = "cuda"
stats = "fixed"
devices = [
  { mother_uuid = "gpu-a", model_name = "Mock H100", numa_node = 0, subproc_count = 132, memory_size = "80G", is_mig_device = false },
  { mother_uuid = "gpu-b", model_name = "Mock H100", numa_node = 0, subproc_count = 132, memory_size = "80G", is_mig_device = false },
]
[formats.device]
display_unit = "GPU"
display_icon = "gpu1"
human_readable_name = "GPU"
description = "CUDA-capable GPU"
number_format = { binary = false, round_length = 0 }
`
