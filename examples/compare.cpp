// SPDX-License-Identifier: MIT
// medimg-compare: SSIM and mean absolute difference of a reference and a target image, to help
// visual inspection (the prototype's `compare`), plus optional mask, resize and colour-mapped SSIM
// and difference maps. A thin shell: parsing, measuring and reporting live in
// medimg/metrics/compare.hpp (run_compare), where tests/cpu/test_compare.cpp exercises them.
// Usage: medimg-compare --reference FILE --target FILE [--json] [--window uniform|gaussian]
//        [--resize] [--mask FILE] [--ssim-map OUT.png] [--diff-map OUT.png] [--help]
#include <cstdio>
#include <exception>
#include <iostream>

#include <medimg/metrics/compare.hpp>

int main(int argc, char** argv) try {
    return medimg::metrics::run_compare(argc, argv, std::cout, std::cerr);
} catch (...) {  // run_compare reports its own errors; this catches the rest (writing the report)
    std::fprintf(stderr, "medimg-compare: %s\n", medimg::current_exception_message().c_str());
    return 1;
}
