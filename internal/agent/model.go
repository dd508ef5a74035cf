// Inference sessions: the model definition the manager inlines in
// internal_data gives each model a service port "<model>-<port>"
// (is_inference), the BACKEND_MODEL_* environment, and, on the main
// kernel once it runs, a model service the runner starts. A model
// service that does not come up destroys the kernel with
// failed-to-start, as upstream's agent does.

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/bai-agent/bai-agent/internal/image"
)

// ModelDefinition is internal_data.model_definition (the manager's
// resolved ModelDefinition).
type ModelDefinition struct {
	Models []ModelConfig `json:"models"`
}

// ModelConfig is one model.
type ModelConfig struct {
	Name      string         `json:"name"`
	ModelPath string         `json:"model_path"`
	Service   *ModelService  `json:"service"`
	Metadata  map[string]any `json:"metadata,omitempty"`
}

// ModelService is a model's ModelServiceConfig. StartCommand is a string
// (run by Shell) or a list; empty means the image's Cmd.
type ModelService struct {
	PreStartActions []map[string]any `json:"pre_start_actions"`
	StartCommand    any              `json:"start_command"`
	Shell           *string          `json:"shell,omitempty"`
	Port            int              `json:"port"`
	HealthCheck     map[string]any   `json:"health_check,omitempty"`
}

// legacyInferenceFlags are the VLLM_*/SGLANG_* variables upstream turns
// into command-line flags of the model's start command.
var legacyInferenceFlags = []struct{ env, flag string }{
	{"VLLM_QUANTIZATION", "--quantization"},
	{"VLLM_TP_SIZE", "--tensor-parallel-size"},
	{"VLLM_PP_SIZE", "--pipeline-parallel-size"},
	{"SGLANG_QUANTIZATION", "--quantization"},
	{"SGLANG_TP_SIZE", "--tensor-parallel-size"},
	{"SGLANG_PP_SIZE", "--pipeline-parallel-size"},
}

// modelDefinition reads and checks an inference kernel's model
// definition (upstream's _load_model_definition): a model folder must be
// mounted, the definition must be inlined and name at least one model,
// and no model's port may be reserved or taken. It returns the models
// and their service ports.
func modelDefinition(cfg *CreationConfig, services []image.ServicePort) ([]ModelConfig, []image.ServicePort, error) {
	var folder *MountSpec
	for i := range cfg.Mounts {
		if cfg.Mounts[i].UsageMode == "model" {
			folder = &cfg.Mounts[i]
			break
		}
	}
	if folder == nil {
		return nil, nil, fmt.Errorf("%w: At least one model virtual folder must be specified", ErrModelFolderNotSpecified)
	}
	raw, ok := cfg.InternalData["model_definition"]
	if !ok || raw == nil {
		return nil, nil, fmt.Errorf("%w: Model definition not inlined in kernel internal_data; vFolder %s (ID %s)", ErrModelDefinitionNotFound, folder.Name, folder.VFID)
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: internal_data.model_definition: %v", ErrInvalidModelDefinition, err)
	}
	var def ModelDefinition
	if err := json.Unmarshal(b, &def); err != nil {
		return nil, nil, fmt.Errorf("%w: internal_data.model_definition: %v", ErrInvalidModelDefinition, err)
	}
	if len(def.Models) == 0 {
		return nil, nil, fmt.Errorf("%w: the model definition names no model", ErrModelDefinitionEmpty)
	}
	var added []image.ServicePort
	for i, m := range def.Models {
		if m.Name == "" || m.ModelPath == "" {
			return nil, nil, fmt.Errorf("%w: models[%d] needs a name and a model_path", ErrInvalidModelDefinition, i)
		}
		if m.Service == nil {
			continue
		}
		p := m.Service.Port
		if p == replInContainerPort || p == replOutContainerPort {
			return nil, nil, fmt.Errorf("%w: Port 2000 and 2001 are reserved for internal use", ErrReservedPort)
		}
		if p < 1 || p > 65535 {
			return nil, nil, fmt.Errorf("%w: models[%d].service.port %d is out of range", ErrInvalidModelDefinition, i, p)
		}
		for _, sp := range append(append([]image.ServicePort(nil), services...), added...) {
			for _, cp := range sp.ContainerPorts {
				if cp == p {
					return nil, nil, fmt.Errorf("%w: Port %d overlaps with built-in service %s", ErrPortConflict, p, sp.Name)
				}
			}
		}
		added = append(added, image.ServicePort{Name: fmt.Sprintf("%s-%d", m.Name, p), Protocol: "preopen", ContainerPorts: []int{p}, IsInference: true})
	}
	return def.Models, added, nil
}

// modelEnviron adds BACKEND_MODEL_NAME (the first model, unless the
// manager set it) and BACKEND_MODEL_PATH (the last model's path), as
// upstream does.
func modelEnviron(env map[string]string, models []ModelConfig) {
	for _, m := range models {
		if _, ok := env["BACKEND_MODEL_NAME"]; !ok {
			env["BACKEND_MODEL_NAME"] = m.Name
		}
		env["BACKEND_MODEL_PATH"] = m.ModelPath
	}
}

