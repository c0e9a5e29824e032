// SPDX-License-Identifier: MIT
// io/dicom_anonymize.hpp: a de-identified copy of a DICOM file, after DICOM PS3.15 Annex E's
// Basic Application Level Confidentiality Profile (E.1), through GDCM: the attributes the profile
// lists (gdcm::Anonymizer's own list of Table E.1-1, 48 attributes as of 2009, and the dates,
// times, descriptions, addresses and references today's table adds; see profile_attributes), at
// the top level and inside every sequence,
//   - UIDs (VR UI) replaced by new ones (gdcm::UIDGenerator), the same old UID always by the same
//     new one within a run (UidMap), so the files of one study still belong together;
//   - the type 2 attributes of the patient and study modules a reader expects to find (patient's
//     name, ID, birth date and sex, referring physician, study ID, date and time, accession
//     number) emptied (action Z);
//   - every other listed attribute removed (action X);
// private attributes removed (gdcm::Anonymizer::RemovePrivateTags), Patient Identity Removed
// (0012,0062) set to YES and De-identification Method (0012,0063) stated; the file meta group's
// SOP instance UID follows the new one and its Source Application Entity Title is dropped.
// The pixel data is copied unchanged: text burned into the pixels (Burned In Annotation) is not
// removed, and nothing here recognises a face in a volume. GDCM's own BasicApplicationLevel-
// ConfidentialityProfile() is not used: it needs an X.509 certificate to encrypt the original
// values into the file (the reversible option of E.1), which a research copy does not want.
// Needs GDCM (medimg::dicom). Used by medimg-anonymize (docs/formats.md).
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <gdcmAnonymizer.h>
#include <gdcmDataSetHelper.h>
#include <gdcmDicts.h>
#include <gdcmGlobal.h>
#include <gdcmSequenceOfItems.h>
#include <gdcmUIDGenerator.h>
#include <gdcmWriter.h>

#include "medimg/io/atomic_file.hpp"
#include "medimg/io/dicom.hpp"

