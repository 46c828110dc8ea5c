// Classification metrics accumulated over batches: top-1, top-5, per-class accuracy, mean per-class
// accuracy and the confusion matrix (rows = ground truth, columns = top-1 prediction).
// Accuracies are fractions in [0, 1]; the printed reports show percent.
#pragma once
#include <halsal/core/error.hpp>
#include <halsal/core/text.hpp>
#include <halsal/io/bytes.hpp>  // io::write_file_atomic

#include <ATen/ATen.h>
#include <Eigen/Dense>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <ostream>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace halsal::eval {

/// Accumulates predictions against labels; merge() combines partial accumulators (e.g. per worker).
class ClassificationMetrics {
 public:
  /// An empty accumulator for `num_classes` classes; `class_names` is empty or one name per class.
  explicit ClassificationMetrics(std::int64_t num_classes,
                                 std::vector<std::string> class_names = {})
      : names_(std::move(class_names)) {
    if (num_classes <= 0) throw Error("metrics: num_classes must be positive");
    if (num_classes > 100000) throw Error("metrics: num_classes is implausibly large");
    if (!names_.empty() && static_cast<std::int64_t>(names_.size()) != num_classes)
      throw Error("metrics: " + std::to_string(names_.size()) + " class names for " +
                  std::to_string(num_classes) + " classes");
    confusion_ = Eigen::MatrixXi::Zero(num_classes, num_classes);
    top5_hits_ = Eigen::VectorXi::Zero(num_classes);
  }

  /// Adds a batch of logits (N×C, any device/float dtype) with integer labels (N).
  void add_logits(const at::Tensor& logits, const at::Tensor& labels) {
    if (logits.dim() != 2 || logits.size(1) != num_classes())
      throw Error("metrics: logits must be N×" + std::to_string(num_classes()) + ", got " +
                  shape(logits));
    const std::int64_t k = std::min<std::int64_t>(5, num_classes());
    add_topk(std::get<1>(logits.detach().to(at::kCPU).to(at::kFloat).topk(k, 1)), labels);
  }

  /// Adds a batch of ranked predictions (N×k class indices, best first) with labels (N); top-5
  /// counts a hit within the first min(5, k) columns.
  void add_topk(const at::Tensor& topk, const at::Tensor& labels) {
    if (topk.dim() != 2 || topk.size(1) < 1)
      throw Error("metrics: top-k indices must be N×k with k >= 1, got " + shape(topk));
    if (labels.dim() != 1 || labels.size(0) != topk.size(0))
      throw Error("metrics: labels must be a vector of " + std::to_string(topk.size(0)) +
                  " entries, got " + shape(labels));
    if (at::isFloatingType(topk.scalar_type()) || at::isFloatingType(labels.scalar_type()))
      throw Error("metrics: labels and top-k indices must be integer tensors");
    auto idx = topk.detach().to(at::kCPU).to(at::kLong).contiguous();
    auto lab = labels.detach().to(at::kCPU).to(at::kLong).contiguous();
    const auto n = idx.size(0), k = std::min<std::int64_t>(5, idx.size(1)), cols = idx.size(1);
    const std::int64_t* ip = idx.data_ptr<std::int64_t>();
    const std::int64_t* lp = lab.data_ptr<std::int64_t>();
    // Validate the whole batch first so that a bad batch leaves the accumulator unchanged.
    for (std::int64_t i = 0; i < n; ++i) {
      check_class(lp[i], "label");
      for (std::int64_t j = 0; j < k; ++j) check_class(ip[i * cols + j], "predicted class");
    }
    for (std::int64_t i = 0; i < n; ++i) {
      bool hit5 = false;
      for (std::int64_t j = 0; j < k; ++j) hit5 = hit5 || ip[i * cols + j] == lp[i];
      add(lp[i], ip[i * cols], hit5);
    }
  }

  /// Adds one sample: its label, its top-1 prediction and whether the label is in its top 5.
  void add(std::int64_t label, std::int64_t prediction, bool in_top5) {
    check_class(label, "label");
    check_class(prediction, "predicted class");
    confusion_(label, prediction) += 1;
    if (in_top5 || label == prediction) top5_hits_(label) += 1;
    ++count_;
  }

  /// Adds another accumulator's counts (same number of classes).
  void merge(const ClassificationMetrics& other) {
    if (other.num_classes() != num_classes())
      throw Error("metrics: cannot merge " + std::to_string(other.num_classes()) +
                  " classes into " + std::to_string(num_classes()));
    confusion_ += other.confusion_;
    top5_hits_ += other.top5_hits_;
    count_ += other.count_;
  }

