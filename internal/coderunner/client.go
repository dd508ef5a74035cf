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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	zmq "github.com/pebbe/zmq4"
	"golang.org/x/sys/unix"
)

// Limits: the first two as the reference agent's; the byte limits are
// ours, because the runner is the kernel's and the agent is the host's: a
// run that prints faster than the manager collects, or displays 250 MiB
// of HTML, must not grow the agent without bound.
const (
	MaxRecord   = 10 << 20 // bytes of one record (stdout/stderr cut, others dropped)
	RunQueue    = 4096     // records a run holds before dropping
	StatusEvery = 10 * time.Second
	// RunQueueBytes bounds what one run holds for its next execute call;
	// past it records are dropped (and the next reply says how much).
	RunQueueBytes = 64 << 20
	// MaxReply bounds the records one execute call returns: the rest
	// stays queued for the next "continue".
	MaxReply = 16 << 20
	// maxFrame is the largest frame the agent's socket takes from a
	// runner; libzmq drops the connection of a peer that sends more
	// (the runner's PUSH connects again).
	maxFrame = MaxRecord + 1<<20
	// sendQueue bounds what libzmq holds for a runner that does not read
	// (stopped, or gone while the engine cannot say).
	sendQueue = 256
	// recvQueue bounds the runner's messages libzmq holds for the loop.
	recvQueue = 16
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
	queued atomic.Int64 // bytes in q
	// dropped counts the bytes of records dropped since the last reply.
	dropped atomic.Int64
	active  chan struct{}
	dec     map[string][]byte // held-back partial UTF-8 per stream
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
	// pings counts keep-alive status pings sent since the last status
	// reply.
	pings atomic.Int32
	// fdw is where the socket goroutine sleeps; wake interrupts it.
	fdw *fdWait

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

// sharedContext is the libzmq context of every runner client of the
// process. A context per client cost each kernel two more OS threads
// (libzmq's I/O thread and reaper) and their descriptors, for sockets that
// carry little; one context's I/O thread serves them all. It is never
// terminated: clients close their sockets (50 ms linger). libzmq's
// default limit of 1023 sockets per context would cap a node at about 500
// kernels.
var sharedContext = sync.OnceValues(func() (*zmq.Context, error) {
	ctx, err := zmq.NewContext()
	if err != nil {
		return nil, err
	}
	if err := ctx.SetMaxSockets(1 << 16); err != nil {
		return nil, fmt.Errorf("runner sockets: %w", err)
	}
	return ctx, nil
})

// DialCurve is Dial as a CurveZMQ client with cv's keys (nil: NULL).
func DialCurve(host string, inPort, outPort int, cv *Curve, log *slog.Logger) (*Client, error) {
	ctx, err := sharedContext()
	if err != nil {
		return nil, err
	}
	var socks []*zmq.Socket
	handedOver := false
	defer func() {
		if !handedOver { // an error below: nothing is left open
			for _, s := range socks {
				s.Close()
			}
		}
	}()
	for _, kind := range []zmq.Type{zmq.PUSH, zmq.PULL} {
		s, err := ctx.NewSocket(kind)
		if err != nil {
			return nil, err
		}
		socks = append(socks, s)
		_ = s.SetLinger(50 * time.Millisecond)
		// The host port answers (docker-proxy) before the runner binds in
		// the container: retry soon, not after libzmq's default 100 ms,
		// which would add up to that to every kernel's start.
		_ = s.SetReconnectIvl(10 * time.Millisecond)
		_ = s.SetReconnectIvlMax(500 * time.Millisecond)
		switch kind {
		case zmq.PULL:
			// Frames over maxFrame drop the connection; at most
			// recvQueue whole messages wait in libzmq for the loop.
			if err := s.SetMaxmsgsize(maxFrame); err != nil {
				return nil, fmt.Errorf("runner socket: %w", err)
			}
			if err := s.SetRcvhwm(recvQueue); err != nil {
				return nil, fmt.Errorf("runner socket: %w", err)
			}
		case zmq.PUSH:
			if err := s.SetSndhwm(sendQueue); err != nil {
				return nil, fmt.Errorf("runner socket: %w", err)
			}
		}
		if cv != nil {
			// Set before Connect: libzmq fixes the mechanism per connection.
			for _, err := range []error{s.SetCurveServerkey(cv.ServerPublic), s.SetCurvePublickey(cv.ClientPublic), s.SetCurveSecretkey(cv.ClientSecret)} {
				if err != nil {
					return nil, fmt.Errorf("runner CURVE keys: %w", err)
				}
			}
		}
	}
	push, pull := socks[0], socks[1]
	if err := push.Connect(fmt.Sprintf("tcp://%s:%d", host, inPort)); err != nil {
		return nil, err
	}
	if err := pull.Connect(fmt.Sprintf("tcp://%s:%d", host, outPort)); err != nil {
		return nil, err
	}
	w, err := newFdWait(pull)
	if err != nil {
		return nil, err
	}
	handedOver = true // the loop owns and closes them
	c := &Client{log: log, send: make(chan [][]byte, 256), status: make(chan []byte, 128), compl: make(chan []byte, 8),
		apps: make(chan []byte, 8), svc: make(chan []byte, 8), model: make(chan []byte, 8), done: make(chan struct{}), runs: map[string]*run{},
		fdw: w}
	c.wg.Add(1)
	go c.loop(push, pull)
	return c, nil
}

// fdWait waits for a socket's ZMQ_FD, which libzmq signals (edge-
// triggered) when the socket's state may have changed, through Go's
// network poller: a kernel's client sleeps without holding an OS thread.
// (Blocking in poll(2) held one per kernel, and its 1-s timeout woke every
// kernel's client every second: at 300 kernels, 300 threads and a few
// percent of a core for nothing.) Others wake the wait through the read
// deadline (wake, Close), so the client needs no second goroutine.
type fdWait struct {
	f  *os.File // a duplicate of the ZMQ_FD, registered with the poller
	rc syscall.RawConn
}

func newFdWait(s *zmq.Socket) (*fdWait, error) {
	fd, err := s.GetFd()
	if err != nil {
		return nil, fmt.Errorf("runner socket descriptor: %w", err)
	}
	return waitOn(fd)
}

// waitOn builds an fdWait on a duplicate of fd.
func waitOn(fd int) (*fdWait, error) {
	// A duplicate (close-on-exec: helpers the agent starts must not
	// inherit one per kernel), so that closing it (which the poller
	// needs) leaves libzmq's own descriptor alone. It shares the file
	// description, which libzmq already made non-blocking; set again for
	// the poller.
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("runner socket descriptor: %w", err)
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, fmt.Errorf("runner socket descriptor: %w", err)
	}
	f := os.NewFile(uintptr(dup), "zmq-fd")
	rc, err := f.SyscallConn()
	if err == nil {
		// Deadlines work only on a descriptor the poller took: without
		// them every wait would return at once and the loop would spin.
		err = f.SetReadDeadline(time.Time{})
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("runner socket descriptor: %w", err)
	}
	return &fdWait{f: f, rc: rc}, nil
}

