// Command bai-agent is the compute-node agent: a drop-in replacement for
// the Backend.AI Agent that runs kernels as Docker containers.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/app"
	"github.com/bai-agent/bai-agent/internal/backend/docker"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/ctl"
	"github.com/bai-agent/bai-agent/internal/demoimage"
	"github.com/bai-agent/bai-agent/internal/doctor"
	"github.com/bai-agent/bai-agent/internal/rpc/zmq"
)

func main() {
	os.Exit(run())
}

// exitCode is what a failed command exits with: 2 for configuration
// problems, 1 for everything else.
func exitCode(err error) int {
	var ce *app.ConfigError
	if errors.As(err, &ce) {
		return 2
	}
	var cerr *ctl.Error
	if errors.As(err, &cerr) {
		return ctl.ExitCode(err)
	}
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// errNotReady is doctor's verdict (exit status 1, its report says why).
var errNotReady = errors.New("the node is not ready")

// usageError marks a command line cobra refused (unknown command, bad
// flag, wrong arguments): exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// markUsage makes every command report its flag and argument errors as
// usageErrors.
func markUsage(c *cobra.Command) {
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	if orig := c.Args; orig != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := orig(cmd, args); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	for _, sc := range c.Commands() {
		markUsage(sc)
	}
}

// configCheck is "bai-agent config check FILE": it prints the unknown
// keys, the unimplemented keys with their status, and a verdict, and
// fails (a ConfigError: exit status 2) where start-up would.
func configCheck(w io.Writer, path string, env func(string) (string, bool)) error {
	res, err := config.CheckFile(path, env)
	if err != nil {
		return &app.ConfigError{Err: err}
	}
	for _, u := range res.Warnings {
		fmt.Fprintf(w, "%s\n", u)
	}
	if len(res.Findings) > 0 {
		fmt.Fprintf(w, "keys set that bai-agent does not implement (see %s):\n", config.DocRef)
		for _, f := range res.Findings {
			fmt.Fprintf(w, "  %-8s %s = %s  (%s)\n  %-8s %s\n", f.Status, f.Key, f.Value, f.Where(), "", f.Why)
		}
	}
	if err := config.Refuses(res.Findings); err != nil {
		n := len(err.(*config.UnsupportedError).Findings)
		return &app.ConfigError{Err: fmt.Errorf("%s: start-server would refuse this config: %d key(s) refused (listed above)", path, n)}
	}
	cfg := res.Config
	if !cfg.MultiAgent() {
		fmt.Fprintf(w, "%s: ok (agent %s, rpc %s, scratch %s at %s)\n", path, cfg.Agent.ID, cfg.Agent.RPCListenAddr, cfg.Container.ScratchType, cfg.Container.ScratchRoot)
		return nil
	}
	acfgs, err := cfg.AgentConfigs()
	if err != nil {
		return &app.ConfigError{Err: err}
	}
	mode := cfg.Resource.AllocationMode + ", one allocator"
	if cfg.Resource.SharedOvercommit {
		mode = cfg.Resource.AllocationMode + ", an allocator per agent (shared-overcommit)"
	}
	fmt.Fprintf(w, "%s: ok (%d agents, allocation-mode %s)\n", path, len(acfgs), mode)
	for _, c := range acfgs {
		fmt.Fprintf(w, "  agent %s, rpc %s, scratch %s at %s\n", c.Agent.ID, c.Agent.RPCListenAddr, c.Container.ScratchType, c.Container.ScratchRoot)
	}
	return nil
}

func run() int {
	root := &cobra.Command{
		Use:           "bai-agent",
		Short:         "Backend.AI-compatible compute-node agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var cfgPath string
	start := &cobra.Command{
		Use:   "start-server",
		Short: "Run the agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := app.LoadConfig(cfgPath, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			// The id comes before the logger: Loki labels records with it.
			id, err := app.ResolveAgentID(context.Background(), cfg)
			if err != nil {
				return err
			}
			lg, err := app.NewLogger(cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer lg.Close()
			app.LogAgentID(lg.Log, id)
			return app.Run(context.Background(), cfg, lg)
		},
	}
	start.Flags().StringVarP(&cfgPath, "config", "f", "", "path to agent.toml")
	version := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "bai-agent %s (Backend.AI agent protocol 26.8)\n", agent.Version)
		},
	}
	cfgCmd := &cobra.Command{Use: "config", Short: "Configuration tools", Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return cmd.Help()
		}}
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a config file; list unknown keys and the keys bai-agent does not implement",
		Long: `Load FILE as start-server does (defaults, BACKEND_* environment
overrides, validation) and list the keys it does not know, then every key
that is set and that bai-agent does not implement, with its status:
refused (start-server would not start), warned (start-server logs a
warning and ignores it) or neutral (the value makes no difference). The
exit status is 2 when start-server would refuse the config.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return configCheck(cmd.OutOrStdout(), args[0], os.LookupEnv)
		},
	}
	var showCfg string
	var showEffective, showOnlySet bool
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the configuration with each value's source (default, file:line, environment, etcd)",
		Long: `Print every configuration key with its value and where it came from:
