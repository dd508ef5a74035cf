package ctl

import (
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/spf13/cobra"
)

func (o *options) appsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "apps KERNEL",
		Short: "List a kernel's apps (service ports) and where they listen",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := o.resolve(args[0])
			if err != nil {
				return err
			}
			sps := asAnyList(k["service_ports"])
			o.print(cmd, sps, func(w io.Writer) {
				fmt.Fprintln(w, "APP\tPROTOCOL\tCONTAINER PORTS\tHOST PORTS")
				for _, sp := range sps {
					m, _ := sp.(map[string]any)
					fmt.Fprintf(w, "%s\t%s\t%v\t%v\n", str(m["name"]), str(m["protocol"]), m["container_ports"], m["host_ports"])
				}
			})
			return nil
		},
	}
}

func (o *options) appCmd() *cobra.Command {
	var argsKV, envsKV []string
	c := &cobra.Command{
		Use:   "app KERNEL NAME [--arg K=V] [--env K=V]",
		Short: "Start an app in a kernel and print where to open it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := o.resolve(args[0])
			if err != nil {
				return err
			}
			opts := map[string]any{}
			if len(argsKV) > 0 {
				a := map[string]any{}
				for _, kv := range argsKV {
					key, val, ok := strings.Cut(kv, "=")
					if !ok {
						a[key] = nil
					} else {
						a[key] = val
					}
				}
				opts["arguments"] = a
			}
			if len(envsKV) > 0 {
				e := map[string]any{}
				for _, kv := range envsKV {
					key, val, ok := strings.Cut(kv, "=")
					if !ok {
						return usage("--env %q: expected KEY=VALUE", kv)
					}
					e[key] = val
				}
				opts["envs"] = e
			}
			v, err := o.call("start_service", []any{str(k["id"]), args[1], opts}, nil)
			if err != nil {
				return err
			}
			res, _ := wire.Plain(v).(map[string]any)
			if str(res["status"]) == "failed" {
				return &Error{Code: ExitFailed, Msg: fmt.Sprintf("%s: %s", args[1], str(res["error"]))}
			}
			host := str(k["kernel_host"])
			if host == "" {
				host = "127.0.0.1"
			}
			var port any
			proto := ""
			for _, sp := range asAnyList(k["service_ports"]) {
				m, _ := sp.(map[string]any)
				if str(m["name"]) == args[1] {
					if hp := asAnyList(m["host_ports"]); len(hp) > 0 {
						port = hp[0]
					}
					proto = str(m["protocol"])
				}
			}
			out := map[string]any{"status": res["status"], "host": host, "port": port}
			// The web terminal answers only with its token (ttyd's
			// result), given in the URL's fragment: the browser keeps it
			// out of requests (server logs, Referer) and the page reads it.
			query := ""
			if tok := str(res["token"]); tok != "" {
				out["token"] = tok
				query = "#token=" + url.QueryEscape(tok)
			}
			o.print(cmd, out, func(w io.Writer) {
				switch {
				case args[1] == "sshd":
					if key, ok := existingKey(o.keyDir, str(k["id"])); ok {
						fmt.Fprintf(w, "%s: ssh -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -p %v work@%s\n", str(res["status"]), key, port, host)
					} else {
						// Not created by this ctl: the key is the one the
						// manager passed, also in the kernel's
						// /home/work/id_container.
						fmt.Fprintf(w, "%s: ssh -i <the session's private key, also /home/work/id_container in the kernel> -p %v work@%s\n", str(res["status"]), port, host)
					}
				case proto == "http" || proto == "preopen":
					fmt.Fprintf(w, "%s: http://%s:%v/%s\n", str(res["status"]), host, port, query)
				default:
					fmt.Fprintf(w, "%s: %s:%v (%s)\n", str(res["status"]), host, port, proto)
				}
			})
			return nil
		},
	}
	c.Flags().StringArrayVar(&argsKV, "arg", nil, "argument NAME[=VALUE] for the app (repeatable; the app must allow it)")
	c.Flags().StringArrayVar(&envsKV, "env", nil, "environment KEY=VALUE for the app (repeatable; the app must allow it)")
	return c
}
