package ctl

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/bai-agent/bai-agent/internal/coderunner"
	"github.com/bai-agent/bai-agent/internal/wire"
)

func (o *options) execCmd() *cobra.Command {
	var mode string
	c := &cobra.Command{
		Use:   "exec KERNEL [CODE]",
		Short: "Run code in a kernel and stream its output (no CODE: an interactive prompt)",
		Long: `Runs CODE through the kernel's runner, as a manager's execute does: in query
mode in the kernel's runtime (python: a persistent namespace; shell: /bin/sh -c), in batch
mode as a shell command (clean, build, exec steps). Output streams as it comes; input()
reads from this terminal; Ctrl-C interrupts the run. Without CODE, lines typed at the
prompt run one after another until end of input. The exit status is 0 when the code
exited with 0, else 1 (the code's exit code is printed).`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if mode != "query" && mode != "batch" {
				return usage("--mode must be query or batch, not %q", mode)
			}
			k, err := o.resolve(args[0])
			if err != nil {
				return err
			}
			in := bufio.NewReader(cmd.InOrStdin())
			if len(args) == 2 {
				return o.runCode(cmd, k, mode, args[1], in)
			}
			interactive := false
			if f, ok := cmd.InOrStdin().(*os.File); ok {
				if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
					interactive = true
				}
			}
			for {
				if interactive {
					fmt.Fprint(cmd.ErrOrStderr(), ">>> ")
				}
				line, err := in.ReadString('\n')
				if strings.TrimSpace(line) != "" {
					if rerr := o.runCode(cmd, k, mode, strings.TrimRight(line, "\n"), in); rerr != nil {
						if e, ok := rerr.(*Error); !ok || e.Code != ExitFailed || !strings.HasPrefix(e.Msg, "exit code") {
							return rerr
						}
					}
				}
				if err == io.EOF {
					if interactive {
						fmt.Fprintln(cmd.ErrOrStderr())
					}
					return nil
				}
				if err != nil {
					return err
				}
			}
		},
	}
	c.Flags().StringVar(&mode, "mode", "query", "query (the kernel's runtime) or batch (a shell command)")
	c.Flags().StringVar(&o.mediaDir, "media-dir", os.TempDir(), "where media outputs (plots, images) are saved; their paths are printed")
	return c
}

// runCode runs one piece of code to its end, streaming output.
func (o *options) runCode(cmd *cobra.Command, k map[string]any, mode, code string, in *bufio.Reader) error {
	kid, sid := str(k["id"]), str(k["session_id"])
	runID := coderunner.NewRunID()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT)
	defer signal.Stop(sigs)
	opts := map[string]any{}
	text := code
	if mode == "batch" {
		opts["exec"], text = code, ""
	}
	const flush = 0.3
	call := func(m, t string) (map[string]any, error) {
		v, err := o.call("execute", []any{sid, kid, 3, runID, m, t, opts, flush}, nil)
		if err != nil {
			return nil, err
		}
		res, _ := wire.Plain(v).(map[string]any)
		return res, nil
	}
	// A value shown as Jupyter does has no newline; a terminal wants one
	// before the next prompt or shell line.
	last := byte('\n')
	defer func() {
		if last != '\n' {
			fmt.Fprintln(cmd.OutOrStdout())
		}
	}()
	res, err := call(mode, text)
	for {
		if err != nil {
			return err
		}
		for _, c := range asAnyList(res["console"]) {
			rec := asAnyList(c)
			if len(rec) != 2 {
				continue
			}
			switch str(rec[0]) {
			case "stdout":
				if out := str(rec[1]); out != "" {
					fmt.Fprint(cmd.OutOrStdout(), out)
					last = out[len(out)-1]
				}
			case "stderr":
				fmt.Fprint(cmd.ErrOrStderr(), str(rec[1]))
			case "media":
				m := asAnyList(rec[1])
				if len(m) == 2 {
					if path, err := saveMedia(o.mediaDir, str(m[0]), str(m[1])); err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "[%s output not saved: %v]\n", str(m[0]), err)
					} else {
						fmt.Fprintf(cmd.OutOrStdout(), "[%s output saved to %s]\n", str(m[0]), path)
					}
				}
			default:
				fmt.Fprintf(cmd.ErrOrStderr(), "[%s] %v\n", str(rec[0]), rec[1])
			}
		}
		status := str(res["status"])
		switch status {
		case "finished":
			code, _ := res["exitCode"].(int64)
			if code != 0 {
				return &Error{Code: ExitFailed, Msg: fmt.Sprintf("exit code %d", code)}
			}
			return nil
		case "waiting-input":
			line, rerr := in.ReadString('\n')
			if rerr != nil && line == "" {
				line = ""
			}
			res, err = call("input", strings.TrimRight(line, "\n"))
			continue
		}
		select {
		case <-sigs:
			if _, ierr := o.call("interrupt_kernel", []any{kid}, nil); ierr != nil {
				return ierr
			}
		case <-time.After(0):
		}
		res, err = call("continue", "")
	}
}

func asAnyList(v any) []any {
	l, _ := v.([]any)
	return l
}
