// The paper's k-shot results table (Tables 1-2): rows = methods, columns = k, cells = mean ± std
// over seeds. The raw per-seed numbers live in a long-format CSV (`method,k,seed,top1,top5`) that a
// resumable protocol re-reads to skip finished cells; the wide Markdown/CSV tables are built from
// it.
//
// Conventions (chosen here, used by every writer):
// - values are whatever the caller stores; the protocol stores accuracies in percent, like the
// paper;
// - std is the SAMPLE standard deviation (ddof = 1, numpy's np.std(x, ddof=1)); with one seed a
// cell
//   shows only the mean;
// - AVG = mean over the table's columns of the method's per-column means (the cell means), shown
// only
//   when the method has every column of the table (a partial row would not be comparable): "—"
//   else;
// - k = kOfficial (printed "K") is the dataset's full training split and sorts after every number.
#pragma once
#include <halsal/core/error.hpp>
#include <halsal/core/text.hpp>
#include <halsal/data/shots.hpp>
#include <halsal/io/bytes.hpp>  // io::write_file_atomic

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <locale>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

namespace halsal {

namespace eval {

// k is data::kOfficial ("K") for the dataset's own split; data::k_label / data::parse_k write and
// read a column name.
using data::k_label;
using data::kOfficial;
using data::parse_k;

/// Which stored number a table shows.
enum class Metric { top1, top5 };

/// One cell: the mean and sample std (ddof = 1; NaN with one seed) of n per-seed values.
struct CellStats {
  double mean = std::numeric_limits<double>::quiet_NaN();
  double std = std::numeric_limits<double>::quiet_NaN();
  int n = 0;
};

/// Mean and sample std (ddof = 1; NaN with fewer than two values) of `values`, NaNs skipped:
/// every table's cell (protocol, ablations, demo) is computed here.
inline CellStats mean_and_std(const std::vector<double>& values) {
  CellStats s;
  double sum = 0;
  for (double x : values)
    if (!std::isnan(x)) sum += x, ++s.n;
  if (s.n == 0) return s;
  s.mean = sum / s.n;
  if (s.n > 1) {
    double ss = 0;
    for (double x : values)
      if (!std::isnan(x)) ss += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(ss / (s.n - 1));
  }
  return s;
}

/// One finished run: a row (a method of the protocol, a variant of an ablation) at k training
/// images per class with one seed.
struct ResultRecord {
  std::string method;  ///< the row's label (the table's row_label() names what it is)
  int k = 0;
  std::int64_t seed = 0;
  double top1 = 0;
  double top5 = std::numeric_limits<double>::quiet_NaN();  ///< NaN when not measured
};

/// Per-seed results of rows × k, and the paper's wide table built from them. The rows are the
/// protocol's methods or an ablation's variants: row_label ("method", "variant") names the
/// first column of the CSV files and of the Markdown table.
class ResultsTable {
 public:
  /// An empty table whose rows are called `row_label` (a CSV column name: lower case, no comma).
  explicit ResultsTable(std::string row_label = "method") : row_label_(std::move(row_label)) {
    if (row_label_.empty() || row_label_.find_first_of(",\"\n") != std::string::npos)
      throw Error("results table: the row label must be a plain CSV column name, not '" + row_label_ + "'");
  }

  /// What the rows are: "method" (the protocol) or "variant" (an ablation).
  const std::string& row_label() const { return row_label_; }

  /// Stores one run; a run with the same (row, k, seed) is replaced. k > 0 or kOfficial.
  void add(const ResultRecord& r) {
    if (r.method.empty()) throw Error("results table: empty " + row_label_ + " name");
    if (r.k <= 0 && r.k != kOfficial) throw Error("results table: k must be > 0 or kOfficial");
    for (auto& old : records_) {
      if (old.method == r.method && old.k == r.k && old.seed == r.seed) {
        old = r;
        return;
      }
    }
    records_.push_back(r);
  }

  /// Convenience overload of add(ResultRecord).
  void add(const std::string& method, int k, std::int64_t seed, double top1,
           double top5 = std::numeric_limits<double>::quiet_NaN()) {
    add(ResultRecord{method, k, seed, top1, top5});
  }

  /// True when (method, k, seed) has a stored result: the protocol skips such cells on resume.
  bool has(const std::string& method, int k, std::int64_t seed) const {
    return std::any_of(records_.begin(), records_.end(), [&](const ResultRecord& r) {
      return r.method == method && r.k == k && r.seed == seed;
    });
  }

