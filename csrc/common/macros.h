// Portability macros shared by the CPU, CUDA and SIMT builds.
#pragma once

// Under the SIMT harness, device code is ordinary host code: the qualifiers are empty.
#if defined(__CUDACC__)
#define FUSEDBN_HOST_DEVICE __host__ __device__
#else
#define FUSEDBN_HOST_DEVICE
#endif

#if defined(__CUDACC__)
#define FUSEDBN_INLINE __forceinline__
#else
#define FUSEDBN_INLINE inline
#endif
