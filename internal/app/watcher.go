package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/watcher"
)

// RunWatcher serves the watcher API until SIGINT/SIGTERM. In supervisor
// mode it also runs the agent (start-server with the same config file)
// as its child, and stops it when it stops.
func RunWatcher(ctx context.Context, cfg *config.Config, lg *Logging, mode string) error {
	log := lg.Log.With("component", "watcher")
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if mode == "" {
		mode = cfg.Watcher.Mode
	}
	if mode == "auto" {
		mode = "supervisor"
		if watcher.HasSystemd() {
			mode = "systemd"
		}
	}
	o := watcher.Options{
		Token: cfg.Watcher.Token, SoftReset: cfg.Watcher.SoftResetAvailable,
		DockerRestart: cfg.Watcher.DockerRestartCommand, Shutdown: cfg.Watcher.ShutdownCommand, Log: log,
	}
	if cfg.Agent.ControlPlane == "etcd" {
		ec, err := dialEtcd(ctx, cfg)
		if err != nil {
			return err
		}
		defer ec.Close()
		tok, ok, err := ec.Get(ctx, "config/watcher/token")
		if err != nil {
			return err
		}
		o.Token = tok
		if !ok {
			o.Token = "insecure" // upstream's default
		}
		o.MountPrefix = func(ctx context.Context) string {
			if p, ok, err := ec.Get(ctx, "volumes/_mount"); err == nil && ok && p != "" {
				return p
			}
			return "/mnt"
		}
	}
	if o.Token == "" {
		o.Token = "insecure"
	}
	if o.Token == "insecure" {
		log.Warn("watcher token is the default \"insecure\"; set config/watcher/token in etcd")
	}
	var sup *watcher.Supervisor
	switch mode {
	case "systemd":
		o.Control = watcher.Systemd{Unit: cfg.Watcher.TargetService}
	case "supervisor":
		self, err := os.Executable()
		if err != nil {
			return err
		}
		if cfg.Source == "" {
			return &ConfigError{Err: errors.New("supervisor mode needs the agent's config file (-f)")}
		}
		sup = &watcher.Supervisor{Argv: []string{self, "start-server", "-f", cfg.Source}, Log: log}
		o.Control = sup
	default:
		return &ConfigError{Err: fmt.Errorf("watcher mode %q is not auto, systemd or supervisor", mode)}
	}
	ln, err := net.Listen("tcp", cfg.Watcher.ServiceAddr.String())
	if err != nil {
		return fmt.Errorf("watcher listen %s: %w", cfg.Watcher.ServiceAddr, err)
	}
	if cfg.Watcher.SSLEnabled {
		cert, err := tls.LoadX509KeyPair(cfg.Watcher.SSLCert, cfg.Watcher.SSLKey)
		if err != nil {
			ln.Close()
			return &ConfigError{Err: fmt.Errorf("watcher.ssl-cert/ssl-key: %w", err)}
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	// No write bound: a mount may take its time; idle connections go.
	srv := &http.Server{Handler: watcher.Handler(o), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)} // handshake noise is not an error
	supDone := make(chan struct{})
	if sup != nil {
		go func() { sup.Run(ctx); close(supDone) }()
		if err := sup.Start(ctx); err != nil {
			log.Error("agent did not start", "err", err)
		}
	} else {
		close(supDone)
	}
	log.Info("watcher started", "addr", ln.Addr().String(), "mode", mode, "tls", cfg.Watcher.SSLEnabled)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		stop()
		<-supDone
		return fmt.Errorf("watcher: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-supDone // the supervisor stops the agent when ctx ends
	log.Info("watcher stopped")
	return nil
}
