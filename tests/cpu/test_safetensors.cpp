// SPDX-License-Identifier: MIT
// Tests for io/safetensors.hpp: round trips of every dtype (scalars, zero-size tensors), metadata,
// F16/BF16 bit patterns, byte-exact agreement with the reference serializer, atomic writes, hostile
// inputs built in memory (each with its message), and a fixture written by Python's standard library.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "medimg/io/safetensors.hpp"

using namespace medimg;
using namespace medimg::io;
using medimg::test::message_contains;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<std::uint8_t>;

/// A file image: the 8-byte little-endian length `n`, then `header`, then `data`.
Bytes image_with_length(std::uint64_t n, const std::string& header, const Bytes& data = {}) {
    Bytes b;
    b.reserve(8 + header.size() + data.size());
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::uint8_t>(n >> (8 * i)));  // little-endian
    b.insert(b.end(), header.begin(), header.end());
    b.insert(b.end(), data.begin(), data.end());
    return b;
}
/// A file image whose length field is the header's true length.
Bytes image(const std::string& header, const Bytes& data = {}) {
    return image_with_length(header.size(), header, data);
}

SafetensorsFile load_bad(const Bytes& b) { return SafetensorsFile::load_from_memory(b, "bad.safetensors"); }

/// For BOOST_CHECK_EXCEPTION: the message is one line, starts with the file prefix and contains `fragment`.
struct corrupt_file_message {
    std::string fragment;
    explicit corrupt_file_message(std::string f) : fragment(std::move(f)) {}
    bool operator()(const IoError& e) const {
        const std::string m = e.what();
        const bool ok = m.rfind("safetensors: bad.safetensors: ", 0) == 0 && m.find(fragment) != std::string::npos &&
                        m.find('\n') == std::string::npos;
        if (!ok) BOOST_TEST_MESSAGE("message was: " << m);
        return ok;
    }
};
#define CHECK_CORRUPT(bytes, fragment) BOOST_CHECK_EXCEPTION(load_bad(bytes), IoError, corrupt_file_message(fragment))

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct TempDir {
    fs::path path;
    TempDir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("medimg_safetensors_" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::vector<std::string> entries() const {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }
};

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

template <class T>
void check_same(const Tensor<T, Cpu>& got, const Tensor<T, Cpu>& want) {
    BOOST_REQUIRE(got.shape() == want.shape());
    for (std::int64_t i = 0; i < want.numel(); ++i) BOOST_TEST(got[i] == want[i]);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

BOOST_AUTO_TEST_SUITE(safetensors)

BOOST_AUTO_TEST_CASE(dtype_names_sizes_and_native_types_match_the_format) {
    BOOST_TEST(std::string(dtype_name(DType::BF16)) == "BF16");
    BOOST_TEST(std::string(dtype_name(DType::BOOL)) == "BOOL");
    BOOST_TEST(dtype_size(DType::F64) == 8u);
    BOOST_TEST(dtype_size(DType::F16) == 2u);
    BOOST_TEST(dtype_size(DType::BOOL) == 1u);
    BOOST_TEST((dtype_from_name("I16") == DType::I16));
    BOOST_TEST(!dtype_from_name("F8_E4M3").has_value());
    static_assert(dtype_of<float>() == DType::F32 && dtype_of<double>() == DType::F64);
    static_assert(dtype_of<std::int64_t>() == DType::I64 && dtype_of<std::int32_t>() == DType::I32);
    static_assert(dtype_of<std::uint8_t>() == DType::U8 && dtype_of<bool>() == DType::BOOL);
    static_assert(dtype_of<std::int8_t>() == DType::I8 && dtype_of<std::int16_t>() == DType::I16);
}

BOOST_AUTO_TEST_CASE(round_trip_preserves_every_native_dtype_shape_scalars_and_zero_size_tensors) {
    const auto f32 = Tensor<float>::from_vector({2, 3}, {0.5f, -1.0f, 3.25f, 1e-30f, -0.0f, 1e30f});
    const auto f64 = Tensor<double>::scalar(3.141592653589793);
    const auto i64 = Tensor<std::int64_t>::from_vector(
        {4}, {0, -1, std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max()});
    const auto i32 = Tensor<std::int32_t>::from_vector({2, 1, 2}, {7, -7, 2147483647, -2147483647 - 1});
    const auto i16 = Tensor<std::int16_t>::from_vector({2}, {-32768, 32767});
    const auto i8 = Tensor<std::int8_t>::from_vector({3}, {-128, 0, 127});
    const auto u8 = Tensor<std::uint8_t>::from_vector({1, 1, 1, 1, 1, 3}, {0, 128, 255});
    auto b = Tensor<bool>::empty({3});  // (from_vector cannot take std::vector<bool>)
    b[0] = true, b[1] = false, b[2] = true;
    const auto empty = Tensor<float>::empty({0, 3});
    const auto empty_u8 = Tensor<std::uint8_t>::empty({5, 0});

    SafetensorsWriter w;
    w.add("f32", f32);
    w.add("f64", f64);
    w.add("i64", i64);
    w.add("i32", i32);
    w.add("i16", i16);
    w.add("i8", i8);
    w.add("u8", u8);
    w.add("bool", b);
    w.add("empty", empty);
    w.add("empty_u8", empty_u8);
    BOOST_TEST(w.size() == 10u);

    TempDir dir;
    const std::string path = (dir.path / "model.safetensors").string();
    w.write(path);
    const auto bytes = w.to_bytes();
    BOOST_TEST(fs::file_size(path) == bytes.size());

    for (const auto& f : {SafetensorsFile::load(path), SafetensorsFile::load_from_memory(bytes, "mem")}) {
        BOOST_TEST(f.size() == 10u);
        // keys() is data-offset order, which for our writer is the sorted key order.
        const std::vector<std::string> want_keys{"bool", "empty", "empty_u8", "f32", "f64",
                                                 "i16",  "i32",   "i64",      "i8",  "u8"};
        BOOST_TEST(f.keys() == want_keys, boost::test_tools::per_element());
        BOOST_TEST((f.dtype("f64") == DType::F64));
        BOOST_TEST((f.dtype("bool") == DType::BOOL));
        BOOST_TEST(f.shape("f64").rank() == 0);
        BOOST_TEST(f.shape("empty") == (Shape{0, 3}));
        check_same(f.tensor<float>("f32"), f32);
        BOOST_TEST(std::signbit(f.tensor<float>("f32")[4]));
        check_same(f.tensor<double>("f64"), f64);
        check_same(f.tensor<std::int64_t>("i64"), i64);
        check_same(f.tensor<std::int32_t>("i32"), i32);
        check_same(f.tensor<std::int16_t>("i16"), i16);
        check_same(f.tensor<std::int8_t>("i8"), i8);
        check_same(f.tensor<std::uint8_t>("u8"), u8);
        check_same(f.tensor<bool>("bool"), b);
        BOOST_TEST(f.tensor<float>("empty").numel() == 0);
        BOOST_TEST(f.tensor<std::uint8_t>("empty_u8").shape() == (Shape{5, 0}));
        BOOST_TEST(f.contains("f32"));
        BOOST_TEST(!f.contains("__metadata__"));
        BOOST_TEST(f.metadata().empty());
    }
}

BOOST_AUTO_TEST_CASE(metadata_round_trips_and_header_is_sorted_space_padded_and_aligned) {
    SafetensorsWriter w;
    w.add("b.weight", Tensor<float>::ones({3}));
    w.add("a.bias", Tensor<double>::zeros({1}));
    w.set_metadata("classes", "normal,pneumonia");
    w.set_metadata("epoch", "3");
    w.set_metadata("epoch", "4");  // replaces
    w.set_metadata("unit", "\xC2\xB5m \"quoted\"\n");
    const auto bytes = w.to_bytes();

    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    BOOST_TEST(n % 8 == 0u);
    const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
    BOOST_TEST(header.front() == '{');
    BOOST_TEST(header.find_first_not_of(' ', header.rfind('}') + 1) == std::string::npos);  // space padding
    BOOST_TEST(header.find("__metadata__") < header.find("a.bias"));
    BOOST_TEST(header.find("a.bias") < header.find("b.weight"));
    BOOST_TEST(header.find(R"("a.bias":{"dtype":"F64","shape":[1],"data_offsets":[0,8]})") != std::string::npos);
    BOOST_TEST(header.find(R"("b.weight":{"dtype":"F32","shape":[3],"data_offsets":[8,20]})") != std::string::npos);

    const auto f = SafetensorsFile::load_from_memory(bytes);
    const std::map<std::string, std::string> want{
        {"classes", "normal,pneumonia"}, {"epoch", "4"}, {"unit", "\xC2\xB5m \"quoted\"\n"}};
    BOOST_TEST((f.metadata() == want));
    BOOST_TEST(f.data_offsets("b.weight").first == 8u);
}

BOOST_AUTO_TEST_CASE(writer_output_matches_the_reference_serializer_byte_for_byte) {
    // Expected bytes from the reference implementation's own tests (safetensors/src/tensor.rs:
    // test_serialization, test_empty, test_serialization_forced_alignement).
    const Bytes attn = {64,  0,   0,   0,   0,   0,  0,  0,  123, 34, 97,  116, 116, 110, 46,  48,  34,  58,  123, 34,
                        100, 116, 121, 112, 101, 34, 58, 34, 70,  51, 50,  34,  44,  34,  115, 104, 97,  112, 101, 34,
                        58,  91,  49,  44,  50,  44, 51, 93, 44,  34, 100, 97,  116, 97,  95,  111, 102, 102, 115, 101,
                        116, 115, 34,  58,  91,  48, 44, 50, 52,  93, 125, 125, 0,   0,   0,   0,   0,   0,   128, 63,
                        0,   0,   0,   64,  0,   0,  64, 64, 0,   0,  128, 64,  0,   0,   160, 64};
    SafetensorsWriter w;
    w.add("attn.0", Tensor<float>::from_vector({1, 2, 3}, {0, 1, 2, 3, 4, 5}));
    BOOST_TEST(w.to_bytes() == attn, boost::test_tools::per_element());

    SafetensorsWriter padded;
    padded.add("attn0", Tensor<float>::from_vector({1, 1, 2, 3}, {0, 1, 2, 3, 4, 5}));
    const auto p = padded.to_bytes();
    BOOST_TEST(p[0] == 72);
    BOOST_TEST(std::string(p.begin() + 73, p.begin() + 80) == "       ");

    const Bytes empty = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
    BOOST_TEST(SafetensorsWriter().to_bytes() == empty, boost::test_tools::per_element());
    BOOST_TEST(SafetensorsFile::load_from_memory(empty).size() == 0u);

    const Bytes meta = {40,  0,   0,   0,  0,  0,  0,   0,   123, 34,  95,  95,  109, 101, 116, 97,
                        100, 97,  116, 97, 95, 95, 34,  58,  123, 34,  102, 114, 97,  109, 101, 119,
                        111, 114, 107, 34, 58, 34, 112, 116, 34,  125, 125, 32,  32,  32,  32,  32};
    SafetensorsWriter m;
    m.set_metadata("framework", "pt");
    BOOST_TEST(m.to_bytes() == meta, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(half_conversion_matches_known_bit_patterns) {
    const float inf = std::numeric_limits<float>::infinity();
    // encode: round to nearest, ties to even
    BOOST_TEST(float_to_half(1.0f) == 0x3C00);
    BOOST_TEST(float_to_half(-2.5f) == 0xC100);
    BOOST_TEST(float_to_half(65504.0f) == 0x7BFF);                          // largest finite
    BOOST_TEST(float_to_half(65519.0f) == 0x7BFF);                          // below the midpoint to 2^16
    BOOST_TEST(float_to_half(65520.0f) == 0x7C00);                          // midpoint ties to even = inf
    BOOST_TEST(float_to_half(std::ldexp(1.0f, -24)) == 0x0001);             // smallest subnormal
    BOOST_TEST(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);             // half of it: tie to even 0
    BOOST_TEST(float_to_half(std::ldexp(1.5f, -25)) == 0x0001);             // above the tie
    BOOST_TEST(float_to_half(std::ldexp(3.0f, -25)) == 0x0002);             // 1.5 ulp: tie to even 2
    BOOST_TEST(float_to_half(std::ldexp(1023.0f, -24)) == 0x03FF);          // largest subnormal
    BOOST_TEST(float_to_half(std::ldexp(2047.0f, -25)) == 0x0400);          // rounds up into the smallest normal
    BOOST_TEST(float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);      // tie, even stays
    BOOST_TEST(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);  // tie, odd rounds up
    BOOST_TEST(float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3C01);
    BOOST_TEST(float_to_half(inf) == 0x7C00);
    BOOST_TEST(float_to_half(-inf) == 0xFC00);
    BOOST_TEST(float_to_half(-0.0f) == 0x8000);
    BOOST_TEST(float_to_half(1e-30f) == 0x0000);
    BOOST_TEST(float_to_half(std::numeric_limits<float>::quiet_NaN()) == 0x7E00);
    const std::uint16_t nan_bits = float_to_half(-std::numeric_limits<double>::quiet_NaN());
    BOOST_TEST((nan_bits & 0x7C00) == 0x7C00);
    BOOST_TEST((nan_bits & 0x03FF) != 0);
    // decode: exact
    BOOST_TEST(half_to_float(0x3C00) == 1.0f);
    BOOST_TEST(half_to_float(0xC100) == -2.5f);
    BOOST_TEST(half_to_float(0x7BFF) == 65504.0f);
    BOOST_TEST(half_to_float(0x0001) == std::ldexp(1.0f, -24));
    BOOST_TEST(half_to_float(0x03FF) == std::ldexp(1023.0f, -24));
    BOOST_TEST(half_to_float(0x0400) == std::ldexp(1.0f, -14));
    BOOST_TEST(half_to_float(0x7C00) == inf);
    BOOST_TEST(half_to_float(0xFC00) == -inf);
    BOOST_TEST(std::isnan(half_to_float(0x7E00)));
    BOOST_TEST(std::isnan(half_to_float(0x7C01)));  // signalling NaN payload kept as NaN
    BOOST_TEST(same_bits(half_to_float(0x8000), -0.0f));
    // every finite half survives decode -> encode
    for (std::uint32_t h = 0; h < 0x10000; ++h) {
        const auto bits = static_cast<std::uint16_t>(h);
        if ((bits & 0x7C00) == 0x7C00 && (bits & 0x03FF)) continue;  // NaN
        if (float_to_half(half_to_float(bits)) != bits) {
            BOOST_ERROR("half round trip fails for 0x" << std::hex << h);
            break;
        }
    }
}

BOOST_AUTO_TEST_CASE(bfloat16_conversion_matches_known_bit_patterns) {
    const float inf = std::numeric_limits<float>::infinity();
    BOOST_TEST(float_to_bfloat16(1.0f) == 0x3F80);
    BOOST_TEST(float_to_bfloat16(-2.5f) == 0xC020);
    BOOST_TEST(float_to_bfloat16(3.14159265f) == 0x4049);
    BOOST_TEST(float_to_bfloat16(1.0f + std::ldexp(1.0f, -8)) == 0x3F80);        // tie, even stays
    BOOST_TEST(float_to_bfloat16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3F82);    // tie, odd rounds up
    BOOST_TEST(float_to_bfloat16(std::numeric_limits<float>::max()) == 0x7F80);  // rounds to inf
    BOOST_TEST(float_to_bfloat16(std::ldexp(1.0f, -133)) == 0x0001);             // smallest subnormal
    BOOST_TEST(float_to_bfloat16(std::numeric_limits<float>::denorm_min()) == 0x0000);
    BOOST_TEST(float_to_bfloat16(inf) == 0x7F80);
    BOOST_TEST(float_to_bfloat16(-inf) == 0xFF80);
    BOOST_TEST(float_to_bfloat16(std::numeric_limits<float>::quiet_NaN()) == 0x7FC0);
    BOOST_TEST(bfloat16_to_float(0x3F80) == 1.0f);
    BOOST_TEST(bfloat16_to_float(0xC020) == -2.5f);
    BOOST_TEST(bfloat16_to_float(0x0001) == std::ldexp(1.0f, -133));
    BOOST_TEST(bfloat16_to_float(0x7F7F) == std::ldexp(255.0f, 120));  // largest finite
    BOOST_TEST(bfloat16_to_float(0xFF80) == -inf);
    BOOST_TEST(std::isnan(bfloat16_to_float(0x7FC0)));
    // For every float whose low 16 bits are zero, encoding is exact truncation (spot check a sweep).
    for (std::uint32_t hi = 0; hi < 0x10000; hi += 7) {
        const std::uint32_t bits = hi << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        if (std::isnan(f)) continue;
        if (float_to_bfloat16(f) != hi) {
            BOOST_ERROR("bfloat16 exact encode fails for 0x" << std::hex << hi);
            break;
        }
    }
}

BOOST_AUTO_TEST_CASE(add_as_rounds_once_from_double_and_integers) {
    // 1 + 2^-8 + 2^-40 lies just above a bfloat16 tie; via float it would become the tie and round down.
    const double x = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);
    BOOST_TEST(float_to_bfloat16(static_cast<float>(x)) == 0x3F80);
    BOOST_TEST(float_to_bfloat16(x) == 0x3F81);

    SafetensorsWriter w;
    w.add_as("h", Tensor<double>::from_vector({4}, {1.0, -2.5, 65520.0, std::ldexp(1.0, -24)}), DType::F16);
    w.add_as("b", Tensor<double>::from_vector({2}, {x, -1e39}), DType::BF16);
    w.add_as("i", Tensor<std::int64_t>::from_vector({3}, {2049, -65520, 3}), DType::F16);  // 2049 ties to 2048
    w.add_as("f", Tensor<std::int64_t>::from_vector({1}, {16777217}), DType::F32);         // ties to 2^24
    w.add_as("n", Tensor<std::int64_t>::from_vector({2}, {-128, 255}), DType::I16);
    w.add_as("m", Tensor<std::uint8_t>::from_vector({2}, {0, 7}), DType::BOOL);
    const auto f = SafetensorsFile::load_from_memory(w.to_bytes());
    BOOST_TEST((f.dtype("h") == DType::F16));
    const auto h = f.tensor<float>("h");
    BOOST_TEST(h[0] == 1.0f);
    BOOST_TEST(h[1] == -2.5f);
    BOOST_TEST(std::isinf(h[2]));
    BOOST_TEST(h[3] == std::ldexp(1.0f, -24));
    const auto b = f.tensor<double>("b");
    BOOST_TEST(b[0] == 1.0 + std::ldexp(1.0, -7));  // 0x3F81
    BOOST_TEST(b[1] == -std::numeric_limits<double>::infinity());
    const auto i = f.tensor<float>("i");
    BOOST_TEST(i[0] == 2048.0f);
    BOOST_TEST(std::isinf(i[1]));
    BOOST_TEST(i[2] == 3.0f);
    BOOST_TEST(f.tensor<double>("f")[0] == 16777216.0);
    BOOST_TEST(f.tensor<std::int16_t>("n")[1] == 255);
    const auto m = f.tensor<std::uint8_t>("m");
    BOOST_TEST((m[0] == 0 && m[1] == 1));
}

BOOST_AUTO_TEST_CASE(loading_converts_between_dtypes_and_checks_integer_ranges) {
    SafetensorsWriter w;
    w.add("i64", Tensor<std::int64_t>::from_vector({3}, {1, -300, 5}));
    w.add("f64", Tensor<double>::from_vector({3}, {1e300, -2.75, std::numeric_limits<double>::quiet_NaN()}));
    w.add("u8", Tensor<std::uint8_t>::from_vector({2}, {200, 3}));
    w.add_as("half", Tensor<float>::from_vector({2}, {0.5f, -3.0f}), DType::F16);
    const auto f = SafetensorsFile::load_from_memory(w.to_bytes(), "conv.safetensors");

    const auto a = f.tensor<std::int32_t>("i64");
    BOOST_TEST(a[1] == -300);
    const auto d = f.tensor<float>("f64");  // out of range and NaN are not errors for floats
    BOOST_TEST(std::isinf(d[0]));
    BOOST_TEST(d[1] == -2.75f);
    BOOST_TEST(std::isnan(d[2]));
    BOOST_TEST(f.tensor<double>("u8")[0] == 200.0);
    BOOST_TEST(f.tensor<std::int32_t>("half")[1] == -3);
    BOOST_TEST(f.tensor<double>("half")[0] == 0.5);
    BOOST_TEST(f.tensor<bool>("u8")[0]);

    BOOST_CHECK_EXCEPTION(f.tensor<std::int8_t>("i64"), IoError,
                          message_contains("safetensors: conv.safetensors: tensor \"i64\": element 1 (value -300) of "
                                           "I64 does not fit the requested I8"));
    BOOST_CHECK_EXCEPTION(f.tensor<std::int64_t>("f64"), IoError, message_contains("element 0 (value 1e+300)"));
    BOOST_CHECK_EXCEPTION(f.tensor<std::uint8_t>("half"), IoError, message_contains("element 1 (value -3)"));
}

BOOST_AUTO_TEST_CASE(missing_key_error_names_the_file_and_the_closest_keys) {
    SafetensorsWriter w;
    for (const char* k : {"fc.weight", "fc.bias", "conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias", "x", "y"})
        w.add(k, Tensor<float>::zeros({1}));
    const auto f = SafetensorsFile::load_from_memory(w.to_bytes(), "ckpt.safetensors");
    BOOST_CHECK_EXCEPTION(
        f.tensor<float>("fc.weigth"), IoError,
        message_contains("safetensors: ckpt.safetensors: no tensor \"fc.weigth\" (7 tensors; closest: "
                         "\"fc.weight\", \"fc.bias\""));
    BOOST_CHECK_EXCEPTION(f.shape("layer1.0.bn2.weight"), IoError, message_contains("\"layer1.0.bn1.bias\""));
    BOOST_CHECK_EXCEPTION(f.dtype("nope"), IoError, message_contains("no tensor \"nope\""));
    BOOST_CHECK_EXCEPTION(SafetensorsFile::load_from_memory(SafetensorsWriter().to_bytes()).tensor<float>("a"), IoError,
                          message_contains("no tensor \"a\" (0 tensors)"));
}

BOOST_AUTO_TEST_CASE(writer_rejects_duplicates_reserved_names_bad_utf8_and_lossy_conversions) {
    SafetensorsWriter w;
    w.add("a", Tensor<float>::zeros({2}));
    BOOST_CHECK_EXCEPTION(w.add("a", Tensor<float>::zeros({2})), ValueError,
                          message_contains("SafetensorsWriter::add: tensor \"a\": added twice"));
    BOOST_CHECK_EXCEPTION(w.add("__metadata__", Tensor<float>::zeros({2})), ValueError, message_contains("reserved"));
    BOOST_CHECK_EXCEPTION(w.add("bad\xff", Tensor<float>::zeros({2})), ValueError, message_contains("not valid UTF-8"));
    BOOST_CHECK_EXCEPTION(w.set_metadata("k", "\xc3"), ValueError, message_contains("not valid UTF-8"));
    BOOST_CHECK_EXCEPTION(w.add("u", Tensor<float>()), ValueError, message_contains("undefined"));
    BOOST_CHECK_EXCEPTION(w.add_as("c", Tensor<float>::zeros({2}), DType::I32), ValueError,
                          message_contains("refusing to store a F32 tensor as I32"));
    BOOST_CHECK_EXCEPTION(w.add_as("d", Tensor<std::int32_t>::from_vector({2}, {1, 300}), DType::I8), ValueError,
                          message_contains("tensor \"d\": element 1 (value 300) does not fit I8"));
    BOOST_TEST(w.size() == 1u);
}

BOOST_AUTO_TEST_CASE(write_replaces_atomically_and_leaves_no_temporary_file) {
    TempDir dir;
    const fs::path path = dir.path / "best.safetensors";
    SafetensorsWriter first;
    first.add("w", Tensor<float>::full({4}, 1.0f));
    first.write(path.string());
    SafetensorsWriter second;
    second.add("w", Tensor<float>::full({2}, 2.0f));
    second.set_metadata("epoch", "2");
    second.write(path.string());
    BOOST_TEST(dir.entries() == std::vector<std::string>{"best.safetensors"}, boost::test_tools::per_element());
    const auto f = SafetensorsFile::load(path.string());
    BOOST_TEST(f.shape("w") == (Shape{2}));
    BOOST_TEST(f.metadata().at("epoch") == "2");
}

BOOST_AUTO_TEST_CASE(failed_writes_throw_name_the_path_and_leave_existing_files_intact) {
    TempDir dir;
    SafetensorsWriter w;
    w.add("w", Tensor<float>::ones({3}));

    // 1. The directory does not exist: nothing can be created.
    const fs::path missing = dir.path / "no_such_dir" / "x.safetensors";
    BOOST_CHECK_EXCEPTION(
        w.write(missing.string()), IoError,
        message_contains("safetensors: cannot write " + missing.string() + ": creating temporary file"));
    BOOST_TEST(dir.entries().empty());

    // 2. The path is a directory: the temporary file is written, the rename fails, the temp file goes.
    fs::create_directory(dir.path / "adir");
    BOOST_CHECK_EXCEPTION(w.write((dir.path / "adir").string()), IoError,
                          message_contains("safetensors: cannot write " + (dir.path / "adir").string() + ": renaming"));
    BOOST_TEST(dir.entries() == std::vector<std::string>{"adir"}, boost::test_tools::per_element());
    BOOST_TEST(fs::is_empty(dir.path / "adir"));

    // 3. An existing file whose temporary sibling cannot be created (name too long, even for root):
    //    the old file keeps its exact bytes.
    const std::string long_name = std::string(240, 'c') + ".safetensors";  // 252 chars: fits NAME_MAX (255)
    const fs::path existing = dir.path / long_name;
    { std::ofstream(existing, std::ios::binary) << "old contents"; }
    BOOST_CHECK_EXCEPTION(w.write(existing.string()), IoError,
                          message_contains("safetensors: cannot write " + existing.string()));
    BOOST_TEST(read_text(existing) == "old contents");
    BOOST_TEST(dir.entries().size() == 2u);

    // 4. Loading a missing file or a directory reports it.
    BOOST_CHECK_EXCEPTION(SafetensorsFile::load(missing.string()), IoError,
                          message_contains("safetensors: cannot open " + missing.string()));
    BOOST_CHECK_EXCEPTION(SafetensorsFile::load((dir.path / "adir").string()), IoError,
                          message_contains("not a regular file"));
}

BOOST_AUTO_TEST_CASE(rejects_bad_header_lengths) {
    CHECK_CORRUPT((Bytes{1, 0, 0}), "file is 3 bytes, shorter than the 8-byte header length");
    CHECK_CORRUPT(Bytes{}, "file is 0 bytes");
    CHECK_CORRUPT(image_with_length(0, "{}"), "header length is 0");
    CHECK_CORRUPT(image_with_length(200'000'000, "{}"), "header length 200000000 exceeds the limit of 100000000 bytes");
    CHECK_CORRUPT(image_with_length(~std::uint64_t{0}, "{}"), "exceeds the limit");
    CHECK_CORRUPT(image_with_length(1000, "{}"), "header length 1000 points past the end of the 10-byte file");
    CHECK_CORRUPT(image_with_length(3, "{}"), "header length 3 points past the end");
}

BOOST_AUTO_TEST_CASE(rejects_headers_that_are_not_json_objects) {
    CHECK_CORRUPT(image(R"({"a": {"dtype": "F32",)"), "header is not valid JSON: parse error");
    CHECK_CORRUPT(image("{\"a\": \"\xff\"}"), "header is not valid JSON");  // invalid UTF-8
    CHECK_CORRUPT(image(R"([1, 2, 3])"), "header is not a JSON object (got array)");
    CHECK_CORRUPT(image(R"("text")"), "header is not a JSON object (got string)");
    CHECK_CORRUPT(image(R"({"a": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}, "a": 1})"),
                  "header repeats key \"a\"");
    CHECK_CORRUPT(image(R"({"a": {"dtype": "U8", "dtype": "U8", "shape": [0], "data_offsets": [0, 0]}})"),
                  "header repeats key \"dtype\" inside an entry");
    CHECK_CORRUPT(image("{\"x\": " + std::string(100000, '[') + std::string(100000, ']') + "}"),
                  "header nests JSON deeper than 64 levels");
}

BOOST_AUTO_TEST_CASE(rejects_malformed_entries) {
    CHECK_CORRUPT(image(R"({"w": [1, 2]})"), "tensor \"w\": entry must be a JSON object, got array [1,2]");
    CHECK_CORRUPT(image(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})"), "tensor \"w\": missing \"dtype\"");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})"), "tensor \"w\": missing \"shape\"");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "shape": [1]}})"), "tensor \"w\": missing \"data_offsets\"");
    CHECK_CORRUPT(image(R"({"w": {"dtype": 32, "shape": [1], "data_offsets": [0, 4]}})"),
                  "\"dtype\" must be a string, got number 32");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F7", "shape": [1], "data_offsets": [0, 4]}})", Bytes(4)),
                  "tensor \"w\": unsupported dtype \"F7\"");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "shape": "2x2", "data_offsets": [0, 16]}})", Bytes(16)),
                  "\"shape\" must be an array of non-negative integers, got string \"2x2\"");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "shape": [2, -2], "data_offsets": [0, 16]}})", Bytes(16)),
                  "shape dimension 1 is -2, negative (shape [2,-2])");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 16]}})", Bytes(16)),
                  "shape dimension 0 is 2.5, not an integer");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "shape": [null], "data_offsets": [0, 16]}})", Bytes(16)),
                  "shape dimension 0 is null, not an integer");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "U8", "shape": [1,1,1,1,1,1,1], "data_offsets": [0, 1]}})", Bytes(1)),
                  "shape [1,1,1,1,1,1,1] has rank 7, more than medimg's maximum of 6");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296, 0], "data_offsets": [0, 0]}})"),
                  "shape [4294967296,4294967296,0] overflows a 64-bit element count");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "U8", "shape": [18446744073709551615], "data_offsets": [0, 0]}})"),
                  "overflows a 64-bit element count");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F64", "shape": [2305843009213693952], "data_offsets": [0, 0]}})"),
                  "shape [2305843009213693952] of F64 overflows a 64-bit byte count");
    CHECK_CORRUPT(image(R"({"__metadata__": {"epoch": 3}})"),
                  "__metadata__ value for \"epoch\" must be a string, got number 3");
    CHECK_CORRUPT(image(R"({"__metadata__": ["a"]})"), "__metadata__ must be an object of strings, got array");
}

