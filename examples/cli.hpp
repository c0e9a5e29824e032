// SPDX-License-Identifier: MIT
// cli.hpp: the small command-line parser the medimg programs share: `--flag`, `--key value`,
// repeatable keys, and one clear error for an unknown flag or a missing value. Not part of the
// library (programs only).
#pragma once

#include <cmath>
#include <cstdio>
#include <exception>
#include <cctype>
#include <map>
#include <stdexcept>
#include <set>
#include <string>
#include <vector>

#include <iostream>

#include <medimg/error.hpp>
#include <medimg/io/text.hpp>

namespace medimg::cli {

struct Args {
    std::map<std::string, std::vector<std::string>> values;
    std::set<std::string> flags;
    bool has(const std::string& k) const { return flags.count(k) || values.count(k); }
    std::string get(const std::string& k, const std::string& dflt = "") const {
        auto it = values.find(k);
        return it == values.end() ? dflt : it->second.back();
    }
    std::vector<std::string> all(const std::string& k) const {
        auto it = values.find(k);
        return it == values.end() ? std::vector<std::string>{} : it->second;
    }
    std::string require(const std::string& k) const {
        MEDIMG_CHECK(values.count(k), ConfigError, "missing required option ", k, " (see --help)");
        return get(k);
    }
    /// The value of k as a number in [lo, hi] (whole: an integer), or dflt when k is absent;
    /// anything else is one ConfigError line: "<k>: expected a whole number in [lo, hi], got '<v>'".
    /// Every number option of every program goes through here (never std::stoi and kin, whose
    /// exceptions say only "stoi"): "", "12abc", " 5", "0x10", "nan", "1e400" and out-of-range
    /// values are all refused with the flag and the value (io::parse_number).
    double number(const std::string& k, double lo, double hi, bool whole, double dflt) const {
        if (!values.count(k)) return dflt;
        const std::string v = get(k);
        double x = 0;
        MEDIMG_CHECK(io::parse_number(v, x) && x >= lo && x <= hi && (!whole || x == std::floor(x)), ConfigError, k, ": expected ",
                     whole ? "a whole number" : "a number", " in [", bound(lo), ", ", bound(hi), "], got '", io::clipped(v), "'");
        return x;
    }
    /// A range's end as people write it: 1000000 and 9007199254740992, not 1e+06 and 9.0072e+15.
    static std::string bound(double x) {
        char text[32];
        std::snprintf(text, sizeof text, x == std::floor(x) && std::fabs(x) < 1e16 ? "%.0f" : "%g", x);
        return text;
    }
};

/// True when `usage` names `option` as a whole word ("--set", not the "--set" of "--settle").
inline bool mentions(const std::string& usage, const std::string& option) {
    for (auto at = usage.find(option); at != std::string::npos; at = usage.find(option, at + 1)) {
        const std::size_t end = at + option.size();
        const bool word_end = end == usage.size() || !(std::isalnum(static_cast<unsigned char>(usage[end])) || usage[end] == '-');
        if (word_end) return true;
    }
    return false;
}

/// `valued`: options that take a value; `boolean`: options that do not; `usage`: the --help text,
/// which must name every one of them (checked whenever --help is asked for, so a test of --help
/// catches an option the text forgot: std::logic_error naming it).
inline Args parse(int argc, char** argv, const std::set<std::string>& valued, const std::set<std::string>& boolean,
                  const std::string& usage) {
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--help") {
            for (const auto* set : {&valued, &boolean})
                for (const auto& o : *set)
                    if (!mentions(usage, o)) throw std::logic_error("the --help text does not mention " + o);
            break;
        }
    Args a;
    for (int i = 1; i < argc; ++i) {
        std::string k = argv[i];
        std::string v;
        const auto eq = k.find('=');
        const bool inline_value = k.rfind("--", 0) == 0 && eq != std::string::npos;
        if (inline_value) v = k.substr(eq + 1), k = k.substr(0, eq);
        if (boolean.count(k) && !inline_value) {
            a.flags.insert(k);
        } else if (valued.count(k)) {
            if (!inline_value) {
                MEDIMG_CHECK(i + 1 < argc, ConfigError, "option ", k, " needs a value");
                v = argv[++i];
            }
            a.values[k].push_back(v);
        } else {
            throw ConfigError("unknown option '" + k + "' (see --help)");
        }
    }
    return a;
}

/// What every program's main does with an exception that reached it (use inside the catch block):
/// prints "<program>: <one line>" (medimg::current_exception_message: a medimg error as it is,
/// out of memory in words, anything else marked as a gap) and returns the exit status 1.
inline int fail(const char* program) {
    std::cerr << program << ": " << current_exception_message() << "\n";
    return 1;
}

}  // namespace medimg::cli
