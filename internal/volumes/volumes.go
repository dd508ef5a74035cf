package volumes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bai-agent/bai-agent/internal/safefs"
)

// Default deadlines. Upstream bounds an unmount by etcd
// config/watcher/file-io-timeout (default 10 s) and a mount not at all;
// a mount here gets a minute, enough for an NFS server that answers.
const (
	DefaultMountTimeout   = 60 * time.Second
	DefaultUnmountTimeout = 10 * time.Second
)

// ErrTimeout marks a command that did not finish before its deadline.
var ErrTimeout = errors.New("timed out")

// ErrBusy marks a mount point whose previous command has not exited yet.
var ErrBusy = errors.New("a previous mount or umount of this path has not exited")

// Options are how mounts are made; the zero value uses the defaults.
type Options struct {
	// MountTimeout bounds mount(8) and chown(1); UnmountTimeout bounds
	// umount(8).
	MountTimeout, UnmountTimeout time.Duration
	// OwnerUIDGID is [agent] mount-path-uid-gid ("uid:gid" or
	// "user:group"): the mount point is chowned to it after a mount, as
	// upstream does. Empty: left as mounted.
	OwnerUIDGID string
	// MountInfo is the mount table read (default /proc/self/mountinfo).
	MountInfo string
	// Log receives what is not reported back (chown failures, reaped
	// stuck commands). Default: slog.Default().
	Log *slog.Logger
}

func (o Options) log() *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.Default()
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// MountRequest is one do_volume_mount, resolved to a mount point.
type MountRequest struct {
	Target     string // the mount point: mount-path/dir_name
	FSLocation string
	FSType     string // "" means nfs, upstream's default
	Options    string // mount -o; empty: none
	EditFstab  bool
	FstabPath  string // "" means /etc/fstab
}

// bindTypes are the fs_type values that bind-mount a local directory.
var bindTypes = map[string]bool{"": true, "none": true, "bind": true}

// Mount mounts r.FSLocation on r.Target unless Target is a mount point
// already; either way it then edits the fstab (when asked) and chowns the
// mount point (when configured). mounted tells whether this call
// mounted. A local directory with fs_type "", "none" or "bind" is
// bind-mounted; anything else goes to mount -t TYPE [-o OPTIONS].
func Mount(ctx context.Context, o Options, r MountRequest) (mounted bool, err error) {
	target := filepath.Clean(r.Target)
	if r.EditFstab {
		if err := CheckFstabPath(fstabOrDefault(r.FstabPath)); err != nil {
			return false, err // before anything is mounted
		}
	}
	release, err := lockPath(ctx, target)
	if err != nil {
		return false, err
	}
	defer release()
	already, err := IsMounted(o.MountInfo, target)
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	if !already {
		created, err := mkdirTarget(target)
		if err != nil {
			return false, err
		}
		args := mountArgs(r)
		if bindTypes[r.FSType] && isLocalDir(r.FSLocation) {
			args = []string{"--bind", r.FSLocation, target}
			if r.Options != "" {
				args = []string{"--bind", "-o", r.Options, r.FSLocation, target}
			}
		}
		timeout := orDefault(o.MountTimeout, DefaultMountTimeout)
		if out, err := run(ctx, o, target, timeout, "mount", args...); err != nil {
			if created {
				_ = os.Remove(target)
			}
			return false, fmt.Errorf("mount %s on %s: %w%s", r.FSLocation, target, err, out)
		}
		mounted = true
	}
	if r.EditFstab {
		fsType := r.FSType
		if fsType == "" {
			fsType = "nfs"
		}
		e := FstabEntry{Device: r.FSLocation, MountPoint: target, FSType: fsType, Options: r.Options}
		if err := EditFstab(fstabOrDefault(r.FstabPath), func(c string) (string, bool) { return AddFstabEntry(c, e) }); err != nil {
			return mounted, err
		}
	}
	if o.OwnerUIDGID != "" {
		// Upstream runs chown(1) and does not look at the outcome; a
		// failure is logged here, the mount still stands.
		if out, err := run(ctx, o, target, orDefault(o.MountTimeout, DefaultMountTimeout), "chown", o.OwnerUIDGID, target); err != nil {
			o.log().Warn("chown of mount point failed", "mount_path", target, "owner", o.OwnerUIDGID, "error", err.Error()+out)
		}
	}
	return mounted, nil
}

func mountArgs(r MountRequest) []string {
	fsType := r.FSType
	if fsType == "" {
		fsType = "nfs"
	}
	args := []string{"-t", fsType}
	if r.Options != "" {
		args = append(args, "-o", r.Options)
	}
	return append(args, r.FSLocation, filepath.Clean(r.Target))
}

