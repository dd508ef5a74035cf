package scratch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bai-agent/bai-agent/internal/fsutil"
	"github.com/bai-agent/bai-agent/internal/safefs"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// Types of scratch storage.
const (
	HostDir  = "hostdir"
	Memory   = "memory"
	HostFile = "hostfile"
)

// Manager creates and removes scratch directories.
type Manager struct {
	Root string
	Type string
	Size int64
	// UID/GID own work/ and its seed files when the agent runs as root and
	// the kernel runs as someone else (-1: leave as is).
	UID, GID int
}

// Dir is one kernel's scratch.
type Dir struct {
	Base   string // {root}/{kid}
	Config string
	Work   string
	Tmp    string // memory scratch only: {root}/{kid}_tmp
}

// Paths returns the paths of a kernel's scratch without touching disk.
func (m *Manager) Paths(kernelID string) Dir {
	base := filepath.Join(m.Root, kernelID)
	d := Dir{Base: base, Config: filepath.Join(base, "config"), Work: filepath.Join(base, "work")}
	if m.Type == Memory {
		d.Tmp = base + "_tmp"
	}
	return d
}

func (m *Manager) image(kernelID string) string { return filepath.Join(m.Root, kernelID+".img") }

// Check verifies the scratch root is usable and, for memory and hostfile,
// that the host can really mount what they need. It leaves nothing behind.
func (m *Manager) Check(ctx context.Context) error {
	if err := os.MkdirAll(m.Root, 0o700); err != nil {
		return fmt.Errorf("scratch-root %s: %w", m.Root, err)
	}
	// Nothing under the root is for other host users: config/ holds the
	// session's keys and environment, a memory scratch's _tmp is world-
	// writable for the kernel's /tmp. Containers reach their folders
	// through bind mounts, which need no search permission on the root.
	if os.Geteuid() == 0 {
		if err := os.Chmod(m.Root, 0o700); err != nil {
			return fmt.Errorf("scratch-root %s: %w", m.Root, err)
		}
	}
	probe := ".probe-" + uuid.NewString()
	switch m.Type {
	case HostDir:
		p := filepath.Join(m.Root, probe)
		if err := os.Mkdir(p, 0o755); err != nil {
			return fmt.Errorf("scratch-root %s is not writable: %w", m.Root, err)
		}
		return os.Remove(p)
	case Memory:
		p := filepath.Join(m.Root, probe)
		if err := os.Mkdir(p, 0o755); err != nil {
			return fmt.Errorf("scratch-root %s is not writable: %w", m.Root, err)
		}
		defer os.Remove(p)
		if err := unix.Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
			return fmt.Errorf("scratch-type memory needs tmpfs mounts, which failed: %w (is the agent root?)", err)
		}
		return unix.Unmount(p, 0)
	case HostFile:
		for _, bin := range []string{"mkfs.ext4", "mount", "umount"} {
			if _, err := exec.LookPath(bin); err != nil {
				return fmt.Errorf("scratch-type hostfile needs %s (e2fsprogs, mount): %w", bin, err)
			}
		}
		if _, err := os.Stat("/dev/loop-control"); err != nil {
			return fmt.Errorf("scratch-type hostfile needs loop devices, but /dev/loop-control is missing: %w", err)
		}
		p := filepath.Join(m.Root, probe)
		img := p + ".img"
		defer os.Remove(img)
		defer os.Remove(p)
		if err := os.Mkdir(p, 0o755); err != nil {
			return fmt.Errorf("scratch-root %s is not writable: %w", m.Root, err)
		}
		if err := m.makeFS(ctx, img, 8<<20); err != nil {
			return fmt.Errorf("scratch-type hostfile: %w", err)
		}
		if err := loopMount(ctx, img, p); err != nil {
			return fmt.Errorf("scratch-type hostfile: this host cannot loop-mount: %w", err)
		}
		return unmount(p)
	}
	return fmt.Errorf("unknown scratch-type %q", m.Type)
}

