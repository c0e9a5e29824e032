// SPDX-License-Identifier: MIT
// Tests for io/torch_pth.hpp, io/zip.hpp and io/weights_file.hpp: the fixtures torch.save wrote
// (tests/data/make_pth_fixtures.py: every dtype, views sharing a storage, pickle protocol 4, a
// training checkpoint, a tiny model loaded through load_pretrained and run against PyTorch's
// output; the legacy format, TorchScript and a pickled module, refused), the same archives repacked deflated and as ZIP64, and hostile inputs built here in
// memory, each refused with its one-line message: opcodes and globals outside the allow-list,
// storage views out of bounds, zip bombs, CRC mismatches, truncations, missing records.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <zlib.h>

#include "helpers.hpp"
#include "medimg/autograd/engine.hpp"
#include "medimg/io/checkpoint.hpp"
#include "medimg/io/torch_pth.hpp"
#include "medimg/io/weights_file.hpp"
#include "medimg/io/zip.hpp"
#include "medimg/nn/nn.hpp"

using namespace medimg;
using namespace medimg::io;
using medimg::test::message_contains;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<std::uint8_t>;
const std::string kDir = MEDIMG_TEST_DATA_DIR "/pth/";

Bytes read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    BOOST_REQUIRE_MESSAGE(in, "cannot open " << path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
nlohmann::ordered_json read_json(const std::string& path) {
    std::ifstream in(path);
    BOOST_REQUIRE_MESSAGE(in, "cannot open " << path);
    return nlohmann::ordered_json::parse(in);  // keeps the file's key order
}

void put16(Bytes& b, std::uint64_t v) {
    for (int k = 0; k < 2; ++k) b.push_back(static_cast<std::uint8_t>(v >> (8 * k)));
}
void put32(Bytes& b, std::uint64_t v) {
    for (int k = 0; k < 4; ++k) b.push_back(static_cast<std::uint8_t>(v >> (8 * k)));
}
void put64(Bytes& b, std::uint64_t v) {
    for (int k = 0; k < 8; ++k) b.push_back(static_cast<std::uint8_t>(v >> (8 * k)));
}
void append(Bytes& b, const std::string& s) { b.insert(b.end(), s.begin(), s.end()); }
void append(Bytes& b, const Bytes& s) { b.insert(b.end(), s.begin(), s.end()); }

/// Raw deflate (no zlib header), as ZIP method 8 stores it.
Bytes deflate_raw(const Bytes& in) {
    z_stream zs{};
    BOOST_REQUIRE(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY) == Z_OK);
    Bytes out(deflateBound(&zs, static_cast<uLong>(in.size())));
    zs.next_in = const_cast<Bytef*>(in.data());
    zs.avail_in = static_cast<uInt>(in.size());
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    BOOST_REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}
std::uint32_t crc_of(const Bytes& b) { return static_cast<std::uint32_t>(crc32(0, b.data(), static_cast<uInt>(b.size()))); }

/// One file of a ZIP archive built by build_zip; the optional fields falsify what the headers say.
struct ZipItem {
    ZipItem(std::string n, Bytes d, std::uint16_t m = 0) : name(std::move(n)), data(std::move(d)), method(m) {}
    std::string name;
    Bytes data;                             // the uncompressed bytes
    std::uint16_t method = 0;               // 0 stored, 8 deflated here; others: data written as is
    std::optional<Bytes> compressed;        // written instead of data (or its deflate)
    std::optional<std::uint64_t> declared;  // uncompressed size in the headers
    std::optional<std::uint32_t> crc;       // CRC-32 in the headers
    std::uint16_t flags = 0;
    std::optional<std::string> local_name;  // the local header's name, when it should differ
};
struct ZipOptions {
    bool zip64 = false;         // ZIP64 extra fields, ZIP64 end of central directory record and locator
    std::uint16_t disk = 0;     // disk numbers in the end of central directory record
    // Central directory entries with no local header of their own: (item, local header offset).
    std::vector<std::pair<ZipItem, std::uint64_t>> central_only;
};

/// An archive as APPNOTE.TXT lays it out: local headers and data, central directory, end record.
Bytes build_zip(const std::vector<ZipItem>& items, const ZipOptions& o = {}) {
    Bytes out;
    struct Written {
        std::uint64_t offset, csize, usize;
        std::uint32_t crc;
    };
    std::vector<Written> w;
    for (const ZipItem& it : items) {
        const Bytes comp = it.compressed ? *it.compressed : it.method == 8 ? deflate_raw(it.data) : it.data;
        const Written x{out.size(), comp.size(), it.declared.value_or(it.data.size()), it.crc.value_or(crc_of(it.data))};
        w.push_back(x);
        const std::string& lname = it.local_name ? *it.local_name : it.name;
        put32(out, 0x04034b50);
        put16(out, o.zip64 ? 45 : 20);
        put16(out, it.flags);
        put16(out, it.method);
        put32(out, 0);  // time, date
        put32(out, x.crc);
        Bytes extra;
        if (o.zip64) {
            put32(out, 0xffffffff);
            put32(out, 0xffffffff);
            put16(extra, 1);
            put16(extra, 16);
            put64(extra, x.usize);
            put64(extra, x.csize);
        } else {
            put32(out, x.csize);
            put32(out, x.usize);
        }
        put16(out, lname.size());
        put16(out, extra.size());
        append(out, lname);
        append(out, extra);
        append(out, comp);
    }
    const std::uint64_t cd_offset = out.size();
    std::uint64_t count = 0;
    auto central = [&](const ZipItem& it, const Written& x) {
        ++count;
        put32(out, 0x02014b50);
        put16(out, o.zip64 ? 45 : 20);
        put16(out, o.zip64 ? 45 : 20);
        put16(out, it.flags);
        put16(out, it.method);
        put32(out, 0);
        put32(out, x.crc);
        Bytes extra;
        if (o.zip64) {
            put32(out, 0xffffffff);
            put32(out, 0xffffffff);
            put16(extra, 1);
            put16(extra, 24);
            put64(extra, x.usize);
            put64(extra, x.csize);
            put64(extra, x.offset);
        } else {
            put32(out, x.csize);
            put32(out, x.usize);
        }
        put16(out, it.name.size());
        put16(out, extra.size());
        put16(out, 0);  // comment
        put16(out, 0);  // disk
        put16(out, 0);  // internal attributes
        put32(out, 0);  // external attributes
        put32(out, o.zip64 ? 0xffffffff : x.offset);
        append(out, it.name);
        append(out, extra);
    };
    for (std::size_t i = 0; i < items.size(); ++i) central(items[i], w[i]);
    for (const auto& [it, offset] : o.central_only)
        central(it, {offset, it.data.size(), it.data.size(), crc_of(it.data)});
    const std::uint64_t cd_size = out.size() - cd_offset;
    if (o.zip64) {
        const std::uint64_t z = out.size();
        put32(out, 0x06064b50);
        put64(out, 44);
        put16(out, 45);
        put16(out, 45);
        put32(out, 0);
        put32(out, 0);
        put64(out, count);
        put64(out, count);
        put64(out, cd_size);
        put64(out, cd_offset);
        put32(out, 0x07064b50);
        put32(out, 0);
        put64(out, z);
        put32(out, 1);
    }
    put32(out, 0x06054b50);
    put16(out, o.disk);
    put16(out, o.disk);
    put16(out, o.zip64 ? 0xffff : count);
    put16(out, o.zip64 ? 0xffff : count);
    put32(out, o.zip64 ? 0xffffffff : cd_size);
    put32(out, o.zip64 ? 0xffffffff : cd_offset);
    put16(out, 0);
    return out;
}

