package metrics

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"
)

// Check is a gated liveness check (Docker, Redis, etcd).
type Check struct {
	Name  string
	Group string
	Probe func(ctx context.Context) error
}

// Server is the internal HTTP server.
type Server struct {
	reg     *Registry
	checks  []Check
	version string
	log     *slog.Logger
	srv     *http.Server
	ln      net.Listener

	mu      sync.Mutex
	results map[string]checkResult
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type checkResult struct {
	ok  bool
	err string
	at  time.Time
}

// Options configure Start.
type Options struct {
	Addr     string
	TLSCert  string
	TLSKey   string
	Version  string
	Checks   []Check
	Interval time.Duration // check interval (60 s)
	Log      *slog.Logger
	// Pprof serves Go's profiles under /debug/pprof/ ([debug] pprof):
	// an operator's way to see where a node agent's memory and CPU go.
	// Off by default (profiles name kernels and sessions, and the internal
	// address listens on every interface by default, as upstream's); the
	// profiles are served without the CORS header of the other paths, so
	// that no web page can read them.
	Pprof bool
}

// Start binds addr and serves. Bind errors are returned.
func Start(reg *Registry, o Options) (*Server, error) {
	if o.Interval == 0 {
		o.Interval = 60 * time.Second
	}
	s := &Server{reg: reg, checks: o.Checks, version: o.Version, log: o.Log, results: map[string]checkResult{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", s.metrics)
	mux.HandleFunc("/health", s.health)
	mux.HandleFunc("/livez", s.probe)
	mux.HandleFunc("/readyz", s.probe)
	var handler http.Handler = cors(mux)
	if o.Pprof {
		root := http.NewServeMux()
		root.HandleFunc("/debug/pprof/", pprof.Index)
		root.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		root.HandleFunc("/debug/pprof/profile", pprof.Profile)
		root.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		root.HandleFunc("/debug/pprof/trace", pprof.Trace)
		root.Handle("/", handler)
		handler = root
	}
	// Idle and write bounds: a client that keeps a connection open doing
	// nothing, or never reads a /metrics body, must not hold a goroutine
	// and its buffer for ever (the address is usually reachable from
	// kernels through their bridge's gateway). Two minutes leave room for
	// pprof's CPU profiles.
	s.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: time.Minute, ErrorLog: slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug)}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("internal-addr %s: %w", o.Addr, err)
	}
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("agent.ssl-cert/ssl-key: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	s.ln = ln
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("internal http server", "error", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		// The first round runs here, not in Start: an unreachable
		// dependency must not hold up the agent's start.
		s.runChecks(ctx)
		t := time.NewTicker(o.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.runChecks(ctx)
			}
		}
	}()
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	s.wg.Wait()
}

// runChecks runs every check concurrently, each under its own 5-s
// deadline, so one stuck dependency delays no other.
func (s *Server) runChecks(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range s.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.Probe(cctx)
			cancel()
			r := checkResult{ok: err == nil, at: time.Now().UTC()}
			if err != nil {
				r.err = err.Error()
			}
			s.mu.Lock()
			s.results[c.Group+"/"+c.Name] = r
			s.mu.Unlock()
		}()
	}
	wg.Wait()
}

func cors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		h.ServeHTTP(w, r)
	})
}

func (s *Server) metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_ = s.reg.WriteText(w)
}

func (s *Server) healthBody() (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	overall := true
	var checks []any
	for _, c := range s.checks {
		r := s.results[c.Group+"/"+c.Name]
		overall = overall && r.ok
		var msg any
		if r.err != "" {
			msg = r.err
		}
		checks = append(checks, map[string]any{"service_group": c.Group, "component_id": c.Name, "is_healthy": r.ok, "last_checked_at": r.at.Format(time.RFC3339Nano), "error_message": msg})
	}
	if checks == nil {
		checks = []any{}
	}
	status := "ok"
	if !overall {
		status = "degraded"
	}
	return map[string]any{"status": status, "version": s.version, "component": "agent",
		"connectivity": map[string]any{"overall_healthy": overall, "connectivity_checks": checks, "timestamp": time.Now().UTC().Format(time.RFC3339Nano)}}, overall
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	body, _ := s.healthBody()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) probe(w http.ResponseWriter, _ *http.Request) {
	body, ok := s.healthBody()
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(body)
}
