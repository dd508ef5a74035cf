#!/usr/bin/python3
"""Plays a Backend.AI manager's session lifecycle against a running
bai-agent, the way the manager (lablup/backend.ai c0032c472e) does it:

  - it waits for the agent's heartbeat on the events stream (consumer group
    "manager", JSON payloads parsed with json.loads);
  - check_and_pull with the manager's ImageConfig, then waits for
    image_pull_finished (the only event that moves kernels to PREPARED,
    event_dispatcher/handlers/image.py) and resolves the image by
    image_ref.canonical and image_ref.architecture;
  - create_kernels with registry "local" names (ImageConfig.canonical
    local/<project>/<name>:<tag>, is_local true), waits for kernel_started
    and reads kernel:presence:{kid} with int() and the service-discovery
    hash with json.loads, as valkey_schedule and RedisServiceDiscovery do;
  - a second session whose image must be pulled from a local registry,
    once through check_and_pull and once by create_kernels itself
    (kernel_pulling);
  - failures a manager retries (no resources, a malformed image) raise
    without kernel_terminated and leave the agent serving;
  - destroy_kernel, then kernel_terminated and the presence key removed.

    manager_flow.py RPC_ADDR REDIS_ADDR AGENT_ID LOCAL_IMAGE REMOTE_IMAGE REMOTE_DIGEST VFOLDER_DIR

LOCAL_IMAGE is project/name:tag present on the node; REMOTE_IMAGE is
registry-host:port/project/name:tag present only in the registry. Exits 0
when every check passed; prints one line per check.
"""
import json
import os
import sys
import time
import uuid

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import manager_peer as mp  # noqa: E402
from manager_peer import FAILURE, RESULT, check, g  # noqa: E402

ARCH = "x86_64"
STREAM = "events"