/// A pickle written opcode by opcode (names as in Lib/pickletools.py); starts with PROTO 2.
struct Pickle {
    Bytes b;
    Pickle() { op(0x80).op(2); }  // PROTO 2
    Pickle& op(std::uint8_t o) {
        b.push_back(o);
        return *this;
    }
    Pickle& str(const std::string& s) {  // BINUNICODE
        op('X');
        put32(b, s.size());
        append(b, s);
        return *this;
    }
    Pickle& integer(std::int64_t v) {  // the shortest of BININT1, BININT2, BININT, LONG1
        if (v >= 0 && v < 256) return op('K').op(static_cast<std::uint8_t>(v));
        if (v >= 0 && v < 65536) {
            op('M');
            put16(b, static_cast<std::uint64_t>(v));
        } else if (v >= std::numeric_limits<std::int32_t>::min() && v <= std::numeric_limits<std::int32_t>::max()) {
            op('J');
            put32(b, static_cast<std::uint64_t>(v));
        } else {
            op(0x8a).op(8);
            put64(b, static_cast<std::uint64_t>(v));
        }
        return *this;
    }
    Pickle& global(const std::string& module, const std::string& name) {
        op('c');
        append(b, module + "\n" + name + "\n");
        return *this;
    }
    Pickle& ordered_dict() { return global("collections", "OrderedDict").op(')').op('R'); }
    Pickle& ints(const std::vector<std::int64_t>& v) {
        op('(');
        for (auto x : v) integer(x);
        return op('t');
    }
    std::size_t pos() const { return b.size(); }
};

/// One _rebuild_tensor_v2 call of a state_dict pickle.
struct TensorSpec {
    TensorSpec(std::string k = "w", std::string type = "FloatStorage", std::string skey = "0", std::int64_t n = 4,
               std::int64_t off = 0, std::vector<std::int64_t> sz = {4}, std::vector<std::int64_t> st = {1})
        : key(std::move(k)), storage_type(std::move(type)), storage_key(std::move(skey)), numel(n), offset(off),
          size(std::move(sz)), stride(std::move(st)) {}
    std::string key, storage_type = "FloatStorage", storage_key = "0";
    std::int64_t numel = 4, offset = 0;
    std::vector<std::int64_t> size{4}, stride{1};
};
Pickle& tensor_call(Pickle& p, const TensorSpec& t) {
    p.global("torch._utils", "_rebuild_tensor_v2").op('(');
    p.op('(').str("storage").global("torch", t.storage_type).str(t.storage_key).str("cpu").integer(t.numel).op('t');
    p.op('Q').integer(t.offset).ints(t.size).ints(t.stride).op(0x89).ordered_dict();
    return p.op('t').op('R');
}
/// OrderedDict(key -> tensor) as torch.save pickles a state_dict (without the _metadata BUILD).
Bytes state_dict_pickle(const std::vector<TensorSpec>& specs) {
    Pickle p;
    p.ordered_dict().op('(');
    for (const auto& t : specs) tensor_call(p.str(t.key), t);
    return p.op('u').op('.').b;
}
Bytes f32_bytes(const std::vector<float>& v) {
    Bytes b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}
/// A torch.save-like archive: <folder>/data.pkl, the storage records, <folder>/version.
Bytes torch_zip(const Bytes& pickle, const std::map<std::string, Bytes>& storages, const ZipOptions& o = {},
                std::uint16_t method = 0, const std::string& folder = "archive") {
    std::vector<ZipItem> items{{folder + "/data.pkl", pickle, method}};
    for (const auto& [k, v] : storages) items.push_back({folder + "/data/" + k, v, method});
    items.push_back({folder + "/version", {'3', '\n'}, method});
    return build_zip(items, o);
}
Bytes one_tensor_zip(const TensorSpec& t, const Bytes& storage) {
    return torch_zip(state_dict_pickle({t}), {{t.storage_key, storage}});
}

/// Loads `b` from memory as "bad.pth", after checking that TorchStateDict::load() of the same
/// bytes as a file ends the same way: its structure-first reading (ZipArchive::check_layout on
/// pieces of the file) must refuse exactly what the parse of the whole image refuses, with the
/// same message, and accept what it accepts.
TorchStateDict load_bad(const Bytes& b, const ZipLimits& limits = {}) {
    static const std::string path =
        (fs::temp_directory_path() / ("medimg_bad_" + std::to_string(::getpid()) + ".pth")).string();
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
        BOOST_REQUIRE_MESSAGE(out.good(), "cannot write " << path);
    }
    const auto outcome = [](const std::function<void()>& load) -> std::string {
        try {
            load();
            return "loaded";
        } catch (const IoError& e) {
            return e.what();
        }
    };
    const std::string from_memory = outcome([&] { TorchStateDict::load_from_memory(b, path, limits); });
    const std::string from_file = outcome([&] { TorchStateDict::load(path, limits); });
    fs::remove(path);
    BOOST_TEST(from_file == from_memory);
    return TorchStateDict::load_from_memory(b, "bad.pth", limits);
}
/// For BOOST_CHECK_EXCEPTION: one line, starting "pth: bad.pth: ", containing `fragment`.
struct pth_message {
    std::string fragment;
    explicit pth_message(std::string f) : fragment(std::move(f)) {}
    bool operator()(const IoError& e) const {
        const std::string m = e.what();
        const bool ok = m.rfind("pth: bad.pth: ", 0) == 0 && m.find(fragment) != std::string::npos &&
                        m.find('\n') == std::string::npos;
        if (!ok) BOOST_TEST_MESSAGE("message was: " << m);
        return ok;
    }
};
#define CHECK_REFUSED(bytes, fragment) BOOST_CHECK_EXCEPTION(load_bad(bytes), IoError, pth_message(fragment))

