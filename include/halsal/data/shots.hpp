// k, the number of training images per class, and K: the dataset's own training split (the
// paper's K column). One constant for K everywhere: splits, tables, model files and programs.
#pragma once
#include <string>
#include <vector>

#include "halsal/core/error.hpp"

namespace halsal::data {

/// k for "the dataset's own training split" (the paper's K column, written "K").
constexpr int kOfficial = -1;

/// The paper's k values: 1, 2, 3, 5, 10, 15, 20, 25, 30 (and K = kOfficial).
inline std::vector<int> paper_ks() { return {1, 2, 3, 5, 10, 15, 20, 25, 30}; }

/// The text of k: "K" for kOfficial, else the number.
inline std::string k_label(int k) { return k == kOfficial ? "K" : std::to_string(k); }

/// Parses "K" (or "k") → kOfficial, else a positive integer; throws halsal::Error.
inline int parse_k(const std::string& text) {
  if (text == "K" || text == "k") return kOfficial;
  int k = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || k > 100000000) k = -1;
    if (k < 0) break;
    k = 10 * k + (c - '0');
  }
  if (text.empty() || k <= 0)
    throw Error("k must be a positive number of images per class or K, got '" + text + "'");
  return k;
}

}  // namespace halsal::data