class Events:
    """The manager's side of the events stream (DB 4)."""

    def __init__(self, host, port):
        self.r = redis.Redis(host=host, port=port, db=4, decode_responses=True)
        self.seen = []

    def read(self, until, timeout=60.0, what="events"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            res = self.r.xreadgroup("manager", "m-flow", {STREAM: ">"}, count=100, block=500)
            for _stream, msgs in res or []:
                for mid, fields in msgs:
                    ev = {"name": fields["name"], "source": fields.get("source")}
                    # AbstractEvent.from_message: model_validate_json(payload)
                    ev["payload"] = json.loads(fields["payload"]) if "payload" in fields else None
                    self.seen.append(ev)
                    self.r.xack(STREAM, "manager", mid)
            hit = until(self.seen)
            if hit:
                return hit
        raise mp.CheckFailed(f"timed out waiting for {what}; saw {[e['name'] for e in self.seen][-20:]}")

    def find(self, name, **match):
        for e in self.seen:
            if e["name"] == name and all(e["payload"].get(k) == v for k, v in match.items()):
                return e
        return None

    def names_for_kernel(self, kid):
        return [e["name"] for e in self.seen if e["payload"] and e["payload"].get("kernel_id") == kid]


def image_config(canonical, project, registry_name, registry_url, is_local, digest, auto_pull):
    return {
        "canonical": canonical,
        "project": project,
        "architecture": ARCH,
        "digest": digest,
        "repo_digest": None,
        "registry": {"name": registry_name, "url": registry_url, "username": None, "password": None},
        "labels": {},
        "is_local": is_local,
        "auto_pull": auto_pull,
    }


def split_name(short):
    """project/name:tag -> (project, name, tag)"""
    repo, tag = short.rsplit(":", 1)
    project, name = repo.split("/", 1)
    return project, name, tag


def session_config(kid, sid, ic, ref, vfdir, slots=None):
    _, cfg = mp.kernel_config(kid, sid, "x/y:z", vfdir)
    cfg["image"] = ic
    cfg["auto_pull"] = ic["auto_pull"]
    cfg["resource_slots"] = slots or {"cpu": "1", "mem": "134217728"}
    return cfg


CLUSTER = {"mode": g.ClusterMode.SINGLE_NODE, "size": 1, "replicas": {"main": 1},
           "network_config": {"mode": "bridge", "network_name": None}, "ssh_keypair": None,
           "cluster_ssh_port_mapping": None}


def check_image_event(ev, canonical, project, name, tag, registry, is_local):
    p = ev["payload"]
    ref = p["image_ref"]
    check(ref is not None, f"{ev['name']} carries image_ref")
    check(p["image"] == canonical and p["agent_id"] == AGENT_ID, f"{ev['name']} image {p['image']} from {p['agent_id']}")
    want = {"name": name, "project": project, "tag": tag, "registry": registry, "architecture": ARCH, "is_local": is_local}
    check(ref == want, f"{ev['name']} image_ref is the manager's ImageRef ({ref})")
    # _resolve_image_id: ImageRow.name == image_ref.canonical
    check(f"{ref['registry']}/{ref['project']}/{ref['name']}:{ref['tag']}" == canonical, "image_ref.canonical resolves the image row")
    if "timestamp" in p:
        check(isinstance(p["timestamp"], float), "timestamp is a float")


def wait_bgtask_done(events_db, hex_id):
    dashed = str(uuid.UUID(hex_id))
    key = f"bgtask.{dashed}"
    deadline = time.time() + 60
    while time.time() < deadline:
        raw = events_db.r.get(key)
        if raw:
            msg = json.loads(raw)
            if msg["name"] in ("bgtask_done", "bgtask_failed"):
                payload = json.loads(msg["payload"])
                check(payload["task_id"] == dashed, f"bgtask cache {key} holds the dashed task id")
                return msg["name"]
        time.sleep(0.2)
    raise mp.CheckFailed(f"no final bgtask event under {key}")


def check_started(ev, kid):
    ci = ev["payload"]["creation_info"]
    for f in ("container_id", "kernel_host", "repl_in_port", "repl_out_port", "service_ports", "used_devices"):
        check(f in ci, f"creation_info.{f}")
    check(isinstance(ci["repl_in_port"], int) and isinstance(ci["kernel_host"], str) and ci["kernel_host"], "creation_info ports and host")
    for sp in ci["service_ports"]:
        check(set(sp) == {"name", "protocol", "container_ports", "host_ports", "is_inference"} and sp["protocol"] in ("tcp", "http", "pty", "preopen", "vnc", "rdp", "internal"), f"service port {sp['name']} is a ServicePortInfo")
    units = ci["used_devices"]["units"]
    check(set(units) >= {"cpu", "mem"}, "used_devices has cpu and mem")
    for dev in ("cpu", "mem"):
        for unit_id, u in units[dev].items():
            check(u["model_name"] is None and u["processing_units"] is None and u["memory_size"] is None,
                  f"used_devices.{dev}.{unit_id} carries null figures, as the Python agent sends")
            check(all(isinstance(v, str) for v in u["used"].values()), f"used_devices.{dev}.{unit_id}.used are decimal strings")


def check_presence(live, kid):
    key = f"kernel:presence:{kid}"
    deadline = time.time() + 20
    data = {}
    while time.time() < deadline and not data:
        data = live.hgetall(key)
        time.sleep(0.2)
    check(data.get("presence") == "1", f"{key} presence is 1 ({data})")
    last = int(data["last_presence"])  # what check_kernel_presence_status_batch does
    server_now = live.time()[0]
    check(abs(server_now - last) < 120, f"last_presence {last} is Redis TIME seconds ({server_now})")
    ttl = live.ttl(key)
    check(0 < ttl <= 300, f"{key} expires ({ttl} s)")


def check_discovery(stat):
    keys = list(stat.scan_iter("service_discovery.*.*"))
    check(keys, "a service discovery entry exists")
    mine = None
    for key in keys:
        raw = stat.hgetall(key)
        meta = {k: json.loads(v) for k, v in raw.items()}  # RedisServiceDiscovery._hget_json
        check(set(meta) >= {"id", "display_name", "service_group", "version", "endpoint", "health_status", "labels"}, f"{key} has every ServiceMetadata field")
        uuid.UUID(meta["id"])
        check(key == f"service_discovery.{meta['service_group']}.{meta['id']}", f"{key} is named by its group and id")
        ep = meta["endpoint"]
        check(set(ep) == {"address", "port", "protocol", "prometheus_address"} and isinstance(ep["port"], int), f"{key} endpoint is a ServiceEndpoint")
        hs = meta["health_status"]
        check(isinstance(hs["registration_time"], float) and isinstance(hs["last_heartbeat"], float), f"{key} health_status is a HealthStatus")
        if meta["display_name"] == f"agent-{AGENT_ID}":
            mine = meta
    check(mine is not None and mine["service_group"] == "agent", "the agent's own entry is there")


def main():
    global AGENT_ID
    rpc_addr, redis_addr, AGENT_ID, local_image, remote_image, remote_digest, vfdir = sys.argv[1:8]
    rhost, rport = redis_addr.rsplit(":", 1)
    ev = Events(rhost, int(rport))
    live = redis.Redis(host=rhost, port=int(rport), db=2, decode_responses=True)
    stat = redis.Redis(host=rhost, port=int(rport), db=0, decode_responses=True)
    p = mp.Peer(rpc_addr)
    check(p.handshake(), "PING/PONG handshake")
    ev.read(lambda s: any(e["name"] == "agent_heartbeat" for e in s), what="agent_heartbeat")
    hb = [e for e in ev.seen if e["name"] == "agent_heartbeat"][-1]["payload"]["agent_info"]
    check(hb["ip"] and hb["ip"] != "0.0.0.0" and hb["addr"].startswith("tcp://"), f"heartbeat ip {hb['ip']} addr {hb['addr']}")
    check(hb["region"], f"heartbeat region {hb['region']!r}")
    check_discovery(stat)
    t, h = p.invoke("health_v2", [], {"req": {}, "agent_id": AGENT_ID})
    comps = {(c["service_group"], c["component_id"]): c["is_healthy"] for c in h["connectivity"]["connectivity_checks"]}
    want = {("container", "docker"), ("etcd", "etcd"), ("redis", "stat"), ("redis", "stream"), ("redis", "bgtask"), ("redis", "container_log")}
    check(t == RESULT and set(comps) == want and all(comps.values()) and h["status"] == "ok", f"health_v2 probes Docker, etcd and Redis ({sorted(comps)})")

    # --- Session A: an image already on the node, named as a local image.
    project, name, tag = split_name(local_image)
    canonical = f"local/{project}/{name}:{tag}"
    ic = image_config(canonical, project, "local", "http://localhost", True, "sha256:" + "0" * 64, g.AutoPullBehavior.DIGEST)
    t, ids = p.invoke("check_and_pull", [{canonical: ic}])
    check(t == RESULT and set(ids) == {canonical} and len(ids[canonical]) == 32, f"check_and_pull answers {{canonical: hex}} ({ids})")
    fin = ev.read(lambda s: ev.find("image_pull_finished", image=canonical), what="image_pull_finished (already present)")
    check(fin["payload"]["msg"] == "Image already exists", "image_pull_finished says the image already exists")
    check(not ev.find("image_pull_started", image=canonical), "no image_pull_started when nothing is pulled")
    check_image_event(fin, canonical, project, name, tag, "local", True)
    check(wait_bgtask_done(ev, ids[canonical]) == "bgtask_done", "the check_and_pull task is done")

    sid, kid = uuid.uuid4(), uuid.uuid4()
    ref = g.ImageRef(name=name, project=project, tag=tag, registry="local", architecture=ARCH, is_local=True)
    cfg = session_config(kid, sid, ic, ref, vfdir)
    t, res = p.invoke("create_kernels", [str(sid), [str(kid)], [cfg], CLUSTER, {kid: ref}], {"agent_id": AGENT_ID})
    check(t == RESULT and res[0]["id"] == str(kid), f"create_kernels with a registry-local name ({res if t != RESULT else 'ok'})")
    started = ev.read(lambda s: ev.find("kernel_started", kernel_id=str(kid)), what="kernel_started")
    names = ev.names_for_kernel(str(kid))
    check(names[:3] == ["kernel_preparing", "kernel_creating", "kernel_started"], f"lifecycle order {names}")
    check_started(started, kid)
    check_presence(live, kid)

    # --- Code in the kernel through its runner, as the manager calls it.
    # The test image's runtime is "app": no query mode (exit 127, as the
    # reference), but batch steps run through /bin/sh.
    t, r = p.invoke("execute", [str(sid), str(kid), 3, "q1", "query", "print(1)", {}, 10.0], {"agent_id": AGENT_ID})
    check(t == RESULT and r["status"] == "finished" and r["exitCode"] == 127, f"execute query on an app runtime answers 127 ({r})")
    statuses, out = [], ""
    t, r = p.invoke("execute", [str(sid), str(kid), 3, "b1", "batch", "", {"exec": "echo hello-from-batch"}, 10.0])
    while t == RESULT:
        statuses.append(r["status"])
        out += "".join(c[1] for c in r["console"] if c[0] == "stdout")
        if r["status"] == "finished":
            break
        t, r = p.invoke("execute", [str(sid), str(kid), 3, "b1", "continue", "", {}, 10.0])
    check(statuses == ["clean-finished", "build-finished", "finished"] and out == "hello-from-batch\n", f"execute batch steps {statuses} {out!r}")
    check(set(r) == {"runId", "status", "exitCode", "options", "console", "files"}, f"execute result keys {sorted(r)}")
    ev.read(lambda s: ev.find("execution_finished", session_id=str(sid)), what="execution_finished")
    t, pong = p.invoke("ping_kernel", [str(kid)])
    check(t == RESULT and isinstance(pong["started_at"], float), f"ping_kernel {pong}")
    t, none = p.invoke("trigger_batch_execution", [str(sid), str(kid), "echo batch; exit 3", None])
    check(t == RESULT and none is None, "trigger_batch_execution returns None at once")
    fail = ev.read(lambda s: ev.find("session_failure", session_id=str(sid)), what="session_failure")
    check(fail["payload"]["reason"] == "task-failed" and fail["payload"]["exit_code"] == 3, f"session_failure {fail['payload']}")
    t, r = p.invoke("interrupt_kernel", [str(kid)])
    check(t == RESULT and r == {"status": "finished"}, "interrupt_kernel")
    t, r = p.invoke("get_completions", [str(kid), "ec", {}])
    check(t == RESULT and r["result"]["status"] == "finished" and r["result"]["suggestions"] == [], f"get_completions {r}")

    # --- Failures a manager retries: raised, no kernel_terminated.
    bad_kid = uuid.uuid4()
    cfg_big = session_config(bad_kid, sid, ic, ref, vfdir, slots={"cpu": "1000", "mem": "134217728"})
    t, meta = p.invoke("create_kernels", [str(sid), [str(bad_kid)], [cfg_big], CLUSTER, {bad_kid: ref}])
    check(t == FAILURE and meta[0] == "InsufficientResource", f"over-allocation raises InsufficientResource ({meta})")
    ev.read(lambda s: ev.find("do_agent_resource_check", agent_id=AGENT_ID), what="do_agent_resource_check")
    ev.read(lambda s: any(e["name"] == "agent_error" for e in s), what="agent_error")
    err = [e for e in ev.seen if e["name"] == "agent_error"][-1]["payload"]
    check(isinstance(err["message"], str) and err["severity"] == "ERROR" and err["context_env"] == {}, f"agent_error {err['message'][:60]}")
    time.sleep(1.0)
    ev.read(lambda s: True, timeout=1)
    check(not ev.find("kernel_terminated", kernel_id=str(bad_kid)), "no kernel_terminated for a refused creation")
    t, meta = p.invoke("check_and_pull", [{"http://bad/x:1": dict(ic, canonical="http://bad/x:1")}])
    check(t == FAILURE and "http://bad/x:1" in meta[1], f"malformed image refused, naming it ({meta[1][:80]})")
    t, meta = p.invoke("check_and_pull", [{canonical: dict(ic, auto_pull="sometimes")}])
    check(t == FAILURE and "auto_pull" in meta[1], "unknown auto_pull refused, naming the field")
    check(p.invoke("ping", ["still here"]) == (RESULT, "still here"), "the agent keeps serving")

    # --- Session B: an image that must be pulled from the registry.
    rhostport, rrest = remote_image.split("/", 1)
    rproject, rname, rtag = split_name(rrest)
    ric = image_config(remote_image, rproject, rhostport, "http://" + rhostport, False, remote_digest, g.AutoPullBehavior.DIGEST)
    t, ids = p.invoke("check_and_pull", [{remote_image: ric}])
    check(t == RESULT and len(ids[remote_image]) == 32, "check_and_pull of a remote image")
    st = ev.read(lambda s: ev.find("image_pull_started", image=remote_image), what="image_pull_started")
    check_image_event(st, remote_image, rproject, rname, rtag, rhostport, False)
    fin = ev.read(lambda s: ev.find("image_pull_finished", image=remote_image), timeout=120, what="image_pull_finished (pulled)")
    check(fin["payload"]["msg"] is None, "image_pull_finished after a real pull has msg null")
    check_image_event(fin, remote_image, rproject, rname, rtag, rhostport, False)
    check(wait_bgtask_done(ev, ids[remote_image]) == "bgtask_done", "the pull task is done")
    t, purged = p.invoke("purge_images", [[remote_image], True, False])
    check(t == RESULT and purged["responses"][0]["error"] is None, f"purge_images removes the pulled image again ({purged})")

    # create_kernels pulls by itself when the image is missing.
    sid2, kid2 = uuid.uuid4(), uuid.uuid4()
    rref = g.ImageRef(name=rname, project=rproject, tag=rtag, registry=rhostport, architecture=ARCH, is_local=False)
    t, res = p.invoke("create_kernels", [str(sid2), [str(kid2)], [session_config(kid2, sid2, ric, rref, vfdir)], CLUSTER, {kid2: rref}])
    check(t == RESULT, f"create_kernels pulls the missing image ({res if t != RESULT else 'ok'})")
    ev.read(lambda s: ev.find("kernel_started", kernel_id=str(kid2)), what="kernel_started (pulled image)")
    names = ev.names_for_kernel(str(kid2))
    check(names[:4] == ["kernel_preparing", "kernel_pulling", "kernel_creating", "kernel_started"], f"lifecycle with a pull {names}")
    check(ev.find("kernel_pulling", kernel_id=str(kid2))["payload"]["reason"] == remote_image, "kernel_pulling names the image")

    # --- Destroy both; kernel_terminated and the presence keys go away.
    for k, s_ in ((kid, sid), (kid2, sid2)):
        t, _ = p.invoke("destroy_kernel", [str(k), str(s_), "user-requested"], {"suppress_events": False})
        check(t == RESULT, f"destroy_kernel {k}")
        term = ev.read(lambda s: ev.find("kernel_terminated", kernel_id=str(k)), what="kernel_terminated")
        check(term["payload"]["reason"] == "user-requested" and isinstance(term["payload"]["exit_code"], int), f"kernel_terminated {term['payload']['reason']}")
        deadline = time.time() + 10
        while time.time() < deadline and live.exists(f"kernel:presence:{k}"):
            time.sleep(0.2)
        check(not live.exists(f"kernel:presence:{k}"), "the presence key is removed with the kernel")
    print("manager flow: all checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except mp.CheckFailed as e:
        print("FAILED:", e, flush=True)
        sys.exit(1)
