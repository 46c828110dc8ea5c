// The paper's ablations (§4.2, Figs. 2–3) as library calls: accuracy for each saliency-branch depth
// (Conv-1 … Conv-4) and for each fusion point (Before Pool-2 … After Conv-4 on AlexNet, After
// stage 1 … 4 on ResNet / MobileNetV2), plus the Baseline-RGB bar. The variants are compile-time
// types listed in a type_list; each one is instantiated from the list (a pack expansion), so an
// invalid combination (an AlexNet fusion tag on a ResNet, Depth<7>) fails to compile with
// HalSalNet's own message.
//
//   namespace ht = halsal::train;
//   ht::AblationOptions o;
//   o.experiment.config = ht::fast_profile();
//   o.out_dir = "fig2";
//   auto fig2 = ht::run_depth_ablation<halsal::AlexNet>(
//       data, ht::type_list<halsal::Depth<1>, halsal::Depth<2>, halsal::Depth<3>, halsal::Depth<4>>{}, o);
//   auto fig3 = ht::run_fusion_ablation<halsal::AlexNet>(
//       data, ht::type_list<halsal::BeforePool2, halsal::AfterPool2, halsal::AfterConv3,
//                           halsal::AfterConv4>{}, o);
//
// Results: rows = variants (in the type list's order, "Baseline" last), one column per k, each cell
// the mean and SAMPLE std (ddof = 1; NaN with one seed) over the seeds, in percent. Resumable like
// run_protocol: <out>/runs.csv holds one line per finished cell (variant,k,seed,top1,top5) and is
// read on start; results.csv, results.md and ablation.svg are rewritten atomically after each cell.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "halsal/eval/paired.hpp"
#include "halsal/eval/table.hpp"
#include "halsal/experiments/experiment.hpp"
#include "halsal/experiments/shard.hpp"
#include "halsal/viz/svg.hpp"

namespace halsal::train {

/// A compile-time list of variant types, e.g. `type_list<Depth<1>, Depth<2>>{}`.
template <class... Ts>
struct type_list {};

/// The label of a Depth<N> or fusion-tag variant in the paper's figures.
template <class T>
struct ablation_label;
template <int N>
struct ablation_label<Depth<N>> {
  static std::string get() { return "Conv-" + std::to_string(N); }
};
template <>
struct ablation_label<BeforePool2> {
  static std::string get() { return "Before Pool-2"; }
};
template <>
struct ablation_label<AfterPool2> {
  static std::string get() { return "After Pool-2"; }
};
template <>
struct ablation_label<AfterConv3> {
  static std::string get() { return "After Conv-3"; }
};
template <>
struct ablation_label<AfterConv4> {
  static std::string get() { return "After Conv-4"; }
};
template <int N>
struct ablation_label<AfterStage<N>> {
  static std::string get() { return "After stage " + std::to_string(N); }
};

/// The label of the Baseline-RGB bar (no saliency branch).
inline const std::string& ablation_baseline_label() {
  static const std::string label = "Baseline";
  return label;
}

/// The labels of a type list's variants in order, then "Baseline" when include_baseline.
template <class... Ts>
std::vector<std::string> ablation_labels(type_list<Ts...>, bool include_baseline = true) {
  static_assert(((is_depth_v<Ts> || is_fusion_point_v<Ts>) && ...),
                "halsal: an ablation's type list holds Depth<N> or fusion-point tags only");
  std::vector<std::string> out{ablation_label<Ts>::get()...};
  if (include_baseline) out.push_back(ablation_baseline_label());
  return out;
}

/// A label as a file-name part: lower case, runs of other characters → '-' ("Before Pool-2" →
/// "before-pool-2").
inline std::string ablation_slug(const std::string& label) {
  std::string s;
  for (char c : label) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      s += c;
    } else if (c >= 'A' && c <= 'Z') {
      s += static_cast<char>(c - 'A' + 'a');
    } else if (!s.empty() && s.back() != '-') {
      s += '-';
    }
  }
  while (!s.empty() && s.back() == '-') s.pop_back();
  return s;
}

/// What run_depth_ablation and run_fusion_ablation do with their grid of cells.
enum class AblationMode {
  run,            ///< train this process's cells (every cell when alone), with Step I when needed
  step_one_only,  ///< methods A and B: run the Step I of this process's variants (every N-th), then stop
  merge,          ///< no training: write the results from every cell finished under out_dir, by any process
};

