package rpc

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/rpc/callosum"
	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../wire/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The manager-shaped create_kernels request, as Python's msgpack and
// pickle wrote it, binds to the typed request with every field intact.
func TestBindGoldenCreateKernels(t *testing.T) {
	h, _, err := callosum.DecodeHeader(readGolden(t, "create_kernels.header.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if h.Type != callosum.TypeFunction || h.MethodName() != "create_kernels" {
		t.Fatalf("header %+v", h)
	}
	if _, isBin := h.Okey.([]byte); !isBin {
		t.Fatalf("okey decoded as %T, want bin", h.Okey)
	}
	body, err := callosum.DecodeBody(readGolden(t, "create_kernels.body.bin"), h.Zip)
	if err != nil {
		t.Fatal(err)
	}
	v, err := wire.Decode(body.Payload)
	if err != nil {
		t.Fatal(err)
	}
	m := v.(msgpack.Map)
	args, _ := m.Get("args")
	kw, _ := m.Get("kwargs")
	call := &Call{Method: "create_kernels", Args: args.([]any), Kwargs: kw.(msgpack.Map)}
	req, err := bindCreateRequest(call)
	if err != nil {
		t.Fatal(err)
	}
	if req.SessionID != "5f3c2a1e-9b7d-4c2e-8a1f-0123456789ab" || len(req.Configs) != 2 || len(req.ImageRefs) != 2 {
		t.Fatalf("request %+v", req)
	}
	c := req.Configs[0]
	for _, chk := range []struct {
		name      string
		got, want any
	}{
		{"session_type enum", c.SessionType, "interactive"},
		{"cluster_mode enum", c.ClusterMode, "single-node"},
		{"auto_pull enum", c.Image.AutoPull, "digest"},
		{"canonical", c.Image.Canonical, "cr.backend.ai/stable/python:3.9-ubuntu20.04"},
		{"mem slot", c.ResourceSlots["mem"], "268435456"},
		{"shmem BinarySize", c.ShmSize, int64(64 << 20)},
		{"mount perm (py3.11 enum)", c.Mounts[0].MountPerm, "ro"},
		{"kernel path", c.Mounts[0].KernelPath, "/home/work/data1"},
		{"hostname", req.Configs[1].ClusterHostname, "sub2"},
		{"cluster replicas", req.Cluster.Replicas["sub"], 1},
		{"image ref by uuid", req.ImageRefs["11111111-2222-4333-8444-555555555555"].Tag, "3.9-ubuntu20.04"},
		{"environ", c.Environ["MY_VAR"], "hello"},
	} {
		if chk.got != chk.want {
			t.Errorf("%s: got %v, want %v", chk.name, chk.got, chk.want)
		}
	}
}

func TestBindRejectsWrongTypes(t *testing.T) {
	base := func() *Call {
		h, _, _ := callosum.DecodeHeader(readGolden(t, "create_kernels.header.bin"))
		body, _ := callosum.DecodeBody(readGolden(t, "create_kernels.body.bin"), h.Zip)
		v, _ := wire.Decode(body.Payload)
		m := v.(msgpack.Map)
		args, _ := m.Get("args")
		return &Call{Method: "create_kernels", Args: args.([]any)}
	}
	for _, tc := range []struct {
		name   string
		mutate func(c *Call)
		want   string
	}{
		{"ids not a list", func(c *Call) { c.Args[1] = int64(3) }, "raw_kernel_ids: expected list, got int"},
		{"bad session id", func(c *Call) { c.Args[0] = "nope" }, "is not a UUID"},
		{"config not a dict", func(c *Call) { c.Args[2].([]any)[0] = "x" }, "raw_configs[0]: expected dict, got str"},
		{"missing args", func(c *Call) { c.Args = c.Args[:1] }, "missing required argument: 'raw_kernel_ids'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(c)
			_, err := bindCreateRequest(c)
			if err == nil || !strings.Contains(err.Error(), tc.want) || ExceptionName(err) == "RuntimeError" {
				t.Fatalf("got %v (%s), want %q", err, ExceptionName(err), tc.want)
			}
		})
	}
}

