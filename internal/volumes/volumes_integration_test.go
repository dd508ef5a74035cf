package volumes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// cleanupMount detaches target at the end of the test, whatever state
// the test left it in.
func cleanupMount(t *testing.T, target string) {
	t.Helper()
	t.Cleanup(func() {
		for {
			if ok, _ := IsMounted("", target); !ok {
				return
			}
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
				t.Errorf("cleanup unmount %s: %v", target, err)
				return
			}
		}
	})
}

func mounted(t *testing.T, p string) bool {
	t.Helper()
	ok, err := IsMounted("", p)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// A tmpfs mounted and unmounted twice each: the second of each is a
// success that changes nothing; the fstab gets one line and loses it;
// the mount point is chowned to mount-path-uid-gid.
func TestMountTmpfsIdempotent_Integration(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	target := filepath.Join(root, "mnt", "vol 1") // a space: \040 in mountinfo
	cleanupMount(t, target)
	fstab := filepath.Join(root, "fstab")
	if err := os.WriteFile(fstab, []byte(sampleFstab), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{OwnerUIDGID: "4321:8765"}
	ctx := context.Background()
	req := MountRequest{Target: target, FSLocation: "baitmpfs", FSType: "tmpfs", Options: "size=1m", EditFstab: true, FstabPath: fstab}
	for i, want := range []bool{true, false} {
		got, err := Mount(ctx, o, req)
		if err != nil || got != want {
			t.Fatalf("mount #%d = %v, %v; want %v", i+1, got, err, want)
		}
		if !mounted(t, target) {
			t.Fatalf("mount #%d: not in mountinfo", i+1)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil || st.Uid != 4321 || st.Gid != 8765 {
		t.Fatalf("mount point owner %d:%d (%v), want 4321:8765", st.Uid, st.Gid, err)
	}
	b, _ := os.ReadFile(fstab)
	line := `baitmpfs ` + strings.ReplaceAll(target, " ", `\040`) + ` tmpfs size=1m 0 0`
	if string(b) != sampleFstab+line+"\n" {
		t.Fatalf("fstab after mounts:\n%s", b)
	}
	for i, want := range []bool{true, false} {
		got, err := Unmount(ctx, o, target, true, fstab)
		if err != nil || got != want {
			t.Fatalf("unmount #%d = %v, %v; want %v", i+1, got, err, want)
		}
		if mounted(t, target) {
			t.Fatalf("unmount #%d: still mounted", i+1)
		}
	}
	if b, _ := os.ReadFile(fstab); string(b) != sampleFstab {
		t.Fatalf("fstab after unmounts:\n%s", b)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("empty mount point left: %v", err)
	}
	// A refused fstab path changes nothing: no mount either.
	if _, err := Mount(ctx, o, MountRequest{Target: target, FSLocation: "x", FSType: "tmpfs", EditFstab: true, FstabPath: "/etc/passwd"}); !errors.Is(err, ErrBadFstabPath) {
		t.Fatalf("mount with fstab_path /etc/passwd: %v", err)
	}
	if mounted(t, target) {
		t.Fatal("mounted despite the refused fstab path")
	}
}

// A local directory is bind-mounted.
func TestBindMount_Integration(t *testing.T) {
	testutil.RequireRoot(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "marker"), []byte("bound"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "bound")
	cleanupMount(t, target)
	ctx := context.Background()
	if ok, err := Mount(ctx, Options{}, MountRequest{Target: target, FSLocation: src, FSType: "none"}); err != nil || !ok {
		t.Fatalf("bind mount: %v %v", ok, err)
	}
	if b, err := os.ReadFile(filepath.Join(target, "marker")); err != nil || string(b) != "bound" {
		t.Fatalf("marker through the bind mount: %q %v", b, err)
	}
	if ok, err := Unmount(ctx, Options{}, target, false, ""); err != nil || !ok {
		t.Fatalf("unmount: %v %v", ok, err)
	}
	if _, err := os.Stat(filepath.Join(src, "marker")); err != nil {
		t.Fatalf("source damaged: %v", err)
	}
}

// fakeTools puts mount and umount wrappers first on PATH: they hang
// (sleep) for the fs type "baihang" and for mount points named hang*,
// and run the real tools otherwise. Nothing outside the test's folders
// changes.
func fakeTools(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range []string{"mount", "umount"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			testutil.Missing(t, "%s: %v", tool, err)
		}
		script := "#!/bin/sh\n" +
			"for a in \"$@\"; do case \"$a\" in baihang|*/hang*) exec sleep 300;; esac; done\n" +
			"exec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
}

// A mount that hangs is killed at its deadline and answered with an
// error; meanwhile a request for another volume completes. A hung
// unmount is bounded the same way.
func TestHungMountDeadline_Integration(t *testing.T) {
	testutil.RequireRoot(t)
	fakeTools(t)
	root := t.TempDir()
	hung, ok := filepath.Join(root, "stuck"), filepath.Join(root, "fine")
	cleanupMount(t, ok)
	o := Options{MountTimeout: 2 * time.Second, UnmountTimeout: time.Second}
	ctx := context.Background()

	s := NewSerial(4)
	hungErr := make(chan error, 1)
	okDone := make(chan error, 1)
	t0 := time.Now()
	s.Submit(hung, func() {
		_, err := Mount(ctx, o, MountRequest{Target: hung, FSLocation: "srv:/x", FSType: "baihang"})
		hungErr <- err
	})
	s.Submit(ok, func() {
		_, err := Mount(ctx, o, MountRequest{Target: ok, FSLocation: "t", FSType: "tmpfs"})
		okDone <- err
	})
	select {
	case err := <-okDone:
		if err != nil {
			t.Fatalf("tmpfs mount beside the hung one: %v", err)
		}
	case err := <-hungErr:
		t.Fatalf("the hung mount finished first (%v)", err)
	case <-time.After(testutil.Slow(10 * time.Second)):
		t.Fatal("tmpfs mount waited for the hung one")
	}
	if !mounted(t, ok) {
		t.Fatal("tmpfs not mounted")
	}
	err := <-hungErr
	el := time.Since(t0)
	if !errors.Is(err, ErrTimeout) || strings.Contains(err.Error(), "does not exit") {
		t.Fatalf("hung mount: %v", err)
	}
	if el < o.MountTimeout || el > o.MountTimeout+killGrace+testutil.Slow(3*time.Second) {
		t.Fatalf("hung mount answered after %s (deadline %s)", el, o.MountTimeout)
	}
	if _, err := os.Stat(hung); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mount point of the failed mount left: %v", err)
	}
	s.Wait()

	// umount bounded too: mount a tmpfs at hang*, whose umount sleeps.
	hangUmount := filepath.Join(root, "hang-umount")
	cleanupMount(t, hangUmount)
	if err := os.Mkdir(hangUmount, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("t", hangUmount, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	if _, err := Unmount(ctx, o, hangUmount, false, ""); !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "state D") {
		t.Fatalf("hung umount: %v", err)
	}
	if el := time.Since(t0); el > o.UnmountTimeout+killGrace+testutil.Slow(3*time.Second) {
		t.Fatalf("hung umount answered after %s", el)
	}
	// and the one that works
	if done, err := Unmount(ctx, o, ok, false, ""); err != nil || !done {
		t.Fatalf("unmount tmpfs: %v %v", done, err)
	}
}

// A path whose command outlived its kill is refused at once until that
// command exits; cancelling the caller ends a waiting request.
func TestPathLock(t *testing.T) {
	p := "/nonexistent/bai-volumes-test/" + t.Name()
	markStuck(p, 1)
	if _, err := lockPath(context.Background(), p); !errors.Is(err, ErrBusy) {
		t.Fatalf("stuck path: %v", err)
	}
	markStuck(p, -1)
	release, err := lockPath(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := lockPath(ctx, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second holder: %v", err)
	}
	release()
	pathMu.Lock()
	n := len(paths)
	pathMu.Unlock()
	if n != 0 {
		t.Fatalf("%d path entries left", n)
	}
}

// The whole process group goes at the deadline, not only the shell.
func TestRunKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	_, err := run(context.Background(), Options{}, dir, 300*time.Millisecond, "sh", "-c", "sleep 300 & echo $! > "+pidFile+"; wait")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("run: %v", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &pid); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "grandchild killed", func() bool {
		return syscall.Kill(pid, 0) != nil
	})
}
