// Package resource holds Backend.AI's resource model: slot names and types,
// exact decimal amounts (never float), per-device allocation maps with the
// FILL and EVENLY strategies and NUMA affinity, the node-wide Allocator
// that allocates all-or-nothing with rollback, and the resource.txt format
// (KernelResourceSpec) that persists an allocation next to the kernel.
//
// Invariants:
//   - an allocation either succeeds for every slot or changes nothing;
//   - the sum of allocations on a device never exceeds its capacity, except
//     when restoring kernels that already run (recovery must adopt what
//     exists, and reports the overcommit instead of failing);
//   - amounts are decimal.Decimal end to end; bytes are whole numbers.
package resource
