// SPDX-License-Identifier: MIT
// Reliability of the fit loop (train/fit.hpp) under numerical faults and interruptions, plus the
// regression tests of fuzzing findings (docs/reliability.md): a non-finite loss stops training
// naming the epoch and batch and keeps the last good checkpoints; gradient clipping matches
// torch.nn.utils.clip_grad_norm_; leftovers of a killed checkpoint write are cleaned up.
// The end-to-end kill -9 test is tests/programs/kill_resume.sh.
// Also the input rules every reader shares (#22): special files (FIFO, socket, device, folder) are
// refused before they are opened (io/input_file.hpp) and skipped by folder scans; every message
// stays on one line whatever a file name holds (escape_controls); anything reaching a program's
// main becomes one line in its own words (current_exception_message); numbers given as text are
// read whole or refused (io/text.hpp).
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zlib.h>

#include "helpers.hpp"
#include "medimg/data/dataset.hpp"
#include "medimg/data/image.hpp"
#include "medimg/data/readers.hpp"
#include "medimg/data/transforms.hpp"
#include "medimg/io/checkpoint.hpp"
#include "medimg/io/config.hpp"
#include "medimg/io/input_file.hpp"
#include "medimg/io/text.hpp"
#include "medimg/io/weights_file.hpp"
#include "medimg/nn/layers.hpp"
#include "medimg/train/fit.hpp"

using namespace medimg;
namespace fs = std::filesystem;
using test::message_contains;

namespace {

/// (N, 1, 4, 4) -> flatten -> Linear(16, 2): the smallest model fit() can train.
struct TinyNet : nn::Module<float> {
    std::shared_ptr<nn::Linear<float>> fc;
    explicit TinyNet(Rng& rng) { fc = this->register_module("fc", std::make_shared<nn::Linear<float>>(nn::LinearOptions{16, 2}, rng)); }
    Var forward(const Var& x) override { return fc->forward(autograd::flatten(x)); }
};

/// Eight 1x4x4 samples, label i % 2 (class 1 is brighter). With `poison_call` > 0 the training
/// loader's poison_call-th call (counting from 1, across epochs) returns an image full of `poison`
/// instead (val_poison_call: the same for the validation loader); with workers = 0 the calls
/// happen in batch order, so the faulty batch is known.
struct Run {
    fs::path root = fs::temp_directory_path() / ("medimg-reliability-" + std::to_string(Rng(std::random_device{}()).next_u64()));
    Rng rng{11};
    TinyNet model{rng};
    std::unique_ptr<optim::Adam<float>> opt;
    std::unique_ptr<data::DataLoader> train, val;
    train::FitContext<float, Cpu> ctx;
    train::FitOptions fo;
    int calls = 0;

    int val_calls = 0;

    Run(int poison_call, float poison, int val_poison_call = 0) {
        std::vector<std::int64_t> labels{0, 1, 0, 1, 0, 1, 0, 1};
        auto sample = [](std::int64_t i) {
            auto t = Tensor<float, Cpu>::empty({1, 4, 4});
            for (std::int64_t k = 0; k < 16; ++k) t[k] = 0.1f * static_cast<float>(k % 3) + (i % 2 ? 0.5f : 0.0f);
            return t;
        };
        train = std::make_unique<data::DataLoader>(
            labels,
            [this, sample, poison_call, poison](std::int64_t i, Rng&) {
                auto t = sample(i);
                if (++calls == poison_call) t.fill_(poison);
                return t;
            },
            data::LoaderOptions{4, true, false, 7, /*workers=*/0});
        val = std::make_unique<data::DataLoader>(
            labels,
            [this, sample, val_poison_call, poison](std::int64_t i, Rng&) {
                auto t = sample(i);
                if (++val_calls == val_poison_call) t.fill_(poison);
                return t;
            },
            data::LoaderOptions{4, false, false, 7, 0});
        opt = std::make_unique<optim::Adam<float>>(model.named_parameters(), optim::AdamOptions{});
        ctx.model = &model;
        ctx.optimizer = opt.get();
        ctx.train = train.get();
        ctx.val = val.get();
        ctx.meta.architecture = "resnet18";  // the metadata must pass io::Checkpoint's range checks (a tiny net stands in)
        ctx.meta.classes = {"a", "b"};
        ctx.meta.in_channels = 1;
        ctx.meta.image_size = 32;
        ctx.meta.mean = {0.0};
        ctx.meta.std = {1.0};
        fo.epochs = 3;
        fo.checkpoint_metric = "val_loss";  // improves every epoch here, so best is rewritten each time
        fo.output_dir = root.string();
    }
    ~Run() { fs::remove_all(root); }
    fs::path checkpoint(const char* name) const { return root / "checkpoints" / name; }
    std::size_t csv_rows() const {
        std::ifstream in(root / "metrics.csv");
        std::size_t n = 0;
        for (std::string l; std::getline(in, l);) ++n;
        return n ? n - 1 : 0;
    }
};

/// A FIFO that cannot hang the test: were a reader to open it (the bug under test), a thread opens
/// it for writing and closes it again, so that the reader sees an empty file and the test fails on
/// the message instead of waiting forever for a writer.
struct SafeFifo {
    std::string path;
    std::atomic<bool> stop{false};
    std::thread unblocker;
    explicit SafeFifo(std::string p) : path(std::move(p)) {
        BOOST_REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
        unblocker = std::thread([this] {
            while (!stop) {
                const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);  // succeeds only while a reader has it open
                if (fd >= 0) ::close(fd);
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            }
        });
    }
    ~SafeFifo() {
        stop = true;
        unblocker.join();
    }
};