// wait returns at the descriptor's next edge or at the read deadline: the
// one the caller armed before it last looked for work, or the past one
// that interrupt set since (then at once). It never sets the deadline
// itself, which would undo an interrupt.
func (w *fdWait) wait() {
	first := true
	_ = w.rc.Read(func(fd uintptr) bool {
		if first {
			// Read forgets a readiness the poller saw before it began,
			// and libzmq signals once until the socket has processed its
			// commands: an edge between the caller's last ZMQ_EVENTS and
			// here would be lost (a reply stalled until the next status
			// ping). The descriptor stays readable while libzmq has
			// commands pending, so look at it first.
			first = false
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, _ := unix.Poll(p, 0)
			return n > 0
		}
		// The poller's wake-up (the descriptor itself is never read:
		// libzmq does).
		return true
	})
}

// interrupt ends a wait in progress, or the next one at once.
func (w *fdWait) interrupt() { _ = w.f.SetReadDeadline(time.Unix(1, 0)) }

// loop owns both sockets. It sleeps on the output socket's descriptor
// (fdWait) until a reply, the status timer, or a wake-up (a queued
// request, Close), so a request leaves at once and a reply is read at
// once, without polling.
func (c *Client) loop(push, pull *zmq.Socket) {
	defer c.wg.Done()
	defer pull.Close()
	defer push.Close()
	// The waiter's descriptor goes first: the poller must forget it
	// before libzmq closes (and may reuse) the one it duplicates.
	defer c.fdw.f.Close()
	// A status every 10 s for the kernel's lifetime, as upstream's
	// ping_status: it keeps NAT and proxy paths alive; the replies land in
	// the status queue, which an exchange drains before it asks.
	nextPing := time.Now().Add(StatusEvery)
	for {
		// Re-armed before the queue is read: a wake-up from here on ends
		// the wait below at once.
		_ = c.fdw.f.SetReadDeadline(nextPing)
		select {
		case <-c.done:
			return
		default:
		}
		if !time.Now().Before(nextPing) {
			nextPing = time.Now().Add(StatusEvery)
			// Not while earlier pings are unanswered: a stopped runner's
			// queue would fill with pings, and what the manager sends
			// next would be the message dropped.
			if c.pings.Load() < 3 && c.statusMu.TryLock() {
				if _, err := push.SendMessageDontwait("status", ""); err == nil {
					c.pings.Add(1)
				}
				c.statusMu.Unlock()
			}
			continue
		}
		for drained := false; !drained; {
			select {
			case m := <-c.send:
				// Never blocks: this goroutine is the only reader of the
				// runner's output and what Close waits for. A runner that
				// left sendQueue messages unread is stopped or gone; what
				// it would get more is dropped.
				if _, err := push.SendMessageDontwait(m[0], m[1]); err != nil {
					c.log.Warn("message to the runner dropped", "type", string(m[0]), "error", err)
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
		c.fdw.wait()
	}
}

// offer queues rec for the run's next execute call, or drops it when the
// run already holds RunQueue records (as the reference's QueueFull) or
// RunQueueBytes. A record that ends or pauses the run is kept past both
// bounds (the queue has room beyond RunQueue for them): dropped, it would
// leave the manager asking "continue" for ever. Only the loop goroutine
// offers, so the length it reads can only shrink meanwhile.
func (r *run) offer(rec Record, terminal bool) {
	n := int64(len(rec.Data))
	if !terminal && (len(r.q) >= RunQueue || r.queued.Load()+n > RunQueueBytes) {
		r.dropped.Add(n)
		return
	}
	r.queued.Add(n)
	select {
	case r.q <- rec:
	default:
		r.queued.Add(-n)
		r.dropped.Add(n)
	}
}

// terminalRecord names the records that end an execute call's collection.
var terminalRecord = map[string]bool{"finished": true, "clean-finished": true, "build-finished": true, "waiting-input": true, "exec-timeout": true}

// runQueueCap leaves room past RunQueue for terminal records and the
// output held back at the end of a run.
const runQueueCap = RunQueue + 16

func offer(ch chan []byte, b []byte) {
	select {
	case ch <- b:
	default:
	}
}

// Sizes of what a runner sends that is not output: replies and the
// records that end or pause a run are small JSON or msgpack; a runner
// sending more is not one of ours (or is compromised) and is not kept.
const (
	maxStatus   = 4 << 10
	maxReply    = 1 << 20
	maxTerminal = 64 << 10
)

// runKinds are the records a run's reply carries (upstream's console
// kinds); the runner's other kinds are replies, handled before.
var runKinds = map[string]bool{"stdout": true, "stderr": true, "media": true, "html": true, "log": true}

func (c *Client) dispatch(kind string, data []byte) {
	switch kind {
	case "status", "completion", "apps-result", "service-result", "model-service-result":
		limit := maxReply
		if kind == "status" {
			c.pings.Store(0)
			limit = maxStatus
		}
		if len(data) > limit {
			c.log.Warn("runner reply dropped: too large", "type", kind, "bytes", len(data), "limit", limit)
			return
		}
	}
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
		if len(data) > 1024 {
			data = data[:1024]
		}
		c.log.Info("model service health", "status", strings.ToValidUTF8(string(data), "\uFFFD"))
		return
	}
	c.mu.Lock()
	r := c.current
	c.mu.Unlock()
	if r == nil {
		return // no run attached: the reference drops it too
	}
	if !runKinds[kind] && !terminalRecord[kind] {
		r.dropped.Add(int64(len(kind) + len(data)))
		return
	}
	if terminalRecord[kind] && len(data) > maxTerminal {
		// Kept (the run must end or pause), without what it claimed.
		r.dropped.Add(int64(len(data)))
		data = []byte("{}")
	}
	var text string
	switch kind {
	case "stdout", "stderr":
		if len(data) > MaxRecord {
			r.dropped.Add(int64(len(data) - MaxRecord))
			data = data[:MaxRecord]
		}
		text = r.decode(kind, data, false)
		if text == "" {
			return
		}
	default:
		if len(data) > MaxRecord {
			// Cut HTML or a cut image would be garbage: it goes whole or
			// not at all.
			r.dropped.Add(int64(len(data)))
			return
		}
		// The manager decodes the reply's strings as UTF-8.
		text = strings.ToValidUTF8(string(data), "\uFFFD")
	}
	if kind == "finished" || kind == "build-finished" {
		for _, s := range []string{"stdout", "stderr"} {
			if rest := r.decode(s, nil, true); rest != "" {
				r.offer(Record{s, rest}, true)
			}
		}
	}
	r.offer(Record{kind, text}, terminalRecord[kind])
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

// wake interrupts the loop's wait (or makes its next one return at once).
func (c *Client) wake() { c.fdw.interrupt() }

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
}

// NewRunID is a fresh run id (32 hex digits).
func NewRunID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
