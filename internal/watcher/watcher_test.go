package watcher

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMountPointRefusesEscapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"data", true}, {"my vol", true}, {"", false}, {".", false}, {"..", false},
		{"../etc", false}, {"a/b", false}, {"x\x00y", false},
	} {
		mp, err := mountPoint("/mnt", tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.name, err)
		}
		if err != nil && !errors.Is(err, errBadRequest) {
			t.Errorf("%q: not a bad request: %v", tc.name, err)
		}
		if err == nil && filepath.Dir(mp) != "/mnt" {
			t.Errorf("%q -> %s", tc.name, mp)
		}
	}
}

func TestSplitOptions(t *testing.T) {
	for _, tc := range []struct {
		in    string
		flags uintptr
		data  string
	}{
		{"", 0, ""},
		{"defaults", 0, ""},
		{"size=1m,nosuid", unix.MS_NOSUID, "size=1m"},
		{"bind,ro", unix.MS_BIND | unix.MS_RDONLY, ""},
		{"rw,vers=4.1,noatime,_netdev", unix.MS_NOATIME, "vers=4.1"},
	} {
		f, d := splitOptions(tc.in)
		if f != tc.flags || d != tc.data {
			t.Errorf("%q: flags %#x data %q, want %#x %q", tc.in, f, d, tc.flags, tc.data)
		}
	}
}

func TestMountsUnder(t *testing.T) {
	all := []string{"/", "/mnt/tmp1", "/mnt/my vol", "/mnt/tmp1/nested", "/mntx/other", "/mnt/tmp1"}
	if got := mountsUnder(all, "/mnt"); strings.Join(got, "|") != "/mnt/my vol|/mnt/tmp1" {
		t.Fatalf("got %q", got)
	}
}

func TestEditFstabAtomicWithBackup(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "fstab")
	orig := "# c\nUUID=1 / ext4 defaults 0 1\n"
	if err := os.WriteFile(p, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := editFstab(p, func(l []string) []string { return append(l, "tmpfs /mnt/a tmpfs defaults 0 0") }); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	bak, _ := os.ReadFile(p + ".bak")
	st, _ := os.Stat(p)
	if string(b) != orig+"tmpfs /mnt/a tmpfs defaults 0 0\n" || string(bak) != orig || st.Mode().Perm() != 0o600 {
		t.Fatalf("fstab %q, backup %q, mode %v", b, bak, st.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("temporary files left: %v", ents)
	}
	for _, bad := range []string{"/etc/passwd", "relative/fstab", "/etc/../etc/fstab"} {
		if err := editFstab(bad, func(l []string) []string { return l }); !errors.Is(err, errBadRequest) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// The API names the fstab: a link named fstab (in a folder a kernel or a
// host user can write) must not make the root watcher read what it points
// at, nor copy it to fstab.bak; a FIFO must not block it; a file another
// user owns is not an fstab of the host's.
func TestFstabRefusesLinksFIFOsAndStrangers(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "shadow")
	if err := os.WriteFile(secret, []byte("root:secret-hash:19000::::::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "fstab")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "fstab")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	h := Handler(Options{Token: "tok", Control: &fakeControl{}})
	paths := []string{link, fifo}
	if os.Geteuid() == 0 {
		stranger := filepath.Join(t.TempDir(), "fstab")
		if err := os.WriteFile(stranger, []byte("x /mnt/x tmpfs defaults 0 0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(stranger, 1000, 1000); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, stranger)
	}
	for _, p := range paths {
		req := httptest.NewRequest("GET", "/fstab?fstab_path="+url.QueryEscape(p), nil)
		req.Header.Set("X-BackendAI-Watcher-Token", "tok")
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { h.ServeHTTP(rec, req); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			if f, err := os.OpenFile(p, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
			t.Fatalf("GET /fstab of %s blocked", p)
		}
		if rec.Code != http.StatusBadRequest || strings.Contains(rec.Body.String(), "secret-hash") {
			t.Errorf("GET /fstab of %s: %d %q, want 400", p, rec.Code, rec.Body.String())
		}
		if err := editFstab(p, func(l []string) []string { return l }); !errors.Is(err, errBadRequest) {
			t.Errorf("edit of %s: %v", p, err)
		}
		if _, err := os.Stat(p + ".bak"); err == nil {
			t.Errorf("a backup of %s was written", p)
		}
	}
}

type fakeControl struct{ calls []string }

func (f *fakeControl) Status(context.Context) string { return "active" }
func (f *fakeControl) Start(context.Context) error   { f.calls = append(f.calls, "start"); return nil }
func (f *fakeControl) Stop(context.Context) error    { f.calls = append(f.calls, "stop"); return nil }
func (f *fakeControl) Restart(context.Context) error {
	f.calls = append(f.calls, "restart")
	return nil
}
func (f *fakeControl) Reload(context.Context) error { f.calls = append(f.calls, "reload"); return nil }

// Routes and the token, without processes: soft reset is absent unless
// enabled, hard reset is stop + engine restart + start.
func TestHandlerRoutes(t *testing.T) {
	fc := &fakeControl{}
	marker := filepath.Join(t.TempDir(), "docker-restarted")
	h := Handler(Options{Token: "tok", Control: fc, DockerRestart: []string{"touch", marker}})
	for _, tc := range []struct {
		method, path, token string
		code                int
	}{
		{"GET", "/", "tok", 200},
		{"GET", "/", "", 403},
		{"POST", "/soft-reset", "tok", 404},
		{"POST", "/hard-reset", "tok", 200},
		{"GET", "/agent/start", "tok", 405},
		{"POST", "/nope", "tok", 404},
		{"POST", "/nope", "bad", 403},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.token != "" {
			req.Header.Set("X-BackendAI-Watcher-Token", tc.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code || rec.Header().Get("Server") != "BackendAI-AgentWatcher" {
			t.Errorf("%s %s (%q): %d %v, want %d", tc.method, tc.path, tc.token, rec.Code, rec.Header(), tc.code)
		}
	}
	if strings.Join(fc.calls, ",") != "stop,start" {
		t.Fatalf("hard reset calls %v", fc.calls)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("engine restart command not run: %v", err)
	}
}

// A supervisor whose agent binary cannot start answers Start at once with
// the reason instead of waiting out the caller's deadline.
func TestSupervisorStartFailsFast(t *testing.T) {
	s := &Supervisor{Argv: []string{"/nonexistent/bai-agent", "start-server"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), MinBackoff: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	t0 := time.Now()
	err := s.Start(sctx)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/bai-agent") {
		t.Fatalf("start: %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("Start took %s", d)
	}
	if st := s.Status(context.Background()); st != "failed" && st != "activating" {
		t.Fatalf("status %q", st)
	}
}
