// Progress of long runs: on a terminal one line that updates in place (epoch, step/steps, loss,
// accuracy, images/s, ETA); in logs and pipes plain lines (every N steps and once per epoch). Plus
// a JSONL writer for per-epoch metrics (one JSON object per line, flushed as written) and its
// reader.
#pragma once
#include <halsal/core/error.hpp>
#include <halsal/core/text.hpp>

#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace halsal::train {

/// How progress is shown: Auto = Terminal when the stream is a terminal, Plain otherwise.
enum class ProgressStyle { Auto, Terminal, Plain, Silent };

/// Where and how often progress is printed.
struct ProgressOptions {
  /// Stream for progress; std::cout/std::cerr/std::clog are checked with isatty().
  std::ostream* out = &std::cerr;
  /// Auto: one updating line on a terminal, plain lines otherwise.
  ProgressStyle style = ProgressStyle::Auto;
  /// Plain: a line every N steps; 0 = five per epoch when an epoch has >= 50 steps, else none.
  std::int64_t every_steps = 0;
  /// Terminal: at most one redraw per interval (the last step of an epoch always draws).
  double refresh_seconds = 0.2;
  /// Printed before every line (e.g. "[B k=5 seed=0] ").
  std::string prefix;
  /// Seconds on a monotonic clock; empty = std::chrono::steady_clock (tests inject a fake one).
  std::function<double()> clock;
};

/// "42s", "5m12s", "1h02m", or "--" when unknown.
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  if (seconds >= 360000000) return ">100000h";
  auto s = static_cast<long long>(std::llround(seconds));
  char buf[48];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  return buf;
}

/// Tracks epochs and steps of a training run and prints where it is and how long it still needs.
class Progress {
 public:
  /// A run of `epochs` epochs of `steps_per_epoch` optimizer steps each.
  Progress(std::int64_t epochs, std::int64_t steps_per_epoch, ProgressOptions options = {})
      : o_(std::move(options)),
        epochs_(std::max<std::int64_t>(1, epochs)),
        steps_(std::max<std::int64_t>(1, steps_per_epoch)) {
    if (!o_.out) o_.style = ProgressStyle::Silent;
    if (o_.style == ProgressStyle::Auto) {
      int fd = o_.out == &std::cerr || o_.out == &std::clog ? 2 : o_.out == &std::cout ? 1 : -1;
      o_.style = fd >= 0 && ::isatty(fd) ? ProgressStyle::Terminal : ProgressStyle::Plain;
    }
    if (o_.every_steps <= 0) o_.every_steps = steps_ >= 50 ? steps_ / 5 : 0;
    start_ = now();
  }

  /// Resolved style (Auto becomes Terminal or Plain).
  ProgressStyle style() const { return o_.style; }

  /// Starts epoch `epoch` (1-based; a resumed run starts at its next epoch).
  void begin_epoch(std::int64_t epoch) {
    epoch_ = epoch;
    step_ = 0;
    loss_sum_ = 0;
    correct_ = images_ = 0;
    epoch_start_ = now();
    if (first_epoch_ < 0) {
      first_epoch_ = epoch;
      start_ = epoch_start_;
    }
  }

  /// Records one step: the batch's mean loss, its correct predictions and its size.
  void step(double batch_loss, std::int64_t batch_correct, std::int64_t batch_size) {
    loss_sum_ += batch_loss * static_cast<double>(batch_size);
    correct_ += batch_correct;
    step_deferred(batch_size, [this] { return std::make_pair(loss_sum_, correct_); });
  }

  /// Records one step whose loss and hits are summed elsewhere (on a GPU, say): `epoch_sums()`
  /// returns the epoch's (loss × images, correct) so far and is called only when a line is drawn.
  template <class Sums>
  void step_deferred(std::int64_t batch_size, Sums&& epoch_sums) {
    ++step_;
    images_ += batch_size;
    if (o_.style == ProgressStyle::Terminal) {
      double t = now();
      if (t - last_draw_ >= o_.refresh_seconds || step_ == steps_) {
        last_draw_ = t;
        std::tie(loss_sum_, correct_) = epoch_sums();
        *o_.out << "\r\x1b[2K" << o_.prefix << status_line() << std::flush;
        line_open_ = true;
      }
    } else if (o_.style == ProgressStyle::Plain && o_.every_steps > 0 &&
               step_ % o_.every_steps == 0 && step_ != steps_) {
      std::tie(loss_sum_, correct_) = epoch_sums();
      *o_.out << o_.prefix << status_line() << '\n' << std::flush;
    }
  }

  /// Sets the epoch's (loss × images, correct) sums, e.g. read once after step_deferred() calls.
  void set_totals(double loss_sum, std::int64_t correct) {
    loss_sum_ = loss_sum;
    correct_ = correct;
  }

