package krunner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ServiceDefDir is where images describe their services.
var ServiceDefDir = "/etc/backend.ai/service-defs"

// serviceLaunchTimeout is how long a service has to open its port
// (upstream's 30 s for user services).
var serviceLaunchTimeout = 30 * time.Second

// ServiceDef is one /etc/backend.ai/service-defs/<name>.json (upstream's
// ServiceDefinition: unknown keys are rejected).
type ServiceDef struct {
	Command          any               `json:"command"`
	Shell            *string           `json:"shell"`
	Noop             bool              `json:"noop"`
	URLTemplate      string            `json:"url_template"`
	Prestart         []Action          `json:"prestart"`
	PrestartActions  []Action          `json:"prestart_actions"`
	Env              map[string]string `json:"env"`
	AllowedEnvs      []string          `json:"allowed_envs"`
	AllowedArguments []string          `json:"allowed_arguments"`
	DefaultArguments map[string]any    `json:"default_arguments"`
}

// Action is a prestart action.
type Action struct {
	Action string         `json:"action"`
	Args   map[string]any `json:"args"`
	Ref    string         `json:"ref"`
}

// loadServiceDefs reads every definition; a malformed file is logged and
// skipped, never fatal.
func (r *Runner) loadServiceDefs() map[string]*ServiceDef {
	out := map[string]*ServiceDef{}
	files, _ := filepath.Glob(filepath.Join(ServiceDefDir, "*.json"))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		b, err := os.ReadFile(f)
		if err != nil {
			r.log.Warn("service definition unreadable; skipped", "service", name, "error", err)
			continue
		}
		d := &ServiceDef{}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(d); err != nil {
			r.log.Warn("invalid service definition; skipped", "service", name, "error", err)
			continue
		}
		switch d.Command.(type) {
		case string, []any:
		default:
			r.log.Warn("invalid service definition; skipped", "service", name, "error", "command must be a string or a list")
			continue
		}
		if len(d.PrestartActions) == 0 {
			d.PrestartActions = d.Prestart
		}
		out[name] = d
	}
	return out
}

// apps is get-apps' data: the service definitions (as upstream, not the
// intrinsic or runtime services).
func (r *Runner) apps() []any {
	defs := r.loadServiceDefs()
	names := make([]string, 0, len(defs))
	for n := range defs {
		names = append(names, n)
	}
	sort.Strings(names)
	out := []any{}
	for _, n := range names {
		d := defs[n]
		app := map[string]any{"name": n}
		if d.URLTemplate != "" {
			app["url_template"] = d.URLTemplate
		}
		if len(d.AllowedArguments) > 0 {
			app["allowed_arguments"] = d.AllowedArguments
		}
		if len(d.AllowedEnvs) > 0 {
			app["allowed_envs"] = d.AllowedEnvs
		}
		out = append(out, app)
	}
	return out
}

type serviceReq struct {
	Name     string `json:"name"`
	Port     int    `json:"port"`
	Ports    []int  `json:"ports"`
	Protocol string `json:"protocol"`
	Options  struct {
		Arguments map[string]any    `json:"arguments"`
		Envs      map[string]string `json:"envs"`
	} `json:"options"`
}

type services struct {
	mu      sync.Mutex
	running map[string]*svcProc
}

type svcProc struct {
	cmd      *exec.Cmd
	exited   chan struct{}
	stopping bool
}

