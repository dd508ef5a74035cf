package krunner

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// The root phase sees a fixed PATH and HOME and only the allowlisted
// variables: nothing of the request that chooses a program or what it
// loads.
func TestRootEnv(t *testing.T) {
	kernel := []string{
		"PATH=/home/work/bin:/usr/bin", "HOME=/home/work", "LD_LIBRARY_PATH=/home/work/lib", "LD_AUDIT=/x.so",
		"BASH_ENV=/home/work/.b", "ENV=/home/work/.e", "IFS=/", "SHELLOPTS=xtrace", "PS4=$(id)", "BASH_FUNC_env%%=() { id; }",
		"PYTHONPATH=/home/work", "PYTHONSTARTUP=/x", "PERL5OPT=-Mx", "RUBYOPT=-rx", "NODE_OPTIONS=--require x",
		"GCONV_PATH=/home/work", "LOCPATH=/home/work", "NLSPATH=/x", "HOSTALIASES=/x", "RES_OPTIONS=debug",
		"TMPDIR=/home/work", "GLIBC_TUNABLES=x", "CUDA_INJECTION64_PATH=/x.so", "OMP_TOOL_LIBRARIES=/x.so",
		"LANG=C.UTF-8", "LC_ALL=/home/work/loc", "TZ=Asia/Seoul", "TERM=xterm-256color",
		"LOCAL_USER_ID=1000", "LOCAL_GROUP_ID=1000", "ADDITIONAL_GIDS=5", "SUDO_SESSION_ENABLED=1",
		"BACKENDAI_KERNEL_ID=k1", "HELLO=world",
	}
	none := func(string) bool { return false }
	got := RootEnv(kernel, none)
	want := []string{"PATH=" + RootPATH, "HOME=/root", "LANG=C.UTF-8", "TERM=xterm-256color",
		"LOCAL_USER_ID=1000", "LOCAL_GROUP_ID=1000", "ADDITIONAL_GIDS=5", "SUDO_SESSION_ENABLED=1", "BACKENDAI_KERNEL_ID=k1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("RootEnv:\n got %q\nwant %q", got, want)
	}
	// An image's conda folders (root's, nobody else writes them) stay for
	// its bootstrap, ahead of the system's; folders the kernel user
	// writes go, whoever set them (the image's ENV of a committed session
	// holds that session's request).
	safe := func(d string) bool { return d == "/opt/conda/bin" || d == "/opt/conda/lib" || d == "/usr/bin" }
	image := []string{"PATH=/opt/conda/bin:/home/work/bin:/usr/bin", "LD_LIBRARY_PATH=/home/work/lib:/opt/conda/lib", "PYTHONPATH=/opt/conda/x"}
	got = RootEnv(image, safe)
	wantPath := "PATH=/opt/conda/bin:/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:/bin"
	if want := []string{wantPath, "HOME=/root", "LD_LIBRARY_PATH=/opt/conda/lib"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("image folders:\n got %q\nwant %q", got, want)
	}
}

