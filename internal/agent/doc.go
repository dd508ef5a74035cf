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
//   - one goroutine owns each kernel (owner.go): creation, destroy,
//     restart, exits seen by the event stream or the sync loop, and the
//     sync loop's verdicts are typed messages to its inbox, handled one at
//     a time; nothing else changes a kernel's state, and one stuck kernel
//     cannot stall another;
//   - what a kernel is made of (KernelSpec) is built privately by its
//     creation and published whole through an atomic pointer; a restart
//     publishes a changed copy; readers take one snapshot and never see a
//     half-built kernel;
//   - every call to the container runtime has a deadline (deadlines.go).
//
// Agent is the composition of its parts, each with a small constructor
// and tests of its own: the registry (registry.go), the kernel owners
// (owner.go), the engine monitor (engine.go), the image service
// (images.go), session networks (networks.go), file calls (files.go) and
// runner operations (runner.go, model.go). The RPC roles call Agent,
// which promotes the parts' methods.
//
// The core depends on backend.Backend only; it never sees Docker types,
// and internal/backend/fake stands in for Docker in the unit tier.
// Files: agent.go (Kernel, KernelSpec, options, composition),
// create*.go, container.go (the container spec and kernel files),
// results.go (creation results), destroy.go (destroy and CLEAN),
// restart.go, recovery.go (adoption at start), watch.go (events),
// sync.go (the sync loop), node.go (host ports, accelerators), info.go
// (heartbeat and stat targets), volumes.go.
package agent
