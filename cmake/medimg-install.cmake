# SPDX-License-Identifier: MIT
# Install and export rules: `cmake --install build --prefix P` gives P/include/medimg/... and
# P/lib/cmake/medimg/medimgConfig.cmake, so a consumer writes
#   find_package(medimg CONFIG REQUIRED)  +  target_link_libraries(app PRIVATE medimg::medimg)
include(CMakePackageConfigHelpers)

install(TARGETS medimg EXPORT medimgTargets)
install(DIRECTORY include/medimg DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT medimgTargets NAMESPACE medimg:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/medimg)

configure_package_config_file(cmake/medimgConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/medimgConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/medimg)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/medimgConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/medimgConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/medimgConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/medimg)