  /// Every stored run, in insertion order.
  const std::vector<ResultRecord>& records() const { return records_; }

  /// Row order: set_method_order() names first (when present), then the rest in insertion order.
  std::vector<std::string> methods() const {
    std::vector<std::string> out;
    for (const auto& m : order_)
      if (std::any_of(records_.begin(), records_.end(), [&](auto& r) { return r.method == m; }))
        out.push_back(m);
    for (const auto& r : records_)
      if (std::find(out.begin(), out.end(), r.method) == out.end()) out.push_back(r.method);
    return out;
  }

  /// Fixes the row order (e.g. Baseline-RGB, scratch SAL, SMIC, Approach A, Approach B).
  void set_method_order(std::vector<std::string> order) { order_ = std::move(order); }

  /// Columns present: increasing k, "K" last.
  std::vector<int> ks() const {
    std::vector<int> out;
    for (const auto& r : records_)
      if (std::find(out.begin(), out.end(), r.k) == out.end()) out.push_back(r.k);
    std::sort(out.begin(), out.end(), [](int a, int b) {
      return (a == kOfficial ? std::numeric_limits<int>::max() : a) <
             (b == kOfficial ? std::numeric_limits<int>::max() : b);
    });
    return out;
  }

  /// Mean and sample std over seeds of one cell (n = 0 when absent; NaN values are skipped).
  CellStats cell(const std::string& method, int k, Metric m = Metric::top1) const {
    std::vector<double> v;
    for (const auto& r : records_)
      if (r.method == method && r.k == k) v.push_back(m == Metric::top1 ? r.top1 : r.top5);
    return mean_and_std(v);
  }

  /// AVG column: mean of the method's cell means over all of the table's columns (NaN if any
  /// missing).
  double average(const std::string& method, Metric m = Metric::top1) const {
    auto cols = ks();
    if (cols.empty()) return std::numeric_limits<double>::quiet_NaN();
    double sum = 0;
    for (int k : cols) {
      CellStats s = cell(method, k, m);
      if (s.n == 0) return std::numeric_limits<double>::quiet_NaN();
      sum += s.mean;
    }
    return sum / static_cast<double>(cols.size());
  }

  /// The wide table in Markdown: `| Method | 1 | 5 | K | AVG |`, cells "mean ± std" or "—".
  std::string markdown(Metric m = Metric::top1, int decimals = 1) const {
    auto cols = ks();
    std::ostringstream os;
    os << "| " << static_cast<char>(std::toupper(static_cast<unsigned char>(row_label_[0]))) << row_label_.substr(1)
       << " |";
    for (int k : cols) os << ' ' << k_label(k) << " |";
    os << " AVG |\n|:---|";
    for (std::size_t i = 0; i <= cols.size(); ++i) os << "---:|";
    os << '\n';
    for (const auto& method : methods()) {
      os << "| " << method << " |";
      for (int k : cols) os << ' ' << cell_text(cell(method, k, m), decimals, " ± ") << " |";
      double avg = average(method, m);
      os << ' ' << (std::isnan(avg) ? "—" : format_fixed(avg, decimals)) << " |\n";
    }
    return os.str();
  }

  /// The wide table as CSV: `method,1,1_std,...,K,K_std,AVG` (std empty with one seed, cells empty
  /// when absent), numbers with `decimals` digits.
  std::string wide_csv(Metric m = Metric::top1, int decimals = 2) const {
    auto cols = ks();
    std::ostringstream os;
    os << row_label_;
    for (int k : cols) os << ',' << k_label(k) << ',' << k_label(k) << "_std";
    os << ",AVG\n";
    for (const auto& method : methods()) {
      os << csv_quote(method);
      for (int k : cols) {
        CellStats s = cell(method, k, m);
        os << ',' << (s.n ? format_fixed(s.mean, decimals) : "") << ','
           << (s.n > 1 ? format_fixed(s.std, decimals) : "");
      }
      double avg = average(method, m);
      os << ',' << (std::isnan(avg) ? "" : format_fixed(avg, decimals)) << '\n';
    }
    return os.str();
  }

  /// The raw runs as long-format CSV `<row label>,k,seed,top1,top5` (exact round-trip numbers).
  std::string long_csv() const {
    std::string out = long_header() + "\n";
    for (const auto& r : records_) {
      out += csv_quote(r.method) + ',' + k_label(r.k) + ',' + std::to_string(r.seed) + ',' +
             format_exact(r.top1) + ',' + format_exact(r.top5) + '\n';
    }
    return out;
  }

