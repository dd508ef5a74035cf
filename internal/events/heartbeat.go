package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/redisconn"

	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// HeartbeatOptions configure the heartbeat.
type HeartbeatOptions struct {
	AgentID  string
	Redis    *redisconn.Conn
	Interval time.Duration
	// Info builds agent_info; it must not block on I/O.
	Info   func() event.AgentInfo
	Legacy bool
	Log    *slog.Logger
	// OnSent, if set, is called after each delivered beat.
	OnSent func()
}

// Heartbeat sends agent_heartbeat on its own goroutine and connection.
// Heartbeats are never queued: a beat that fails is dropped and the next
// one carries the latest state.
type Heartbeat struct {
	o      HeartbeatOptions
	client *redis.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartHeartbeat starts beating at once and then every interval.
func StartHeartbeat(o HeartbeatOptions) *Heartbeat {
	h := &Heartbeat{o: o, client: o.Redis.Client(redisconn.RoleStream, DBStream, func(ro *redis.Options) {
		ro.PoolSize = 1
		ro.MaxRetries = -1 // a late beat is worthless; the next one replaces it
	})}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.wg.Add(1)
	go h.loop(ctx)
	return h
}

// Close stops the heartbeat.
func (h *Heartbeat) Close() {
	h.cancel()
	closeWithin(func() {
		h.wg.Wait()
		h.client.Close()
	})
}

func (h *Heartbeat) loop(ctx context.Context) {
	defer h.wg.Done()
	down := false
	for {
		err := h.beat(ctx)
		switch {
		case err != nil && !down:
			down = true
			h.o.Log.Warn("heartbeat not delivered; retrying every interval", "target", h.o.Redis.Config().For(redisconn.RoleStream).Describe(), "error", err)
		case err == nil && down:
			down = false
			h.o.Log.Info("heartbeat delivered again")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.o.Interval):
		}
	}
}

// beat sends one heartbeat; a panic in Info is turned into an error so the
// loop never dies.
func (h *Heartbeat) beat(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("heartbeat panicked: %v", r)
		}
	}()
	ev := event.AgentHeartbeat{Info: h.o.Info()}
	vals := map[string]any{"name": ev.EventName(), "source": h.o.AgentID}
	if h.o.Legacy {
		b, err := msgpack.Marshal(ev.LegacyArgs())
		if err != nil {
			return err
		}
		vals["args"] = b
	} else {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		vals["payload"] = string(b)
	}
	timeout := h.o.Interval / 2
	if timeout > 5*time.Second || timeout <= 0 {
		timeout = 5 * time.Second
	}
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := h.client.XAdd(bctx, &redis.XAddArgs{Stream: StreamKey, MaxLen: streamMaxLen, Approx: true, Values: vals}).Err(); err != nil {
		return err
	}
	if h.o.OnSent != nil {
		h.o.OnSent()
	}
	return nil
}
