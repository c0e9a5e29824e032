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

Writes DIR/{train,val,test}/{normal,lesao}/NNNN.png (16-bit grayscale), N images per split
(half per class). DIR must not exist or be empty: existing data is never overwritten.
)";

int main(int argc, char** argv) try {
    using namespace medimg;
    namespace fs = std::filesystem;
    const auto args = cli::parse(argc, argv, {"--out", "--size", "--train", "--val", "--test", "--seed"}, {"--help"});
    if (args.has("--help")) {
        std::cout << kUsage;
        return 0;
    }
    const fs::path out = args.require("--out");
    const int side = std::stoi(args.get("--size", "64"));
    const std::int64_t counts[3] = {std::stoll(args.get("--train", "400")), std::stoll(args.get("--val", "100")),
                                    std::stoll(args.get("--test", "100"))};
    const auto written = data::write_phantom_dataset(out.string(), side, counts, std::stoull(args.get("--seed", "7")));
    std::cout << "wrote " << written << " phantom images (" << side << "x" << side << ", 16-bit) under " << out.string() << "\n";
    return 0;
} catch (const std::exception& e) {
    std::cerr << "medimg-phantoms: " << e.what() << "\n";
    return 1;
}
