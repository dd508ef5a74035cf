package krunner

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bai-agent/bai-agent/internal/fsutil"
	"github.com/bai-agent/bai-agent/internal/kuser"
)

// Identity is who the kernel's code runs as.
type Identity struct {
	UID, GID   int
	Additional []int
}

// PasswdRoot is the root whose etc/passwd names the image's own user
// (tests point it elsewhere).
var PasswdRoot = "/"

// ImageUser is the image's own unprivileged user (kuser.FromPasswd of
// root's etc/passwd): its "work" user, else 1000. Never root.
func ImageUser(root string) Identity {
	b, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	u, g := kuser.FromPasswd(b)
	return Identity{UID: u, GID: g}
}

// ParseIdentity reads LOCAL_USER_ID, LOCAL_GROUP_ID and ADDITIONAL_GIDS.
// Unset ids default to the image's own user (ImageUser): the agent leaves
// them unset rather than hand down its own root.
func ParseIdentity(getenv func(string) string) (Identity, error) {
	id := ImageUser(PasswdRoot)
	if v := getenv("LOCAL_USER_ID"); v != "" {
		n, err := kuser.ParseID(v)
		if err != nil {
			return id, fmt.Errorf("LOCAL_USER_ID: %w", err)
		}
		id.UID = n
	}
	if v := getenv("LOCAL_GROUP_ID"); v != "" {
		n, err := kuser.ParseID(v)
		if err != nil {
			return id, fmt.Errorf("LOCAL_GROUP_ID: %w", err)
		}
		id.GID = n
	}
	for _, g := range strings.Split(getenv("ADDITIONAL_GIDS"), ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		n, err := kuser.ParseID(g)
		if err != nil {
			return id, fmt.Errorf("ADDITIONAL_GIDS: %w", err)
		}
		id.Additional = append(id.Additional, n)
	}
	return id, nil
}

func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func writeLines(path string, lines []string) error {
	return fsutil.WriteFileAtomic(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// SetupUser makes the passwd and group files under root name the kernel
// user "work" with id's numbers, editing the files directly (images need
// no useradd, no shell): an existing entry with the uid/gid is renamed or
// kept, a "work" entry is renumbered, otherwise one is appended. It
// returns the supplementary groups to apply (42 shadow and 1002 grpread,
// as upstream, and the additional gids).
func SetupUser(root string, id Identity) ([]int, error) {
	passwd, group := filepath.Join(root, "etc/passwd"), filepath.Join(root, "etc/group")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		return nil, err
	}
	groups := readLines(group)
	setGroup := func(name string, gid int, member string) {
		for i, l := range groups {
			f := strings.Split(l, ":")
			if len(f) < 4 {
				continue
			}
			if f[2] == strconv.Itoa(gid) || (f[0] == name && name != "") {
				if f[0] == name || f[2] == strconv.Itoa(gid) {
					if name != "" && f[2] != strconv.Itoa(gid) {
						f[2] = strconv.Itoa(gid)
					}
					if member != "" && !strings.Contains(","+f[3]+",", ","+member+",") {
						if f[3] == "" {
							f[3] = member
						} else {
							f[3] += "," + member
						}
					}
					groups[i] = strings.Join(f, ":")
					return
				}
			}
		}
		if name == "" {
			name = "group" + strconv.Itoa(gid)
		}
		groups = append(groups, fmt.Sprintf("%s:x:%d:%s", name, gid, member))
	}
	// The primary group: the gid's own entry, else "work" renumbered,
	// else a new "work".
	primary := ""
	for _, l := range groups {
		if f := strings.Split(l, ":"); len(f) >= 3 && f[2] == strconv.Itoa(id.GID) {
			primary = f[0]
		}
	}
	if primary == "" {
		setGroup("work", id.GID, "")
	}
	extra := []int{42, 1002}
	extra = append(extra, id.Additional...)
	for _, g := range extra {
		name := ""
		switch g {
		case 42:
			name = "shadow"
		case 1002:
			name = "grpread"
		}
		// An existing group with this gid keeps its name.
		for _, l := range groups {
			if f := strings.Split(l, ":"); len(f) >= 3 && f[2] == strconv.Itoa(g) {
				name = ""
			}
		}
		if name != "" {
			exists := false
			for _, l := range groups {
				if strings.HasPrefix(l, name+":") {
					exists = true
				}
			}
			if exists {
				name = "" // a same-named group with another gid: add by number
			}
		}
		setGroup(name, g, "work")
	}
	if err := writeLines(group, groups); err != nil {
		return nil, err
	}
	shell := "/bin/sh"
	for _, s := range []string{"/bin/bash", "/bin/ash", "/bin/sh"} {
		if _, err := os.Stat(filepath.Join(root, s)); err == nil {
			shell = s
			break
		}
	}
	users := readLines(passwd)
	done := false
	for i, l := range users {
		f := strings.Split(l, ":")
		if len(f) < 7 {
			continue
		}
		if f[2] == strconv.Itoa(id.UID) {
			f[0], f[3], f[5] = "work", strconv.Itoa(id.GID), "/home/work"
			users[i] = strings.Join(f, ":")
			done = true
			break
		}
	}
	if !done {
		for i, l := range users {
			f := strings.Split(l, ":")
			if len(f) >= 7 && f[0] == "work" {
				f[2], f[3], f[5] = strconv.Itoa(id.UID), strconv.Itoa(id.GID), "/home/work"
				users[i] = strings.Join(f, ":")
				done = true
				break
			}
		}
	}
	if !done {
		users = append(users, fmt.Sprintf("work:x:%d:%d:User:/home/work:%s", id.UID, id.GID, shell))
	}
	// One "work" entry only: another user named work with a different uid
	// loses the name.
	seen := false
	for i, l := range users {
		f := strings.Split(l, ":")
		if len(f) >= 7 && f[0] == "work" {
			if seen || f[2] != strconv.Itoa(id.UID) {
				f[0] = "work-old" + strconv.Itoa(i)
				users[i] = strings.Join(f, ":")
				continue
			}
			seen = true
		}
	}
	if err := writeLines(passwd, users); err != nil {
		return nil, err
	}
	return extra, nil
}

// GrantSudo gives the work user passwordless sudo (a session with
// sudo_session_enabled): a drop-in under /etc/sudoers.d when the image
// has that directory, else a line in /etc/sudoers when it has that file.
// Images without sudo get nothing.
func GrantSudo(root string) error {
	const line = "work ALL=(ALL:ALL) NOPASSWD:ALL\n"
	if st, err := os.Stat(filepath.Join(root, "etc/sudoers.d")); err == nil && st.IsDir() {
		return os.WriteFile(filepath.Join(root, "etc/sudoers.d/01-bai-work"), []byte(line), 0o440)
	}
	p := filepath.Join(root, "etc/sudoers")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	if strings.Contains(string(b), line) {
		return nil
	}
	return os.WriteFile(p, append(b, line...), 0o440)
}
