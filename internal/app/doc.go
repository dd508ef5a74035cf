// Package app wires the agent together for start-server: configuration,
// logging, the Docker backend, the core and the RPC transport, and runs
// them until a signal arrives.
package app