namespace medimg::io {

/// Old UID -> new UID for one run (one object shared by every file of the run).
class UidMap {
public:
    std::string operator()(const std::string& old) {
        const auto it = map_.find(old);
        if (it != map_.end()) return it->second;
        gdcm::UIDGenerator g;
        const char* fresh = g.Generate();
        MEDIMG_CHECK(fresh != nullptr, IoError, "anonymize: GDCM could not generate a UID");
        return map_[old] = fresh;
    }
    std::size_t size() const { return map_.size(); }

private:
    std::map<std::string, std::string> map_;
};

/// What anonymize_dicom changed in one file.
struct AnonymizeReport {
    std::size_t removed = 0, emptied = 0, uids = 0;
};

namespace detail {

inline std::string value_text(const gdcm::DataElement& de) {
    const gdcm::ByteValue* bv = de.GetByteValue();
    if (!bv || !bv->GetPointer()) return {};
    std::string s(bv->GetPointer(), bv->GetLength());
    while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
    return s;
}

/// Applies the profile to `ds` and, recursively, to the items of its sequences.
/// GDCM 3.0's list is Table E.1-1 as of 2009 (48 attributes); the table has grown since. These are
/// attributes of today's Table E.1-1 (basic profile, no options: dates and descriptions go too)
/// that GDCM's list lacks and that real exams carry; UIDs among them (VR UI) are replaced, the
/// type 2 ones of `emptied` emptied, the rest removed. Not exhaustive: the table lists ~600.
inline const std::vector<gdcm::Tag>& profile_attributes() {
    static const std::vector<gdcm::Tag> all = [] {
        std::vector<gdcm::Tag> v = gdcm::Anonymizer::GetBasicApplicationLevelConfidentialityProfileAttributes();
        const std::uint16_t more[][2] = {
            {0x0008, 0x0012}, {0x0008, 0x0013}, {0x0008, 0x0020}, {0x0008, 0x0021}, {0x0008, 0x0022}, {0x0008, 0x0023},  // dates
            {0x0008, 0x002a}, {0x0008, 0x0030}, {0x0008, 0x0031}, {0x0008, 0x0032}, {0x0008, 0x0033},                     // times
            {0x0008, 0x0082}, {0x0008, 0x0096}, {0x0008, 0x1030}, {0x0008, 0x103e}, {0x0008, 0x1049}, {0x0008, 0x1052},
            {0x0008, 0x1062}, {0x0008, 0x1072}, {0x0008, 0x1080}, {0x0008, 0x1110}, {0x0008, 0x1111}, {0x0008, 0x1120},
            {0x0008, 0x1140}, {0x0008, 0x1155}, {0x0010, 0x0021}, {0x0010, 0x0050}, {0x0010, 0x1002}, {0x0010, 0x1005},
            {0x0010, 0x1040}, {0x0010, 0x1060}, {0x0010, 0x1090}, {0x0010, 0x2150}, {0x0010, 0x2152}, {0x0010, 0x2154},
            {0x0010, 0x2160}, {0x0010, 0x2180}, {0x0010, 0x21f0}, {0x0018, 0x1002}, {0x0018, 0x1030}, {0x0018, 0x9424},
            {0x0020, 0x0200}, {0x0020, 0x4000}, {0x0032, 0x1032}, {0x0032, 0x1033}, {0x0032, 0x1060}, {0x0032, 0x1070},
            {0x0032, 0x4000}, {0x0038, 0x0010}, {0x0038, 0x0300}, {0x0038, 0x0400}, {0x0038, 0x0500}, {0x0038, 0x4000},
            {0x0040, 0x0006}, {0x0040, 0x0244}, {0x0040, 0x0245}, {0x0040, 0x0253}, {0x0040, 0x0254}, {0x0040, 0x0275},
            {0x0040, 0x1001}, {0x0040, 0x2016}, {0x0040, 0x2017}, {0x0040, 0xa124}, {0x0088, 0x0140}, {0x3006, 0x0024}};
        for (const auto& t : more) {
            const gdcm::Tag tag(t[0], t[1]);
            if (std::find(v.begin(), v.end(), tag) == v.end()) v.push_back(tag);
        }
        return v;
    }();
    return all;
}

inline void deidentify(const gdcm::File& file, gdcm::DataSet& ds, UidMap& uids, AnonymizeReport& r, int depth) {
    const std::vector<gdcm::Tag>& listed = profile_attributes();
    static const std::set<gdcm::Tag> emptied = {  // type 2 in the patient, study and image modules: action Z
        gdcm::Tag(0x0010, 0x0010), gdcm::Tag(0x0010, 0x0020), gdcm::Tag(0x0010, 0x0030), gdcm::Tag(0x0010, 0x0040),
        gdcm::Tag(0x0008, 0x0090), gdcm::Tag(0x0020, 0x0010), gdcm::Tag(0x0008, 0x0020), gdcm::Tag(0x0008, 0x0030),
        gdcm::Tag(0x0008, 0x0050), gdcm::Tag(0x0008, 0x0023), gdcm::Tag(0x0008, 0x0033)};
    const gdcm::Dicts& dicts = gdcm::Global::GetInstance().GetDicts();
    for (const gdcm::Tag& tag : listed) {
        if (!ds.FindDataElement(tag)) continue;
        gdcm::DataElement de = ds.GetDataElement(tag);
        if (dicts.GetDictEntry(tag).GetVR() == gdcm::VR::UI) {
            const std::string old = value_text(de);
            std::string fresh = uids(old.empty() ? "empty:" + std::to_string(r.uids) : old);
            if (fresh.size() % 2) fresh += '\0';
            de.SetByteValue(fresh.data(), static_cast<std::uint32_t>(fresh.size()));
            ds.Replace(de);
            ++r.uids;
        } else if (emptied.count(tag)) {
            de.Empty();
            ds.Replace(de);
            ++r.emptied;
        } else {
            ds.Remove(tag);
            ++r.removed;
        }
    }
    if (depth >= 32) return;
    // Sequences: their items are data sets of their own (copied, changed, put back).
    std::vector<gdcm::DataElement> sequences;
    for (auto it = ds.Begin(); it != ds.End(); ++it)
        if (gdcm::DataSetHelper::ComputeVR(file, ds, it->GetTag()) == gdcm::VR::SQ) sequences.push_back(*it);
    for (gdcm::DataElement& de : sequences) {
        gdcm::SmartPointer<gdcm::SequenceOfItems> sq = de.GetValueAsSQ();
        if (!sq) continue;
        for (gdcm::SequenceOfItems::SizeType i = 1; i <= sq->GetNumberOfItems(); ++i)
            deidentify(file, sq->GetItem(i).GetNestedDataSet(), uids, r, depth + 1);
        de.SetValue(*sq);
        de.SetVLToUndefined();
        ds.Replace(de);
    }
}

}  // namespace detail

/// Writes a de-identified copy of the DICOM file `in` to `out` (atomically; `in` is not changed).
/// The input is checked as read_dicom checks it (structure, limits) before GDCM parses it.
/// Errors: IoError "dicom: <file>: ..." (unreadable input) or "anonymize: <file>: ..." (writing).
inline AnonymizeReport anonymize_dicom(const std::string& in, const std::string& out, UidMap& uids, const DicomLimits& limits = {}) {
    detail::gdcm_init();
    const auto bytes = data::detail::read_whole_file(in, limits.max_file_bytes, "dicom", "DicomLimits::max_file_bytes");
    if (bytes.empty()) throw IoError("dicom: " + in + ": empty file");
    detail::StructureWalk walk(bytes.data(), bytes.size(), in);
    const std::string ts = walk.meta();
    if (gdcm::TransferSyntax::GetTSType(ts.c_str()) == gdcm::TransferSyntax::TS_END)
        throw IoError("dicom: " + in + ": transfer syntax " + ts + " (" + detail::transfer_syntax_name(ts) + ") is not one GDCM can read");
    walk.data_set(ts);
    detail::MemoryStreamBuf buf(bytes.data(), bytes.size());
    std::istream stream(&buf);
    gdcm::Reader reader;
    reader.SetStream(stream);
    bool ok = false;
    try {
        ok = reader.Read();
    } catch (const std::exception&) {
        ok = false;
    }
    MEDIMG_CHECK(ok && buf.shortfall() == 0, IoError, "dicom: ", in, ": GDCM could not parse the data set (malformed?)");
    gdcm::File& file = reader.GetFile();
    gdcm::DataSet& ds = file.GetDataSet();
    AnonymizeReport r;
    gdcm::Anonymizer anon;
    anon.SetFile(file);
    anon.RemovePrivateTags();
    detail::deidentify(file, ds, uids, r, 0);
    auto put = [&](std::uint16_t g, std::uint16_t e, gdcm::VR::VRType vr, std::string v) {
        if (v.size() % 2) v += ' ';
        gdcm::DataElement de(gdcm::Tag(g, e));
        de.SetVR(vr);
        de.SetByteValue(v.data(), static_cast<std::uint32_t>(v.size()));
        ds.Replace(de);
    };
    put(0x0012, 0x0062, gdcm::VR::CS, "YES");
    put(0x0012, 0x0063, gdcm::VR::LO, "medimg-anonymize: DICOM PS3.15 E.1 basic profile");
    // The meta group: the SOP instance UID it repeats, and no source AE title.
    gdcm::FileMetaInformation& meta = file.GetHeader();
    if (ds.FindDataElement(gdcm::Tag(0x0008, 0x0018))) {
        std::string sop = detail::value_text(ds.GetDataElement(gdcm::Tag(0x0008, 0x0018)));
        if (sop.size() % 2) sop += '\0';
        gdcm::DataElement de(gdcm::Tag(0x0002, 0x0003));
        de.SetVR(gdcm::VR::UI);
        de.SetByteValue(sop.data(), static_cast<std::uint32_t>(sop.size()));
        meta.Replace(de);
    }
    meta.Remove(gdcm::Tag(0x0002, 0x0016));
    std::ostringstream os;
    gdcm::Writer writer;
    writer.SetFile(file);
    writer.SetStream(os);
    bool written = false;
    try {
        written = writer.Write();
    } catch (const std::exception&) {
        written = false;
    }
    MEDIMG_CHECK(written, IoError, "anonymize: ", in, ": GDCM could not write the de-identified copy");
    const std::string text = os.str();
    write_file_atomically(out, {{text.data(), text.size()}}, "anonymize");
    return r;
}

}  // namespace medimg::io
