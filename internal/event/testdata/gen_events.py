#!/usr/bin/python3
"""Golden payloads of every event bai-agent publishes, made by Python.

The classes below restate Backend.AI's event models (lablup/backend.ai
c0032c472e, src/ai/backend/common/events/event_types/*) as dataclasses:
the same class hierarchy, field names, field order and defaults. Each
sample event is serialised the way AbstractEvent.to_message does
(model_dump_json: compact JSON of the fields; UUIDs and enums as their
string values), into events.json: {"<case>": {"name": ..., "payload": ...}}.

internal/event/golden_test.go builds the same events with the Go types and
requires the decoded payloads to be equal. Regenerate with:

    /usr/bin/python3 internal/event/testdata/gen_events.py internal/event/testdata
"""
import dataclasses
import enum
import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from typing import Optional

KID = uuid.UUID("6b1f0d2e-1c7a-4a53-9d7e-2f5b8c3a9e10")
SID = uuid.UUID("0e7c8a51-4f2b-4c1d-8e3a-6d9b2a7f1c04")
TID = uuid.UUID("3fa85f64-5717-4562-b3fc-2c963f66afa6")
AGENT = "i-node01"


class KernelLifecycleEventReason(str, enum.Enum):
    FAILED_TO_CREATE = "failed-to-create"
    USER_REQUESTED = "user-requested"
    TASK_FINISHED = "task-finished"
    UNKNOWN = "unknown"


class LogLevel(str, enum.Enum):
    ERROR = "ERROR"


# ai.backend.common.docker.ImageRef (a dataclass; its six fields)
@dataclass
class ImageRef:
    name: str
    project: Optional[str]
    tag: str
    registry: str
    architecture: str
    is_local: bool


# --- agent/anycast.py
@dataclass
class AgentStartedEvent:
    reason: str
    NAME = "agent_started"


@dataclass
class AgentTerminatedEvent:
    reason: str
    NAME = "agent_terminated"


@dataclass
class AgentErrorEvent:
    message: str
    traceback: Optional[str] = None
    user: Optional[str] = None
    context_env: dict = field(default_factory=dict)
    severity: LogLevel = LogLevel.ERROR
    NAME = "agent_error"


@dataclass
class DoAgentResourceCheckEvent:
    agent_id: str
    NAME = "do_agent_resource_check"


# common/data/image/types.py ScannedImage; agent/anycast.py
# AgentInstalledImagesRemoveEvent (what the periodic image scan publishes
# for images that went away)
@dataclass
class ScannedImage:
    canonical: str
    digest: str


@dataclass
class AgentInstalledImagesRemoveEvent:
    scanned_images: dict
    NAME = "agent_installed_images_remove"


# common/data/agent/types.py AgentInfo and the heartbeat event
@dataclass
class ResourceSlotEntry:
    resource_type: str
    quantity: str


@dataclass
class AgentInfo:
    ip: str
    region: Optional[str]
    scaling_group: Optional[str]
    addr: str
    public_key: Optional[str]
    public_host: str
    available_resource_slots: list
    slot_key_and_units: dict
    version: str
    compute_plugins: dict
    architecture: str
    auto_terminate_abusing_kernel: bool


@dataclass
class AgentHeartbeatEvent:
    agent_info: AgentInfo
    NAME = "agent_heartbeat"


# --- kernel/anycast.py (the broadcast twins have the same fields)
@dataclass
class KernelLifecycleEvent:
    kernel_id: uuid.UUID
    session_id: uuid.UUID
    reason: str = ""


@dataclass
class KernelPreparingAnycastEvent(KernelLifecycleEvent):
    NAME = "kernel_preparing"


@dataclass
class KernelPullingAnycastEvent(KernelLifecycleEvent):
    NAME = "kernel_pulling"


@dataclass
class KernelCreatingAnycastEvent(KernelLifecycleEvent):
    NAME = "kernel_creating"


# kernel/types.py
@dataclass
class UsedDevice:
    model_name: Optional[str]
    used: dict
    processing_units: Optional[int]
    memory_size: Optional[int]


@dataclass
class UsedDevices:
    units: dict


@dataclass
class ServicePortInfo:
    name: str
    protocol: str
    container_ports: list
    host_ports: list
    is_inference: bool


@dataclass
class KernelCreationInfo:
    container_id: str
    kernel_host: str
    repl_in_port: int
    repl_out_port: int
    service_ports: list
    used_devices: UsedDevices


@dataclass
class KernelStartedAnycastEvent(KernelLifecycleEvent):
    creation_info: KernelCreationInfo = None
    NAME = "kernel_started"


