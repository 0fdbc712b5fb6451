// fusedbn._C: declares the fusedbn ops and registers their CPU kernels (the CUDA kernels
// register themselves from csrc/cuda/ when built).
#include <Python.h>
#include <torch/library.h>

#include "cpu/cpu_ops.h"
#include "op_schemas.h"

// Importing fusedbn._C loads this library, which registers the ops with the dispatcher;
// the module itself holds nothing.
PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}

TORCH_LIBRARY(fusedbn, m) { fusedbn::detail::define_ops(m); }

TORCH_LIBRARY_IMPL(fusedbn, CPU, m) {
  m.impl("batch_norm_act_train", &fusedbn::cpu::batch_norm_act_train);
  m.impl("batch_norm_act_forward", &fusedbn::cpu::batch_norm_act_forward);
  m.impl("batch_norm_act_backward_train", &fusedbn::cpu::batch_norm_act_backward_train);
  m.impl("batch_norm_act_backward_reduce", &fusedbn::cpu::batch_norm_act_backward_reduce);
  m.impl("batch_norm_act_backward_eval", &fusedbn::cpu::batch_norm_act_backward_eval);
}
