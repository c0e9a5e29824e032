# SPDX-License-Identifier: MIT
# The CUDA backend's build side: decides whether the .cu tests, examples and benchmarks exist and
# defines the INTERFACE target medimg::cuda (= medimg::medimg + cudart + cuBLAS + cuDNN + the flags
# a .cu file including medimg.hpp needs). The headers need no build step: a TU compiled by nvcc
# gets the CUDA backend from config.hpp's MEDIMG_HAS_CUDA.
#   MEDIMG_WITH_CUDA        ON by default when nvcc, the toolkit (cudart, cuBLAS) and cuDNN are found
#   MEDIMG_CUDA_SYNC_CHECK  OFF; ON adds cudaDeviceSynchronize() to every CUDA check (debugging)
# Architectures: sm_90 machine code plus compute_90 PTX (H100/H200; later GPUs JIT the PTX),
# unless CMAKE_CUDA_ARCHITECTURES is given. A CPU-only machine configures with nothing to do here.
include(CheckLanguage)
check_language(CUDA)
set(_medimg_cuda_possible OFF)
if(CMAKE_CUDA_COMPILER)
  find_package(CUDAToolkit QUIET)
  if(CUDAToolkit_FOUND)
    include(${CMAKE_CURRENT_LIST_DIR}/medimg-cudnn.cmake)
    if(medimg_CUDNN_FOUND AND TARGET CUDA::cublas)
      set(_medimg_cuda_possible ON)
    endif()
  endif()
endif()
option(MEDIMG_WITH_CUDA "Build the CUDA backend's tests, examples and benchmarks" ${_medimg_cuda_possible})
option(MEDIMG_CUDA_SYNC_CHECK "Synchronise after every CUDA call so errors surface where they happen (slow)" OFF)

if(MEDIMG_WITH_CUDA AND NOT _medimg_cuda_possible)
  message(WARNING "medimg: MEDIMG_WITH_CUDA is ON but nvcc (${CMAKE_CUDA_COMPILER}), the CUDA toolkit "
                  "(${CUDAToolkit_FOUND}) or cuDNN (${medimg_CUDNN_FOUND}) was not found; building without CUDA")
  set(MEDIMG_WITH_CUDA OFF CACHE BOOL "Build the CUDA backend's tests, examples and benchmarks" FORCE)
endif()

if(NOT MEDIMG_WITH_CUDA)
  message(STATUS "medimg: CUDA backend off (CPU-only build)")
  return()
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "90-real;90-virtual" CACHE STRING "CUDA architectures (sm_90 code + compute_90 PTX)")
endif()
# One CUDA runtime per process: the shared libcudart that cuBLAS/cuDNN users expect (carried to
# the GPU machine with the binaries; see docs/gpu.md).
if(NOT DEFINED CMAKE_CUDA_RUNTIME_LIBRARY)
  set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
if(MEDIMG_CCACHE)
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${MEDIMG_CCACHE})
endif()
message(STATUS "medimg: CUDA backend on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}, "
               "cuDNN ${medimg_CUDNN_LIBRARY})")

add_library(medimg_cuda INTERFACE)
add_library(medimg::cuda ALIAS medimg_cuda)
set_target_properties(medimg_cuda PROPERTIES EXPORT_NAME cuda)
target_link_libraries(medimg_cuda INTERFACE medimg::medimg CUDA::cudart CUDA::cublas medimg::cudnn)
target_compile_features(medimg_cuda INTERFACE cuda_std_17)
target_compile_options(medimg_cuda INTERFACE
  # OpenMP::OpenMP_CXX adds -fopenmp to C++ sources only; the host half of a .cu needs it too,
  # or every CPU kernel in a CUDA program would run on one thread.
  "$<$<COMPILE_LANGUAGE:CUDA>:SHELL:-Xcompiler=-fopenmp>"
  # Warnings nvcc's front end raises in host-only library code: #pragma GCC unroll (1675) and
  # lambdas capturing structured bindings (3357, accepted by every host compiler we support).
  "$<$<COMPILE_LANGUAGE:CUDA>:SHELL:-diag-suppress=1675,3357>")
# Eigen is host-only here; without this it annotates itself __host__ __device__ under nvcc.
target_compile_definitions(medimg_cuda INTERFACE "$<$<COMPILE_LANGUAGE:CUDA>:EIGEN_NO_CUDA>")
if(MEDIMG_CUDA_SYNC_CHECK)
  target_compile_definitions(medimg_cuda INTERFACE MEDIMG_CUDA_SYNC_CHECK)
endif()

# The project's own warning flags, spelled for nvcc (medimg_project_flags is for g++).
add_library(medimg_cuda_project_flags INTERFACE)
target_compile_options(medimg_cuda_project_flags INTERFACE
  "$<$<COMPILE_LANGUAGE:CUDA>:SHELL:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>"
  "$<$<COMPILE_LANGUAGE:CXX>:-Wall;-Wextra;-Wno-unused-parameter>")
if(MEDIMG_NATIVE)
  target_compile_options(medimg_cuda_project_flags INTERFACE
    "$<$<COMPILE_LANGUAGE:CUDA>:SHELL:-Xcompiler=-march=native>" "$<$<COMPILE_LANGUAGE:CXX>:-march=native>")
endif()

# medimg_cuda_program(name src...): an executable of .cu (and .cpp) sources on the CUDA backend.
function(medimg_cuda_program name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE medimg::cuda medimg_cuda_project_flags medimg_formats)
  set_target_properties(${name} PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
endfunction()
