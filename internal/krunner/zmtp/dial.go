package zmtp

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
)

// Conn is one connection this side dialled to a socket a libzmq peer
// bound: a DEALER to a ROUTER or a SUB to a PUB, with the NULL mechanism.
// It is what a Jupyter client needs (the kernel binds, the client
// connects). There is no reconnection: a lost peer ends the Conn, and
// Recv reports the error.
type Conn struct {
	kind string
	c    net.Conn
	p    *peer
	in   chan [][]byte
	done chan struct{}
	err  error // set before in is closed
	once sync.Once
}

// Dial connects a DEALER or SUB socket to addr ("host:port", or
// "ipc://path" for a Unix socket). A SUB subscribes to every
// topic at once (ZMTP 3.0 subscription message), so the caller should
// confirm delivery with a round trip before relying on it, as libzmq's own
// subscriptions are asynchronous too.
func Dial(ctx context.Context, kind, addr string) (*Conn, error) {
	return DialIdentity(ctx, kind, addr, nil)
}

// DialIdentity is Dial announcing a routing identity to the peer (the
// ZMQ_IDENTITY of libzmq): a ROUTER then addresses this connection by it,
// as a Jupyter kernel sends input_request to the identity that sent the
// execute_request on shell.
func DialIdentity(ctx context.Context, kind, addr string, identity []byte) (*Conn, error) {
	want := map[string]string{"DEALER": "ROUTER", "SUB": "PUB"}[kind]
	if want == "" {
		return nil, fmt.Errorf("zmtp: unsupported dial socket type %q", kind)
	}
	network := "tcp"
	if p, ok := strings.CutPrefix(addr, "ipc://"); ok {
		network, addr = "unix", p
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	p, err := handshakeID(c, kind, want, nil, identity)
	if err != nil {
		c.Close()
		return nil, err
	}
	if kind == "SUB" {
		if err := p.send([][]byte{{0x01}}); err != nil {
			c.Close()
			return nil, err
		}
	}
	k := &Conn{kind: kind, c: c, p: p, in: make(chan [][]byte, 256), done: make(chan struct{})}
	go k.read()
	return k, nil
}

func (k *Conn) read() {
	defer close(k.in)
	for {
		msg, err := k.p.readMessage()
		if err != nil {
			k.err = err
			return
		}
		select {
		case k.in <- msg:
		case <-k.done:
			k.err = ErrClosed
			return
		}
	}
}

// Send sends one multipart message (a DEALER adds no envelope: the
// ROUTER on the other side prefixes the connection's identity itself).
func (k *Conn) Send(msg ...[]byte) error {
	if k.kind == "SUB" {
		return fmt.Errorf("zmtp: a SUB socket does not send messages")
	}
	return k.p.send(msg)
}

// Recv returns the next message, or the error that ended the connection.
func (k *Conn) Recv(ctx context.Context) ([][]byte, error) {
	select {
	case m, ok := <-k.in:
		if !ok {
			return nil, k.err
		}
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Messages is the channel Recv reads (closed when the connection ends),
// for callers that select over several connections.
func (k *Conn) Messages() <-chan [][]byte { return k.in }

// Close closes the connection.
func (k *Conn) Close() error {
	k.once.Do(func() {
		close(k.done)
		k.c.Close()
	})
	return nil
}
