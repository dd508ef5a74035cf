package vfolder

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	for _, d := range []string{"data1", "data2"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := Policy{HostRoots: []string{root}, KernelRoots: []string{"/home/work", "/data"}}
	ok, err := p.Validate([]Request{
		{Name: "data1", HostPath: filepath.Join(root, "data1"), KernelPath: "/home/work/data1", Perm: "ro"},
		{Name: "data2", HostPath: filepath.Join(root, "data2"), KernelPath: "rel", Perm: "wd"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok[1].Target != "/home/work/rel" || ok[1].Perm != "wd" || ok[0].Perm != "ro" {
		t.Fatalf("got %+v", ok)
	}
	for _, tc := range []struct {
		name string
		r    Request
		want string
	}{
		{"relative host", Request{Name: "a", HostPath: "data1", KernelPath: "/home/work/a", Perm: "ro"}, "not absolute"},
		{"dotdot host", Request{Name: "a", HostPath: root + "/data1/../data2", KernelPath: "/home/work/a", Perm: "ro"}, "contains '..'"},
		{"outside root", Request{Name: "a", HostPath: outside, KernelPath: "/home/work/a", Perm: "ro"}, "outside the mount roots"},
		{"symlink escape", Request{Name: "a", HostPath: filepath.Join(root, "escape"), KernelPath: "/home/work/a", Perm: "ro"}, "outside the mount roots"},
		{"missing", Request{Name: "a", HostPath: filepath.Join(root, "nope"), KernelPath: "/home/work/a", Perm: "ro"}, "no such file"},
		{"not a dir", Request{Name: "a", HostPath: filepath.Join(root, "file"), KernelPath: "/home/work/a", Perm: "ro"}, "not a directory"},
		{"kernel outside", Request{Name: "a", HostPath: filepath.Join(root, "data1"), KernelPath: "/etc/passwd", Perm: "ro"}, "outside the allowed roots"},
		{"kernel dotdot", Request{Name: "a", HostPath: filepath.Join(root, "data1"), KernelPath: "/home/work/../../etc", Perm: "ro"}, "contains '..'"},
		{"shadow work", Request{Name: "a", HostPath: filepath.Join(root, "data1"), KernelPath: "/home/work", Perm: "ro"}, "hide the kernel's own"},
		{"bad perm", Request{Name: "a", HostPath: filepath.Join(root, "data1"), KernelPath: "/home/work/a", Perm: "xx"}, "permission"},
		{"colon", Request{Name: "a", HostPath: filepath.Join(root, "data1"), KernelPath: "/home/work/a:b", Perm: "ro"}, "contains ':'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Validate([]Request{tc.r})
			if !errors.Is(err, ErrInvalidMount) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := p.Validate([]Request{
		{Name: "a", HostPath: filepath.Join(root, "data1"), KernelPath: "/data/x", Perm: "ro"},
		{Name: "b", HostPath: filepath.Join(root, "data2"), KernelPath: "/data/x", Perm: "ro"},
	}); err == nil || !strings.Contains(err.Error(), "also used") {
		t.Fatalf("duplicate target: %v", err)
	}
	if _, err := (Policy{KernelRoots: []string{"/home/work"}}).Validate([]Request{{Name: "a", HostPath: filepath.Join(root, "data1"), KernelPath: "/home/work/a", Perm: "ro"}}); err == nil {
		t.Fatal("mount accepted without roots")
	}
}