  /// Number of classes.
  std::int64_t num_classes() const { return confusion_.rows(); }
  /// Number of samples added.
  std::int64_t count() const { return count_; }
  /// Class names given at construction (may be empty).
  const std::vector<std::string>& class_names() const { return names_; }
  /// Name of class c: its given name, else its index.
  std::string class_name(std::int64_t c) const {
    return names_.empty() ? std::to_string(c) : names_.at(static_cast<std::size_t>(c));
  }

  /// Confusion matrix: entry (t, p) counts samples of true class t predicted as p.
  const Eigen::MatrixXi& confusion() const { return confusion_; }

  /// Top-1 accuracy in [0, 1] (NaN when empty).
  double top1() const { return ratio(confusion_.trace(), count_); }
  /// Top-5 accuracy in [0, 1] (NaN when empty).
  double top5() const { return ratio(top5_hits_.sum(), count_); }

  /// Samples per true class.
  Eigen::VectorXi class_counts() const { return confusion_.rowwise().sum(); }

  /// Top-1 accuracy per true class (NaN for classes without samples).
  Eigen::VectorXd per_class_accuracy() const {
    Eigen::VectorXi n = class_counts();
    Eigen::VectorXd acc(num_classes());
    for (Eigen::Index c = 0; c < acc.size(); ++c) acc(c) = ratio(confusion_(c, c), n(c));
    return acc;
  }

  /// Mean of per_class_accuracy() over the classes that have samples (NaN when empty).
  double mean_per_class_accuracy() const {
    Eigen::VectorXd acc = per_class_accuracy();
    double sum = 0;
    int n = 0;
    for (Eigen::Index c = 0; c < acc.size(); ++c)
      if (!std::isnan(acc(c))) sum += acc(c), ++n;
    return ratio(sum, n);
  }

  /// The `limit` largest off-diagonal entries as (true class, predicted class, count), largest
  /// first.
  std::vector<std::tuple<std::int64_t, std::int64_t, int>> most_confused(
      std::size_t limit = 5) const {
    std::vector<std::tuple<std::int64_t, std::int64_t, int>> v;
    for (Eigen::Index t = 0; t < confusion_.rows(); ++t)
      for (Eigen::Index p = 0; p < confusion_.cols(); ++p)
        if (t != p && confusion_(t, p) > 0) v.emplace_back(t, p, confusion_(t, p));
    std::stable_sort(v.begin(), v.end(),
                     [](const auto& a, const auto& b) { return std::get<2>(a) > std::get<2>(b); });
    if (v.size() > limit) v.resize(limit);
    return v;
  }

  /// Summary, per-class accuracies (and the confusion matrix when asked) as JSON.
  nlohmann::json to_json(bool with_confusion = false) const {
    nlohmann::json j;
    j["count"] = count_;
    j["num_classes"] = num_classes();
    j["top1"] = nan_to_null(top1());
    j["top5"] = nan_to_null(top5());
    j["mean_per_class_accuracy"] = nan_to_null(mean_per_class_accuracy());
    Eigen::VectorXd acc = per_class_accuracy();
    auto& pc = j["per_class_accuracy"] = nlohmann::json::array();
    for (Eigen::Index c = 0; c < acc.size(); ++c) pc.push_back(nan_to_null(acc(c)));
    if (with_confusion) {
      auto& cm = j["confusion"] = nlohmann::json::array();
      for (Eigen::Index t = 0; t < confusion_.rows(); ++t) {
        auto row = nlohmann::json::array();
        for (Eigen::Index p = 0; p < confusion_.cols(); ++p) row.push_back(confusion_(t, p));
        cm.push_back(std::move(row));
      }
    }
    return j;
  }

