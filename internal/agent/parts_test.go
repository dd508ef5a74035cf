package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/image"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/scratch"
)

// partsKernel registers a kernel in state st with a published spec whose
// work folder is a temporary one.
func partsKernel(t *testing.T, reg *registry, id string, st kernel.State, mutate func(*KernelSpec)) *Kernel {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	k := &Kernel{Machine: kernel.NewMachine(id, st), ID: id, SessionID: "s-" + id}
	s := &KernelSpec{ContainerID: "c-" + id, Scratch: scratch.Dir{Work: work}, Environ: map[string]string{}}
	if mutate != nil {
		mutate(s)
	}
	k.publish(s)
	if err := reg.add(k, nil); err != nil {
		t.Fatal(err)
	}
	return k
}

// The file part on its own: calls reach a running kernel's folder, and a
// kernel that is not running is not there for them.
func TestFileOps(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	fo := newFileOps(reg, fake.New())
	ctx := context.Background()
	run := partsKernel(t, reg, "run", kernel.Running, nil)
	partsKernel(t, reg, "gone", kernel.Terminating, nil)
	if err := fo.UploadFile(ctx, run.ID, "a/b.txt", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(run.Spec().Scratch.Work, "a", "b.txt")); err != nil || string(b) != "hi" {
		t.Fatalf("uploaded file: %q %v", b, err)
	}
	l, err := fo.ListFiles(ctx, run.ID, "a")
	if err != nil || len(l.Files) != 1 || l.Files[0].Filename != "b.txt" || l.Files[0].Size != 2 {
		t.Fatalf("list: %+v %v", l, err)
	}
	if got, err := fo.DownloadSingle(ctx, run.ID, "a/b.txt"); err != nil || string(got) != "hi" {
		t.Fatalf("download_single: %q %v", got, err)
	}
	for _, id := range []string{"gone", "unknown"} {
		if err := fo.UploadFile(ctx, id, "x", nil); !errors.Is(err, ErrKernelNotFound) {
			t.Errorf("upload to %s: %v, want ErrKernelNotFound", id, err)
		}
		if _, err := fo.ListFiles(ctx, id, "."); !errors.Is(err, ErrKernelNotFound) {
			t.Errorf("list_files of %s: %v, want ErrKernelNotFound", id, err)
		}
	}
}

// The runner part on its own: refusals before any runner is asked.
func TestRunnerOps(t *testing.T) {
	t.Parallel()
	reg := newRegistry()
	closed := make(chan struct{})
	var bg, owners sync.WaitGroup
	var destroyed []string
	var mu sync.Mutex
	ro := &runnerOps{reg: reg, events: &recorder{}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), closed: closed, runCtx: context.Background, bg: &bg,
		life: context.Background(), owners: &owners, destroy: func(_ context.Context, id, _, reason string, _ bool) error {
			mu.Lock()
			destroyed = append(destroyed, id+":"+reason)
			mu.Unlock()
			return nil
		}}
	ctx := context.Background()
	partsKernel(t, reg, "plain", kernel.Running, func(s *KernelSpec) {
		s.Services = []image.ServicePort{{Name: "jupyter", Protocol: "http", ContainerPorts: []int{8080}}}
	})
	partsKernel(t, reg, "blocked", kernel.Running, func(s *KernelSpec) { s.Config.BlockServicePorts = true })
	if _, err := ro.Execute(ctx, "", "unknown", coderunner.Request{}); !errors.Is(err, ErrKernelNotFound) {
		t.Errorf("execute on an unknown kernel: %v", err)
	}
	if _, err := ro.Execute(ctx, "", "plain", coderunner.Request{}); !errors.Is(err, ErrRunnerNotReady) {
		t.Errorf("execute without a runner: %v", err)
	}
	if res, err := ro.StartService(ctx, "blocked", "jupyter", nil); err != nil || res["error"] != "operation blocked" {
		t.Errorf("start_service on a kernel with blocked service ports: %v %v", res, err)
	}
	if res, err := ro.StartService(ctx, "plain", "nope", nil); err != nil || res["error"] != "invalid service name" {
		t.Errorf("start_service of an unknown service: %v %v", res, err)
	}
	if _, err := ro.StartService(ctx, "plain", "jupyter", nil); !errors.Is(err, ErrRunnerNotReady) {
		t.Errorf("start_service without a runner: %v", err)
	}
	// A model service that cannot start destroys its kernel (posted, not
	// awaited).
	ro.failModelService(reg.list()[1], "no runner")
	owners.Wait()
	if len(destroyed) != 1 || destroyed[0] != "plain:"+ReasonFailedToStart {
		t.Fatalf("destroyed %v", destroyed)
	}
}
