// fusedbn._simt: the CUDA kernels of csrc/cuda/, compiled by the host compiler against the SIMT
// harness (csrc/simt/) and run on CPU tensors. Declares the ops under `fusedbn_simt` with the
// same schemas as `fusedbn`, registers kernel_ops.h's host code for CPU tensors, and gives
// Python the harness's controls: the block order and the traffic counter.
#define FUSEDBN_SIMT 1

#include <Python.h>
#include <torch/library.h>

#include "cuda/kernel_ops.h"
#include "op_schemas.h"

namespace fusedbn::cuda {
namespace {

struct SimtDevice {
  struct NoGuard {};
  static NoGuard checked_guard(const at::Tensor& input) {
    TORCH_CHECK(input.device().is_cpu(), "fusedbn: the simt backend runs on CPU tensors, got one on ",
                input.device());
    return {};
  }
  static cudaStream_t stream() { return nullptr; }
};

// set_block_order_seed(seed): 0 runs blocks in launch order, any other seed in a shuffled one.
PyObject* set_block_order_seed(PyObject*, PyObject* arg) {
  const unsigned long long seed = PyLong_AsUnsignedLongLong(arg);
  if (PyErr_Occurred()) return nullptr;
  simt::set_block_order_seed(seed);
  Py_RETURN_NONE;
}

PyObject* reset_traffic(PyObject*, PyObject*) {
  simt::reset_traffic();
  Py_RETURN_NONE;
}

// traffic() -> [dict, ...], one per launch since the last reset_traffic(), oldest first:
// bytes_read / bytes_written (every access counted), sector_bytes_read / sector_bytes_written
// (distinct 32-byte sectors x 32: the perfect-cache DRAM model, csrc/simt/simt.h),
// threads_per_block, blocks, and grid / block as (x, y, z).
PyObject* traffic(PyObject*, PyObject*) {
  const auto records = simt::traffic();
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(records.size()));
  if (list == nullptr) return nullptr;
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    using ull = unsigned long long;
    PyObject* record = Py_BuildValue(
        "{s:K,s:K,s:K,s:K,s:K,s:K,s:(III),s:(III)}", "bytes_read", ull(r.bytes_read), "bytes_written",
        ull(r.bytes_written), "sector_bytes_read", ull(r.sectors_read * simt::detail::kSectorBytes),
        "sector_bytes_written", ull(r.sectors_written * simt::detail::kSectorBytes), "threads_per_block",
        ull(r.block.x) * r.block.y * r.block.z, "blocks", ull(r.grid.x) * r.grid.y * r.grid.z, "grid", r.grid.x,
        r.grid.y, r.grid.z, "block", r.block.x, r.block.y, r.block.z);
    if (record == nullptr) {
      Py_DECREF(list);
      return nullptr;
    }
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), record);
  }
  return list;
}

PyMethodDef methods[] = {
    {"set_block_order_seed", set_block_order_seed, METH_O, "Block order of later launches: 0 = launch order."},
    {"reset_traffic", reset_traffic, METH_NOARGS, "Forgets the launches recorded so far."},
    {"traffic", traffic, METH_NOARGS,
     "One dict per launch: bytes_read, bytes_written, sector_bytes_read, sector_bytes_written, "
     "threads_per_block, blocks, grid, block."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace
}  // namespace fusedbn::cuda

PyMODINIT_FUNC PyInit__simt(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_simt", "CUDA kernels run on the CPU by the SIMT harness",
                               -1, fusedbn::cuda::methods};
  return PyModule_Create(&module);
}

TORCH_LIBRARY(fusedbn_simt, m) { fusedbn::detail::define_ops(m); }

TORCH_LIBRARY_IMPL(fusedbn_simt, CPU, m) {
  using fusedbn::cuda::SimtDevice;
  m.impl("batch_norm_act_train", &fusedbn::cuda::batch_norm_act_train<SimtDevice>);
  m.impl("batch_norm_act_forward", &fusedbn::cuda::batch_norm_act_forward<SimtDevice>);
  m.impl("batch_norm_act_backward_train", &fusedbn::cuda::batch_norm_act_backward_train<SimtDevice>);
  m.impl("batch_norm_act_backward_reduce", &fusedbn::cuda::batch_norm_act_backward_reduce<SimtDevice>);
  m.impl("batch_norm_act_backward_eval", &fusedbn::cuda::batch_norm_act_backward_eval<SimtDevice>);
}
