// SPDX-License-Identifier: MIT
// medimg-anonymize: de-identified copies of DICOM files (io/dicom_anonymize.hpp: DICOM PS3.15 E.1
// basic profile through GDCM; docs/formats.md). IN is a file or a folder (searched recursively for
// DICOM files: .dcm/.dicom or 'DICM' at byte 128); OUT is the file, or the folder that receives
// the same relative paths. One run shares one map of UIDs, so the files of one study or series
// still share their new study / series UIDs. Never overwrites: an existing output file stops the
// run before anything is written.
#include <medimg/io/dicom_anonymize.hpp>
#include <medimg/medimg.hpp>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"

static const char* kUsage = R"(usage: medimg-anonymize IN OUT

Writes a de-identified copy of the DICOM file IN to OUT, or of every DICOM file under the folder IN
(recursively) to the same relative path under the folder OUT, following the DICOM basic
application level confidentiality profile (PS3.15 Annex E): the attributes it lists are removed
or emptied, UIDs are replaced by new ones (the same old UID by the same new one within a run),
private attributes are removed, Patient Identity Removed is set to YES. The pixels are copied
unchanged (text burned into them is not removed). Existing output files are never overwritten.

  --help   this text

Research software: not for clinical diagnosis. Check the copies before sharing them.
)";

int main(int argc, char** argv) try {
    using namespace medimg;
    namespace fs = std::filesystem;
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 1 && args[0] == "--help") {
        std::cout << kUsage;
        return 0;
    }
    for (const auto& a : args) MEDIMG_CHECK(a.rfind("--", 0) != 0, ConfigError, "unknown option '", a, "' (see --help)");
    MEDIMG_CHECK(args.size() == 2, ConfigError, "expected IN and OUT, got ", args.size(), " argument", args.size() == 1 ? "" : "s",
                 " (see --help)");
    const fs::path in = args[0], out = args[1];
    std::error_code ec;
    std::vector<std::pair<fs::path, fs::path>> jobs;  // (input, output)
    if (fs::is_directory(in, ec)) {
        for (fs::recursive_directory_iterator it(in, ec), end; !ec && it != end; it.increment(ec))
            if (std::error_code type_ec;  // its own: a dangling link must not end the listing; FIFOs, sockets are skipped
                it->is_regular_file(type_ec) && data::file_format(it->path()) == data::FileFormat::dicom)
                jobs.emplace_back(it->path(), out / fs::relative(it->path(), in));
        MEDIMG_CHECK(!ec, IoError, "anonymize: cannot list '", in.string(), "': ", ec.message());
        MEDIMG_CHECK(!jobs.empty(), IoError, "anonymize: folder '", in.string(), "' holds no DICOM files (.dcm, or 'DICM' at byte 128)");
        std::sort(jobs.begin(), jobs.end());
    } else {
        MEDIMG_CHECK(fs::exists(in, ec), IoError, "anonymize: '", in.string(), "' does not exist");
        MEDIMG_CHECK(!fs::is_directory(out, ec), IoError, "anonymize: OUT '", out.string(),
                     "' is a folder; for one file give the output file's name");
        jobs.emplace_back(in, out);
    }
    for (const auto& [src, dst] : jobs)
        MEDIMG_CHECK(!fs::exists(dst, ec), IoError, "anonymize: '", dst.string(), "' already exists; refusing to overwrite it");
    io::UidMap uids;
    io::AnonymizeReport total;
    for (const auto& [src, dst] : jobs) {
        if (dst.has_parent_path()) fs::create_directories(dst.parent_path(), ec);
        MEDIMG_CHECK(!ec, IoError, "anonymize: cannot create the folder '", dst.parent_path().string(), "': ", ec.message());
        const auto r = io::anonymize_dicom(src.string(), dst.string(), uids);
        total.removed += r.removed, total.emptied += r.emptied, total.uids += r.uids;
    }
    std::cout << "anonymized " << jobs.size() << " DICOM file" << (jobs.size() == 1 ? "" : "s") << " into " << out.string() << ": "
              << total.removed << " attributes removed, " << total.emptied << " emptied, " << total.uids << " UIDs replaced ("
              << uids.size() << " distinct)\n";
    return 0;
} catch (...) {
    return medimg::cli::fail("medimg-anonymize");  // one line for any exception (medimg::current_exception_message)
}
