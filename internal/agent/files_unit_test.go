package agent

// File RPCs (upload_file, download_file, download_single, list_files,
// get_logs) against the in-memory runtime: the fake runtime has no
// container filesystem, but the kernel's /home/work is a host folder (its
// scratch work dir, bind-mounted), so what the RPCs write and read is
// checked on the host side of that mount.

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend/fake"
	"github.com/bai-agent/bai-agent/internal/safefs"
)

// unitMountSource is the host source of the kernel container's mount at
// target, as the runtime was asked to mount it.
func unitMountSource(t *testing.T, c *core, containerID, target string) string {
	t.Helper()
	for _, ct := range c.be.Containers() {
		if ct.ID != containerID {
			continue
		}
		for _, m := range ct.Mounts {
			if m.Target == target {
				return m.Source
			}
		}
	}
	t.Fatalf("container %s has no mount at %s", containerID, target)
	return ""
}

// unitTar reads a tar archive into name -> (type, body or link target).
func unitTar(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("archive: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			out[hdr.Name] = "file:" + string(body)
		case tar.TypeDir:
			out[hdr.Name] = "dir"
		case tar.TypeSymlink:
			out[hdr.Name] = "link:" + hdr.Linkname
		case tar.TypeFifo:
			out[hdr.Name] = "fifo"
		default:
			out[hdr.Name] = fmt.Sprintf("type %c", hdr.Typeflag)
		}
	}
}

func TestFileRoundTrip_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	work := unitMountSource(t, c, info.ContainerID, "/home/work")

	// A relative and an absolute name land in the same work folder; the
	// folders on the way are made.
	if err := c.agent.UploadFile(ctx, info.ID, "sub/dir/a.txt", []byte("alpha")); err != nil {
		t.Fatal(err)
	}
	if err := c.agent.UploadFile(ctx, info.ID, "/home/work/sub/b.txt", []byte("beta")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(work, "sub", "dir", "a.txt")); err != nil || string(got) != "alpha" {
		t.Fatalf("uploaded file on the host: %q %v", got, err)
	}
	// An upload replaces the file.
	if err := c.agent.UploadFile(ctx, info.ID, "sub/b.txt", []byte("beta2")); err != nil {
		t.Fatal(err)
	}
	got, err := c.agent.DownloadSingle(ctx, info.ID, "sub/b.txt")
	if err != nil || string(got) != "beta2" {
		t.Fatalf("download_single: %q %v", got, err)
	}

	// download_file archives the folder with the requested name as its
	// top, links as links and a FIFO as a header only.
	if err := os.Symlink("/etc/passwd", filepath.Join(work, "sub", "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(work, "sub", "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	arch, err := c.agent.DownloadFile(ctx, info.ID, "sub")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"sub/": "dir", "sub/dir/": "dir", "sub/dir/a.txt": "file:alpha", "sub/b.txt": "file:beta2",
		"sub/link": "link:/etc/passwd", "sub/pipe": "fifo",
	}
	if got := unitTar(t, arch); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("archive of sub:\n got %v\nwant %v", got, want)
	}
	// A single file, and the whole work folder (named "work").
	if got := unitTar(t, mustBytes(t)(c.agent.DownloadFile(ctx, info.ID, "/home/work/sub/dir/a.txt"))); fmt.Sprint(got) != "map[a.txt:file:alpha]" {
		t.Fatalf("archive of one file: %v", got)
	}
	whole := unitTar(t, mustBytes(t)(c.agent.DownloadFile(ctx, info.ID, ".")))
	if whole["work/"] != "dir" || whole["work/sub/dir/a.txt"] != "file:alpha" {
		t.Fatalf("archive of the work folder: %v", whole)
	}

	// list_files describes entries without following links.
	l, err := c.agent.ListFiles(ctx, info.ID, "sub")
	if err != nil || l.Error != "" || l.Abspath != "sub" {
		t.Fatalf("list_files: %+v %v", l, err)
	}
	modes := map[string]string{}
	for _, f := range l.Files {
		modes[f.Filename] = f.Mode
		if f.Filename == "b.txt" && (f.Size != 5 || f.Mtime <= 0 || f.Ctime <= 0 || f.Atime <= 0) {
			t.Errorf("entry %+v", f)
		}
	}
	wantModes := map[string]string{"dir": "drwxr-xr-x", "b.txt": "-rw-r--r--", "link": "lrwxrwxrwx", "pipe": "prw-r--r--"}
	if fmt.Sprint(modes) != fmt.Sprint(wantModes) {
		t.Fatalf("list_files modes %v, want %v", modes, wantModes)
	}
	// A missing folder is reported in the listing, not as a failure.
	l, err = c.agent.ListFiles(ctx, info.ID, "nowhere")
	if err != nil || !strings.Contains(l.Error, "file not found") || len(l.Files) != 0 {
		t.Fatalf("list_files of a missing folder: %+v %v", l, err)
	}
}