// startService is the runner's start-service: started only once the
// port accepts connections; running while it lives; upstream's error
// texts.
func (r *Runner) startService(payload []byte) map[string]any {
	var req serviceReq
	if err := json.Unmarshal(payload, &req); err != nil {
		return map[string]any{"status": "failed", "error": "invalid start-service request: " + err.Error()}
	}
	r.svc.mu.Lock()
	defer r.svc.mu.Unlock()
	if req.Protocol == "preopen" {
		return map[string]any{"status": "started"}
	}
	if p, ok := r.svc.running[req.Name]; ok {
		if !p.stopping {
			return map[string]any{"status": "running"}
		}
		// A shutdown is under way: let it finish, then start afresh.
		r.svc.mu.Unlock()
		select {
		case <-p.exited:
		case <-time.After(3 * time.Second):
		}
		r.svc.mu.Lock()
		if q, ok := r.svc.running[req.Name]; ok && q != p {
			return map[string]any{"status": "running"}
		}
		delete(r.svc.running, req.Name)
	}
	if req.Protocol == "pty" {
		return map[string]any{"status": "failed", "error": "not implemented yet"}
	}
	ports := req.Ports
	if len(ports) == 0 && req.Port > 0 {
		ports = []int{req.Port}
	}
	if len(ports) == 0 {
		return map[string]any{"status": "failed", "error": "no port for service " + req.Name}
	}
	var argv []string
	env := map[string]string{}
	timeout := serviceLaunchTimeout
	switch req.Name {
	case "sshd":
		// The built-in SSH server (any image, no dropbear needed).
		if r.sshRunning() {
			return map[string]any{"status": "running"}
		}
		if err := r.startSSH(ports); err != nil {
			return map[string]any{"status": "failed", "error": fmt.Sprintf("the process did not start properly: sshd (%v)", err)}
		}
		return map[string]any{"status": "started"}
	case "ttyd":
		// The built-in web terminal, speaking ttyd's protocol.
		// The token goes back to the one who asked (the agent's RPC
		// caller), who opens the terminal as /#token=TOKEN.
		if r.webTermRunning() {
			return r.withTermToken(map[string]any{"status": "running"})
		}
		if err := r.startWebTerm(ports); err != nil {
			return map[string]any{"status": "failed", "error": fmt.Sprintf("the process did not start properly: ttyd (%v)", err)}
		}
		return r.withTermToken(map[string]any{"status": "started"})
	default:
		def, ok := r.loadServiceDefs()[req.Name]
		if ok && !def.Noop {
			var err error
			argv, env, err = r.buildService(req, def, ports)
			if err != nil {
				return map[string]any{"status": "failed", "error": err.Error()}
			}
		} else if !ok && r.o.Runtime == "python" {
			// The python runtime's own apps, as upstream's runner has them.
			var why string
			argv, why = r.pythonApp(req.Name, ports[0])
			if why != "" {
				return map[string]any{"status": "failed", "error": "unsupported service: " + req.Name + " (" + why + ")"}
			}
		}
	}
	if len(argv) == 0 {
		return map[string]any{"status": "failed", "error": "unsupported service: " + req.Name}
	}
	proc, msg := r.spawnService(req.Name, argv, env, r.o.WorkDir)
	if proc == nil {
		return map[string]any{"status": "failed", "error": msg}
	}
	exited, cmd := proc.exited, proc.cmd
	deadline := time.Now().Add(timeout)
	for {
		if portOpen(ports[0]) {
			r.log.Info("service started", "service", req.Name, "port", ports[0])
			return map[string]any{"status": "started"}
		}
		select {
		case <-exited:
			return map[string]any{"status": "failed", "error": "the process did not start properly: " + argv[0]}
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			return map[string]any{"status": "failed", "error": "opening the service port timed out: " + req.Name}
		}
	}
}

// spawnService starts a service's process in dir and registers it under
// name; the caller holds r.svc.mu. It returns the process, or nil and
// upstream's error text.
func (r *Runner) spawnService(name string, argv []string, env map[string]string, dir string) (*svcProc, string) {
	st, err := os.Stat(argv[0])
	if err != nil {
		if p, lerr := exec.LookPath(argv[0]); lerr == nil && !strings.Contains(argv[0], "/") {
			argv[0] = p
		} else {
			return nil, "the executable file is not found: " + argv[0]
		}
	} else if st.Mode()&0o111 == 0 || st.IsDir() {
		return nil, "the target file is not executable: " + argv[0]
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = r.childEnv(false)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "the process did not start properly: " + argv[0]
	}
	proc := &svcProc{cmd: cmd, exited: make(chan struct{})}
	r.svc.running[name] = proc
	go func() {
		_ = cmd.Wait()
		close(proc.exited)
		r.svc.mu.Lock()
		if r.svc.running[name] == proc {
			delete(r.svc.running, name)
		}
		r.svc.mu.Unlock()
		r.log.Info("service exited", "service", name, "code", exitCode(cmd, nil))
	}()
	return proc, ""
}

// shutdownService stops a service: SIGTERM to its group, SIGKILL after
// 2 s; it returns once the process is gone (or after 3 s).
func (r *Runner) shutdownService(name string) {
	switch name {
	case "sshd":
		r.stopSSH()
		return
	case "ttyd":
		r.stopWebTerm()
		return
	}
	r.svc.mu.Lock()
	p := r.svc.running[name]
	if p != nil {
		p.stopping = true
	}
	r.svc.mu.Unlock()
	if p == nil || p.cmd.Process == nil {
		return
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.exited:
		return
	case <-time.After(2 * time.Second):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(time.Second):
	}
}

func (r *Runner) stopServices() {
	r.svc.mu.Lock()
	names := make([]string, 0, len(r.svc.running))
	for n := range r.svc.running {
		names = append(names, n)
	}
	r.svc.mu.Unlock()
	for _, n := range names {
		r.shutdownService(n)
	}
}

// ErrDisallowed is upstream's DisallowedArgument / DisallowedEnvironment.
var ErrDisallowed = errors.New("disallowed")

