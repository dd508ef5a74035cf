package agent

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/image"
)

func TestModelDefinition(t *testing.T) {
	t.Parallel()
	folder := []MountSpec{{Name: "llama", VFID: "vf-1", KernelPath: "/models", UsageMode: "model"}}
	def := func(models ...any) map[string]any {
		return map[string]any{"model_definition": map[string]any{"models": models}}
	}
	svc := func(port int) map[string]any {
		return map[string]any{"name": "llm", "model_path": "/models", "service": map[string]any{"start_command": "serve", "port": port}}
	}
	builtin := []image.ServicePort{{Name: "sshd", ContainerPorts: []int{2200}}}
	for _, tc := range []struct {
		name    string
		mounts  []MountSpec
		data    map[string]any
		wantErr error
		wantMsg string
		ports   []string
	}{
		{"no model folder", []MountSpec{{Name: "data", UsageMode: "general"}}, def(svc(8000)), ErrModelFolderNotSpecified, "At least one model virtual folder must be specified", nil},
		{"not inlined", folder, nil, ErrModelDefinitionNotFound, "vFolder llama (ID vf-1)", nil},
		{"empty", folder, def(), ErrModelDefinitionEmpty, "", nil},
		{"reserved port", folder, def(svc(2001)), ErrReservedPort, "Port 2000 and 2001 are reserved for internal use", nil},
		{"taken port", folder, def(svc(2200)), ErrPortConflict, "Port 2200 overlaps with built-in service sshd", nil},
		{"two models on one port", folder, def(svc(8000), map[string]any{"name": "b", "model_path": "/models", "service": map[string]any{"port": 8000}}), ErrPortConflict, "overlaps with built-in service llm-8000", nil},
		{"bad shape", folder, def("x"), ErrInvalidModelDefinition, "", nil},
		{"ok", folder, def(svc(8000), map[string]any{"name": "nosvc", "model_path": "/models/b"}), nil, "", []string{"llm-8000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &CreationConfig{Mounts: tc.mounts, InternalData: tc.data}
			models, added, err := modelDefinition(cfg, builtin)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("err = %v, want %v %q", err, tc.wantErr, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, sp := range added {
				if !sp.IsInference || sp.Protocol != "preopen" {
					t.Fatalf("service port %+v", sp)
				}
				names = append(names, sp.Name)
			}
			if !reflect.DeepEqual(names, tc.ports) || len(models) != 2 {
				t.Fatalf("ports %v models %d", names, len(models))
			}
			env := map[string]string{}
			modelEnviron(env, models)
			if env["BACKEND_MODEL_NAME"] != "llm" || env["BACKEND_MODEL_PATH"] != "/models/b" {
				t.Fatalf("env %v", env)
			}
		})
	}
}

func TestModelCommands(t *testing.T) {
	t.Parallel()
	svc := func(cmd any) *ModelService { return &ModelService{StartCommand: cmd, Port: 8000} }
	models := []ModelConfig{
		{Name: "a", ModelPath: "/m", Service: svc("vllm serve /m")},
		{Name: "b", ModelPath: "/m", Service: svc(nil)},
		{Name: "c", ModelPath: "/m", Service: svc([]any{"srv", "--x"})},
		{Name: "d", ModelPath: "/m"},
	}
	env := map[string]string{"VLLM_TP_SIZE": "2", "VLLM_EXTRA_ARGS": `--max-model-len 4096 --chat-template "a b"`}
	ready, skipped, err := modelCommands(models, []string{"python3", "-m", "server", "it's"}, env)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{
		`vllm serve /m --tensor-parallel-size 2 --max-model-len 4096 --chat-template 'a b'`,
		`python3 -m server 'it'"'"'s' --tensor-parallel-size 2 --max-model-len 4096 --chat-template 'a b'`,
		[]any{"srv", "--x", "--tensor-parallel-size", "2", "--max-model-len", "4096", "--chat-template", "a b"},
	}
	if len(ready) != 3 || len(skipped) != 1 || !strings.HasPrefix(skipped[0], "d ") {
		t.Fatalf("ready %d skipped %v", len(ready), skipped)
	}
	for i, w := range want {
		if !reflect.DeepEqual(ready[i].Service.StartCommand, w) {
			t.Errorf("model %s: %#v, want %#v", ready[i].Name, ready[i].Service.StartCommand, w)
		}
	}
	if models[1].Service.StartCommand != nil {
		t.Fatal("the caller's model definition was changed")
	}
	// No image Cmd: the model without a command is skipped.
	if ready, skipped, _ := modelCommands(models[1:2], nil, nil); len(ready) != 0 || len(skipped) != 1 {
		t.Fatalf("no Cmd: ready %v skipped %v", ready, skipped)
	}
	if _, _, err := modelCommands(models, nil, map[string]string{"SGLANG_EXTRA_ARGS": `--x "open`}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "Malformed quoting in SGLANG_EXTRA_ARGS") {
		t.Fatalf("bad quoting: %v", err)
	}
}

func TestShellSplitJoin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`a b  c`, []string{"a", "b", "c"}},
		{`--x 'a b' "c \"d\"" e\ f`, []string{"--x", "a b", `c "d"`, "e f"}},
		{`''`, []string{""}},
	} {
		got, err := shellSplit(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("split %q = %q, %v", tc.in, got, err)
		}
		if back, _ := shellSplit(shellJoin(got)); !reflect.DeepEqual(back, got) {
			t.Errorf("join/split round trip of %q: %q", got, back)
		}
	}
}
