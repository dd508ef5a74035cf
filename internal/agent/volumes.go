// Volume mounts the manager asks for (do_volume_mount/unmount).

package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// HandleVolume answers do_volume_mount / do_volume_unmount. With a
// cohabiting storage proxy the proxy owns the mount and the agent only
// acknowledges; otherwise it mounts {mount-path}/{dir_name}: a local
// directory is bind-mounted, anything else goes to mount(8) with the given
// type and options.
func (a *Agent) HandleVolume(ctx context.Context, mount bool, dirName, fsLocation, fsType, options string) (string, string) {
	if a.cfg.Agent.CohabitingStorageProxy {
		return "", ""
	}
	if err := safeName("dir_name", dirName); err != nil {
		return "", err.Error()
	}
	if a.cfg.Agent.MountPath == "" {
		return "", "agent.mount-path is not configured"
	}
	target := filepath.Join(a.cfg.Agent.MountPath, dirName)
	if !mount {
		if err := unix.Unmount(target, 0); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return target, fmt.Sprintf("umount %s: %v", target, err)
		}
		_ = os.Remove(target)
		return target, ""
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return target, err.Error()
	}
	if st, err := os.Stat(fsLocation); err == nil && st.IsDir() {
		if err := unix.Mount(fsLocation, target, "", unix.MS_BIND, ""); err != nil {
			return target, fmt.Sprintf("bind %s: %v", fsLocation, err)
		}
		return target, ""
	}
	args := []string{}
	if fsType != "" {
		args = append(args, "-t", fsType)
	}
	if options != "" {
		args = append(args, "-o", options)
	}
	args = append(args, fsLocation, target)
	if out, err := exec.CommandContext(ctx, "mount", args...).CombinedOutput(); err != nil {
		return target, fmt.Sprintf("mount %s: %v: %s", fsLocation, err, strings.TrimSpace(string(out)))
	}
	return target, ""
}
