package zmq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq4 "github.com/pebbe/zmq4"

	"github.com/bai-agent/bai-agent/internal/rpc"
)

var instance atomic.Uint64

// Transport is a bound ROUTER socket serving an rpc.Server.
type Transport struct {
	log     *slog.Logger
	srv     *rpc.Server
	addr    string
	router  *zmq4.Socket
	pull    *zmq4.Socket
	inproc  string
	replies chan [][]byte
	cancel  context.CancelFunc
	done    chan struct{}
	wg      sync.WaitGroup
	curve   *Curve
	trim    trimmer
}

// Listen binds addr ("host:port") and starts serving. With curve set the
// socket is a CURVE server in ZAP domain "local" that admits only the
// manager's key; without it, NULL security. Bind errors (port in use, bad
// address) are returned here, so start-up fails loudly.
func Listen(ctx context.Context, log *slog.Logger, addr string, srv *rpc.Server, curve *Curve) (*Transport, error) {
	t := &Transport{log: log, srv: srv, addr: addr, replies: make(chan [][]byte, 1024), done: make(chan struct{}), curve: curve, trim: newTrimmer()}
	t.inproc = fmt.Sprintf("inproc://bai-rpc-replies-%d", instance.Add(1))
	var err error
	if t.router, err = zmq4.NewSocket(zmq4.ROUTER); err != nil {
		return nil, fmt.Errorf("zmq router: %w", err)
	}
	if err := t.router.SetLinger(100 * time.Millisecond); err != nil {
		t.router.Close()
		return nil, err
	}
	// A frame far over the body limit is cut by libzmq before it is
	// buffered whole (a multi-GB frame from anyone who reaches the port,
	// kernels included through their bridge's gateway, would otherwise be
	// read into memory first); one a little over the limit still gets the
	// server's precise error.
	if err := t.router.SetMaxmsgsize(int64(4*srv.MaxBody() + 1<<20)); err != nil {
		t.router.Close()
		return nil, fmt.Errorf("zmq router: %w", err)
	}
	if curve != nil {
		if !zmq4.HasCurve() {
			t.router.Close()
			return nil, fmt.Errorf("rpc-auth keys are set but libzmq has no CURVE support")
		}
		onDeny := func(domain, key string) {
			log.Warn("rpc client refused: unknown CURVE key", "zap_domain", domain, "client_key", key)
		}
		if err := zapAllow(ZAPDomain, curve.ManagerPublic, onDeny); err != nil {
			t.router.Close()
			return nil, err
		}
		if err := t.router.ServerAuthCurve(ZAPDomain, curve.AgentSecret); err != nil {
			t.router.Close()
			zapRemove(ZAPDomain, curve.ManagerPublic)
			return nil, fmt.Errorf("CURVE server: %w", err)
		}
	}
	if err := t.router.Bind("tcp://" + addr); err != nil {
		t.router.Close()
		return nil, fmt.Errorf("bind rpc-listen-addr tcp://%s: %w", addr, err)
	}
	if t.pull, err = zmq4.NewSocket(zmq4.PULL); err != nil {
		t.router.Close()
		return nil, err
	}
	if err := t.pull.Bind(t.inproc); err != nil {
		t.router.Close()
		t.pull.Close()
		return nil, err
	}
	push, err := zmq4.NewSocket(zmq4.PUSH)
	if err != nil {
		t.router.Close()
		t.pull.Close()
		return nil, err
	}
	if err := push.Connect(t.inproc); err != nil {
		t.router.Close()
		t.pull.Close()
		push.Close()
		return nil, err
	}
	ctx, t.cancel = context.WithCancel(ctx)
	t.wg.Add(2)
	go t.sendLoop(ctx, push)
	go func() {
		defer t.wg.Done()
		t.trim.run(ctx)
	}()
	go t.serve(ctx)
	return t, nil
}

// Addr returns the bound address.
func (t *Transport) Addr() string { return t.addr }