BOOST_AUTO_TEST_CASE(rejects_bad_data_offsets) {
    const Bytes data16(16, 0), data24(24, 0);
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 16]}})", data16),
                  "\"data_offsets\" must be two non-negative integers [begin, end], got [0,8,16]");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", data16),
                  "must be two non-negative integers");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}})", data16),
                  "must be two non-negative integers");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [16, 8]}})", data16),
                  "tensor \"w\": data_offsets [16, 8] are not increasing");
    // truncated data: the header promises 24 bytes, the file holds 16
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}})", data16),
                  "tensor \"w\": data_offsets [0, 24] end beyond the data buffer of 16 bytes");
    CHECK_CORRUPT(image(R"({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 12]}})", data16),
                  "tensor \"w\": data_offsets [0, 12] hold 12 bytes but shape [2,3] of F32 needs 24");
    CHECK_CORRUPT(image(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                        data16),
                  "tensor \"b\" (data_offsets [8, 16]) overlaps tensor \"a\" (data_offsets [0, 16])");
    CHECK_CORRUPT(image(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                        data16),
                  "overlaps");
    CHECK_CORRUPT(image(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}})",
                        data24),
                  "gap of 4 bytes before tensor \"b\" (data_offsets [12, 20] but the previous tensor ends at 8)");
    CHECK_CORRUPT(image(R"({"b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", data16),
                  "gap of 4 bytes before tensor \"b\"");
    CHECK_CORRUPT(image(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", data16),
                  "data buffer has 16 bytes but the tensors cover only 8 (8 trailing bytes)");
    CHECK_CORRUPT(image(R"({})", data16), "data buffer has 16 bytes but the tensors cover only 0");
}

BOOST_AUTO_TEST_CASE(accepts_entries_listed_out_of_offset_order_and_padding) {
    // The header's key order is irrelevant; only the offsets must tile the buffer (as in the reference).
    Bytes data(12, 0);
    data[0] = 7;  // z: U8 [4] at [0, 4)
    const float one = 1.0f;
    std::memcpy(data.data() + 4, &one, 4);  // a: F32 [1] at [4, 8)
    data[8] = 9;                            // m: U8 [4] at [8, 12)
    const auto f = load_bad(image(R"({"m": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]},
                                     "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8], "extra": true},
                                     "e": {"dtype": "F64", "shape": [0], "data_offsets": [12, 12]},
                                     "z": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                                     "__metadata__": null}   )",
                                  data));
    BOOST_TEST(f.keys() == (std::vector<std::string>{"z", "a", "m", "e"}), boost::test_tools::per_element());
    BOOST_TEST(f.tensor<float>("a")[0] == 1.0f);
    BOOST_TEST(f.tensor<int>("m")[0] == 9);
    BOOST_TEST(f.tensor<std::uint8_t>("z")[0] == 7);
    BOOST_TEST(f.metadata().empty());
}

