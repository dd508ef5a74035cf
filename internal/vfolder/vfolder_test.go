package vfolder

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var defaultDeny = []string{"/", "/etc", "/proc", "/sys", "/dev", "/var/run/docker.sock", "/run/docker.sock"}

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
	if err := os.Symlink("/etc", filepath.Join(root, "etclink")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	strict := Policy{Mode: Strict, HostRoots: []string{root}, KernelRoots: []string{"/home/work", "/data"}, Deny: defaultDeny}
	compat := Policy{Mode: Compat, Deny: defaultDeny}
	ok, err := strict.Validate([]Request{
		{Name: "data1", HostPath: filepath.Join(root, "data1"), KernelPath: "/home/work/data1", Perm: "ro"},
		{Name: "data2", HostPath: filepath.Join(root, "data2"), KernelPath: "rel", Perm: "wd"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok[1].Target != "/home/work/rel" || ok[1].Perm != "wd" || ok[0].Perm != "ro" {
		t.Fatalf("got %+v", ok)
	}
	data1 := filepath.Join(root, "data1")
	for _, tc := range []struct {
		name   string
		policy Policy
		r      Request
		want   string // "" accepts
	}{
		// Refused whatever the mode.
		{"relative host", compat, Request{Name: "a", HostPath: "data1", KernelPath: "/home/work/a", Perm: "ro"}, "not absolute"},
		{"dotdot host", compat, Request{Name: "a", HostPath: root + "/data1/../data2", KernelPath: "/home/work/a", Perm: "ro"}, "contains '..'"},
		{"missing", compat, Request{Name: "a", HostPath: filepath.Join(root, "nope"), KernelPath: "/home/work/a", Perm: "ro"}, "no such file"},
		{"kernel dotdot", compat, Request{Name: "a", HostPath: data1, KernelPath: "/home/work/../../etc", Perm: "ro"}, "contains '..'"},
		{"shadow work", compat, Request{Name: "a", HostPath: data1, KernelPath: "/home/work", Perm: "ro"}, "is refused"},
		{"shadow config", compat, Request{Name: "a", HostPath: data1, KernelPath: "/home/config", Perm: "ro"}, "is refused"},
		{"under config", compat, Request{Name: "a", HostPath: data1, KernelPath: "/home/config/x", Perm: "ro"}, "is refused"},
		{"shadow runner", compat, Request{Name: "a", HostPath: data1, KernelPath: "/opt/kernel", Perm: "ro"}, "is refused"},
		{"over runner binary", compat, Request{Name: "a", HostPath: data1, KernelPath: "/opt/kernel/bai-krunner", Perm: "ro"}, "is refused"},
		{"NUL in host path", compat, Request{Name: "a", HostPath: data1 + "\x00x", KernelPath: "/home/work/a", Perm: "ro"}, "NUL"},
		{"kernel root", compat, Request{Name: "a", HostPath: data1, KernelPath: "/", Perm: "ro"}, "is refused"},
		{"holds a denied path", Policy{Mode: Compat, Deny: []string{filepath.Join(data1, "sub", "docker.sock")}}, Request{Name: "a", HostPath: root, KernelPath: "/home/work/a", Perm: "ro"}, "holds"},
		{"bad perm", compat, Request{Name: "a", HostPath: data1, KernelPath: "/home/work/a", Perm: "xx"}, "permission"},
		{"colon", compat, Request{Name: "a", HostPath: data1, KernelPath: "/home/work/a:b", Perm: "ro"}, "contains ':'"},
		{"deny root", compat, Request{Name: "a", HostPath: "/", KernelPath: "/mnt/host", Perm: "ro"}, "vfolder-deny-paths"},
		{"deny etc", compat, Request{Name: "a", HostPath: "/etc", KernelPath: "/mnt/etc", Perm: "ro"}, "vfolder-deny-paths"},
		{"deny under proc", compat, Request{Name: "a", HostPath: "/proc/self", KernelPath: "/mnt/p", Perm: "ro"}, "vfolder-deny-paths"},
		{"deny through symlink", compat, Request{Name: "a", HostPath: filepath.Join(root, "etclink"), KernelPath: "/mnt/e", Perm: "ro"}, "vfolder-deny-paths"},
		{"deny in strict too", strict, Request{Name: "a", HostPath: "/etc", KernelPath: "/data/e", Perm: "ro"}, "vfolder-deny-paths"},
		// Compat accepts what the manager sends.
		{"compat outside roots", compat, Request{Name: "a", HostPath: outside, KernelPath: "/home/work/a", Perm: "ro"}, ""},
		{"compat models", compat, Request{Name: "model", HostPath: data1, KernelPath: "/models", Perm: "ro"}, ""},
		{"compat any absolute", compat, Request{Name: "a", HostPath: data1, KernelPath: "/opt/data", Perm: "rw"}, ""},
		{"compat a file", compat, Request{Name: "a", HostPath: filepath.Join(root, "file"), KernelPath: "/home/work/f", Perm: "ro"}, ""},
		{"compat no mount-path", Policy{Deny: defaultDeny}, Request{Name: "a", HostPath: data1, KernelPath: "/home/work/a", Perm: "ro"}, ""},
		// Strict confines both sides.
		{"strict outside root", strict, Request{Name: "a", HostPath: outside, KernelPath: "/home/work/a", Perm: "ro"}, "outside the mount roots"},
		{"strict symlink escape", strict, Request{Name: "a", HostPath: filepath.Join(root, "escape"), KernelPath: "/home/work/a", Perm: "ro"}, "outside the mount roots"},
		{"strict kernel outside", strict, Request{Name: "a", HostPath: data1, KernelPath: "/models", Perm: "ro"}, "outside the allowed roots"},
		{"strict no roots", Policy{Mode: Strict, KernelRoots: []string{"/home/work"}}, Request{Name: "a", HostPath: data1, KernelPath: "/home/work/a", Perm: "ro"}, "no vfolder mount root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.policy.Validate([]Request{tc.r})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidMount) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := compat.Validate([]Request{
		{Name: "a", HostPath: data1, KernelPath: "/data/x", Perm: "ro"},
		{Name: "b", HostPath: filepath.Join(root, "data2"), KernelPath: "/data/x", Perm: "ro"},
	}); err == nil || !strings.Contains(err.Error(), "also used") {
		t.Fatalf("duplicate target: %v", err)
	}
}

func TestFilterPreventVFolderMounts(t *testing.T) {
	reqs := []Request{{Name: "data"}, {Name: LogsVFolder}, {Name: "home"}}
	if got := Filter(reqs, false); len(got) != 3 {
		t.Fatalf("without prevent: %v", got)
	}
	if got := Filter(reqs, true); len(got) != 1 || got[0].Name != LogsVFolder {
		t.Fatalf("with prevent: %v", got)
	}
}
