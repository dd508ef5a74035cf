package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/vfolder"
)

// subpathKernel makes a kernel with a vfolder mounted whole at
// /home/work/vf and one of its sub-folders mounted at /home/work/sub (a
// subpath mount: the manager sends host_path = vfolder path + subpath).
// hostonly is a host folder the kernel must never reach; it is on
// vfolder-deny-paths.
func subpathKernel(t *testing.T) (e *env, info *KernelInfo, hostonly string) {
	t.Helper()
	hostonlyDir := filepath.Join(os.TempDir(), "bai-probe-hostonly-"+filepath.Base(t.TempDir()))
	e = newEnv(t, func(c *config.Config) {
		c.Container.VFolderDenyPaths = append(c.Container.VFolderDenyPaths, hostonlyDir)
	})
	hostonly = hostonlyDir
	if err := os.MkdirAll(hostonly, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(hostonly) })
	if err := os.WriteFile(filepath.Join(hostonly, "secret.txt"), []byte("host-only secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vf := filepath.Join(e.vfroot, "vf1")
	if err := os.MkdirAll(filepath.Join(vf, "sub"), 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(vf, 0o777)
	_ = os.Chmod(filepath.Join(vf, "sub"), 0o777)
	info = e.create(func(c *CreationConfig) {
		c.Mounts = []MountSpec{
			{Name: "vf1", HostPath: vf, KernelPath: "/home/work/vf", MountPerm: "rw"},
			{Name: "vf1-sub", HostPath: filepath.Join(vf, "sub"), VFSubpath: "sub", KernelPath: "/home/work/sub", MountPerm: "rw"},
		}
	})
	// The kernel's user (no root needed: the vfolder is theirs) replaces
	// the sub-folder by a link to the host folder.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if code, out := testutil.Exec(ctx, e.be, info.ContainerID, "sh", "-c",
		"mv /home/work/vf/sub /home/work/vf/sub.old && ln -s "+hostonly+" /home/work/vf/sub"); code != 0 {
		t.Fatalf("swap in the kernel: %s", out)
	}
	return e, info, hostonly
}

// Attack: the file RPCs once opened a mount's host path following
// links in every component of it. A subpath mount's host path
// goes through folders the kernel's user can change (the vfolder itself),
// so after the swap above download_single reads, and upload_file writes,
// host files as root (here a host-only 0700 folder on the deny list; "/"
// works the same: /etc/shadow, /etc/cron.d, /root/.ssh).
func TestSubpathMountSwappedForLinkFileRPCs_Integration(t *testing.T) {
	e, info, hostonly := subpathKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if b, err := e.agent.DownloadSingle(ctx, info.ID, "/home/work/sub/secret.txt"); err == nil {
		t.Errorf("download_single read a host file through the swapped vfolder sub-folder: %q", b)
	}
	if err := e.agent.UploadFile(ctx, info.ID, "/home/work/sub/planted-by-kernel", []byte("pwn\n")); err == nil {
		if _, serr := os.Stat(filepath.Join(hostonly, "planted-by-kernel")); serr == nil {
			t.Errorf("upload_file wrote into the host folder %s as root", hostonly)
		}
	}
	if l, err := e.agent.ListFiles(ctx, info.ID, "/home/work/sub"); err == nil && l.Error == "" {
		var names []string
		for _, f := range l.Files {
			names = append(names, f.Filename)
		}
		if strings.Contains(strings.Join(names, " "), "secret.txt") {
			t.Errorf("list_files listed the host folder: %v", names)
		}
	}
}

// Attack: restart_kernel re-created the container from the mounts resolved
// at creation (k.Spec.Mounts) without validating them again, and Docker
// follows the link now in place: the new container has the host folder
// (on vfolder-deny-paths; "/" the same way) bind-mounted read-write.
func TestSubpathMountSwappedForLinkRestart_Integration(t *testing.T) {
	e, info, _ := subpathKernel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k, _ := e.agent.Kernel(info.ID)
	ri, err := e.agent.RestartKernel(ctx, k.SessionID, info.ID, nil)
	if err != nil {
		// Refused before anything was taken down: the kernel still runs.
		if !errors.Is(err, vfolder.ErrInvalidMount) {
			t.Errorf("restart refused with %v, want an invalid-mount error", err)
		}
		if k.State() != kernel.Running {
			t.Errorf("the refused restart left the kernel %s", k.State())
		}
		return
	}
	if code, out := testutil.Exec(ctx, e.be, ri.ContainerID, "cat", "/home/work/sub/secret.txt"); code == 0 && strings.Contains(out, "host-only secret") {
		t.Errorf("after restart the kernel has the denied host folder mounted at /home/work/sub: %q", out)
	}
}