the built-in default, a line of the config file, an environment variable
(BACKEND_*), or, with --effective, the etcd key that overrides it, as
start-server would merge them. Secrets (passwords, tokens) are redacted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := app.LoadConfig(showCfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			var etcdErr error
			if showEffective {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				etcdErr = app.EffectiveConfig(ctx, cfg)
				cancel()
			}
			config.PrintEffective(cmd.OutOrStdout(), cfg.Effective(), showOnlySet)
			if etcdErr != nil {
				return fmt.Errorf("the values above lack etcd's overrides: %w", etcdErr)
			}
			return nil
		},
	}
	show.Flags().StringVarP(&showCfg, "config", "f", "", "path to agent.toml")
	show.Flags().BoolVar(&showEffective, "effective", false, "also apply the overrides etcd holds for this node (as start-server does)")
	show.Flags().BoolVar(&showOnlySet, "only-set", false, "leave out keys that have their default value")
	cfgCmd.AddCommand(check, show)
	keygen := &cobra.Command{
		Use:   "keygen DIR NAME",
		Short: "Write a CurveZMQ keypair as DIR/NAME.key and DIR/NAME.key_secret (pyzmq's format)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, sec, err := zmq.WriteCertificates(args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "public key:  %s\nsecret key:  %s (keep it private)\n", pub, sec)
			return nil
		},
	}
	var doctorCfg string
	doctorCmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this host before running the agent; exit status 0 when it is ready",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := app.LoadConfig(doctorCfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			// Check what the agent would run with: etcd's overrides (the
			// kernel user, the resource group's sandbox runtime) applied.
			// An unreachable etcd is the control-plane check's to report;
			// a value the agent would refuse is a finding of its own.
			var pre []doctor.Finding
			if cfg.Agent.ControlPlane == "etcd" {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := app.EffectiveConfig(ctx, cfg)
				cancel()
				var ce *app.ConfigError
				if errors.As(err, &ce) {
					pre = append(pre, doctor.Finding{Check: "etcd config", Level: doctor.Fail, Msg: err.Error()})
				}
			}
			fs := append(pre, doctor.Run(context.Background(), cfg, doctor.Options{})...)
			doctor.Print(cmd.OutOrStdout(), fs)
			if !doctor.Ready(fs) {
				return errNotReady
			}
			return nil
		},
	}
	doctorCmd.Flags().StringVarP(&doctorCfg, "config", "f", "", "path to agent.toml")
	var watcherCfg, watcherMode string
	watcherCmd := &cobra.Command{
		Use:   "watcher",
		Short: "Serve the watcher API (port 6009) that lets the manager start, stop and reset the agent and manage host mounts",
		Long: `Serve the Backend.AI agent watcher's HTTP API on [watcher] service-addr.
In systemd mode it controls [watcher] target-service with systemctl; in
supervisor mode it runs "bai-agent start-server -f FILE" as its child and
starts it again when it dies. Requests need X-BackendAI-Watcher-Token equal
to etcd config/watcher/token (default "insecure").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := app.LoadConfig(watcherCfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			// The agent writes the configured log file; the watcher
			// writes NAME-watcher.EXT beside it, as upstream.
			if fn := cfg.Logging.File.Filename; fn != "" {
				ext := filepath.Ext(fn)
				cfg.Logging.File.Filename = strings.TrimSuffix(fn, ext) + "-watcher" + ext
			}
			lg, err := app.NewLogger(cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer lg.Close()
			return app.RunWatcher(context.Background(), cfg, lg, watcherMode)
		},
	}
	watcherCmd.Flags().StringVarP(&watcherCfg, "config", "f", "", "path to agent.toml")
	watcherCmd.Flags().StringVar(&watcherMode, "mode", "", "systemd, supervisor or auto (default: [watcher] mode)")
	genMan := &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write man pages of every command to DIR (for packages)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // reproducible pages
			return doc.GenManTree(root, &doc.GenManHeader{Title: "BAI-AGENT", Section: "1", Source: "bai-agent " + agent.Version, Manual: "bai-agent manual"}, args[0])
		},
	}
	demoTag := ""
	demo := &cobra.Command{
		Use:   "demo-image [--tag TAG]",
		Short: "Make a Python kernel image from this host's python3.11 (no registry needed)",
		Long: `Imports a Backend.AI kernel image made of the host's Debian python3.11, its
standard library and the libraries they load, plus busybox: enough to try code
execution on an offline machine (bai-agent ctl create --image TAG; ctl exec).
Nothing is done when the tag exists.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := docker.New()
			if err != nil {
				return err
			}
			defer be.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			built, err := demoimage.Build(ctx, be.Client(), demoTag)
			if err != nil {
				return err
			}
			if built {
				fmt.Fprintf(cmd.OutOrStdout(), "made %s from %s (runtime python; try: bai-agent ctl create --image %s)\n", demoTag, demoimage.Python, demoTag)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is present\n", demoTag)
			}
			return nil
		},
	}
	demo.Flags().StringVar(&demoTag, "tag", "bai-demo/python:3.11", "image tag")
	root.AddCommand(start, version, cfgCmd, keygen, doctorCmd, watcherCmd, genMan, demo, ctl.Command())
	markUsage(root)
	// An unknown command is found before cobra runs anything: Find fails
	// only on the command path itself.
	if _, _, err := root.Find(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "bai-agent: %v\n", err)
		return 2
	}
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "bai-agent: %v\n", err)
		return exitCode(err)
	}
	return 0
}
