package watcher

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"time"
)

// Options configure the HTTP API.
type Options struct {
	Token       string
	Control     Controller
	MountPrefix func(ctx context.Context) string // etcd volumes/_mount, default /mnt
	SoftReset   bool                             // serve POST /soft-reset
	// DockerRestart restarts the engine during a hard reset; Shutdown
	// powers the node off after /shutdown (both argv).
	DockerRestart []string
	Shutdown      []string
	Log           *slog.Logger
}

// Handler is the watcher's HTTP API.
func Handler(o Options) http.Handler {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.MountPrefix == nil {
		o.MountPrefix = func(context.Context) string { return "/mnt" }
	}
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter) { writeJSON(w, http.StatusOK, map[string]string{"result": "ok"}) }
	control := func(name string, f func(context.Context) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
			defer cancel()
			if err := f(ctx); err != nil {
				o.Log.Error("watcher: "+name, "err", err)
				writeJSON(w, http.StatusInternalServerError, map[string]string{"result": "error", "message": err.Error()})
				return
			}
			o.Log.Info("watcher: " + name)
			ok(w)
		}
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		body := map[string]any{"agent-status": o.Control.Status(r.Context()), "watcher-status": "active"}
		if s, ok := o.Control.(*Supervisor); ok {
			body["agent-pid"] = s.PID() // bai-agent's own field
		}
		writeJSON(w, http.StatusOK, body)
	})
	if o.SoftReset {
		mux.HandleFunc("POST /soft-reset", control("soft reset", o.Control.Reload))
	}
	mux.HandleFunc("POST /hard-reset", control("hard reset", func(ctx context.Context) error {
		if err := o.Control.Stop(ctx); err != nil {
			return err
		}
		if err := run(ctx, o.DockerRestart); err != nil {
			return errors.Join(err, o.Control.Start(ctx))
		}
		return o.Control.Start(ctx)
	}))
	mux.HandleFunc("POST /shutdown", control("shutdown", func(ctx context.Context) error {
		if err := o.Control.Stop(ctx); err != nil {
			return err
		}
		// After the reply has gone out, as upstream does with its alarm.
		go func() {
			time.Sleep(time.Second)
			o.Log.Warn("watcher: shutting the node down", "command", o.Shutdown)
			if err := run(context.Background(), o.Shutdown); err != nil {
				o.Log.Error("watcher: shutdown command", "err", err)
			}
		}()
		return nil
	}))
	mux.HandleFunc("POST /agent/start", control("agent start", o.Control.Start))
	mux.HandleFunc("POST /agent/stop", control("agent stop", o.Control.Stop))
	mux.HandleFunc("POST /agent/restart", control("agent restart", o.Control.Restart))
	mux.HandleFunc("GET /fstab", func(w http.ResponseWriter, r *http.Request) {
		p := fstabPath(r.URL.Query().Get("fstab_path"))
		if err := checkFstabPath(p); err != nil {
			writeErr(w, err)
			return
		}
		b, _, err := readFstab(p)
		if err != nil {
			writeErr(w, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /mounts", func(w http.ResponseWriter, r *http.Request) {
		ms, err := ListMounts(o.MountPrefix(r.Context()))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, ms)
	})
	mounts := func(name string, f func(string, MountRequest) (string, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req MountRequest
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
			if err := dec.Decode(&req); err != nil {
				writeErr(w, errors.Join(errBadRequest, err))
				return
			}
			out, err := f(o.MountPrefix(r.Context()), req)
			if err != nil {
				o.Log.Error("watcher: "+name, "name", req.Name, "err", err)
				writeErr(w, err)
				return
			}
			o.Log.Info("watcher: "+name, "name", req.Name, "fs", req.FSLocation, "type", req.FSType)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(out))
		}
	}
	mux.HandleFunc("POST /mounts", mounts("mount", Mount))
	mux.HandleFunc("DELETE /mounts", mounts("unmount", Unmount))

	token := []byte(o.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "BackendAI-AgentWatcher")
		got := []byte(r.Header.Get("X-BackendAI-Watcher-Token"))
		if subtle.ConstantTimeCompare(got, token) != 1 {
			o.Log.Info("watcher: invalid token", "remote", r.RemoteAddr, "path", r.URL.Path)
			http.Error(w, "403: Forbidden", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func run(ctx context.Context, argv []string) error {
	if len(argv) == 0 {
		return nil
	}
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return errors.Join(err, errors.New(string(out)))
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErr answers 400 for bad input and 500 for the rest, with the
// error as text (upstream answers mount errors with mount(8)'s stderr).
func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, errBadRequest) {
		code = http.StatusBadRequest
	} else if errors.Is(err, os.ErrNotExist) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
}
