// How the kernels move tensor data: V values at a time converted to and from acc_t, and the
// walk over a span of a plane (scalar head up to a 16-byte boundary, 128-bit vectors, scalar
// tail). Every global access goes through device::load/store so the SIMT harness counts it.
#pragma once

// First: under FUSEDBN_SIMT it defines the CUDA qualifiers the common headers use.
#include "portability.h"

#include <cstdint>

#include "kernel_args.cuh"

namespace fusedbn::cuda {

// out[j] = p[j] as acc_t for j < count; lanes from count on are 0. One 128-bit load when
// `vector` (the caller guarantees count == V and p 16-byte aligned), scalar loads otherwise.
template <int V, typename acc_t, typename scalar_t>
__device__ FUSEDBN_INLINE void load_lanes(const scalar_t* p, int count, bool vector, acc_t (&out)[V]) {
  if (vector) {
    const device::Vector<scalar_t, V> v = device::load_vector<scalar_t, V>(p);
    for (int j = 0; j < V; ++j) out[j] = static_cast<acc_t>(v.value[j]);
    return;
  }
  for (int j = 0; j < V; ++j) out[j] = j < count ? static_cast<acc_t>(device::load(p + j)) : acc_t(0);
}

// p[j] = in[j] as scalar_t for j < count; one 128-bit store when `vector`, as for load_lanes.
template <int V, typename acc_t, typename scalar_t>
__device__ FUSEDBN_INLINE void store_lanes(scalar_t* p, int count, bool vector, const acc_t (&in)[V]) {
  if (vector) {
    device::Vector<scalar_t, V> v;
    for (int j = 0; j < V; ++j) v.value[j] = static_cast<scalar_t>(in[j]);
    device::store_vector<scalar_t, V>(p, v);
    return;
  }
  for (int j = 0; j < V; ++j) {  // a constant trip count keeps `in` in registers
    if (j < count) device::store(p + j, static_cast<scalar_t>(in[j]));
  }
}

// Visits the values [begin, end) of a plane starting at `plane`, shared among `lanes` threads
// of which this is `lane`: on_scalar(i) for each value before the first 16-byte boundary and
// after the last whole vector, on_vector(i) for each aligned vector of V values at i. With
// `vector` false every value is a scalar (pointers that do not share an alignment). The
// split depends on the address only, so the same data at the same address always reduces in
// the same order.
template <int V, typename scalar_t, typename OnScalar, typename OnVector>
__device__ FUSEDBN_INLINE void for_each_in_span(const scalar_t* plane, int64_t begin, int64_t end, int lane,
                                                int lanes, bool vector, OnScalar&& on_scalar,
                                                OnVector&& on_vector) {
  const int64_t length = end - begin;
  if (length <= 0) return;
  int64_t head = length;
  if (vector) {
    const auto misalignment = int64_t(reinterpret_cast<std::uintptr_t>(plane + begin) / sizeof(scalar_t) % V);
    head = min_of<int64_t>(length, (V - misalignment) % V);
  }
  const int64_t body = begin + head, vectors = (length - head) / V, tail = body + vectors * V;
  for (int64_t i = begin + lane; i < body; i += lanes) on_scalar(i);
  for (int64_t k = lane; k < vectors; k += lanes) on_vector(body + k * V);
  for (int64_t i = tail + lane; i < end; i += lanes) on_scalar(i);
}

}  // namespace fusedbn::cuda
