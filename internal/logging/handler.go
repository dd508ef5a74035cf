package logging

import (
	"context"
	"errors"
	"log/slog"
	"strings"
)

// fanout writes each record to every handler that wants it (console and
// file may have different formats).
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (f fanout) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(as)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}

// levels is the global level with the pkg-ns overrides.
type levels struct {
	global slog.Level
	pkgNS  map[string]slog.Level
}

// forComponent is the threshold of a logger whose component is c ("" for
// the agent's core): the higher of the global level and the level of the
// most specific matching pkg-ns key.
func (lv *levels) forComponent(c string) slog.Level {
	best, bestRank := lv.global, -1
	for k, l := range lv.pkgNS {
		if r := nsRank(k, c); r > bestRank {
			best, bestRank = l, r
		}
	}
	if best < lv.global {
		return lv.global
	}
	return best
}

// nsRank is how specifically key names component (-1: not at all). ""
// and the Python agent's own namespaces ("ai.backend",
// "ai.backend.agent") cover every component, least specific first; other
// keys are a component or a dotted prefix of one ("rpc" matches "rpc" and
// "rpc.client"), the longer the more specific.
func nsRank(key, component string) int {
	switch key {
	case "":
		return 0
	case "ai.backend":
		return 1
	case "ai.backend.agent":
		return 2
	}
	if component == key || strings.HasPrefix(component, key+".") {
		return 3 + len(key)
	}
	return -1
}

// filter drops records below its component's threshold, before any
// output (console, file, Loki) sees them.
type filter struct {
	next      slog.Handler
	lv        *levels
	threshold slog.Level
}

func newFilter(next slog.Handler, lv *levels) *filter {
	return &filter{next: next, lv: lv, threshold: lv.forComponent("")}
}

func (f *filter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.threshold && f.next.Enabled(ctx, l)
}

func (f *filter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < f.threshold {
		return nil
	}
	return f.next.Handle(ctx, r)
}

func (f *filter) WithAttrs(as []slog.Attr) slog.Handler {
	out := &filter{next: f.next.WithAttrs(as), lv: f.lv, threshold: f.threshold}
	for _, a := range as {
		if a.Key == "component" {
			out.threshold = f.lv.forComponent(a.Value.String())
		}
	}
	return out
}

func (f *filter) WithGroup(name string) slog.Handler {
	return &filter{next: f.next.WithGroup(name), lv: f.lv, threshold: f.threshold}
}
