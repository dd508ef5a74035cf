// Package scratch manages each kernel's scratch directory
// {scratch-root}/{kernel_id} with config/ (read-only at /home/config) and
// work/ (read-write at /home/work), in three flavours:
//
//   - hostdir: a plain directory;
//   - memory: a tmpfs of scratch-size on the directory, plus {kid}_tmp for
//     /tmp;
//   - hostfile: a sparse {kid}.img of scratch-size formatted ext4 and
//     loop-mounted on the directory, so the size is a hard quota.
//
// Create rolls back everything it did when a step fails, Remove is
// idempotent (it also finishes a half-done create or remove left by a
// SIGKILL), and Check proves at start-up that the host can do what the
// configured type needs, instead of failing at the first kernel.
package scratch
