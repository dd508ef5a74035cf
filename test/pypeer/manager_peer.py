#!/usr/bin/python3
"""A Python peer that plays the Backend.AI manager against bai-agent.

It speaks Callosum over a real pyzmq DEALER exactly as the manager's
AgentClientPool does (PING/PONG handshake, header/body frames, msgpack with
Backend.AI's ext types and pickles from the stand-in classes in
internal/wire/testdata/gen_golden.py), and checks every answer itself.

    /usr/bin/python3 test/pypeer/manager_peer.py ADDR IMAGE VFOLDER_DIR

Exits 0 when every check passed; prints one line per check.
"""
import json
import os
import sys
import time
import uuid

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "internal", "wire", "testdata"))
import gen_golden as g  # noqa: E402  (stand-in classes and packb)

FUNCTION, RESULT, FAILURE, ERROR, CANCEL, CANCELLED = 1, 2, 3, 4, 5, 6


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)
    print("ok:", what, flush=True)


class Peer:
    def __init__(self, addr):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 100)
        self.sock.connect(addr)
        self.seq = 0

    def handshake(self):
        self.sock.send_multipart([b"PING", b"", b""])
        if not self.sock.poll(5000):
            raise CheckFailed("no PONG within 5 s")
        frames = self.sock.recv_multipart()
        return frames[0] == b"PONG"

    def send_raw(self, frames):
        self.sock.send_multipart(frames)

    def recv(self, timeout_ms):
        if not self.sock.poll(timeout_ms):
            return None
        return self.sock.recv_multipart()

    def invoke(self, meth, args, kwargs=None, okey=b"", timeout=120):
        seq = self.seq
        self.seq += 1
        header = msgpack.packb({"type": FUNCTION, "meth": meth, "okey": okey, "seq": seq, "zip": False}, use_bin_type=True)
        body = msgpack.packb({"meta": b"", "body": g.packb({"args": tuple(args), "kwargs": kwargs or {}})}, use_bin_type=True)
        self.sock.send_multipart([b"UPPER", header, body])
        deadline = time.time() + timeout
        while time.time() < deadline:
            frames = self.recv(int((deadline - time.time()) * 1000) + 1)
            if frames is None:
                break
            kind, hdr, bdy = frames[-3:]
            h = msgpack.unpackb(hdr, raw=False)
            # Python equality, as callosum matches: b"" != "".
            if (h["meth"], h["okey"], h["seq"]) != (meth, okey, seq):
                print("note: unmatched reply", h, flush=True)
                continue
            b = msgpack.unpackb(bdy, raw=False)
            if h["type"] == RESULT:
                return h["type"], msgpack.unpackb(b["body"], raw=False, strict_map_key=False)
            meta = msgpack.unpackb(b["meta"], raw=False) if b["meta"] else None
            return h["type"], meta
        raise CheckFailed(f"no reply to {meth} within {timeout} s")


def kernel_config(kid, sid, image, vfdir):
    ref = g.ImageRef(name=image.rsplit(":", 1)[0], project="", tag=image.rsplit(":", 1)[1], registry="", architecture="x86_64", is_local=True)
    cfg = g.kernel_config(0, kid, ref)
    cfg["image"]["canonical"] = image
    cfg["image"]["is_local"] = True
    cfg["image"]["auto_pull"] = g.AutoPullBehavior.NONE
    cfg["image"]["labels"] = {}
    cfg["session_id"] = str(sid)
    cfg["network_id"] = str(sid)
    cfg["resource_slots"] = {"cpu": "1", "mem": "134217728"}
    cfg["resource_opts"] = {"shmem": g.BinarySize(16 * 2**20)}
    cfg["environ"] = {"BACKENDAI_SESSION_ID": str(sid), "BACKENDAI_KERNEL_ID": str(kid)}
    cfg["mounts"][0]["host_path"] = vfdir
    cfg["mounts"][0]["kernel_path"] = "/home/work/data1"
    return ref, cfg


