package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/backend/docker"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/rpc"
	"github.com/bai-agent/bai-agent/internal/rpc/zmq"
)

// ConfigError marks a problem with the configuration (exit status 2).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfig finds and loads the config: the given path, else
// ./agent.toml, else /etc/backend.ai/agent.toml.
func LoadConfig(path string, warn io.Writer) (*config.Config, error) {
	if path == "" {
		for _, p := range []string{"agent.toml", "/etc/backend.ai/agent.toml"} {
			if _, err := os.Stat(p); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		return nil, &ConfigError{Err: errors.New("no config file: pass -f FILE or create ./agent.toml or /etc/backend.ai/agent.toml")}
	}
	res, err := config.LoadFile(path, os.LookupEnv)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(warn, "warning: %s\n", w)
	}
	return res.Config, nil
}

// NewLogger builds the slog logger from [logging].
func NewLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToUpper(cfg.Logging.Level) {
	case "DEBUG", "NOTSET":
		level = slog.LevelDebug
	case "WARNING":
		level = slog.LevelWarn
	case "ERROR", "CRITICAL":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	if cfg.Debug.Enabled {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Logging.Console.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Run starts the agent and blocks until ctx ends or SIGINT/SIGTERM.
// Kernels keep running when the agent stops.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var curve *zmq.Curve
	if cfg.Agent.RPCAuthAgentKeypair != "" {
		c, err := zmq.LoadCurve(cfg.Agent.RPCAuthAgentKeypair, cfg.Agent.RPCAuthManagerPublicKey)
		if err != nil {
			return &ConfigError{Err: fmt.Errorf("agent.rpc-auth-*: %w", err)}
		}
		curve = c
	}
	if err := writePIDFile(cfg.Agent.PIDFile); err != nil {
		return err
	}
	defer removePIDFile(cfg.Agent.PIDFile)
	be, err := docker.New()
	if err != nil {
		return err
	}
	defer be.Close()
	a, err := agent.New(ctx, agent.Options{Config: cfg, Backend: be, Log: log})
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	defer a.Close()
	srv := rpc.NewServer(log.With("component", "rpc"), a.ID())
	rpc.AgentMethods(srv, a, be)
	tr, err := zmq.Listen(ctx, log.With("component", "rpc"), cfg.Agent.RPCListenAddr.String(), srv, curve)
	if err != nil {
		return err
	}
	defer tr.Close()
	slots := a.Allocator().Available()
	auth := "none"
	if curve != nil {
		auth = "curve (public key " + curve.AgentPublic + ")"
	}
	log.Info("agent started", "agent_id", a.ID(), "rpc", "tcp://"+tr.Addr(), "rpc_auth", auth, "version", agent.Version,
		"cpu", slots["cpu"].String(), "mem", slots["mem"].String(), "kernels", len(a.Kernels()))
	<-ctx.Done()
	log.Info("agent stopping; kernels keep running")
	return nil
}

func writePIDFile(path string) error {
	if path == "" || path == "/dev/null" {
		return nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("agent.pid-file: %w", err)
	}
	return nil
}

func removePIDFile(path string) {
	if path == "" || path == "/dev/null" {
		return
	}
	_ = os.Remove(path)
}