/// What an ablation runs and where it writes.
struct AblationOptions {
  /// How the saliency variants are trained: "scratch-sal" (branch from Xavier initialisation, no
  /// ImageNet needed), or "A" / "B" (branch from a Step I run per variant: needs step_one_data and
  /// experiment.backbone_weights with the ImageNet head).
  std::string method = "scratch-sal";
  std::vector<int> ks{5};  ///< data::kOfficial (-1) = the dataset's full split ("K")
  std::vector<uint64_t> seeds{0};
  /// Its out_dir is overwritten per cell (<out>/cells/<variant>-k<k>-s<seed>) and its
  /// step_one_weights per variant (<out>/stepI-<variant>.safetensors); its config also drives Step I.
  ExperimentOptions experiment;
  /// Methods A and B: the Step I dataset (ImageNet-validation layout, the head's class order).
  std::shared_ptr<const data::Dataset> step_one_data;
  std::filesystem::path out_dir = "ablation-out";
  bool include_baseline = true;   ///< add the Baseline-RGB bar (method rgb, label "Baseline")
  bool keep_checkpoints = false;  ///< keep each finished cell's checkpoints (else removed)
  std::ostream* log = &std::cout;  ///< one line per cell; nullptr = silent
  /// Called after each trained cell (not for skipped ones) with the variant's label.
  std::function<void(const std::string& variant, const CellResult&)> on_cell;
  AblationMode mode = AblationMode::run;
  /// This process's share of the grid (shard_from_environment(), parse_shard()): the cell number
  /// i, counted in the order variant, k, seed, runs where i % count == index. A sharded process
  /// keeps its runs.csv under <out>/shards/rank-I-of-N/ (the cells' folders are shared) and writes
  /// the results once every cell is done, by whichever process. Methods A and B need every
  /// variant's Step I file before a sharded run: make them with AblationMode::step_one_only.
  Shard shard;
};

/// The files an ablation writes under out_dir.
struct AblationFiles {
  std::filesystem::path runs_csv, results_csv, results_md, chart_svg, settings_json;
  explicit AblationFiles(const std::filesystem::path& out)
      : runs_csv(out / "runs.csv"), results_csv(out / "results.csv"), results_md(out / "results.md"),
        chart_svg(out / "ablation.svg"), settings_json(out / "settings.json") {}
};

/// An ablation's finished cells: the protocol's results table with "variant" rows (accuracies in
/// percent; a record's `method` is the variant's label).
inline eval::ResultsTable ablation_runs() { return eval::ResultsTable("variant"); }

/// An ablation's outcome: rows = variants (labels in order), columns = ks; each cell the mean and
/// sample std over seeds (n = 0: not run yet).
struct AblationResult {
  std::string title;
  std::vector<std::string> variants;
  std::vector<int> ks;  ///< in the order asked for; data::kOfficial = "K"
  std::vector<std::vector<eval::CellStats>> top1, top5;  ///< [variant][k]
  eval::ResultsTable runs = ablation_runs();             ///< every finished cell
  /// Each variant against the Baseline bar, paired over the test images of all seeds (empty
  /// without a baseline or per-image outcomes).
  std::vector<eval::PairedRow> paired;

  /// The cell of (variant, k); throws halsal::Error when either is not in the result.
  const eval::CellStats& cell(const std::string& variant, int k, eval::Metric m = eval::Metric::top1) const {
    const auto v = std::find(variants.begin(), variants.end(), variant);
    const auto c = std::find(ks.begin(), ks.end(), k);
    if (v == variants.end()) throw Error("ablation result: no variant '" + variant + "'");
    if (c == ks.end()) throw Error("ablation result: no column k = " + data::k_label(k));
    const auto& grid = m == eval::Metric::top1 ? top1 : top5;
    return grid[static_cast<size_t>(v - variants.begin())][static_cast<size_t>(c - ks.begin())];
  }
};

