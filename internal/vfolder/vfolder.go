package vfolder

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/bai-agent/bai-agent/internal/resource"
)

// ErrInvalidMount is wrapped by every validation error.
var ErrInvalidMount = errors.New("invalid vfolder mount")

// Request is one entry of the creation config's mounts list.
type Request struct {
	Name       string
	HostPath   string
	KernelPath string
	Perm       string // ro, rw, wd (rw-delete)
}

// Mount policies.
const (
	// Compat mounts what the manager sends, as the Python agent does: the
	// manager is authenticated (CURVE) and owns the vfolder layout, so
	// any existing host path and any absolute kernel path are accepted,
	// except what can never be right (see Validate) and the deny list.
	Compat = "compat"
	// Strict additionally confines host paths to HostRoots and kernel
	// paths to KernelRoots.
	Strict = "strict"
)

// Policy says where mounts may come from and go to.
type Policy struct {
	// Mode is Compat ("" too) or Strict.
	Mode string
	// HostRoots are the directories vfolders may live under (Strict).
	HostRoots []string
	// KernelRoots are the in-container directories mounts may go under
	// (Strict).
	KernelRoots []string
	// Deny are host paths never mounted: "/" itself, and each other entry
	// with everything below it. Symlinks are resolved on both sides.
	Deny []string
}

const (
	workDir   = "/home/work"
	configDir = "/home/config"
	// runnerDir holds the agent's runner, bind-mounted read-only: a
	// vfolder there would let the kernel's user put their own binary in
	// its place at the next restart.
	runnerDir = "/opt/kernel"
	// bootstrapDir holds the image's bootstrap.sh, which the runner's
	// entrypoint runs as root.
	bootstrapDir = "/opt/container"
	// LogsVFolder is the one vfolder mounted under prevent_vfolder_mounts.
	LogsVFolder = ".logs"
)

// reservedKernelPaths are folders a vfolder (content its users write)
// never goes on or under, whatever the policy: what the runner's
// entrypoint runs or reads as root (the runner, the image's bootstrap,
// /bin/sh and its libraries, /etc with passwd, group, sudoers and
// ld.so.preload), the kernel's own folders, and the kernel's system
// folders.
var reservedKernelPaths = []string{
	runnerDir, bootstrapDir, configDir,
	"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc",
	"/root", "/proc", "/sys", "/dev", "/run", "/var", "/boot",
}

// protectedKernelPaths may not be hidden by a mount on one of their
// ancestors either (/opt, /home, /): Docker would create their mount
// points inside the vfolder, through links its users left there.
var protectedKernelPaths = []string{runnerDir, bootstrapDir, configDir, workDir}

// reservedReason says why a kernel path is refused, or "".
func reservedReason(kp string) string {
	if kp == "/" || kp == workDir {
		return "it would hide the kernel's own " + kp
	}
	for _, r := range reservedKernelPaths {
		if within(kp, r) {
			return "it is on or under " + r + ", which the kernel's runner or system uses"
		}
	}
	for _, p := range protectedKernelPaths {
		if within(p, kp) {
			return "it would hide the kernel's own " + p
		}
	}
	return ""
}

