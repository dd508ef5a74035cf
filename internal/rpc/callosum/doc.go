// Package callosum is the Callosum RPC wire format that the Backend.AI
// manager and agent speak over ZeroMQ: header and body frames, message
// types, snappy-compressed bodies, and the meta of error replies. The
// agent's server (internal/rpc) and its client (internal/rpc/client) both
// build on it; neither imports the other.
package callosum