/// The pure aggregation behind every ablation: for each (variant, k) the mean and sample std over
/// the seeds of `runs` (ResultsTable::cell). Runs of other variants or ks are ignored (but kept
/// in result.runs).
inline AblationResult aggregate_ablation(const eval::ResultsTable& runs, const std::vector<std::string>& variants,
                                         const std::vector<int>& ks, const std::string& title = "") {
  AblationResult r;
  r.title = title;
  r.variants = variants;
  r.ks = ks;
  r.runs = runs;
  for (const auto& v : variants) {
    std::vector<eval::CellStats> row1, row5;
    for (int k : ks) {
      row1.push_back(runs.cell(v, k, eval::Metric::top1));
      row5.push_back(runs.cell(v, k, eval::Metric::top5));
    }
    r.top1.push_back(std::move(row1));
    r.top5.push_back(std::move(row5));
  }
  return r;
}

/// Each variant against the Baseline bar at each k (top-1, points): per-image differences over
/// the test images of all seeds where both have outcomes, with a 95 % paired bootstrap interval.
inline std::vector<eval::PairedRow> ablation_paired(const eval::ResultsTable& runs, const eval::OutcomeMap& outcomes) {
  return eval::paired_comparisons(runs, outcomes, ablation_baseline_label());
}

/// results.csv: `variant,k,n,top1_mean,top1_std,top5_mean,top5_std`, one row per (variant, k) in
/// the result's order; empty fields where there is no value (std with one seed, cells not run).
inline std::string ablation_results_csv(const AblationResult& r, int decimals = 2) {
  auto field = [&](double x) { return std::isnan(x) ? std::string() : format_fixed(x, decimals); };
  std::string out = "variant,k,n,top1_mean,top1_std,top5_mean,top5_std\n";
  for (size_t v = 0; v < r.variants.size(); ++v)
    for (size_t c = 0; c < r.ks.size(); ++c) {
      const auto &a = r.top1[v][c], &b = r.top5[v][c];
      out += csv_quote(r.variants[v]) + ',' + data::k_label(r.ks[c]) + ',' + std::to_string(a.n) +
             ',' + field(a.mean) + ',' + field(a.std) + ',' + field(b.mean) + ',' + field(b.std) + '\n';
    }
  return out;
}

/// results.md: the title, then top-1 and top-5 tables (rows = variants, one column per k, "mean ±
/// std" over seeds, "—" for cells not run yet).
inline std::string ablation_results_markdown(const AblationResult& r, int decimals = 1) {
  auto text = [&](const eval::CellStats& s) {
    if (s.n == 0 || std::isnan(s.mean)) return std::string("—");
    std::string t = format_fixed(s.mean, decimals);
    if (s.n > 1) t += " ± " + format_fixed(s.std, decimals);
    return t;
  };
  size_t seeds = 0;
  for (const auto& row : r.top1)
    for (const auto& s : row) seeds = std::max(seeds, static_cast<size_t>(s.n));
  std::ostringstream os;
  if (!r.title.empty()) os << "# " << r.title << "\n\n";
  for (int pass = 0; pass < 2; ++pass) {
    const auto& grid = pass == 0 ? r.top1 : r.top5;
    os << (pass == 0 ? "Top-1" : "\nTop-5") << " accuracy (%), mean ± std over seeds (up to " << seeds
       << " per cell)\n\n| Variant |";
    for (int k : r.ks) os << " k = " << data::k_label(k) << " |";
    os << "\n|:---|";
    for (size_t c = 0; c < r.ks.size(); ++c) os << "---:|";
    os << '\n';
    for (size_t v = 0; v < r.variants.size(); ++v) {
      os << "| " << r.variants[v] << " |";
      for (size_t c = 0; c < r.ks.size(); ++c) os << ' ' << text(grid[v][c]) << " |";
      os << '\n';
    }
    if (pass == 0 && !r.paired.empty())
      os << "\nPaired difference to " << ablation_baseline_label()
         << " (top-1, points): mean over the test images of all seeds [95 % interval, paired bootstrap "
            "resampling the test images within each seed]\n\n"
         << eval::paired_markdown(r.ks, r.paired, ablation_baseline_label(), "Variant");
  }
  return os.str();
}

