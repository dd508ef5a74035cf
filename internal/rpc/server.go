package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/rpc/callosum"

	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// Handler runs one method.
type Handler func(ctx context.Context, c *Call) (any, error)

// Observer is told about every handled call (metrics hook).
type Observer interface {
	Observe(method string, exception string, d time.Duration)
}

// Server dispatches Callosum messages to handlers. It is transport
// agnostic: the ZeroMQ transport feeds it frames and sends back what it
// returns.
type Server struct {
	log      *slog.Logger
	agentID  string
	methods  map[string]Handler
	inline   map[string]bool
	observer Observer
	tracer   Tracer
	onError  func(method, exception string, err error)
	// maxBodySize bounds a request body; checked before decoding.
	maxBodySize int

	mu       sync.Mutex
	inflight map[string]context.CancelFunc
}

// NewServer builds an empty server for the agent agentID.
func NewServer(log *slog.Logger, agentID string) *Server {
	return &Server{log: log, agentID: agentID, methods: map[string]Handler{}, inline: map[string]bool{}, inflight: map[string]context.CancelFunc{}}
}

// Register adds a method.
func (s *Server) Register(name string, h Handler) { s.methods[name] = h }

// RegisterInline adds a method that never blocks (no I/O, no locks held
// for long): transports may run it on their socket goroutine and answer at
// once, saving the hand-off to a worker goroutine.
func (s *Server) RegisterInline(name string, h Handler) {
	s.methods[name] = h
	s.inline[name] = true
}

// IsInline reports whether a raw header frame calls an inline method. It
// reads only the method name; anything undecodable is not inline.
func (s *Server) IsInline(hdrFrame []byte) bool {
	if len(s.inline) == 0 {
		return false
	}
	h, ok, _ := callosum.DecodeHeader(hdrFrame)
	return ok && h.Type == callosum.TypeFunction && s.inline[h.MethodName()]
}

// SetErrorHook installs a hook told about every failed call, after the
// failure reply is built (the agent publishes agent_error there, as the
// Python agent's collect_error does). It must not block.
func (s *Server) SetErrorHook(f func(method, exception string, err error)) { s.onError = f }

// SetMaxBodySize sets the inbound body limit (default callosum.MaxBodySize).
func (s *Server) SetMaxBodySize(n int) { s.maxBodySize = n }

// MaxBody is the inbound body limit in force.
func (s *Server) MaxBody() int { return s.maxBody() }

func (s *Server) maxBody() int {
	if s.maxBodySize > 0 {
		return s.maxBodySize
	}
	return callosum.MaxBodySize
}

// Tracer starts the span of one method call (internal/telemetry,
// [otel] enabled); end hears the Python exception name of a failure, ""
// on success. Neither may block.
type Tracer func(ctx context.Context, method, agentID string) (context.Context, func(exception string))

// SetTracer installs a tracing hook.
func (s *Server) SetTracer(t Tracer) { s.tracer = t }

// SetObserver installs a metrics hook.
func (s *Server) SetObserver(o Observer) { s.observer = o }

func reqKey(peer []byte, h *callosum.Header) string {
	return fmt.Sprintf("%x|%v|%T:%v|%v", peer, h.Meth, h.Okey, h.Okey, h.Seq)
}

func (s *Server) reply(h callosum.Header, typ int64, meta, payload []byte) [][]byte {
	h.Type = typ
	h.Zip = false
	hb, err := callosum.EncodeHeader(h)
	if err != nil {
		// meth/okey/seq came from a decoded frame, so they re-encode.
		s.log.Error("encode reply header", "error", err)
		return nil
	}
	return [][]byte{[]byte("UPPER"), hb, callosum.EncodeBody(meta, payload)}
}

func (s *Server) errorReply(h callosum.Header, name, msg string) [][]byte {
	// callosum's RPCInternalError shows the name and the traceback text,
	// not the repr, so the message goes in both.
	tb := "Traceback (most recent call last):\n  (raised by bai-agent)\n" + name + ": " + msg + "\n"
	return s.reply(h, callosum.TypeError, callosum.ErrorMeta(name, name+"("+PyRepr(msg)+")", tb), nil)
}

