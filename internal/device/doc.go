// Package device holds the compute-plugin contract and the intrinsic
// plugins for CPU cores and memory.
//
// A Plugin reports its devices and slots, builds the alloc maps the
// resource.Allocator manages, and turns a kernel's allocation into a
// container reservation (pure data: cpuset, memory limit, environment) that
// the backend applies. Accelerator plugins (CUDA through NVML, ROCm) will
// implement the same interface.
package device
