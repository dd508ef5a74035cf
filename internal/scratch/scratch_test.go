package scratch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

func TestHostDirLifecycle(t *testing.T) {
	m := &Manager{Root: t.TempDir(), Type: HostDir, UID: -1, GID: -1}
	ctx := context.Background()
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	d, err := m.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d.Config, d.Work} {
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			t.Fatalf("%s: %v", p, err)
		}
	}
	if _, err := m.Create(ctx, id); err == nil {
		t.Fatal("second create of the same kernel succeeded")
	}
	ids, _ := m.List()
	if len(ids) != 1 || ids[0] != id {
		t.Fatalf("list %v", ids)
	}
	if err := m.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.Base); !os.IsNotExist(err) {
		t.Fatalf("scratch still there: %v", err)
	}
	if err := m.Remove(ctx, id); err != nil {
		t.Fatalf("remove is not idempotent: %v", err)
	}
	if _, err := m.Create(ctx, "../../etc"); err == nil {
		t.Fatal("non-UUID kernel id accepted")
	}
}

func TestMemoryAndHostFile(t *testing.T) {
	testutil.RequireRoot(t)
	for _, typ := range []string{Memory, HostFile} {
		t.Run(typ, func(t *testing.T) {
			m := &Manager{Root: t.TempDir(), Type: typ, Size: 16 << 20, UID: -1, GID: -1}
			ctx := context.Background()
			if err := m.Check(ctx); err != nil {
				t.Fatal(err)
			}
			id := uuid.NewString()
			d, err := m.Create(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			abs, _ := filepath.Abs(d.Base)
			if len(mountedUnder(abs)) == 0 {
				t.Fatal("scratch not mounted")
			}
			// Writing past the size must fail with ENOSPC.
			f, err := os.Create(filepath.Join(d.Work, "big"))
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			var werr error
			for i := 0; i < 64 && werr == nil; i++ {
				_, werr = f.Write(buf)
			}
			f.Close()
			if werr == nil || !strings.Contains(werr.Error(), "no space left") {
				t.Fatalf("quota not enforced: %v", werr)
			}
			if err := m.Remove(ctx, id); err != nil {
				t.Fatal(err)
			}
			if len(mountedUnder(abs)) != 0 {
				t.Fatal("mount left behind")
			}
			ents, _ := os.ReadDir(m.Root)
			if len(ents) != 0 {
				t.Fatalf("left behind: %v", ents)
			}
		})
	}
}

// What a kernel leaves in its work folder (links to host folders, a FIFO,
// a device node, a deep tree) is removed by name: nothing outside the
// scratch is touched, nothing blocks.
func TestRemoveNeverLeavesScratch(t *testing.T) {
	base := t.TempDir()
	m := &Manager{Root: filepath.Join(base, "scratches"), Type: HostDir, UID: -1, GID: -1}
	ctx := context.Background()
	if err := m.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(m.Root); os.Geteuid() == 0 && st.Mode().Perm() != 0o700 {
		t.Fatalf("scratch root mode %v, want 0700", st.Mode().Perm())
	}
	host := filepath.Join(base, "host")
	if err := os.MkdirAll(filepath.Join(host, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(host, "keep", "file"), []byte("host"), 0o644)
	id := uuid.NewString()
	d, err := m.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"todir": host, "tofile": filepath.Join(host, "keep", "file"), "toroot": "/"} {
		if err := os.Symlink(target, filepath.Join(d.Work, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(d.Work, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Mknod(filepath.Join(d.Work, "dev"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(d.Work, strings.Repeat("deep/", 200)), 0o755); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Remove(ctx, id) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Remove blocked")
	}
	if _, err := os.Lstat(d.Base); !os.IsNotExist(err) {
		t.Fatalf("scratch left: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(host, "keep", "file")); err != nil || string(b) != "host" {
		t.Fatalf("host file: %q %v", b, err)
	}
}
