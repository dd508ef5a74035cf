// Package agent is the core: the kernel registry, the create, destroy and
// restart pipelines, crash recovery, the Docker event watcher and the
// reconciling sync loop.
//
// Ownership rules that keep the agent leak-free:
//   - every resource a creation takes (allocation, host ports, scratch,
//     container) is pushed on an undo stack and released in reverse order
//     if any later step fails;
//   - every container carries ai.backend.owner = the agent id, so the agent
//     only ever touches its own containers, and recovery finds them all;
//   - lifecycle work on one kernel is serialized by a per-kernel lock, never
//     a global one, so one stuck kernel cannot stall another.
//
// The core depends on backend.Backend only; it never sees Docker types.
package agent