BOOST_AUTO_TEST_CASE(survives_every_truncation_and_byte_corruption_of_a_valid_file) {
    SafetensorsWriter w;
    w.add("a", Tensor<float>::from_vector({2, 2}, {1, 2, 3, 4}));
    w.add_as("b", Tensor<float>::from_vector({3}, {1, -1, 0.5f}), DType::BF16);
    w.add("c", Tensor<std::int64_t>::scalar(-5));
    w.add("d", Tensor<std::uint8_t>::empty({0}));
    w.set_metadata("k", "v");
    const Bytes good = w.to_bytes();
    // Every proper prefix is rejected with an IoError.
    for (std::size_t n = 0; n < good.size(); ++n) {
        bool threw = false;
        try {
            (void)SafetensorsFile::load_from_memory(Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)));
        } catch (const IoError&) {
            threw = true;
        }
        if (!threw) BOOST_ERROR("a " << n << "-byte prefix loaded without error");
    }
    // Every single-byte corruption either loads (and then every tensor reads in every type) or throws IoError;
    // nothing else may escape, and nothing may read out of bounds (run under ASan to be sure).
    std::size_t loaded = 0, rejected = 0;
    for (std::size_t i = 0; i < good.size(); ++i) {
        for (std::uint8_t v : {std::uint8_t{0}, std::uint8_t{0xff}, std::uint8_t{'9'}, std::uint8_t{'"'},
                               static_cast<std::uint8_t>(good[i] ^ 1u), static_cast<std::uint8_t>(good[i] + 1u)}) {
            Bytes bad = good;
            bad[i] = v;
            try {
                const auto f = SafetensorsFile::load_from_memory(bad);
                for (const auto& k : f.keys()) {
                    (void)f.tensor<double>(k);
                    (void)f.tensor<float>(k);
                    try {
                        (void)f.tensor<std::int64_t>(k);
                    } catch (const IoError&) {  // a float value may not fit
                    }
                }
                ++loaded;
            } catch (const IoError&) {
                ++rejected;
            }
        }
    }
    BOOST_TEST(loaded > 0u);
    BOOST_TEST(rejected > 0u);
}