/// Each key of `f` against the JSON make_pth_fixtures.py wrote: dtype, shape, strides, values.
void check_against_json(const TorchStateDict& f, const nlohmann::ordered_json& want) {
    std::vector<std::string> want_keys;
    for (const auto& kv : want.items()) want_keys.push_back(kv.key());
    BOOST_TEST(f.keys() == want_keys, boost::test_tools::per_element());
    for (const auto& [key, w] : want.items()) {
        BOOST_TEST_CONTEXT("tensor " << key) {
            const std::string dt = w.at("dtype");
            BOOST_TEST(torch_dtype_name(f.dtype(key)) == dt);
            BOOST_TEST(f.shape(key) == Shape(w.at("shape").get<std::vector<std::int64_t>>()));
            BOOST_TEST(f.stride(key) == w.at("stride").get<std::vector<std::int64_t>>(), boost::test_tools::per_element());
            BOOST_TEST(f.storage_offset(key) == w.at("offset").get<std::int64_t>());
            const auto& values = w.at("values");
            if (dtype_is_floating(f.dtype(key))) {
                const auto t = f.tensor<double>(key);
                BOOST_REQUIRE(t.numel() == static_cast<std::int64_t>(values.size()));
                for (std::size_t i = 0; i < values.size(); ++i) {
                    const double v = values[i].is_string() ? std::stod(values[i].get<std::string>()) : values[i].get<double>();
                    BOOST_TEST(t[static_cast<std::int64_t>(i)] == v);  // exact: every stored value is a double
                }
            } else {
                const auto t = f.tensor<std::int64_t>(key);
                BOOST_REQUIRE(t.numel() == static_cast<std::int64_t>(values.size()));
                for (std::size_t i = 0; i < values.size(); ++i)
                    BOOST_TEST(t[static_cast<std::int64_t>(i)] ==
                               (values[i].is_boolean() ? std::int64_t{values[i].get<bool>()} : values[i].get<std::int64_t>()));
            }
        }
    }
}

/// The same values bit for bit (inf equal to inf), as read from two files of one state_dict.
void check_identical(const Tensor<double, Cpu>& a, const Tensor<double, Cpu>& b) {
    BOOST_REQUIRE(a.shape() == b.shape());
    for (std::int64_t i = 0; i < a.numel(); ++i) BOOST_TEST(std::memcmp(&a[i], &b[i], sizeof(double)) == 0);
}

/// Every entry of a torch.save archive, repacked (deflated and/or ZIP64) by build_zip.
Bytes repack(const Bytes& original, std::uint16_t method, bool zip64) {
    ZipArchive zip(original.data(), original.size(), "original");
    std::vector<ZipItem> items;
    for (const ZipEntry& e : zip.entries()) {
        const ZipData d = zip.read(e);
        const std::uint8_t* p = d.data(original.data());
        items.push_back({e.name, Bytes(p, p + d.size), method});
    }
    ZipOptions o;
    o.zip64 = zip64;
    return build_zip(items, o);
}

