// Package rocm is the ROCm compute plugin: AMD GPUs found from sysfs alone
// (the KFD topology under /sys/class/kfd and the amdgpu DRM nodes), with no
// ROCm user space on the host. Partitions and dies that report one serial
// number are one rocm.device, as in Backend.AI's ROCm plugin. A kernel gets
// /dev/kfd and its render and card nodes, the numeric groups that own them
// (so images without video or render groups work), and
// ROCR_VISIBLE_DEVICES/HIP_VISIBLE_DEVICES.
package rocm
