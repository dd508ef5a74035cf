package volumes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sampleMountInfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
36 22 0:31 / /mnt/with\040space rw,nosuid shared:20 master:1 - tmpfs my\040tmpfs rw,size=1024k
37 22 0:32 / /mnt/tab\011and\134slash rw - nfs4 10.0.0.1:/export/a\040b rw,vers=4.2
38 22 8:1 /srv/data /mnt/bind rw,relatime - ext4 /dev/sda1 rw
`

func TestParseMountInfo(t *testing.T) {
	got, err := ParseMountInfo(strings.NewReader(sampleMountInfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []MountInfo{
		{ID: 22, ParentID: 1, Root: "/", MountPoint: "/", Options: "rw,relatime", FSType: "ext4", Source: "/dev/sda1", SuperOptions: "rw,errors=remount-ro"},
		// optional fields (two here) before the separator
		{ID: 36, ParentID: 22, Root: "/", MountPoint: "/mnt/with space", Options: "rw,nosuid", FSType: "tmpfs", Source: "my tmpfs", SuperOptions: "rw,size=1024k"},
		{ID: 37, ParentID: 22, Root: "/", MountPoint: "/mnt/tab\tand\\slash", Options: "rw", FSType: "nfs4", Source: "10.0.0.1:/export/a b", SuperOptions: "rw,vers=4.2"},
		{ID: 38, ParentID: 22, Root: "/srv/data", MountPoint: "/mnt/bind", Options: "rw,relatime", FSType: "ext4", Source: "/dev/sda1", SuperOptions: "rw"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("-want +got:\n%s", diff)
	}
	for _, bad := range []string{"22 1 8:1 / / rw\n", "x 1 8:1 / / rw - ext4 /dev/sda1 rw\n", "22 1 8:1 / - ext4\n"} {
		if _, err := ParseMountInfo(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`: "/a b", `/a\134040`: `/a\040`, `/trail\04`: `/trail\04`, `/x\9999`: `/x\9999`, "/plain": "/plain",
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
		if in != `/trail\04` && in != `/x\9999` && Unescape(escape(want)) != want {
			t.Errorf("escape(%q) does not round-trip", want)
		}
	}
}

func TestIsMounted(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(p, []byte(sampleMountInfo), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{"/mnt/with space": true, "/mnt/with space/": true, "/mnt/with": false, "/mnt/bind": true, "/mnt": false} {
		got, err := IsMounted(p, path)
		if err != nil || got != want {
			t.Errorf("IsMounted(%q) = %v, %v; want %v", path, got, err, want)
		}
	}
	// the real table of this process has its root
	if ok, err := IsMounted("", "/"); err != nil || !ok {
		t.Fatalf("/ not mounted in /proc/self/mountinfo: %v %v", ok, err)
	}
}
