package wire

import (
	"time"

	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// Datetime encodes a time as ext 2 (temporenc DTSZ with microseconds),
// which Python's ai.backend.common.msgpack decodes to an aware datetime.
type Datetime time.Time

// MarshalMsgpack implements msgpack.Marshaler.
func (d Datetime) MarshalMsgpack(e *msgpack.Encoder) error {
	b, err := EncodeTemporenc(time.Time(d))
	if err != nil {
		return err
	}
	e.ExtValue(ExtDatetime, b)
	return nil
}
