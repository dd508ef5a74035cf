package volumes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sampleFstab = "# /etc/fstab: static file system information.\n" +
	"#\n" +
	"UUID=abcd   /          ext4    errors=remount-ro 0       1\n" +
	"\n" +
	"  # an indented comment naming 10.0.0.1:/vol /mnt/vol nfs\n" +
	"tmpfs\t/tmp\ttmpfs\tdefaults\t0\t0\n"

func TestAddFstabEntry(t *testing.T) {
	e := FstabEntry{Device: "10.0.0.1:/vol", MountPoint: "/mnt/vol", FSType: "nfs", Options: "vers=4,ro"}
	for _, tc := range []struct {
		name, in, want string
		changed        bool
	}{
		{"add", sampleFstab, sampleFstab + "10.0.0.1:/vol /mnt/vol nfs vers=4,ro 0 0\n", true},
		{"add twice", sampleFstab + "10.0.0.1:/vol /mnt/vol nfs vers=4,ro 0 0\n", sampleFstab + "10.0.0.1:/vol /mnt/vol nfs vers=4,ro 0 0\n", false},
		// upstream's rule: one line per device, wherever it is mounted
		{"same device elsewhere", "10.0.0.1:/vol\t/other  nfs defaults 0 0\n", "10.0.0.1:/vol\t/other  nfs defaults 0 0\n", false},
		{"empty file", "", "10.0.0.1:/vol /mnt/vol nfs vers=4,ro 0 0\n", true},
		{"no final newline", "UUID=abcd / ext4 defaults 0 1", "UUID=abcd / ext4 defaults 0 1\n10.0.0.1:/vol /mnt/vol nfs vers=4,ro 0 0\n", true},
		// a commented-out line for the device does not count
		{"device only in a comment", "#10.0.0.1:/vol /mnt/vol nfs defaults 0 0\n", "#10.0.0.1:/vol /mnt/vol nfs defaults 0 0\n10.0.0.1:/vol /mnt/vol nfs vers=4,ro 0 0\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := AddFstabEntry(tc.in, e)
			if diff := cmp.Diff(tc.want, got); diff != "" || changed != tc.changed {
				t.Fatalf("changed=%v (want %v), diff -want +got:\n%s", changed, tc.changed, diff)
			}
		})
	}
}

func TestFstabEntryEscapesAndDefaults(t *testing.T) {
	got := FstabEntry{Device: "/srv/my data", MountPoint: "/mnt/a b", FSType: "none"}.String()
	if want := `/srv/my\040data /mnt/a\040b none defaults 0 0`; got != want {
		t.Fatalf("line %q, want %q", got, want)
	}
	// and an escaped line is recognised as the same device
	if _, changed := AddFstabEntry(got+"\n", FstabEntry{Device: "/srv/my data", MountPoint: "/x", FSType: "none"}); changed {
		t.Fatal("escaped device not recognised")
	}
}

func TestRemoveFstabMountPoint(t *testing.T) {
	for _, tc := range []struct {
		name, in, mp, want string
		changed            bool
	}{
		{"remove", sampleFstab + "10.0.0.1:/vol /mnt/vol nfs vers=4,ro 0 0\n", "/mnt/vol", sampleFstab, true},
		{"remove missing", sampleFstab, "/mnt/vol", sampleFstab, false},
		{"remove keeps comments naming it", sampleFstab, "/mnt/vol", sampleFstab, false},
		{"odd spacing and tabs", "a  /mnt/vol\t nfs  defaults 0 0\nb /keep nfs defaults 0 0\n", "/mnt/vol", "b /keep nfs defaults 0 0\n", true},
		{"every duplicate", "a /mnt/vol nfs d 0 0\nb /x nfs d 0 0\nc /mnt/vol/ nfs d 0 0", "/mnt/vol", "b /x nfs d 0 0\n", true},
		{"escaped mount point", "a /mnt/a\\040b nfs d 0 0\n", "/mnt/a b", "", true},
		{"last line without newline kept", "a /mnt/vol nfs d 0 0\nb /x nfs d 0 0", "/mnt/vol", "b /x nfs d 0 0", true},
		{"prefix is not a match", "a /mnt/vol2 nfs d 0 0\n", "/mnt/vol", "a /mnt/vol2 nfs d 0 0\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := RemoveFstabMountPoint(tc.in, tc.mp)
			if diff := cmp.Diff(tc.want, got); diff != "" || changed != tc.changed {
				t.Fatalf("changed=%v (want %v), diff -want +got:\n%s", changed, tc.changed, diff)
			}
		})
	}
}

func TestEditFstabFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "fstab")
	if err := os.WriteFile(p, []byte(sampleFstab), 0o640); err != nil {
		t.Fatal(err)
	}
	e := FstabEntry{Device: "srv:/v", MountPoint: "/mnt/v", FSType: "nfs"}
	add := func(c string) (string, bool) { return AddFstabEntry(c, e) }
	for range 2 {
		if err := EditFstab(p, add); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(p)
	if want := sampleFstab + "srv:/v /mnt/v nfs defaults 0 0\n"; string(b) != want {
		t.Fatalf("after add:\n%s", b)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v not kept", st.Mode())
	}
	if err := EditFstab(p, func(c string) (string, bool) { return RemoveFstabMountPoint(c, "/mnt/v") }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != sampleFstab {
		t.Fatalf("after remove:\n%s", b)
	}
	// no temporary file is left behind
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left in %s: %v", dir, ents)
	}
}

func TestCheckFstabPath(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "fstab")
	other := filepath.Join(dir, "passwd")
	for _, p := range []string{good, other} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "link-fstab")
	if err := os.Symlink(other, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckFstabPath(good); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"fstab", other, dir + "/../" + filepath.Base(dir) + "/fstab", link, filepath.Join(dir, "missing-fstab"), dir + "/"} {
		if err := CheckFstabPath(p); !errors.Is(err, ErrBadFstabPath) {
			t.Errorf("%q accepted (%v)", p, err)
		}
	}
	if err := EditFstab(other, func(c string) (string, bool) { return c + "x", true }); !errors.Is(err, ErrBadFstabPath) {
		t.Fatalf("EditFstab of a non-fstab: %v", err)
	}
	if b, _ := os.ReadFile(other); len(b) != 0 || strings.Contains(string(b), "x") {
		t.Fatal("non-fstab written")
	}
}
