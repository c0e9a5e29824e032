// SPDX-License-Identifier: MIT
// The one Boost.Test main shared by every test executable (linked dynamically, so each test
// file compiles only its own cases).
#define BOOST_TEST_MODULE medimg
#include <boost/test/unit_test.hpp>