/// The figure: one bar per variant (the Baseline grey), one series per k when there are several,
/// error bars = std over seeds, the y axis zoomed to the data (the paper's 88–92 look).
inline viz::BarChart ablation_chart(const AblationResult& r, eval::Metric m = eval::Metric::top1) {
  viz::BarChart c;
  c.title = r.title;
  c.x_label = "variant";
  c.y_label = m == eval::Metric::top1 ? "top-1 accuracy (%)" : "top-5 accuracy (%)";
  c.categories = r.variants;
  c.zero_based = false;
  c.width = std::max(640, 110 * static_cast<int>(r.variants.size() * std::max<size_t>(1, r.ks.size())) + 120);
  const auto& grid = m == eval::Metric::top1 ? r.top1 : r.top5;
  for (size_t col = 0; col < r.ks.size(); ++col) {
    viz::BarSeries s;
    s.name = "k = " + data::k_label(r.ks[col]);
    const std::string color = viz::palette()[col % viz::palette().size()];
    for (size_t v = 0; v < r.variants.size(); ++v) {
      const auto& cell = grid[v][col];
      s.values.push_back(cell.n ? cell.mean : std::numeric_limits<double>::quiet_NaN());
      s.errors.push_back(cell.n > 1 ? cell.std : 0.0);
      s.bar_colors.push_back(r.variants[v] == ablation_baseline_label() && r.ks.size() == 1 ? "#9d9d9d" : color);
    }
    c.series.push_back(std::move(s));
  }
  return c;
}

/// Writes results.csv, results.md, paired.csv and ablation.svg under out_dir, each atomically.
inline void write_ablation_results(const AblationResult& r, const std::filesystem::path& out_dir) {
  const AblationFiles f(out_dir);
  io::write_file_atomic(f.results_csv, ablation_results_csv(r));
  io::write_file_atomic(out_dir / "paired.csv", eval::paired_csv(r.paired));
  io::write_file_atomic(f.results_md, ablation_results_markdown(r));
  viz::write_svg(ablation_chart(r), f.chart_svg);
}

/// Reads runs.csv (`variant,k,seed,top1,top5`, ResultsTable::long_csv; absent: no runs); errors
/// name the file and line.
inline eval::ResultsTable read_ablation_runs(const std::filesystem::path& file) {
  eval::ResultsTable runs = eval::ResultsTable::read_long_csv_or_empty(file, "variant");
  for (const auto& r : runs.records())
    if (r.seed < 0) throw Error(file.string() + ": negative seed for variant '" + r.method + "'");
  return runs;
}

/// Every finished cell of an ablation under out_dir, by any process: its runs.csv and each shard's
/// shards/<rank-I-of-N>/runs.csv, records in (variant, k, seed) order with `variants` first.
inline eval::ResultsTable merged_ablation_runs(const std::filesystem::path& out_dir,
                                               const std::vector<std::string>& variants) {
  eval::ResultsTable runs = detail::merged_runs(out_dir, variants, "variant");
  for (const auto& r : runs.records())
    if (r.seed < 0) throw Error(out_dir.string() + ": negative seed for variant '" + r.method + "' in a runs.csv");
  return runs;
}

