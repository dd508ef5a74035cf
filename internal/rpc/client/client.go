// Package client is a minimal Callosum client (what the manager's
// PeerInvoker does): a DEALER socket, the PING/PONG handshake, and
// synchronous calls. It serves the benchmarks and tools; a Client is owned
// by one goroutine, like the socket inside it.
package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bai-agent/bai-agent/internal/rpc/callosum"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// RemoteError is a FAILURE or ERROR reply.
type RemoteError struct {
	Type      int64
	Name      string
	Repr      string
	Traceback string
}

func (e *RemoteError) Error() string { return e.Repr }

// ErrNoHandshake means the server did not answer PING in time (wrong
// address, server down, or CURVE keys refused: they look the same).
var ErrNoHandshake = errors.New("no PONG from the agent")

// Client is a connected Callosum client.
type Client struct {
	sock *zmq4.Socket
	seq  uint32
}

// Curve are a client's CURVE keys (Z85): the agent's public key and the
// client's (manager's) keypair.
type Curve struct {
	ServerPublic string
	Public       string
	Secret       string
}

// Dial connects to addr ("tcp://host:port") and performs the handshake.
// curve nil means NULL security.
func Dial(addr string, timeout time.Duration, curve *Curve) (*Client, error) {
	s, err := zmq4.NewSocket(zmq4.DEALER)
	if err != nil {
		return nil, err
	}
	_ = s.SetLinger(100 * time.Millisecond)
	if curve != nil {
		if err := s.ClientAuthCurve(curve.ServerPublic, curve.Public, curve.Secret); err != nil {
			s.Close()
			return nil, fmt.Errorf("CURVE client keys: %w", err)
		}
	}
	if err := s.Connect(addr); err != nil {
		s.Close()
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	c := &Client{sock: s}
	if _, err := s.SendMessage("PING", "", ""); err != nil {
		s.Close()
		return nil, err
	}
	frames, err := c.recv(timeout)
	if err != nil || len(frames) == 0 || string(frames[0]) != "PONG" {
		s.Close()
		return nil, fmt.Errorf("%w at %s within %s", ErrNoHandshake, addr, timeout)
	}
	return c, nil
}

// Close closes the socket.
func (c *Client) Close() error { return c.sock.Close() }

func (c *Client) recv(timeout time.Duration) ([][]byte, error) {
	p := zmq4.NewPoller()
	p.Add(c.sock, zmq4.POLLIN)
	polled, err := p.Poll(timeout)
	if err != nil {
		return nil, err
	}
	if len(polled) == 0 {
		return nil, context.DeadlineExceeded
	}
	return c.sock.RecvMessageBytes(0)
}

// Call invokes meth and returns the decoded result. On ctx expiry it sends
// CANCEL, as callosum does, and returns ctx's error.
func (c *Client) Call(ctx context.Context, meth string, args []any, kwargs map[string]any) (any, error) {
	seq := int64(c.seq)
	c.seq++
	h := callosum.Header{Type: callosum.TypeFunction, Meth: meth, Okey: []byte{}, Seq: seq}
	hb, err := callosum.EncodeHeader(h)
	if err != nil {
		return nil, err
	}
	if args == nil {
		args = []any{}
	}
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	payload, err := msgpack.Marshal(map[string]any{"args": args, "kwargs": kwargs})
	if err != nil {
		return nil, fmt.Errorf("encode %s arguments: %w", meth, err)
	}
	if _, err := c.sock.SendMessage("UPPER", hb, callosum.EncodeBody([]byte{}, payload)); err != nil {
		return nil, err
	}
	for {
		wait := time.Hour
		if dl, ok := ctx.Deadline(); ok {
			wait = time.Until(dl)
		}
		if wait > 200*time.Millisecond {
			wait = 200 * time.Millisecond
		}
		if wait <= 0 {
			// A negative poll timeout means "forever" to ZeroMQ: a call whose
			// deadline passed while it waited would never return.
			wait = time.Millisecond
		}
		frames, err := c.recv(wait)
		if errors.Is(err, context.DeadlineExceeded) {
			if ctx.Err() != nil {
				h.Type = callosum.TypeCancel
				if cb, e := callosum.EncodeHeader(h); e == nil {
					_, _ = c.sock.SendMessage("UPPER", cb, callosum.EncodeBody([]byte{0x90}, nil))
				}
				return nil, ctx.Err()
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(frames) < 3 {
			continue
		}
		rh, _, err := callosum.DecodeHeader(frames[len(frames)-2])
		if err != nil {
			return nil, err
		}
		if rh.MethodName() != meth || fmt.Sprint(rh.Seq) != fmt.Sprint(seq) {
			continue // a late reply to an earlier, cancelled call
		}
		body, err := callosum.DecodeBody(frames[len(frames)-1], rh.Zip)
		if err != nil {
			return nil, err
		}
		switch rh.Type {
		case callosum.TypeResult:
			return wire.Decode(body.Payload)
		case callosum.TypeCancelled:
			return nil, context.Canceled
		default:
			re := &RemoteError{Type: rh.Type}
			if m, err := msgpack.Unmarshal(body.Meta, nil); err == nil {
				if l, ok := m.([]any); ok && len(l) == 3 {
					re.Name, _ = l[0].(string)
					re.Repr, _ = l[1].(string)
					re.Traceback, _ = l[2].(string)
				}
			}
			return nil, re
		}
	}
}
