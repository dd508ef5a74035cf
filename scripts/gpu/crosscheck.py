"""Independent figures for scripts/gpu-check.sh: pynvml and torch views of
GPU 0 (uuid, name, NVML total memory, cudart total memory, SM count)."""
import json

out = {}
try:
    import pynvml

    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    uuid = pynvml.nvmlDeviceGetUUID(h)
    name = pynvml.nvmlDeviceGetName(h)
    out["pynvml"] = {
        "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
        "name": name.decode() if isinstance(name, bytes) else name,
        "total": pynvml.nvmlDeviceGetMemoryInfo(h).total,
    }
except Exception as e:  # record, do not fail: the Go test decides
    out["pynvml_error"] = repr(e)
try:
    import torch

    p = torch.cuda.get_device_properties(0)
    out["torch"] = {"name": p.name, "total_memory": p.total_memory, "sms": p.multi_processor_count,
                    "capability": [p.major, p.minor]}
except Exception as e:
    out["torch_error"] = repr(e)
print(json.dumps(out))
