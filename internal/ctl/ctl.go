package ctl

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/rpc/zmq"
	"github.com/bai-agent/bai-agent/internal/units"
	"github.com/bai-agent/bai-agent/internal/wire"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitUsage       = 2
	ExitUnreachable = 3
)

// Error carries an exit code and a hint for the user.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func usage(format string, args ...any) error {
	return &Error{Code: ExitUsage, Msg: fmt.Sprintf(format, args...)}
}

type options struct {
	addr       string
	configPath string
	managerKey string
	jsonOut    bool
	timeout    time.Duration
	// keyDir keeps the private keys of the kernels ctl created.
	keyDir string
	// mediaDir receives exec's media outputs (plots, images).
	mediaDir string
}

// Command returns the `ctl` command tree.
func Command() *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "ctl",
		Short: "Drive one agent without a manager (create, ls, logs, cp, destroy, ...)",
		Long: `ctl talks to a running bai-agent over its RPC port, as a manager would.

The agent's address comes from --addr, else BAI_AGENT_ADDR, else the
rpc-listen-addr of the config given with -f (default tcp://127.0.0.1:6011).
When the agent requires CurveZMQ, pass the manager's secret certificate with
--manager-keypair; the agent's public key is read from -f's
rpc-auth-agent-keypair.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&o.addr, "addr", "", "agent RPC address (tcp://host:port)")
	root.PersistentFlags().StringVar(&o.keyDir, "ssh-key-dir", defaultKeyDir(), "where create keeps each kernel's SSH private key (for `app KERNEL sshd`)")
	root.PersistentFlags().StringVarP(&o.configPath, "config", "f", "", "agent.toml to read the address and CURVE key from")
	root.PersistentFlags().StringVar(&o.managerKey, "manager-keypair", "", "manager's .key_secret certificate (CurveZMQ)")
	root.PersistentFlags().BoolVar(&o.jsonOut, "json", false, "print JSON instead of tables")
	root.PersistentFlags().DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for the agent")
	root.AddCommand(o.pingCmd(), o.infoCmd(), o.createCmd(), o.lsCmd(), o.execCmd(), o.appCmd(), o.appsCmd(), o.logsCmd(), o.restartCmd(), o.destroyCmd(), o.cpCmd(), o.imagesCmd(), o.pullCmd())
	return root
}

func (o *options) dial() (*client.Client, error) {
	addr := o.addr
	if addr == "" {
		addr = os.Getenv("BAI_AGENT_ADDR")
	}
	var curve *client.Curve
	if o.configPath != "" {
		res, err := config.LoadFile(o.configPath, os.LookupEnv)
		if err != nil {
			return nil, usage("%v", err)
		}
		if addr == "" {
			hp := res.Config.Agent.RPCListenAddr
			if hp.Host == "0.0.0.0" || hp.Host == "" {
				hp.Host = "127.0.0.1"
			}
			addr = "tcp://" + hp.String()
		}
		if kp := res.Config.Agent.RPCAuthAgentKeypair; kp != "" {
			if o.managerKey == "" {
				return nil, usage("the agent requires CurveZMQ: pass the manager's secret certificate with --manager-keypair")
			}
			ac, err := zmq.LoadCertificate(kp)
			if err != nil {
				return nil, usage("%v", err)
			}
			curve = &client.Curve{ServerPublic: ac.Public}
		}
	}
	if o.managerKey != "" {
		mc, err := zmq.LoadCertificate(o.managerKey)
		if err != nil {
			return nil, usage("%v", err)
		}
		if mc.Secret == "" {
			return nil, usage("%s has no secret-key: pass the .key_secret file", o.managerKey)
		}
		if curve == nil {
			return nil, usage("--manager-keypair needs -f with the agent's config (for the agent's public key)")
		}
		curve.Public, curve.Secret = mc.Public, mc.Secret
	}
	if addr == "" {
		addr = "tcp://127.0.0.1:6011"
	}
	if !strings.HasPrefix(addr, "tcp://") {
		addr = "tcp://" + addr
	}
	c, err := client.Dial(addr, 5*time.Second, curve)
	if err != nil {
		hint := "is the agent running (./scripts/run-agent.sh)?"
		if curve == nil {
			hint += " If it requires CurveZMQ, pass -f and --manager-keypair."
		} else {
			hint += " Check that the agent admits this manager key."
		}
		return nil, &Error{Code: ExitUnreachable, Msg: fmt.Sprintf("cannot reach the agent at %s: %v; %s", addr, err, hint)}
	}
	return c, nil
}

func (o *options) call(meth string, args []any, kwargs map[string]any) (any, error) {
	c, err := o.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	v, err := c.Call(ctx, meth, args, kwargs)
	if err != nil {
		var re *client.RemoteError
		if errors.As(err, &re) {
			return nil, &Error{Code: ExitFailed, Msg: fmt.Sprintf("%s failed: %s", meth, re.Repr)}
		}
		return nil, &Error{Code: ExitFailed, Msg: fmt.Sprintf("%s: %v", meth, err)}
	}
	return v, nil
}

func (o *options) print(cmd *cobra.Command, v any, table func(w io.Writer)) {
	if o.jsonOut {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		_ = enc.Encode(wire.Plain(v))
		return
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	table(tw)
	tw.Flush()
}

func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func (o *options) pingCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ping",
		Short: "Check that the agent answers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t0 := time.Now()
			v, err := o.call("ping", []any{"ping"}, nil)
			if err != nil {
				return err
			}
			rtt := time.Since(t0)
			o.print(cmd, map[string]any{"reply": v, "rtt_ms": float64(rtt.Microseconds()) / 1000}, func(w io.Writer) {
				fmt.Fprintf(w, "pong (%s)\n", rtt.Round(time.Microsecond))
			})
			return nil
		},
	}
}

func (o *options) status() (map[string]any, error) {
	v, err := o.call("bai_status", nil, nil)
	if err != nil {
		return nil, err
	}
	m, _ := wire.Plain(v).(map[string]any)
	return m, nil
}

func (o *options) infoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the agent, its hardware and its resource slots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := o.status()
			if err != nil {
				return err
			}
			hw, err := o.call("gather_hwinfo", nil, nil)
			if err != nil {
				return err
			}
			st["hwinfo"] = wire.Plain(hw)
			o.print(cmd, st, func(w io.Writer) {
				fmt.Fprintf(w, "agent\t%s\nversion\t%s\nkernels\t%d\n\n", str(st["agent_id"]), str(st["version"]), len(st["kernels"].([]any)))
				fmt.Fprintln(w, "SLOT\tTYPE\tUSED\tAVAILABLE")
				slots, _ := st["slots"].(map[string]any)
				names := make([]string, 0, len(slots))
				for n := range slots {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", n, str(get(slots, n, "type")), human(n, str(get(slots, n, "used"))), human(n, str(get(slots, n, "available"))))
				}
				fmt.Fprintln(w, "\nDEVICE\tSTATUS\tDETAILS")
				hwm, _ := st["hwinfo"].(map[string]any)
				for _, n := range sortedKeys(hwm) {
					md, _ := get(hwm, n, "metadata").(map[string]any)
					var parts []string
					for _, k := range sortedKeys(md) {
						parts = append(parts, k+"="+str(md[k]))
					}
					fmt.Fprintf(w, "%s\t%s\t%s\n", n, str(get(hwm, n, "status")), strings.Join(parts, " "))
				}
			})
			return nil
		},
	}
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// human prints byte slots in binary units.
func human(slot, v string) string {
	if slot != "mem" {
		return v
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return v
	}
	return units.FormatBinarySize(n)
}

func (o *options) createCmd() *cobra.Command {
	var (
		img, cpu, mem, shm, sessionType, startup, bootstrap string
		mounts, envs, extraSlots                            []string
		ports                                               []int
	)
	c := &cobra.Command{
		Use:   "create --image IMAGE [--cpu N] [--mem SIZE] [--shm SIZE] [--slot cuda.device=N] [--mount HOST:KERNEL[:ro|rw]] [--env K=V] [--port N]",
		Short: "Create a kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if img == "" {
				return usage("--image is required (see `bai-agent ctl images`)")
			}
			memBytes, err := units.ParseBinarySize(mem)
			if err != nil {
				return usage("--mem: %v", err)
			}
			shmBytes, err := units.ParseBinarySize(shm)
			if err != nil {
				return usage("--shm: %v", err)
			}
			env := map[string]any{}
			for _, e := range envs {
				k, v, ok := strings.Cut(e, "=")
				if !ok || k == "" {
					return usage("--env %q: expected KEY=VALUE", e)
				}
				env[k] = v
			}
			var ms []any
			for _, m := range mounts {
				parts := strings.Split(m, ":")
				if len(parts) < 2 || len(parts) > 3 {
					return usage("--mount %q: expected HOST_PATH:KERNEL_PATH[:ro|rw]", m)
				}
				perm := "rw"
				if len(parts) == 3 {
					perm = parts[2]
				}
				host, err := filepath.Abs(parts[0])
				if err != nil {
					return usage("--mount %q: %v", m, err)
				}
				ms = append(ms, map[string]any{"name": filepath.Base(host), "host_path": host, "kernel_path": parts[1], "mount_perm": perm})
			}
			rs := map[string]any{"cpu": cpu, "mem": strconv.FormatInt(memBytes, 10)}
			for _, sl := range extraSlots {
				k, v, ok := strings.Cut(sl, "=")
				if !ok || k == "" || v == "" {
					return usage("--slot %q: expected SLOT=AMOUNT (cuda.device=1, cuda.shares=0.5)", sl)
				}
				rs[k] = v
			}
			pp := make([]any, len(ports))
			for i, p := range ports {
				pp[i] = p
			}
			sid, kid := uuid.NewString(), uuid.NewString()
			env["BACKENDAI_SESSION_ID"] = sid
			// The session's key pair, passed as the manager passes the
			// user's (internal_data.ssh_keypair).
			pub, priv, err := sshKeyPair()
			if err != nil {
				return fmt.Errorf("ssh key pair: %w", err)
			}
			// A node-local image, named as Docker knows it or as the manager
			// names it (local/project/name:tag).
			regName := ""
			if strings.HasPrefix(img, "local/") {
				regName = "local"
			}
			cfg := map[string]any{
				"image":            map[string]any{"canonical": img, "is_local": true, "auto_pull": "none", "registry": map[string]any{"name": regName, "url": ""}, "labels": map[string]any{}},
				"kernel_id":        kid,
				"session_id":       sid,
				"owner_user_id":    "",
				"network_id":       sid,
				"session_type":     sessionType,
				"cluster_mode":     "single-node",
				"cluster_role":     "main",
				"cluster_idx":      1,
				"local_rank":       0,
				"resource_slots":   rs,
				"resource_opts":    map[string]any{"shmem": shmBytes},
				"environ":          env,
				"mounts":           ms,
				"preopen_ports":    pp,
				"startup_command":  startup,
				"bootstrap_script": bootstrap,
				"internal_data":    map[string]any{"ssh_keypair": map[string]any{"public_key": pub, "private_key": priv}},
			}
			cluster := map[string]any{"mode": "single-node", "size": 1, "replicas": map[string]any{"main": 1}, "network_config": map[string]any{"mode": "bridge"}}
			v, err := o.call("create_kernels", []any{sid, []any{kid}, []any{cfg}, cluster, map[string]any{}}, nil)
			if err != nil {
				return err
			}
			res := wire.Plain(v)
			keyFile, kerr := saveKey(o.keyDir, kid, priv)
			if kerr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v (ssh into the kernel will need another key)\n", kerr)
			}
			o.print(cmd, res, func(w io.Writer) {
				k := res.([]any)[0]
				fmt.Fprintf(w, "kernel\t%s\nsession\t%s\ncontainer\t%s\n", str(get(k, "id")), sid, shortID(str(get(k, "container_id"))))
				if keyFile != "" {
					fmt.Fprintf(w, "ssh key\t%s\n", keyFile)
				}
				host := str(get(k, "kernel_host"))
				for _, sp := range get(k, "service_ports").([]any) {
					for i, hp := range get(sp, "host_ports").([]any) {
						cp := get(sp, "container_ports").([]any)[i]
						fmt.Fprintf(w, "port %s\t%s:%v -> %v (%s)\n", str(get(sp, "name")), host, hp, cp, str(get(sp, "protocol")))
					}
				}
			})
			return nil
		},
	}
	c.Flags().StringVar(&img, "image", "", "image (must be present on the node)")
	c.Flags().StringVar(&cpu, "cpu", "1", "CPU cores")
	c.Flags().StringVar(&mem, "mem", "1g", "memory (e.g. 512m, 4g)")
	c.Flags().StringVar(&shm, "shm", "64m", "shared memory (/dev/shm), at most --mem")
	c.Flags().StringArrayVar(&mounts, "mount", nil, "vfolder HOST:KERNEL[:ro|rw] (repeatable; host path under the agent's mount-path)")
	c.Flags().StringArrayVar(&envs, "env", nil, "environment KEY=VALUE (repeatable)")
	c.Flags().StringArrayVar(&extraSlots, "slot", nil, "another resource slot SLOT=AMOUNT, e.g. cuda.device=1 (repeatable; see `ctl info`)")
	c.Flags().IntSliceVar(&ports, "port", nil, "extra container port to publish (repeatable)")
	c.Flags().StringVar(&sessionType, "type", "interactive", "session type: interactive or batch")
	c.Flags().StringVar(&startup, "startup-command", "", "batch: the command to run")
	c.Flags().StringVar(&bootstrap, "bootstrap", "", "bootstrap script written to /home/work/bootstrap.sh")
	return c
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// resolve finds a kernel by id or unique id prefix and returns it.
func (o *options) resolve(prefix string) (map[string]any, error) {
	st, err := o.status()
	if err != nil {
		return nil, err
	}
	var found []map[string]any
	for _, k := range st["kernels"].([]any) {
		km := k.(map[string]any)
		if strings.HasPrefix(str(km["id"]), prefix) {
			found = append(found, km)
		}
	}
	switch len(found) {
	case 0:
		return nil, &Error{Code: ExitFailed, Msg: fmt.Sprintf("no kernel %q on this agent (see `bai-agent ctl ls`)", prefix)}
	case 1:
		return found[0], nil
	}
	return nil, usage("%q matches %d kernels; give more of the id", prefix, len(found))
}

func (o *options) lsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List kernels",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := o.status()
			if err != nil {
				return err
			}
			ks := st["kernels"].([]any)
			o.print(cmd, ks, func(w io.Writer) {
				fmt.Fprintln(w, "KERNEL\tSESSION\tSTATE\tIMAGE\tCORE IDS\tMEM\tACCELERATORS\tAGE")
				for _, k := range ks {
					cores := []string{}
					for _, c := range get(k, "cpu_cores").([]any) {
						cores = append(cores, str(c))
					}
					age := ""
					if ts, ok := get(k, "created_at").(int64); ok && ts > 0 {
						age = time.Since(time.Unix(ts, 0)).Round(time.Second).String()
					}
					var accs []string
					am, _ := get(k, "accelerators").(map[string]any)
					for _, slot := range sortedKeys(am) {
						var ids []string
						for _, id := range am[slot].([]any) {
							ids = append(ids, str(id))
						}
						accs = append(accs, slot+"="+strings.Join(ids, ","))
					}
					if len(accs) == 0 {
						accs = []string{"-"}
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", str(get(k, "id")), shortID(str(get(k, "session_id"))), str(get(k, "state")), str(get(k, "image")), strings.Join(cores, ","), human("mem", str(get(k, "mem"))), strings.Join(accs, " "), age)
				}
			})
			return nil
		},
	}
}

func (o *options) logsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logs KERNEL",
		Short: "Print a kernel's output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := o.resolve(args[0])
			if err != nil {
				return err
			}
			v, err := o.call("get_logs", []any{str(k["id"])}, nil)
			if err != nil {
				return err
			}
			logs := str(get(wire.Plain(v), "logs"))
			if o.jsonOut {
				o.print(cmd, map[string]any{"logs": logs}, nil)
				return nil
			}
			fmt.Fprint(cmd.OutOrStdout(), logs)
			return nil
		},
	}
}

func (o *options) restartCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restart KERNEL",
		Short: "Restart a kernel's container, keeping its files and resources",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := o.resolve(args[0])
			if err != nil {
				return err
			}
			v, err := o.call("restart_kernel", []any{str(k["session_id"]), str(k["id"]), nil, map[string]any{}}, nil)
			if err != nil {
				return err
			}
			res := wire.Plain(v)
			o.print(cmd, res, func(w io.Writer) {
				fmt.Fprintf(w, "restarted\t%s\ncontainer\t%s\n", str(k["id"]), shortID(str(get(res, "container_id"))))
			})
			return nil
		},
	}
}

func (o *options) destroyCmd() *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "destroy KERNEL...",
		Short: "Destroy kernels (container, scratch and resources)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var done []any
			for _, a := range args {
				k, err := o.resolve(a)
				if err != nil {
					return err
				}
				if _, err := o.call("destroy_kernel", []any{str(k["id"]), str(k["session_id"]), reason, false}, nil); err != nil {
					return err
				}
				removeKey(o.keyDir, str(k["id"]))
				done = append(done, str(k["id"]))
			}
			o.print(cmd, map[string]any{"destroyed": done}, func(w io.Writer) {
				for _, d := range done {
					fmt.Fprintf(w, "destroyed\t%s\n", d)
				}
			})
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "user-requested", "termination reason reported to the manager")
	return c
}

func (o *options) imagesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "images",
		Short: "List the Backend.AI kernel images present on the node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := o.call("bai_images", nil, nil)
			if err != nil {
				return err
			}
			imgs := wire.Plain(v).([]any)
			o.print(cmd, imgs, func(w io.Writer) {
				fmt.Fprintln(w, "IMAGE\tID\tSERVICE PORTS")
				for _, i := range imgs {
					tags := get(i, "tags").([]any)
					if len(tags) == 0 {
						tags = []any{"<none>"}
					}
					for _, tag := range tags {
						fmt.Fprintf(w, "%s\t%s\t%s\n", str(tag), shortID(strings.TrimPrefix(str(get(i, "id")), "sha256:")), str(get(i, "labels", "ai.backend.service-ports")))
					}
				}
			})
			return nil
		},
	}
}

// cpCmd copies files between the local machine and a kernel's /home/work:
// `cp LOCAL KERNEL:PATH` uploads (directories recursively), `cp KERNEL:PATH
// LOCAL` downloads (a tar of at most 1 MiB, extracted).
func (o *options) cpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files to or from a kernel (KERNEL:PATH is inside /home/work)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := args[0], args[1]
			sk, sp, sRemote := splitRemote(src)
			dk, dp, dRemote := splitRemote(dst)
			switch {
			case sRemote == dRemote:
				return usage("exactly one of SRC and DST must be KERNEL:PATH")
			case dRemote:
				k, err := o.resolve(dk)
				if err != nil {
					return err
				}
				return o.upload(cmd, str(k["id"]), src, dp)
			default:
				k, err := o.resolve(sk)
				if err != nil {
					return err
				}
				return o.download(cmd, str(k["id"]), sp, dst)
			}
		},
	}
}