struct TempDir {
    fs::path path;
    TempDir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("medimg_pth_" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string operator/(const std::string& f) const { return (path / f).string(); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(torch_pth_reading)

BOOST_AUTO_TEST_CASE(reads_every_dtype_and_view_of_the_fixture_exactly) {
    const auto f = load_torch_state_dict(kDir + "dtypes.pth");
    check_against_json(f, read_json(kDir + "dtypes.json"));
    BOOST_TEST(f.nested_under() == "");
    BOOST_TEST(f.shape("scalar").rank() == 0);
    BOOST_TEST(f.tensor<float>("scalar").item() == 2.25f);
    BOOST_TEST(f.tensor<std::int64_t>("bn.num_batches_tracked").item() == 17);
    BOOST_TEST(f.tensor<float>("f16")[4] == std::numeric_limits<float>::infinity());
    BOOST_TEST(f.tensor<float>("f16")[3] == std::ldexp(1.0f, -24));  // a subnormal half
    const auto cols = f.tensor<float>("cols");  // base[:, 1:3] of base = arange(12).reshape(3, 4) - 5.5
    BOOST_TEST(cols.shape() == (Shape{3, 2}));
    const std::vector<float> want{-4.5f, -3.5f, -0.5f, 0.5f, 3.5f, 4.5f};
    for (std::int64_t i = 0; i < 6; ++i) BOOST_TEST(cols[i] == want[static_cast<std::size_t>(i)]);
    BOOST_TEST(f.tensor<bool>("bool")[1] == false);
    BOOST_TEST(f.tensor<std::uint8_t>("u8")[1] == 255);
    BOOST_TEST(f.tensor<float>("empty").shape() == (Shape{0, 3}));
}

BOOST_AUTO_TEST_CASE(pickle_protocol_4_reads_the_same) {
    const auto a = load_torch_state_dict(kDir + "dtypes.pth");
    const auto b = load_torch_state_dict(kDir + "protocol4.pth");
    BOOST_TEST(b.keys() == a.keys(), boost::test_tools::per_element());
    for (const auto& k : a.keys()) check_identical(b.tensor<double>(k), a.tensor<double>(k));
}

BOOST_AUTO_TEST_CASE(deflated_and_zip64_repacks_read_the_same) {
    const Bytes original = read_bytes(kDir + "dtypes.pth");
    const auto a = TorchStateDict::load_from_memory(original, "dtypes.pth");
    for (const auto& [method, zip64] : std::vector<std::pair<std::uint16_t, bool>>{{8, false}, {0, true}, {8, true}}) {
        BOOST_TEST_CONTEXT("method " << method << ", zip64 " << zip64) {
            const Bytes b = repack(original, method, zip64);
            const auto f = TorchStateDict::load_from_memory(b, "repacked.pth");
            BOOST_TEST(f.keys() == a.keys(), boost::test_tools::per_element());
            for (const auto& k : a.keys()) check_identical(f.tensor<double>(k), a.tensor<double>(k));
        }
    }
}

BOOST_AUTO_TEST_CASE(tiny_model_loads_through_load_pretrained_and_matches_pytorch) {
    const auto want = read_json(kDir + "tiny_model.json");
    check_against_json(load_torch_state_dict(kDir + "tiny_model.pth"), want.at("state"));

    Rng rng(3);
    nn::Sequential<float> model;  // torch.nn.Sequential(Conv2d(1, 2, 3), BatchNorm2d(2))
    model.push_back(std::make_shared<nn::Conv2d<float>>(nn::Conv2dOptions{1, 2, 3}, rng));
    model.push_back(std::make_shared<nn::BatchNorm2d<float>>(nn::BatchNorm2dOptions{2}));
    const auto r = load_pretrained(model, kDir + "tiny_model.pth");
    BOOST_TEST(r.loaded.size() == 7u);  // 0.weight, 0.bias, 1.weight, 1.bias, running mean/var, counter
    BOOST_TEST(r.ignored.empty());
    BOOST_TEST(r.adapted.empty());

    model.eval();
    autograd::NoGrad no_grad;
    const auto x = Tensor<float>::from_vector(Shape(want.at("input_shape").get<std::vector<std::int64_t>>()),
                                              want.at("input").get<std::vector<float>>());  // (1, 1, 5, 5)
    const auto y = model(autograd::Var<float>(x)).value();                                 // (1, 2, 3, 3)
    const auto y_torch = Tensor<float>::from_vector(Shape(want.at("output_shape").get<std::vector<std::int64_t>>()),
                                                    want.at("output").get<std::vector<float>>());
    MEDIMG_CHECK_CLOSE_TENSORS(y, y_torch, test::kFloatRtol, test::kFloatAtol);
}

BOOST_AUTO_TEST_CASE(a_training_checkpoint_gives_the_state_dict_nested_under_model) {
    const auto f = load_torch_state_dict(kDir + "checkpoint.pth");
    BOOST_TEST(f.nested_under() == "model");
    check_against_json(f, read_json(kDir + "checkpoint.json"));
}

BOOST_AUTO_TEST_CASE(weights_file_picks_the_reader_by_the_first_bytes_not_the_name) {
    TempDir dir;
    fs::copy_file(kDir + "tiny_model.pth", dir / "tiny.safetensors");
    const auto a = WeightsFile::load(dir / "tiny.safetensors");
    BOOST_TEST((a.format() == WeightsFile::Format::torch));
    BOOST_TEST(a.keys().front() == "0.weight");
    BOOST_TEST(a.shape("0.weight") == (Shape{2, 1, 3, 3}));

    SafetensorsWriter w;
    w.add("x", Tensor<float>::from_vector({2}, {1.0f, 2.0f}));
    w.write(dir / "x.pth");
    const auto b = WeightsFile::load(dir / "x.pth");
    BOOST_TEST((b.format() == WeightsFile::Format::safetensors));
    BOOST_TEST(b.tensor<float>("x")[1] == 2.0f);
    BOOST_TEST(b.contains("x"));
    BOOST_TEST(!b.contains("y"));

    // The same tensors through either format load the same model.
    const auto t = load_torch_state_dict(kDir + "tiny_model.pth");
    SafetensorsWriter s;
    for (const auto& k : t.keys())
        if (t.dtype(k) == DType::I64)
            s.add(k, t.tensor<std::int64_t>(k));
        else
            s.add(k, t.tensor<float>(k));
    s.write(dir / "tiny.st");
    const auto c = WeightsFile::load(dir / "tiny.st");
    BOOST_TEST((c.format() == WeightsFile::Format::safetensors));
    for (const auto& k : t.keys()) MEDIMG_CHECK_CLOSE_TENSORS(c.tensor<float>(k), a.tensor<float>(k), 0.0, 0.0);

    BOOST_CHECK_EXCEPTION(WeightsFile::load(dir / "nope.pth"), IoError, message_contains("pth: cannot open"));
    BOOST_CHECK_EXCEPTION(WeightsFile::load(dir / "nope.safetensors"), IoError,
                          message_contains("safetensors: cannot open"));
}

BOOST_AUTO_TEST_CASE(missing_keys_and_values_out_of_range_are_named) {
    const auto f = load_torch_state_dict(kDir + "dtypes.pth");
    BOOST_CHECK_EXCEPTION(f.tensor<float>("f33"), IoError, message_contains("no tensor \"f33\" (18 tensors; closest: \"f32\""));
    BOOST_CHECK_EXCEPTION(f.tensor<std::uint8_t>("i64"), IoError,
                          message_contains("tensor 'i64': element 0 (value -1099511627776) of int64 does not fit the "
                                           "requested uint8"));
    BOOST_CHECK_EXCEPTION(f.tensor<std::int8_t>("i32"), IoError,
                          message_contains("tensor 'i32': element 2 (value 2147483647) of int32 does not fit the "
                                           "requested int8"));
}

BOOST_AUTO_TEST_CASE(legacy_torchscript_and_other_files_are_refused_with_the_reason) {
    BOOST_CHECK_EXCEPTION(load_torch_state_dict(kDir + "legacy.pth"), IoError,
                          message_contains("legacy torch.save format (PyTorch < 1.6, or _use_new_zipfile_serialization="
                                           "False) is not supported"));
    BOOST_CHECK_EXCEPTION(WeightsFile::load(kDir + "legacy.pth"), IoError, message_contains("legacy torch.save format"));
    BOOST_CHECK_EXCEPTION(load_torch_state_dict(kDir + "script.pt"), IoError,
                          message_contains("a TorchScript archive (torch.jit.save), not a torch.save state_dict"));
    BOOST_CHECK_EXCEPTION(load_torch_state_dict(kDir + "whole_model.pth"), IoError,
                          message_contains("global 'torch.nn.modules.container.Sequential' at byte 2 is not on the "
                                           "allow-list (only OrderedDict, tensors and storages)"));
    CHECK_REFUSED(Bytes{}, "file is empty (0 bytes)");
    CHECK_REFUSED((Bytes{0x80, 4, 0x95}), "a bare pickle stream, not a torch.save ZIP archive");
    CHECK_REFUSED((Bytes{'{', '"', 'a', '"'}), "not a torch.save file (no ZIP signature \"PK\" at the start; got {\"a\")");
    CHECK_REFUSED(build_zip({}), "the ZIP archive is empty");
    CHECK_REFUSED(build_zip({{"data.pkl", state_dict_pickle({})}}), "record 'data.pkl' is not inside a folder");
    CHECK_REFUSED(build_zip({{"a/version", {'3'}}}), "no 'a/data.pkl' record");
    // An empty state_dict is a valid file.
    BOOST_TEST(load_bad(torch_zip(state_dict_pickle({}), {})).size() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(torch_pth_hostile)

BOOST_AUTO_TEST_CASE(opcodes_outside_the_state_dict_subset_are_refused_by_name) {
    Pickle p;
    p.global("collections", "OrderedDict");
    const std::size_t at = p.pos();
    p.op(0x81);  // NEWOBJ
    CHECK_REFUSED(torch_zip(p.b, {}), "pickle opcode 0x81 ('NEWOBJ') at byte " + std::to_string(at) +
                                          " is not allowed in a weights file");
    for (const auto& [code, name] : std::vector<std::pair<std::uint8_t, std::string>>{
             {'i', "INST"}, {'o', "OBJ"}, {'P', "PERSID"}, {'2', "DUP"}, {'S', "STRING"}, {0x92, "NEWOBJ_EX"},
             {0x82, "EXT1"}, {'B', "BINBYTES"}, {0x8f, "EMPTY_SET"}, {'d', "DICT"}}) {
        Pickle q;
        q.op(code);
        CHECK_REFUSED(torch_zip(q.b, {}), "('" + name + "') at byte 2 is not allowed in a weights file");
    }
    Pickle q;
    q.op(0xff);
    CHECK_REFUSED(torch_zip(q.b, {}), "byte 0xff at byte 2 of data.pkl is not a pickle opcode");
}

BOOST_AUTO_TEST_CASE(globals_outside_the_allow_list_are_refused_before_anything_is_called) {
    Pickle p;  // os.system("touch /tmp/pwned"), the classic
    p.global("os", "system").str("touch /tmp/pwned").op(0x85).op('R').op('.');
    CHECK_REFUSED(torch_zip(p.b, {}),
                  "global 'os.system' at byte 2 is not on the allow-list (only OrderedDict, tensors and storages)");
    Pickle s;  // the same through STACK_GLOBAL (protocol 4)
    s.op(0x8c).op(8);
    append(s.b, std::string("builtins"));
    s.op(0x8c).op(4);
    append(s.b, std::string("eval"));
    s.op(0x93);
    CHECK_REFUSED(torch_zip(s.b, {}), "global 'builtins.eval' at byte 18 is not on the allow-list");
    Pickle v1;  // an older tensor rebuild function is not on the list either
    v1.global("torch._utils", "_rebuild_tensor");
    CHECK_REFUSED(torch_zip(v1.b, {}), "global 'torch._utils._rebuild_tensor' at byte 2 is not on the allow-list");
    Pickle c;
    c.global("torch", "ComplexFloatStorage");
    CHECK_REFUSED(torch_zip(c.b, {}), "storage type 'torch.ComplexFloatStorage' is not supported");
    Pickle n;  // a newline-less GLOBAL
    n.op('c');
    append(n.b, std::string(300, 'x'));
    CHECK_REFUSED(torch_zip(n.b, {}), "GLOBAL at byte 2 has no newline-terminated name within 200 bytes");
    Pickle st;  // storage types may not be called
    st.global("torch", "FloatStorage").op(')').op('R');
    CHECK_REFUSED(torch_zip(st.b, {}), "REDUCE at byte 23 calls a storage type");
    Pickle od;
    od.global("collections", "OrderedDict").str("x").op(0x85).op('R');
    CHECK_REFUSED(torch_zip(od.b, {}), "OrderedDict at byte 34 is called with 1 argument; only OrderedDict() is allowed");
}

BOOST_AUTO_TEST_CASE(malformed_pickles_are_refused_with_their_byte_offset) {
    const auto pk = [](std::initializer_list<std::uint8_t> ops) {
        Pickle p;
        for (auto o : ops) p.op(o);
        return torch_zip(p.b, {});
    };
    CHECK_REFUSED(pk({'}'}), "data.pkl ends at byte 3 without a STOP opcode");
    CHECK_REFUSED(pk({'.'}), "STOP at byte 2 leaves 0 objects and 0 marks; expected exactly one object");
    CHECK_REFUSED(pk({'}', '}', '.'}), "STOP at byte 4 leaves 2 objects");
    CHECK_REFUSED(pk({'s'}), "SETITEM at byte 2 needs 1 object on the pickle stack");
    CHECK_REFUSED(pk({'}', '(', 'N', 'N', 'N', 'u'}), "SETITEMS at byte 7 has an odd number (3) of keys and values");
    CHECK_REFUSED(pk({']', 'N', 'N', 's'}), "SETITEM at byte 5 adds to a list, not to a dict");
    CHECK_REFUSED(pk({'t'}), "TUPLE at byte 2 has no MARK before it");
    CHECK_REFUSED(pk({'h', 5}), "BINGET at byte 2 reads memo slot 5, which was never stored");
    CHECK_REFUSED(pk({'(', 'q', 0}), "BINPUT at byte 3 needs 1 object on the pickle stack above the last MARK");
    CHECK_REFUSED(pk({0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9}), "integer of 9 bytes at byte 2 does not fit 64 bits");
    CHECK_REFUSED(pk({'X', 5, 0, 0, 0, 'a'}), "data.pkl ends inside opcode BINUNICODE at byte 2");
    CHECK_REFUSED(pk({0x8c, 2, 0xc3, 0x28}), "string at byte 2 is not valid UTF-8 ('\\xc3(')");
    CHECK_REFUSED(pk({']', '}', 'b'}), "BUILD at byte 4 sets the state of a list from a dict");
    CHECK_REFUSED(pk({0x80, 6}), "pickle protocol 6 at byte 2 is newer than any Python writes (5)");
    CHECK_REFUSED(pk({0x95, 0xff, 0xff, 0, 0, 0, 0, 0, 0}), "FRAME at byte 2 of 65535 bytes runs past the end");
    CHECK_REFUSED(pk({'N', ')', 'R'}), "REDUCE at byte 4 calls None");
    // Not a dict of tensors.
    CHECK_REFUSED(pk({']', '.'}), "data.pkl holds a list, not a dict; expected a state_dict");
    Pickle e;
    e.op('}').str("epoch").integer(3).op('s').op('.');
    CHECK_REFUSED(torch_zip(e.b, {}), "data.pkl holds a dict in which 'epoch' maps to an int, not a tensor; expected a "
                                      "state_dict (str -> tensor), or one nested under 'state_dict', 'model'");
    Pickle k;
    k.op('}').integer(1).op('}').op('s').op('.');
    CHECK_REFUSED(torch_zip(k.b, {}), "a key is an int, not a str");
    Pickle m;
    m.op('}').str("model").integer(1).op('s').op('.');
    CHECK_REFUSED(torch_zip(m.b, {}), "a checkpoint dict whose 'model' is an int, not a state_dict");
    // Every truncation of a real data.pkl is refused cleanly.
    const Bytes good = state_dict_pickle({{"w"}, {"b", "FloatStorage", "0", 4, 2, {2}, {1}}});
    BOOST_TEST(load_bad(torch_zip(good, {{"0", f32_bytes({1, 2, 3, 4})}})).size() == 2u);
    for (std::size_t n = 0; n < good.size(); ++n)
        BOOST_CHECK_THROW(load_bad(torch_zip(Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)),
                                             {{"0", f32_bytes({1, 2, 3, 4})}})),
                          IoError);
}

BOOST_AUTO_TEST_CASE(tensor_calls_with_wrong_arguments_are_refused) {
    const Bytes data = f32_bytes({1, 2, 3, 4});
    const auto with = [&](const std::function<void(Pickle&)>& args) {  // _rebuild_tensor_v2(<args>)
        Pickle p;
        p.ordered_dict().str("w").global("torch._utils", "_rebuild_tensor_v2").op('(');
        args(p);
        return torch_zip(p.op('t').op('R').op('s').op('.').b, {{"0", data}});
    };
    const auto storage = [](Pickle& p) {
        p.op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").integer(4).op('t').op('Q');
    };
    CHECK_REFUSED(with([&](Pickle& p) { storage(p); }), "takes 6 or 7 arguments, got 1");
    CHECK_REFUSED(with([&](Pickle& p) { p.str("s").integer(0).ints({4}).ints({1}).op(0x89).ordered_dict(); }),
                  "the storage is a str");
    CHECK_REFUSED(with([&](Pickle& p) { storage(p); p.integer(0).ints({4}).ints({1, 1}).op(0x89).ordered_dict(); }),
                  "size has 1 dimensions but stride 2");
    CHECK_REFUSED(with([&](Pickle& p) { storage(p); p.integer(0).ints({-4}).ints({1}).op(0x89).ordered_dict(); }),
                  "the size holds an int below 0; expected non-negative ints");
    CHECK_REFUSED(with([&](Pickle& p) { storage(p); p.integer(0).ints({4}).str("x").op(0x89).ordered_dict(); }),
                  "the stride is a str, not a tuple");
    CHECK_REFUSED(with([&](Pickle& p) {
                      storage(p);
                      p.integer(0).ints({4}).ints({1}).op(0x89).ordered_dict().op('(').str("h").integer(1).op('u');
                  }),
                  "backward_hooks must be an empty OrderedDict (hooks are code)");
    CHECK_REFUSED(with([&](Pickle& p) {
                      storage(p);
                      p.integer(0).ints({4}).ints({1}).op(0x89).ordered_dict().op('}').str("conj").op(0x88).op('s');
                  }),
                  "tensor metadata with a set conj/neg bit (complex views) is not supported");
    // ... and the accepted variants: metadata of false bits, a Parameter around the tensor.
    BOOST_TEST(load_bad(with([&](Pickle& p) {
                   storage(p);
                   p.integer(0).ints({4}).ints({1}).op(0x89).ordered_dict().op('}').str("neg").op(0x89).op('s');
               })).tensor<float>("w")[3] == 4.0f);
    Pickle param;
    param.ordered_dict().str("w").global("torch._utils", "_rebuild_parameter").op('(');
    tensor_call(param, TensorSpec{}).op(0x88).ordered_dict().op('t').op('R').op('s').op('.');
    BOOST_TEST(load_bad(torch_zip(param.b, {{"0", data}})).tensor<float>("w")[2] == 3.0f);
    // Persistent ids.
    Pickle pid;
    pid.ordered_dict().str("w").op('(').str("file").op('t').op('Q');
    CHECK_REFUSED(torch_zip(pid.b, {}), "persistent id at byte 46 is not ('storage', torch.<T>Storage, key, location, "
                                        "numel): not 5 items");
    CHECK_REFUSED(one_tensor_zip({"w", "FloatStorage", "../0"}, data), "storage key '../0' at byte");
    TensorSpec a{"a"}, b{"b", "IntStorage"};
    CHECK_REFUSED(torch_zip(state_dict_pickle({a, b}), {{"0", data}}),
                  "storage '0' is 4 elements of float32 at first and 4 of int32 at byte");
}

BOOST_AUTO_TEST_CASE(views_reaching_past_their_storage_are_refused) {
    const Bytes data = f32_bytes({1, 2, 3, 4});
    CHECK_REFUSED(one_tensor_zip({"w", "FloatStorage", "0", 4, 1, {4}, {1}}, data),
                  "tensor 'w': size [4] with stride [1] at storage offset 1 reaches element 4 but storage record "
                  "'archive/data/0' has 4 elements");
    CHECK_REFUSED(one_tensor_zip({"w", "FloatStorage", "0", 4, 0, {2, 2}, {3, 1}}, data), "reaches element 4");
    CHECK_REFUSED(one_tensor_zip({"w", "FloatStorage", "0", 4, 0, {2}, {4}}, data), "reaches element 4");
    CHECK_REFUSED(one_tensor_zip({"w", "FloatStorage", "0", 4, 0, {3, 1ll << 62}, {1, 1}}, data),
                  "overflows a 64-bit element count");
    CHECK_REFUSED(one_tensor_zip({"w", "FloatStorage", "0", 4, 0, {2, 2}, {1ll << 62, 1ll << 62}}, data),
                  "overflows a 64-bit index");
    CHECK_REFUSED(one_tensor_zip({"w", "FloatStorage", "0", 4, 0, {1000}, {0}}, data),
                  "has more elements (1000) than its storage (4): a self-overlapping view (expand())");
    CHECK_REFUSED(one_tensor_zip({"w", "FloatStorage", "0", 4, 0, {1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1}}, data),
                  "size [1,1,1,1,1,1,1] has rank 7, more than medimg's maximum of 6");
    CHECK_REFUSED(one_tensor_zip({"w", "FloatStorage", "0", 5}, data),
                  "storage record 'archive/data/0' holds 16 bytes but its persistent id says 5 elements of float32");
    CHECK_REFUSED(one_tensor_zip({"w", "DoubleStorage", "0", 4}, data), "holds 16 bytes but its persistent id says 4");
    CHECK_REFUSED(one_tensor_zip({"w", "FloatStorage", "0", 1ll << 62}, data), "holds 16 bytes");
    CHECK_REFUSED(torch_zip(state_dict_pickle({{"w", "FloatStorage", "7"}}), {{"0", data}}),
                  "tensor 'w': its storage record 'archive/data/7' is missing from the archive");
    // Within bounds: an empty view anywhere, a strided one, overlapping strides (gathered).
    BOOST_TEST(load_bad(one_tensor_zip({"w", "FloatStorage", "0", 4, 99, {0, 5}, {5, 1}}, data)).shape("w") ==
               (Shape{0, 5}));
    const auto f = load_bad(one_tensor_zip({"w", "FloatStorage", "0", 4, 1, {2, 2}, {1, 1}}, data));
    const auto w = f.tensor<float>("w");  // [[2, 3], [3, 4]]
    BOOST_TEST(w[0] == 2.0f);
    BOOST_TEST(w[1] == 3.0f);
    BOOST_TEST(w[2] == 3.0f);
    BOOST_TEST(w[3] == 4.0f);
}

BOOST_AUTO_TEST_CASE(numbers_of_every_width_in_the_pickle_are_read) {
    // numel 70000 (BININT), offset 300 (BININT2), size 2^33 / stride 0 of an empty tensor (LONG1).
    const Bytes data(70000 * 4, 0);
    const auto f = load_bad(one_tensor_zip({"w", "FloatStorage", "0", 70000, 300, {4, 2}, {2, 1}}, data));
    BOOST_TEST(f.storage_offset("w") == 300);
    BOOST_TEST(load_bad(one_tensor_zip({"w", "FloatStorage", "0", 70000, 0, {0, 1ll << 33}, {1, 0}}, data)).shape("w") ==
               (Shape{0, 1ll << 33}));
}

BOOST_AUTO_TEST_CASE(byteorder_other_than_little_is_refused) {
    const Bytes pkl = state_dict_pickle({{"w"}});
    const Bytes data = f32_bytes({1, 2, 3, 4});
    auto with_order = [&](const std::string& order) {
        return build_zip({{"a/data.pkl", pkl}, {"a/byteorder", Bytes(order.begin(), order.end())}, {"a/data/0", data}});
    };
    BOOST_TEST(load_bad(with_order("little")).tensor<float>("w")[0] == 1.0f);
    CHECK_REFUSED(with_order("big"), "the byteorder record says 'big'; medimg reads little-endian files only");
}

BOOST_AUTO_TEST_CASE(zip_bombs_are_stopped_at_the_declared_size_the_ratio_and_the_total_cap) {
    const Bytes zeros(10 << 20, 0);  // 10 MiB of zeros deflate to ~10 KB
    ZipItem bomb{"archive/data/0", zeros, 8};
    bomb.declared = 16;                // ... but say 16 bytes
    bomb.crc = crc_of(Bytes(16, 0));
    const Bytes pkl = state_dict_pickle({{"w"}});
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}, bomb}),
                  "entry 'archive/data/0': inflates to more than its declared 16 bytes (a zip bomb, or a corrupt header)");

    ZipItem huge{"archive/data/0", Bytes(64, 1), 8};
    huge.declared = 4'000'000'000;  // from a few compressed bytes: impossible for deflate
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}, huge}),
                  "declares 4000000000 bytes inflated from ");
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}, huge}), "beyond deflate's maximum ratio of 1032:1");

    const Bytes data = f32_bytes({1, 2, 3, 4});
    const Bytes deflated = torch_zip(pkl, {{"0", data}}, {}, 8);
    BOOST_TEST(load_bad(deflated).tensor<float>("w")[3] == 4.0f);  // a deflated data.pkl loads
    ZipLimits small;
    small.max_inflated_bytes = pkl.size() + 8;  // data.pkl fits, the storage's 16 bytes do not
    BOOST_CHECK_EXCEPTION(load_bad(deflated, small), IoError, pth_message("would pass the archive's limit of"));

    // A data.pkl larger than any state_dict's is refused before it is inflated.
    const Bytes big_pkl((16u << 20) + 1, 0);
    CHECK_REFUSED(build_zip({{"archive/data.pkl", big_pkl, 8}}),
                  "data.pkl is 16777217 bytes, more than the limit of 16777216 for a state_dict's pickle");

    // An entry whose local header and data lie inside another entry's data: the overlapping-entry bomb.
    Bytes inner = build_zip({{"archive/data/0", data}});
    inner.resize(30 + 14 + data.size());  // its local header and data only
    ZipOptions nested;
    nested.central_only.push_back({{"archive/data/0", data}, 30 + 9});  // inside "archive/a"'s data
    CHECK_REFUSED(build_zip({{"archive/a", inner}, {"archive/data.pkl", pkl}}, nested),
                  "entries 'archive/a' and 'archive/data/0' overlap in the file");
}

