// Package accel loads the accelerator plugins a node offers: which ones
// run is decided by [agent] allow-compute-plugins / block-compute-plugins
// (Python module paths such as ai.backend.accelerator.cuda_open, or our
// short names), each plugin's etcd settings under
// config/plugins/accelerator/<name>/, and what the host has (NVML, KFD,
// TPU device nodes). A plugin whose hardware is absent is skipped with a
// log line unless it was asked for by name, in which case it is loaded
// disabled (0 devices) and its hwinfo says why.
package accel
