package coderunner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	zmq "github.com/pebbe/zmq4"
	"golang.org/x/sys/unix"
)

// Limits, as the reference agent's.
const (
	MaxRecord   = 10 << 20 // bytes of one stdout/stderr record
	RunQueue    = 4096     // records a run holds before dropping
	StatusEvery = 10 * time.Second
)

// ErrClosed is returned once the client is closed.
var ErrClosed = errors.New("code runner connection closed")

// Record is one output record of a run.
type Record struct {
	Type string
	Data string
}

type run struct {
	id     string
	q      chan Record
	active chan struct{}
	dec    map[string][]byte // held-back partial UTF-8 per stream
}

// Client talks to one kernel's runner.
type Client struct {
	log    *slog.Logger
	send   chan [][]byte
	status chan []byte
	compl  chan []byte
	apps   chan []byte
	svc    chan []byte
	model  chan []byte
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	// One exchange per reply kind at a time (replies are matched FIFO);
	// kinds do not wait for each other, so a 35 s service start does not
	// hold up ping_kernel.
	statusMu, complMu, appsMu, svcMu, modelMu sync.Mutex
	// wakeR/wakeW wake the socket goroutine when something is queued.
	wakeR, wakeW *os.File

	mu      sync.Mutex
	current *run
	waiters []*run
	runs    map[string]*run
}

// Curve is what the agent needs to talk CurveZMQ to one kernel's runner
// (Z85 keys): the runner's server key and the client keypair the runner
// accepts, and no other.
type Curve struct {
	ServerPublic, ClientPublic, ClientSecret string
}

// Dial connects to the runner at host (the request and output host
// ports) with the NULL mechanism, for a runner that has no keys (one the
// Python agent started). Nothing is exchanged yet: libzmq queues until
// the runner binds.
func Dial(host string, inPort, outPort int, log *slog.Logger) (*Client, error) {
	return DialCurve(host, inPort, outPort, nil, log)
}

// DialCurve is Dial as a CurveZMQ client with cv's keys (nil: NULL).
func DialCurve(host string, inPort, outPort int, cv *Curve, log *slog.Logger) (*Client, error) {
	ctx, err := zmq.NewContext()
	if err != nil {
		return nil, err
	}
	push, err := ctx.NewSocket(zmq.PUSH)
	if err != nil {
		ctx.Term()
		return nil, err
	}
	pull, err := ctx.NewSocket(zmq.PULL)
	if err != nil {
		push.Close()
		ctx.Term()
		return nil, err
	}
	for _, s := range []*zmq.Socket{push, pull} {
		_ = s.SetLinger(50 * time.Millisecond)
		// The host port answers (docker-proxy) before the runner binds in
		// the container: retry soon, not after libzmq's default 100 ms,
		// which would add up to that to every kernel's start.
		_ = s.SetReconnectIvl(10 * time.Millisecond)
		_ = s.SetReconnectIvlMax(500 * time.Millisecond)
		if cv != nil {
			// Set before Connect: libzmq fixes the mechanism per connection.
			for _, err := range []error{s.SetCurveServerkey(cv.ServerPublic), s.SetCurvePublickey(cv.ClientPublic), s.SetCurveSecretkey(cv.ClientSecret)} {
				if err != nil {
					push.Close()
					pull.Close()
					ctx.Term()
					return nil, fmt.Errorf("runner CURVE keys: %w", err)
				}
			}
		}
	}
	if err := push.Connect(fmt.Sprintf("tcp://%s:%d", host, inPort)); err != nil {
		push.Close()
		pull.Close()
		ctx.Term()
		return nil, err
	}
	if err := pull.Connect(fmt.Sprintf("tcp://%s:%d", host, outPort)); err != nil {
		push.Close()
		pull.Close()
		ctx.Term()
		return nil, err
	}
	wakeR, wakeW, err := os.Pipe()
	if err != nil {
		push.Close()
		pull.Close()
		ctx.Term()
		return nil, err
	}
	_ = unix.SetNonblock(int(wakeW.Fd()), true)
	_ = unix.SetNonblock(int(wakeR.Fd()), true)
	c := &Client{log: log, send: make(chan [][]byte, 256), status: make(chan []byte, 128), compl: make(chan []byte, 8),
		apps: make(chan []byte, 8), svc: make(chan []byte, 8), model: make(chan []byte, 8), done: make(chan struct{}), runs: map[string]*run{}, wakeR: wakeR, wakeW: wakeW}
	c.wg.Add(1)
	go c.loop(ctx, push, pull)
	return c, nil
}

