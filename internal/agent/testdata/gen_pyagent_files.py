#!/usr/bin/python3
"""Writes a kernel's config files as the Python agent writes them, for the
adoption tests: environ.txt and resource.txt (docker/agent.py
prepare_container: "k=v" lines, then KernelResourceSpec.write_to_string
and each plugin's generate_resource_data lines, none for the intrinsic
cpu/mem plugins), their *_base.txt copies, and recovery.json
(KernelRecoveryScratchData.model_dump_json: pydantic's compact JSON in
field order, ImageRef as its dataclass fields).

The writers are restated here from the Python agent's code (as
gen_kconfig.py restates the pickled config): BinarySize's "m" and "s"
formats, orjson's compact SLOTS, the field order. No Backend.AI code is
copied or needed.

    gen_pyagent_files.py < facts.json

facts: {"dir", "agent_id", "kernel_id", "session_id", "owner_user_id",
"owner_project_id", "image": {name, project, tag, registry, architecture,
is_local}, "network_id", "session_type", "cores": [ids], "mem": bytes,
"scratch_size": bytes, "service_ports": [...], "repl_in", "repl_out",
"environ": {...}, "accel_env": ["K=V", ...]}
"""
import json
import os
import shutil
import sys
from decimal import Decimal

SUFFIXES = (" ", "K", "M", "G", "T", "P", "E", "Z", "Y")
SUFFIX_MAP = {"y": 2**80, "z": 2**70, "e": 2**60, "p": 2**50, "t": 2**40,
              "g": 2**30, "m": 2**20, "k": 2**10, " ": 1}


def _quantize(val, multiplier):
    d = Decimal(val) / Decimal(multiplier)
    if d == d.to_integral():
        return d.quantize(Decimal(1))
    return d.quantize(Decimal(".00")).normalize()


def binary_size(n, spec):
    """BinarySize.__format__."""
    if spec == "s":
        idx, scale = 0, int(n)
        while scale >= 1024:
            scale //= 1024
            idx += 1
        if idx == 0:
            return f"{int(n)}"
        suffix = SUFFIXES[idx]
        return f"{_quantize(n, SUFFIX_MAP[suffix.lower()]):f}{suffix.lower()}"
    return f"{_quantize(n, SUFFIX_MAP[spec]):f}{spec}".strip()


def compact(obj):
    """orjson.dumps / pydantic model_dump_json: no spaces."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def main():
    f = json.load(sys.stdin)
    d = f["dir"]
    with open(os.path.join(d, "environ.txt"), "wb") as out:
        buf = "".join(f"{k}={v}\n" for k, v in f["environ"].items())
        buf += "".join(f"{e}\n" for e in f.get("accel_env", []))
        out.write(buf.encode("utf8"))
    slots = {"cpu": str(len(f["cores"])), "mem": str(f["mem"])}
    res = ""
    res += f"SCRATCH_SIZE={binary_size(f.get('scratch_size', 0), 'm')}\n"
    res += "MOUNTS=\n"
    res += f"SLOTS={compact(slots)}\n"
    res += "UNIFIED_DEVICES=[]\n"
    # allocations: cpu (count) then mem (bytes), as the agent's
    # computers are ordered.
    res += "CPU_SHARES=" + ",".join(f"{c}:1" for c in f["cores"]) + "\n"
    res += f"MEM_SHARES=root:{binary_size(f['mem'], 's')}\n"
    with open(os.path.join(d, "resource.txt"), "wb") as out:
        out.write(res.encode("utf8"))
    shutil.copyfile(os.path.join(d, "environ.txt"), os.path.join(d, "environ_base.txt"))
    shutil.copyfile(os.path.join(d, "resource.txt"), os.path.join(d, "resource_base.txt"))
    img = f["image"]
    recovery = {
        "id": f["kernel_id"],
        "agent_id": f["agent_id"],
        "image_ref": {k: img.get(k) for k in ("name", "project", "tag", "registry", "architecture", "is_local")},
        "version": 1,
        "ownership_data": {
            "kernel_id": f["kernel_id"],
            "session_id": f["session_id"],
            "agent_id": f["agent_id"],
            "owner_user_id": f.get("owner_user_id"),
            "owner_project_id": f.get("owner_project_id"),
        },
        "network_id": f["network_id"],
        "network_driver": "bridge",
        "session_type": f["session_type"],
        "block_service_ports": False,
        "domain_socket_proxies": [],
        "service_ports": [
            {k: sp[k] for k in ("name", "protocol", "container_ports", "host_ports", "is_inference")}
            for sp in f["service_ports"]
        ],
        "repl_in_port": f["repl_in"],
        "repl_out_port": f["repl_out"],
    }
    with open(os.path.join(d, "recovery.json"), "w") as out:
        out.write(compact(recovery))


if __name__ == "__main__":
    main()
