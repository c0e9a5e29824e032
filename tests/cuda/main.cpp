// SPDX-License-Identifier: MIT
// The Boost.Test main of test_cuda. Boost.Test is compiled in here (the header-only variant), so
// the binary needs no libboost at run time and can be carried to a GPU machine as it is.
// Every case needs a GPU (precondition has_cuda_device); on a machine without one they are all
// skipped and the process exits with 77, which ctest reports as "Skipped" (SKIP_RETURN_CODE).
// Failures keep their non-zero code either way.
#define BOOST_TEST_MODULE medimg_cuda
#define BOOST_TEST_NO_MAIN
#define BOOST_TEST_ALTERNATIVE_INIT_API
#include <boost/test/included/unit_test.hpp>

#include <iostream>

int medimg_test_cuda_device_count();  // test_memory.cu (this file is compiled by g++)

int main(int argc, char* argv[]) {
    const int rc = boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
    if (rc == 0 && medimg_test_cuda_device_count() == 0) {
        std::cout << "test_cuda: no CUDA device: the CUDA cases were skipped (exit code 77)\n";
        return 77;
    }
    return rc;
}
