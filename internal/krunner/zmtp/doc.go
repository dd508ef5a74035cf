// Package zmtp is a small pure-Go ZMTP 3.0 implementation of what the
// kernel runner needs: bind-side PULL and PUSH sockets with the NULL
// mechanism, talking to libzmq (the agent's pebbe/zmq4, pyzmq) on the
// other end. It keeps the runner a static binary with no libzmq in the
// image.
//
// PULL accepts any number of peers and hands their messages over in
// arrival order. PUSH sends to the newest connected peer (the runner has
// one agent; an older connection is one it left behind on a restart) and,
// with no peer, queues (bounded) instead of dropping, as libzmq's blocking
// send does, so replies survive an agent restart between request and
// answer.
package zmtp
