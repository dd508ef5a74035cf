package event

import (
	"context"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// Delivery says where an event goes.
type Delivery uint8

// Deliveries. Kernel lifecycle and session results go both ways, as the
// Python agent's anycast_and_broadcast_event does.
const (
	Anycast Delivery = 1 << iota
	Broadcast
)

// Event is one publishable event. Its JSON encoding (encoding/json of the
// value) is the payload the manager validates.
type Event interface {
	EventName() string
	Delivery() Delivery
	// LegacyArgs is the positional msgpack layout of managers <= 26.8.1.
	LegacyArgs() []any
}

// Cached events are also stored under a key (bgtask.{id}) for late
// subscribers.
type Cached interface {
	CacheKey() string
}

// reasonEnumClass is the pickled class of lifecycle reasons in the legacy
// layout.
const reasonEnumClass = "ai.backend.common.events.event_types.kernel.types.KernelLifecycleEventReason"

func legacyReason(s string) any { return wire.Enum{Class: reasonEnumClass, Value: s} }

// legacyUUID renders a UUID string as the legacy ext 1 value (the string
// itself when it does not parse).
func legacyUUID(s string) any {
	if u, err := uuid.Parse(s); err == nil {
		return msgpack.Ext{Code: wire.ExtUUID, Data: u[:]}
	}
	return s
}

// StrPtr returns a pointer to s, for optional string fields.
func StrPtr(s string) *string { return &s }

// Sink accepts events for delivery. Publish must not block on the
// network: the Redis producer queues to its outbox.
type Sink interface {
	Publish(ctx context.Context, ev Event)
}
