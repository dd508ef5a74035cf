// Package rpc is the Callosum-compatible RPC server: the message codec
// (header and body frames, byte-compatible with callosum 1.0.3), the method
// table of the Backend.AI agent, argument binding from Backend.AI's
// msgpack values into the core's typed requests, and the mapping of Go
// errors to Python-style exception names, which happens here and nowhere
// else.
//
// The server never stops answering: malformed frames, unknown methods and
// wrong-typed arguments each get an ERROR or FAILURE reply (or are dropped
// when not even the request id can be read), and PING is always answered.
// Transport (ZeroMQ) lives in rpc/zmq; this package has no cgo.
package rpc
