package events

import (
	"context"
	"encoding/base64"
	"encoding/json"

	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/wire"
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

// Delivery of each event name: anycast (stream), broadcast (channel), or
// both. Kernel lifecycle events and session results go both ways;
// background-task events are broadcast with a cache key.
type route struct{ anycast, broadcast, bgtask bool }

var routes = map[string]route{
	"kernel_preparing":       {true, true, false},
	"kernel_pulling":         {true, true, false},
	"kernel_creating":        {true, true, false},
	"kernel_started":         {true, true, false},
	"kernel_terminated":      {true, true, false},
	"session_success":        {true, true, false},
	"session_failure":        {true, true, false},
	"bgtask_updated":         {false, true, true},
	"bgtask_done":            {false, true, true},
	"bgtask_partial_success": {false, true, true},
	"bgtask_failed":          {false, true, true},
	"bgtask_cancelled":       {false, true, true},
}

func routeOf(name string) route {
	if r, ok := routes[name]; ok {
		return r
	}
	return route{anycast: true}
}

// Options configure a Producer.
type Options struct {
	AgentID   string
	Redis     *redis.Options // DB is set per use
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
	ro := *o.Redis
	ro.DB = DBStream
	p := &Producer{o: o, outbox: ob, stream: redis.NewClient(&ro), log: o.Log}
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
	p.wg.Wait()
	p.stream.Close()
	p.outbox.Close()
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
func (p *Producer) Publish(_ context.Context, name string, payload map[string]any) {
	rec, err := p.record(name, payload)
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

func (p *Producer) record(name string, payload map[string]any) (*Record, error) {
	r := routeOf(name)
	rec := &Record{Name: name, Source: p.o.AgentID, Anycast: r.anycast, Broadcast: r.broadcast, Time: time.Now().UnixNano()}
	if r.bgtask {
		if id, ok := payload["task_id"].(string); ok {
			rec.CacheKey = "bgtask." + id
		}
	}
	if p.o.Legacy {
		args, err := msgpack.Marshal(legacyArgs(name, payload))
		if err != nil {
			return nil, err
		}
		rec.Args = args
		return rec, nil
	}
	b, err := json.Marshal(payload)
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
				p.log.Warn("redis unreachable; events are kept in the outbox", "error", err, "pending_bytes", p.outbox.Pending())
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

// legacyArgs lays out an event's fields positionally, as managers up to
// 26.8.1 expect, with enums, UUIDs and Decimals as pickled extensions.
func legacyArgs(name string, p map[string]any) []any {
	id := func(k string) any {
		if s, ok := p[k].(string); ok {
			if u, err := uuid.Parse(s); err == nil {
				return u[:]
			}
			return s
		}
		return p[k]
	}
	reason := func() any {
		s, _ := p["reason"].(string)
		return wire.Enum{Class: "ai.backend.common.events.event_types.kernel.types.KernelLifecycleEventReason", Value: s}
	}
	uuidExt := func(k string) any {
		if b, ok := id(k).([]byte); ok {
			return msgpack.Ext{Code: wire.ExtUUID, Data: b}
		}
		return p[k]
	}
	switch name {
	case "kernel_preparing", "kernel_pulling", "kernel_creating", "kernel_started":
		return []any{uuidExt("kernel_id"), uuidExt("session_id"), reason(), p["creation_info"]}
	case "kernel_terminated":
		return []any{uuidExt("kernel_id"), uuidExt("session_id"), reason(), p["exit_code"]}
	case "agent_started", "agent_terminated":
		return []any{p["reason"]}
	case "agent_error":
		return []any{p["message"], p["traceback"], p["user"], p["context_env"], p["severity"]}
	case "agent_heartbeat":
		return []any{p["agent_info"]}
	case "session_success", "session_failure":
		return []any{uuidExt("session_id"), reason(), p["exit_code"]}
	case "execution_started", "execution_finished", "execution_timeout", "execution_cancelled":
		return []any{uuidExt("session_id")}
	case "image_pull_started":
		return []any{p["image"], p["agent_id"], p["timestamp"]}
	case "image_pull_finished":
		return []any{p["image"], p["agent_id"], p["timestamp"], p["msg"], p["image_ref"]}
	case "image_pull_failed":
		return []any{p["image"], p["agent_id"], p["msg"]}
	case "do_sync_kernel_logs":
		return []any{uuidExt("kernel_id"), p["container_id"]}
	case "volume_mounted", "volume_unmounted":
		return []any{p["node_id"], p["node_type"], p["mount_path"], p["quota_scope_id"], p["err_msg"]}
	case "agent_installed_images_remove":
		return []any{p["scanned_images"]}
	case "do_agent_resource_check":
		return []any{p["agent_id"]}
	case "bgtask_updated":
		return []any{p["task_id"], p["current_progress"], p["total_progress"], p["message"]}
	case "bgtask_done", "bgtask_failed", "bgtask_cancelled", "bgtask_partial_success":
		return []any{p["task_id"], p["message"]}
	}
	return []any{p}
}
