package krunner

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// pythonApps are the python runtime's built-in services (upstream's
// PythonKernel.start_service): the module that must be importable, and
// the command line after "<python> -m".
var pythonApps = map[string]struct {
	module string
	args   func(r *Runner, port int) ([]string, error)
}{
	"jupyter":     {"notebook", func(r *Runner, port int) ([]string, error) { return jupyterArgs("notebook", port) }},
	"jupyterlab":  {"jupyterlab", func(r *Runner, port int) ([]string, error) { return jupyterArgs("jupyterlab", port) }},
	"ipython":     {"IPython", func(*Runner, int) ([]string, error) { return []string{"IPython"}, nil }},
	"digits":      {"digits", func(*Runner, int) ([]string, error) { return []string{"digits"}, nil }},
	"tensorboard": {"tensorboard", tensorboardArgs},
	"sftp": {"sftpserver", func(_ *Runner, port int) ([]string, error) {
		return []string{"sftpserver", "--port", strconv.Itoa(port)}, nil
	}},
}

// pythonApp builds a python-runtime service's command line, or says why
// it cannot run here (no interpreter, the module not installed).
func (r *Runner) pythonApp(name string, port int) ([]string, string) {
	app, ok := pythonApps[name]
	if !ok {
		return nil, ""
	}
	py := r.pythonPath()
	if py == "" {
		return nil, "no python interpreter"
	}
	check := exec.Command(py, "-c", "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(sys.argv[1]) else 1)", app.module)
	check.Env = r.childEnv(false)
	if err := check.Run(); err != nil {
		return nil, fmt.Sprintf("the python module %s is not installed", app.module)
	}
	args, err := app.args(r, port)
	if err != nil {
		return nil, err.Error()
	}
	return append([]string{py, "-m"}, args...), ""
}

// jupyterArgs writes upstream's notebook settings (listen on every
// address at the service port, no token: the app proxy authenticates)
// for both the classic NotebookApp and jupyter_server's ServerApp.
func jupyterArgs(module string, port int) ([]string, error) {
	f, err := os.CreateTemp("", "bai-jupyter-*.py")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for _, app := range []string{"NotebookApp", "ServerApp"} {
		fmt.Fprintf(f, "c.%s.allow_root = True\nc.%s.ip = \"0.0.0.0\"\nc.%s.port = %d\nc.%s.token = \"\"\nc.%s.tornado_settings = {'ws_ping_interval': 10000}\n",
			app, app, app, port, app, app)
	}
	fmt.Fprintf(f, "c.IdentityProvider.token = \"\"\nc.FileContentsManager.delete_to_trash = False\n")
	return []string{module, "--no-browser", "--config", f.Name()}, nil
}

func tensorboardArgs(r *Runner, port int) ([]string, error) {
	logs := filepath.Join(r.o.WorkDir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	return []string{"tensorboard.main", "--logdir", logs, "--host", "0.0.0.0", "--port", strconv.Itoa(port), "--debugger_port", "6064"}, nil
}
