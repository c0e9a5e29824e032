// SPDX-License-Identifier: MIT
// medimg-phantoms: writes a seeded synthetic data set in the prototype's layout,
// OUT/{train,val,test}/{normal,lesao}/*.png, as 16-bit grayscale PNGs (medical images are often
// 12-16 bit), drawn by data::phantom_slice (data/phantom.hpp). Refuses to write into an existing
// non-empty folder.
#include <medimg/data/image.hpp>
#include <medimg/data/phantom.hpp>
#include <medimg/medimg.hpp>

#include <filesystem>
#include <iostream>

#include "cli.hpp"


static const char* kUsage = R"(usage: medimg-phantoms --out DIR [--size 64] [--train 400] [--val 100] [--test 100] [--seed 7]
       medimg-phantoms --out DIR --pairs N [--size 64] [--seed 7]

Writes DIR/{train,val,test}/{normal,lesao}/NNNN.png (16-bit grayscale), N images per split
(half per class), and DIR/lesions.csv (each lesion's centre and width).
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
    const auto args = cli::parse(argc, argv, {"--out", "--size", "--train", "--val", "--test", "--seed", "--pairs"}, {"--help"}, kUsage);
    if (args.has("--help")) {
        std::cout << kUsage;
        return 0;
    }
    const fs::path out = args.require("--out");
    const int side = std::stoi(args.get("--size", "64"));
    if (args.has("--pairs")) {
        for (const char* k : {"--train", "--val", "--test"})
            MEDIMG_CHECK(!args.has(k), ConfigError, k, " and --pairs: a pairs folder holds pairs only (see --help)");
        const auto n = static_cast<std::int64_t>(args.number("--pairs", 1, 100000, true, 1));
        const auto written = data::write_phantom_pairs(out.string(), side, n, std::stoull(args.get("--seed", "7")));
        std::cout << "wrote " << written / 2 << " exam pairs (" << side << "x" << side << ", 16-bit) and pairs.csv under " << out.string()
                  << "\n";
        return 0;
    }
    const std::int64_t counts[3] = {std::stoll(args.get("--train", "400")), std::stoll(args.get("--val", "100")),
                                    std::stoll(args.get("--test", "100"))};
    const auto written = data::write_phantom_dataset(out.string(), side, counts, std::stoull(args.get("--seed", "7")));
    std::cout << "wrote " << written << " phantom images (" << side << "x" << side << ", 16-bit) under " << out.string() << "\n";
    return 0;
} catch (const std::exception& e) {
    std::cerr << "medimg-phantoms: " << e.what() << "\n";
    return 1;
}
