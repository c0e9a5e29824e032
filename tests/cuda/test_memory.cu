// SPDX-License-Identifier: MIT
// Tests for cuda/ memory, transfers, allocator and errors (mirrors tests/cpu/test_tensor.cpp for
// Tensor<T, Cuda>): fill, from_vector / to_vector, to<Cpu>() / to<Cuda>(), clone, copy_, views,
// integer tensors, the caching allocator (reuse, statistics, empty_cache), and the shape of a
// CudaError message. Cases that need a GPU are skipped without one.
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda_helpers.hpp"

using namespace medimg;
using medimg::test::has_cuda_device;
using medimg::test::message_contains;
namespace utf = boost::unit_test;

/// For main.cpp (compiled by g++, which cannot include medimg/cuda/).
int medimg_test_cuda_device_count() { return cuda::device_count(); }

BOOST_AUTO_TEST_SUITE(cuda_memory)

// Pure host code (the status values are passed in), so this one also runs without a GPU.
BOOST_AUTO_TEST_CASE(check_macros_name_the_call_file_line_and_library_reason) {
    BOOST_CHECK_EXCEPTION(MEDIMG_CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM), CudaError,
                          message_contains("CUDNN_STATUS_BAD_PARAM failed at test_memory.cu:"));
    BOOST_CHECK_EXCEPTION(MEDIMG_CUDNN_CHECK(CUDNN_STATUS_BAD_PARAM), CudaError, message_contains(": CUDNN_STATUS_BAD_PARAM"));
    BOOST_CHECK_EXCEPTION(MEDIMG_CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE), CudaError,
                          message_contains("CUBLAS_STATUS_INVALID_VALUE"));
    BOOST_CHECK_EXCEPTION(MEDIMG_CUDA_CHECK(cudaErrorInvalidValue), CudaError,
                          message_contains("cudaErrorInvalidValue failed at test_memory.cu:"));
    BOOST_CHECK_EXCEPTION(MEDIMG_CUDA_CHECK(cudaErrorInvalidValue), CudaError, message_contains("(cudaErrorInvalidValue)"));
    BOOST_CHECK_NO_THROW(MEDIMG_CUDA_CHECK(cudaSuccess));
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(a_failing_runtime_call_throws_cuda_error) {
    const int bad = cuda::device_count() + 7;
    BOOST_CHECK_EXCEPTION(MEDIMG_CUDA_CHECK(cudaSetDevice(bad)), CudaError,
                          message_contains("cudaSetDevice(bad) failed at test_memory.cu:"));
    BOOST_CHECK_EXCEPTION(MEDIMG_CUDA_CHECK(cudaSetDevice(bad)), CudaError, message_contains("(cudaErrorInvalidDevice)"));
    MEDIMG_CUDA_CHECK(cudaDeviceSynchronize());  // the failed call left no sticky error behind
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(device_count_and_description) {
    BOOST_TEST(cuda::device_count() >= 1);
    BOOST_TEST(Memory<Cuda>::device_count() == cuda::device_count());
    const std::string d = cuda::device_description(cuda::current_device());
    BOOST_TEST_MESSAGE("device: " << d);
    BOOST_TEST(d.find("sm_") != std::string::npos);
    BOOST_TEST(cuda::no_device_reason().empty());
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(values_round_trip_between_host_and_device) {
    const std::vector<float> v{1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f};
    auto g = Tensor<float, Cuda>::from_vector({2, 3}, v);
    BOOST_TEST(g.to_vector() == v, boost::test_tools::per_element());
    auto h = g.to<Cpu>();
    BOOST_TEST(h.shape() == Shape({2, 3}));
    BOOST_TEST(h.to_vector() == v, boost::test_tools::per_element());
    auto back = h.to<Cuda>().to<Cuda>();  // host -> device -> device
    BOOST_TEST(back.to_vector() == v, boost::test_tools::per_element());
    BOOST_TEST((Tensor<double, Cuda>::scalar(2.5).item() == 2.5));
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(fill_zero_ones_and_full_for_every_element_type) {
    using F = Tensor<float, Cuda>;
    using D = Tensor<double, Cuda>;
    using I32 = Tensor<std::int32_t, Cuda>;
    using I64 = Tensor<std::int64_t, Cuda>;
    const auto f = F::full({1000}, 3.5f).to_vector();
    const auto d = D::zeros({7}).to_vector();
    const auto i32 = I32::full({5}, -3).to_vector();
    const auto i64 = I64::full({3}, std::int64_t(1) << 40).to_vector();
    BOOST_TEST(f == std::vector<float>(1000, 3.5f), boost::test_tools::per_element());
    BOOST_TEST(d == std::vector<double>(7, 0.0), boost::test_tools::per_element());
    BOOST_TEST(i32 == std::vector<std::int32_t>(5, -3), boost::test_tools::per_element());
    BOOST_TEST(i64 == std::vector<std::int64_t>(3, std::int64_t(1) << 40), boost::test_tools::per_element());
    auto t = Tensor<float, Cuda>::ones({3000000});  // more than one grid-stride pass
    BOOST_TEST(ops::sum(t) == 3000000.0);
    t.zero_();
    BOOST_TEST(ops::sum(t) == 0.0);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(clone_copy_reshape_and_slice_behave_as_on_the_host) {
    auto a = Tensor<float, Cuda>::from_vector({3, 2}, {0, 1, 2, 3, 4, 5});
    auto c = a.clone();
    BOOST_TEST(!c.shares_storage_with(a));
    c.fill_(9.0f);
    BOOST_TEST(a.to_vector() == std::vector<float>({0, 1, 2, 3, 4, 5}), boost::test_tools::per_element());
    auto r = a.reshape({2, 3});
    BOOST_TEST(r.shares_storage_with(a));
    auto s = a.slice0(1, 2);  // rows 1..2
    BOOST_TEST(s.to_vector() == std::vector<float>({2, 3, 4, 5}), boost::test_tools::per_element());
    s.copy_(Tensor<float, Cuda>::from_vector({2, 2}, {-1, -2, -3, -4}));
    BOOST_TEST(a.to_vector() == std::vector<float>({0, 1, -1, -2, -3, -4}), boost::test_tools::per_element());
    BOOST_CHECK_EXCEPTION(a.copy_(Tensor<float, Cuda>::zeros({5})), ShapeError, message_contains("Tensor::copy_"));
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(allocator_reuses_freed_blocks_without_cudamalloc) {
    auto& a = cuda::CachingAllocator::instance();
    BOOST_TEST(cuda::CachingAllocator::size_class(1) == 512u);
    BOOST_TEST(cuda::CachingAllocator::size_class(4096) == 4096u);
    BOOST_TEST(cuda::CachingAllocator::size_class(4097) == 5120u);        // 4096 + 4096/4
    BOOST_TEST(cuda::CachingAllocator::size_class(1000000) == 1048576u);  // 786432 < 1e6 <= 2^20
    for (std::size_t b : {std::size_t(1), std::size_t(777), std::size_t(12345), std::size_t(1) << 24, std::size_t(3) << 24})
        BOOST_TEST(cuda::CachingAllocator::size_class(b) < b + b / 4 + 512);  // at most 25% slack

    cuda::empty_cache();
    const auto s0 = cuda::allocator_stats();
    BOOST_TEST(s0.bytes_cached == 0u);
    { auto t = Tensor<float, Cuda>::empty({1 << 20}); }  // 4 MiB, freed into the cache
    const auto s1 = cuda::allocator_stats();
    BOOST_TEST(s1.device_allocations == s0.device_allocations + 1);
    BOOST_TEST(s1.bytes_cached == std::size_t(4) << 20);
    BOOST_TEST(s1.bytes_in_use == s0.bytes_in_use);
    for (int i = 0; i < 10; ++i) {  // steady state: the same sizes again and again
        auto t = Tensor<float, Cuda>::empty({1 << 20});
        auto u = Tensor<float, Cuda>::empty({(1 << 20) - 3});  // the same size class
        BOOST_TEST(cuda::allocator_stats().bytes_in_use == s0.bytes_in_use + (std::size_t(8) << 20));
    }
    const auto s2 = cuda::allocator_stats();
    BOOST_TEST(s2.device_allocations == s1.device_allocations + 1);  // only u's first block was new
    BOOST_TEST(s2.cache_hits >= s1.cache_hits + 19);
    BOOST_TEST(s2.peak_bytes_in_use >= s0.bytes_in_use + (std::size_t(8) << 20));
    cuda::empty_cache();
    const auto s3 = cuda::allocator_stats();
    BOOST_TEST(s3.bytes_cached == 0u);
    BOOST_TEST(s3.device_frees == s2.device_frees + 2);
    BOOST_TEST(a.allocate(0) == nullptr);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(allocator_reports_out_of_memory_as_cuda_error) {
    std::size_t free_b = 0, total_b = 0;
    MEDIMG_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    using F = Tensor<float, Cuda>;
    BOOST_CHECK_EXCEPTION(F::empty({static_cast<std::int64_t>(total_b)}), CudaError,
                          message_contains("cudaMalloc failed at allocator.hpp:"));
    auto t = Tensor<float, Cuda>::ones({16});  // still usable afterwards
    BOOST_TEST(ops::sum(t) == 16.0);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(a_bad_class_index_found_on_the_device_throws_at_the_next_sync) {
    auto logits = Tensor<float, Cuda>::zeros({3, 4});
    auto target = Tensor<std::int64_t, Cpu>::from_vector({3}, {1, 7, -1}).to<Cuda>();
    auto logp = Tensor<float, Cuda>::empty({3, 4});
    auto loss = Tensor<float, Cuda>::empty(Shape{});
    ops::cross_entropy_forward(logits, target, Tensor<float, Cuda>(), ops::CrossEntropyParams{}, logp, loss);
    BOOST_CHECK_EXCEPTION(loss.item(), ValueError,
                          message_contains("cross_entropy: target[1] = 7 is not a class index in [0, 4)"));
    BOOST_TEST(std::isnan(loss.item()));  // reported once; the loss itself is NaN
}

BOOST_AUTO_TEST_SUITE_END()
