package events

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// Record is one queued event.
type Record struct {
	Name      string `json:"name"`
	Source    string `json:"source"`
	Payload   string `json:"payload"`             // JSON text (main format)
	Args      []byte `json:"args,omitempty"`      // msgpack array (<= 26.8.1 format)
	Anycast   bool   `json:"anycast"`             // XADD to the events stream
	Broadcast bool   `json:"broadcast"`           // PUBLISH to events_all
	CacheKey  string `json:"cache_key,omitempty"` // SET before publishing (bgtask.{id})
	Time      int64  `json:"ts"`
}

// Outbox is an append-only log of records plus the offset of the first
// undelivered one. A record is [len uint32][crc32 uint32][JSON]. Appends
// go to the page cache (a SIGKILL loses nothing); a torn tail left by a
// machine crash is detected by the checksum and cut off.
type Outbox struct {
	mu       sync.Mutex
	dir      string
	log      *os.File
	size     int64
	offset   int64
	maxBytes int64
	dropped  uint64
	notify   chan struct{}
}

// OpenOutbox opens (or creates) the outbox in dir, bounded to maxBytes of
// undelivered records.
func OpenOutbox(dir string, maxBytes int64) (*Outbox, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "events.log"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("outbox %s: %w", dir, err)
	}
	o := &Outbox{dir: dir, log: f, maxBytes: maxBytes, notify: make(chan struct{}, 1)}
	if b, err := os.ReadFile(filepath.Join(dir, "offset")); err == nil && len(b) == 8 {
		o.offset = int64(binary.LittleEndian.Uint64(b))
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	o.size = st.Size()
	if o.offset > o.size {
		o.offset = 0
	}
	// Walk the undelivered part; cut a torn tail.
	end := o.offset
	for end < o.size {
		_, n, err := o.readAt(end)
		if err != nil {
			break
		}
		end += n
	}
	if end < o.size {
		if err := f.Truncate(end); err != nil {
			f.Close()
			return nil, err
		}
		o.size = end
	}
	return o, nil
}

// Close closes the log.
func (o *Outbox) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.log.Close()
}

var errShort = errors.New("short record")

func (o *Outbox) readAt(off int64) (*Record, int64, error) {
	var hdr [8]byte
	if _, err := o.log.ReadAt(hdr[:], off); err != nil {
		return nil, 0, errShort
	}
	n := int64(binary.LittleEndian.Uint32(hdr[:4]))
	if n > 64<<20 || off+8+n > o.size {
		return nil, 0, errShort
	}
	body := make([]byte, n)
	if _, err := o.log.ReadAt(body, off+8); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(hdr[4:]) {
		return nil, 0, errors.New("checksum mismatch")
	}
	var r Record
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, 0, err
	}
	return &r, 8 + n, nil
}

// Append queues a record. When the undelivered records would exceed the
// bound, the oldest are dropped (and counted) to make room.
func (o *Outbox) Append(r *Record) (dropped int, err error) {
	body, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.size-o.offset+int64(len(body))+8 > o.maxBytes && o.offset < o.size {
		_, n, rerr := o.readAt(o.offset)
		if rerr != nil {
			break
		}
		o.offset += n
		o.dropped++
		dropped++
	}
	if dropped > 0 {
		if err := o.saveOffset(); err != nil {
			return dropped, err
		}
	}
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:4], uint32(len(body)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.ChecksumIEEE(body))
	if _, err := o.log.WriteAt(append(hdr[:], body...), o.size); err != nil {
		return dropped, fmt.Errorf("outbox append: %w", err)
	}
	o.size += int64(len(body)) + 8
	select {
	case o.notify <- struct{}{}:
	default:
	}
	return dropped, nil
}

// Peek returns up to max undelivered records and the offset just past
// them.
func (o *Outbox) Peek(max int) ([]*Record, int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*Record
	off := o.offset
	for len(out) < max && off < o.size {
		r, n, err := o.readAt(off)
		if err != nil {
			break
		}
		out = append(out, r)
		off += n
	}
	return out, off
}

// Ack marks everything before off delivered. When all is delivered the
// log is truncated so it never grows without bound.
func (o *Outbox) Ack(off int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if off <= o.offset {
		return nil
	}
	o.offset = off
	if o.offset >= o.size {
		if err := o.log.Truncate(0); err != nil {
			return err
		}
		o.size, o.offset = 0, 0
	}
	return o.saveOffset()
}

func (o *Outbox) saveOffset() error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(o.offset))
	tmp := filepath.Join(o.dir, "offset.tmp")
	if err := os.WriteFile(tmp, b[:], 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(o.dir, "offset"))
}

// Pending returns the bytes and whether records are waiting.
func (o *Outbox) Pending() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.size - o.offset
}

// Dropped returns how many records were dropped because the outbox was
// full.
func (o *Outbox) Dropped() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}

// Notify fires when a record is appended.
func (o *Outbox) Notify() <-chan struct{} { return o.notify }
