package fsutil

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/mnt/plain`: "/mnt/plain", `/mnt/my\040vol`: "/mnt/my vol", `/a\011b\012c`: "/a\tb\nc", `/back\134slash`: `/back\slash`,
	} {
		if got := UnescapeMount(in); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

func TestMountPointsHasRoot(t *testing.T) {
	mps, err := MountPoints()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(mps, "/") || !slices.Contains(mps, "/proc") {
		t.Fatalf("no / or /proc in %v", mps)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, body := range []string{"one", "two"} {
		if err := WriteFileAtomic(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != body {
			t.Fatalf("content %q", b)
		}
	}
	st, _ := os.Stat(p)
	ents, _ := os.ReadDir(dir)
	if st.Mode().Perm() != 0o600 || len(ents) != 1 {
		t.Fatalf("mode %v, files %v", st.Mode(), ents)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("write into a missing folder succeeded")
	}
}
