package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/bai-agent/bai-agent/internal/config"
)

// ParseLevel maps the Python agent's level names to slog levels (NOTSET
// is DEBUG, CRITICAL is ERROR: slog has no level above it).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToUpper(s) {
	case "DEBUG", "NOTSET":
		return slog.LevelDebug, nil
	case "INFO":
		return slog.LevelInfo, nil
	case "WARNING", "WARN":
		return slog.LevelWarn, nil
	case "ERROR", "CRITICAL":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not DEBUG, INFO, WARNING, ERROR, CRITICAL or NOTSET", s)
}

// Outputs are the drivers' handlers (console, file), all at DEBUG: the
// level filter (Filter) sits above them, so one decision covers every
// output, Loki included.
type Outputs struct {
	Handler slog.Handler
	// Ignored names drivers the agent accepts in the config but does not
	// implement (logstash, graylog), to be logged once at start-up.
	Ignored []string
	closers []io.Closer
}

// Close closes the log file, if any.
func (o *Outputs) Close() error {
	var first error
	for _, c := range o.closers {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// newFormat makes a handler writing format to w: "simple" and "text" are
// logfmt-style text, "verbose" adds the source file and line, "json" is
// one JSON object per line.
func newFormat(format string, w io.Writer) slog.Handler {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	switch format {
	case "json":
		return slog.NewJSONHandler(w, opts)
	case "verbose":
		opts.AddSource = true
	}
	return slog.NewTextHandler(w, opts)
}

// Open builds the drivers of c: console writes to console, file to a
// size-rotated file under c.File.Path. The config was validated by
// config.Load, so only I/O can fail here.
func Open(c config.LoggingConfig, console io.Writer) (*Outputs, error) {
	o := &Outputs{}
	var hs fanout
	for _, d := range c.Drivers {
		switch d {
		case "console":
			hs = append(hs, newFormat(c.Console.Format, console))
		case "file":
			f, err := OpenRotating(c.File.Path, c.File.Filename, int64(c.File.RotationSize), c.File.BackupCount)
			if err != nil {
				o.Close()
				return nil, fmt.Errorf("logging.file: %w", err)
			}
			o.closers = append(o.closers, f)
			hs = append(hs, newFormat(c.File.Format, f))
		default:
			o.Ignored = append(o.Ignored, d)
		}
	}
	switch len(hs) {
	case 0:
		o.Handler = slog.DiscardHandler
	case 1:
		o.Handler = hs[0]
	default:
		o.Handler = hs
	}
	return o, nil
}

// Filter returns a function that puts the level filter of c (the global
// level, DEBUG when debug is set, and pkg-ns) above a handler.
func Filter(c config.LoggingConfig, debug bool) (func(slog.Handler) slog.Handler, error) {
	global, err := ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("logging.level: %w", err)
	}
	if debug {
		global = slog.LevelDebug
	}
	lv := &levels{global: global, pkgNS: map[string]slog.Level{}}
	for k, v := range c.PkgNS {
		l, err := ParseLevel(v)
		if err != nil {
			return nil, fmt.Errorf("logging.pkg-ns.%s: %w", k, err)
		}
		lv.pkgNS[k] = l
	}
	return func(h slog.Handler) slog.Handler { return newFilter(h, lv) }, nil
}
