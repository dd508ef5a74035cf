package safefs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// modes runs a test with openat2 and with the O_NOFOLLOW walk.
func modes(t *testing.T, fn func(t *testing.T)) {
	for _, walk := range []bool{false, true} {
		name := "openat2"
		if walk {
			name = "walk"
		}
		t.Run(name, func(t *testing.T) {
			forceWalk.Store(walk)
			t.Cleanup(func() { forceWalk.Store(false) })
			fn(t)
		})
	}
}

// planted builds a kernel's folder as an attacker leaves it, beside a
// host folder ("outside") that must never be touched.
func planted(t *testing.T) (root *Root, dir, outside string) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "work")
	outside = filepath.Join(base, "host")
	for _, d := range []string{dir, outside, filepath.Join(dir, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "plain"), []byte("hello"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "sub", "inner"), []byte("inner"), 0o644))
	must(os.Symlink(outside, filepath.Join(dir, "linkdir")))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "linkfile")))
	must(os.Symlink("plain", filepath.Join(dir, "innerlink")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	if os.Geteuid() == 0 {
		// /dev/null's numbers: opening it would be harmless, but the
		// point is that nothing here is opened at all.
		must(unix.Mknod(filepath.Join(dir, "chardev"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	}
	r, err := OpenRoot(dir)
	must(err)
	t.Cleanup(func() { r.Close() })
	return r, dir, outside
}

func TestReadFileRefuses(t *testing.T) {
	modes(t, func(t *testing.T) {
		r, _, _ := planted(t)
		for _, tc := range []struct {
			rel  string
			want error
		}{
			{"plain", nil},
			{"sub/inner", nil},
			{"./sub//inner", nil},
			{"linkfile", ErrNotRegular},
			{"innerlink", ErrNotRegular},
			{"linkdir/secret", ErrSymlink},
			{"../host/secret", ErrEscape},
			{"sub/../../host/secret", ErrEscape},
			{"/etc/passwd", ErrEscape},
			{"fifo", ErrNotRegular},
			{"sub", ErrIsDir},
			{"missing", os.ErrNotExist},
		} {
			_, err := Do(context.Background(), "read", func(ctx context.Context) ([]byte, error) { return r.ReadFile(tc.rel, 1<<20) })
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("ReadFile(%q) = %v, want %v", tc.rel, err, tc.want)
			}
		}
		if os.Geteuid() == 0 {
			if _, err := r.ReadFile("chardev", 10); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "character device") {
				t.Errorf("ReadFile(chardev) = %v", err)
			}
		}
	})
}

func TestReadFileLimit(t *testing.T) {
	r, dir, _ := planted(t)
	big := filepath.Join(dir, "sparse")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(100 << 30); err != nil { // 100 GiB, no blocks
		t.Fatal(err)
	}
	f.Close()
	if _, err := r.ReadFile("sparse", 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("100 GiB sparse file: %v", err)
	}
	// Exactly at the limit is fine; one byte more is not.
	os.WriteFile(filepath.Join(dir, "exact"), bytes.Repeat([]byte("x"), 1024), 0o644)
	if b, err := r.ReadFile("exact", 1024); err != nil || len(b) != 1024 {
		t.Fatalf("exact: %d %v", len(b), err)
	}
	if _, err := r.ReadFile("exact", 1023); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over: %v", err)
	}
}

// A file that grows after the size check is still cut at limit+1: the
// /proc files report size 0 and have content, like a file swapped or
// appended to between fstat and read.
func TestReadFileSizeLies(t *testing.T) {
	r, err := OpenRoot("/proc/self")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.ReadFile("maps", 16); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a size-0 file with more content than the limit: %v", err)
	}
	if b, err := r.ReadFile("stat", 1<<16); err != nil || len(b) == 0 {
		t.Fatalf("stat: %q %v", b, err)
	}
}

