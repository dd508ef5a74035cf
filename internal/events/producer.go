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
	// StallAfter is how long a consumer group of the events stream may
	// stop reading, with entries waiting, before the outbox's replay stops
	// waiting for it (0: 30 s). See pacer.
	StallAfter time.Duration
}

// Producer publishes events through the outbox.
type Producer struct {
	o      Options
	outbox *Outbox
	stream *redis.Client
	log    *slog.Logger
	// releaseStream gives back the process's shared stream client.
	releaseStream func()

	cancel context.CancelFunc
	wg     sync.WaitGroup

	delivered atomic.Uint64
	failures  atomic.Uint64
	connected atomic.Bool

	pacer        *pacer
	releasePacer func()
	paced        bool      // the replay was held back (logged once per outage)
	heldSince    time.Time // when the batch at the head was first held back (zero: not held)
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
	stream, release := o.Redis.Shared(redisconn.RoleStream, DBStream)
	p := &Producer{o: o, outbox: ob, stream: stream, releaseStream: release, log: o.Log}
	p.pacer, p.releasePacer = pacerFor(p.stream, o.Log, o.StallAfter)
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
		p.releasePacer()
		p.releaseStream()
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
		recs, next, reserved, wait, err := p.pace(dctx, recs, next)
		if err == nil && wait {
			cancel()
			select {
			case <-ctx.Done():
				return
			case <-time.After(paceWait):
			}
			continue
		}
		if err == nil {
			err = p.deliver(dctx, recs)
			sent := 0
			if err == nil {
				sent = anycasts(recs)
			}
			p.pacer.settle(reserved, sent)
		}
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
			p.paced = false
		}
		backoff = 200 * time.Millisecond
		if err := p.outbox.Ack(next); err != nil {
			p.log.Error("outbox ack", "error", err)
		}
		p.delivered.Add(uint64(len(recs)))
	}
}

// paceWait is how often a paced replay asks the consumer groups again.
const paceWait = 100 * time.Millisecond

// pace cuts a batch to what the stream can take now (see pacer) and
// says how many records it reserved for it (to settle after the
// delivery); wait says nothing can be sent yet.
func (p *Producer) pace(ctx context.Context, recs []*Record, next int64) (_ []*Record, _ int64, reserved int, wait bool, _ error) {
	n := anycasts(recs)
	if n == 0 {
		return recs, next, 0, false, nil
	}
	room, err := p.pacer.room(ctx, n)
	if err != nil {
		return recs, next, 0, false, err
	}
	if room > 0 {
		p.heldSince = time.Time{}
	}
	if room == n {
		return recs, next, room, false, nil
	}
	if room == 0 {
		// A group that reads but never catches up (a busy manager, a slow
		// second group) may hold one batch back for stallAfter at most:
		// then the batch goes, as upstream's would.
		if p.heldSince.IsZero() {
			p.heldSince = time.Now()
		}
		if held := time.Since(p.heldSince); held >= p.pacer.stallAfter {
			p.log.Warn("event consumers stay behind; delivering without waiting for them", "held", held.Round(time.Second))
			p.heldSince = time.Time{}
			return recs, next, 0, false, nil
		}
		if !p.paced {
			p.paced = true
			p.log.Info("event consumers are behind; pacing the outbox's replay so that the stream's trimming drops nothing unread", "pending_bytes", p.outbox.Pending())
		}
		return nil, 0, 0, true, nil
	}
	// The longest prefix with room anycast records; Peek again for its
	// end offset.
	k, seen := 0, 0
	for k < len(recs) && (seen < room || !recs[k].Anycast) {
		if recs[k].Anycast {
			seen++
		}
		k++
	}
	recs, next = p.outbox.Peek(k)
	return recs, next, room, false, nil
}

func anycasts(recs []*Record) int {
	n := 0
	for _, r := range recs {
		if r.Anycast {
			n++
		}
	}
	return n
}
