# SPDX-License-Identifier: MIT
# Finds cuDNN (cudnn.h + libcudnn) and defines the imported target medimg::cudnn. Used by the
# build (cmake/medimg-cuda.cmake) and installed beside medimgConfig.cmake for consumers.
# Hints, first match wins: CUDNN_ROOT / $ENV{CUDNN_ROOT}, the CUDA toolkit, system paths.
# Sets medimg_CUDNN_FOUND, medimg_CUDNN_INCLUDE_DIR, medimg_CUDNN_LIBRARY.
if(TARGET medimg::cudnn)
  set(medimg_CUDNN_FOUND TRUE)
  return()
endif()
set(_medimg_cudnn_hints ${CUDNN_ROOT} $ENV{CUDNN_ROOT})
if(CUDAToolkit_LIBRARY_ROOT)
  list(APPEND _medimg_cudnn_hints ${CUDAToolkit_LIBRARY_ROOT})
endif()
if(CUDAToolkit_INCLUDE_DIRS)
  foreach(dir IN LISTS CUDAToolkit_INCLUDE_DIRS)
    get_filename_component(parent ${dir} DIRECTORY)
    list(APPEND _medimg_cudnn_hints ${parent})
  endforeach()
endif()
find_path(medimg_CUDNN_INCLUDE_DIR cudnn.h HINTS ${_medimg_cudnn_hints} PATH_SUFFIXES include)
find_library(medimg_CUDNN_LIBRARY NAMES cudnn HINTS ${_medimg_cudnn_hints} PATH_SUFFIXES lib64 lib lib/x64)
if(medimg_CUDNN_INCLUDE_DIR AND medimg_CUDNN_LIBRARY)
  set(medimg_CUDNN_FOUND TRUE)
  add_library(medimg::cudnn UNKNOWN IMPORTED)
  set_target_properties(medimg::cudnn PROPERTIES
    IMPORTED_LOCATION ${medimg_CUDNN_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${medimg_CUDNN_INCLUDE_DIR})
else()
  set(medimg_CUDNN_FOUND FALSE)
endif()
unset(_medimg_cudnn_hints)