// Unmount unmounts target when it is a mount point; unmounted tells
// whether it was. The mount point's folder is removed when empty. With
// edit it then removes the fstab lines for target (even when nothing was
// mounted, so a retry converges).
func Unmount(ctx context.Context, o Options, target string, edit bool, fstabPath string) (unmounted bool, err error) {
	target = filepath.Clean(target)
	if edit {
		if err := CheckFstabPath(fstabOrDefault(fstabPath)); err != nil {
			return false, err // before anything is unmounted
		}
	}
	release, err := lockPath(ctx, target)
	if err != nil {
		return false, err
	}
	defer release()
	mounted, err := IsMounted(o.MountInfo, target)
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	if mounted {
		if out, err := run(ctx, o, target, orDefault(o.UnmountTimeout, DefaultUnmountTimeout), "umount", target); err != nil {
			if errors.Is(err, ErrTimeout) {
				return false, fmt.Errorf("umount %s: %w; the process may be hanging in state D, which needs to be checked", target, err)
			}
			return false, fmt.Errorf("umount %s: %w%s", target, err, out)
		}
	}
	_ = os.Remove(target) // only when empty
	if edit {
		if err := EditFstab(fstabOrDefault(fstabPath), func(c string) (string, bool) { return RemoveFstabMountPoint(c, target) }); err != nil {
			return mounted, err
		}
	}
	return mounted, nil
}

func fstabOrDefault(p string) string {
	if p == "" {
		return DefaultFstab
	}
	return p
}

// mkdirTarget creates the mount point (and its parents); created tells
// whether the last element was made here.
func mkdirTarget(target string) (bool, error) {
	if err := os.Mkdir(target, 0o755); err == nil {
		return true, nil
	} else if os.IsExist(err) {
		return false, nil
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return false, fmt.Errorf("create mount point %s: %w", target, err)
	}
	return true, nil
}

// isLocalDir tells whether loc is an absolute path to a directory,
// without following it into a filesystem that might hang: the stat is
// given a second, through safefs.Do, whose limiter caps how many stats a
// hung location may keep stuck when requests are retried.
func isLocalDir(loc string) bool {
	if !filepath.IsAbs(loc) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ok, err := safefs.Do(ctx, "stat "+loc, func(context.Context) (bool, error) {
		st, err := os.Stat(loc)
		return err == nil && st.IsDir(), nil
	})
	return err == nil && ok
}

// Per mount point: a one-slot channel as a lock whose wait honours ctx,
// and how many commands for it outlived their deadline and still run.
var (
	pathMu sync.Mutex
	paths  = map[string]*pathState{}
)

type pathState struct {
	lock  chan struct{}
	users int // holders and waiters; the entry goes when 0 and not stuck
	stuck int
}

func lockPath(ctx context.Context, p string) (func(), error) {
	pathMu.Lock()
	st := paths[p]
	if st == nil {
		st = &pathState{lock: make(chan struct{}, 1)}
		paths[p] = st
	}
	if st.stuck > 0 {
		pathMu.Unlock()
		return nil, fmt.Errorf("%s: %w", p, ErrBusy)
	}
	st.users++
	pathMu.Unlock()
	done := func() {
		pathMu.Lock()
		st.users--
		if st.users == 0 && st.stuck == 0 {
			delete(paths, p)
		}
		pathMu.Unlock()
	}
	select {
	case st.lock <- struct{}{}:
		return func() { <-st.lock; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}

func markStuck(p string, delta int) {
	pathMu.Lock()
	defer pathMu.Unlock()
	st := paths[p]
	if st == nil {
		st = &pathState{lock: make(chan struct{}, 1)}
		paths[p] = st
	}
	st.stuck += delta
	if st.users == 0 && st.stuck == 0 {
		delete(paths, p)
	}
}

// killGrace is how long a killed command may take to exit before the
// caller is answered anyway.
const killGrace = 2 * time.Second

// run runs name with args under timeout in its own process group. The
// whole group is killed at the deadline (or when ctx ends); if the child
// still has not exited killGrace later (uninterruptible sleep), run
// returns ErrTimeout all the same and a goroutine waits for the child,
// with path marked stuck until then. out is ": <output>" for messages.
func run(ctx context.Context, o Options, path string, timeout time.Duration, name string, args ...string) (out string, err error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var buf bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = killGrace
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	format := func(err error) (string, error) {
		s := strings.TrimSpace(buf.String())
		if s != "" {
			s = ": " + s
		}
		return s, err
	}
	select {
	case err := <-done:
		return format(err)
	case <-cctx.Done():
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	timedOut := errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	reason := error(ErrTimeout)
	if !timedOut {
		reason = ctx.Err()
	}
	select {
	case <-done:
		return "", fmt.Errorf("%s: %w after %s", name, reason, timeout)
	case <-time.After(killGrace):
	}
	markStuck(path, 1)
	o.log().Error("command did not exit after SIGKILL; answering without it", "command", name, "mount_path", path)
	go func() {
		<-done
		markStuck(path, -1)
		o.log().Info("stuck command exited", "command", name, "mount_path", path)
	}()
	return "", fmt.Errorf("%s: %w after %s (the process does not exit)", name, reason, timeout)
}
