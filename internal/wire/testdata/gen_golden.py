#!/usr/bin/python3
"""Generate golden wire fixtures with Python's own msgpack and pickle.

Run with Debian's /usr/bin/python3 (python3-msgpack). The classes below are
stand-ins registered under Backend.AI's real module and class names, so the
pickles inside the msgpack extension values are byte-for-byte what a real
manager produces for the same values. Regenerate with:

    /usr/bin/python3 internal/wire/testdata/gen_golden.py internal/wire/testdata

The Go tests (internal/wire, internal/rpc, internal/agent) read the files and
compare against the JSON twins written next to them.
"""
import dataclasses
import enum
import json
import os
import pickle
import sys
import types
import uuid
from collections import UserDict, UserString
from decimal import Decimal

import msgpack


def module(name):
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        n = ".".join(parts[:i])
        if n not in sys.modules:
            sys.modules[n] = types.ModuleType(n)
            if i > 1:
                setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], sys.modules[n])
    return sys.modules[name]


def register(modname, cls):
    cls.__module__ = modname
    setattr(module(modname), cls.__name__, cls)
    return cls


T = "ai.backend.common.types"
D = "ai.backend.common.docker"
E = "ai.backend.common.events.event_types.kernel.types"


class ModernEnumMixin:
    """Pickle like CPython >= 3.12 (cls(value)); the manager runs 3.13."""

    def __reduce_ex__(self, proto):
        return self.__class__, (self._value_,)


def strenum(modname, name, members, modern=True):
    # Built with the functional API, then made picklable under modname.
    cls = enum.Enum(name, members, module=modname, type=str)
    if modern:
        cls.__reduce_ex__ = lambda self, proto: (self.__class__, (self._value_,))
    register(modname, cls)
    return cls


SessionTypes = strenum(T, "SessionTypes", [("INTERACTIVE", "interactive"), ("BATCH", "batch"), ("INFERENCE", "inference"), ("SYSTEM", "system")])
ClusterMode = strenum(T, "ClusterMode", [("SINGLE_NODE", "single-node"), ("MULTI_NODE", "multi-node")])
AutoPullBehavior = strenum(T, "AutoPullBehavior", [("DIGEST", "digest"), ("TAG", "tag"), ("NONE", "none")])
# MountPermission pickled the CPython 3.11 way (getattr(cls, NAME)) to prove both forms decode.
MountPermission = strenum(T, "MountPermission", [("READ_ONLY", "ro"), ("READ_WRITE", "rw"), ("RW_DELETE", "wd")], modern=False)
VFolderUsageMode = strenum(T, "VFolderUsageMode", [("GENERAL", "general"), ("MODEL", "model"), ("DATA", "data")])
KernelLifecycleEventReason = strenum(E, "KernelLifecycleEventReason", [("USER_REQUESTED", "user-requested"), ("SELF_TERMINATED", "self-terminated")])


class BinarySize(int):
    pass


register(T, BinarySize)


class SlotName(UserString):
    __slots__ = ("_parsed", "_device_name", "_major_type", "_minor_type")

    def __init__(self, value):
        super().__init__(value)
        self._parsed = False
        self._device_name = ""
        self._major_type = ""
        self._minor_type = ""


register(T, SlotName)


class ResourceSlot(UserDict):
    __slots__ = ("data",)


register(T, ResourceSlot)


class PlatformTagSet:
    __slots__ = ("_data",)

    def __init__(self, data):
        self._data = data


register(D, PlatformTagSet)


@dataclasses.dataclass
class ImageRef:
    name: str
    project: str
    tag: str
    registry: str
    architecture: str
    is_local: bool

    def __post_init__(self):
        self._tag_set = (self.tag, PlatformTagSet({"py": "311"}))


register(D, ImageRef)


def _default(obj):
    # Mirrors ai.backend.common.msgpack._default (order of checks included).
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(1, obj.bytes)
    if isinstance(obj, BinarySize):
        return msgpack.ExtType(16, pickle.dumps(obj, protocol=5))
    if isinstance(obj, Decimal):
        return msgpack.ExtType(3, pickle.dumps(obj, protocol=5))
    if isinstance(obj, ResourceSlot):
        return msgpack.ExtType(8, pickle.dumps(obj, protocol=5))
    if isinstance(obj, SlotName):
        return msgpack.ExtType(9, pickle.dumps(obj, protocol=5))
    if isinstance(obj, enum.Enum):
        return msgpack.ExtType(6, pickle.dumps(obj, protocol=5))
    if isinstance(obj, ImageRef):
        return msgpack.ExtType(7, pickle.dumps(obj, protocol=5))
    raise TypeError(f"Unknown type: {obj!r} ({type(obj)})")


def packb(v):
    return msgpack.packb(v, use_bin_type=True, strict_types=True, default=_default)


def callosum_request(meth, seq, args, kwargs, okey=b""):
    header = msgpack.packb({"type": 1, "meth": meth, "okey": okey, "seq": seq, "zip": False}, use_bin_type=True)
    body = msgpack.packb({"meta": b"", "body": packb({"args": tuple(args), "kwargs": kwargs})}, use_bin_type=True)
    return header, body