func splitRemote(s string) (kernel, path string, remote bool) {
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") {
		return "", s, false
	}
	k, p, ok := strings.Cut(s, ":")
	if !ok || k == "" {
		return "", s, false
	}
	return k, p, true
}

func (o *options) upload(cmd *cobra.Command, kid, local, remote string) error {
	st, err := os.Stat(local)
	if err != nil {
		return usage("%v", err)
	}
	var n int
	upload := func(path, target string) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return usage("%v", err)
		}
		if _, err := o.call("upload_file", []any{kid, target, data}, nil); err != nil {
			return err
		}
		n++
		return nil
	}
	if !st.IsDir() {
		target := remote
		if target == "" || strings.HasSuffix(target, "/") {
			target += filepath.Base(local)
		}
		if err := upload(local, target); err != nil {
			return err
		}
	} else {
		err = filepath.WalkDir(local, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			rel, _ := filepath.Rel(local, p)
			return upload(p, filepath.ToSlash(filepath.Join(remote, filepath.Base(local), rel)))
		})
		if err != nil {
			return err
		}
	}
	o.print(cmd, map[string]any{"uploaded_files": n}, func(w io.Writer) { fmt.Fprintf(w, "uploaded %d file(s)\n", n) })
	return nil
}

func (o *options) download(cmd *cobra.Command, kid, remote, local string) error {
	v, err := o.call("download_file", []any{kid, remote}, nil)
	if err != nil {
		return err
	}
	data, ok := v.([]byte)
	if !ok {
		return &Error{Code: ExitFailed, Msg: "download_file returned no archive"}
	}
	if err := os.MkdirAll(local, 0o755); err != nil {
		return usage("%v", err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return &Error{Code: ExitFailed, Msg: "bad archive: " + err.Error()}
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return &Error{Code: ExitFailed, Msg: "archive member escapes the destination: " + h.Name}
		}
		target := filepath.Join(local, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return usage("%v", err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return usage("%v", err)
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, os.FileMode(h.Mode)&0o777)
			if err != nil {
				return usage("%v", err)
			}
			_, err = io.Copy(f, tr)
			f.Close()
			if err != nil {
				return usage("%v", err)
			}
			n++
		}
	}
	o.print(cmd, map[string]any{"downloaded_files": n}, func(w io.Writer) { fmt.Fprintf(w, "downloaded %d file(s) into %s\n", n, local) })
	return nil
}