BOOST_AUTO_TEST_CASE(corrupt_archives_are_refused_with_the_fault) {
    const Bytes pkl = state_dict_pickle({{"w"}});
    const Bytes data = f32_bytes({1, 2, 3, 4});
    ZipItem bad_crc{"archive/data/0", data};
    bad_crc.crc = 0x12345678;
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}, bad_crc}),
                  "entry 'archive/data/0': CRC-32 mismatch (0x");
    Bytes flipped = torch_zip(pkl, {{"0", data}});  // one bit of the stored float flipped
    const auto at = std::search(flipped.begin(), flipped.end(), data.begin(), data.end());
    BOOST_REQUIRE(at != flipped.end());
    at[5] ^= 1;
    CHECK_REFUSED(flipped, "CRC-32 mismatch");

    ZipItem corrupt{"archive/data/0", data, 8};
    corrupt.compressed = Bytes{0xff, 0xff, 0xff, 0xff};
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}, corrupt}), "entry 'archive/data/0': corrupt deflate data (zlib: ");
    ZipItem cut{"archive/data/0", data, 8};
    Bytes d = deflate_raw(data);
    d.resize(d.size() / 2);
    cut.compressed = d;
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}, cut}), "the deflate stream ends early");
    ZipItem enc{"archive/data/0", data};
    enc.flags = 1;
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}, enc}), "entry 'archive/data/0': is encrypted");
    ZipItem bz{"archive/data/0", data, 12};
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}, bz}),
                  "compression method 12 (bzip2) is not supported (only 0, stored, and 8, deflated)");
    ZipItem renamed{"archive/data/0", data};
    renamed.local_name = "archive/data/1";
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}, renamed}), "names 'archive/data/1' instead");
    ZipItem short_stored{"archive/data/0", data};
    short_stored.declared = 20;
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}, short_stored}),
                  "stored entry has 16 bytes in the file but declares 20 uncompressed");
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}, {"archive/data.pkl", pkl}}),
                  "entry 'archive/data.pkl': the name appears twice in the central directory");
    ZipOptions spanned;
    spanned.disk = 1;
    CHECK_REFUSED(build_zip({{"archive/data.pkl", pkl}}, spanned), "multi-disk (spanned) archives are not supported");
    ZipLimits few;
    few.max_entries = 2;
    BOOST_CHECK_EXCEPTION(load_bad(torch_zip(pkl, {{"0", data}}), few), IoError,
                          pth_message("the archive declares 3 entries, more than the limit of 2"));

    // ZIP64: placeholders without a locator, a locator pointing nowhere.
    ZipOptions z64;
    z64.zip64 = true;
    Bytes z = torch_zip(pkl, {{"0", data}}, z64);
    BOOST_TEST(load_bad(z).tensor<float>("w")[1] == 2.0f);
    Bytes no_locator = z;
    no_locator[no_locator.size() - 22 - 20] = 'X';  // the locator's signature
    CHECK_REFUSED(no_locator, "holds ZIP64 placeholders (0xffff...) but no ZIP64 locator precedes it");
    Bytes wrong = z;
    wrong[wrong.size() - 22 - 20 + 8] ^= 0x10;  // the locator's offset of the ZIP64 record
    CHECK_REFUSED(wrong, "ZIP64");

    // Every truncation of a real file, and no end record at all.
    const Bytes real = read_bytes(kDir + "tiny_model.pth");
    for (std::size_t n = 0; n < real.size(); n += 7)
        BOOST_CHECK_EXCEPTION(load_bad(Bytes(real.begin(), real.begin() + static_cast<std::ptrdiff_t>(n))), IoError,
                              pth_message(""));
    CHECK_REFUSED(Bytes(real.begin(), real.end() - 30),
                  "no end of central directory record (the file is truncated, or not a ZIP archive)");
}