func TestServerRepliesToBadInput(t *testing.T) {
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), "i-x")
	s.Register("ping", func(_ context.Context, c *Call) (any, error) { return c.Args[0], nil })
	hdr := func(meth any, okey any) []byte {
		b, _ := callosum.EncodeHeader(callosum.Header{Type: callosum.TypeFunction, Meth: meth, Okey: okey, Seq: int64(1)})
		return b
	}
	payload, _ := msgpack.Marshal(map[string]any{"args": []any{"hi"}, "kwargs": map[string]any{}})
	good := callosum.EncodeBody([]byte{}, payload)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		hdr, body []byte
		wantType  int64
		wantName  string
	}{
		{"ping bin okey", hdr("ping", []byte{}), good, callosum.TypeResult, ""},
		{"unknown method", hdr("nosuch", []byte{}), good, callosum.TypeError, "KeyError"},
		{"body not msgpack", hdr("ping", ""), []byte{0xc1}, callosum.TypeError, "ValueError"},
		{"undecodable header", []byte{0xc1}, good, -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := s.HandleMessage(ctx, []byte("peer"), tc.hdr, tc.body)
			if tc.wantType == -1 {
				if out != nil {
					t.Fatal("replied to an unaddressable message")
				}
				return
			}
			rh, _, err := callosum.DecodeHeader(out[1])
			if err != nil {
				t.Fatal(err)
			}
			if rh.Type != tc.wantType {
				t.Fatalf("type %d, want %d", rh.Type, tc.wantType)
			}
			ih, _, _ := callosum.DecodeHeader(tc.hdr)
			if _, ok := ih.Okey.(string); ok {
				if _, ok := rh.Okey.(string); !ok {
					t.Fatal("str okey echoed with another type")
				}
			}
			if tc.wantName != "" {
				b, _ := callosum.DecodeBody(out[2], false)
				meta, _ := msgpack.Unmarshal(b.Meta, nil)
				if meta.([]any)[0] != tc.wantName {
					t.Fatalf("meta %v", meta)
				}
			}
		})
	}
	_ = agent.Version
}

// The resource spec in both wire forms: decimal strings for current
// managers, a pickled ResourceSlot and Decimals for 26.8.1 and older.
func TestResourceSpecWire(t *testing.T) {
	spec := &resource.Spec{
		Slots:       resource.Slots{"cpu": decimal.NewFromInt(1), "mem": decimal.NewFromInt(268435456)},
		Allocation:  resource.Allocation{"cpu": {"0": decimal.NewFromInt(1)}, "mem": {"root": decimal.NewFromInt(268435456)}},
		ScratchSize: 1 << 30,
	}
	tests := []struct {
		name   string
		legacy bool
		check  func(slots, cpu0 any) bool
	}{
		{"current", false, func(slots, cpu0 any) bool {
			s, ok := slots.(msgpack.Map)
			mem, _ := s.Get("mem")
			return ok && mem == "268435456" && cpu0 == "1"
		}},
		{"legacy", true, func(slots, cpu0 any) bool {
			s, ok := slots.(wire.ResourceSlot)
			d, isDec := cpu0.(decimal.Decimal) // the pickled Decimal decodes back
			return ok && s["mem"].IntPart() == 268435456 && isDec && d.IntPart() == 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := msgpack.Marshal(resourceSpecWire(spec, "cid", tt.legacy))
			if err != nil {
				t.Fatal(err)
			}
			v, err := wire.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			rs := v.(msgpack.Map)
			slots, _ := rs.Get("slots")
			allocs, _ := rs.Get("allocations")
			cpuDev, _ := allocs.(msgpack.Map).Get("cpu")
			cpuSlot, _ := cpuDev.(msgpack.Map).Get("cpu")
			cpu0, _ := cpuSlot.(msgpack.Map).Get("0")
			if !tt.check(slots, cpu0) {
				t.Fatalf("slots %#v, cpu[0] %#v", slots, cpu0)
			}
		})
	}
}

