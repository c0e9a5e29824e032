// SPDX-License-Identifier: MIT
// Tests for metrics/classification.hpp against hand-computed values (and values scikit-learn
// gives for the same inputs: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.75).
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "helpers.hpp"
#include "medimg/metrics/classification.hpp"

using namespace medimg;
using medimg::test::message_contains;

BOOST_AUTO_TEST_SUITE(classification)

BOOST_AUTO_TEST_CASE(roc_auc_matches_known_values_with_ties) {
    BOOST_TEST(metrics::roc_auc({0.1, 0.4, 0.35, 0.8}, {false, false, true, true}) == 0.75);
    BOOST_TEST(metrics::roc_auc({0.5, 0.5, 0.5, 0.5}, {false, true, false, true}) == 0.5);  // all tied
    BOOST_TEST(metrics::roc_auc({0.2, 0.9}, {false, true}) == 1.0);
    BOOST_TEST(std::isnan(metrics::roc_auc({0.2, 0.9}, {true, true})));
}

BOOST_AUTO_TEST_CASE(binary_report_counts_confusion_sensitivity_specificity) {
    // p(class 1): 0.9 (y1), 0.6 (y0: false positive), 0.2 (y0), 0.4 (y1: false negative), 0.7 (y1)
    std::vector<double> p;
    for (double q : {0.9, 0.6, 0.2, 0.4, 0.7}) p.insert(p.end(), {1 - q, q});
    const auto r = metrics::classification_report(p, {1, 0, 0, 1, 1}, 2);
    BOOST_TEST(r.accuracy == 0.6);
    BOOST_TEST(r.confusion[1][1] == 2);
    BOOST_TEST(r.confusion[1][0] == 1);
    BOOST_TEST(r.confusion[0][1] == 1);
    BOOST_TEST(r.sensitivity[1] == 2.0 / 3);  // TP 2 of 3 positives
    BOOST_TEST(r.specificity[1] == 0.5);      // TN 1 of 2 negatives
    BOOST_TEST(r.sensitivity[0] == 0.5);
    BOOST_TEST(r.macro_auc == 5.0 / 6);       // pairs (pos > neg): 0.9>all, 0.7>all, 0.4>0.2 only
}

BOOST_AUTO_TEST_CASE(multiclass_auc_is_the_macro_one_vs_rest_mean) {
    const std::vector<double> p = {0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.2, 0.2, 0.6, 0.5, 0.15, 0.35};
    const auto r = metrics::classification_report(p, {0, 1, 2, 1}, 3);
    BOOST_TEST(r.accuracy == 0.75);
    BOOST_TEST(r.auc[0] == 1.0);  // class 0: 0.7 vs {0.1, 0.2, 0.5}
    BOOST_TEST(r.auc[1] == 0.5);  // class 1: {0.8, 0.15} vs {0.2, 0.2}: 2 of 4 pairs ordered
    BOOST_TEST(r.auc[2] == 1.0);  // class 2: 0.6 vs {0.1, 0.1, 0.35}
    BOOST_TEST(r.macro_auc == 2.5 / 3, boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(rejects_bad_labels_and_sizes) {
    BOOST_CHECK_EXCEPTION(metrics::classification_report({0.5, 0.5}, {2}, 2), ValueError, message_contains("label[0] = 2 is not in [0, 2)"));
    BOOST_CHECK_EXCEPTION(metrics::classification_report({0.5}, {0}, 2), ShapeError, message_contains("1 scores for 1 samples x 2 classes"));
}

BOOST_AUTO_TEST_SUITE_END()