/// The offset of the end of central directory record (no comment) and the central directory's.
std::uint64_t cd_offset_of(const Bytes& zip) {
    const std::uint8_t* r = zip.data() + zip.size() - 22;
    return r[16] | (r[17] << 8) | (r[18] << 16) | (static_cast<std::uint64_t>(r[19]) << 24);
}
void set_cd_offset(Bytes& zip, std::uint64_t v) {
    for (int k = 0; k < 4; ++k) zip[zip.size() - 22 + 16 + static_cast<std::size_t>(k)] = static_cast<std::uint8_t>(v >> (8 * k));
}

BOOST_AUTO_TEST_CASE(every_byte_of_the_file_must_belong_to_the_archive) {
    // So that a file's size is what its directory says it needs: load() reads the end records, the
    // directory and the local headers first, and only then the data (a 3 GB file with a few bytes
    // of archive in it is refused after reading those; tests/programs/bad_inputs.sh runs that case
    // under a 2 GiB address-space limit).
    const Bytes pkl = state_dict_pickle({{"w"}});
    const Bytes data = f32_bytes({1, 2, 3, 4});
    const Bytes good = torch_zip(pkl, {{"0", data}});
    BOOST_TEST(load_bad(good).tensor<float>("w")[2] == 3.0f);

    // 100 bytes inserted before the central directory, its offset moved to match.
    Bytes inserted = good;
    const std::uint64_t cd = cd_offset_of(good);
    inserted.insert(inserted.begin() + static_cast<std::ptrdiff_t>(cd), 100, 0xAB);
    set_cd_offset(inserted, cd + 100);
    CHECK_REFUSED(inserted, "100 bytes at offset " + std::to_string(cd) + " after entry 'archive/version' that the "
                  "archive does not account for (the central directory is at " + std::to_string(cd + 100) +
                  "; data prepended or inserted)");
    // Data prepended (a self-extractor's stub): the offsets no longer meet.
    Bytes prepended = good;
    prepended.insert(prepended.begin(), {'P', 'K', 3, 4, 0, 0, 0, 0});
    CHECK_REFUSED(prepended, "8 bytes between the central directory and the end of central directory record, which "
                  "the archive does not account for");
    // An entry written with a data descriptor may be followed by its 12 to 24 bytes, no more.
    ZipItem described{"archive/data/0", data};
    described.flags = 0x0008;
    Bytes with_descriptor = build_zip({{"archive/data.pkl", pkl}, described, {"archive/version", {'3', '\n'}}});
    BOOST_TEST(load_bad(with_descriptor).tensor<float>("w")[0] == 1.0f);
    const std::uint64_t second = 30 + 16 + pkl.size() + 30 + 14 + data.size();  // where archive/version's header is
    for (std::size_t extra : {16, 24, 25}) {
        Bytes b = with_descriptor;
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(second), extra, 0);  // offsets of what follows moved below
        BOOST_TEST_CONTEXT(extra << " bytes after the descriptor-flagged entry") {
            // archive/version's local header offset (the last central directory entry's) and the directory's.
            const std::uint64_t cdo = cd_offset_of(with_descriptor) + extra;
            set_cd_offset(b, cdo);
            const std::size_t last = b.size() - 22 - (46 + 15);  // "archive/version" is 15 bytes
            for (int k = 0; k < 4; ++k)
                b[last + 42 + static_cast<std::size_t>(k)] = static_cast<std::uint8_t>((second + extra) >> (8 * k));
            if (extra <= 24) BOOST_TEST(load_bad(b).tensor<float>("w")[3] == 4.0f);
            else CHECK_REFUSED(b, "25 bytes at offset " + std::to_string(second) + " after entry 'archive/data/0'");
        }
    }
    // The central directory's size is capped like the entry count.
    ZipLimits small;
    small.max_directory_bytes = 100;
    BOOST_CHECK_EXCEPTION(load_bad(good, small), IoError,
                          pth_message("the central directory is " + std::to_string(good.size() - 22 - cd) +
                                      " bytes, more than the limit of 100 (ZipLimits::max_directory_bytes)"));
}

