package jupyter

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The kernel's user owns its kernelspec folders: a kernel.json that is a
// FIFO must not block the runner, one that is /dev/zero must not fill
// its memory, and an over-large one is skipped; a good spec after them
// is still found.
func TestFindSpecSkipsHostileFiles(t *testing.T) {
	data := t.TempDir()
	mk := func(name string) string {
		d := filepath.Join(data, "kernels", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(d, "kernel.json")
	}
	if err := syscall.Mkfifo(mk("python1-fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", mk("python2-zero")); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, maxSpecFile+10)
	copy(big, `{"argv":["x"]}`)
	if err := os.WriteFile(mk("python3-big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mk("python4-good"), []byte(`{"argv":["/usr/bin/python3","-m","ipykernel_launcher","-f","{connection_file}"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan *Spec, 1)
	go func() {
		s, err := FindSpec([]string{data}, "python")
		if err != nil {
			t.Error(err)
		}
		done <- s
	}()
	select {
	case s := <-done:
		if s == nil || s.Name != "python4-good" {
			t.Fatalf("spec %+v, want python4-good", s)
		}
		if !s.speaksIPC() {
			t.Fatal("an ipykernel spec is not taken for one that speaks ipc")
		}
	case <-time.After(10 * time.Second):
		// Unblock a reader stuck on the FIFO before failing.
		if f, err := os.OpenFile(filepath.Join(data, "kernels", "python1-fifo", "kernel.json"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("FindSpec blocked on a FIFO kernel.json")
	}
	if (&Spec{Argv: []string{"R", "--slave", "-e", "IRkernel::main()"}}).speaksIPC() {
		t.Fatal("IRkernel taken for a kernel that speaks ipc")
	}
}
