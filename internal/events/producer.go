package events

import (
	"context"
	"encoding/base64"
	"encoding/json"

	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/redisconn"

	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// Redis database numbers used by Backend.AI.
const (
	DBStat         = 0
	DBLive         = 2
	DBImage        = 3
	DBStream       = 4
	DBContainerLog = 6
	DBBgtask       = 7
)

// Stream and channel names.
const (
	StreamKey    = "events"
	BroadcastKey = "events_all"
	streamMaxLen = 128
)

// Options configure a Producer.
type Options struct {
	AgentID   string
	Redis     *redisconn.Conn
	OutboxDir string
	// OutboxMax bounds the undelivered events on disk (bytes).
	OutboxMax int64
	// Legacy selects the <= 26.8.1 positional msgpack format.
	Legacy bool
	Log    *slog.Logger
}

// Producer publishes events through the outbox.
type Producer struct {
	o      Options
	outbox *Outbox
	stream *redis.Client
	log    *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup

	delivered atomic.Uint64
	failures  atomic.Uint64
	connected atomic.Bool
}

// NewProducer opens the outbox and starts delivery. Redis need not be up.
func NewProducer(o Options) (*Producer, error) {
	if o.OutboxMax == 0 {
		o.OutboxMax = 64 << 20
	}
	ob, err := OpenOutbox(o.OutboxDir, o.OutboxMax)
	if err != nil {
		return nil, err
	}
	p := &Producer{o: o, outbox: ob, stream: o.Redis.Client(redisconn.RoleStream, DBStream, nil), log: o.Log}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go p.deliverLoop(ctx)
	return p, nil
}

// Close stops delivery (undelivered events stay on disk) and closes the
// connection.
func (p *Producer) Close() {
	p.cancel()
	// The outbox is durable as written; closing it late loses nothing.
	closeWithin(func() {
		p.wg.Wait()
		p.stream.Close()
		p.outbox.Close()
	})
}

// Stats reports delivery counters.
type Stats struct {
	Delivered, Failures, Dropped uint64
	PendingBytes                 int64
	Connected                    bool
}

// Stats returns the counters.
func (p *Producer) Stats() Stats {
	return Stats{Delivered: p.delivered.Load(), Failures: p.failures.Load(), Dropped: p.outbox.Dropped(), PendingBytes: p.outbox.Pending(), Connected: p.connected.Load()}
}

// Publish queues an event (implements the agent's EventSink). It never
// blocks on Redis.
func (p *Producer) Publish(_ context.Context, ev event.Event) {
	name := ev.EventName()
	rec, err := p.record(ev)
	if err != nil {
		p.log.Error("cannot encode event", "name", name, "error", err)
		return
	}
	dropped, err := p.outbox.Append(rec)
	if err != nil {
		p.log.Error("cannot queue event", "name", name, "error", err)
		return
	}
	if dropped > 0 {
		p.log.Error("event outbox full: dropped the oldest undelivered events", "dropped", dropped, "total_dropped", p.outbox.Dropped(), "limit_bytes", p.o.OutboxMax)
	}
}

func (p *Producer) record(ev event.Event) (*Record, error) {
	d := ev.Delivery()
	rec := &Record{Name: ev.EventName(), Source: p.o.AgentID, Anycast: d&event.Anycast != 0, Broadcast: d&event.Broadcast != 0, Time: time.Now().UnixNano()}
	if c, ok := ev.(event.Cached); ok {
		rec.CacheKey = c.CacheKey()
	}
	if p.o.Legacy {
		args, err := msgpack.Marshal(ev.LegacyArgs())
		if err != nil {
			return nil, err
		}
		rec.Args = args
		return rec, nil
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	rec.Payload = string(b)
	return rec, nil
}

// broadcastMessage is the JSON published on events_all.
func broadcastMessage(r *Record) string {
	m := map[string]any{"name": r.Name, "source": r.Source}
	if r.Args != nil {
		m["args"] = base64.StdEncoding.EncodeToString(r.Args)
	} else {
		m["payload"] = r.Payload
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func (p *Producer) deliver(ctx context.Context, recs []*Record) error {
	pipe := p.stream.Pipeline()
	for _, r := range recs {
		if r.Anycast {
			vals := map[string]any{"name": r.Name, "source": r.Source}
			if r.Args != nil {
				vals["args"] = r.Args
			} else {
				vals["payload"] = r.Payload
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey, MaxLen: streamMaxLen, Approx: true, Values: vals})
		}
		if r.Broadcast {
			msg := broadcastMessage(r)
			if r.CacheKey != "" {
				pipe.Set(ctx, r.CacheKey, msg, 300*time.Second)
			}
			pipe.Publish(ctx, BroadcastKey, msg)
		}
	}
	_, err := pipe.Exec(ctx)
	return err
}

// deliverLoop sends queued records in order, retrying with backoff while
// Redis is away.
func (p *Producer) deliverLoop(ctx context.Context) {
	defer p.wg.Done()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		recs, next := p.outbox.Peek(64)
		if len(recs) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-p.outbox.Notify():
			case <-time.After(time.Second):
			}
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.deliver(dctx, recs)
		cancel()
		if err != nil {
			p.failures.Add(1)
			if p.connected.Swap(false) {
				p.log.Warn("redis unreachable; events are kept in the outbox", "target", p.o.Redis.Config().For(redisconn.RoleStream).Describe(), "error", err, "pending_bytes", p.outbox.Pending())
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			if backoff < 5*time.Second {
				backoff *= 2
			}
			continue
		}
		if !p.connected.Swap(true) {
			p.log.Info("redis reachable; delivering events")
		}
		backoff = 200 * time.Millisecond
		if err := p.outbox.Ack(next); err != nil {
			p.log.Error("outbox ack", "error", err)
		}
		p.delivered.Add(uint64(len(recs)))
	}
}