func TestWriteFileReplacesNeverOpens(t *testing.T) {
	modes(t, func(t *testing.T) {
		r, dir, outside := planted(t)
		targets := []string{"plain", "fifo", "linkfile", "innerlink", "new", "sub/new"}
		if os.Geteuid() == 0 {
			targets = append(targets, "chardev")
		}
		for _, rel := range targets {
			_, err := Do(context.Background(), "write", func(ctx context.Context) (struct{}, error) {
				return struct{}{}, r.WriteFile(rel, []byte("data"), WriteOptions{Perm: 0o640})
			})
			if err != nil {
				t.Fatalf("WriteFile(%s): %v", rel, err)
			}
			st, err := os.Lstat(filepath.Join(dir, rel))
			if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o640 {
				t.Fatalf("%s after write: %v %v", rel, st.Mode(), err)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "host secret" {
			t.Fatalf("host file changed: %q", b)
		}
		for _, rel := range []string{"linkdir/x", "../host/x", "sub"} {
			if err := r.WriteFile(rel, []byte("x"), WriteOptions{Perm: 0o644, Mkdir: true}); err == nil {
				t.Errorf("WriteFile(%s) succeeded", rel)
			}
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 1 {
			t.Fatalf("host folder has %v", ents)
		}
		// No temporary file is left behind by the refusals.
		ents, _ := os.ReadDir(filepath.Join(dir))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".bai-tmp-") {
				t.Fatalf("temporary file left: %s", e.Name())
			}
		}
	})
}

func TestMkdirAllRefusesLinks(t *testing.T) {
	modes(t, func(t *testing.T) {
		r, dir, outside := planted(t)
		if err := r.MkdirAll("a/b/c", 0o700, NoOwner); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(filepath.Join(dir, "a/b/c")); err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("a/b/c: %v %v", st, err)
		}
		if err := r.MkdirAll("linkdir/x", 0o700, NoOwner); !errors.Is(err, ErrSymlink) {
			t.Fatalf("through a link: %v", err)
		}
		if err := r.MkdirAll("plain/x", 0o700, NoOwner); !errors.Is(err, ErrNotDir) {
			t.Fatalf("through a file: %v", err)
		}
		if ents, _ := os.ReadDir(outside); len(ents) != 1 {
			t.Fatalf("host folder has %v", ents)
		}
	})
}

func TestReadDirOpensNothing(t *testing.T) {
	modes(t, func(t *testing.T) {
		r, _, _ := planted(t)
		ents, err := Do(context.Background(), "list", func(ctx context.Context) ([]*Info, error) { return r.ReadDir(ctx, ".", 0) })
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]string{}
		for _, e := range ents {
			kinds[e.Name()] = e.Mode().Type().String()
		}
		if kinds["fifo"] != "p---------" || kinds["linkdir"] != "L---------" || kinds["plain"] != "----------" {
			t.Fatalf("kinds %v", kinds)
		}
		for _, rel := range []string{"fifo", "linkdir", "plain"} {
			if _, err := r.ReadDir(context.Background(), rel, 0); err == nil {
				t.Errorf("ReadDir(%s) succeeded", rel)
			}
		}
		if _, err := r.ReadDir(context.Background(), ".", 2); !errors.Is(err, ErrTooLarge) {
			t.Errorf("entry limit: %v", err)
		}
	})
}

func TestWalkDepthAndLinks(t *testing.T) {
	r, dir, _ := planted(t)
	deep := filepath.Join(dir, strings.Repeat("d/", 40))
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	var seen []string
	err := r.Walk(context.Background(), ".", 10, 1000, func(rel string, info *Info) error {
		seen = append(seen, rel)
		return nil
	})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("deep walk: %v", err)
	}
	for _, s := range seen {
		if strings.HasPrefix(s, "linkdir/") {
			t.Fatalf("walked through a link: %s", s)
		}
	}
}

func TestDoDeadline(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Do(ctx, "stuck", func(ctx context.Context) (int, error) { <-block; return 1, nil })
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("stuck call: %v after %v", err, time.Since(start))
	}
}