SESSION_ID = uuid.UUID("5f3c2a1e-9b7d-4c2e-8a1f-0123456789ab")
KERNEL_IDS = [uuid.UUID("11111111-2222-4333-8444-555555555555"), uuid.UUID("66666666-7777-4888-9999-aaaaaaaaaaaa")]
OWNER = "f38dea23-50fa-42a0-b5ae-338f5f4693f4"


def image_config(ref):
    return {
        "canonical": ref.registry + "/" + ref.project + "/" + ref.name + ":" + ref.tag,
        "project": ref.project,
        "architecture": ref.architecture,
        "digest": "sha256:" + "ab" * 32,
        "repo_digest": None,
        "registry": {"name": ref.registry, "url": "https://" + ref.registry, "username": None, "password": None},
        "labels": {"ai.backend.kernelspec": "1", "ai.backend.features": "uid-match", "ai.backend.service-ports": "jupyter:http:8080"},
        "is_local": ref.is_local,
        "auto_pull": AutoPullBehavior.DIGEST,
    }


def kernel_config(idx, kid, ref):
    role = "main" if idx == 0 else "sub"
    return {
        "image": image_config(ref),
        "kernel_id": str(kid),
        "session_id": str(SESSION_ID),
        "owner_user_id": OWNER,
        "owner_project_id": None,
        "network_id": str(SESSION_ID),
        "session_type": SessionTypes.INTERACTIVE,
        "cluster_mode": ClusterMode.SINGLE_NODE,
        "cluster_role": role,
        "cluster_idx": idx + 1,
        "cluster_hostname": f"{role}{idx + 1}",
        "local_rank": idx,
        "uid": None,
        "main_gid": None,
        "supplementary_gids": [],
        "resource_slots": {"cpu": "1", "mem": "268435456", "cuda.device": "0"},
        "resource_opts": {"shmem": BinarySize(64 * 1024 * 1024)},
        "environ": {"BACKENDAI_SESSION_ID": str(SESSION_ID), "BACKENDAI_KERNEL_ID": str(kid), "MY_VAR": "hello"},
        "mounts": [
            {
                "name": "data1",
                "vfid": "4d2f…",
                "vfsubpath": ".",
                "host_path": "/vfroot/local/data1",
                "kernel_path": "/home/work/data1",
                "mount_perm": MountPermission.READ_ONLY,
                "usage_mode": VFolderUsageMode.GENERAL,
            }
        ],
        "package_directory": (),
        "idle_timeout": 600,
        "bootstrap_script": None,
        "startup_command": None,
        "internal_data": None,
        "auto_pull": AutoPullBehavior.DIGEST,
        "preopen_ports": [],
        "allocated_host_ports": [],
        "agent_addr": "tcp://127.0.0.1:6011",
        "scaling_group": "default",
        "endpoint_id": None,
    }


def main(outdir):
    ref = ImageRef(name="python", project="stable", tag="3.9-ubuntu20.04", registry="cr.backend.ai", architecture="x86_64", is_local=False)
    configs = [kernel_config(i, k, ref) for i, k in enumerate(KERNEL_IDS)]
    cluster_info = {
        "mode": ClusterMode.SINGLE_NODE,
        "size": 2,
        "replicas": {"main": 1, "sub": 1},
        "network_config": {"mode": "bridge", "network_name": None},
        "ssh_keypair": None,
        "cluster_ssh_port_mapping": None,
    }
    image_refs = {k: ref for k in KERNEL_IDS}
    header, body = callosum_request(
        "create_kernels", 7,
        [str(SESSION_ID), [str(k) for k in KERNEL_IDS], configs, cluster_info, image_refs],
        {"agent_id": "i-test"},
    )
    with open(os.path.join(outdir, "create_kernels.header.bin"), "wb") as f:
        f.write(header)
    with open(os.path.join(outdir, "create_kernels.body.bin"), "wb") as f:
        f.write(body)

    # One value of each extension type, with the plain reading Go must get.
    exts = {
        "uuid": (SESSION_ID, str(SESSION_ID)),
        "decimal": (Decimal("1.5"), "1.5"),
        "decimal_big": (Decimal("12345678901234567890.000001"), "12345678901234567890.000001"),
        "enum_modern": (SessionTypes.BATCH, "ai.backend.common.types.SessionTypes:batch"),
        "enum_py311": (MountPermission.RW_DELETE, "ai.backend.common.types.MountPermission:wd"),
        "enum_reason": (KernelLifecycleEventReason.USER_REQUESTED, "ai.backend.common.events.event_types.kernel.types.KernelLifecycleEventReason:user-requested"),
        "imageref": (ref, "cr.backend.ai/stable/python:3.9-ubuntu20.04"),
        "resourceslot": (ResourceSlot({"cpu": Decimal("2"), "mem": Decimal("1073741824"), "cuda.shares": Decimal("0.5")}), {"cpu": "2", "cuda.shares": "0.5", "mem": "1073741824"}),
        "slotname": (SlotName("cuda.device"), "cuda.device"),
        "binarysize": (BinarySize(64 * 2**20), 64 * 2**20),
    }
    packed = {k: v[0] for k, v in exts.items()}
    with open(os.path.join(outdir, "ext_values.bin"), "wb") as f:
        f.write(packb(packed))
    with open(os.path.join(outdir, "ext_values.json"), "w") as f:
        json.dump({k: v[1] for k, v in exts.items()}, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