// modelCommands completes each model's start command: the image's Cmd
// when it has none (shell-quoted into one line), then the legacy
// VLLM_*/SGLANG_* flags. Models left without a command are reported and
// skipped.
func modelCommands(models []ModelConfig, imageCmd []string, env map[string]string) (ready []ModelConfig, skipped []string, err error) {
	var extra []string
	for _, f := range legacyInferenceFlags {
		if v := env[f.env]; v != "" {
			extra = append(extra, f.flag, v)
		}
	}
	for _, k := range []string{"VLLM_EXTRA_ARGS", "SGLANG_EXTRA_ARGS"} {
		if v := env[k]; v != "" {
			words, err := shellSplit(v)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: Malformed quoting in %s: %v", ErrInvalidArgument, k, err)
			}
			extra = append(extra, words...)
		}
	}
	for _, m := range models {
		if m.Service == nil {
			skipped = append(skipped, m.Name+" (no service definition)")
			continue
		}
		svc := *m.Service
		switch c := svc.StartCommand.(type) {
		case string:
			if strings.TrimSpace(c) == "" {
				svc.StartCommand = nil
			}
		case []any:
			if len(c) == 0 {
				svc.StartCommand = nil
			}
		}
		if svc.StartCommand == nil && len(imageCmd) > 0 {
			svc.StartCommand = shellJoin(imageCmd)
		}
		if svc.StartCommand == nil {
			skipped = append(skipped, m.Name+" (no start_command and the image has no Cmd)")
			continue
		}
		if len(extra) > 0 {
			switch c := svc.StartCommand.(type) {
			case string:
				svc.StartCommand = c + " " + shellJoin(extra)
			case []any:
				l := append([]any(nil), c...)
				for _, w := range extra {
					l = append(l, w)
				}
				svc.StartCommand = l
			}
		}
		m.Service = &svc
		ready = append(ready, m)
	}
	return ready, skipped, nil
}

// modelServiceTimeout is how long the agent waits for a model service's
// answer, as upstream: max_retries × max_wait_time + 10 s with a health
// check, 10 s without.
func modelServiceTimeout(m ModelConfig) time.Duration {
	hc := m.Service.HealthCheck
	if enabled, _ := hc["enable"].(bool); !enabled {
		return 10 * time.Second
	}
	retries, wait := 10.0, 15.0
	if v, ok := number(hc["max_retries"]); ok {
		retries = v
	}
	if v, ok := number(hc["max_wait_time"]); ok {
		wait = v
	}
	return time.Duration((retries*wait + 10) * float64(time.Second))
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case uint64:
		return float64(n), true
	}
	return 0, false
}

// startModelServices starts every model's service on a running main
// kernel in the background; one that fails destroys the kernel with
// failed-to-start.
func (ro *runnerOps) startModelServices(k *Kernel, models []ModelConfig, imageCmd []string) {
	ready, skipped, err := modelCommands(models, imageCmd, k.Spec().Environ)
	log := ro.log.With("kernel_id", k.ID, "session_id", k.SessionID)
	for _, s := range skipped {
		log.Warn("model service not started", "model", s)
	}
	if err != nil {
		log.Error("model services not started", "error", err)
		ro.failModelService(k, err.Error())
		return
	}
	for _, m := range ready {
		ro.bg.Add(1)
		go func(m ModelConfig) {
			defer ro.bg.Done()
			ctx, cancel := context.WithTimeout(ro.runCtx(), modelServiceTimeout(m))
			defer cancel()
			c := k.Runner()
			if c == nil {
				ro.failModelService(k, "no runner connection")
				return
			}
			log.Info("starting model service", "model", m.Name, "port", m.Service.Port)
			res, err := c.StartModelService(ctx, m)
			switch {
			case err != nil && ro.runCtx().Err() != nil:
				return // the agent is stopping
			case err != nil:
				res = map[string]any{"status": "failed", "error": err.Error()}
			}
			if res["status"] == "failed" {
				log.Error("model service failed to start; destroying the kernel", "model", m.Name, "error", res["error"])
				ro.failModelService(k, fmt.Sprint(res["error"]))
				return
			}
			log.Info("model service started", "model", m.Name, "status", res["status"])
		}(m)
	}
}

// failModelService destroys the kernel as upstream's DESTROY
// failed-to-start lifecycle event does. It does not wait: it may be
// called by the kernel's owner (creation and restart start the services),
// which handles the destroy once it is done with what it is doing.
func (ro *runnerOps) failModelService(k *Kernel, why string) {
	ro.owners.Add(1)
	go func() {
		defer ro.owners.Done()
		ctx, cancel := context.WithTimeout(ro.life, 2*time.Minute)
		defer cancel()
		if err := ro.destroy(ctx, k.ID, k.SessionID, ReasonFailedToStart, false); err != nil {
			ro.log.Error("destroying a kernel whose model service failed", "kernel_id", k.ID, "why", why, "error", err)
		}
	}()
}

// shellJoin quotes words for a POSIX shell (Python's shlex.join).
func shellJoin(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_") == "" {
			out[i] = w
			continue
		}
		out[i] = "'" + strings.ReplaceAll(w, "'", `'"'"'`) + "'"
	}
	return strings.Join(out, " ")
}

// shellSplit splits a line as a POSIX shell would (Python's
// shlex.split): quotes, backslash escapes, no expansions.
func shellSplit(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("no closing quotation")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("no closing quotation")
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("no escaped character")
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
