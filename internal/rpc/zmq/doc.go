// Package zmq is the ZeroMQ transport of the RPC server (cgo, libzmq via
// github.com/pebbe/zmq4, the same engine pyzmq uses, so ZMTP behaviour
// matches the manager's).
//
// One goroutine owns the ROUTER socket: it answers PING at once, hands
// UPPER messages to the rpc.Server on goroutines of their own (handlers run
// concurrently, replies leave in completion order), and sends the replies
// those goroutines produce. Replies reach it through an inproc PUSH/PULL
// pair whose PUSH end is owned by a second goroutine fed by a channel, so
// no socket is ever touched by two goroutines.
package zmq
