// Package mock is the mock accelerator: devices described in a TOML file
// (Backend.AI's mock-accelerator.toml, same keys) and tuned by the etcd
// keys under config/plugins/accelerator/mock/, so the whole accelerator
// path (slots, alloc maps with discrete, fractional and MIG-style unique
// slots, container environment, resource.txt lines, attached devices,
// hwinfo, statistics) runs and is tested on machines without a GPU.
//
// It gives containers no device nodes: a CUDA program inside sees no GPU.
// Statistics are random as upstream's, or fixed (stats = "fixed") so tests
// can assert on them.
package mock