// Close stops serving, waits for the socket goroutines and closes the
// sockets. In-flight handlers finish on their own; their replies are
// dropped.
func (t *Transport) Close() {
	t.cancel()
	<-t.done
	if t.curve != nil {
		zapRemove(ZAPDomain, t.curve.ManagerPublic)
	}
}

// sendLoop owns the PUSH end of the reply pipe.
func (t *Transport) sendLoop(ctx context.Context, push *zmq4.Socket) {
	defer t.wg.Done()
	defer push.Close()
	// A short linger lets the wake-up below reach serve's poller.
	_ = push.SetLinger(100 * time.Millisecond)
	for {
		select {
		case <-ctx.Done():
			// Wake serve (which polls with a long timeout, so that an idle
			// agent does not spin) to see that it is closing: a frame
			// alone, which no reply is.
			_, _ = push.SendBytes(nil, zmq4.DONTWAIT)
			return
		case msg := <-t.replies:
			if _, err := push.SendMessage(msg); err != nil {
				t.log.Error("rpc reply pipe", "error", err)
			}
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, zmq4.Errno(syscall.EINTR)) || errors.Is(err, zmq4.Errno(syscall.EAGAIN))
}

// pollTimeout bounds serve's wait when nothing wakes it. Short timeouts
// cost an idle process a wake-up per agent every tick (15 agents polling
// every 100 ms were half a percent of a core).
const pollTimeout = time.Second

// serve owns the ROUTER socket and the PULL end of the reply pipe.
func (t *Transport) serve(ctx context.Context) {
	defer close(t.done)
	defer func() {
		t.wg.Wait()
		t.pull.Close()
		t.router.Close()
	}()
	poller := zmq4.NewPoller()
	poller.Add(t.router, zmq4.POLLIN)
	poller.Add(t.pull, zmq4.POLLIN)
	for ctx.Err() == nil {
		// Replies and closing wake the poller through the pull socket; the
		// timeout only bounds a wake-up that was lost.
		polled, err := poller.Poll(pollTimeout)
		if err != nil {
			if retryable(err) {
				continue
			}
			t.log.Error("rpc poll", "error", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for _, p := range polled {
			switch p.Socket {
			case t.router:
				for {
					frames, err := t.router.RecvMessageBytes(zmq4.DONTWAIT)
					if err != nil {
						break
					}
					t.incoming(ctx, frames)
				}
			case t.pull:
				for {
					frames, err := t.pull.RecvMessageBytes(zmq4.DONTWAIT)
					if err != nil {
						break
					}
					if len(frames) < 2 {
						continue // sendLoop's wake-up
					}
					if _, err := t.router.SendMessage(frames); err != nil && !retryable(err) {
						t.log.Warn("rpc send reply", "error", err)
					}
				}
			}
		}
	}
}

// incoming handles one message from the ROUTER: [peer..., kind, header, body].
func (t *Transport) incoming(ctx context.Context, frames [][]byte) {
	size := 0
	for _, f := range frames {
		size += len(f)
	}
	if size >= largeMessage {
		t.trim.sawLarge()
	}
	n := len(frames)
	if n < 4 {
		// Fewer than identity + 3 frames: callosum ignores these too.
		return
	}
	pre := frames[:n-3]
	kind, hdr, body := string(frames[n-3]), frames[n-2], frames[n-1]
	switch kind {
	case "PING":
		reply := append(append([][]byte{}, pre...), []byte("PONG"), hdr, body)
		if _, err := t.router.SendMessage(reply); err != nil {
			t.log.Warn("rpc pong", "error", err)
		}
	case "UPPER":
		peer := pre[0]
		if t.srv.IsInline(hdr) {
			if out := t.srv.HandleMessage(ctx, peer, hdr, body); out != nil {
				if _, err := t.router.SendMessage(append(append([][]byte{}, pre...), out...)); err != nil {
					t.log.Warn("rpc send reply", "error", err)
				}
			}
			return
		}
		go func() {
			out := t.srv.HandleMessage(ctx, peer, hdr, body)
			if out == nil {
				return
			}
			msg := append(append([][]byte{}, pre...), out...)
			select {
			case t.replies <- msg:
			case <-ctx.Done():
			}
		}()
	}
}