@dataclass
class KernelTerminatedAnycastEvent:
    kernel_id: uuid.UUID
    session_id: uuid.UUID
    reason: KernelLifecycleEventReason = KernelLifecycleEventReason.UNKNOWN
    exit_code: int = -1
    NAME = "kernel_terminated"


@dataclass
class DoSyncKernelLogsEvent:
    kernel_id: uuid.UUID
    container_id: str
    NAME = "do_sync_kernel_logs"


# --- session/anycast.py
@dataclass
class SessionResultEvent:
    session_id: uuid.UUID
    reason: KernelLifecycleEventReason = KernelLifecycleEventReason.UNKNOWN
    exit_code: int = -1


@dataclass
class SessionSuccessAnycastEvent(SessionResultEvent):
    NAME = "session_success"


@dataclass
class SessionFailureAnycastEvent(SessionResultEvent):
    NAME = "session_failure"


@dataclass
class BaseSessionExecutionEvent:
    session_id: uuid.UUID


@dataclass
class ExecutionStartedAnycastEvent(BaseSessionExecutionEvent):
    NAME = "execution_started"


@dataclass
class ExecutionFinishedAnycastEvent(BaseSessionExecutionEvent):
    NAME = "execution_finished"


@dataclass
class ExecutionTimeoutAnycastEvent(BaseSessionExecutionEvent):
    NAME = "execution_timeout"


@dataclass
class ExecutionCancelledAnycastEvent(BaseSessionExecutionEvent):
    NAME = "execution_cancelled"


# --- image/anycast.py
@dataclass
class ImagePullStartedEvent:
    image: str
    agent_id: str
    timestamp: float
    image_ref: Optional[ImageRef] = None
    NAME = "image_pull_started"


@dataclass
class ImagePullFinishedEvent:
    image: str
    agent_id: str
    timestamp: float
    msg: Optional[str] = None
    image_ref: Optional[ImageRef] = None
    NAME = "image_pull_finished"


@dataclass
class ImagePullFailedEvent:
    image: str
    agent_id: str
    msg: str
    image_ref: Optional[ImageRef] = None
    NAME = "image_pull_failed"


# --- bgtask/broadcast.py
@dataclass
class BgtaskUpdatedEvent:
    task_id: uuid.UUID
    current_progress: float
    total_progress: float
    message: Optional[str] = None
    NAME = "bgtask_updated"


@dataclass
class BaseBgtaskDoneEvent:
    task_id: uuid.UUID
    message: Optional[str] = None


@dataclass
class BgtaskDoneEvent(BaseBgtaskDoneEvent):
    NAME = "bgtask_done"


@dataclass
class BgtaskFailedEvent(BaseBgtaskDoneEvent):
    NAME = "bgtask_failed"


@dataclass
class BgtaskCancelledEvent(BaseBgtaskDoneEvent):
    NAME = "bgtask_cancelled"


# --- volume/broadcast.py
@dataclass
class BaseAgentVolumeMountEvent:
    node_id: str
    node_type: str
    mount_path: str
    quota_scope_id: str
    err_msg: Optional[str] = None


@dataclass
class VolumeMounted(BaseAgentVolumeMountEvent):
    NAME = "volume_mounted"


@dataclass
class VolumeUnmounted(BaseAgentVolumeMountEvent):
    NAME = "volume_unmounted"


def plain(v):
    """What pydantic's JSON mode makes of a value."""
    if dataclasses.is_dataclass(v):
        return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


REF = ImageRef(name="python", project="stable", tag="3.11-ubuntu22.04", registry="cr.backend.ai", architecture="x86_64", is_local=False)
LOCAL_REF = ImageRef(name="python", project="myproj", tag="3.11", registry="local", architecture="x86_64", is_local=True)
CREATION = KernelCreationInfo(
    container_id="c0ffee" * 10 + "abcd",
    kernel_host="10.0.0.5",
    repl_in_port=30000,
    repl_out_port=30001,
    service_ports=[
        ServicePortInfo("sshd", "tcp", [2200], [30002], False),
        ServicePortInfo("ttyd", "http", [7681], [30003], False),
    ],
    # cpu and mem are intrinsic: no model info, so null figures
    # (UsedDevice.from_model_info(used, None)).
    used_devices=UsedDevices(units={
        "cpu": {"0": UsedDevice(None, {"cpu": "1"}, None, None), "1": UsedDevice(None, {"cpu": "1"}, None, None)},
        "mem": {"root": UsedDevice(None, {"mem": "1073741824"}, None, None)},
    }),
)