func TestOversizedBodyRefused(t *testing.T) {
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), "i-x")
	s.Register("upload_file", func(context.Context, *Call) (any, error) { return nil, nil })
	h, _ := callosum.EncodeHeader(callosum.Header{Type: callosum.TypeFunction, Meth: "upload_file", Okey: []byte{}, Seq: int64(3)})
	big := callosum.EncodeBody([]byte{}, make([]byte, callosum.MaxBodySize+1))
	out := s.HandleMessage(context.Background(), []byte("p"), h, big)
	rh, _, err := callosum.DecodeHeader(out[1])
	if err != nil || rh.Type != callosum.TypeError {
		t.Fatalf("oversized body: %+v %v", rh, err)
	}
}

func TestConfiguredBodyLimit(t *testing.T) {
	s := NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), "i-x")
	s.SetMaxBodySize(1024)
	s.Register("upload_file", func(context.Context, *Call) (any, error) { return nil, nil })
	h, _ := callosum.EncodeHeader(callosum.Header{Type: callosum.TypeFunction, Meth: "upload_file", Okey: []byte{}, Seq: int64(1)})
	for _, tc := range []struct {
		size int
		want int64
	}{{512, callosum.TypeResult}, {2048, callosum.TypeError}} {
		payload, _ := msgpack.Marshal(map[string]any{"args": []any{"k", "f", make([]byte, tc.size)}, "kwargs": map[string]any{}})
		out := s.HandleMessage(context.Background(), []byte("p"), h, callosum.EncodeBody([]byte{}, payload))
		rh, _, err := callosum.DecodeHeader(out[1])
		if err != nil || rh.Type != tc.want {
			t.Fatalf("%d-byte body: reply type %d (%v), want %d", tc.size, rh.Type, err, tc.want)
		}
		if tc.want == callosum.TypeError {
			b, _ := callosum.DecodeBody(out[2], false)
			if !bytes.Contains(b.Meta, []byte("agent.rpc-max-message-size")) {
				t.Fatalf("error does not name the setting: %q", b.Meta)
			}
		}
	}
}

func bindClusterInfo(v any, path string) (agent.ClusterInfo, error) {
	ci, err := bindValue[clusterInfoArgs](v, path)
	return ci.agent(), err
}

// cluster_info's SSH parts as the launcher sends them: ssh_keypair a
// dict (or None), cluster_ssh_port_mapping {hostname: (host, port)}
// (tuples arrive as lists) or None; a wrong shape names its path.
func TestBindClusterSSH(t *testing.T) {
	kp := msgpack.Map{{Key: "public_key", Val: "ssh-rsa AAAA x"}, {Key: "private_key", Val: "-----BEGIN RSA PRIVATE KEY-----\n"}}
	pm := msgpack.Map{{Key: "node-a", Val: []any{"10.0.0.1", int64(30001)}}}
	ci := func(kv ...msgpack.KV) msgpack.Map {
		return append(msgpack.Map{{Key: "mode", Val: "multi-node"}, {Key: "size", Val: int64(2)}}, kv...)
	}
	got, err := bindClusterInfo(ci(msgpack.KV{Key: "network_config", Val: msgpack.Map{{Key: "mode", Val: "host"}}},
		msgpack.KV{Key: "ssh_keypair", Val: kp}, msgpack.KV{Key: "cluster_ssh_port_mapping", Val: pm}), "raw_cluster_info")
	if err != nil {
		t.Fatal(err)
	}
	if got.NetworkMode != "host" || got.SSHKeypair == nil || got.SSHKeypair.PublicKey != "ssh-rsa AAAA x" ||
		got.SSHPortMapping["node-a"] != (agent.HostPort{Host: "10.0.0.1", Port: 30001}) {
		t.Fatalf("bound %+v", got)
	}
	got, err = bindClusterInfo(ci(msgpack.KV{Key: "ssh_keypair", Val: nil}, msgpack.KV{Key: "cluster_ssh_port_mapping", Val: nil}), "raw_cluster_info")
	if err != nil || got.SSHKeypair != nil || got.SSHPortMapping != nil {
		t.Fatalf("None values: %+v %v", got, err)
	}
	for _, tc := range []struct {
		name string
		kv   msgpack.KV
		want string
	}{
		{"keypair not a dict", msgpack.KV{Key: "ssh_keypair", Val: "k"}, "raw_cluster_info.ssh_keypair: expected dict, got str"},
		{"keypair without private key", msgpack.KV{Key: "ssh_keypair", Val: kp[:1]}, "raw_cluster_info.ssh_keypair.private_key: required key is missing"},
		{"mapping entry not a pair", msgpack.KV{Key: "cluster_ssh_port_mapping", Val: msgpack.Map{{Key: "n", Val: []any{"h"}}}}, "expected (host, port), got 1 items"},
		{"port not an int", msgpack.KV{Key: "cluster_ssh_port_mapping", Val: msgpack.Map{{Key: "n", Val: []any{"h", "22"}}}}, "raw_cluster_info.cluster_ssh_port_mapping['n'][1]: expected int"},
		{"port out of range", msgpack.KV{Key: "cluster_ssh_port_mapping", Val: msgpack.Map{{Key: "n", Val: []any{"h", int64(70000)}}}}, "port 70000 is out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bindClusterInfo(ci(tc.kv), "raw_cluster_info")
			if err == nil || !strings.Contains(err.Error(), tc.want) || ExceptionName(err) != "TypeError" {
				t.Fatalf("got %v (%s), want %q", err, ExceptionName(err), tc.want)
			}
		})
	}
}