  /// Writes markdown() atomically.
  void write_markdown(const std::filesystem::path& path, Metric m = Metric::top1,
                      int decimals = 1) const {
    io::write_file_atomic(path, markdown(m, decimals));
  }

  /// Writes wide_csv() atomically.
  void write_wide_csv(const std::filesystem::path& path, Metric m = Metric::top1,
                      int decimals = 2) const {
    io::write_file_atomic(path, wide_csv(m, decimals));
  }

  /// Writes long_csv() atomically: call after every finished run so a restart can resume.
  void write_long_csv(const std::filesystem::path& path) const {
    io::write_file_atomic(path, long_csv());
  }

  /// Parses long_csv() text of a table whose rows are `row_label`; errors name `source` and the
  /// line. Later duplicates replace earlier.
  static ResultsTable parse_long_csv(const std::string& text, const std::string& source,
                                     const std::string& row_label = "method") {
    ResultsTable t(row_label);
    const std::string header = t.long_header();
    std::size_t pos = 0;
    int line_no = 0;
    bool header_seen = false;
    while (pos < text.size()) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string line = text.substr(pos, end - pos);
      pos = end + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      auto where = [&] { return source + ":" + std::to_string(line_no) + ": "; };
      std::vector<std::string> f;
      if (!csv_split(line, f)) throw Error(where() + "unterminated quoted field");
      if (!header_seen) {
        if (line != header) throw Error(where() + "expected the header '" + header + "', got '" + line + "'");
        header_seen = true;
        continue;
      }
      if (f.size() != 5)
        throw Error(where() + "expected 5 fields, got " + std::to_string(f.size()));
      ResultRecord r;
      r.method = f[0];
      if (r.method.empty()) throw Error(where() + "empty " + row_label + " name");
      if (f[1] == "K") {
        r.k = kOfficial;
      } else {
        long long k = 0;
        if (!parse_integer(f[1], k) || k <= 0 || k > std::numeric_limits<int>::max())
          throw Error(where() + "k must be a positive integer or K, got '" + f[1] + "'");
        r.k = static_cast<int>(k);
      }
      long long seed = 0;
      if (!parse_integer(f[2], seed))
        throw Error(where() + "seed is not an integer: '" + f[2] + "'");
      r.seed = seed;
      if (!parse_double(f[3], r.top1) || std::isnan(r.top1))
        throw Error(where() + "top1 is not a number: '" + f[3] + "'");
      if (!f[4].empty() && !parse_double(f[4], r.top5))
        throw Error(where() + "top5 is not a number: '" + f[4] + "'");
      t.add(r);
    }
    if (!header_seen) throw Error(source + ": empty file, expected the header '" + header + "'");
    return t;
  }

  /// Reads a long-format CSV written by write_long_csv(); errors name the file and line.
  static ResultsTable read_long_csv(const std::filesystem::path& path, const std::string& row_label = "method") {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw file_error(path, "cannot open the results CSV");
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad()) throw file_error(path, "read error");
    return parse_long_csv(buf.str(), path.string(), row_label);
  }

  /// Like read_long_csv(), but an absent file gives an empty table (a fresh protocol run).
  static ResultsTable read_long_csv_or_empty(const std::filesystem::path& path,
                                             const std::string& row_label = "method") {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return ResultsTable(row_label);
    return read_long_csv(path, row_label);
  }

 private:
  std::string long_header() const { return row_label_ + ",k,seed,top1,top5"; }

  static std::string cell_text(const CellStats& s, int decimals, const char* pm) {
    if (s.n == 0) return "—";
    std::string t = format_fixed(s.mean, decimals);
    if (s.n > 1) t += pm + format_fixed(s.std, decimals);
    return t;
  }

  static bool parse_integer(const std::string& s, long long& v) {
    if (s.empty() || s.size() > 19) return false;
    std::istringstream is(s);
    is.imbue(std::locale::classic());
    is >> v;
    return !is.fail() && is.peek() == std::char_traits<char>::eof();
  }

  static bool parse_double(const std::string& s, double& v) {
    if (s.empty() || s.size() > 64) return false;
    std::istringstream is(s);
    is.imbue(std::locale::classic());
    is >> v;
    return !is.fail() && is.peek() == std::char_traits<char>::eof() && std::isfinite(v);
  }

  std::string row_label_;
  std::vector<ResultRecord> records_;
  std::vector<std::string> order_;
};

}  // namespace eval
}  // namespace halsal
