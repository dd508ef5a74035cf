package scratch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