  /// Ends the epoch: prints its summary with `extra` (e.g. {"val_acc", 0.81}, printed "val_acc 81.0%") and returns it as
  /// JSON (epoch, epochs, steps, images, loss, accuracy, seconds, images_per_s, eta_s, and the
  /// extras).
  nlohmann::json end_epoch(const std::vector<std::pair<std::string, double>>& extra = {}) {
    const double t = now();
    const double secs = t - epoch_start_;
    nlohmann::json j;
    j["epoch"] = epoch_;
    j["epochs"] = epochs_;
    j["steps"] = step_;
    j["images"] = images_;
    j["loss"] = json_number(mean_loss());
    j["accuracy"] = json_number(accuracy());
    j["seconds"] = secs;
    j["images_per_s"] = json_number(secs > 0 ? static_cast<double>(images_) / secs : kNaN);
    const double eta = eta_after_epoch(t);
    j["eta_s"] = json_number(eta);
    for (const auto& [k, v] : extra) j[k] = json_number(v);
    if (o_.style == ProgressStyle::Silent) return j;
    std::string line = "epoch " + std::to_string(epoch_) + "/" + std::to_string(epochs_) +
                       " loss " + fixed(mean_loss(), 4) + " acc " + percent(accuracy());
    for (const auto& [k, v] : extra) line += " " + k + " " + (is_accuracy_key(k) ? percent(v) : number(v));
    line += " " + fixed(secs > 0 ? static_cast<double>(images_) / secs : kNaN, 1) + " img/s " +
            format_duration(secs) + " ETA " + format_duration(eta);
    if (o_.style == ProgressStyle::Terminal) *o_.out << "\r\x1b[2K";
    *o_.out << o_.prefix << line << '\n' << std::flush;
    line_open_ = false;
    return j;
  }

  /// Prints a message on its own line without garbling the terminal's progress line.
  void message(const std::string& text) {
    if (o_.style == ProgressStyle::Silent) return;
    if (o_.style == ProgressStyle::Terminal && line_open_) *o_.out << "\r\x1b[2K";
    *o_.out << o_.prefix << text << '\n';
    if (o_.style == ProgressStyle::Terminal && line_open_) *o_.out << o_.prefix << status_line();
    *o_.out << std::flush;
  }

  /// "epoch E/N step S/M loss L acc A% R img/s ETA T" for the current state.
  std::string status_line() const {
    const double t = now();
    const double secs = t - epoch_start_;
    return "epoch " + std::to_string(epoch_) + "/" + std::to_string(epochs_) + " step " +
           std::to_string(step_) + "/" + std::to_string(steps_) + " loss " + fixed(mean_loss(), 4) +
           " acc " + percent(accuracy()) + " " +
           fixed(secs > 0 ? static_cast<double>(images_) / secs : kNaN, 1) + " img/s ETA " +
           format_duration(eta_now(t));
  }

  /// Mean loss of the epoch so far (weighted by batch size).
  double mean_loss() const { return images_ ? loss_sum_ / static_cast<double>(images_) : kNaN; }
  /// Training accuracy of the epoch so far, in [0, 1].
  double accuracy() const {
    return images_ ? static_cast<double>(correct_) / static_cast<double>(images_) : kNaN;
  }

 private:
  static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

  double now() const {
    if (o_.clock) return o_.clock();
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // Steps done since this Progress started (a resumed run counts from its first epoch).
  std::int64_t done_steps() const {
    return (epoch_ - std::max<std::int64_t>(first_epoch_, 1)) * steps_ + step_;
  }
  std::int64_t remaining_steps() const { return (epochs_ - epoch_) * steps_ + (steps_ - step_); }
  double eta_now(double t) const {
    auto done = done_steps();
    return done > 0
               ? (t - start_) / static_cast<double>(done) * static_cast<double>(remaining_steps())
               : kNaN;
  }
  // After an epoch the time per epoch (validation included) is the better estimate.
  double eta_after_epoch(double t) const {
    auto epochs_done = epoch_ - std::max<std::int64_t>(first_epoch_, 1) + 1;
    return epochs_done > 0 ? (t - start_) / static_cast<double>(epochs_done) *
                                 static_cast<double>(std::max<std::int64_t>(0, epochs_ - epoch_))
                           : kNaN;
  }
  static nlohmann::json json_number(double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
  }
  static std::string fixed(double v, int d) { return format_fixed(v, d); }
  // Accuracies ("acc", "val_acc", "top1_accuracy") print as percentages like the training accuracy.
  static bool is_accuracy_key(const std::string& k) {
    auto ends = [&](const std::string& suffix) {
      return k.size() >= suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    return ends("acc") || ends("accuracy");
  }
  static std::string percent(double v) { return std::isnan(v) ? "nan" : fixed(100 * v, 1) + "%"; }
  static std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4g", v);
    return buf;
  }

  ProgressOptions o_;
  std::int64_t epochs_, steps_;
  std::int64_t epoch_ = 0, first_epoch_ = -1, step_ = 0;
  double loss_sum_ = 0;
  std::int64_t correct_ = 0, images_ = 0;
  double start_ = 0, epoch_start_ = 0, last_draw_ = -1e300;
  bool line_open_ = false;
};

/// Appends JSON objects to a JSONL file, one per line, flushed after each line.
class JsonlWriter {
 public:
  /// Opens `path` (creating its folder); `append` keeps existing lines (a resumed run), else
  /// truncates.
  explicit JsonlWriter(const std::filesystem::path& path, bool append = true) : path_(path) {
    std::error_code ec;
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
    out_.open(path, append ? std::ios::app : std::ios::trunc);
    if (!out_) throw file_error(path, "cannot open the JSONL file for writing");
  }

  /// Writes one object as one line and flushes it.
  void write(const nlohmann::json& record) {
    out_ << record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    out_.flush();
    if (!out_) throw file_error(path_, "write failed (disk full?)");
  }

  /// The file being written.
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

/// Reads every line of a JSONL file (blank lines skipped); errors name the file and line.
inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw file_error(path, "cannot open the JSONL file");
  std::vector<nlohmann::json> out;
  std::string line;
  for (std::int64_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded())
      throw file_error(path, "line " + std::to_string(n) + " is not valid JSON");
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace halsal::train
