// SPDX-License-Identifier: MIT
// Tests for io/dicom.hpp (through GDCM), data/intensity.hpp and the DICOM side of data/readers.hpp:
// every fixture of tests/data/dicom (written by tests/data/make_dicom_fixtures.py with pydicom and
// gdcmconv) reads as pydicom reads it: stored values exactly, rescaled values exactly, windowed
// values within float rounding; hostile files each give one IoError line naming the file; a data
// set folder of DICOM files indexes and loads; the writer round-trips.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "medimg/data/dataset.hpp"
#include "medimg/data/readers.hpp"
#include "medimg/io/dicom.hpp"
#include "medimg/io/dicom_anonymize.hpp"

using namespace medimg;
using medimg::test::message_contains;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(MEDIMG_TEST_DATA_DIR) + "/dicom/";

nlohmann::json expected() {
    std::ifstream in(kDir + "expected.json");
    BOOST_REQUIRE(in.good());
    return nlohmann::json::parse(in);
}
const nlohmann::json& fixture(const nlohmann::json& all, const std::string& file) {
    for (const auto& e : all.at("fixtures"))
        if (e.at("file") == file) return e;
    BOOST_FAIL("no fixture " + file);
    return all;
}
std::vector<std::uint8_t> bytes_of(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
struct TempDir {
    fs::path path;
    TempDir() : path(fs::temp_directory_path() / ("medimg-dicom-" + std::to_string(std::random_device{}()))) { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
    std::string operator/(const std::string& f) const { return (path / f).string(); }
};
void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
/// Offset of the first occurrence of `tag` (little-endian group, element) in the bytes.
std::size_t find_tag(const std::vector<std::uint8_t>& b, std::uint16_t g, std::uint16_t e) {
    const std::uint8_t t[4] = {static_cast<std::uint8_t>(g), static_cast<std::uint8_t>(g >> 8), static_cast<std::uint8_t>(e),
                               static_cast<std::uint8_t>(e >> 8)};
    for (std::size_t i = 132; i + 4 <= b.size(); ++i)
        if (std::memcmp(b.data() + i, t, 4) == 0) return i;
    BOOST_FAIL("tag not found");
    return 0;
}
void check_values(const Tensor<float, Cpu>& got, const nlohmann::json& want, double atol, const std::string& what) {
    BOOST_REQUIRE_EQUAL(static_cast<std::size_t>(got.numel()), want.size());
    double worst = 0;
    std::size_t at = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double d = std::abs(static_cast<double>(got.data()[i]) - want[i].get<double>());
        if (d > worst) worst = d, at = i;
    }
    BOOST_TEST(worst <= atol, what << ": largest difference " << worst << " at element " << at);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(dicom_reader)

BOOST_AUTO_TEST_CASE(every_fixture_reads_as_pydicom_reads_it) {
    const auto all = expected();
    int checked = 0;
    for (const auto& e0 : all.at("fixtures")) {
        const std::string file = e0.at("file");
        const auto& e = e0.contains("same_values_as") ? fixture(all, e0.at("same_values_as")) : e0;
        BOOST_TEST_CONTEXT(file) {
            const auto im = io::read_dicom(kDir + file);
            const auto shape = e0.at("shape").get<std::vector<std::int64_t>>();
            BOOST_TEST(im.stored.shape() == Shape(shape));
            BOOST_TEST(im.transfer_syntax_uid == e0.at("transfer_syntax").get<std::string>());
            BOOST_TEST(im.photometric == e.at("photometric").get<std::string>());
            check_values(im.stored, e.at("stored"), 0.0, "stored values");  // exactly
            if (e.contains("pixel_spacing")) {
                BOOST_REQUIRE(im.pixel_spacing.has_value());
                BOOST_TEST((*im.pixel_spacing)[0] == e.at("pixel_spacing")[0].get<double>());
                BOOST_TEST((*im.pixel_spacing)[1] == e.at("pixel_spacing")[1].get<double>());
            }
            if (!im.monochrome()) {
                ++checked;
                continue;
            }
            BOOST_TEST(im.slope == e.at("slope").get<double>());
            BOOST_TEST(im.intercept == e.at("intercept").get<double>());
            check_values(im.rescaled(), e.contains("rescaled") ? e.at("rescaled") : e.at("stored"), 0.0, "rescaled values");
            // [0, 1] values: the float32 of a float64 formula, recorded with 9 digits: within 1e-6
            if (!e.at("window").is_null()) {
                BOOST_REQUIRE(im.window.has_value());
                BOOST_TEST(im.window->center == e.at("window").at("center").get<double>());
                BOOST_TEST(im.window->width == e.at("window").at("width").get<double>());
                check_values(im.to_unit(data::IntensitySetting::parse("file")), e.at("windowed"), 1e-6, "the file's window");
            } else {
                BOOST_TEST(!im.window.has_value());
            }
            if (e.contains("brain")) check_values(im.to_unit(data::IntensitySetting::parse("brain")), e.at("brain"), 1e-6, "brain preset");
            if (e.contains("minmax")) {
                check_values(im.to_unit(data::IntensitySetting::parse("minmax")), e.at("minmax"), 1e-6, "min-max");
                if (e.at("window").is_null())  // no window in the file: "file" falls back to min-max
                    check_values(im.to_unit(data::IntensitySetting::parse("file")), e.at("minmax"), 1e-6, "file without a window");
            }
            ++checked;
        }
    }
    BOOST_TEST(checked == 14);
}

BOOST_AUTO_TEST_CASE(rgb_scales_by_bits_stored) {
    const auto all = expected();
    const auto im = io::read_dicom(kDir + "sc_rgb.dcm");
    const auto u = im.to_unit(data::IntensitySetting::parse("brain"));  // a window is for greyscale only
    const auto& st = fixture(all, "sc_rgb.dcm").at("stored");
    for (std::size_t i = 0; i < st.size(); ++i) BOOST_TEST(u.data()[i] == static_cast<float>(st[i].get<double>() / 255.0));
}

BOOST_AUTO_TEST_CASE(settings_parse_and_print) {
    BOOST_TEST(data::IntensitySetting::parse("file").text() == "file");
    BOOST_TEST(data::IntensitySetting::parse("minmax").text() == "minmax");
    const auto b = data::IntensitySetting::parse("bone");
    BOOST_TEST(b.window.center == 400.0);
    BOOST_TEST(b.window.width == 1800.0);
    BOOST_TEST(b.text() == "bone");
    const auto own = data::IntensitySetting::parse("[-600, 1500.5]");
    BOOST_TEST(own.window.center == -600.0);
    BOOST_TEST(own.window.width == 1500.5);
    BOOST_TEST(data::IntensitySetting::parse(own.text()).window.width == 1500.5);
    for (const char* bad : {"brian", "[40]", "[40, 0.5]", "[40, x]", "40 80", "[nan, 80]"})
        BOOST_CHECK_EXCEPTION(data::IntensitySetting::parse(bad), ConfigError, message_contains("data.window"));
    // PS3.3 C.11.2.1.2.1 at the edges: c = 40, w = 80 maps <= 0 to 0 and > 79 to 1
    const data::Window w{40, 80};
    BOOST_TEST(data::apply_window(0.0, w) == 0.0);
    BOOST_TEST(data::apply_window(79.5, w) == 1.0);
    BOOST_TEST(data::apply_window(39.5, w) == 0.5);
}

BOOST_AUTO_TEST_CASE(hostile_files_give_one_line_naming_the_file) {
    TempDir dir;
    const auto good = bytes_of(kDir + "ct_hu.dcm");
    auto refuse = [&](const std::string& name, const std::vector<std::uint8_t>& b, const std::string& what) {
        write_bytes(dir / name, b);
        BOOST_TEST_CONTEXT(name) {
            BOOST_CHECK_EXCEPTION(io::read_dicom(dir / name), IoError, [&](const IoError& e) {
                const std::string m = e.what();
                return m.rfind("dicom: " + (dir / name) + ": ", 0) == 0 && m.find(what) != std::string::npos && m.find('\n') == std::string::npos;
            });
        }
    };
    const std::size_t pixel = find_tag(good, 0x7fe0, 0x0010);
    // truncated: the pixel data cut by 100 bytes
    refuse("truncated.dcm", std::vector<std::uint8_t>(good.begin(), good.end() - 100), "truncated: element (7FE0,0010)");
    // a lying length: the pixel data claims 4 GB in a 3 KB file (refused before GDCM sizes a buffer by it)
    auto lying = good;
    lying[pixel + 8] = 0xf0, lying[pixel + 9] = 0xff, lying[pixel + 10] = 0xff, lying[pixel + 11] = 0xff;
    refuse("lying.dcm", lying, "has length 4294967280 but only 2048 bytes remain");
    // a short length: the pixel data holds 100 bytes for a 32 x 32 16-bit image
    auto shortened = std::vector<std::uint8_t>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(pixel) + 12 + 100);
    shortened[pixel + 8] = 100, shortened[pixel + 9] = 0, shortened[pixel + 10] = 0, shortened[pixel + 11] = 0;
    refuse("short.dcm", shortened, "pixel data holds 100 bytes but 32 rows x 32 columns x 1 frames x 1 samples x 16 bits need 2048");
    // absurd dimensions: 65535 x 65535 in a 3 KB file
    auto huge = good;
    for (std::uint16_t e : {0x0010, 0x0011}) {
        const std::size_t at = find_tag(huge, 0x0028, e);
        huge[at + 8] = 0xff, huge[at + 9] = 0xff;
    }
    refuse("huge.dcm", huge, "65535 rows x 65535 columns x 1 frames x 1 samples = 4294836225 values exceeds the limit");
    // a garbled value representation
    auto garbled = good;
    const std::size_t rows = find_tag(garbled, 0x0028, 0x0010);
    garbled[rows + 4] = 0x01, garbled[rows + 5] = 0x02;
    refuse("garbled.dcm", garbled, "has value representation 0x0102, not one DICOM defines");
    // the meta group's length disagreeing with its elements (GDCM asserted on this one: fuzzing)
    auto meta = good;
    meta[132 + 8] = static_cast<std::uint8_t>(meta[132 + 8] + 2);
    refuse("meta.dcm", meta, "the meta group length (0002,0000) says it ends at byte");
    refuse("empty.dcm", {}, "empty file");
    refuse("preamble.dcm", std::vector<std::uint8_t>(good.begin(), good.begin() + 132), "the meta group does not start with its length");
    refuse("png.dcm", bytes_of(std::string(MEDIMG_TEST_DATA_DIR) + "/images/gray8.png"), "no 'DICM' at byte 128");
    // compressed frames: one cut short, one with stray bytes before a marker (GDCM aborts on
    // libjpeg's warning for those; fuzzing)
    const auto jpeg = bytes_of(kDir + "ct_jpegll.dcm");
    const std::size_t jpix = find_tag(jpeg, 0x7fe0, 0x0010);
    std::size_t soi = jpix;
    while (!(jpeg[soi] == 0xff && jpeg[soi + 1] == 0xd8)) ++soi;
    auto stray = jpeg;
    stray[soi + 2] = 0x00;  // the byte after SOI must be FF
    refuse("stray.dcm", stray, "frame 0: corrupt JPEG frame: stray bytes at offset 2");
    // the unsupported transfer syntax and the object without pixels, written by the fixture script
    BOOST_CHECK_EXCEPTION(io::read_dicom(kDir + "htj2k.dcm"), IoError,
                          message_contains("transfer syntax 1.2.840.10008.1.2.4.201 (High-Throughput JPEG 2000 Image Compression "
                                           "(Lossless Only)) is not one GDCM can decode"));
    BOOST_CHECK_EXCEPTION(io::read_dicom(kDir + "no_pixels.dcm"), IoError, message_contains("holds no pixel data"));
    BOOST_CHECK_EXCEPTION(io::read_dicom(dir / "missing.dcm"), IoError, message_contains("file not found"));
    io::DicomLimits small;
    small.max_values = 100;
    BOOST_CHECK_EXCEPTION(io::read_dicom(kDir + "ct_hu.dcm", small), IoError, message_contains("exceeds the limit of 100"));
}

// The inputs on which fuzzing found GDCM 3.0.21 aborting (an assertion), reading out of bounds or
// allocating 4 GB (tests/fuzz/corpus/fuzz_dicom/regression-*; docs/formats.md): each is one line now.
BOOST_AUTO_TEST_CASE(fuzzing_regressions_are_refused) {
    const std::pair<const char*, const char*> cases[] = {
        {"regression-meta-without-group-length", "the meta group does not start with its length"},
        {"regression-no-data-set", "no data set follows the meta group"},
        {"regression-pixel-data-vr-od", "has value representation 'OD', not OB or OW"},
        {"regression-rle-segment-count", "frame 0: the RLE frame has 4294770690 segments"},
        {"regression-delimiter-length", "the pixel data's sequence delimiter at byte 2256 has length 4294377472, not 0"},
        {"regression-8-bits-allocated-2-stored", "8 bits allocated with 2 stored is not read"},
        {"regression-signed-rgb", "signed RGB samples are not read"},
        {"regression-32-bits-allocated-11-stored", "32 bits allocated with 11 stored is not read"}};
    for (const auto& [file, what] : cases) {
        BOOST_TEST_CONTEXT(file) {
            const std::string path = std::string(MEDIMG_TEST_DATA_DIR) + "/../fuzz/corpus/fuzz_dicom/" + file;
            BOOST_CHECK_EXCEPTION(io::read_dicom(path), IoError, message_contains(what));
        }
    }
}

BOOST_AUTO_TEST_CASE(a_folder_of_dicom_files_is_a_data_set) {
    TempDir dir;
    for (const char* c : {"normal", "lesao"}) fs::create_directories(dir.path / c);
    fs::copy_file(kDir + "ct_hu.dcm", dir / "normal/a.dcm");
    fs::copy_file(kDir + "ct_implicit.dcm", dir / "normal/B.DCM");
    fs::copy_file(kDir + "ct_rle.dcm", dir / "normal/IM0001");  // no extension: recognised by 'DICM'
    fs::copy_file(kDir + "mf_frames.dcm", dir / "lesao/frames.dcm");
    fs::copy_file(kDir + "cr_mono1.dcm", dir / "lesao/cr.dcm");
    { std::ofstream(dir / "lesao/notes.txt") << "not an image"; }
    const auto ds = data::FolderDataset::scan(dir.path.string(), {"normal", "lesao"});
    BOOST_TEST(ds.class_counts()[0] == 3);
    BOOST_TEST(ds.class_counts()[1] == 4);  // cr.dcm and the 3 frames of frames.dcm
    BOOST_TEST(ds.skipped_non_images() == 1);
    BOOST_TEST(ds.volumes() == 1);
    std::vector<std::string> names;
    for (std::int64_t i = 0; i < ds.size(); ++i) names.push_back(ds.name(i));
    BOOST_TEST(names[4] == (dir / "lesao/frames.dcm") + "[0]");
    BOOST_TEST(ds.group(4) == ds.group(6));  // the frames of one file: one group
    BOOST_TEST(ds.group(3) != ds.group(4));
    data::VolumeOptions middle;
    middle.slices = data::SliceSelection::parse("middle");
    BOOST_TEST(data::FolderDataset::scan(dir.path.string(), {"normal", "lesao"}, middle).class_counts()[1] == 2);

    // read_sample: windowed values, grey replicated to 3 channels, a frame of a multi-frame file
    data::ReadSettings rs;
    rs.channels = 3;
    const auto x = data::read_sample(ds.sample(0), rs);
    BOOST_TEST(x.shape() == Shape({3, 32, 32}));
    const auto ref = io::read_dicom(kDir + "ct_hu.dcm").to_unit(data::IntensitySetting::parse("file"));
    for (std::int64_t c = 0; c < 3; ++c)
        for (std::int64_t i = 0; i < 32 * 32; ++i) BOOST_REQUIRE(x.data()[c * 1024 + i] == ref.data()[i]);
    rs.channels = 1;
    const auto f2 = data::read_sample(ds.sample(6), rs);  // frames.dcm[2]
    const auto all = io::read_dicom(kDir + "mf_frames.dcm").to_unit(data::IntensitySetting::parse("file"));
    BOOST_TEST(f2.shape() == Shape({1, 16, 16}));
    for (std::int64_t i = 0; i < 256; ++i) BOOST_REQUIRE(f2.data()[i] == all.data()[2 * 256 + i]);
    const auto named = data::SampleRef::from_display(ds.name(6));
    BOOST_TEST(named.path == ds.path(6));
    BOOST_TEST(named.slice == 2);
}

// #22 item 6: the 128-byte preamble of a DICOM file is free (PS3.10 7.1; a dual TIFF/DICOM file
// holds a TIFF header there), so it may start with any other format's signature; 'DICM' at byte
// 128 decides. Such a file named as an image, or by a UID, or with no name at all, is read as the
// DICOM file it is, and the image reader alone refuses it as DICOM, by name.
BOOST_AUTO_TEST_CASE(a_preamble_that_looks_like_another_format_does_not_hide_a_dicom_file) {
    TempDir dir;
    const auto good = bytes_of(kDir + "ct_hu.dcm");
    const auto png = bytes_of(std::string(MEDIMG_TEST_DATA_DIR) + "/images/gray8.png");
    BOOST_REQUIRE(png.size() <= 128);  // a whole valid PNG fits in the preamble
    const std::vector<std::pair<std::string, std::vector<std::uint8_t>>> preambles = {
        {"png", png},
        {"jpeg", {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0}},
        {"tiff", {'I', 'I', '*', 0, 8, 0, 0, 0}},
        {"bmp", {'B', 'M', 0x36, 0, 0, 0}},
        {"pgm", {'P', '5', '\n', '1', ' ', '1', '\n', '2', '5', '5', '\n', 0}},
        {"gif", {'G', 'I', 'F', '8', '9', 'a'}}};
    const auto ref = io::read_dicom(kDir + "ct_hu.dcm").to_unit(data::IntensitySetting::parse("file"));  // (1, 1, 32, 32)
    for (const auto& [kind, head] : preambles) {
        auto b = good;
        std::copy(head.begin(), head.end(), b.begin());
        for (const std::string& name : std::vector<std::string>{"scan." + kind, "scan.PNG", "IM_" + kind, "1.2.840.113619.2.55." + kind + ".3"}) {
            BOOST_TEST_CONTEXT(kind << " preamble, named " << name) {
                write_bytes(dir / name, b);
                const auto x = data::read_sample({dir / name, -1}, {});
                BOOST_TEST(x.shape() == Shape({1, 32, 32}));
                BOOST_TEST(std::equal(x.data(), x.data() + 1024, ref.data()));
                BOOST_CHECK_EXCEPTION(data::read_image(dir / name), IoError,
                                      message_contains("image: " + (dir / name) + ": a DICOM file ('DICM' at byte 128)"));
                fs::remove(dir / name);
            }
        }
    }
    // Names without an image extension are DICOM by their bytes (a scan takes them); the image names stay images by name.
    write_bytes(dir / "1.2.840.113619.2.55.3", good);
    BOOST_TEST((data::file_format(dir / "1.2.840.113619.2.55.3") == data::FileFormat::dicom));
    write_bytes(dir / "notes.txt", std::vector<std::uint8_t>(200, 'x'));
    BOOST_TEST((data::file_format(dir / "notes.txt") == data::FileFormat::unknown));
    // A PNG whose bytes 128-131 are not 'DICM' is still a PNG.
    write_bytes(dir / "plain.png", png);
    BOOST_TEST(data::read_sample({dir / "plain.png", -1}, {}).shape() == data::read_image(dir / "plain.png").pixels.shape());
}

BOOST_AUTO_TEST_CASE(the_writer_round_trips) {
    TempDir dir;
    auto hu = Tensor<float, Cpu>::empty({1, 20, 24});
    for (std::int64_t i = 0; i < hu.numel(); ++i) hu.data()[i] = static_cast<float>(-1000 + (i * 37) % 2500);
    io::DicomCtOptions o;
    o.pixel_spacing = 0.5;
    o.uid_suffix = "42";
    io::write_dicom_ct(dir / "w.dcm", hu, o);
    const auto im = io::read_dicom(dir / "w.dcm");
    BOOST_TEST(im.rows == 20);
    BOOST_TEST(im.columns == 24);
    BOOST_TEST(im.modality == "CT");
    BOOST_TEST(im.intercept == -1024.0);
    BOOST_REQUIRE(im.window.has_value());
    BOOST_TEST(im.window->center == 40.0);
    BOOST_TEST((*im.pixel_spacing)[0] == 0.5);
    const auto r = im.rescaled();
    for (std::int64_t i = 0; i < hu.numel(); ++i) BOOST_REQUIRE(r.data()[i] == std::min(hu.data()[i], 3071.0f));
    io::write_dicom_ct(dir / "w2.dcm", hu, o);  // the same input writes the same bytes
    BOOST_TEST((bytes_of(dir / "w.dcm") == bytes_of(dir / "w2.dcm")));
}

BOOST_AUTO_TEST_CASE(anonymized_copies_keep_pixels_and_lose_identity) {
    TempDir dir;
    const auto all = expected();
    // two copies of one slice (one study: the same UIDs) and another file
    io::UidMap uids;
    const auto r = io::anonymize_dicom(kDir + "ct_hu.dcm", dir / "a.dcm", uids);
    io::anonymize_dicom(kDir + "ct_hu.dcm", dir / "b.dcm", uids);
    io::anonymize_dicom(kDir + "ct_jpegll.dcm", dir / "c.dcm", uids);  // compressed: copied as it is
    BOOST_TEST(r.uids >= 4);     // SOP instance, study, series, frame of reference
    BOOST_TEST(r.emptied >= 5);  // name, ID, birth date, sex, referring physician, ...
    BOOST_TEST(r.removed >= 2);  // address, institution
    const auto original = bytes_of(kDir + "ct_hu.dcm");
    const auto a = bytes_of(dir / "a.dcm"), b = bytes_of(dir / "b.dcm");
    auto contains = [](const std::vector<std::uint8_t>& hay, const std::string& needle) {
        return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
    };
    // every fake patient string of the fixture is gone, and so is every original UID
    std::vector<std::string> secrets = all.at("patient_strings").get<std::vector<std::string>>();
    for (const char* s : {"Fixture^Jane", "19700101", "Fixture General Hospital", "Referrer^Fixture", "ACC-FIXTURE-42", "1 Fixture Street"})
        secrets.push_back(s);
    gdcm::Reader orig;
    orig.SetFileName((kDir + "ct_hu.dcm").c_str());
    BOOST_REQUIRE(orig.Read());
    for (auto t : {gdcm::Tag(0x0008, 0x0018), gdcm::Tag(0x0020, 0x000d), gdcm::Tag(0x0020, 0x000e), gdcm::Tag(0x0020, 0x0052)})
        secrets.push_back(io::detail::value_text(orig.GetFile().GetDataSet().GetDataElement(t)));
    for (const auto& s : secrets) {
        BOOST_TEST_CONTEXT(s) {
            BOOST_TEST(contains(original, s));  // the test would mean nothing otherwise
            BOOST_TEST(!contains(a, s));
        }
    }
    BOOST_TEST(contains(a, "YES"));  // Patient Identity Removed
    // the pixels and how to show them are unchanged
    const auto x = io::read_dicom(kDir + "ct_hu.dcm"), y = io::read_dicom(dir / "a.dcm");
    BOOST_TEST(y.stored.shape() == x.stored.shape());
    for (std::int64_t i = 0; i < x.stored.numel(); ++i) BOOST_REQUIRE(y.stored.data()[i] == x.stored.data()[i]);
    BOOST_TEST(y.intercept == x.intercept);
    BOOST_TEST(y.window->center == x.window->center);
    const auto cx = io::read_dicom(kDir + "ct_jpegll.dcm"), cy = io::read_dicom(dir / "c.dcm");
    BOOST_TEST(cy.transfer_syntax_uid == cx.transfer_syntax_uid);
    for (std::int64_t i = 0; i < cx.stored.numel(); ++i) BOOST_REQUIRE(cy.stored.data()[i] == cx.stored.data()[i]);
    // one run: the same old UID always becomes the same new one
    gdcm::Reader ra, rb;
    ra.SetFileName((dir / "a.dcm").c_str());
    rb.SetFileName((dir / "b.dcm").c_str());
    BOOST_REQUIRE(ra.Read());
    BOOST_REQUIRE(rb.Read());
    const auto& da = ra.GetFile().GetDataSet();
    const auto& db = rb.GetFile().GetDataSet();
    for (auto t : {gdcm::Tag(0x0008, 0x0018), gdcm::Tag(0x0020, 0x000d), gdcm::Tag(0x0020, 0x000e)})
        BOOST_TEST(io::detail::value_text(da.GetDataElement(t)) == io::detail::value_text(db.GetDataElement(t)));
    BOOST_TEST(io::detail::value_text(da.GetDataElement(gdcm::Tag(0x0010, 0x0010))).empty());
    BOOST_TEST(!da.FindDataElement(gdcm::Tag(0x0008, 0x0080)));  // Institution Name: removed
    // the meta group repeats the new SOP instance UID
    BOOST_TEST(io::detail::value_text(ra.GetFile().GetHeader().GetDataElement(gdcm::Tag(0x0002, 0x0003))) ==
               io::detail::value_text(da.GetDataElement(gdcm::Tag(0x0008, 0x0018))));
    // a hostile input is refused like read_dicom refuses it, and nothing is written
    write_bytes(dir / "cut.dcm", std::vector<std::uint8_t>(original.begin(), original.end() - 100));
    BOOST_CHECK_EXCEPTION(io::anonymize_dicom(dir / "cut.dcm", dir / "cut-anon.dcm", uids), IoError, message_contains("truncated"));
    BOOST_TEST(!fs::exists(dir / "cut-anon.dcm"));
}

BOOST_AUTO_TEST_SUITE_END()