func (r *Runner) buildService(req serviceReq, d *ServiceDef, ports []int) ([]string, map[string]string, error) {
	vars := map[string]any{"runtime_path": r.pythonPath(), "ports": toAny(ports)}
	if r.o.RuntimePath != "" {
		vars["runtime_path"] = r.o.RuntimePath
	}
	for _, a := range d.PrestartActions {
		v, err := r.prestart(a, vars)
		if err != nil {
			return nil, nil, err
		}
		if a.Ref != "" {
			vars[a.Ref] = v
		}
	}
	var argv []string
	switch c := d.Command.(type) {
	case string:
		shell := "bash"
		if d.Shell != nil {
			shell = *d.Shell
		}
		s, err := interpolate(c, vars)
		if err != nil {
			return nil, nil, err
		}
		if shell == "" {
			argv = strings.Fields(s)
		} else {
			// A shell the image lacks (bash in a busybox image) falls back
			// to /bin/sh.
			if p, err := exec.LookPath(shell); err == nil {
				shell = p
			} else {
				r.log.Info("service shell missing; using /bin/sh", "shell", shell)
				shell = "/bin/sh"
			}
			argv = []string{shell, "-c", s}
		}
	case []any:
		for _, x := range c {
			s, err := interpolate(fmt.Sprint(x), vars)
			if err != nil {
				return nil, nil, err
			}
			argv = append(argv, s)
		}
	}
	args := map[string]any{}
	for k, v := range d.DefaultArguments {
		args[k] = v
	}
	for k, v := range req.Options.Arguments {
		if !contains(d.AllowedArguments, k) {
			return nil, nil, fmt.Errorf("DisallowedArgument('Argument %s not allowed for service %s')", k, req.Name)
		}
		args[k] = v
	}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		argv = append(argv, k)
		switch v := args[k].(type) {
		case nil:
		case []any:
			for _, x := range v {
				argv = append(argv, fmt.Sprint(x))
			}
		default:
			argv = append(argv, fmt.Sprint(v))
		}
	}
	env := map[string]string{}
	for k, v := range d.Env {
		kk, err := interpolate(k, vars)
		if err != nil {
			return nil, nil, err
		}
		vv, err := interpolate(v, vars)
		if err != nil {
			return nil, nil, err
		}
		env[kk] = vv
	}
	for k, v := range req.Options.Envs {
		if !contains(d.AllowedEnvs, k) {
			return nil, nil, fmt.Errorf("DisallowedEnvironment('Environment variable %s not allowed for service %s')", k, req.Name)
		}
		for _, kv := range r.env {
			if strings.HasPrefix(kv, k+"=") {
				return nil, nil, fmt.Errorf("DisallowedEnvironment('Environment variable %s can\\'t be overwritten')", k)
			}
		}
		env[k] = v
	}
	return argv, env, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func toAny(ports []int) []any {
	out := make([]any, len(ports))
	for i, p := range ports {
		out[i] = p
	}
	return out
}

func (r *Runner) prestart(a Action, vars map[string]any) (any, error) {
	str := func(k string) (string, error) {
		v, _ := a.Args[k].(string)
		return formatMap(v, vars)
	}
	lines := func(k string) ([]string, error) {
		var out []string
		l, _ := a.Args[k].([]any)
		for _, x := range l {
			s, err := formatMap(fmt.Sprint(x), vars)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	mode := func() os.FileMode {
		if m, ok := a.Args["mode"].(string); ok {
			if n, err := strconv.ParseUint(m, 8, 32); err == nil {
				return os.FileMode(n)
			}
		}
		return 0o644
	}
	switch a.Action {
	case "write_file":
		name, err := str("filename")
		if err != nil {
			return nil, err
		}
		body, err := lines("body")
		if err != nil {
			return nil, err
		}
		flag := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
		if app, _ := a.Args["append"].(bool); app {
			flag = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		}
		f, err := os.OpenFile(name, flag, mode())
		if err != nil {
			return nil, err
		}
		for _, l := range body {
			fmt.Fprintln(f, l)
		}
		return nil, f.Close()
	case "write_tempfile":
		body, err := lines("body")
		if err != nil {
			return nil, err
		}
		f, err := os.CreateTemp("", "*.py")
		if err != nil {
			return nil, err
		}
		for _, l := range body {
			fmt.Fprint(f, l)
		}
		_ = f.Chmod(mode())
		return f.Name(), f.Close()
	case "mkdir":
		p, err := str("path")
		if err != nil {
			return nil, err
		}
		return nil, os.MkdirAll(p, 0o755)
	case "run_command":
		argv, err := lines("command")
		if err != nil || len(argv) == 0 {
			return nil, fmt.Errorf("run_command needs a command: %v", err)
		}
		c := exec.Command(argv[0], argv[1:]...)
		c.Env = r.childEnv(false)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		_ = c.Run()
		return map[string]any{"out": out.String(), "err": errb.String()}, nil
	case "log":
		m, err := str("message")
		if err != nil {
			return nil, err
		}
		r.log.Info(m)
		return nil, nil
	}
	return nil, fmt.Errorf("InvalidServiceDefinition('unknown prestart action %s')", a.Action)
}
