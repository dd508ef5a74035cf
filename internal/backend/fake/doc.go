// Package fake is an in-memory container runtime for the core's unit
// tier: containers with states, labels, ports and exit codes, an event
// stream, images, and per-call injectable failures, delays and hangs, so
// every step of a kernel's life can be made to fail in turn without
// Docker. It is for tests; nothing in the agent's binary uses it.
package fake