// Every method's argument struct has well-formed tags (adapt parses them
// when the methods are registered).
func TestArgTagsParse(t *testing.T) {
	AgentMethods(NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)), "i-x"), (*agent.Agent)(nil), nil)
	for _, t := range []reflect.Type{reflect.TypeFor[createKernelsHead](), reflect.TypeFor[createKernelsTail](), reflect.TypeFor[purgeImagesArgs](), reflect.TypeFor[shutdownServiceArgs]()} {
		specsOf(t, true)
	}
}

// The binder's errors, per kind of argument, as the hand-written binder
// worded them; None in an optional argument is its default.
func TestBindArgsErrors(t *testing.T) {
	call := func(method string, args []any, kw ...msgpack.KV) *Call {
		return &Call{Method: method, Args: args, Kwargs: msgpack.Map(kw)}
	}
	errOf := func(_ any, err error) error { return err }
	img := msgpack.Map{{Key: "canonical", Val: "cr/x:1"}}
	for _, tc := range []struct {
		name string
		err  error
		want string // "Name: message"
	}{
		{"missing", errOf(bindArgs[destroyKernelArgs](call("destroy_kernel", nil))), "TypeError: destroy_kernel() missing required argument: 'kernel_id'"},
		{"required None", errOf(bindArgs[destroyKernelArgs](call("destroy_kernel", []any{nil}))), "TypeError: kernel_id: expected str, got NoneType"},
		{"optional wrong type", errOf(bindArgs[destroyKernelArgs](call("destroy_kernel", []any{"k", nil, nil, "yes"}))), "TypeError: suppress_events: expected bool, got str"},
		{"keyword", errOf(bindArgs[destroyKernelArgs](call("destroy_kernel", []any{"k"}, msgpack.KV{Key: "reason", Val: int64(1)}))), "TypeError: reason: expected str, got int"},
		{"keyword only", errOf(bindArgs[commitArgs](call("commit", []any{"k", "s", "canonical"}, msgpack.KV{Key: "filename", Val: true}))), "TypeError: filename: expected str, got bool"},
		{"path differs from keyword", errOf(bindArgs[executeArgs](call("execute", []any{"s", "k", nil, nil, "query"}, msgpack.KV{Key: "text", Val: int64(1)}))), "TypeError: code: expected str, got int"},
		{"mode", errOf(bindArgs[executeArgs](call("execute", []any{"s", "k", nil, nil, "run"}))), "TypeError: execute: unknown mode 'run'"},
		{"negative seconds", errOf(bindArgs[triggerBatchArgs](call("trigger_batch_execution", []any{"s", "k", "c", -1.5}))), "TypeError: timeout: -1.5 is negative"},
		{"pair", errOf(bindArgs[syncKernelRegistryArgs](call("sync_kernel_registry", []any{[]any{[]any{"k", "s"}, []any{"k"}}}))), "TypeError: raw_kernel_session_ids[1]: expected (kernel_id, session_id)"},
		{"pair item", errOf(bindArgs[syncKernelRegistryArgs](call("sync_kernel_registry", []any{[]any{[]any{"k", nil}}}))), "TypeError: raw_kernel_session_ids[0][1]: expected str, got NoneType"},
		{"dict key", errOf(bindArgs[checkAndPullArgs](call("check_and_pull", []any{msgpack.Map{{Key: int64(1), Val: img}}}))), "TypeError: image_configs key: expected str, got int"},
		{"required dict key", errOf(bindArgs[checkAndPullArgs](call("check_and_pull", []any{msgpack.Map{{Key: "x", Val: msgpack.Map{}}}}))), "TypeError: image_configs['x'].canonical: required key is missing"},
		{"auto_pull", errOf(bindArgs[checkAndPullArgs](call("check_and_pull", []any{msgpack.Map{{Key: "x", Val: append(img, msgpack.KV{Key: "auto_pull", Val: "always"})}}}))), "ValueError: image_configs['x'].auto_pull: invalid argument: unknown auto_pull \"always\" (one of digest, tag, none)"},
		{"nested dict", errOf(bindArgs[checkAndPullArgs](call("check_and_pull", []any{msgpack.Map{{Key: "x", Val: append(img, msgpack.KV{Key: "registry", Val: msgpack.Map{{Key: "url", Val: int64(1)}}})}}}))), "TypeError: image_configs['x'].registry.url: expected str, got int"},
		{"image ref", errOf(bindArgs[pushImageArgs](call("push_image", []any{int64(1)}))), "TypeError: image_ref: expected ImageRef, got int"},
		{"bytes", errOf(bindArgs[uploadFileArgs](call("upload_file", []any{"k", "f", int64(1)}))), "TypeError: filedata: expected bytes, got int"},
		{"int range", errOf(bindArgs[releasePortArgs](call("release_port", []any{int64(1) << 40}))), "TypeError: port_no: 1099511627776 is out of range"},
		{"purge None", errOf((&methods{}).purgeImages(context.Background(), call("purge_images", []any{nil}))), "TypeError: purge_images() missing required argument: 'images'"},
		{"purge v2", errOf((&methods{}).purgeImages(context.Background(), call("purge_images", []any{msgpack.Map{{Key: "images", Val: []any{"a"}}, {Key: "force", Val: "y"}}}))), "TypeError: force: expected bool, got str"},
		{"purge item", errOf((&methods{}).purgeImages(context.Background(), call("purge_images", []any{[]any{"a", int64(2)}}))), "TypeError: images[1]: expected str, got int"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil || ExceptionName(tc.err)+": "+errMessage(tc.err) != tc.want {
				t.Fatalf("got %v (%s), want %s", tc.err, ExceptionName(tc.err), tc.want)
			}
		})
	}
	a, err := bindArgs[executeArgs](call("execute", []any{"s", "k", nil, nil, "batch", nil, nil, nil}))
	if err != nil || a.APIVersion != 3 || a.Opts == nil || a.FlushTimeout != nil {
		t.Fatalf("execute defaults: %+v %v", a, err)
	}
	c, err := bindArgs[commitArgs](call("commit", []any{"k", "s"}, msgpack.KV{Key: "extra_labels", Val: nil}))
	if err != nil || c.ExtraLabels == nil {
		t.Fatalf("commit extra_labels None: %+v %v", c, err)
	}
	// labels: absent stays nil, None is {} (as asStrMap reads None).
	for _, tc := range []struct {
		m       msgpack.Map
		wantNil bool
	}{{img, true}, {append(img, msgpack.KV{Key: "labels", Val: nil}), false}} {
		ic, err := bindValue[imageConfigArgs](tc.m, "ic")
		if err != nil || (ic.Labels == nil) != tc.wantNil {
			t.Fatalf("labels of %v: %#v %v", tc.m, ic.Labels, err)
		}
	}
}