// Create makes the scratch of a kernel. On error everything created is
// removed again.
func (m *Manager) Create(ctx context.Context, kernelID string) (d Dir, err error) {
	if _, perr := uuid.Parse(kernelID); perr != nil {
		return Dir{}, fmt.Errorf("scratch: kernel id %q is not a UUID", kernelID)
	}
	d = m.Paths(kernelID)
	if _, serr := os.Lstat(d.Base); serr == nil {
		return Dir{}, fmt.Errorf("scratch %s already exists", d.Base)
	}
	defer func() {
		if err != nil {
			_ = m.Remove(context.WithoutCancel(ctx), kernelID)
		}
	}()
	if err = os.MkdirAll(d.Base, 0o755); err != nil {
		return d, fmt.Errorf("scratch %s: %w", d.Base, err)
	}
	switch m.Type {
	case Memory:
		opt := "size=" + strconv.FormatInt(m.Size, 10)
		if err = unix.Mount("tmpfs", d.Base, "tmpfs", 0, opt); err != nil {
			return d, fmt.Errorf("scratch %s: tmpfs: %w", d.Base, err)
		}
		if err = os.MkdirAll(d.Tmp, 0o1777); err != nil {
			return d, fmt.Errorf("scratch %s: %w", d.Tmp, err)
		}
		if err = unix.Mount("tmpfs", d.Tmp, "tmpfs", 0, opt); err != nil {
			return d, fmt.Errorf("scratch %s: tmpfs: %w", d.Tmp, err)
		}
		if err = os.Chmod(d.Tmp, 0o1777); err != nil {
			return d, err
		}
	case HostFile:
		if err = m.makeFS(ctx, m.image(kernelID), m.Size); err != nil {
			return d, fmt.Errorf("scratch %s: %w", d.Base, err)
		}
		if err = loopMount(ctx, m.image(kernelID), d.Base); err != nil {
			return d, fmt.Errorf("scratch %s: %w", d.Base, err)
		}
		// mkfs leaves lost+found, which users would see in /home/.. only;
		// the mount point itself must be traversable.
		if err = os.Chmod(d.Base, 0o755); err != nil {
			return d, err
		}
	}
	if err = os.MkdirAll(d.Config, 0o755); err != nil {
		return d, fmt.Errorf("scratch %s: %w", d.Config, err)
	}
	if err = os.MkdirAll(d.Work, 0o755); err != nil {
		return d, fmt.Errorf("scratch %s: %w", d.Work, err)
	}
	if m.UID >= 0 && os.Geteuid() == 0 {
		if err = os.Chown(d.Work, m.UID, m.GID); err != nil {
			return d, fmt.Errorf("scratch %s: chown: %w", d.Work, err)
		}
	}
	return d, nil
}

func (m *Manager) makeFS(ctx context.Context, img string, size int64) error {
	f, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", img, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("size %s: %w", img, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", img, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func loopMount(ctx context.Context, img, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mount", "-o", "loop", img, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount -o loop %s: %w: %s", img, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// unmount detaches a mount; "not mounted" is success.
func unmount(dir string) error {
	err := unix.Unmount(dir, 0)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.EBUSY) {
		// A process (a container still going away) holds it: detach now,
		// the kernel frees it when the last user leaves.
		return unix.Unmount(dir, unix.MNT_DETACH)
	}
	return fmt.Errorf("umount %s: %w", dir, err)
}

// mountedUnder lists mount points at or below dir (deepest first).
func mountedUnder(dir string) []string {
	all, err := fsutil.MountPoints()
	if err != nil {
		return nil
	}
	var out []string
	for _, mp := range all {
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.Reverse(out)
	return out
}

// Remove unmounts and deletes a kernel's scratch. Missing pieces are
// fine. It never follows a link out of the scratch (os.RemoveAll unlinks
// links, FIFOs and device nodes by name, and descends with
// O_NOFOLLOW|O_DIRECTORY) and it is bounded by ctx's deadline (30 s
// without one), so a mount that stopped answering costs the caller its
// deadline, not its goroutine.
func (m *Manager) Remove(ctx context.Context, kernelID string) error {
	if _, err := uuid.Parse(kernelID); err != nil {
		return fmt.Errorf("scratch: kernel id %q is not a UUID", kernelID)
	}
	// A clean-up finishes even when its caller gave up (an RPC that
	// ended); it is bounded by its own deadline instead.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), safefs.DefaultTimeout)
	defer cancel()
	_, err := safefs.Do(ctx, "remove scratch of "+kernelID, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, m.remove(kernelID)
	})
	return err
}

func (m *Manager) remove(kernelID string) error {
	d := m.Paths(kernelID)
	var errs []error
	for _, dir := range []string{d.Base, d.Base + "_tmp"} {
		abs, _ := filepath.Abs(dir)
		for _, mp := range mountedUnder(abs) {
			if err := unmount(mp); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, p := range []string{d.Base, d.Base + "_tmp"} {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(m.image(kernelID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// List returns the kernel ids that have scratch (a directory or an image
// file) under the root, for orphan clean-up after a crash.
func (m *Manager) List() ([]string, error) {
	ents, err := os.ReadDir(m.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range ents {
		name := strings.TrimSuffix(strings.TrimSuffix(e.Name(), ".img"), "_tmp")
		if _, err := uuid.Parse(name); err != nil || len(name) != 36 {
			continue
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out, nil
}

// BlockDevice returns the block device that holds dir, as a /dev path
// usable for I/O throttling: the loop device of a hostfile scratch, else
// the whole disk under the filesystem (throttling applies to disks, not
// partitions). "" when dir is not on a block device (tmpfs, overlay).
func BlockDevice(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	// A loop-mounted scratch: the mount source is the loop device.
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil {
		best := ""
		src := ""
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			mp := fsutil.UnescapeMount(f[1])
			if (abs == mp || strings.HasPrefix(abs, mp+"/")) && len(mp) > len(best) {
				best, src = mp, f[0]
			}
		}
		if strings.HasPrefix(src, "/dev/loop") {
			return src
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		return ""
	}
	maj, min := unix.Major(st.Dev), unix.Minor(st.Dev)
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", maj, min)
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		if target, err := filepath.EvalSymlinks(sys); err == nil {
			sys = filepath.Dir(target)
		}
	}
	b, err := os.ReadFile(filepath.Join(sys, "uevent"))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok {
			return "/dev/" + name
		}
	}
	return ""
}
