package lokilog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Options configure a Pusher.
type Options struct {
	// URL is Loki's base URL (http://host:3100); the push path is added.
	URL      string
	AgentID  string
	Tenant   string // X-Scope-OrgID, "" for none
	Username string // basic auth, "" for none
	Password string
	// BatchSize and BatchWait bound a push (defaults 500 records, 1 s).
	BatchSize int
	BatchWait time.Duration
	// Buffer bounds the records waiting to be pushed (default 10 000):
	// the queue holds up to Buffer, and the batch held back for a retry
	// up to Buffer more (its oldest are dropped first). Records that find
	// the queue full are dropped; every drop is counted.
	Buffer int
	// Timeout bounds one push (default 5 s).
	Timeout time.Duration
}

type entry struct {
	ts       time.Time
	level    string
	kernelID string
	line     string
}

// Pusher batches records and pushes them from one goroutine.
type Pusher struct {
	o       Options
	client  *http.Client
	in      chan entry
	dropped atomic.Uint64
	pushed  atomic.Uint64
	failed  atomic.Uint64
	cancel  context.CancelFunc
	done    chan struct{}
}

// New starts a pusher.
func New(o Options) *Pusher {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.BatchWait <= 0 {
		o.BatchWait = time.Second
	}
	if o.Buffer <= 0 {
		o.Buffer = 10000
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pusher{o: o, client: &http.Client{Timeout: o.Timeout}, in: make(chan entry, o.Buffer), cancel: cancel, done: make(chan struct{})}
	go p.loop(ctx)
	return p
}

// Dropped is how many records were dropped (buffer full, or given up
// after retries).
func (p *Pusher) Dropped() uint64 { return p.dropped.Load() }

// Pushed is how many records Loki accepted.
func (p *Pusher) Pushed() uint64 { return p.pushed.Load() }

// Close pushes what is buffered (for up to the push timeout) and stops.
func (p *Pusher) Close() {
	p.cancel()
	<-p.done
}

func (p *Pusher) enqueue(e entry) {
	select {
	case p.in <- e:
	default:
		p.dropped.Add(1)
	}
}

func (p *Pusher) loop(ctx context.Context) {
	defer close(p.done)
	var batch []entry
	timer := time.NewTimer(p.o.BatchWait)
	defer timer.Stop()
	backoff := 250 * time.Millisecond
	var retryAt time.Time
	for {
		select {
		case <-ctx.Done():
			p.final(batch)
			return
		case e := <-p.in:
			batch = append(batch, e)
			if len(batch) > p.o.Buffer {
				// Loki has been away for long: the oldest go.
				n := len(batch) - p.o.Buffer
				p.dropped.Add(uint64(n))
				batch = append(batch[:0], batch[n:]...)
			}
			if len(batch) < p.o.BatchSize || time.Now().Before(retryAt) {
				continue
			}
		case <-timer.C:
			if time.Now().Before(retryAt) {
				timer.Reset(time.Until(retryAt))
				continue
			}
		}
		if len(batch) == 0 {
			timer.Reset(p.o.BatchWait)
			continue
		}
		if err := p.push(ctx, batch); err != nil {
			p.failed.Add(1)
			retryAt = time.Now().Add(backoff)
			timer.Reset(backoff)
			if backoff < 30*time.Second {
				backoff *= 2
			}
			continue
		}
		p.pushed.Add(uint64(len(batch)))
		batch = batch[:0]
		backoff, retryAt = 250*time.Millisecond, time.Time{}
		timer.Reset(p.o.BatchWait)
	}
}

// final pushes what is left once, briefly, at shutdown.
func (p *Pusher) final(batch []entry) {
	for {
		select {
		case e := <-p.in:
			batch = append(batch, e)
			continue
		default:
		}
		break
	}
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.o.Timeout)
	defer cancel()
	if err := p.push(ctx, batch); err != nil {
		p.dropped.Add(uint64(len(batch)))
		return
	}
	p.pushed.Add(uint64(len(batch)))
}

// push sends one batch as Loki's push API expects: streams grouped by
// their label sets, values as [nanosecond timestamp string, line].
func (p *Pusher) push(ctx context.Context, batch []entry) error {
	type stream struct {
		Stream map[string]string `json:"stream"`
		Values [][2]string       `json:"values"`
	}
	byKey := map[string]*stream{}
	var order []string
	for _, e := range batch {
		key := e.level + "\x00" + e.kernelID
		s, ok := byKey[key]
		if !ok {
			labels := map[string]string{"agent_id": p.o.AgentID, "level": e.level}
			if e.kernelID != "" {
				labels["kernel_id"] = e.kernelID
			}
			s = &stream{Stream: labels}
			byKey[key] = s
			order = append(order, key)
		}
		s.Values = append(s.Values, [2]string{strconv.FormatInt(e.ts.UnixNano(), 10), e.line})
	}
	body := struct {
		Streams []*stream `json:"streams"`
	}{}
	for _, k := range order {
		body.Streams = append(body.Streams, byKey[k])
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(p.o.URL, "/")+"/loki/api/v1/push", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.o.Tenant != "" {
		req.Header.Set("X-Scope-OrgID", p.o.Tenant)
	}
	if p.o.Username != "" {
		req.SetBasicAuth(p.o.Username, p.o.Password)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("loki push: HTTP %d", resp.StatusCode)
	}
	return nil
}

// Handler wraps next so that every record it handles is also shipped.
func (p *Pusher) Handler(next slog.Handler) slog.Handler { return &handler{next: next, p: p} }

type handler struct {
	next   slog.Handler
	p      *Pusher
	attrs  []slog.Attr
	groups []string
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{next: h.next.WithAttrs(as), p: h.p, attrs: append(append([]slog.Attr(nil), h.attrs...), as...), groups: h.groups}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), p: h.p, attrs: h.attrs, groups: append(append([]string(nil), h.groups...), name)}
}

func levelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warning"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}

// Handle ships the record (never blocking) and passes it on.
func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	var sb strings.Builder
	sb.WriteString(r.Message)
	kernelID := ""
	write := func(a slog.Attr) {
		if a.Key == "kernel_id" {
			kernelID = a.Value.String()
		}
		fmt.Fprintf(&sb, " %s=%s", a.Key, strconv.Quote(a.Value.String()))
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(func(a slog.Attr) bool { write(a); return true })
	h.p.enqueue(entry{ts: r.Time, level: levelName(r.Level), kernelID: kernelID, line: sb.String()})
	return h.next.Handle(ctx, r)
}