/// A Unix-domain socket bound at `path` (the file stays after the socket is closed).
void make_socket(const std::string& path) {
    const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
    BOOST_REQUIRE(s >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    BOOST_REQUIRE(path.size() < sizeof a.sun_path);
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    BOOST_REQUIRE(::bind(s, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    ::close(s);
}

struct ScratchDir {
    fs::path path = fs::temp_directory_path() / ("medimg-special-" + std::to_string(Rng(std::random_device{}()).next_u64()));
    ScratchDir() { fs::create_directories(path); }
    ~ScratchDir() { fs::remove_all(path); }
    std::string operator/(const std::string& f) const { return (path / f).string(); }
};

/// A predicate for BOOST_CHECK_EXCEPTION: the message contains `fragment` and is one line.
auto one_line_containing(const std::string& fragment) {
    return [fragment](const std::exception& e) {
        const std::string m = e.what();
        const bool ok = m.find(fragment) != std::string::npos && m.find('\n') == std::string::npos && m.find('\r') == std::string::npos;
        if (!ok) BOOST_TEST_MESSAGE("message: " << m);
        return ok;
    };
}

void require_finite(const io::Checkpoint& ck) {
    for (const auto& [k, t] : ck.model_state<float>())
        for (std::int64_t i = 0; i < t.numel(); ++i) BOOST_REQUIRE_MESSAGE(std::isfinite(t[i]), k << "[" << i << "] is not finite");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(reliability)

BOOST_AUTO_TEST_CASE(a_nan_loss_stops_training_naming_epoch_and_batch_and_keeps_the_last_good_checkpoints) {
    // 8 samples, batch 4: epoch 1 makes calls 1-8, epoch 2 calls 9-16; call 13 opens batch 2 of epoch 2.
    Run r(13, std::numeric_limits<float>::quiet_NaN());
    std::ostringstream log;
    BOOST_CHECK_EXCEPTION(train::fit(r.ctx, r.fo, log), ValueError, message_contains("train: loss is nan at epoch 2, batch 2; stopped"));
    BOOST_TEST(r.calls == 16);  // it stopped in that batch: epoch 3 never started
    BOOST_TEST(r.csv_rows() == 1u);
    const auto last = io::Checkpoint::load(r.checkpoint("last.safetensors").string());
    const auto best = io::Checkpoint::load(r.checkpoint("best.safetensors").string());
    BOOST_TEST(last.meta().epoch == 1);
    BOOST_TEST(best.meta().epoch == 1);
    require_finite(last);
    require_finite(best);
    // The kept checkpoint is a usable one: it loads back into the model.
    Rng rng(1);
    TinyNet again(rng);
    last.load_into(again);
    std::size_t files = 0;
    for (const auto& e : fs::directory_iterator(r.root / "checkpoints")) files += e.is_regular_file();
    BOOST_TEST(files == 2u);  // best and last, no temporary file
}

BOOST_AUTO_TEST_CASE(an_inf_input_in_the_first_batch_stops_before_any_checkpoint_is_written) {
    Run r(1, std::numeric_limits<float>::infinity());
    std::ostringstream log;
    BOOST_CHECK_EXCEPTION(train::fit(r.ctx, r.fo, log), ValueError, message_contains("at epoch 1, batch 1; stopped"));
    BOOST_TEST(!fs::exists(r.checkpoint("last.safetensors")));
    BOOST_TEST(!fs::exists(r.checkpoint("best.safetensors")));
    BOOST_TEST(!fs::exists(r.root / "metrics.csv"));
}

BOOST_AUTO_TEST_CASE(a_nan_validation_loss_stops_training_before_the_checkpoints_are_overwritten) {
    // Stands for weights made non-finite by the last step of an epoch (finite training losses):
    // the validation pass of epoch 2 (calls 9-16) sees a NaN image.
    Run r(0, std::numeric_limits<float>::quiet_NaN(), 12);
    std::ostringstream log;
    BOOST_CHECK_EXCEPTION(train::fit(r.ctx, r.fo, log), ValueError,
                          message_contains("train: validation after epoch 2: evaluate: loss is nan (the model's outputs are not finite); stopped (last good checkpoints kept)"));
    BOOST_TEST(r.csv_rows() == 1u);
    const auto last = io::Checkpoint::load(r.checkpoint("last.safetensors").string());
    BOOST_TEST(last.meta().epoch == 1);
    BOOST_TEST(io::Checkpoint::load(r.checkpoint("best.safetensors").string()).meta().epoch == 1);
    require_finite(last);
}

BOOST_AUTO_TEST_CASE(stale_temporary_checkpoint_files_of_a_killed_run_are_removed) {
    // A kill -9 during save_checkpoint leaves <name>.safetensors.tmp-<16 hex>; the next run removes
    // those (and only those) before it starts.
    Run r(0, 0.0f);
    fs::create_directories(r.root / "checkpoints");
    for (const char* name : {"last.safetensors.tmp-0123456789abcdef", "best.safetensors.tmp-fedcba9876543210", "notes.txt"})
        std::ofstream(r.checkpoint(name)) << "partial";
    r.fo.epochs = 1;
    std::ostringstream log;
    train::fit(r.ctx, r.fo, log);
    BOOST_TEST(!fs::exists(r.checkpoint("last.safetensors.tmp-0123456789abcdef")));
    BOOST_TEST(!fs::exists(r.checkpoint("best.safetensors.tmp-fedcba9876543210")));
    BOOST_TEST(fs::exists(r.checkpoint("notes.txt")));
    BOOST_TEST(io::Checkpoint::load(r.checkpoint("last.safetensors").string()).meta().epoch == 1);
}

BOOST_AUTO_TEST_CASE(a_failed_write_of_metrics_csv_names_the_file_and_keeps_the_old_log) {
    // A write that fails half-way, as on a full disk: the file-size limit (RLIMIT_FSIZE) makes
    // every write past 64 bytes fail with EFBIG (SIGXFSZ ignored), for this process only.
    Run r(0, 0.0f);
    fs::create_directories(r.root);
    const auto csv = (r.root / "metrics.csv").string();
    train::MetricsCsv log(csv);
    log.append(train::EpochRow{1, 0.5, 0.5, 0.5, 0.5, 0.5, 1e-3, 1.0});
    std::string before;
    std::getline(std::ifstream(csv), before, '\0');
    BOOST_REQUIRE(before.size() > 64);
    ::rlimit old{};
    BOOST_REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    ::rlimit small = old;
    small.rlim_cur = 64;
    BOOST_REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string message;
    try {
        log.append(train::EpochRow{2, 0.4, 0.6, 0.4, 0.6, 0.6, 1e-3, 1.0});
    } catch (const IoError& e) {
        message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
    BOOST_TEST(message.find("train: cannot write " + csv + ": writing " + csv + ".tmp-") != std::string::npos, message);
    BOOST_TEST(message.find("File too large") != std::string::npos, message);
    std::string after;
    std::getline(std::ifstream(csv), after, '\0');
    BOOST_TEST(after == before);
    int leftovers = 0;  // the temporary file is gone
    for (const auto& e : fs::directory_iterator(r.root)) leftovers += e.path().filename().string().find(".tmp-") != std::string::npos;
    BOOST_TEST(leftovers == 0);
}

BOOST_AUTO_TEST_CASE(config_text_is_bounded_in_size_and_nesting) {
    // Larger than io::max_config_bytes: refused before yaml-cpp sees it.
    const std::string big = "# " + std::string(io::max_config_bytes, 'x') + "\n";
    BOOST_CHECK_EXCEPTION(io::parse_config(big, "big.yaml"), ConfigError,
                          message_contains("config: big.yaml: longer than 1048576 bytes (io::max_config_bytes)"));
    // Nesting deeper than yaml-cpp's depth guard (2000), flow and block style: a clear error, not
    // a stack overflow.
    BOOST_CHECK_EXCEPTION(io::parse_config(std::string(100000, '['), "deep.yaml"), ConfigError, message_contains("not valid YAML"));
    std::string block;
    for (int i = 0; i < 50000; ++i) block += "- ";
    BOOST_CHECK_EXCEPTION(io::parse_config(block + "x\n", "deep.yaml"), ConfigError, message_contains("not valid YAML"));
    // A folder given as the config file.
    BOOST_CHECK_EXCEPTION(io::load_config(fs::temp_directory_path().string()), ConfigError, message_contains("is a folder, not a regular file"));
}

// Fuzzing finding 1 (fuzz_config, tests/fuzz/corpus/fuzz_config/regression-sequence-key.yaml): a
// key that is a list or a map made yaml-cpp throw YAML::TypedBadConversion out of parse_config,
// which is not a medimg::Error and whose message named neither the file nor the key.
BOOST_AUTO_TEST_CASE(config_keys_that_are_not_names_give_a_config_error) {
    BOOST_CHECK_EXCEPTION(io::parse_config("data: {train: d, [td, s0.25]: 1}\n", "seq.yaml"), ConfigError,
                          message_contains("config: seq.yaml: a key in 'data' is not a name, got"));
    BOOST_CHECK_EXCEPTION(io::parse_config("{a: 1}: 2\n", "map.yaml"), ConfigError,
                          message_contains("config: map.yaml: a top-level key is not a name, got"));
    BOOST_CHECK_EXCEPTION(io::parse_config("data:\n  augment:\n    ? [x]\n    : 1\n", "block.yaml"), ConfigError,
                          message_contains("a key in 'data.augment' is not a name"));
    std::ifstream in(std::string(MEDIMG_TEST_DATA_DIR) + "/../fuzz/corpus/fuzz_config/regression-sequence-key.yaml");
    std::stringstream text;
    text << in.rdbuf();
    BOOST_REQUIRE(!text.str().empty());
    BOOST_CHECK_EXCEPTION(io::parse_config(text.str(), "found.yaml"), ConfigError, message_contains("is not a name"));
}

// Fuzzing finding 2 (fuzz_config, regression-carriage-return.yaml): a lone carriage return at the
// end of a path ("train: data/train\r  # comment") stayed in the value, and to_yaml wrote it back
// so that it was lost on reading: the config stored in checkpoints differed from the one used.
// Control characters in paths and names are now refused; CRLF files still read normally.
BOOST_AUTO_TEST_CASE(config_values_with_control_characters_are_refused_and_crlf_files_still_read) {
    BOOST_CHECK_EXCEPTION(io::parse_config("data: {train: \"data/train\\r\"}\n", "cr.yaml"), ConfigError,
                          message_contains("config: cr.yaml: 'data.train' contains the control character 0x0d"));
    BOOST_CHECK_EXCEPTION(io::parse_config("data:\n  train: data/train\r  # one folder per class\n", "cr.yaml"), ConfigError,
                          message_contains("'data.train' contains the control character 0x0d"));
    BOOST_CHECK_EXCEPTION(io::parse_config("", "x.yaml", {"data.classes=[\"a\\tb\", c]"}), ConfigError,
                          message_contains("'data.classes' contains the control character 0x09"));
    std::ifstream in(std::string(MEDIMG_TEST_DATA_DIR) + "/../fuzz/corpus/fuzz_config/regression-carriage-return.yaml", std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    BOOST_REQUIRE(!text.str().empty());
    BOOST_CHECK_EXCEPTION(io::parse_config(text.str(), "found.yaml"), ConfigError, message_contains("control character 0x0d"));
    // CRLF line endings are line breaks, not part of the values, and the result round-trips.
    const auto c = io::parse_config("data:\r\n  train: data/train\r\n  classes: [normal, lesao]\r\n", "crlf.yaml");
    BOOST_TEST(c.data.train == "data/train");
    BOOST_TEST(io::to_yaml(io::parse_config(io::to_yaml(c), "again.yaml")) == io::to_yaml(c));
}

// Fuzzing finding 3 (fuzz_image, regression-undefined-tables.jpg): a JPEG whose scan uses a
// Huffman table (or whose component uses a quantization table) that was never defined made stb_image
// 2.27 decode with uninitialised memory: an out-of-bounds read in stbi__jpeg_huff_decode. The
// header parser now refuses such files before stb sees them; valid progressive files still decode.
BOOST_AUTO_TEST_CASE(jpegs_using_undefined_tables_are_refused_before_decoding) {
    auto read_bytes = [](const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        std::vector<std::uint8_t> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        BOOST_REQUIRE_MESSAGE(!b.empty(), "cannot read " << path);
        return b;
    };
    const std::string images = std::string(MEDIMG_TEST_DATA_DIR) + "/images/";
    const std::string corpus = std::string(MEDIMG_TEST_DATA_DIR) + "/../fuzz/corpus/fuzz_image/";
    BOOST_CHECK_EXCEPTION(data::read_image_from_memory(read_bytes(corpus + "regression-undefined-tables.jpg"), "found.jpg"), IoError,
                          message_contains("image: found.jpg: corrupt JPEG: component 1 uses quantization table 0, which is not defined"));
    const auto gray = read_bytes(images + "gray.jpg");  // baseline, one component, tables DC 0 / AC 0 / quantization 0
    auto find = [&](std::uint8_t marker) {
        for (std::size_t i = 0; i + 1 < gray.size(); ++i)
            if (gray[i] == 0xFF && gray[i + 1] == marker) return i;
        BOOST_FAIL("marker not found");
        return std::size_t{0};
    };
    auto ac1 = gray;  // the scan's component asks for AC table 1
    ac1[find(0xDA) + 6] = 0x01;
    BOOST_CHECK_EXCEPTION(data::read_image_from_memory(ac1, "ac1.jpg"), IoError,
                          message_contains("uses Huffman table AC 1, which is not defined"));
    auto dc2 = gray;  // DC table 2
    dc2[find(0xDA) + 6] = 0x20;
    BOOST_CHECK_EXCEPTION(data::read_image_from_memory(dc2, "dc2.jpg"), IoError, message_contains("uses Huffman table DC 2, which is not defined"));
    auto q3 = gray;  // the frame's component asks for quantization table 3
    q3[find(0xC0) + 12] = 3;
    BOOST_CHECK_EXCEPTION(data::read_image_from_memory(q3, "q3.jpg"), IoError, message_contains("uses quantization table 3, which is not defined"));
    // Progressive transcodes (jpegtran -progressive, lossless) decode to the baseline's pixels.
    for (const char* name : {"gray", "rgb"}) {
        const auto base = data::read_image_from_memory(read_bytes(images + name + ".jpg"), name);
        const auto prog = data::read_image_from_memory(read_bytes(corpus + name + "_progressive.jpg"), name);
        BOOST_REQUIRE(prog.pixels.shape() == base.pixels.shape());
        for (std::int64_t i = 0; i < base.pixels.numel(); ++i) BOOST_REQUIRE(prog.pixels[i] == base.pixels[i]);
    }
}

// Fuzzing finding 4 (fuzz_image, regression-stb227-truncated-scan.jpg): stb_image 2.27 shifted a
// 32-bit value by 32 (UBSan, stbi__grow_buffer_unsafe) when a scan's entropy-coded data ended
// early. JPEG now goes through libjpeg-turbo, and a libjpeg warning (corrupt data) is a refused
// file: the fuzzed input (which also has a stray byte before its frame header) and a scan cut
// short by a marker each give one "corrupt JPEG" line naming the file.
BOOST_AUTO_TEST_CASE(jpegs_with_corrupt_scan_data_are_refused_with_one_line_naming_the_file) {
    auto read_bytes = [](const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        std::vector<std::uint8_t> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        BOOST_REQUIRE_MESSAGE(!b.empty(), "cannot read " << path);
        return b;
    };
    auto check_corrupt = [](const std::vector<std::uint8_t>& bytes, const std::string& name, const std::string& what) {
        for (int channels : {0, 1, 3}) {
            try {
                data::read_image_from_memory(bytes, name, channels);
                BOOST_ERROR(name << " was decoded");
            } catch (const IoError& e) {
                const std::string msg = e.what();
                BOOST_TEST_MESSAGE(msg);
                BOOST_CHECK_MESSAGE(msg.rfind("image: " + name + ": corrupt JPEG (libjpeg-turbo: ", 0) == 0, msg);
                BOOST_CHECK_MESSAGE(msg.find(what) != std::string::npos, msg);
                BOOST_CHECK(msg.find('\n') == std::string::npos);
            }
        }
    };
    const std::string corpus = std::string(MEDIMG_TEST_DATA_DIR) + "/../fuzz/corpus/fuzz_image/";
    check_corrupt(read_bytes(corpus + "regression-stb227-truncated-scan.jpg"), "found.jpg", "extraneous bytes before marker");
    // gray.jpg with its scan data cut after 20 bytes and the end-of-image marker put right there.
    const auto gray = read_bytes(std::string(MEDIMG_TEST_DATA_DIR) + "/images/gray.jpg");
    std::size_t sos = 0;
    while (sos + 1 < gray.size() && !(gray[sos] == 0xFF && gray[sos + 1] == 0xDA)) ++sos;
    BOOST_REQUIRE_LT(sos + 40, gray.size());
    const std::size_t data_start = sos + 2 + (std::size_t{gray[sos + 2]} << 8 | gray[sos + 3]);
    std::vector<std::uint8_t> cut(gray.begin(), gray.begin() + static_cast<std::ptrdiff_t>(data_start + 20));
    cut.insert(cut.end(), {0xFF, 0xD9});
    check_corrupt(cut, "cut.jpg", "premature end of data segment");
}

// Found while testing a NaN validation loss: roc_auc's tie loop never advanced past a NaN score
// (NaN == NaN is false), so evaluating a model with non-finite outputs hung.
BOOST_AUTO_TEST_CASE(roc_auc_rejects_nan_scores_instead_of_hanging) {
    const std::vector<bool> positive{true, false, true};
    BOOST_CHECK_EXCEPTION(metrics::roc_auc({0.2, std::nan(""), 0.7}, positive), ValueError, message_contains("roc_auc: score 1 is nan"));
    BOOST_TEST(metrics::roc_auc({0.2, -INFINITY, INFINITY}, positive) == 1.0);  // infinities still rank
}

// torch.nn.utils.clip_grad_norm_(parameters, max_norm) (norm_type 2):
//   total_norm = || concat(g.flatten() for every p with a grad) ||_2
//   clip_coef  = max_norm / (total_norm + 1e-6);  g *= min(clip_coef, 1)
//   returns total_norm (before clipping). Parameters without a gradient are skipped.
BOOST_AUTO_TEST_CASE(clip_grad_norm_matches_torch_definition) {
    auto a = autograd::Var<float>::parameter(Tensor<float, Cpu>::zeros({2}));
    auto b = autograd::Var<float>::parameter(Tensor<float, Cpu>::zeros({1, 1}));
    auto c = autograd::Var<float>::parameter(Tensor<float, Cpu>::zeros({3}));  // no gradient
    nn::NamedParams<float, Cpu> params{{"a", a}, {"b", b}, {"c", c}};
    auto set_grads = [&] {
        a.grad() = Tensor<float, Cpu>::empty({2});
        a.grad()[0] = 3.0f;
        a.grad()[1] = -4.0f;
        b.grad() = Tensor<float, Cpu>::empty({1, 1});
        b.grad()[0] = 12.0f;
    };
    // ||(3, -4, 12)|| = 13.
    set_grads();
    const double norm = train::clip_grad_norm(params, 6.5);
    BOOST_TEST(norm == 13.0, boost::test_tools::tolerance(1e-12));
    const double coef = 6.5 / (13.0 + 1e-6);  // hand-computed from torch's definition
    BOOST_TEST(a.grad()[0] == 3.0 * coef, boost::test_tools::tolerance(1e-6));
    BOOST_TEST(a.grad()[1] == -4.0 * coef, boost::test_tools::tolerance(1e-6));
    BOOST_TEST(b.grad()[0] == 12.0 * coef, boost::test_tools::tolerance(1e-6));
    BOOST_TEST(!c.grad().defined());
    // The clipped norm is max_norm (up to the 1e-6 guard).
    const double after = std::sqrt(double(a.grad()[0]) * a.grad()[0] + double(a.grad()[1]) * a.grad()[1] + double(b.grad()[0]) * b.grad()[0]);
    BOOST_TEST(after == 6.5, boost::test_tools::tolerance(1e-6));

    // Under the limit (clip_coef >= 1): unchanged, still returns the norm.
    set_grads();
    BOOST_TEST(train::clip_grad_norm(params, 20.0) == 13.0, boost::test_tools::tolerance(1e-12));
    BOOST_TEST(a.grad()[0] == 3.0f);
    BOOST_TEST(a.grad()[1] == -4.0f);
    BOOST_TEST(b.grad()[0] == 12.0f);
    // Exactly at the limit: clip_coef = 13 / (13 + 1e-6) < 1, so torch scales by it too.
    set_grads();
    train::clip_grad_norm(params, 13.0);
    BOOST_TEST(b.grad()[0] == 12.0 * 13.0 / (13.0 + 1e-6), boost::test_tools::tolerance(1e-7));
}

BOOST_AUTO_TEST_CASE(grad_clip_norm_in_fit_bounds_every_step) {
    // With a tiny clip norm every plain SGD step (no momentum) moves the parameters by at most lr * max_norm.
    Run r(0, 0.0f);
    optim::SGD<float> sgd(r.model.named_parameters(), optim::SGDOptions(0.1));
    r.ctx.optimizer = &sgd;
    r.fo.epochs = 1;
    r.fo.grad_clip_norm = 1e-3;
    const auto before = r.model.fc->weight().value().clone();
    std::ostringstream log;
    train::fit(r.ctx, r.fo, log);
    double moved = 0.0;
    const auto& w = r.model.fc->weight().value();
    for (std::int64_t i = 0; i < w.numel(); ++i) moved += (double(w[i]) - before[i]) * (double(w[i]) - before[i]);
    // Two batches, each step at most 0.1 * 1e-3 in the joint (weight, bias) norm.
    BOOST_TEST(std::sqrt(moved) <= 2 * 0.1 * 1e-3 * (1 + 1e-5));
    BOOST_TEST(std::sqrt(moved) > 0.0);
}

// #22 item 4: a FIFO (or socket, or device) given as an image, a config, a checkpoint or weights
// blocked the program forever in open(); each reader now refuses anything but a regular file,
// before opening it, saying what it is. The FIFOs here cannot hang the suite (SafeFifo).
BOOST_AUTO_TEST_CASE(special_files_are_refused_by_every_reader_before_opening_naming_what_they_are) {
    ScratchDir dir;
    SafeFifo fifo_png(dir / "fifo.png"), fifo_plain(dir / "IM0001"), fifo_st(dir / "fifo.safetensors"), fifo_pth(dir / "fifo.pth"),
        fifo_yaml(dir / "fifo.yaml");
    make_socket(dir / "sock.png");
    fs::create_symlink(dir / "fifo.png", dir / "link.png");
    const std::string fifo = "is a FIFO (named pipe), not a regular file";

    BOOST_CHECK_EXCEPTION(data::read_image(dir / "fifo.png"), IoError, one_line_containing("image: " + (dir / "fifo.png") + ": " + fifo));
    BOOST_CHECK_EXCEPTION(data::read_image_info(dir / "fifo.png"), IoError, one_line_containing(fifo));
    BOOST_CHECK_EXCEPTION(data::read_sample({dir / "fifo.png", -1}, {}), IoError, one_line_containing(fifo));
    BOOST_CHECK_EXCEPTION(data::read_sample({dir / "IM0001", -1}, {}), IoError, one_line_containing(fifo));  // no name: not sniffed
    BOOST_TEST((data::file_format(dir / "IM0001") == data::FileFormat::unknown));
    BOOST_CHECK_EXCEPTION(data::read_image(dir / "link.png"), IoError, one_line_containing("link.png: " + fifo));  // the target counts
    BOOST_CHECK_EXCEPTION(data::read_image(dir / "sock.png"), IoError, one_line_containing("is a socket, not a regular file"));
    BOOST_CHECK_EXCEPTION(data::read_image("/dev/null"), IoError, one_line_containing("image: /dev/null: is a character device"));
    BOOST_CHECK_EXCEPTION(data::read_image(dir.path.string()), IoError, one_line_containing("is a folder, not a regular file"));
    BOOST_CHECK_EXCEPTION(io::SafetensorsFile::load(dir / "fifo.safetensors"), IoError, one_line_containing("safetensors: " + (dir / "fifo.safetensors") + ": " + fifo));
    BOOST_CHECK_EXCEPTION(io::Checkpoint::load(dir / "fifo.safetensors"), IoError, one_line_containing(fifo));
    BOOST_CHECK_EXCEPTION(io::WeightsFile::load(dir / "fifo.pth"), IoError, one_line_containing("pth: " + (dir / "fifo.pth") + ": " + fifo));
    BOOST_CHECK_EXCEPTION(io::TorchStateDict::load(dir / "fifo.pth"), IoError, one_line_containing(fifo));
    BOOST_CHECK_EXCEPTION(io::load_config(dir / "fifo.yaml"), ConfigError, one_line_containing("config: " + (dir / "fifo.yaml") + ": " + fifo));
    BOOST_CHECK_EXCEPTION(io::load_config("/dev/null"), ConfigError, one_line_containing("is a character device"));
    BOOST_CHECK_EXCEPTION(io::load_config(fs::temp_directory_path().string()), ConfigError, one_line_containing("is a folder, not a regular file"));
    // DICOM and NIfTI go through the same check (or, in a build without them, are refused unopened).
    SafeFifo fifo_dcm(dir / "fifo.dcm"), fifo_nii(dir / "fifo.nii");
#if defined(MEDIMG_WITH_DICOM)
    BOOST_CHECK_EXCEPTION(data::read_sample({dir / "fifo.dcm", -1}, {}), IoError, one_line_containing("dicom: " + (dir / "fifo.dcm") + ": " + fifo));
#endif
#if defined(MEDIMG_WITH_NIFTI)
    BOOST_CHECK_EXCEPTION(data::read_sample({dir / "fifo.nii", -1}, {}), IoError, one_line_containing("nifti: " + (dir / "fifo.nii") + ": " + fifo));
    BOOST_CHECK_EXCEPTION(data::slice_count(dir / "fifo.nii", 2), IoError, one_line_containing(fifo));
#endif
    // The check itself: regular files and missing paths pass (each reader reports a missing file in its own words).
    BOOST_CHECK_NO_THROW(io::check_input_file(std::string(MEDIMG_TEST_DATA_DIR) + "/images/gray8.png", "image"));
    BOOST_CHECK_NO_THROW(io::check_input_file(dir / "missing.png", "image"));
    BOOST_CHECK_EXCEPTION(data::read_image(dir / "missing.png"), IoError, one_line_containing("missing.png: file not found"));
}

// #22 item 4: a folder scan never opens what is not a regular file: a FIFO named like an image, a
// socket and a dangling link in a class folder are skipped (and counted), empty subfolders add nothing;
// before, a dangling link ended the listing with "cannot list".
BOOST_AUTO_TEST_CASE(a_folder_scan_skips_special_files_without_opening_them) {
    ScratchDir dir;
    for (const char* c : {"normal", "lesao"}) {
        fs::create_directories(dir.path / c / "sub");
        fs::copy_file(std::string(MEDIMG_TEST_DATA_DIR) + "/images/gray8.png", dir.path / c / "a.png");
    }
    SafeFifo fifo(dir / "normal/b.png"), fifo_plain(dir / "normal/IM0002");
    make_socket(dir / "lesao/c.png");
    fs::create_symlink(dir / "lesao/nowhere.png", dir / "lesao/dangling.png");
    const auto ds = data::FolderDataset::scan(dir.path.string(), {"normal", "lesao"});
    BOOST_TEST(ds.size() == 2);
    BOOST_TEST(ds.skipped_non_images() == 4);
    BOOST_TEST(ds.path(0) == dir / "normal/a.png");
}

// #22 item 4: a file name holding a newline or another control character broke the one-line rule;
// every medimg::Error now escapes control characters in its message (escape_controls), so every
// reader's message naming such a path is one line.
BOOST_AUTO_TEST_CASE(messages_stay_on_one_line_whatever_a_file_name_holds) {
    BOOST_TEST(escape_controls("a\nb\rc\td") == "a\\x0ab\\x0dc\\x09d");
    BOOST_TEST(escape_controls("\x1b[31mred\x7f") == "\\x1b[31mred\\x7f");
    BOOST_TEST(escape_controls(std::string("nul\0x", 5)) == "nul\\x00x");
    BOOST_TEST(escape_controls("C1 \xc2\x9b and lone \x9b") == "C1 \\xc2\\x9b and lone \\x9b");  // CSI, UTF-8 and raw
    BOOST_TEST(escape_controls("les\xc3\xa3o \xe2\x82\xac data set \xff\xfe") == "les\xc3\xa3o \xe2\x82\xac data set \xff\xfe");  // bytes as they are
    BOOST_TEST(escape_controls(escape_controls("a\nb")) == escape_controls("a\nb"));  // idempotent
    BOOST_TEST(std::string(IoError("x: 'a\nb'").what()) == "x: 'a\\x0ab'");

    ScratchDir dir;
    const std::string odd = dir / "two\nlines\r.png";
    BOOST_CHECK_EXCEPTION(data::read_image(odd), IoError, one_line_containing("two\\x0alines\\x0d.png: file not found"));
    { std::ofstream(odd) << "not an image"; }
    BOOST_CHECK_EXCEPTION(data::read_image(odd), IoError, one_line_containing("two\\x0alines\\x0d.png: unsupported format"));
    BOOST_CHECK_EXCEPTION(io::Checkpoint::load(odd), IoError, one_line_containing("two\\x0alines"));
    BOOST_CHECK_EXCEPTION(io::load_config(dir / "no\nconfig.yaml"), ConfigError, one_line_containing("no\\x0aconfig.yaml"));
    BOOST_CHECK_EXCEPTION(data::FolderDataset::scan(dir / "no\ndata", {"a"}), IoError, one_line_containing("no\\x0adata"));
    fs::create_directories(dir.path / "set" / "a\tb");
    BOOST_CHECK_EXCEPTION(data::FolderDataset::scan(dir / "set", {"a\tb"}), IoError, one_line_containing("a\\x09b' holds no images"));
}

// #22 item 3: what reaches a program's main becomes one line in words meant for the user
// (examples/cli.hpp's cli::fail prints it): medimg's messages as they are, out of memory as such,
// and anything else (a gap in medimg's checks: "stoi", "map::at") marked as unexpected.
BOOST_AUTO_TEST_CASE(exceptions_reaching_a_program_become_one_line_in_their_own_words) {
    auto line = [](auto&& thrower) {
        try {
            thrower();
        } catch (...) {
            return current_exception_message();
        }
        return std::string("nothing thrown");
    };
    BOOST_TEST(line([] { throw IoError("image: x.png: file not found"); }) == "image: x.png: file not found");
    const std::string oom = line([] { throw std::bad_alloc(); });
    BOOST_TEST(oom.rfind("out of memory: ", 0) == 0);
    BOOST_TEST(oom.find("bad_alloc") == std::string::npos);
    BOOST_TEST(line([] { (void)std::stoi("abc"); }) == "unexpected error, not a medimg message (please report it): stoi");
    BOOST_TEST(line([] { throw std::out_of_range("map::at\nsecond line"); }) ==
               "unexpected error, not a medimg message (please report it): map::at\\x0asecond line");
    BOOST_TEST(line([] { throw 42; }) == "unexpected error of an unknown type (please report it)");
}

// #22 item 3: numbers typed on a command line or stored as text are read whole, or refused so that
// the caller names its flag or key (std::stoi's exception says only "stoi").
BOOST_AUTO_TEST_CASE(numbers_given_as_text_are_read_whole_or_refused) {
    double x = -7;
    for (const char* bad : {"", " ", "abc", "12abc", " 5", "5 ", "0x10", "inf", "-inf", "nan", "1e400", "-1e400", "1e", "e5", ".", "+",
                            "--1", "1,5", "1.5.2", "\xef\xbc\x91"}) {
        BOOST_TEST_CONTEXT("'" << bad << "'") {
            BOOST_TEST(!io::parse_number(bad, x));
            BOOST_TEST(x == -7);  // untouched
        }
    }
    for (const auto& [text, value] : {std::pair<const char*, double>{"0", 0}, {"-1", -1}, {"+2.5", 2.5}, {".5", 0.5}, {"5.", 5},
                                      {"1e3", 1000}, {"1E-3", 0.001}, {"1e-400", 0}, {"9007199254740993", 9007199254740992.0}}) {
        BOOST_TEST_CONTEXT(text) {
            BOOST_TEST(io::parse_number(text, x));
            BOOST_TEST(x == value);
        }
    }
    std::int64_t n = -7;
    for (const char* bad : {"", "-", "1.0", "1e3", " 1", "0x1", "9223372036854775808", "-9223372036854775809", "12abc"})
        BOOST_TEST_CONTEXT("'" << bad << "'") { BOOST_TEST(!io::parse_integer(bad, n)); }
    BOOST_TEST(n == -7);
    BOOST_TEST((io::parse_integer("9223372036854775807", n) && n == std::numeric_limits<std::int64_t>::max()));
    BOOST_TEST((io::parse_integer("-42", n) && n == -42));
    BOOST_TEST(io::clipped(std::string(100, 'x'), 10) == "xxxxxxxxxx...");
}

// ---- #22 item 1: resource bounds follow the work, not only the headers ----

/// A w x h PNG (8-bit grey, optionally Adam7-interlaced) whose IDAT holds `raw` deflated: the
/// filtered scanlines, which a hostile file makes far longer than IHDR declares.
std::vector<std::uint8_t> png_with_raw(std::uint32_t w, std::uint32_t h, const std::vector<std::uint8_t>& raw, bool interlaced = false) {
    std::vector<std::uint8_t> out{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    auto chunk = [&](const char* type, const std::vector<std::uint8_t>& d) {
        const auto n = static_cast<std::uint32_t>(d.size());
        for (int k = 3; k >= 0; --k) out.push_back(static_cast<std::uint8_t>(n >> (8 * k)));
        const std::size_t start = out.size();
        out.insert(out.end(), type, type + 4);
        out.insert(out.end(), d.begin(), d.end());
        const auto crc = static_cast<std::uint32_t>(crc32(0, out.data() + start, static_cast<uInt>(4 + d.size())));
        for (int k = 3; k >= 0; --k) out.push_back(static_cast<std::uint8_t>(crc >> (8 * k)));
    };
    std::vector<std::uint8_t> ihdr{static_cast<std::uint8_t>(w >> 24), static_cast<std::uint8_t>(w >> 16), static_cast<std::uint8_t>(w >> 8),
                                   static_cast<std::uint8_t>(w), static_cast<std::uint8_t>(h >> 24), static_cast<std::uint8_t>(h >> 16),
                                   static_cast<std::uint8_t>(h >> 8), static_cast<std::uint8_t>(h), 8, 0, 0, 0,
                                   static_cast<std::uint8_t>(interlaced ? 1 : 0)};
    chunk("IHDR", ihdr);
    uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
    std::vector<std::uint8_t> z(zlen);
    BOOST_REQUIRE(compress2(z.data(), &zlen, raw.data(), static_cast<uLong>(raw.size()), 9) == Z_OK);
    z.resize(zlen);
    chunk("IDAT", z);
    chunk("IEND", {});
    return out;
}

long max_rss_kib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

// A PNG whose image data inflates far past what IHDR declares: stb_image would inflate all of it
// (doubling its buffer) before noticing. Refused after at most one scratch buffer past the
// declared size, in one line; the same bytes inflating to exactly the declared size decode.
BOOST_AUTO_TEST_CASE(png_image_data_inflating_past_its_declared_size_is_refused_without_inflating_it) {
    const std::vector<std::uint8_t> bomb_raw(std::size_t{256} << 20, 0);  // 256 MiB of zeros: 255 KiB deflated
    const long rss_before = max_rss_kib();
    for (const bool interlaced : {false, true}) {
        const auto png = png_with_raw(1, 1, bomb_raw, interlaced);
        BOOST_TEST(png.size() < 300000u);
        BOOST_CHECK_EXCEPTION(data::read_image_from_memory(png, "bomb.png"), IoError,
                              one_line_containing("image: bomb.png: corrupt PNG: the image data inflates to more than the 2 bytes "
                                                  "its header declares (1 x 1)"));
    }
    // 64 x 64 declared, 4 MiB of scanlines: refused too (the limit is the declared size, not a ratio).
    const auto big = png_with_raw(64, 64, std::vector<std::uint8_t>(std::size_t{4} << 20, 0));
    BOOST_CHECK_EXCEPTION(data::read_image_from_memory(big, "big.png"), IoError,
                          one_line_containing("inflates to more than the 4160 bytes its header declares (64 x 64)"));
    // Memory: the 256 MiB buffer above is the test's own; decoding added no more than a few MiB.
    BOOST_TEST(max_rss_kib() - rss_before < 300 * 1024);
    // Exactly the declared size (64 rows of a filter byte + 64 pixels; interlaced: the 7 passes) decodes.
    std::vector<std::uint8_t> raw;
    for (int y = 0; y < 64; ++y) {
        raw.push_back(0);
        for (int x = 0; x < 64; ++x) raw.push_back(static_cast<std::uint8_t>(x * 4));
    }
    const auto img = data::read_image_from_memory(png_with_raw(64, 64, raw), "ok.png");
    BOOST_TEST(img.width() == 64);
    BOOST_TEST(img.pixels[63] == 252.0f / 255.0f);
    std::vector<std::uint8_t> adam7(data::detail::png_raw_size(64, 64, 1, 8, true), 0);
    BOOST_TEST(adam7.size() == 4096u + 120u);  // 4096 pixels + one filter byte for each of the passes' 8+8+8+16+16+32+32 rows
    BOOST_TEST(data::read_image_from_memory(png_with_raw(64, 64, adam7, true), "adam7.png").height() == 64);
    // One byte more than declared is refused (libpng: "Extra compressed data"; PIL refuses too).
    raw.push_back(0);
    BOOST_CHECK_EXCEPTION(data::read_image_from_memory(png_with_raw(64, 64, raw), "one_more.png"), IoError,
                          one_line_containing("inflates to more than the 4160 bytes"));
}

// A valid, extreme image passes the pixel limit (3 x 40000 = 120000 pixels) but Resize(256) of it
// would be 256 x 3413333 (about 10 GB of floats): refused before allocating, naming both sizes.
BOOST_AUTO_TEST_CASE(resizing_a_long_thin_image_is_refused_before_allocating) {
    const auto thin = data::ImageTensor::zeros({3, 3, 40000});
    const long rss_before = max_rss_kib();
    BOOST_CHECK_EXCEPTION(data::resize_shorter_side(thin, 256), ShapeError,
                          one_line_containing("resize_shorter_side: Resize(256) of a 3 x 40000 image (aspect ratio 13333:1) would be "
                                              "256 x 3413333, more than the limit of 67108864 pixels"));
    // resize((s, s)) of a tall one: the output is small but the W pass would hold H x s doubles.
    const auto tall = data::ImageTensor::zeros({1, 400000, 1});
    BOOST_CHECK_EXCEPTION(data::resize(tall, 224, 224), ShapeError,
                          one_line_containing("resize: 400000 x 1 -> 224 x 224 needs 400000 x 224 = 8.96e+07 pixels per channel"));
    BOOST_TEST(max_rss_kib() - rss_before < 64 * 1024);
    // Within the limit both still work (a 2:1 image to shorter side 64).
    const auto ok = data::resize_shorter_side(data::ImageTensor::zeros({1, 50, 100}), 64);
    BOOST_TEST(ok.size(1) == 64);
    BOOST_TEST(ok.size(2) == 128);
    // The pipeline names the file (train::load_transformed wraps ShapeError with it).
    auto pipeline = data::eval_pipeline([] {
        data::TransformOptions o;
        o.image_size = 224;
        o.resize_to = 256;
        return o;
    }());
    Rng rng(1);
    BOOST_CHECK_EXCEPTION(pipeline(thin, rng), ShapeError, one_line_containing("would be 256 x 3413333"));
}

// A safetensors file of gigabytes whose header accounts for a few bytes: refused after reading
// the 8-byte length and the header, never the data (a sparse 3 GiB file: no disk, no memory).
BOOST_AUTO_TEST_CASE(safetensors_files_are_checked_from_their_header_before_their_data_is_read) {
    ScratchDir dir;
    io::SafetensorsWriter w;
    w.add("x", Tensor<float>::zeros({4}));
    w.write(dir / "small.safetensors");
    const auto bytes = io::detail::read_file(dir / "small.safetensors");
    {
        std::ofstream(dir / "huge.safetensors", std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                                           static_cast<std::streamsize>(bytes.size()));
    }
    fs::resize_file(dir / "huge.safetensors", std::uintmax_t{3} << 30);  // sparse: the tail reads as zeros
    const long rss_before = max_rss_kib();
    const auto t0 = std::chrono::steady_clock::now();
    BOOST_CHECK_EXCEPTION(io::SafetensorsFile::load(dir / "huge.safetensors"), IoError,
                          one_line_containing("data buffer has 3221225408 bytes but the tensors cover only 16 (3221225392 trailing bytes)"));
    BOOST_CHECK_EXCEPTION(io::Checkpoint::load(dir / "huge.safetensors"), IoError, one_line_containing("trailing bytes"));
    BOOST_CHECK_EXCEPTION(io::WeightsFile::load(dir / "huge.safetensors"), IoError, one_line_containing("trailing bytes"));
    BOOST_TEST(max_rss_kib() - rss_before < 64 * 1024);
    BOOST_TEST(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 5.0);
    // A .pth archive is bounded by its size before it is read.
    fs::resize_file(dir / "huge.safetensors", io::TorchStateDict::max_file_bytes + 1);
    fs::rename(dir / "huge.safetensors", dir / "huge.pth");
    BOOST_CHECK_EXCEPTION(io::TorchStateDict::load(dir / "huge.pth"), IoError,
                          one_line_containing("pth: " + (dir / "huge.pth") + ": file of 17179869185 bytes exceeds the limit of 17179869184"));
    // The header-first reader still reads good files whole, byte for byte.
    const auto f = io::SafetensorsFile::load(dir / "small.safetensors");
    BOOST_TEST(f.tensor<float>("x").numel() == 4);
}

BOOST_AUTO_TEST_SUITE_END()
