package krunner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/bai-agent/bai-agent/internal/jupyter"
)

// The python runtime runs query mode in the image's Jupyter kernel when it
// has one (the first kernelspec whose name contains "python", as
// upstream's runner looks for), and in the built-in helper (pyboot.py)
// otherwise. The choice is made at the first query and kept: switching
// would lose the namespace. A kernel that fails to start leaves the
// helper in charge for the kernel's lifetime.

// jupyterKspecName is what upstream's python runner matches kernelspec
// names against.
const jupyterKspecName = "python"

type jupyterState struct {
	decided bool // the first query chose the backend
	use     bool // query mode goes to the Jupyter kernel
	spec    *jupyter.Spec
	k       *jupyter.Kernel
}

// jupyterDirs are the directories searched for kernelspecs.
func (r *Runner) jupyterDirs() []string {
	if r.o.JupyterDirs != nil {
		return r.o.JupyterDirs
	}
	prefix := ""
	if py := r.pythonPath(); py != "" {
		prefix = filepath.Dir(filepath.Dir(py)) // sys.prefix of a bin/python layout
	}
	return jupyter.DataDirs(r.env, prefix)
}

// jupyterKernel returns the running kernel, starting it when needed, or
// nil when query mode uses the helper. The caller holds helperMu.
func (r *Runner) jupyterKernel() *jupyter.Kernel {
	js := &r.jup
	if !js.decided {
		js.decided = true
		spec, err := jupyter.FindSpec(r.jupyterDirs(), jupyterKspecName)
		if err != nil {
			r.log.Info("no Jupyter kernelspec; query mode uses the built-in Python helper")
			return nil
		}
		js.spec, js.use = spec, true
	}
	if !js.use {
		return nil
	}
	if js.k != nil {
		select {
		case <-js.k.Exited():
			js.k.Shutdown()
			js.k = nil
		default:
			return js.k
		}
	}
	k, err := jupyter.Start(context.Background(), jupyter.Options{Spec: js.spec, Env: r.childEnv(false), Dir: r.o.WorkDir, Output: os.Stderr})
	if err != nil {
		r.log.Warn("the Jupyter kernel did not start; query mode uses the built-in Python helper", "kernelspec", js.spec.Name, "error", err)
		js.use = false
		return nil
	}
	r.log.Info("query mode runs in the Jupyter kernel", "kernelspec", js.spec.Name, "argv", js.spec.Argv)
	js.k = k
	return k
}

// runningKernel is the live Jupyter kernel, if any (for interrupt and
// completion, which never start one).
func (r *Runner) runningKernel() *jupyter.Kernel {
	r.helperMu.Lock()
	defer r.helperMu.Unlock()
	return r.jup.k
}

// jupyterQuery runs code in the kernel k and maps its messages to output
// records as upstream's runner does; the exit code is 0, 1 for an error,
// the SystemExit code, or the kernel's exit status when it died.
func (r *Runner) jupyterQuery(k *jupyter.Kernel, code string) int {
	for len(r.inputs) > 0 { // input frames left from an earlier run are stale
		<-r.inputs
	}
	exit := 0
	_, err := k.Execute(context.Background(), code, jupyter.Hooks{
		Output: func(msgType string, content json.RawMessage) {
			for _, rec := range jupyterRecords(msgType, content, &exit) {
				r.emitChunks(rec.kind, rec.data)
			}
		},
		Input: func(prompt string, password bool) {
			if prompt != "" {
				r.emitChunks("stdout", []byte(prompt))
			}
			r.emitJSON("waiting-input", map[string]bool{"is_password": password})
		},
		Inputs: r.inputs,
	})
	switch {
	case errors.Is(err, jupyter.ErrDied):
		<-k.Exited()
		code := k.ExitCode()
		r.emit("stderr", []byte(fmt.Sprintf("the Jupyter kernel exited (status %d); its state is lost and the next run starts a fresh kernel\n", code)))
		return code
	case err != nil:
		r.log.Error("query in the Jupyter kernel failed", "error", err)
		r.emit("stderr", []byte("query failed: "+err.Error()+"\n"))
		return 127
	}
	return exit
}

