#!/usr/bin/python3
"""Plays a Backend.AI manager's GPU session against a bai-agent that runs
the mock accelerator (two "cuda" devices), reading what the manager reads:

  - the heartbeat's available_resource_slots, slot_key_and_units and
    compute_plugins (AgentHeartbeatEvent.agent_info);
  - computer.metadata in the statistics DB (the slot's display format);
  - create_kernels with cuda.device = 1: attached_devices in the result
    and creation_info.used_devices in kernel_started, with the model name
    and memory size the manager stores;
  - scan_gpu_alloc_map and gather_hwinfo(_v2) as the manager's
    AgentClient calls them;
  - the node and kernel statistics (msgpack in DB 0) with cuda_mem and
    cuda_util;
  - a second GPU kernel, a third refused with InsufficientResource, and
    destroy freeing the device.

    manager_gpu_flow.py RPC_ADDR REDIS_ADDR AGENT_ID LOCAL_IMAGE VFOLDER_DIR
"""
import sys
import time
import uuid

import msgpack
import redis

import manager_flow as mf
import manager_peer as mp
from manager_peer import FAILURE, RESULT, check, g


def wait_for(fn, what, timeout=40.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.5)
    raise mp.CheckFailed("timed out waiting for " + what)


def main():
    rpc_addr, redis_addr, agent_id, local_image, vfdir = sys.argv[1:6]
    mf.AGENT_ID = agent_id
    rhost, rport = redis_addr.rsplit(":", 1)
    ev = mf.Events(rhost, int(rport))
    stat = redis.Redis(host=rhost, port=int(rport), db=0)
    p = mp.Peer(rpc_addr)
    check(p.handshake(), "PING/PONG handshake")

    ev.read(lambda s: any(e["name"] == "agent_heartbeat" for e in s), what="agent_heartbeat")
    hb = [e for e in ev.seen if e["name"] == "agent_heartbeat"][-1]["payload"]["agent_info"]
    slots = {s["resource_type"]: s["quantity"] for s in hb["available_resource_slots"]}
    check(slots.get("cuda.device") == "2", f"heartbeat advertises cuda.device=2 ({slots})")
    check(hb["slot_key_and_units"].get("cuda.device") == "count", "cuda.device is a count slot")
    cp = hb["compute_plugins"].get("cuda", {})
    check(cp.get("cuda_support") is True and cp.get("version"), f"compute_plugins.cuda ({cp})")
    md = wait_for(lambda: stat.hget("computer.metadata", "cuda.device"), "computer.metadata cuda.device")
    md = __import__("json").loads(md)
    check(md["display_unit"] == "GPU" and md["slot_name"] == "cuda.device", f"computer.metadata[cuda.device] ({md})")

    project, name, tag = mf.split_name(local_image)
    canonical = f"local/{project}/{name}:{tag}"
    ic = mf.image_config(canonical, project, "local", "http://localhost", True, "sha256:" + "0" * 64, g.AutoPullBehavior.DIGEST)
    ref = g.ImageRef(name=name, project=project, tag=tag, registry="local", architecture=mf.ARCH, is_local=True)
    gpu_slots = {"cpu": "1", "mem": "134217728", "cuda.device": "1"}

    sid, kid = uuid.uuid4(), uuid.uuid4()
    cfg = mf.session_config(kid, sid, ic, ref, vfdir, slots=gpu_slots)
    t, res = p.invoke("create_kernels", [str(sid), [str(kid)], [cfg], mf.CLUSTER, {kid: ref}], {"agent_id": agent_id})
    check(t == RESULT, f"create_kernels with cuda.device=1 ({res if t != RESULT else 'ok'})")
    att = res[0]["attached_devices"]["cuda"]
    check(len(att) == 1 and att[0]["model_name"] == "Mock H100" and att[0]["data"]["mem"] == 80 << 30 and att[0]["data"]["smp"] == 132,
          f"attached_devices.cuda ({att})")
    dev = att[0]["device_id"]
    started = ev.read(lambda s: ev.find("kernel_started", kernel_id=str(kid)), what="kernel_started")
    unit = started["payload"]["creation_info"]["used_devices"]["units"]["cuda"][dev]
    check(unit == {"model_name": "Mock H100", "used": {"cuda.device": "1"}, "processing_units": None, "memory_size": 80 << 30},
          f"used_devices.units.cuda[{dev}] as UsedDevices.from_allocations builds it ({unit})")

    t, amap = p.invoke("scan_gpu_alloc_map", [], {"agent_id": agent_id})
    check(t == RESULT and amap == {dev: "1"}, f"scan_gpu_alloc_map ({amap})")
    t, hw = p.invoke("gather_hwinfo", [], {"agent_id": agent_id})
    check(t == RESULT and hw["cuda"]["status"] == "healthy" and hw["cuda"]["metadata"]["name"] == "Backend.AI Mocked Accelerator Node", f"gather_hwinfo.cuda ({hw.get('cuda')})")
    t, hw2 = p.invoke("gather_hwinfo_v2", [], {"req": {}, "agent_id": agent_id})
    check(t == RESULT and "cuda" in {d["device_name"] for d in hw2["devices"]}, "gather_hwinfo_v2 lists cuda")

    def node_stats():
        raw = stat.get(agent_id)
        if not raw:
            return None
        m = msgpack.unpackb(raw, raw=False)
        return m if "cuda_mem" in m.get("devices", {}) else None
    ns = wait_for(node_stats, "node statistics with cuda_mem")
    check(set(ns["devices"]["cuda_mem"]) == {"gpu-a", "gpu-b"} and ns["node"]["cuda_mem"]["capacity"] == str(160 << 30),
          f"node stats devices.cuda_mem per GPU, node capacity {ns['node']['cuda_mem']['capacity']}")
    check(ns["devices"]["cuda_util"]["gpu-a"]["pct"] == "50", f"fixed mock utilisation ({ns['devices']['cuda_util']['gpu-a']})")

    def kernel_stats():
        raw = stat.get(str(kid))
        if not raw:
            return None
        m = msgpack.unpackb(raw, raw=False)
        return m if "cuda_mem" in m else None
    ks = wait_for(kernel_stats, "kernel statistics with cuda_mem")
    check(ks["cuda_mem"]["current"] == str(40 << 30) and ks["cuda_mem"]["capacity"] == str(80 << 30), f"kernel cuda_mem ({ks['cuda_mem']})")

    sid2, kid2 = uuid.uuid4(), uuid.uuid4()
    t, res2 = p.invoke("create_kernels", [str(sid2), [str(kid2)], [mf.session_config(kid2, sid2, ic, ref, vfdir, slots=gpu_slots)], mf.CLUSTER, {kid2: ref}])
    check(t == RESULT and res2[0]["attached_devices"]["cuda"][0]["device_id"] != dev, "the second GPU kernel gets the other device")
    kid3 = uuid.uuid4()
    t, meta = p.invoke("create_kernels", [str(sid2), [str(kid3)], [mf.session_config(kid3, sid2, ic, ref, vfdir, slots=gpu_slots)], mf.CLUSTER, {kid3: ref}])
    check(t == FAILURE and meta[0] == "InsufficientResource" and "cuda.device" in meta[1], f"a third GPU kernel is refused ({meta[:2]})")
    t, meta = p.invoke("create_kernels", [str(sid2), [str(kid3)], [mf.session_config(kid3, sid2, ic, ref, vfdir, slots=dict(gpu_slots, **{"cuda.device": "0.5"}))], mf.CLUSTER, {kid3: ref}])
    check(t == FAILURE and meta[0] == "InvalidResourceArgument", f"half a discrete GPU is refused ({meta[:2]})")

    for k, s_ in ((kid, sid), (kid2, sid2)):
        t, _ = p.invoke("destroy_kernel", [str(k), str(s_), "user-requested"], {"suppress_events": False})
        check(t == RESULT, f"destroy_kernel {k}")
        ev.read(lambda s: ev.find("kernel_terminated", kernel_id=str(k)), what="kernel_terminated")
    t, amap = p.invoke("scan_gpu_alloc_map", [], {"agent_id": agent_id})
    check(t == RESULT and amap == {}, f"scan_gpu_alloc_map is empty after destroy ({amap})")
    print("manager GPU flow: all checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except mp.CheckFailed as e:
        print("FAILED:", e, flush=True)
        sys.exit(1)