namespace detail {

/// One bar of an ablation, type-erased: its label and how to train one cell (and its Step I).
struct AblationVariant {
  std::string label;
  std::function<CellResult(const std::string& method, std::shared_ptr<const data::Dataset>, int k, uint64_t seed,
                           const ExperimentOptions&)>
      run_cell;
  /// Step I for this variant's branch shape (backbone weights, config and saliency options from the
  /// ExperimentOptions); empty for the baseline.
  std::function<FitResult(std::shared_ptr<const data::Dataset>, const ExperimentOptions&,
                          const std::filesystem::path& out_file)>
      step_one;
};

template <class Backbone, class D, class F>
AblationVariant saliency_variant(std::string label) {
  AblationVariant v;
  v.label = std::move(label);
  v.run_cell = [](const std::string& method, std::shared_ptr<const data::Dataset> data, int k, uint64_t seed,
                  const ExperimentOptions& o) {
    return run_saliency_cell<Backbone, D, F>(method, std::move(data), k, seed, o);
  };
  v.step_one = [](std::shared_ptr<const data::Dataset> imagenet, const ExperimentOptions& o,
                  const std::filesystem::path& out_file) {
    return run_step_one<Backbone, D, F>(std::move(imagenet), o.backbone_weights, o.config, out_file, o.saliency);
  };
  return v;
}

/// The baseline bar: Baseline-RGB (RgbNet<Backbone>).
template <class Backbone>
AblationVariant baseline_variant() {
  AblationVariant v;
  v.label = ablation_baseline_label();
  v.run_cell = [](const std::string&, std::shared_ptr<const data::Dataset> data, int k, uint64_t seed,
                  const ExperimentOptions& o) {
    return run_rgb_cell<Backbone>(std::move(data), k, seed, o);
  };
  return v;
}

/// The generic runner behind run_depth_ablation and run_fusion_ablation (see there).
inline AblationResult run_ablation(std::shared_ptr<const data::Dataset> data, std::vector<AblationVariant> variants,
                                   AblationVariant baseline, const AblationOptions& o, const std::string& title) {
  if (!data) throw Error("ablation: no dataset");
  if (o.method != "scratch-sal" && o.method != "A" && o.method != "B")
    throw Error("ablation: method must be scratch-sal, A or B, got '" + o.method + "'");
  if (variants.empty()) throw Error("ablation: the type list names no variant");
  if (o.ks.empty() || o.seeds.empty()) throw Error("ablation: ks and seeds must each name at least one value");
  for (int k : o.ks)
    if (k < 1 && k != data::kOfficial) throw Error("ablation: k must be >= 1 or K, got " + std::to_string(k));
  for (size_t i = 0; i < variants.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (variants[i].label == variants[j].label) throw Error("ablation: variant '" + variants[i].label + "' is listed twice");
  const bool step_one = o.method != "scratch-sal";
  if (o.mode == AblationMode::step_one_only && !step_one)
    throw Error("ablation: only methods A and B have a Step I (this one is " + o.method + ")");
  if (step_one && o.mode != AblationMode::merge) {
    if (!o.step_one_data)
      throw Error("ablation: methods A and B need a Step I dataset (ImageNet-validation layout, --step-one DIR): "
                  "each variant's saliency branch has its own shape and its own Step I");
    if (o.experiment.backbone_weights.empty())
      throw Error("ablation: methods A and B need the backbone's ImageNet weights with their head (--weights) "
                  "for Step I");
    if (!std::filesystem::exists(o.experiment.backbone_weights))
      throw file_error(o.experiment.backbone_weights, "no such file (backbone weights)");
  }
  if (o.include_baseline) variants.push_back(std::move(baseline));
  std::vector<std::string> labels;
  for (const auto& v : variants) labels.push_back(v.label);
  const std::vector<int>& ks = o.ks;  // table columns: data::kOfficial is written "K"
  auto step_one_file = [&](const AblationVariant& v) {
    return o.out_dir / ("stepI-" + ablation_slug(v.label) + ".safetensors");
  };
  // Sharded cells of methods A and B read their variant's Step I: made before, by step_one_only.
  if (step_one && o.mode == AblationMode::run && o.shard.sharded()) {
    std::string missing;
    for (const auto& v : variants)
      if (v.step_one && !std::filesystem::exists(step_one_file(v))) missing += "\n  " + step_one_file(v).string();
    if (!missing.empty())
      throw Error("ablation: a sharded run of method " + o.method + " needs each variant's Step I made first; run the "
                  "same command with --step-one-only (AblationMode::step_one_only; it may be sharded too). Missing:" +
                  missing);
  }

  // The settings of the run: a resume, another shard or a merge must have the same.
  const AblationFiles files(o.out_dir);
  nlohmann::json settings = cell_settings(*data, o.experiment);
  settings["ablation"] = title;
  if (o.mode == AblationMode::merge && !std::filesystem::exists(files.settings_json) &&
      !std::filesystem::exists(files.runs_csv) && shard_files(o.out_dir, "runs.csv").empty())
    throw file_error(o.out_dir, "no ablation run here (no settings.json, no runs.csv): nothing to merge");
  settings = check_run_settings(files.settings_json, settings, "ablation");
  std::filesystem::create_directories(o.out_dir);
  io::write_file_atomic(files.settings_json, settings.dump(2) + "\n");

  auto cell_dir = [&](const std::string& label, int k, uint64_t seed) {
    return o.out_dir / "cells" / (ablation_slug(label) + "-k" + data::k_label(k) + "-s" + std::to_string(seed));
  };
  auto outcomes_of = [&](const eval::ResultsTable& runs) {
    return read_cell_outcomes(runs, [&](const eval::ResultRecord& r) {
      return cell_dir(r.method, r.k, static_cast<uint64_t>(r.seed)) / "test_outcomes.csv";
    });
  };
  // Every finished cell (by any process), its per-image test outcomes, and this process's own.
  eval::ResultsTable all = merged_ablation_runs(o.out_dir, labels);
  eval::OutcomeMap outcomes = outcomes_of(all);
  const bool sharded = o.shard.sharded();
  const auto own_csv = o.out_dir / "shards" / o.shard.folder() / "runs.csv";
  eval::ResultsTable own = sharded ? read_ablation_runs(own_csv) : ablation_runs();
  auto result_of = [&] {
    AblationResult a = aggregate_ablation(all, labels, ks, title);
    a.paired = ablation_paired(all, outcomes);
    return a;
  };
  auto write_all = [&] {
    all.write_long_csv(files.runs_csv);
    AblationResult a = result_of();
    write_ablation_results(a, o.out_dir);
    return a;
  };
  if (o.mode == AblationMode::merge) {
    if (o.log) *o.log << "merged " << all.records().size() << " finished cell(s)\n";
    return write_all();
  }

  auto ensure_step_one = [&](const AblationVariant& v) {  // once per variant, cached across restarts
    const auto file = step_one_file(v);
    if (!std::filesystem::exists(file)) {
      if (o.log) *o.log << "[" << v.label << "] Step I -> " << file.string() << "\n";
      const auto partial = o.out_dir / ("stepI-" + ablation_slug(v.label) + ".partial.safetensors");
      v.step_one(o.step_one_data, o.experiment, partial);
      std::filesystem::rename(partial, file);
    } else if (o.mode == AblationMode::step_one_only && o.log) {
      *o.log << "[" << v.label << "] Step I done before: " << file.string() << "\n";
    }
    return file;
  };
  if (o.mode == AblationMode::step_one_only) {
    for (size_t vi = 0; vi < variants.size(); ++vi)
      if (variants[vi].step_one && o.shard.owns(vi)) ensure_step_one(variants[vi]);
    return result_of();
  }

  auto cell_name = [&](const std::string& label, int k, uint64_t seed) {
    return "[" + label + " k=" + data::k_label(k) + " seed=" + std::to_string(seed) + "] ";
  };
  size_t cell_number = 0;  // in the grid's order: variant, k, seed
  for (const auto& v : variants) {
    const bool baseline = !v.step_one;
    ExperimentOptions base = o.experiment;
    bool step_one_ready = false;
    for (size_t ki = 0; ki < o.ks.size(); ++ki)
      for (uint64_t seed : o.seeds) {
        if (!o.shard.owns(cell_number++)) continue;
        const auto table_seed = static_cast<std::int64_t>(seed);
        if (all.has(v.label, ks[ki], table_seed)) {
          // A kill after runs.csv recorded the cell but before its checkpoints were removed.
          if (!o.keep_checkpoints) std::filesystem::remove_all(cell_dir(v.label, ks[ki], seed) / "checkpoints");
          if (o.log) *o.log << cell_name(v.label, ks[ki], seed) << "done before, skipped\n";
          continue;
        }
        if (step_one && !baseline && !step_one_ready) {
          base.step_one_weights = ensure_step_one(v);
          step_one_ready = true;
        }
        ExperimentOptions cell = base;
        cell.out_dir = cell_dir(v.label, ks[ki], seed);
        CellResult r = v.run_cell(baseline ? std::string("rgb") : o.method, data, o.ks[ki], seed, cell);
        const auto cell_outcomes = test_outcomes(r);
        io::write_file_atomic(cell.out_dir / "test_outcomes.csv", eval::to_csv(cell_outcomes));
        outcomes[{v.label, ks[ki], table_seed}] = cell_outcomes;
        all.add(v.label, ks[ki], table_seed, 100 * r.top1, 100 * r.top5);
        if (sharded) {
          own.add(v.label, ks[ki], table_seed, 100 * r.top1, 100 * r.top5);
          std::filesystem::create_directories(own_csv.parent_path());
          own.write_long_csv(own_csv);
        } else {
          write_all();
        }
        if (!o.keep_checkpoints) std::filesystem::remove_all(cell.out_dir / "checkpoints");
        if (o.log)
          *o.log << cell_name(v.label, ks[ki], seed) << "top-1 " << format_fixed(100 * r.top1, 1)
                 << " %, top-5 " << format_fixed(100 * r.top5, 1) << " % (epoch " << r.best_epoch
                 << ")\n";
        if (o.on_cell) o.on_cell(v.label, r);
      }
  }
  if (sharded) {
    // Whichever process finds every cell of the grid done writes the results from all of them.
    all = merged_ablation_runs(o.out_dir, labels);
    outcomes = outcomes_of(all);
    size_t missing = 0;
    for (const auto& label : labels)
      for (int k : ks)
        for (uint64_t seed : o.seeds) missing += all.has(label, k, static_cast<std::int64_t>(seed)) ? 0 : 1;
    if (missing > 0) {
      if (o.log)
        *o.log << "[shard " << o.shard.label() << "] its cells are done; " << missing
               << " cell(s) of other shards are not yet: the last shard to finish (or a merge) writes the results\n";
      return result_of();
    }
  }
  return write_all();
}

inline std::string method_phrase(const std::string& method) {
  return method == "scratch-sal" ? "saliency branch from scratch" : method_label(method);
}

}  // namespace detail

/// Fig. 2: one HalSalNet<Backbone, D, Fusion> per Depth D of the type list (Conv-1 … Conv-4), then
/// the Baseline-RGB bar; ks × seeds cells each (see AblationOptions). Resumable; writes runs.csv,
/// results.csv, results.md and ablation.svg under o.out_dir. Depths that HalSalNet rejects (or a
/// Fusion that is not the Backbone's) fail to compile.
template <class Backbone, class Fusion = default_fusion_t<Backbone>, class... Depths>
AblationResult run_depth_ablation(std::shared_ptr<const data::Dataset> data, type_list<Depths...> list,
                                  const AblationOptions& o) {
  static_assert(sizeof...(Depths) > 0, "halsal: run_depth_ablation needs at least one Depth<N> in its type list");
  static_assert((is_depth_v<Depths> && ...), "halsal: run_depth_ablation's type list holds Depth<N> types only");
  const auto labels = ablation_labels(list, false);
  std::vector<detail::AblationVariant> variants;
  size_t i = 0;
  (variants.push_back(detail::saliency_variant<Backbone, Depths, Fusion>(labels[i++])), ...);
  return detail::run_ablation(data, std::move(variants), detail::baseline_variant<Backbone>(), o,
                              std::string("Saliency branch depth (Fig. 2): ") + backbone_traits<Backbone>::name +
                                  ", fused " + ablation_label<Fusion>::get() + ", " + detail::method_phrase(o.method));
}

/// Fig. 3: one HalSalNet<Backbone, D, F> per fusion tag F of the type list (Before Pool-2 … After
/// Conv-4 on AlexNet, After stage 1 … 4 on ResNet / MobileNetV2), then the Baseline-RGB bar.
/// Otherwise as run_depth_ablation; tags of another backbone fail to compile.
template <class Backbone, class D = Depth<4>, class... Fusions>
AblationResult run_fusion_ablation(std::shared_ptr<const data::Dataset> data, type_list<Fusions...> list,
                                   const AblationOptions& o) {
  static_assert(sizeof...(Fusions) > 0, "halsal: run_fusion_ablation needs at least one fusion tag in its type list");
  static_assert((is_fusion_point_v<Fusions> && ...),
                "halsal: run_fusion_ablation's type list holds fusion-point tags only (BeforePool2, AfterStage<N>, …)");
  const auto labels = ablation_labels(list, false);
  std::vector<detail::AblationVariant> variants;
  size_t i = 0;
  (variants.push_back(detail::saliency_variant<Backbone, D, Fusions>(labels[i++])), ...);
  return detail::run_ablation(data, std::move(variants), detail::baseline_variant<Backbone>(), o,
                              std::string("Fusion point (Fig. 3): ") + backbone_traits<Backbone>::name + ", " +
                                  ablation_label<D>::get() + " saliency branch, " + detail::method_phrase(o.method));
}

}  // namespace halsal::train
