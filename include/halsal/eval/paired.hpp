// Paired comparisons: two methods tested on the same images (the same split for a seed), their
// per-image differences pooled over seeds, and a percentile bootstrap interval that resamples the
// images within each seed. With 5 test images per class a single run moves by about ±2 points;
// pairing removes the part of that noise that comes from which images were drawn.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/data/rng.hpp"
#include "halsal/eval/table.hpp"

namespace halsal::eval {

/// A mean difference with its interval; NaN fields when there was nothing to compare.
struct PairedDifference {
  double mean = std::numeric_limits<double>::quiet_NaN();
  double lo = std::numeric_limits<double>::quiet_NaN();  ///< lower end of the interval
  double hi = std::numeric_limits<double>::quiet_NaN();  ///< upper end of the interval
  size_t pairs = 0;  ///< items compared (images × seeds)
  int groups = 0;    ///< seeds that had both methods
  double level = 0.95;

  /// True when the whole interval lies above zero.
  bool above_zero() const { return pairs > 0 && lo > 0; }
  /// True when the whole interval lies below zero.
  bool below_zero() const { return pairs > 0 && hi < 0; }
};

/// "+1.2 [−0.8, +3.1]" (with `decimals` digits), or "—" when nothing was compared.
inline std::string to_text(const PairedDifference& d, int decimals = 1) {
  if (d.pairs == 0 || std::isnan(d.mean)) return "—";
  auto sign = [&](double v) {
    std::string t = format_fixed(v, decimals);
    return (t[0] == '-' || t.find_first_not_of("0.") == std::string::npos) ? t : "+" + t;
  };
  return sign(d.mean) + " [" + sign(d.lo) + ", " + sign(d.hi) + "]";
}

/// Bootstrap options. The generator is fixed, so the same data give the same interval.
struct BootstrapOptions {
  int replicates = 10000;
  double level = 0.95;
  uint64_t seed = 0x70616972;  // "pair"
};

/// The mean of all per-item differences (pooled over the groups, e.g. seeds) and a percentile
/// bootstrap interval: each replicate resamples every group's items with replacement (a
/// stratified bootstrap, so every seed keeps its size).
inline PairedDifference paired_bootstrap(const std::vector<std::vector<double>>& groups,
                                         const BootstrapOptions& o = {}) {
  if (o.replicates < 100) throw Error("paired bootstrap: at least 100 replicates are needed");
  if (!(o.level > 0 && o.level < 1)) throw Error("paired bootstrap: the level must lie in (0, 1)");
  PairedDifference d;
  d.level = o.level;
  double sum = 0;
  for (const auto& g : groups) {
    if (g.empty()) continue;
    ++d.groups;
    d.pairs += g.size();
    for (double x : g) sum += x;
  }
  if (d.pairs == 0) return d;
  d.mean = sum / static_cast<double>(d.pairs);
  data::Rng rng(o.seed);
  std::vector<double> means(static_cast<size_t>(o.replicates));
  for (auto& m : means) {
    double s = 0;
    for (const auto& g : groups)
      for (size_t i = 0; i < g.size(); ++i) s += g[rng.below(g.size())];
    m = s / static_cast<double>(d.pairs);
  }
  std::sort(means.begin(), means.end());
  // Percentile interval: the (1-level)/2 and (1+level)/2 quantiles (nearest rank).
  auto quantile = [&](double q) {
    const double pos = q * static_cast<double>(means.size() - 1);
    return means[static_cast<size_t>(std::llround(pos))];
  };
  d.lo = quantile((1 - o.level) / 2);
  d.hi = quantile((1 + o.level) / 2);
  return d;
}

/// One cell's test outcomes: for each test image (dataset sample index) its label, the
/// predicted class and whether that was right.
struct TestOutcomes {
  std::vector<size_t> index;
  std::vector<int64_t> label, predicted;

  size_t size() const { return index.size(); }
  /// Top-1 correct (1) or not (0) for item i.
  double correct(size_t i) const { return label.at(i) == predicted.at(i) ? 1.0 : 0.0; }
};

/// Per-image differences `b − a` in percentage points (100 · (correct_b − correct_a)), paired by
/// sample index. Both must cover the same test images (Error otherwise: different splits).
inline std::vector<double> paired_differences(const TestOutcomes& a, const TestOutcomes& b) {
  if (a.size() != b.size())
    throw Error("paired comparison: " + std::to_string(a.size()) + " and " + std::to_string(b.size()) +
                " test images; the two runs did not use the same split");
  std::map<size_t, double> by_index;
  for (size_t i = 0; i < a.size(); ++i) by_index[a.index[i]] = a.correct(i);
  std::vector<double> out;
  out.reserve(b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    const auto it = by_index.find(b.index[i]);
    if (it == by_index.end())
      throw Error("paired comparison: test image " + std::to_string(b.index[i]) +
                  " is in one run only; the two runs did not use the same split");
    out.push_back(100.0 * (b.correct(i) - it->second));
  }
  return out;
}

/// The header of a test-outcomes CSV.
inline constexpr const char* kTestOutcomesHeader = "index,label,predicted";

/// TestOutcomes as CSV text (`index,label,predicted`, one line per test image).
inline std::string to_csv(const TestOutcomes& t) {
  std::string out = std::string(kTestOutcomesHeader) + "\n";
  for (size_t i = 0; i < t.size(); ++i)
    out += std::to_string(t.index[i]) + "," + std::to_string(t.label[i]) + "," + std::to_string(t.predicted[i]) + "\n";
  return out;
}

/// Reads a CSV written by to_csv(); errors name the file and line.
inline TestOutcomes read_test_outcomes(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw file_error(file, "cannot open the test outcomes");
  TestOutcomes t;
  std::string line;
  size_t line_no = 0;
  bool header = false;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (!header) {
      if (line != kTestOutcomesHeader)
        throw file_error(file, "line 1: expected the header '" + std::string(kTestOutcomesHeader) + "'");
      header = true;
      continue;
    }
    std::istringstream fields(line);
    std::string a, b, c, extra;
    auto number = [&](const std::string& s, const char* what) {
      if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
        throw file_error(file, "line " + std::to_string(line_no) + ": " + what + " '" + s + "' is not a non-negative integer");
      return std::stoll(s);
    };
    if (!std::getline(fields, a, ',') || !std::getline(fields, b, ',') || !std::getline(fields, c, ',') ||
        std::getline(fields, extra, ','))
      throw file_error(file, "line " + std::to_string(line_no) + ": expected 3 fields (index,label,predicted)");
    t.index.push_back(static_cast<size_t>(number(a, "index")));
    t.label.push_back(number(b, "label"));
    t.predicted.push_back(number(c, "predicted"));
  }
  if (!header) throw file_error(file, "empty file, expected the header '" + std::string(kTestOutcomesHeader) + "'");
  return t;
}

