# SPDX-License-Identifier: MIT
# The library's own dependencies, all from Debian packages (scripts/install-deps.sh installs them).
# medimgConfig.cmake repeats these as find_dependency() calls for installed consumers.
include(GNUInstallDirs)
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(yaml-cpp 0.6 REQUIRED)
# libjpeg-turbo (Debian: libjpeg62-turbo-dev) decodes JPEG pixels, the library PIL and torchvision use.
find_package(JPEG REQUIRED)
# zlib (Debian: zlib1g-dev) inflates deflated entries and checks CRC-32s of ZIP archives (io/zip.hpp: .pth files).
find_package(ZLIB REQUIRED)
