// SPDX-License-Identifier: MIT
// medimg-phantoms: writes a seeded synthetic data set in the prototype's layout,
// OUT/{train,val,test}/{normal,lesao}/*.png, as 16-bit grayscale PNGs (medical images are often
// 12-16 bit), drawn by data::phantom_slice (data/phantom.hpp). Refuses to write into an existing
// non-empty folder. --format dicom writes the same phantoms as CT slices in Hounsfield units
// (data::phantom_hu) with the brain window, through GDCM (io::write_dicom_ct; docs/formats.md).
#include <medimg/data/image.hpp>
#include <medimg/data/phantom.hpp>
#include <medimg/medimg.hpp>
#if defined(MEDIMG_WITH_DICOM)
#  include <medimg/io/dicom.hpp>
#endif

#include <filesystem>
#include <iostream>

#include "cli.hpp"


static const char* kUsage = R"(usage: medimg-phantoms --out DIR [--size 64] [--train 400] [--val 100] [--test 100] [--seed 7] [--format png|dicom]
       medimg-phantoms --out DIR --pairs N [--size 64] [--seed 7]

Writes DIR/{train,val,test}/{normal,lesao}/NNNN.png (16-bit grayscale), N images per split
(half per class), and DIR/lesions.csv (each lesion's centre and width). With --format dicom,
NNNN.dcm instead: CT slices in Hounsfield units (air -1000, brain ~30-45, bone > 300) with a
brain window (W:80 L:40) and a synthetic patient ("Phantom^Synthetic").
With --pairs N, instead: N exam pairs for medimg-compare, DIR/NNNN_reference.png (a phantom
without a lesion) and DIR/NNNN_moved_lesion.png (the same phantom with a lesion, turned by up to
10 degrees and shifted by up to 6% of the side, with its own noise), and DIR/pairs.csv (the
motion and where the lesion lies in the reference's frame).
DIR must not exist or be empty: existing data is never overwritten.

  --help   this text
)";

int main(int argc, char** argv) try {
    using namespace medimg;
    namespace fs = std::filesystem;
    const auto args = cli::parse(argc, argv, {"--out", "--size", "--train", "--val", "--test", "--seed", "--pairs", "--format"}, {"--help"}, kUsage);
    if (args.has("--help")) {
        std::cout << kUsage;
        return 0;
    }
    const fs::path out = args.require("--out");
    const int side = static_cast<int>(args.number("--size", 32, 1024, true, 64));  // data::phantom_slice's range
    const auto seed = static_cast<std::uint64_t>(args.number("--seed", 0, 9007199254740992.0, true, 7));  // 2^53: exact in a double
    if (args.has("--pairs")) {
        for (const char* k : {"--train", "--val", "--test"})
            MEDIMG_CHECK(!args.has(k), ConfigError, k, " and --pairs: a pairs folder holds pairs only (see --help)");
        const auto n = static_cast<std::int64_t>(args.number("--pairs", 1, 100000, true, 1));
        const auto written = data::write_phantom_pairs(out.string(), side, n, seed);
        std::cout << "wrote " << written / 2 << " exam pairs (" << side << "x" << side << ", 16-bit) and pairs.csv under " << out.string()
                  << "\n";
        return 0;
    }
    const std::int64_t counts[3] = {static_cast<std::int64_t>(args.number("--train", 2, 1e6, true, 400)),
                                    static_cast<std::int64_t>(args.number("--val", 2, 1e6, true, 100)),
                                    static_cast<std::int64_t>(args.number("--test", 2, 1e6, true, 100))};
    const std::string format = args.get("--format", "png");
    MEDIMG_CHECK(format == "png" || format == "dicom", ConfigError, "--format: '", format, "' is not png or dicom");
    data::PhantomWriter writer = data::write_phantom_png;
    if (format == "dicom") {
#if defined(MEDIMG_WITH_DICOM)
        writer = [seed = std::to_string(seed)](const std::string& stem, const Tensor<float, Cpu>& slice, std::int64_t index) {
            auto hu = Tensor<float, Cpu>::empty(slice.shape());
            for (std::int64_t i = 0; i < slice.numel(); ++i) hu.data()[i] = static_cast<float>(data::phantom_hu(slice.data()[i]));
            io::DicomCtOptions o;
            o.patient_id = "PHANTOM-" + std::to_string(index);
            o.uid_suffix = "1" + seed + std::to_string(100000 + index);  // digits: 1, the seed, the image
            io::write_dicom_ct(stem + ".dcm", hu, o);
            return stem + ".dcm";
        };
#else
        throw ConfigError("--format dicom: this medimg-phantoms was built without DICOM support (GDCM; docs/formats.md)");
#endif
    }
    const auto written = data::write_phantom_dataset(out.string(), side, counts, seed, writer);
    std::cout << "wrote " << written << " phantom images (" << side << "x" << side << (format == "dicom" ? ", DICOM CT in HU" : ", 16-bit")
              << ") under " << out.string() << "\n";
    return 0;
} catch (...) {
    return medimg::cli::fail("medimg-phantoms");
}