func fail(r Request, format string, args ...any) error {
	return fmt.Errorf("%w %q: %s", ErrInvalidMount, r.Name, fmt.Sprintf(format, args...))
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// Validate checks every request and returns the mounts to apply, or the
// first error. Nothing on disk is changed. Whatever the mode it refuses
// relative host paths, ".." components, paths with ':', ',' or newlines,
// missing host paths, denied host paths, kernel paths that would hide
// /home/work or /home/config, and two mounts on one kernel path.
func (p Policy) Validate(reqs []Request) ([]resource.Mount, error) {
	var out []resource.Mount
	seen := map[string]string{}
	for _, r := range reqs {
		m, err := p.validateOne(r)
		if err != nil {
			return nil, err
		}
		if other, dup := seen[m.Target]; dup {
			return nil, fail(r, "kernel path %s is also used by %q", m.Target, other)
		}
		// Docker creates an inner mount's point inside the outer vfolder,
		// resolving links its users left there (a/b -> /opt/container).
		for t, other := range seen {
			if within(m.Target, t) || within(t, m.Target) {
				return nil, fail(r, "kernel path %s is nested with %s of %q; nested vfolder mounts are refused", m.Target, t, other)
			}
		}
		seen[m.Target] = r.Name
		out = append(out, m)
	}
	return out, nil
}

// Filter applies prevent_vfolder_mounts: only the .logs vfolder stays.
func Filter(reqs []Request, prevent bool) []Request {
	if !prevent {
		return reqs
	}
	var out []Request
	for _, r := range reqs {
		if r.Name == LogsVFolder {
			out = append(out, r)
		}
	}
	return out
}

func within(p, root string) bool {
	return p == root || strings.HasPrefix(p, strings.TrimSuffix(root, "/")+"/")
}

func resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

func (p Policy) validateOne(r Request) (resource.Mount, error) {
	perm := resource.MountPerm(r.Perm)
	switch r.Perm {
	case "ro", "rw", "wd":
	case "rw-delete":
		perm = resource.PermWD
	default:
		return resource.Mount{}, fail(r, "permission %q is not ro, rw or wd", r.Perm)
	}
	if r.HostPath == "" || !filepath.IsAbs(r.HostPath) {
		return resource.Mount{}, fail(r, "host path %q is not absolute", r.HostPath)
	}
	if strings.IndexByte(r.HostPath, 0) >= 0 || strings.IndexByte(r.KernelPath, 0) >= 0 {
		return resource.Mount{}, fail(r, "a path has a NUL byte")
	}
	if hasDotDot(r.HostPath) {
		return resource.Mount{}, fail(r, "host path %q contains '..'", r.HostPath)
	}
	if strings.ContainsAny(r.HostPath, ":,\n") {
		return resource.Mount{}, fail(r, "host path %q contains ':', ',' or a newline", r.HostPath)
	}
	real, err := filepath.EvalSymlinks(r.HostPath)
	if err != nil {
		return resource.Mount{}, fail(r, "host path %q: %v", r.HostPath, err)
	}
	if _, err := os.Stat(real); err != nil {
		return resource.Mount{}, fail(r, "host path %q: %v", r.HostPath, err)
	}
	for _, d := range p.Deny {
		dr := resolve(d)
		if real == dr || (dr != "/" && within(real, dr)) {
			return resource.Mount{}, fail(r, "host path %q (resolved %q) is denied by container.vfolder-deny-paths (%s)", r.HostPath, real, d)
		}
		// A folder holding a denied path exposes it too: /run holds
		// /run/docker.sock.
		if dr != "/" && within(dr, real) {
			return resource.Mount{}, fail(r, "host path %q (resolved %q) holds %s, denied by container.vfolder-deny-paths", r.HostPath, real, d)
		}
	}
	if p.Mode == Strict {
		if len(p.HostRoots) == 0 {
			return resource.Mount{}, fail(r, "no vfolder mount root is configured ([agent] mount-path) and container.vfolder-mount-policy is strict")
		}
		inside := false
		for _, root := range p.HostRoots {
			if rr, err := filepath.EvalSymlinks(root); err == nil && within(real, rr) {
				inside = true
				break
			}
		}
		if !inside {
			return resource.Mount{}, fail(r, "host path %q (resolved %q) is outside the mount roots %v (container.vfolder-mount-policy is strict)", r.HostPath, real, p.HostRoots)
		}
	}
	kp := r.KernelPath
	if kp == "" {
		kp = r.Name
	}
	if hasDotDot(kp) {
		return resource.Mount{}, fail(r, "kernel path %q contains '..'", r.KernelPath)
	}
	if strings.ContainsAny(kp, ":,\n") {
		return resource.Mount{}, fail(r, "kernel path %q contains ':', ',' or a newline", kp)
	}
	if !path.IsAbs(kp) {
		kp = path.Join(workDir, kp)
	}
	kp = path.Clean(kp)
	if why := reservedReason(kp); why != "" {
		return resource.Mount{}, fail(r, "kernel path %q is refused: %s", kp, why)
	}
	if p.Mode == Strict {
		ok := false
		for _, root := range p.KernelRoots {
			if kp != root && within(kp, root) {
				ok = true
				break
			}
		}
		if !ok {
			return resource.Mount{}, fail(r, "kernel path %q is outside the allowed roots %v (container.vfolder-mount-policy is strict)", kp, p.KernelRoots)
		}
	}
	return resource.Mount{Source: real, Target: kp, Perm: perm}, nil
}