// ExitCode maps an error from the ctl tree to the process exit status.
func ExitCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitUsage
}

// pullCmd pulls an image through the agent (check_and_pull) and draws its
// byte progress until the background task ends.
func (o *options) pullCmd() *cobra.Command {
	var user, password, policy string
	c := &cobra.Command{
		Use:   "pull IMAGE",
		Short: "Pull an image onto the node, with a progress bar",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			img := args[0]
			reg := strings.SplitN(img, "/", 2)[0]
			ic := map[string]any{"canonical": img, "auto_pull": policy, "is_local": false,
				"registry": map[string]any{"name": reg, "url": "https://" + reg, "username": user, "password": password}}
			v, err := o.call("check_and_pull", []any{map[string]any{img: ic}}, nil)
			if err != nil {
				return err
			}
			id := str(get(wire.Plain(v), img))
			var last map[string]any
			for {
				tv, err := o.call("bai_task", []any{id}, nil)
				if err != nil {
					return err
				}
				last, _ = wire.Plain(tv).(map[string]any)
				if !o.jsonOut {
					fmt.Fprintf(cmd.ErrOrStderr(), "\r%s", progressLine(img, last))
				}
				if str(last["status"]) != "running" {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if !o.jsonOut {
				fmt.Fprintln(cmd.ErrOrStderr())
			}
			o.print(cmd, last, func(w io.Writer) { fmt.Fprintf(w, "%s: %s\n", str(last["status"]), str(last["message"])) })
			if str(last["status"]) != "done" {
				return &Error{Code: ExitFailed, Msg: fmt.Sprintf("pull of %s %s: %s", img, str(last["status"]), str(last["message"]))}
			}
			return nil
		},
	}
	c.Flags().StringVar(&user, "username", "", "registry user")
	c.Flags().StringVar(&password, "password", "", "registry password")
	c.Flags().StringVar(&policy, "policy", "tag", "digest, tag (pull only when missing) or none")
	return c
}

func progressLine(img string, t map[string]any) string {
	cur, _ := t["current"].(int64)
	tot, _ := t["total"].(int64)
	const width = 30
	bar := strings.Repeat(" ", width)
	pct := 0.0
	if tot > 0 {
		pct = float64(cur) / float64(tot)
		if pct > 1 {
			pct = 1
		}
		n := int(pct * width)
		bar = strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	}
	return fmt.Sprintf("%s [%s] %3.0f%% %s/%s", img, bar, pct*100, units.FormatBinarySize(cur), units.FormatBinarySize(tot))
}
