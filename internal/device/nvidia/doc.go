// Package nvidia is the CUDA compute plugin: NVIDIA GPUs found through
// NVML (libnvidia-ml.so.1, loaded at run time through go-nvml, so one
// binary runs with and without a driver), offered as cuda.device (whole
// GPUs), cuda.device:<profile>-mig (MIG instances, unique slots; the agent
// never changes MIG mode) or cuda.shares (time-sliced fractions of a GPU,
// without isolation), and given to containers the way the host supports:
// Docker's nvidia device driver, the legacy nvidia runtime, or CDI names.
//
// NVML sits behind the small Lib/Dev interfaces so that everything above
// it is tested with a fake on machines without a GPU; the BAI_GPU_HOST=1
// tests run the real library against nvidia-smi on a GPU machine.
package nvidia
