# SPDX-License-Identifier: MIT
# nifticlib (Debian: libnifti2-dev) as the imported target medimg::nifticlib: nifti2_io.h and
# libnifti2 + libznz (zlib for .nii.gz). Found by path, not with find_package(NIFTI): the
# NIFTIConfig.cmake Debian 12 ships names /usr/lib/libznz.so.3.0.0, which does not exist.
# Sets medimg_NIFTI_FOUND. Used by the build (cmake/medimg-formats.cmake) and, installed beside
# medimgConfig.cmake, by consumers of medimg::nifti.
if(TARGET medimg::nifticlib)
  set(medimg_NIFTI_FOUND TRUE)
  return()
endif()
find_path(medimg_NIFTI_INCLUDE_DIR nifti2_io.h PATH_SUFFIXES nifti)
find_library(medimg_NIFTI_LIBRARY nifti2)
find_library(medimg_ZNZ_LIBRARY znz)
find_package(ZLIB QUIET)
set(medimg_NIFTI_FOUND FALSE)
if(medimg_NIFTI_INCLUDE_DIR AND medimg_NIFTI_LIBRARY AND medimg_ZNZ_LIBRARY AND ZLIB_FOUND)
  add_library(medimg::nifticlib INTERFACE IMPORTED)
  set_target_properties(medimg::nifticlib PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${medimg_NIFTI_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "${medimg_NIFTI_LIBRARY};${medimg_ZNZ_LIBRARY};ZLIB::ZLIB;m")
  set(medimg_NIFTI_FOUND TRUE)
endif()
