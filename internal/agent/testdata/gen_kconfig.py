#!/usr/bin/python3
"""Writes kconfig.dat and cluster.json as the Python agent does
(docker/agent.py prepare_container: pickle.dumps(kernel_config) and
json.dumps(cluster_info)) into DIR, for the adoption test.

The Backend.AI classes the pickle refers to are restated here under their
real module path (ai.backend.common.types), with the fields the agent
pickles, as gen_events.py restates the event models: the bytes are what
pickle writes for those classes; no Backend.AI code is copied or needed.

    [GEN_ENUM_BY_NAME=1] gen_kconfig.py DIR KERNEL_ID SESSION_ID
"""
import enum
import json
import os
import pickle
import sys
import types
from decimal import Decimal

for name in ("ai", "ai.backend", "ai.backend.common", "ai.backend.common.types"):
    sys.modules.setdefault(name, types.ModuleType(name))
T = sys.modules["ai.backend.common.types"]


class SessionTypes(str, enum.Enum):
    INTERACTIVE = "interactive"
    BATCH = "batch"


class ClusterMode(str, enum.Enum):
    SINGLE_NODE = "single-node"
    MULTI_NODE = "multi-node"


class AutoPullBehavior(str, enum.Enum):
    DIGEST = "digest"
    TAG = "tag"
    NONE = "none"


class BinarySize(int):
    pass


for cls in (SessionTypes, ClusterMode, AutoPullBehavior, BinarySize):
    cls.__module__ = "ai.backend.common.types"
    setattr(T, cls.__name__, cls)

# Early Python 3.11 releases (Debian 12's 3.11.2; not 3.11.7) pickle an
# enum member by name, getattr(SessionTypes, "INTERACTIVE"); later releases by value,
# SessionTypes("interactive"). GEN_ENUM_BY_NAME=1 writes the former, =0
# the latter, with any interpreter; unset, the interpreter's own.
def _by_name(self, proto):
    return getattr, (self.__class__, self._name_)


def _by_value(self, proto):
    return self.__class__, (self._value_,)


_form = {"1": _by_name, "0": _by_value}.get(os.environ.get("GEN_ENUM_BY_NAME", ""))
if _form is not None:
    for cls in (SessionTypes, ClusterMode, AutoPullBehavior):
        cls.__reduce_ex__ = _form


def main():
    out, kid, sid = sys.argv[1:4]
    cfg = {
        "image": {
            "canonical": "cr.backend.ai/stable/python:3.11-ubuntu22.04",
            "project": "stable",
            "architecture": "x86_64",
            "digest": "sha256:" + "a" * 64,
            "repo_digest": None,
            "registry": {"name": "cr.backend.ai", "url": "https://cr.backend.ai", "username": None, "password": None},
            "labels": {"ai.backend.kernelspec": "1", "ai.backend.runtime-type": "python"},
            "is_local": False,
            "auto_pull": AutoPullBehavior.DIGEST,
        },
        "kernel_id": kid,
        "session_id": sid,
        "owner_user_id": "f38dea23-50fa-42a0-b5ae-338f5f4693f4",
        "owner_project_id": "2de2b969-1d04-48a6-af16-0bc8adb3c831",
        "network_id": sid,
        "auto_pull": AutoPullBehavior.DIGEST,
        "session_type": SessionTypes.INTERACTIVE,
        "cluster_mode": ClusterMode.SINGLE_NODE,
        "cluster_role": "main",
        "cluster_idx": 1,
        "cluster_hostname": "main1",
        "local_rank": 0,
        "uid": 1100,
        "main_gid": 1100,
        "supplementary_gids": [1200],
        "resource_slots": {"cpu": Decimal("1"), "mem": Decimal("268435456")},
        "resource_opts": {"shmem": BinarySize(67108864)},
        "environ": {"BACKENDAI_SESSION_ID": sid, "HELLO": "world"},
        "mounts": [],
        "package_directory": (),
        "idle_timeout": 600,
        "bootstrap_script": "echo boot",
        "startup_command": None,
        "internal_data": {"block_service_ports": True, "sudo_session_enabled": False},
        "preopen_ports": [9000],
        "allocated_host_ports": [],
        "agent_addr": "tcp://127.0.0.1:6011",
        "scaling_group": "default",
        "endpoint_id": None,
    }
    with open(os.path.join(out, "kconfig.dat"), "wb") as f:
        f.write(pickle.dumps(cfg))
    cluster = {
        "mode": "single-node", "size": 1, "replicas": {"main": 1},
        "network_config": {"mode": "bridge", "network_name": None},
        "ssh_keypair": None, "cluster_ssh_port_mapping": None,
    }
    with open(os.path.join(out, "cluster.json"), "w") as f:
        json.dump(cluster, f)


if __name__ == "__main__":
    main()