def main():
    addr, image, vfdir = sys.argv[1], sys.argv[2], sys.argv[3]
    p = Peer(addr)
    check(p.handshake(), "PING/PONG handshake")
    check(p.invoke("ping", ["ping"]) == (RESULT, "ping"), "ping with bin okey (pool path)")
    check(p.invoke("ping", ["hi"], okey="") == (RESULT, "hi"), "ping with str okey (rpc_context path)")

    # Malformed traffic: each gets an error or is ignored; the server stays up.
    p.send_raw([b"UPPER", b"\xc1\xc1", b""])
    check(p.recv(500) is None, "undecodable header is dropped without a reply")
    p.send_raw([b"UPPER"])
    check(p.recv(300) is None, "short frame set is ignored")
    p.send_raw([b"BOGUS", b"", b""])
    check(p.recv(300) is None, "unknown frame kind is ignored")
    hdr = msgpack.packb({"type": FUNCTION, "meth": "ping", "okey": b"", "seq": 999, "zip": False}, use_bin_type=True)
    p.send_raw([b"UPPER", hdr, b"\x93\x01"])
    r = p.recv(2000)
    rh = msgpack.unpackb(r[-2], raw=False)
    check(rh["type"] == ERROR and rh["seq"] == 999, "malformed body answered with ERROR")
    t, meta = p.invoke("no_such_method", [])
    check(t == ERROR and meta[0] == "KeyError", f"unknown method answered with ERROR KeyError ({meta[:2]})")
    t, meta = p.invoke("create_kernels", [123, [], [], {}, {}])
    check(t == FAILURE and meta[0] == "TypeError", f"wrong-typed argument answered with FAILURE TypeError ({meta[1]})")
    t, meta = p.invoke("ping", ["x"], {"agent_id": "i-someone-else"})
    check(t == FAILURE and meta[0] == "AgentIdNotFoundError", "unknown agent_id refused")
    check(p.invoke("ping", ["still"]) == (RESULT, "still"), "ping still answered after bad input")

    # A manager-shaped create_kernels and destroy_kernel.
    sid, kid = uuid.uuid4(), uuid.uuid4()
    ref, cfg = kernel_config(kid, sid, image, vfdir)
    cluster = {"mode": g.ClusterMode.SINGLE_NODE, "size": 1, "replicas": {"main": 1},
               "network_config": {"mode": "bridge", "network_name": None}, "ssh_keypair": None, "cluster_ssh_port_mapping": None}
    t, res = p.invoke("create_kernels", [str(sid), [str(kid)], [cfg], cluster, {kid: ref}], {"agent_id": None})
    check(t == RESULT, f"create_kernels answered ({res if t != RESULT else 'RESULT'})")
    check(isinstance(res, (list, tuple)) and len(res) == 1, "one result per kernel")
    k = res[0]
    for key in ("id", "kernel_host", "repl_in_port", "repl_out_port", "stdin_port", "stdout_port", "service_ports",
                "container_id", "resource_spec", "attached_devices", "agent_addr", "scaling_group"):
        check(key in k, f"result has {key}")
    check(k["id"] == str(kid), "result id is the kernel id")
    names = sorted(sp["name"] for sp in k["service_ports"])
    check(names == ["jupyter", "sshd", "ttyd"], f"service ports {names}")
    check(k["resource_spec"]["slots"]["mem"] == "134217728", "resource_spec slots")
    t, running = p.invoke("check_running", [str(kid)])
    check(t == RESULT and running is True, "check_running is true")
    t, dup = p.invoke("create_kernels", [str(sid), [str(kid)], [cfg], cluster, {kid: ref}])
    check(t == FAILURE and dup[0] == "ResourceError", f"duplicate create refused ({dup[1] if dup else dup})")
    t, lc = p.invoke("get_local_config", [None])
    check(t == RESULT and "abuse-report-path" in lc["agent"], "get_local_config")
    t, hw = p.invoke("gather_hwinfo", [])
    check(t == RESULT and hw["cpu"]["status"] == "healthy", "gather_hwinfo")
    t, health = p.invoke("health", [])
    check(t == RESULT and health["component"] == "agent", "health")
    t, none = p.invoke("destroy_kernel", [str(kid), str(sid), "user-requested", False])
    check(t == RESULT and none is None, "destroy_kernel returns None after clean")
    t, running = p.invoke("check_running", [str(kid)])
    check(t == RESULT and running is False, "kernel gone after destroy")
    t, none = p.invoke("destroy_kernel", [str(uuid.uuid4()), str(sid), None, False])
    check(t == RESULT and none is None, "destroying an unknown kernel is not an error")
    check(p.invoke("ping", ["bye"]) == (RESULT, "bye"), "ping at the end")
    print(json.dumps({"passed": True}))


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print("FAILED:", e, flush=True)
        sys.exit(1)
