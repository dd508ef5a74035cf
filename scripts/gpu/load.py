"""GPU load for scripts/gpu-check.sh: allocate N GiB on GPU 0 and run bf16
matmuls for S seconds. Prints its PID first."""
import os
import sys
import time

gib = int(sys.argv[1]) if len(sys.argv) > 1 else 8
secs = float(sys.argv[2]) if len(sys.argv) > 2 else 10
print(os.getpid(), flush=True)
import torch  # noqa: E402

x = torch.empty(gib << 30, dtype=torch.uint8, device="cuda:0")
a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda:0")
b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda:0")
end = time.time() + secs
while time.time() < end:
    c = a @ b
    torch.cuda.synchronize()
del x, c
