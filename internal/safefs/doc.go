// Package safefs is the one way the host-root agent touches folders a
// kernel can change at any moment: its /home/work (the scratch work
// folder), the vfolders mounted there, and its scratch in general.
//
// Root in a sudo session can plant anything there between two system
// calls of the agent: symbolic links to host paths, FIFOs (an open(2)
// blocks for ever), sockets, character and block device nodes (the device
// cgroup binds the container, not the agent: opening a node the kernel
// made with mknod opens the host's device), hard links, and files swapped
// for larger ones after a size check. So every access here:
//
//   - resolves a path beneath an already open directory without following
//     a symbolic link in any component (openat2 with RESOLVE_BENEATH,
//     RESOLVE_NO_SYMLINKS and RESOLVE_NO_MAGICLINKS; a component-by-
//     component O_NOFOLLOW walk where the kernel has no openat2);
//   - opens the target with O_PATH first, which never blocks and never
//     runs a driver's open, fstats that descriptor, and refuses anything
//     but regular files and directories; only then reopens that same inode
//     (through /proc/self/fd, so a name swapped meanwhile does not matter)
//     with O_NONBLOCK|O_NOCTTY to read it;
//   - reads at most limit+1 bytes from the descriptor, whatever fstat said;
//   - writes by creating a new temporary file in the target's folder
//     (O_CREAT|O_EXCL|O_NOFOLLOW) and renaming it over the target: an
//     existing target is never opened for writing;
//   - is bounded by a deadline (Do): a read that hangs on a stuck FUSE
//     mount costs the caller its deadline, not its goroutine.
package safefs
