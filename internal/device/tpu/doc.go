// Package tpu is the TPU compute plugin for Cloud TPU VMs: chips are the
// /dev/accel* nodes (or the numbered VFIO groups under /dev/vfio), offered
// as tpu.device, passed into the container as device nodes, with
// TPU_VISIBLE_CHIPS and the bounds variables libtpu reads for slices of
// one or two chips. Backend.AI's own TPU plugin targets the retired "TPU
// Node" architecture through gcloud and cannot be instantiated; this one
// keeps its slot name and resource.txt key.
package tpu
