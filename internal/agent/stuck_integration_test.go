package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/bai-agent/bai-agent/internal/stats"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// stuckRoot is a FUSE filesystem with one file whose reads never answer
// until release is closed: a process reading it sleeps uninterruptibly
// (D), as one does on an NFS or FUSE mount whose server hangs.
type stuckRoot struct {
	fs.Inode
	release chan struct{}
}

func (r *stuckRoot) OnAdd(ctx context.Context) {
	r.AddChild("model.bin", r.NewPersistentInode(ctx, &stuckFile{release: r.release}, fs.StableAttr{Mode: fuse.S_IFREG}), false)
}

func (r *stuckRoot) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFDIR | 0o755
	return 0
}

type stuckFile struct {
	fs.Inode
	release chan struct{}
}

func (f *stuckFile) Getattr(_ context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode, out.Size = fuse.S_IFREG|0o444, 1<<20
	return 0
}

func (f *stuckFile) Open(context.Context, uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *stuckFile) Read(ctx context.Context, _ fs.FileHandle, _ []byte, _ int64) (fuse.ReadResult, syscall.Errno) {
	select {
	case <-f.release:
	case <-ctx.Done(): // the reader was killed
	}
	return fuse.ReadResultData(nil), 0
}

// A kernel with a process in uninterruptible sleep on a FUSE mount that
// does not answer: the statistics cycle of it and another kernel ends at
// once and reports the stuck process; the agent's other calls answer;
// destroying the kernel is not held up by it.
func TestStuckFUSEProcess_Integration(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse on this machine: the FUSE case cannot be simulated")
	}
	e := newEnv(t, nil)
	img := testutil.TestImageWith(t, map[string]string{"ai.backend.runtime-type": "shell"})
	mnt := filepath.Join(t.TempDir(), "stuck")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	srv, err := fs.Mount(mnt, &stuckRoot{release: release}, &fs.Options{MountOptions: fuse.MountOptions{AllowOther: true, DirectMount: true, FsName: "bai-stuck"}})
	if err != nil {
		// /dev/fuse is there, so a failed mount is a failure, not a skip.
		t.Fatalf("cannot mount FUSE: %v", err)
	}
	t.Cleanup(func() {
		close(release)
		_ = srv.Unmount()
	})
	stuck := e.create(func(c *CreationConfig) {
		c.Image.Canonical = img
		c.Mounts = []MountSpec{{Name: "stuck", HostPath: mnt, KernelPath: "/home/work/stuck", MountPerm: "ro"}}
	})
	other := e.create(func(c *CreationConfig) { c.Image.Canonical = img })
	res := e.exec(stuck.ID, "", "query", "cat /home/work/stuck/model.bin >/dev/null & sleep 1; cat /proc/$!/stat", flushIn(20*time.Second))
	if out := console(res, "stdout"); !strings.Contains(out, ") D ") {
		t.Fatalf("the reader is not in uninterruptible sleep: %q %v", out, res)
	}
	ctx := context.Background()
	var targets []stats.Target
	for _, info := range []*KernelInfo{stuck, other} {
		k, _ := e.agent.Kernel(info.ID)
		targets = append(targets, stats.Target{KernelID: info.ID, ContainerID: info.ContainerID, Pid: k.Pid()})
	}
	c := stats.NewCollector()
	t0 := time.Now()
	cycle := c.CollectContainers(ctx, targets)
	if d := time.Since(t0); d > testutil.Slow(time.Second) || cycle.Collected != 2 {
		t.Fatalf("cycle %+v took %s", cycle, d)
	}
	if p := cycle.Problems[stuck.ID]; !strings.Contains(p, "uninterruptible sleep") {
		t.Fatalf("the stuck process is not reported: %+v", cycle.Problems)
	}
	if _, bad := cycle.Problems[other.ID]; bad {
		t.Fatalf("the other kernel reported: %+v", cycle.Problems)
	}
	// The agent's calls answer while the process is stuck.
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := e.agent.PingKernel(pctx, other.ID); err != nil {
		t.Fatal(err)
	}
	if r := e.exec(other.ID, "", "query", "echo fine", flushIn(10*time.Second)); console(r, "stdout") != "fine\n" {
		t.Fatalf("the other kernel: %v", r)
	}
	k, _ := e.agent.Kernel(stuck.ID)
	t0 = time.Now()
	if err := e.agent.DestroyKernel(ctx, stuck.ID, k.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > testutil.Slow(15*time.Second) {
		t.Fatalf("destroying the kernel with a stuck process took %s", d)
	}
}