  /// A Markdown report: summary, per-class table, most confused pairs, and the confusion matrix
  /// when the classes are at most `max_confusion_classes` (larger ones go to write_confusion_csv).
  std::string to_markdown(const std::string& title = "Evaluation",
                          std::int64_t max_confusion_classes = 30) const {
    std::ostringstream os;
    os << "# " << title << "\n\n";
    os << "| Samples | Classes | Top-1 | Top-5 | Mean per-class |\n|---:|---:|---:|---:|---:|\n";
    os << "| " << count_ << " | " << num_classes() << " | " << pct(top1()) << " | " << pct(top5())
       << " | " << pct(mean_per_class_accuracy()) << " |\n\n";
    os << "## Per-class accuracy\n\n| Class | Name | Samples | Correct | Top-1 |\n"
          "|---:|:---|---:|---:|---:|\n";
    Eigen::VectorXi n = class_counts();
    Eigen::VectorXd acc = per_class_accuracy();
    for (Eigen::Index c = 0; c < acc.size(); ++c)
      os << "| " << c << " | " << class_name(c) << " | " << n(c) << " | " << confusion_(c, c)
         << " | " << pct(acc(c)) << " |\n";
    auto conf = most_confused();
    if (!conf.empty()) {
      os << "\n## Most confused (true → predicted)\n\n| True | Predicted | Count "
            "|\n|:---|:---|---:|\n";
      for (auto& [t, p, cnt] : conf)
        os << "| " << class_name(t) << " | " << class_name(p) << " | " << cnt << " |\n";
    }
    if (num_classes() <= max_confusion_classes) {
      os << "\n## Confusion matrix (rows: true, columns: predicted)\n\n|   |";
      for (Eigen::Index p = 0; p < confusion_.cols(); ++p) os << ' ' << p << " |";
      os << "\n|---:|";
      for (Eigen::Index p = 0; p < confusion_.cols(); ++p) os << "---:|";
      os << '\n';
      for (Eigen::Index t = 0; t < confusion_.rows(); ++t) {
        os << "| **" << t << "** |";
        for (Eigen::Index p = 0; p < confusion_.cols(); ++p) os << ' ' << confusion_(t, p) << " |";
        os << '\n';
      }
    }
    return os.str();
  }

  /// Writes to_markdown() atomically.
  void write_markdown(const std::filesystem::path& path,
                      const std::string& title = "Evaluation") const {
    io::write_file_atomic(path, to_markdown(title));
  }

  /// Writes the confusion matrix as CSV (header `true\pred,0,1,...`), atomically.
  void write_confusion_csv(const std::filesystem::path& path) const {
    std::ostringstream os;
    os << "true\\pred";
    for (Eigen::Index p = 0; p < confusion_.cols(); ++p) os << ',' << p;
    os << '\n';
    for (Eigen::Index t = 0; t < confusion_.rows(); ++t) {
      os << t;
      for (Eigen::Index p = 0; p < confusion_.cols(); ++p) os << ',' << confusion_(t, p);
      os << '\n';
    }
    io::write_file_atomic(path, os.str());
  }

  /// Percent text of a fraction with one decimal ("n/a" for NaN).
  static std::string pct(double fraction) {
    return std::isnan(fraction) ? "n/a" : format_fixed(100.0 * fraction, 1) + "%";
  }

 private:
  void check_class(std::int64_t c, const char* what) const {
    if (c < 0 || c >= num_classes())
      throw Error(std::string("metrics: ") + what + " " + std::to_string(c) + " is outside [0, " +
                  std::to_string(num_classes()) + ")");
  }
  static double ratio(double a, double b) {
    return b > 0 ? a / b : std::numeric_limits<double>::quiet_NaN();
  }
  static nlohmann::json nan_to_null(double v) {
    return std::isnan(v) ? nlohmann::json() : nlohmann::json(v);
  }
  static std::string shape(const at::Tensor& t) {
    std::ostringstream os;
    os << t.sizes();
    return os.str();
  }

  std::vector<std::string> names_;
  Eigen::MatrixXi confusion_;
  Eigen::VectorXi top5_hits_;
  std::int64_t count_ = 0;
};

/// A short report: samples, top-1, top-5, mean per-class, the weakest classes, most confused pairs.
inline std::ostream& operator<<(std::ostream& os, const ClassificationMetrics& m) {
  os << "samples " << m.count() << ", classes " << m.num_classes() << "\n"
     << "top-1 " << ClassificationMetrics::pct(m.top1()) << "  top-5 "
     << ClassificationMetrics::pct(m.top5()) << "  mean per-class "
     << ClassificationMetrics::pct(m.mean_per_class_accuracy()) << "\n";
  Eigen::VectorXd acc = m.per_class_accuracy();
  Eigen::VectorXi n = m.class_counts();
  std::vector<Eigen::Index> order;
  for (Eigen::Index c = 0; c < acc.size(); ++c)
    if (!std::isnan(acc(c))) order.push_back(c);
  std::stable_sort(order.begin(), order.end(),
                   [&](Eigen::Index a, Eigen::Index b) { return acc(a) < acc(b); });
  if (order.size() > 5) order.resize(5);
  if (!order.empty()) {
    os << "weakest classes:";
    for (auto c : order)
      os << " " << m.class_name(c) << " " << ClassificationMetrics::pct(acc(c)) << " (" << n(c)
         << ")";
    os << "\n";
  }
  auto conf = m.most_confused(3);
  if (!conf.empty()) {
    os << "most confused:";
    for (auto& [t, p, cnt] : conf)
      os << " " << m.class_name(t) << " -> " << m.class_name(p) << " x" << cnt;
    os << "\n";
  }
  return os;
}

}  // namespace halsal::eval
