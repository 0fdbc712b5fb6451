// Portability macros shared by the CPU, CUDA and SIMT builds.
#pragma once

#if defined(__CUDACC__) || defined(FUSEDBN_SIMT)
#define FUSEDBN_HOST_DEVICE __host__ __device__
#else
#define FUSEDBN_HOST_DEVICE
#endif

#if defined(__CUDACC__)
#define FUSEDBN_INLINE __forceinline__
#else
#define FUSEDBN_INLINE inline
#endif