// loop owns both sockets. It sleeps in poll(2) on the output socket's
// ZMQ_FD and a wake pipe that enqueue writes to, so a request leaves at
// once and a reply is read at once, without busy polling.
func (c *Client) loop(ctx *zmq.Context, push, pull *zmq.Socket) {
	defer c.wg.Done()
	defer ctx.Term()
	defer pull.Close()
	defer push.Close()
	defer c.wakeR.Close()
	fd, err := pull.GetFd()
	if err != nil {
		c.log.Error("runner socket has no descriptor", "error", err)
		return
	}
	buf := make([]byte, 64)
	// A status every 10 s for the kernel's lifetime, as upstream's
	// ping_status: it keeps NAT and proxy paths alive; the replies land in
	// the status queue, which an exchange drains before it asks.
	nextPing := time.Now().Add(StatusEvery)
	for {
		select {
		case <-c.done:
			return
		default:
		}
		if time.Now().After(nextPing) {
			nextPing = time.Now().Add(StatusEvery)
			if c.statusMu.TryLock() {
				_, _ = push.SendMessage("status", "")
				c.statusMu.Unlock()
			}
		}
		for drained := false; !drained; {
			select {
			case m := <-c.send:
				if _, err := push.SendMessage(m[0], m[1]); err != nil {
					c.log.Warn("send to the runner failed", "error", err)
				}
			default:
				drained = true
			}
		}
		// ZMQ_FD is edge-triggered: read until ZMQ_EVENTS says empty.
		for {
			ev, err := pull.GetEvents()
			if err != nil || ev&zmq.POLLIN == 0 {
				break
			}
			msg, err := pull.RecvMessageBytes(zmq.DONTWAIT)
			if err != nil {
				break
			}
			if len(msg) == 2 {
				c.dispatch(string(msg[0]), msg[1])
			}
		}
		if len(c.send) > 0 {
			continue
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(c.wakeR.Fd()), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, 1000); err != nil && !errors.Is(err, unix.EINTR) {
			c.log.Warn("runner poll failed", "error", err)
			time.Sleep(10 * time.Millisecond)
		}
		if pfd[1].Revents&unix.POLLIN != 0 {
			_, _ = c.wakeR.Read(buf)
		}
	}
}

func offer(ch chan []byte, b []byte) {
	select {
	case ch <- b:
	default:
	}
}

func (c *Client) dispatch(kind string, data []byte) {
	switch kind {
	case "status":
		offer(c.status, data)
		return
	case "completion":
		offer(c.compl, data)
		return
	case "apps-result":
		offer(c.apps, data)
		return
	case "service-result":
		offer(c.svc, data)
		return
	case "model-service-result":
		offer(c.model, data)
		return
	case "model-service-status":
		// Health changes of a model service: the agent does not act on
		// them (nor does upstream's); they are logged.
		c.log.Info("model service health", "status", string(data))
		return
	}
	c.mu.Lock()
	r := c.current
	c.mu.Unlock()
	if r == nil {
		return // no run attached: the reference drops it too
	}
	var text string
	switch kind {
	case "stdout", "stderr":
		if len(data) > MaxRecord {
			data = data[:MaxRecord]
		}
		text = r.decode(kind, data, false)
		if text == "" {
			return
		}
	default:
		text = string(data)
	}
	if kind == "finished" || kind == "build-finished" {
		for _, s := range []string{"stdout", "stderr"} {
			if rest := r.decode(s, nil, true); rest != "" {
				select {
				case r.q <- Record{s, rest}:
				default:
				}
			}
		}
	}
	select {
	case r.q <- Record{kind, text}:
	default: // full: dropped, as the reference's QueueFull
	}
}