func mustBytes(t *testing.T) func([]byte, error) []byte {
	return func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// Every refusal of the file RPCs with the error kind the RPC layer maps
// to the manager's exception.
func TestFileRefusals_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	ro := t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "model.bin"), []byte("weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := c.create(func(r *CreationConfig) {
		r.Mounts = []MountSpec{{Name: "models", HostPath: ro, KernelPath: "models", MountPerm: "ro"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	work := unitMountSource(t, c, info.ContainerID, "/home/work")
	if err := os.WriteFile(filepath.Join(work, "big"), make([]byte, MaxDownloadSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(work, "folder"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(work, "escape")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		want error
		msg  string
	}{
		{"upload outside /home/work", func() error { return c.agent.UploadFile(ctx, info.ID, "../../etc/x", []byte("x")) }, ErrPermission, "outside /home/work"},
		{"upload to an absolute path elsewhere", func() error { return c.agent.UploadFile(ctx, info.ID, "/etc/x", nil) }, ErrPermission, "outside /home/work"},
		{"upload with a NUL", func() error { return c.agent.UploadFile(ctx, info.ID, "a\x00b", nil) }, ErrInvalidArgument, "NUL"},
		{"upload onto the work folder", func() error { return c.agent.UploadFile(ctx, info.ID, "/home/work", nil) }, ErrPermission, "names a directory"},
		{"upload into a read-only vfolder", func() error { return c.agent.UploadFile(ctx, info.ID, "models/new", []byte("x")) }, ErrPermission, "read-only vfolder"},
		{"upload to an unknown kernel", func() error { return c.agent.UploadFile(ctx, "no-such-kernel", "a", nil) }, ErrKernelNotFound, "no-such-kernel"},
		{"download_single of a folder", func() error { _, err := c.agent.DownloadSingle(ctx, info.ID, "folder"); return err }, ErrInvalidArgument, "expected a single file"},
		{"download_single of a missing file", func() error { _, err := c.agent.DownloadSingle(ctx, info.ID, "missing"); return err }, ErrFileNotFound, "missing"},
		{"download_single over 1 MiB", func() error { _, err := c.agent.DownloadSingle(ctx, info.ID, "big"); return err }, ErrTooLarge, "big"},
		{"download_single of a link (not followed)", func() error { _, err := c.agent.DownloadSingle(ctx, info.ID, "escape"); return err }, ErrInvalidArgument, "symbolic link"},
		{"download_file over 1 MiB", func() error { _, err := c.agent.DownloadFile(ctx, info.ID, "big"); return err }, ErrTooLarge, "archive of big"},
		{"download_file of a missing file", func() error { _, err := c.agent.DownloadFile(ctx, info.ID, "missing"); return err }, ErrFileNotFound, "missing"},
		{"download_file outside", func() error { _, err := c.agent.DownloadFile(ctx, info.ID, "/root"); return err }, ErrPermission, "outside"},
		{"download_file of an unknown kernel", func() error { _, err := c.agent.DownloadFile(ctx, "nope", "a"); return err }, ErrKernelNotFound, "nope"},
		{"download_single of an unknown kernel", func() error { _, err := c.agent.DownloadSingle(ctx, "nope", "a"); return err }, ErrKernelNotFound, "nope"},
		{"list_files outside", func() error { _, err := c.agent.ListFiles(ctx, info.ID, "/proc"); return err }, ErrPermission, "outside"},
		{"list_files of an unknown kernel", func() error { _, err := c.agent.ListFiles(ctx, "nope", "."); return err }, ErrKernelNotFound, "nope"},
		{"logs of an unknown kernel", func() error { _, err := c.agent.Logs(ctx, "nope"); return err }, ErrKernelNotFound, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
	// The read-only vfolder is read from its host source.
	if got, err := c.agent.DownloadSingle(ctx, info.ID, "/home/work/models/model.bin"); err != nil || string(got) != "weights" {
		t.Fatalf("file of the vfolder: %q %v", got, err)
	}
	l, err := c.agent.ListFiles(ctx, info.ID, "models")
	if err != nil || len(l.Files) != 1 || l.Files[0].Filename != "model.bin" {
		t.Fatalf("listing of the vfolder: %+v %v", l, err)
	}
	// Nothing was written by the refused uploads.
	if _, err := os.Stat(filepath.Join(ro, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused upload wrote into the read-only vfolder: %v", err)
	}
}

// A kernel that is not running (here: being destroyed) has no files to
// serve; its logs are still there while it is registered.
func TestFilesOfKernelNotRunning_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, func(o *Options) { o.Timeouts.Stop = 2 * time.Second })
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	logs, err := c.agent.Logs(ctx, info.ID)
	if err != nil || logs != "log of "+info.ContainerID[:12]+"\n" {
		t.Fatalf("logs %q %v", logs, err)
	}
	c.be.Inject(fake.CallLogs, &fake.Fault{Err: errors.New("logs driver none"), Times: 1})
	if _, err := c.agent.Logs(ctx, info.ID); err == nil || !strings.Contains(err.Error(), "logs driver none") || !strings.Contains(err.Error(), info.ID) {
		t.Fatalf("logs failure: %v", err)
	}
	// The stop hangs (for the stop timeout): meanwhile the kernel is
	// registered but terminating.
	c.be.Inject(fake.CallStop, &fake.Fault{Hang: true, Times: 1})
	k, _ := c.agent.Kernel(info.ID)
	done := make(chan error, 1)
	go func() { done <- c.agent.DestroyKernel(ctx, info.ID, k.SessionID, "", false) }()
	waitFor(t, 5*time.Second, "the stop entered", func() bool { return c.be.CallCount(fake.CallStop) >= 1 })
	if _, err := c.agent.DownloadSingle(ctx, info.ID, "x"); !errors.Is(err, ErrKernelNotFound) || !strings.Contains(err.Error(), "not running") {
		t.Errorf("download from a terminating kernel: %v", err)
	}
	if logs, err := c.agent.Logs(ctx, info.ID); err != nil || logs == "" {
		t.Errorf("logs of a terminating kernel: %q %v", logs, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.agent.Logs(ctx, info.ID); !errors.Is(err, ErrKernelNotFound) {
		t.Errorf("logs of a destroyed kernel: %v", err)
	}
}

func TestFileMode_Fake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		m    fs.FileMode
		want string
	}{
		{0o644, "-rw-r--r--"},
		{fs.ModeDir | 0o755, "drwxr-xr-x"},
		{fs.ModeSymlink | 0o777, "lrwxrwxrwx"},
		{fs.ModeNamedPipe | 0o600, "prw-------"},
		{fs.ModeSocket | 0o755, "srwxr-xr-x"},
		{fs.ModeDevice | fs.ModeCharDevice | 0o666, "crw-rw-rw-"},
		{fs.ModeDevice | 0o660, "brw-rw----"},
		{fs.ModeSetuid | 0o755, "-rwsr-xr-x"},
		{fs.ModeSetuid | 0o644, "-rwSr--r--"},
		{fs.ModeSetgid | 0o755, "-rwxr-sr-x"},
		{fs.ModeSetgid | 0o640, "-rw-r-S---"},
		{fs.ModeDir | fs.ModeSticky | 0o777, "drwxrwxrwt"},
		{fs.ModeDir | fs.ModeSticky | 0o776, "drwxrwxrwT"},
		{0, "----------"},
	} {
		if got := FileMode(tc.m); got != tc.want {
			t.Errorf("FileMode(%v) = %s, want %s", tc.m, got, tc.want)
		}
	}
}

// fileErr maps each kind of failure to the error the manager expects.
func TestFileErrKinds_Fake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   error
		want error
	}{
		{context.DeadlineExceeded, context.DeadlineExceeded},
		{safefs.ErrBusy, safefs.ErrBusy},
		{fs.ErrNotExist, ErrFileNotFound},
		{safefs.ErrTooLarge, ErrTooLarge},
		{fs.ErrPermission, ErrPermission},
		{safefs.ErrEscape, ErrPermission},
		{safefs.ErrSymlink, ErrPermission},
		{safefs.ErrNotRegular, ErrPermission},
		{safefs.ErrIsDir, ErrInvalidArgument},
		{safefs.ErrNotDir, ErrInvalidArgument},
	} {
		err := fileErr("some/path", fmt.Errorf("op: %w", tc.in))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "some/path") {
			t.Errorf("fileErr(%v) = %v, want %v", tc.in, err, tc.want)
		}
	}
	other := errors.New("io error")
	if err := fileErr("p", other); !errors.Is(err, other) || errors.Is(err, ErrPermission) || errors.Is(err, ErrFileNotFound) {
		t.Errorf("an unknown error: %v", err)
	}
}
