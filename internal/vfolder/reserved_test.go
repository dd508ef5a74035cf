package vfolder

import (
	"os"
	"path/filepath"
	"testing"
)

// The runner's entrypoint runs, as root and before it reads the root-only
// runner secret, whatever the container's /opt/container/bootstrap.sh,
// /bin/sh, its libraries (/lib, /usr/lib) and /etc/ld.so.preload say.
// Validate protects /opt/kernel because "a vfolder there would let the
// kernel's user put their own binary in its place", but in the default
// compat mode it accepts a vfolder (whose content the kernel user writes)
// over every one of those root-phase inputs, over an ancestor of the
// protected folders (/opt holds /opt/kernel and /opt/container; /home
// holds /home/work and /home/config, whose mount points Docker then
// creates inside the vfolder, following the user's links there), and a
// mount nested under another vfolder (Docker resolves the inner mount's
// destination through links the user planted in the outer vfolder).
func TestKernelPathsOverRootPhaseInputsRefused(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	compat := Policy{Mode: Compat, Deny: defaultDeny}
	for _, kp := range []string{
		"/opt/container", // bootstrap.sh, run by the entrypoint as root
		"/opt",           // ancestor of /opt/kernel and /opt/container
		"/home",          // ancestor of /home/work and /home/config
		"/etc",           // ld.so.preload, passwd/group read by SetupUser, sudoers
		"/bin",           // /bin/sh, run as root
		"/usr/bin",
		"/usr/lib",
		"/lib",
		"/usr/local/bin", // on RootPATH
	} {
		_, err := compat.Validate([]Request{{Name: "a", HostPath: filepath.Join(root, "a"), KernelPath: kp, Perm: "rw"}})
		if err == nil {
			t.Errorf("kernel path %s accepted: the vfolder's users choose what the entrypoint runs or reads as root", kp)
		}
	}
	_, err := compat.Validate([]Request{
		{Name: "a", HostPath: filepath.Join(root, "a"), KernelPath: "/home/work/a", Perm: "rw"},
		{Name: "b", HostPath: filepath.Join(root, "b"), KernelPath: "/home/work/a/b", Perm: "rw"},
	})
	if err == nil {
		t.Errorf("a mount nested in another vfolder accepted: Docker resolves /home/work/a/b through a link the user left in vfolder a (a/b -> /opt/container)")
	}
}

// What users mount their data on stays accepted.
func TestDataKernelPathsAccepted(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	compat := Policy{Mode: Compat, Deny: defaultDeny}
	if _, err := compat.Validate([]Request{
		{Name: "a", HostPath: filepath.Join(root, "a"), KernelPath: "/home/work/a", Perm: "rw"},
		{Name: "b", HostPath: filepath.Join(root, "b"), KernelPath: "/home/work/ab", Perm: "rw"},
	}); err != nil {
		t.Fatalf("siblings: %v", err)
	}
	for _, kp := range []string{"/models", "/data/x", "/opt/data", "/mnt/x", "rel", "/home/work/x/y"} {
		if _, err := compat.Validate([]Request{{Name: "a", HostPath: filepath.Join(root, "a"), KernelPath: kp, Perm: "rw"}}); err != nil {
			t.Errorf("%s: %v", kp, err)
		}
	}
}
