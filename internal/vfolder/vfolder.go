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

// Policy says where mounts may come from and go to.
type Policy struct {
	// HostRoots are the directories vfolders may live under.
	HostRoots []string
	// KernelRoots are the in-container directories mounts may go under.
	KernelRoots []string
}

const workDir = "/home/work"

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
// first error. Nothing on disk is changed.
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
		seen[m.Target] = r.Name
		out = append(out, m)
	}
	return out, nil
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
	if hasDotDot(r.HostPath) {
		return resource.Mount{}, fail(r, "host path %q contains '..'", r.HostPath)
	}
	if strings.ContainsAny(r.HostPath, ":,\n") {
		return resource.Mount{}, fail(r, "host path %q contains ':', ',' or a newline", r.HostPath)
	}
	if len(p.HostRoots) == 0 {
		return resource.Mount{}, fail(r, "no vfolder mount root is configured ([agent] mount-path)")
	}
	real, err := filepath.EvalSymlinks(r.HostPath)
	if err != nil {
		return resource.Mount{}, fail(r, "host path %q: %v", r.HostPath, err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return resource.Mount{}, fail(r, "host path %q: %v", r.HostPath, err)
	}
	if !st.IsDir() {
		return resource.Mount{}, fail(r, "host path %q is not a directory", r.HostPath)
	}
	inside := false
	for _, root := range p.HostRoots {
		rr, err := filepath.EvalSymlinks(root)
		if err != nil {
			continue
		}
		if real == rr || strings.HasPrefix(real, rr+string(os.PathSeparator)) {
			inside = true
			break
		}
	}
	if !inside {
		return resource.Mount{}, fail(r, "host path %q (resolved %q) is outside the mount roots %v", r.HostPath, real, p.HostRoots)
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
	if kp == workDir || kp == "/home/config" || strings.HasPrefix(kp, "/home/config/") {
		return resource.Mount{}, fail(r, "kernel path %q would hide the kernel's own %s", kp, kp)
	}
	ok := false
	for _, root := range p.KernelRoots {
		if kp != root && strings.HasPrefix(kp, root+"/") {
			ok = true
			break
		}
	}
	if !ok {
		return resource.Mount{}, fail(r, "kernel path %q is outside the allowed roots %v", kp, p.KernelRoots)
	}
	return resource.Mount{Source: real, Target: kp, Perm: perm}, nil
}
