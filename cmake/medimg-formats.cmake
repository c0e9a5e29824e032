# SPDX-License-Identifier: MIT
# The medical formats, optional components of the package (docs/formats.md):
#   medimg::dicom  = medimg::medimg + GDCM (Debian: libgdcm-dev) + MEDIMG_WITH_DICOM=1
#   medimg::nifti  = medimg::medimg + nifticlib (Debian: libnifti2-dev) + MEDIMG_WITH_NIFTI=1
# A program linked with one of them reads that format everywhere images are read (datasets,
# medimg-predict, medimg-compare); without it such a file is refused with a line saying so. The
# header-only core builds without either. The project's own programs and tests link both when
# they are found (scripts/install-deps.sh installs them).
#   MEDIMG_WITH_DICOM / MEDIMG_WITH_NIFTI  ON by default when the library is found
find_package(GDCM CONFIG QUIET)
include(${CMAKE_CURRENT_LIST_DIR}/medimg-nifticlib.cmake)
set(_medimg_gdcm_found OFF)
if(GDCM_FOUND AND TARGET gdcmMSFF)
  set(_medimg_gdcm_found ON)
endif()
option(MEDIMG_WITH_DICOM "Build medimg::dicom (DICOM through GDCM)" ${_medimg_gdcm_found})
option(MEDIMG_WITH_NIFTI "Build medimg::nifti (NIfTI through nifticlib)" ${medimg_NIFTI_FOUND})
if(MEDIMG_WITH_DICOM AND NOT _medimg_gdcm_found)
  message(WARNING "medimg: MEDIMG_WITH_DICOM is ON but GDCM was not found (Debian: libgdcm-dev); building without DICOM")
  set(MEDIMG_WITH_DICOM OFF CACHE BOOL "Build medimg::dicom (DICOM through GDCM)" FORCE)
endif()
if(MEDIMG_WITH_NIFTI AND NOT medimg_NIFTI_FOUND)
  message(WARNING "medimg: MEDIMG_WITH_NIFTI is ON but nifticlib was not found (Debian: libnifti2-dev); building without NIfTI")
  set(MEDIMG_WITH_NIFTI OFF CACHE BOOL "Build medimg::nifti (NIfTI through nifticlib)" FORCE)
endif()

# medimg_formats: what the project's own programs and tests link, whichever formats are on.
add_library(medimg_formats INTERFACE)
if(MEDIMG_WITH_DICOM)
  add_library(medimg_dicom INTERFACE)
  add_library(medimg::dicom ALIAS medimg_dicom)
  set_target_properties(medimg_dicom PROPERTIES EXPORT_NAME dicom)
  target_link_libraries(medimg_dicom INTERFACE medimg::medimg gdcmMSFF)
  target_compile_definitions(medimg_dicom INTERFACE MEDIMG_WITH_DICOM=1)
  target_link_libraries(medimg_formats INTERFACE medimg::dicom)
  message(STATUS "medimg: DICOM on (GDCM ${GDCM_VERSION})")
else()
  message(STATUS "medimg: DICOM off")
endif()
if(MEDIMG_WITH_NIFTI)
  add_library(medimg_nifti INTERFACE)
  add_library(medimg::nifti ALIAS medimg_nifti)
  set_target_properties(medimg_nifti PROPERTIES EXPORT_NAME nifti)
  target_link_libraries(medimg_nifti INTERFACE medimg::medimg medimg::nifticlib)
  target_compile_definitions(medimg_nifti INTERFACE MEDIMG_WITH_NIFTI=1)
  target_link_libraries(medimg_formats INTERFACE medimg::nifti)
  message(STATUS "medimg: NIfTI on (${medimg_NIFTI_LIBRARY})")
else()
  message(STATUS "medimg: NIfTI off")
endif()