BOOST_AUTO_TEST_CASE(reads_the_fixture_written_by_python) {
    // tests/data/make_safetensors_fixtures.py (struct + json) wrote this with the reference's data layout
    // (descending dtype order, then name), so offsets are not in key order.
    const auto f = SafetensorsFile::load(MEDIMG_TEST_DATA_DIR "/safetensors/small.safetensors");
    const std::vector<std::string> want_keys{
        "bn1.num_batches_tracked", "fc.bias", "conv1.weight", "empty", "labels", "bf", "half", "pixels"};
    BOOST_TEST(f.keys() == want_keys, boost::test_tools::per_element());
    BOOST_TEST(f.metadata().at("format") == "pt");
    BOOST_TEST(f.metadata().at("classes") == "normal,pneumonia");
    BOOST_TEST(f.metadata().at("unit") == "\xC2\xB5m \xC3\x85ngstr\xC3\xB6m");
    BOOST_TEST(f.metadata().size() == 4u);

    BOOST_TEST((f.dtype("conv1.weight") == DType::F32));
    BOOST_TEST(f.shape("conv1.weight") == (Shape{2, 1, 2, 2}));
    const auto w = f.tensor<float>("conv1.weight");
    const std::vector<float> want_w{0.5f,     -1.25f, 3.0f, static_cast<float>(0.1), -0.0f, static_cast<float>(1e-3),
                                    65536.0f, -7.75f};
    for (std::size_t i = 0; i < want_w.size(); ++i) BOOST_TEST(same_bits(w[static_cast<std::int64_t>(i)], want_w[i]));

    const auto b = f.tensor<double>("fc.bias");
    BOOST_TEST(b[0] == 0.1);
    BOOST_TEST(b[1] == -2.5);
    BOOST_TEST(b[2] == 1e300);

    BOOST_TEST(f.shape("bn1.num_batches_tracked").rank() == 0);
    BOOST_TEST(f.tensor<std::int64_t>("bn1.num_batches_tracked").item() == 12345678901234);

    BOOST_TEST((f.dtype("half") == DType::F16));
    const auto h = f.tensor<float>("half");
    BOOST_TEST(h[0] == 1.0f);
    BOOST_TEST(h[1] == -2.5f);
    BOOST_TEST(h[2] == 65504.0f);
    BOOST_TEST(h[3] == std::ldexp(1.0f, -24));
    BOOST_TEST(h[4] == std::numeric_limits<float>::infinity());
    BOOST_TEST(same_bits(h[5], -0.0f));

    BOOST_TEST((f.dtype("bf") == DType::BF16));
    const auto bf = f.tensor<float>("bf");
    BOOST_TEST(bf[0] == 1.0f);
    BOOST_TEST(bf[1] == -2.5f);
    BOOST_TEST(bf[2] == 3.140625f);
    BOOST_TEST(bf[3] == bfloat16_to_float(0x7E96));

    const auto l = f.tensor<std::int32_t>("labels");
    BOOST_TEST(l[2] == -1);
    BOOST_TEST(l[3] == 2147483647);
    const auto px = f.tensor<std::uint8_t>("pixels");
    BOOST_TEST(px[3] == 128);
    BOOST_TEST(px[4] == 255);
    BOOST_TEST(f.tensor<float>("empty").shape() == (Shape{0, 3}));

    // Our writer reproduces every value, and re-reading gives the same tensors.
    SafetensorsWriter rw;
    rw.add_as("half", f.tensor<float>("half"), DType::F16);
    rw.add_as("bf", f.tensor<float>("bf"), DType::BF16);
    const auto again = SafetensorsFile::load_from_memory(rw.to_bytes());
    for (int i = 0; i < 5; ++i) BOOST_TEST(again.tensor<float>("half")[i] == h[i]);
    for (int i = 0; i < 4; ++i) BOOST_TEST(again.tensor<float>("bf")[i] == bf[i]);
}

BOOST_AUTO_TEST_SUITE_END()
