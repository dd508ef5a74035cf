package krunner

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSetupUser(t *testing.T) {
	for _, tc := range []struct {
		name, passwd, group string
		id                  Identity
		wantUser, wantGroup string
	}{
		{"fresh image", "root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n", Identity{UID: 1234, GID: 2345, Additional: []int{3456}},
			"work:x:1234:2345:User:/home/work:/bin/sh", "work:x:2345:"},
		{"renumber work", "root:x:0:0:root:/root:/bin/sh\nwork:x:1000:1000:W:/home/work:/bin/sh\n", "work:x:1000:\n", Identity{UID: 1234, GID: 2345},
			"work:x:1234:2345:W:/home/work:/bin/sh", "work:x:2345:"},
		{"uid taken by another name", "root:x:0:0:root:/root:/bin/sh\nubuntu:x:1000:1000:U:/home/ubuntu:/bin/bash\n", "ubuntu:x:1000:\n", Identity{UID: 1000, GID: 1000},
			"work:x:1000:1000:U:/home/work:/bin/bash", "ubuntu:x:1000:"},
		{"no files at all", "", "", Identity{UID: 9001, GID: 9001},
			"work:x:9001:9001:User:/home/work:/bin/sh", "work:x:9001:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.passwd != "" {
				_ = os.MkdirAll(filepath.Join(root, "etc"), 0o755)
				_ = os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(tc.passwd), 0o644)
				_ = os.WriteFile(filepath.Join(root, "etc/group"), []byte(tc.group), 0o644)
			}
			extra, err := SetupUser(root, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			pw, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
			gr, _ := os.ReadFile(filepath.Join(root, "etc/group"))
			if !strings.Contains(string(pw), tc.wantUser+"\n") || strings.Count("\n"+string(pw), "\nwork:") != 1 {
				t.Errorf("passwd:\n%s", pw)
			}
			if !strings.Contains(string(gr), tc.wantGroup) || !strings.Contains(string(gr), "shadow:x:42:work") {
				t.Errorf("group:\n%s", gr)
			}
			for _, g := range tc.id.Additional {
				if !strings.Contains(string(gr), ":"+strconv.Itoa(g)+":work") {
					t.Errorf("additional gid %d missing:\n%s", g, gr)
				}
			}
			if len(extra) < 2 || extra[0] != 42 || extra[1] != 1002 {
				t.Errorf("supplementary groups %v", extra)
			}
			// Idempotent: a second run (a restarted container) changes nothing.
			if _, err := SetupUser(root, tc.id); err != nil {
				t.Fatal(err)
			}
			pw2, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
			gr2, _ := os.ReadFile(filepath.Join(root, "etc/group"))
			if string(pw2) != string(pw) || string(gr2) != string(gr) {
				t.Errorf("second run changed the files:\n%s\n%s", pw2, gr2)
			}
		})
	}
	if _, err := ParseIdentity(func(k string) string { return map[string]string{"LOCAL_USER_ID": "x"}[k] }); err == nil {
		t.Error("a bad uid accepted")
	}
}

func TestGrantSudo(t *testing.T) {
	root := t.TempDir()
	if err := GrantSudo(root); err != nil {
		t.Fatalf("an image without sudo: %v", err)
	}
	_ = os.MkdirAll(filepath.Join(root, "etc/sudoers.d"), 0o755)
	if err := GrantSudo(root); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/sudoers.d/01-bai-work")); string(b) != "work ALL=(ALL:ALL) NOPASSWD:ALL\n" {
		t.Fatalf("sudoers drop-in %q", b)
	}
}

// Without LOCAL_USER_ID the kernel runs as the image's own work user, or
// 1000: never as root, whoever the agent is.
func TestParseIdentityDefaultsToImageUser(t *testing.T) {
	root := t.TempDir()
	old := PasswdRoot
	PasswdRoot = root
	t.Cleanup(func() { PasswdRoot = old })
	none := func(string) string { return "" }
	for _, tc := range []struct {
		name, passwd string
		want         Identity
	}{
		{"no passwd", "", Identity{UID: 1000, GID: 1000}},
		{"work user", "root:x:0:0::/root:/bin/sh\nwork:x:1001:1002::/home/work:/bin/sh\n", Identity{UID: 1001, GID: 1002}},
		{"work is root", "work:x:0:0::/home/work:/bin/sh\n", Identity{UID: 1000, GID: 1000}},
		{"no work user", "root:x:0:0::/root:/bin/sh\nubuntu:x:1000:1000::/home/ubuntu:/bin/sh\n", Identity{UID: 1000, GID: 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.MkdirAll(filepath.Join(root, "etc"), 0o755)
			if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(tc.passwd), 0o644); err != nil {
				t.Fatal(err)
			}
			id, err := ParseIdentity(none)
			if err != nil || id.UID != tc.want.UID || id.GID != tc.want.GID {
				t.Fatalf("got %+v %v, want %+v", id, err, tc.want)
			}
		})
	}
	id, err := ParseIdentity(func(k string) string { return map[string]string{"LOCAL_USER_ID": "0", "LOCAL_GROUP_ID": "0"}[k] })
	if err != nil || id.UID != 0 || id.GID != 0 {
		t.Fatalf("an explicit uid 0 (configured or a sudo session): %+v %v", id, err)
	}
}
