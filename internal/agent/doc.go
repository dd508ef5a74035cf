// Package agent is the core: the kernel registry, the create, clean and
// restart operations, crash recovery, the engine's event watcher and the
// reconciling sync loop.
//
// Each kernel operation is a list of named steps (create_steps.go,
// destroy.go, restart.go) run by one loop (pipeline.go): a step that takes
// something has an undo, the undos of the steps that succeeded run in
// reverse when a later one fails, and the failed step is named in the
// error, the log and a metric. Adding a stage is adding a step.
//
// Ownership rules that keep the agent leak-free:
//   - every resource a creation takes (allocation, host ports, scratch,
//     container) is given back by its step's undo if a later step fails;
//   - every container carries ai.backend.owner = the agent id, so the agent
//     only ever touches its own containers, and recovery finds them all;
//   - lifecycle work on one kernel is serialized by a per-kernel lock, never
//     a global one, so one stuck kernel cannot stall another; the sync loop
//     only try-locks;
//   - every call to the container runtime has a deadline (deadlines.go).
//
// The core depends on backend.Backend only; it never sees Docker types,
// and internal/backend/fake stands in for Docker in the unit tier.
// Files: agent.go (registry, options), create*.go, container.go (the
// container spec and kernel files), results.go (creation results),
// destroy.go (destroy and CLEAN), restart.go, recovery.go (adoption at
// start), watch.go (events), sync.go (the sync loop), images.go (pulls,
// commits, pushes), files.go (a kernel's files), node.go (networks, host
// ports, accelerators), info.go (heartbeat and stat targets), volumes.go.
package agent
