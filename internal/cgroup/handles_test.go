package cgroup

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Kept files are read again from offset 0 (fresh contents), bounded in
// number, closed for processes that exited, and Close never waits for a
// read in progress.
func TestHandles(t *testing.T) {
	root := t.TempDir()
	a := filepath.Join(root, "cpu.stat")
	_ = os.WriteFile(a, []byte("usage_usec 1\n"), 0o644)
	h := NewHandles(3)
	for i, want := range []string{"usage_usec 1\n", "usage_usec 22\n"} {
		if i == 1 {
			// Rewritten in place, as the kernel regenerates a pseudo-file.
			f, _ := os.OpenFile(a, os.O_WRONLY, 0)
			_, _ = f.WriteAt([]byte(want), 0)
			f.Close()
		}
		b, err := h.read(a)
		if err != nil || string(b) != want {
			t.Fatalf("read %d: %q %v", i, b, err)
		}
	}
	if h.Open() != 1 {
		t.Fatalf("%d open", h.Open())
	}
	for _, pid := range []string{"10", "11"} {
		p := filepath.Join(root, "proc", pid, "stat")
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		_ = os.WriteFile(p, []byte(pid), 0o644)
		if b, err := h.read(p); err != nil || string(b) != pid {
			t.Fatalf("proc %s: %q %v", pid, b, err)
		}
	}
	extra := filepath.Join(root, "memory.max")
	_ = os.WriteFile(extra, []byte("max\n"), 0o644)
	if b, err := h.read(extra); err != nil || string(b) != "max\n" || h.Open() != 3 {
		t.Fatalf("over the bound: %q %v, %d open", b, err, h.Open())
	}
	h.KeepProcs(root, map[int]bool{11: true})
	if h.Open() != 2 {
		t.Fatalf("after KeepProcs: %d open", h.Open())
	}
	if _, err := h.read(filepath.Join(root, "nope")); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
	// A read in progress (the lock held): Close returns at once, and the
	// reader closes everything when it is done.
	h.mu.Lock()
	done := make(chan struct{})
	go func() { h.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close waited for the reader")
	}
	h.mu.Unlock()
	if _, err := h.read(a); err != nil || h.Open() != 0 {
		t.Fatalf("after Close: %v, %d open", err, h.Open())
	}
	var nilH *Handles
	if b, err := nilH.read(a); err != nil || len(b) == 0 {
		t.Fatalf("nil Handles: %v", err)
	}
}

// Files larger than the read buffer come back whole, both regular files
// and seq_file pseudo-files (a short read ends the file, a full one does
// not).
func TestReadFileLargerThanBuffer(t *testing.T) {
	big := make([]byte, 40<<10+123)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	p := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(p, big, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Handles{nil, NewHandles(4)} {
		got, err := h.read(p)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("read %d bytes (%v), want %d", len(got), err, len(big))
		}
	}
	// /proc/kallsyms is a seq_file of megabytes whose lines do not change.
	want, err := os.ReadFile("/proc/kallsyms")
	if err != nil || len(want) < 64<<10 {
		t.Skipf("no large stable seq_file here: %d bytes, %v", len(want), err)
	}
	got, err := readFile("/proc/kallsyms")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("kallsyms: %d bytes (%v), os.ReadFile %d", len(got), err, len(want))
	}
}
