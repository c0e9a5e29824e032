# SPDX-License-Identifier: MIT
# Install and export rules: `cmake --install build --prefix P` gives P/include/medimg/... and
# P/lib/cmake/medimg/medimgConfig.cmake, so a consumer writes
#   find_package(medimg CONFIG REQUIRED)  +  target_link_libraries(app PRIVATE medimg::medimg)
# and, for the CUDA backend (exported separately, loaded only where the CUDA toolkit is found),
#   find_package(medimg CONFIG REQUIRED COMPONENTS cuda)  +  medimg::cuda on its .cu targets.
include(CMakePackageConfigHelpers)

install(TARGETS medimg EXPORT medimgTargets)
install(DIRECTORY include/medimg DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT medimgTargets NAMESPACE medimg:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/medimg)
if(MEDIMG_WITH_CUDA)
  install(TARGETS medimg_cuda EXPORT medimgCudaTargets)
  install(EXPORT medimgCudaTargets NAMESPACE medimg:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/medimg)
endif()
install(FILES cmake/medimg-cudnn.cmake DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/medimg)
# The medical formats, each in its own export so a consumer without GDCM / nifticlib still finds
# medimg; find_package(medimg COMPONENTS dicom nifti) asks for them (docs/formats.md).
if(MEDIMG_WITH_DICOM)
  install(TARGETS medimg_dicom EXPORT medimgDicomTargets)
  install(EXPORT medimgDicomTargets NAMESPACE medimg:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/medimg)
endif()
if(MEDIMG_WITH_NIFTI)
  install(TARGETS medimg_nifti EXPORT medimgNiftiTargets)
  install(EXPORT medimgNiftiTargets NAMESPACE medimg:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/medimg)
endif()
install(FILES cmake/medimg-nifticlib.cmake DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/medimg)

configure_package_config_file(cmake/medimgConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/medimgConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/medimg)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/medimgConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/medimgConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/medimgConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/medimg)