/// Test outcomes by (method label, k, seed).
using OutcomeMap = std::map<std::tuple<std::string, int, std::int64_t>, TestOutcomes>;

/// One method against the baseline at one k.
struct PairedRow {
  std::string method;
  int k = 0;
  std::vector<std::int64_t> seeds;  ///< the seeds where both had outcomes
  PairedDifference diff;
};

/// For every method of the table but `baseline` and every k: its paired difference to the
/// baseline (top-1, percentage points), over the seeds where both have per-image outcomes. Empty
/// when the table has no baseline row.
inline std::vector<PairedRow> paired_comparisons(const ResultsTable& t, const OutcomeMap& outcomes,
                                                 const std::string& baseline, const BootstrapOptions& o = {}) {
  std::vector<PairedRow> rows;
  const auto methods = t.methods();
  if (std::find(methods.begin(), methods.end(), baseline) == methods.end()) return rows;
  for (const auto& m : methods) {
    if (m == baseline) continue;
    for (int k : t.ks()) {
      PairedRow row;
      row.method = m;
      row.k = k;
      std::vector<std::vector<double>> groups;
      for (const auto& r : t.records()) {
        if (r.method != m || r.k != k) continue;
        const auto a = outcomes.find({baseline, k, r.seed});
        const auto b = outcomes.find({m, k, r.seed});
        if (a == outcomes.end() || b == outcomes.end()) continue;
        groups.push_back(paired_differences(a->second, b->second));
        row.seeds.push_back(r.seed);
      }
      std::sort(row.seeds.begin(), row.seeds.end());
      row.diff = paired_bootstrap(groups, o);
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

/// The paired differences as a Markdown table: rows = methods, columns = the ks `cols`, cells
/// "+1.2 [−0.8, +3.1]" (n seeds when fewer than the most any cell has).
inline std::string paired_markdown(const std::vector<int>& cols, const std::vector<PairedRow>& rows,
                                   const std::string& baseline, const std::string& row_header = "Method") {
  size_t most = 0;
  for (const auto& r : rows) most = std::max(most, r.seeds.size());
  std::ostringstream os;
  os << "| " << row_header << " − " << baseline << " |";
  for (int k : cols) os << ' ' << k_label(k) << " |";
  os << "\n|:---|";
  for (size_t i = 0; i < cols.size(); ++i) os << "---:|";
  os << '\n';
  std::vector<std::string> methods;
  for (const auto& r : rows)
    if (std::find(methods.begin(), methods.end(), r.method) == methods.end()) methods.push_back(r.method);
  for (const auto& m : methods) {
    os << "| " << m << " |";
    for (int k : cols) {
      std::string text = "—";
      for (const auto& r : rows)
        if (r.method == m && r.k == k) {
          text = to_text(r.diff);
          if (r.diff.pairs > 0 && r.seeds.size() < most) text += " (" + std::to_string(r.seeds.size()) + " seeds)";
        }
      os << ' ' << text << " |";
    }
    os << '\n';
  }
  return os.str();
}

/// The paired differences as CSV: `method,k,seeds,pairs,mean,lo,hi` (numbers with 3 decimals).
inline std::string paired_csv(const std::vector<PairedRow>& rows) {
  std::string out = "method,k,seeds,pairs,mean,lo,hi\n";
  for (const auto& r : rows) {
    std::string seeds;
    for (size_t i = 0; i < r.seeds.size(); ++i) {
      if (i) seeds += ' ';
      seeds += std::to_string(r.seeds[i]);
    }
    auto num = [](double v) { return std::isnan(v) ? std::string() : format_fixed(v, 3); };
    out += csv_quote(r.method) + "," + k_label(r.k) + "," + seeds + "," + std::to_string(r.diff.pairs) + "," +
           num(r.diff.mean) + "," + num(r.diff.lo) + "," + num(r.diff.hi) + "\n";
  }
  return out;
}

}  // namespace halsal::eval
