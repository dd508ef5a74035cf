// Volume mounts the manager asks for (do_volume_mount/unmount): a thin
// adapter from the agent's configuration to internal/volumes.

package agent

import (
	"context"
	"path/filepath"
	"time"

	"github.com/bai-agent/bai-agent/internal/volumes"
)

// VolumeRequest is one do_volume_mount (Mount) or do_volume_unmount.
type VolumeRequest struct {
	Mount                          bool
	DirName                        string
	FSLocation, FSType, CmdOptions string
	EditFstab                      bool
	FstabPath                      string
}

// HandleVolumeRequest answers do_volume_mount / do_volume_unmount and
// returns the mount path and an error message ("" on success). With a
// cohabiting storage proxy the proxy owns the mount and the agent only
// acknowledges (mount path ""), as upstream. Otherwise it works on
// {mount-path}/{dir_name}: an existing mount point is a success, as is
// unmounting one that is not mounted; each command runs under
// [agent] volume-mount-timeout / volume-unmount-timeout; the mount point
// is chowned to [agent] mount-path-uid-gid when set.
func (a *Agent) HandleVolumeRequest(ctx context.Context, r VolumeRequest) (string, string) {
	if a.cfg.Agent.CohabitingStorageProxy {
		return "", ""
	}
	if err := safeName("dir_name", r.DirName); err != nil {
		return "", err.Error()
	}
	if a.cfg.Agent.MountPath == "" {
		return "", "agent.mount-path is not configured"
	}
	target := filepath.Join(a.cfg.Agent.MountPath, r.DirName)
	o := volumes.Options{
		MountTimeout:   time.Duration(float64(a.cfg.Agent.VolumeMountTimeout) * float64(time.Second)),
		UnmountTimeout: time.Duration(float64(a.cfg.Agent.VolumeUnmountTimeout) * float64(time.Second)),
		OwnerUIDGID:    a.cfg.Agent.MountPathUIDGID,
		Log:            a.log.With("dir_name", r.DirName),
	}
	var err error
	if r.Mount {
		_, err = volumes.Mount(ctx, o, volumes.MountRequest{
			Target: target, FSLocation: r.FSLocation, FSType: r.FSType, Options: r.CmdOptions,
			EditFstab: r.EditFstab, FstabPath: r.FstabPath,
		})
	} else {
		_, err = volumes.Unmount(ctx, o, target, r.EditFstab, r.FstabPath)
	}
	if err != nil {
		return target, err.Error()
	}
	return target, ""
}
