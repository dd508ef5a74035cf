// Package volumes mounts and unmounts the storage volumes the manager
// asks agents for (do_volume_mount / do_volume_unmount), so that a hung
// network filesystem cannot wedge the agent.
//
// The facts follow Backend.AI's common.utils mount/umount and Fstab:
//
//   - A mount point that is already mounted is left alone and reported as
//     a success; unmounting one that is not mounted succeeds too. "Mounted"
//     is read from /proc/self/mountinfo, which never touches the mounted
//     filesystem (a stat of a dead NFS mount would block).
//   - mount(8), umount(8) and chown(1) run as child processes under a
//     deadline, in their own process group, killed when it passes. Should a
//     child not die (a process in uninterruptible sleep on a dead server),
//     the caller is answered at the deadline anyway and the child is reaped
//     in the background; until it exits, further requests for the same
//     mount point fail at once instead of piling up more stuck processes.
//   - With edit_fstab the fstab line "fs_location mount_point fs_type
//     options 0 0" is added after a mount (unless a line for the same
//     device exists) and the lines for the mount point are removed after an
//     unmount. The file is rewritten through a temporary file and a rename,
//     under a lock, and every other line is kept byte for byte.
//
// Serial orders requests per key (the mount point) and runs different
// keys in parallel, so one slow unmount never delays another volume.
package volumes
