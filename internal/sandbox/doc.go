// Package sandbox chooses the OCI runtime kernels run under ([container]
// sandbox-type, the image label ai.backend.sandbox-runtime) and proves at
// start-up that the engine can run a container with it.
//
// Strictness, weakest first: the engine's default runtime (runc) < crun <
// gVisor (runsc). An image may ask for a stricter runtime than the node's,
// never a weaker one: a weaker request gets the node's. A runtime name
// outside that order (kata, a runsc with other flags registered under its
// own name) cannot be ranked, so it counts as strict only where it is the
// node's own setting; an image asking for such a name elsewhere is refused.
package sandbox