// HandleMessage processes one UPPER message from peer and returns the
// reply frames [kind, header, body], or nil when nothing is to be sent.
// It blocks for as long as the handler runs; transports call it on a
// goroutine of its own.
func (s *Server) HandleMessage(ctx context.Context, peer []byte, hdrFrame, bodyFrame []byte) [][]byte {
	h, addressable, err := callosum.DecodeHeader(hdrFrame)
	if err != nil {
		if addressable {
			return s.errorReply(h, "ValueError", err.Error())
		}
		s.log.Warn("dropping undecodable rpc message", "error", err)
		return nil
	}
	switch h.Type {
	case callosum.TypeFunction:
	case callosum.TypeCancel:
		s.mu.Lock()
		cancel, ok := s.inflight[reqKey(peer, &h)]
		s.mu.Unlock()
		if ok {
			cancel()
		}
		return nil
	default:
		return s.errorReply(h, "ValueError", fmt.Sprintf("unexpected message type %d", h.Type))
	}
	if limit := s.maxBody(); len(bodyFrame) > limit {
		return s.errorReply(h, "ValueError", fmt.Sprintf("body of %d bytes exceeds the %d-byte limit (agent.rpc-max-message-size)", len(bodyFrame), limit))
	}
	body, err := callosum.DecodeBody(bodyFrame, h.Zip)
	if err != nil {
		return s.errorReply(h, "ValueError", err.Error())
	}
	call := &Call{Method: h.MethodName()}
	if body.HasBody {
		v, err := wire.Decode(body.Payload)
		if err != nil {
			return s.errorReply(h, "ValueError", "cannot decode request body: "+err.Error())
		}
		if v != nil {
			m, ok := v.(msgpack.Map)
			if !ok {
				return s.errorReply(h, "ValueError", fmt.Sprintf("request body is %s, not a dict", wire.TypeName(v)))
			}
			if a, ok := m.Get("args"); ok && a != nil {
				if call.Args, ok = a.([]any); !ok {
					return s.errorReply(h, "ValueError", "args is not a list")
				}
			}
			if kw, ok := m.Get("kwargs"); ok && kw != nil {
				if call.Kwargs, ok = kw.(msgpack.Map); !ok {
					return s.errorReply(h, "ValueError", "kwargs is not a dict")
				}
			}
		}
	}
	handler, ok := s.methods[call.Method]
	if !ok {
		return s.errorReply(h, "KeyError", call.Method)
	}
	key := reqKey(peer, &h)
	cctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.inflight[key] = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.inflight, key)
		s.mu.Unlock()
		cancel()
	}()
	start := time.Now()
	exc := ""
	if s.tracer != nil {
		var end func(string)
		cctx, end = s.tracer(cctx, call.Method, s.agentID)
		defer func() { end(exc) }()
	}
	result, err := s.invoke(cctx, handler, call)
	defer func() {
		if s.observer != nil {
			s.observer.Observe(call.Method, exc, time.Since(start))
		}
	}()
	if err != nil {
		if errors.Is(err, context.Canceled) && cctx.Err() != nil && ctx.Err() == nil {
			exc = "CancelledError"
			return s.reply(h, callosum.TypeCancelled, callosum.EmptyArrayMeta, nil)
		}
		exc = ExceptionName(err)
		s.log.Info("rpc failure", "method", call.Method, "exception", exc, "error", err)
		if s.onError != nil {
			s.onError(call.Method, exc, err)
		}
		return s.reply(h, callosum.TypeFailure, failureMeta(err), nil)
	}
	payload, err := msgpack.Marshal(result)
	if err != nil {
		exc = "TypeError"
		return s.errorReply(h, "TypeError", "cannot serialize the result: "+err.Error())
	}
	return s.reply(h, callosum.TypeResult, callosum.EmptyArrayMeta, payload)
}

func (s *Server) invoke(ctx context.Context, h Handler, c *Call) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("rpc handler panicked", "method", c.Method, "panic", r, "stack", string(debug.Stack()))
			err = &PyError{Name: "RuntimeError", Msg: fmt.Sprintf("internal error in %s: %v", c.Method, r)}
		}
	}()
	if v, ok := c.Kwargs.Get("agent_id"); ok && v != nil {
		id, err := asStr(v, "agent_id")
		if err != nil {
			return nil, err
		}
		if id != s.agentID {
			return nil, &PyError{Name: "AgentIdNotFoundError", Msg: fmt.Sprintf("agent %s is not served here (this is %s)", id, s.agentID)}
		}
	}
	return h(ctx, c)
}