BOOST_AUTO_TEST_CASE(every_byte_corruption_of_a_small_file_is_refused_or_read_never_worse) {
    // Each byte of a small valid archive replaced by three values: the load either succeeds (and
    // every tensor reads) or throws IoError; any other exception, crash or sanitizer report fails.
    const Bytes good = torch_zip(state_dict_pickle({{"w", "FloatStorage", "0", 4, 0, {2, 2}, {1, 2}}, {"b", "HalfStorage", "1", 2, 0, {2}, {1}}}),
                                 {{"0", f32_bytes({1, 2, 3, 4})}, {"1", Bytes{0, 0x3c, 0, 0xc0}}});
    std::size_t loaded = 0, refused = 0;
    for (std::size_t i = 0; i < good.size(); ++i)
        for (std::uint8_t v : {std::uint8_t(0), std::uint8_t(0xff), std::uint8_t(good[i] ^ 0x01)}) {
            Bytes b = good;
            b[i] = v;
            try {
                const auto f = load_bad(b);
                for (const auto& k : f.keys()) (void)f.tensor<double>(k);
                ++loaded;
            } catch (const IoError&) {
                ++refused;
            }
        }
    BOOST_TEST(loaded > 0u);
    BOOST_TEST(refused > 0u);
}

BOOST_AUTO_TEST_SUITE_END()