// decode is an incremental UTF-8 decoder per stream: a rune split across
// records is held back; invalid bytes become U+FFFD.
func (r *run) decode(stream string, data []byte, flush bool) string {
	buf := append(r.dec[stream], data...)
	r.dec[stream] = nil
	end := len(buf)
	if !flush {
		// Hold back an incomplete rune at the end (at most 3 bytes).
		for k := 1; k <= 3 && k <= len(buf); k++ {
			b := buf[len(buf)-k]
			if b&0xC0 == 0x80 {
				continue // continuation byte: look further back
			}
			if b >= 0xC0 {
				need := 2
				if b >= 0xE0 {
					need = 3
				}
				if b >= 0xF0 {
					need = 4
				}
				if k < need {
					end = len(buf) - k
				}
			}
			break
		}
	}
	if end < len(buf) {
		r.dec[stream] = append([]byte{}, buf[end:]...)
	}
	out := buf[:end]
	if utf8.Valid(out) {
		return string(out)
	}
	return string([]rune(string(out))) // invalid bytes become U+FFFD
}

func (c *Client) enqueue(kind, payload string) error {
	select {
	case <-c.done:
		return ErrClosed
	case c.send <- [][]byte{[]byte(kind), []byte(payload)}:
		c.wake()
		return nil
	}
}

// wake interrupts the loop's poll; a full pipe means a wake is pending.
func (c *Client) wake() { _, _ = c.wakeW.Write([]byte{1}) }

func (c *Client) exchange(ctx context.Context, mu *sync.Mutex, kind, payload string, reply chan []byte) ([]byte, error) {
	mu.Lock()
	defer mu.Unlock()
	// A reply left from an abandoned exchange would answer this one.
	for len(reply) > 0 {
		<-reply
	}
	if err := c.enqueue(kind, payload); err != nil {
		return nil, err
	}
	select {
	case b := <-reply:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, ErrClosed
	}
}

// Status asks for the runner's status and returns its started_at.
func (c *Client) Status(ctx context.Context) (float64, error) {
	b, err := c.exchange(ctx, &c.statusMu, "status", "", c.status)
	if err != nil {
		return 0, err
	}
	return parseStartedAt(b)
}

// Apps asks for the runner's service apps (get-apps).
func (c *Client) Apps(ctx context.Context) (map[string]any, error) {
	b, err := c.exchange(ctx, &c.appsMu, "get-apps", "", c.apps)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("apps-result: %w", err)
	}
	return m, nil
}

// Complete asks for completions.
func (c *Client) Complete(ctx context.Context, code string, opts map[string]any) ([]any, error) {
	req := map[string]any{}
	for k, v := range opts {
		req[k] = v
	}
	req["code"] = code
	body, _ := json.Marshal(req)
	b, err := c.exchange(ctx, &c.complMu, "complete", string(body), c.compl)
	if err != nil {
		return nil, err
	}
	var m struct {
		Suggestions []any `json:"suggestions"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("completion: %w", err)
	}
	if m.Suggestions == nil {
		m.Suggestions = []any{}
	}
	return m.Suggestions, nil
}

// StartService asks the runner to start a service and returns its
// service-result.
func (c *Client) StartService(ctx context.Context, req map[string]any) (map[string]any, error) {
	body, _ := json.Marshal(req)
	b, err := c.exchange(ctx, &c.svcMu, "start-service", string(body), c.svc)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("service-result: %w", err)
	}
	return m, nil
}

// StartModelService asks the runner to start a model's service
// (start-model-service) and returns its model-service-result.
func (c *Client) StartModelService(ctx context.Context, model any) (map[string]any, error) {
	body, err := json.Marshal(model)
	if err != nil {
		return nil, err
	}
	b, err := c.exchange(ctx, &c.modelMu, "start-model-service", string(body), c.model)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("model-service-result: %w", err)
	}
	return m, nil
}

// ShutdownService stops a service (no reply).
func (c *Client) ShutdownService(name string) error {
	b, _ := json.Marshal(name)
	return c.enqueue("shutdown-service", string(b))
}

// Interrupt sends SIGINT to what runs (no reply).
func (c *Client) Interrupt() error { return c.enqueue("interrupt", "") }

// Event notifies the runner (an OOM kill).
func (c *Client) Event(kind string, data map[string]any) error {
	b, _ := json.Marshal(map[string]any{"type": kind, "data": data})
	return c.enqueue("event", string(b))
}

// Close stops the socket goroutine.
func (c *Client) Close() {
	c.once.Do(func() {
		close(c.done)
		c.wake()
	})
	c.wg.Wait()
	c.wakeW.Close()
}

// NewRunID is a fresh run id (32 hex digits).
func NewRunID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
