// SPDX-License-Identifier: MIT
// Tests for data/folds.hpp: stratified group k-fold equal to scikit-learn's StratifiedGroupKFold
// (fixtures in tests/data/metrics/reference.json by tests/data/make_metrics_fixtures.py), its
// properties (folds disjoint and complete, groups whole, class mix stratified within one sample
// per class when every group is one sample, seeded shuffling) and the leakage guard.
#include <boost/test/unit_test.hpp>

#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "medimg/data/folds.hpp"

using namespace medimg;
using medimg::test::message_contains;

namespace {
nlohmann::json fixture(const std::string& name) {
    std::ifstream in(std::string(MEDIMG_TEST_DATA_DIR) + "/metrics/reference.json");
    BOOST_REQUIRE_MESSAGE(in, "cannot open tests/data/metrics/reference.json");
    return nlohmann::json::parse(in).at(name);
}
/// Every group's samples share one fold.
bool groups_whole(const std::vector<std::string>& groups, const std::vector<int>& fold) {
    std::map<std::string, int> seen;
    for (std::size_t i = 0; i < groups.size(); ++i)
        if (!seen.emplace(groups[i], fold[i]).second && seen[groups[i]] != fold[i]) return false;
    return true;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(folds)

BOOST_AUTO_TEST_CASE(stratified_group_folds_equal_scikit_learns) {
    for (const char* name : {"folds_binary", "folds_three"}) {
        BOOST_TEST_CONTEXT(name) {
            const auto c = fixture(name);
            const auto labels = c.at("labels").get<std::vector<std::int64_t>>();
            const auto groups = c.at("groups").get<std::vector<std::string>>();
            const auto want = c.at("fold").get<std::vector<int>>();
            const auto got = data::stratified_group_kfold(labels, groups, c.at("k").get<int>());
            BOOST_TEST(got == want, boost::test_tools::per_element());
            BOOST_TEST(groups_whole(groups, got));
        }
    }
}

BOOST_AUTO_TEST_CASE(one_sample_groups_give_folds_stratified_within_one_sample_per_class) {
    Rng rng(4);
    std::vector<std::int64_t> labels;
    std::vector<std::string> groups;
    for (int i = 0; i < 103; ++i) {
        labels.push_back(rng.uniform() < 0.3 ? 1 : (rng.uniform() < 0.5 ? 2 : 0));
        groups.push_back("img" + std::to_string(i));
    }
    for (bool shuffle : {false, true}) {
        const auto fold = data::stratified_group_kfold(labels, groups, 5, shuffle, 11);
        std::map<std::int64_t, std::vector<int>> per_class;  // class -> count per fold
        for (std::size_t i = 0; i < labels.size(); ++i) {
            auto& v = per_class[labels[i]];
            v.resize(5);
            BOOST_REQUIRE(fold[i] >= 0 && fold[i] < 5);
            ++v[static_cast<std::size_t>(fold[i])];
        }
        for (const auto& [y, v] : per_class)
            BOOST_TEST(*std::max_element(v.begin(), v.end()) - *std::min_element(v.begin(), v.end()) <= 1,
                       "class " << y << (shuffle ? " (shuffled)" : ""));
    }
}

BOOST_AUTO_TEST_CASE(shuffling_is_seeded_and_keeps_groups_whole) {
    const auto c = fixture("folds_three");
    const auto labels = c.at("labels").get<std::vector<std::int64_t>>();
    const auto groups = c.at("groups").get<std::vector<std::string>>();
    const auto a = data::stratified_group_kfold(labels, groups, 4, true, 7);
    const auto b = data::stratified_group_kfold(labels, groups, 4, true, 7);
    const auto d = data::stratified_group_kfold(labels, groups, 4, true, 8);
    BOOST_TEST(a == b, boost::test_tools::per_element());
    BOOST_TEST((a != d));
    BOOST_TEST(groups_whole(groups, a));
    std::set<int> used(a.begin(), a.end());
    BOOST_TEST(used.size() == 4u);
}

BOOST_AUTO_TEST_CASE(impossible_fold_counts_and_leaks_are_refused_by_name) {
    const std::vector<std::int64_t> labels{0, 0, 0, 1, 1, 0};
    const std::vector<std::string> groups{"a", "b", "c", "d", "e", "f"};
    BOOST_CHECK_EXCEPTION(data::stratified_group_kfold(labels, groups, 3), ValueError,
                          message_contains("stratified_group_kfold: class 1 has 2 samples, fewer than the 3 folds"));
    BOOST_CHECK_EXCEPTION(data::stratified_group_kfold(labels, groups, 1), ValueError, message_contains("need at least 2 folds"));
    BOOST_CHECK_EXCEPTION(data::stratified_group_kfold({0, 1, 0, 1}, {"a", "a", "a", "a"}, 2), ValueError,
                          message_contains("1 groups cannot fill 2 folds"));
    BOOST_CHECK_EXCEPTION(data::check_folds({"x.png", "y.png", "x.png"}, {"p1", "p2", "p3"}, {0, 1, 1}), ValueError,
                          message_contains("'x.png' appears twice (folds 0 and 1)"));
    BOOST_CHECK_EXCEPTION(data::check_folds({"x.png", "y.png"}, {"p1", "p1"}, {0, 1}), ValueError,
                          message_contains("group 'p1' is split across folds 0 and 1 ('y.png')"));
    BOOST_CHECK_NO_THROW(data::check_folds({"x.png", "y.png"}, {"p1", "p1"}, {1, 1}));
}

BOOST_AUTO_TEST_SUITE_END()