type outRecord struct {
	kind string
	data []byte
}

// jupyterRecords maps one iopub message of a run to output records, as
// upstream's runner does: stream → stdout/stderr; error → the traceback
// lines joined with "\n" on stderr and exit 1 (SystemExit: its code);
// execute_result and display_data → the first MIME type of the bundle,
// text/plain only when it is alone: text/plain → stdout, image/png and
// image/jpeg → media with a data URL, image/svg+xml → media, text/html →
// html (upstream sends it as media, which the agent cannot parse). Other
// types and messages are dropped, as upstream drops them.
func jupyterRecords(msgType string, content json.RawMessage, exit *int) []outRecord {
	switch msgType {
	case "stream":
		var c struct {
			Name string `json:"name"`
			Text string `json:"text"`
		}
		if json.Unmarshal(content, &c) != nil || (c.Name != "stdout" && c.Name != "stderr") {
			return nil
		}
		return []outRecord{{c.Name, []byte(c.Text)}}
	case "error":
		var c struct {
			EName     string   `json:"ename"`
			EValue    string   `json:"evalue"`
			Traceback []string `json:"traceback"`
		}
		_ = json.Unmarshal(content, &c)
		*exit = 1
		if c.EName == "SystemExit" {
			if c.EValue == "" || c.EValue == "None" {
				*exit = 0
			} else if n, err := strconv.Atoi(c.EValue); err == nil {
				*exit = n
			}
		}
		var b bytes.Buffer
		for i, l := range c.Traceback {
			if i > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(l)
		}
		return []outRecord{{"stderr", b.Bytes()}}
	case "execute_result", "display_data":
		var c struct {
			Data json.RawMessage `json:"data"`
		}
		if json.Unmarshal(content, &c) != nil {
			return nil
		}
		mime, val, ok := firstMIME(c.Data)
		if !ok {
			return nil
		}
		switch mime {
		case "text/plain":
			return []outRecord{{"stdout", []byte(val)}}
		case "text/html":
			return []outRecord{{"html", []byte(val)}}
		case "image/png", "image/jpeg":
			b, _ := json.Marshal(map[string]string{"type": mime, "data": "data:" + mime + ";base64," + val})
			return []outRecord{{"media", b}}
		case "image/svg+xml":
			b, _ := json.Marshal(map[string]string{"type": mime, "data": val})
			return []outRecord{{"media", b}}
		}
	}
	return nil
}

// firstMIME is the first entry of a MIME bundle in the kernel's order,
// skipping text/plain when the bundle has anything else. Non-string
// values (application/json) count as present but give "".
func firstMIME(data json.RawMessage) (mime, val string, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", "", false
	}
	type entry struct{ k, v string }
	var all []entry
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", "", false
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "", "", false
		}
		var s string
		_ = json.Unmarshal(raw, &s)
		all = append(all, entry{key, s})
	}
	for _, e := range all {
		if e.k != "text/plain" || len(all) == 1 {
			return e.k, e.v, true
		}
	}
	return "", "", false
}

// emitChunks sends data as records of at most chunk bytes, cut on UTF-8
// boundaries (the Jupyter kernel sends a stream's text whole).
func (r *Runner) emitChunks(kind string, data []byte) {
	if kind != "stdout" && kind != "stderr" {
		r.emit(kind, data)
		return
	}
	for len(data) > chunk {
		n := chunk
		for n > chunk-utf8.UTFMax && !utf8.RuneStart(data[n]) {
			n--
		}
		r.emit(kind, data[:n])
		data = data[n:]
	}
	if len(data) > 0 {
		r.emit(kind, data)
	}
}

// completeTimeout bounds a completion request to the kernel.
const completeTimeout = 5 * time.Second