// SafeRootDir accepts the system's folders and refuses what other users
// can write, or a link through such a folder.
func TestSafeRootDir(t *testing.T) {
	testutil.RequireRoot(t) // to make root-owned folders
	for _, d := range []string{"/usr/bin", "/bin", "/usr/local/bin"} {
		if st, err := os.Stat(d); err == nil && st.IsDir() && !SafeRootDir(d) {
			t.Errorf("%s refused", d)
		}
	}
	base := t.TempDir() // under /tmp: refused by its tree already
	if SafeRootDir(base) {
		t.Errorf("%s accepted", base)
	}
	for _, d := range []string{"/home/work/bin", "relative", "/usr/../tmp", "/nonexistent-dir", "/tmp"} {
		if SafeRootDir(d) {
			t.Errorf("%s accepted", d)
		}
	}
	// A root-owned folder others can write, outside the refused trees.
	w, err := os.MkdirTemp("/var/lib", "bai-saferoot-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(w)
	if err := os.Chmod(w, 0o777); err != nil {
		t.Fatal(err)
	}
	if SafeRootDir(w) {
		t.Errorf("%s (mode 0777) accepted", w)
	}
	_ = os.Chmod(w, 0o755)
	if !SafeRootDir(w) {
		t.Errorf("%s (root's, 0755) refused", w)
	}
	sub := filepath.Join(w, "bin")
	_ = os.Mkdir(sub, 0o755)
	_ = os.Chown(sub, 1234, 1234)
	if SafeRootDir(sub) {
		t.Errorf("%s (owned by 1234) accepted", sub)
	}
}

// What the bootstrap exports lands on the kernel's environment: new and
// changed variables, unsets; an extended PATH or withheld list gets the
// kernel's own value where the bootstrap expanded its own.
func TestMergeBootstrapEnv(t *testing.T) {
	kernel := []string{"PATH=/home/work/bin:/usr/bin", "HOME=/home/work", "LD_LIBRARY_PATH=/usr/local/cuda/lib64",
		"PYTHONPATH=/srv", "HELLO=world", "LANG=C.UTF-8", "BACKENDAI_X=1", "TERM=xterm"}
	root := RootEnv(kernel, func(string) bool { return false })
	after := []string{
		"PATH=/opt/conda/bin:" + RootPATH, // export PATH=/opt/conda/bin:$PATH
		"HOME=/root",                      // untouched
		"LD_LIBRARY_PATH=/opt/lib:",       // export LD_LIBRARY_PATH=/opt/lib:$LD_LIBRARY_PATH (withheld)
		"PYTHONPATH=/img",                 // replaced
		"FROM_BOOTSTRAP=yes",              // new
		"LANG=C.UTF-8",                    // untouched
		"BACKENDAI_X=2",                   // changed
		"PWD=/", "SHLVL=1", "_=/usr/bin/env",
		// TERM unset by the bootstrap
	}
	got := MergeBootstrapEnv(kernel, root, after)
	want := []string{"PATH=/opt/conda/bin:/home/work/bin:/usr/bin", "HOME=/home/work", "LD_LIBRARY_PATH=/opt/lib:/usr/local/cuda/lib64",
		"PYTHONPATH=/img", "HELLO=world", "LANG=C.UTF-8", "BACKENDAI_X=2", "FROM_BOOTSTRAP=yes"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("merged:\n got %q\nwant %q", got, want)
	}
	// A bootstrap that exports nothing leaves the kernel's environment.
	if got := MergeBootstrapEnv(kernel, root, root); !reflect.DeepEqual(got, kernel) {
		t.Fatalf("no exports:\n got %q\nwant %q", got, kernel)
	}
	// PATH replaced outright stays the bootstrap's.
	got = MergeBootstrapEnv(kernel, root, append(slices.Clone(root[1:]), "PATH=/opt/bin:/bin"))
	if !slices.Contains(got, "PATH=/opt/bin:/bin") {
		t.Fatalf("replaced PATH: %q", got)
	}
}

func TestSpliceList(t *testing.T) {
	for _, c := range []struct {
		v, seen string
		set     bool
		kernel  string
		want    string
	}{
		{"/a:/r1:/r2", "/r1:/r2", true, "/k", "/a:/k"},
		{"/r1:/r2:/b", "/r1:/r2", true, "/k1:/k2", "/k1:/k2:/b"},
		{"/a:/b", "/r1", true, "/k", "/a:/b"},
		{"/a:", "", false, "/k", "/a:/k"},
		{":/a", "", false, "/k", "/k:/a"},
		{"/a", "", false, "/k", "/a"},
		{"", "", false, "/k", "/k"},
	} {
		if got := spliceList(c.v, c.seen, c.set, c.kernel); got != c.want {
			t.Errorf("spliceList(%q, %q, %v, %q) = %q, want %q", c.v, c.seen, c.set, c.kernel, got, c.want)
		}
	}
}

func TestHasProgram(t *testing.T) {
	d := t.TempDir()
	_ = os.WriteFile(filepath.Join(d, "tool"), []byte("#!/bin/sh\n"), 0o755)
	_ = os.WriteFile(filepath.Join(d, "data"), nil, 0o644)
	_ = os.Mkdir(filepath.Join(d, "dir"), 0o755)
	path := strings.Join([]string{"relative", "/nonexistent", d}, ":")
	if !HasProgram("tool", path) || HasProgram("data", path) || HasProgram("dir", path) || HasProgram("tool", "relative:/nonexistent") {
		t.Fatal("HasProgram")
	}
}