CASES = {
    "agent_started": AgentStartedEvent(reason="self-started"),
    "agent_terminated": AgentTerminatedEvent(reason="shutdown"),
    "agent_error": AgentErrorEvent(message="ValueError: bad argument", traceback='File "x", line 1'),
    "agent_error_minimal": AgentErrorEvent(message="RuntimeError: boom"),
    "do_agent_resource_check": DoAgentResourceCheckEvent(agent_id=AGENT),
    "agent_installed_images_remove": AgentInstalledImagesRemoveEvent(scanned_images={
        "cr.backend.ai/stable/python:3.11-ubuntu22.04": ScannedImage("cr.backend.ai/stable/python:3.11-ubuntu22.04", "sha256:" + "ab" * 32),
    }),
    "agent_heartbeat": AgentHeartbeatEvent(AgentInfo(
        ip="10.0.0.5", region="local", scaling_group=None, addr="tcp://10.0.0.5:6011", public_key=None,
        public_host="10.0.0.5",
        available_resource_slots=[ResourceSlotEntry("cpu", "4"), ResourceSlotEntry("mem", "8589934592")],
        slot_key_and_units={"cpu": "count", "mem": "bytes"}, version="26.8.0",
        compute_plugins={"cpu": {"version": "1.0", "agent_version": "26.8.0", "machine": "x86_64", "os_type": "linux"}, "mem": {"version": "1.0"}},
        architecture="x86_64", auto_terminate_abusing_kernel=False)),
    "kernel_preparing": KernelPreparingAnycastEvent(KID, SID),
    "kernel_pulling": KernelPullingAnycastEvent(KID, SID, reason="cr.backend.ai/stable/python:3.11-ubuntu22.04"),
    "kernel_creating": KernelCreatingAnycastEvent(KID, SID),
    "kernel_started": KernelStartedAnycastEvent(KID, SID, creation_info=CREATION),
    "kernel_terminated": KernelTerminatedAnycastEvent(KID, SID, reason=KernelLifecycleEventReason.FAILED_TO_CREATE, exit_code=-1),
    "kernel_terminated_user": KernelTerminatedAnycastEvent(KID, SID, reason=KernelLifecycleEventReason.USER_REQUESTED, exit_code=137),
    "do_sync_kernel_logs": DoSyncKernelLogsEvent(KID, "c0ffee"),
    "session_success": SessionSuccessAnycastEvent(SID, reason=KernelLifecycleEventReason.TASK_FINISHED, exit_code=0),
    "session_failure": SessionFailureAnycastEvent(SID, reason=KernelLifecycleEventReason.TASK_FINISHED, exit_code=3),
    "execution_started": ExecutionStartedAnycastEvent(SID),
    "execution_finished": ExecutionFinishedAnycastEvent(SID),
    "execution_timeout": ExecutionTimeoutAnycastEvent(SID),
    "execution_cancelled": ExecutionCancelledAnycastEvent(SID),
    "image_pull_started": ImagePullStartedEvent(image="cr.backend.ai/stable/python:3.11-ubuntu22.04", agent_id=AGENT, timestamp=1724000000.5, image_ref=REF),
    "image_pull_finished": ImagePullFinishedEvent(image="cr.backend.ai/stable/python:3.11-ubuntu22.04", agent_id=AGENT, timestamp=1724000001.25, image_ref=REF),
    "image_pull_finished_exists": ImagePullFinishedEvent(image="local/myproj/python:3.11", agent_id=AGENT, timestamp=1724000001.25, msg="Image already exists", image_ref=LOCAL_REF),
    "image_pull_failed": ImagePullFailedEvent(image="cr.backend.ai/stable/python:3.11-ubuntu22.04", agent_id=AGENT, msg="timeout (s:7200)", image_ref=REF),
    "bgtask_updated_started": BgtaskUpdatedEvent(TID, 0, 0, message="Task started"),
    "bgtask_updated": BgtaskUpdatedEvent(TID, 512.0, 1024.0, message="pulling"),
    "bgtask_done": BgtaskDoneEvent(TID, message="pulled"),
    "bgtask_failed": BgtaskFailedEvent(TID, message="RuntimeError('boom')"),
    "bgtask_cancelled": BgtaskCancelledEvent(TID, message="Task cancelled"),
    "volume_mounted": VolumeMounted(node_id=AGENT, node_type="agent", mount_path="/mnt/vol1", quota_scope_id="user:1"),
    "volume_unmounted_error": VolumeUnmounted(node_id=AGENT, node_type="agent", mount_path="/mnt/vol1", quota_scope_id="user:1", err_msg="umount: busy"),
}


def main(out):
    doc = {}
    for case, ev in CASES.items():
        doc[case] = {"name": ev.NAME, "payload": json.dumps(plain(ev), separators=(",", ":"))}
    with open(os.path.join(out, "events.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))