// A path resolved once (a vfolder's real path) that now goes through a
// link is refused, whichever component was swapped.
func TestOpenRootStrict(t *testing.T) {
	modes(t, func(t *testing.T) {
		_, dir, outside := planted(t)
		if r, err := OpenRootStrict(filepath.Join(dir, "sub")); err != nil {
			t.Fatal(err)
		} else {
			r.Close()
		}
		for _, p := range []string{filepath.Join(dir, "linkdir"), filepath.Join(dir, "linkdir", "keep")} {
			if _, err := OpenRootStrict(p); !errors.Is(err, ErrSymlink) {
				t.Errorf("OpenRootStrict(%s) = %v, want ErrSymlink", p, err)
			}
			if err := CheckNoLinks(p); !errors.Is(err, ErrSymlink) {
				t.Errorf("CheckNoLinks(%s) = %v, want ErrSymlink", p, err)
			}
		}
		if err := CheckNoLinks(filepath.Join(dir, "plain")); err != nil {
			t.Errorf("a plain file: %v", err)
		}
		if err := CheckNoLinks(filepath.Join(dir, "linkfile")); !errors.Is(err, ErrSymlink) {
			t.Errorf("a link to a file: %v", err)
		}
		if _, err := OpenRootStrict("relative"); !errors.Is(err, ErrEscape) {
			t.Errorf("relative: %v", err)
		}
		_ = outside
	})
}

func TestRemoveUnlinksNamesOnly(t *testing.T) {
	modes(t, func(t *testing.T) {
		r, dir, outside := planted(t)
		for _, tc := range []struct {
			rel  string
			want error
		}{
			{"plain", nil},
			{"linkfile", nil}, // the link goes, its target stays
			{"fifo", nil},
			{"sub", ErrIsDir},
			{"linkdir/secret", ErrSymlink},
			{"../host/secret", ErrEscape},
			{"missing", os.ErrNotExist},
		} {
			err := r.Remove(tc.rel)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Remove(%q) = %v, want %v", tc.rel, err, tc.want)
			}
		}
		for _, gone := range []string{"plain", "linkfile", "fifo"} {
			if _, err := os.Lstat(filepath.Join(dir, gone)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s still there: %v", gone, err)
			}
		}
		if b, err := os.ReadFile(filepath.Join(outside, "secret")); err != nil || string(b) != "host secret" {
			t.Errorf("host file touched: %q %v", b, err)
		}
	})
}

func TestOpenOrCreate(t *testing.T) {
	modes(t, func(t *testing.T) {
		r, dir, outside := planted(t)
		f, err := r.OpenOrCreate("new.lock", 0o640)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		st, err := os.Lstat(filepath.Join(dir, "new.lock"))
		if err != nil || !st.Mode().IsRegular() || st.Size() != 0 || st.Mode().Perm()&^0o640 != 0 {
			t.Fatalf("created %v %v", st, err)
		}
		// An existing file is opened as it is (not truncated, not replaced).
		f, err = r.OpenOrCreate("plain", 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if b, _ := os.ReadFile(filepath.Join(dir, "plain")); string(b) != "hello" {
			t.Errorf("plain = %q", b)
		}
		for _, tc := range []struct {
			rel  string
			want error
		}{
			{"linkfile", ErrNotRegular},
			{"fifo", ErrNotRegular},
			{"sub", ErrIsDir},
			{"linkdir/x.lock", ErrSymlink},
			{"../host/x.lock", ErrEscape},
		} {
			if f, err := r.OpenOrCreate(tc.rel, 0o600); !errors.Is(err, tc.want) {
				if f != nil {
					f.Close()
				}
				t.Errorf("OpenOrCreate(%q) = %v, want %v", tc.rel, err, tc.want)
			}
		}
		if _, err := os.Lstat(filepath.Join(outside, "x.lock")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("created outside: %v", err)
		}
	})
}
