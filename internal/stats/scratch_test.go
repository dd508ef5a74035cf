package stats

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The kernel's user owns the walked folder: it swaps a folder the walk
// has listed for a link (or a FIFO, or a device node) just before the
// walk descends into it. The walk must count neither what the link
// points at nor block on the FIFO. The swap is timed with inotify: when
// the walk opens the folder listed before the victim, the two are
// exchanged (renameat2 RENAME_EXCHANGE).
func TestScratchUsageSurvivesSwaps(t *testing.T) {
	for _, kind := range []string{"symlink", "fifo"} {
		t.Run(kind, func(t *testing.T) {
			base := t.TempDir()
			work := filepath.Join(base, "work")
			outside := filepath.Join(base, "outside")
			for _, d := range []string{work, outside, filepath.Join(work, "a"), filepath.Join(work, "z")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// Outside the scratch: 4 MiB a followed link would count.
			if err := os.WriteFile(filepath.Join(outside, "host.bin"), make([]byte, 4<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			// "a" holds many (empty) files so the walk spends a while in
			// it; the kernel's own 64 KiB are what should be counted.
			for i := range 2000 {
				if err := os.WriteFile(filepath.Join(work, "a", strconv.Itoa(i)), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(work, "mine.bin"), make([]byte, 64<<10), 0o644); err != nil {
				t.Fatal(err)
			}
			repl := filepath.Join(work, "zx")
			switch kind {
			case "symlink":
				if err := os.Symlink(outside, repl); err != nil {
					t.Fatal(err)
				}
			case "fifo":
				if err := unix.Mkfifo(repl, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// "zx" sorts after "z": listed, then swapped into "z"'s place.
			in, err := unix.InotifyInit1(unix.IN_CLOEXEC)
			if err != nil {
				t.Fatalf("inotify: %v", err)
			}
			defer unix.Close(in)
			if _, err := unix.InotifyAddWatch(in, filepath.Join(work, "a"), unix.IN_OPEN); err != nil {
				t.Fatal(err)
			}
			swapped := make(chan error, 1)
			go func() {
				buf := make([]byte, 4096)
				if _, err := unix.Read(in, buf); err != nil {
					swapped <- err
					return
				}
				swapped <- unix.Renameat2(unix.AT_FDCWD, filepath.Join(work, "z"), unix.AT_FDCWD, repl, unix.RENAME_EXCHANGE)
			}()
			done := make(chan uint64, 1)
			go func() { done <- scratchUsage(work) }()
			var used uint64
			select {
			case used = <-done:
			case <-time.After(30 * time.Second):
				// Unblock a walk stuck on the FIFO before failing.
				if f, err := os.OpenFile(filepath.Join(work, "z"), os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
				t.Fatal("the scratch walk blocked on a FIFO swapped in for a folder")
			}
			if err := <-swapped; err != nil {
				t.Fatalf("swap: %v", err)
			}
			if used >= 4<<20 {
				t.Fatalf("scratch usage %d bytes counts the host folder a swapped-in link points at", used)
			}
			if used < 64<<10 {
				t.Fatalf("scratch usage %d bytes: the kernel's own 64 KiB not counted", used)
			}
		})
	}
}

// What cannot be walked (a chain deeper than the walk goes) is skipped,
// and everything else is still counted: a kernel cannot hide its usage
// behind one deep folder.
func TestScratchUsageSkipsWhatItCannotWalk(t *testing.T) {
	work := t.TempDir()
	deep := work
	for range scratchWalkDepth + 2 {
		deep = filepath.Join(deep, "0")
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deep, "deep.bin"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(work, "zz"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "zz", "mine.bin"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	used := scratchUsage(work)
	if used < 64<<10 || used >= 1<<20 {
		t.Fatalf("scratch usage %d bytes, want the 64 KiB beside the deep chain and not the 1 MiB below its limit", used)
	}
}
