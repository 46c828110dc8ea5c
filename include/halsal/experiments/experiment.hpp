// The paper's experiments as library calls: one protocol cell (method × k × seed) over a
// compile-time backbone, Step I (§3.4), and the resumable protocol runner behind Tables 1–2.
//
//   namespace ht = halsal::train;
//   ht::ExperimentOptions o;
//   o.backbone_weights = "mobilenet_v2-imagenet.pth";   // torchvision names, ImageNet head skipped
//   o.step_one_weights = "stepI.safetensors";            // saliency.* from run_step_one (A, B)
//   o.config = ht::fast_profile(); o.config.normalization = "symmetric";
//   ht::CellResult r = ht::run_cell<halsal::MobileNetV2>("B", dataset, /*k=*/5, /*seed=*/0, o);
#pragma once
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "halsal/data/data.hpp"
#include "halsal/eval/paired.hpp"
#include "halsal/eval/table.hpp"
#include "halsal/io/state_dict.hpp"
#include "halsal/io/weights.hpp"
#include "halsal/nets/halsal_net.hpp"
#include "halsal/nets/rgb_net.hpp"
#include "halsal/nets/smic_net.hpp"
#include "halsal/experiments/shard.hpp"
#include "halsal/experiments/step_one.hpp"
#include "halsal/train/trainer.hpp"

namespace halsal::train {

/// The methods run_cell() accepts, in table order: the frozen-feature floor (ncm), its Step I
/// diagnostic (ncm-sal), then the methods of the paper's Tables 1–2.
inline const std::vector<std::string>& experiment_methods() {
  static const std::vector<std::string> m{"ncm", "ncm-sal", "rgb", "scratch-sal", "smic", "A", "B"};
  return m;
}

/// The row label of a method in the tables ("B" → "Approach B"); throws on unknown ones.
inline std::string method_label(const std::string& method) {
  if (method == "ncm") return "NCM (frozen features)";
  if (method == "ncm-sal") return "NCM (Step I-modulated features)";
  if (method == "rgb") return "Baseline-RGB";
  if (method == "scratch-sal") return "Baseline-RGB + scratch SAL";
  if (method == "smic") return "SMIC";
  if (method == "A") return "Approach A";
  if (method == "B") return "Approach B";
  throw Error("unknown method '" + method + "' (expected ncm, ncm-sal, rgb, scratch-sal, smic, A or B)");
}

/// True for the methods that train a network (all but the nearest-class-mean ones).
inline bool is_trained_method(const std::string& method) {
  method_label(method);
  return method != "ncm" && method != "ncm-sal";
}

/// True for the methods that read the Step I saliency weights (A, B, ncm-sal).
inline bool needs_step_one(const std::string& method) { return method == "A" || method == "B" || method == "ncm-sal"; }

/// Splits "a,b,c" into its non-empty fields (for CLI lists).
inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

/// Parses "1,5,10,K" into k values (K → data::kOfficial); errors name the bad item.
inline std::vector<int> parse_k_list(const std::string& text) {
  std::vector<int> ks;
  for (const auto& item : split_list(text)) ks.push_back(data::parse_k(item));
  if (ks.empty()) throw Error("no k given (expected e.g. 1,5,10 or K)");
  return ks;
}

/// Parses "0,1,2" into 64-bit seeds; errors name the item that is not one.
inline std::vector<uint64_t> parse_seed_list(const std::string& text) {
  std::vector<uint64_t> seeds;
  for (const auto& item : split_list(text)) {
    uint64_t seed = 0;
    const auto parsed = std::from_chars(item.data(), item.data() + item.size(), seed);
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos ||
        parsed.ptr != item.data() + item.size())
      throw Error("seed '" + item + "' is not a non-negative integer");
    if (parsed.ec == std::errc::result_out_of_range)
      throw Error("seed '" + item + "' is larger than the largest seed, " +
                  std::to_string(std::numeric_limits<uint64_t>::max()));
    seeds.push_back(seed);
  }
  if (seeds.empty()) throw Error("no seed given (expected e.g. 0,1,2)");
  return seeds;
}

/// A named profile: "fast" (fast_profile(): 160 px, imprinted head, warm-up, 10 epochs) or
/// "paper" (paper_profile(): §4.1, 224 px, 70 epochs); throws on others.
inline TrainConfig profile(const std::string& name) {
  if (name == "fast") return fast_profile();
  if (name == "paper") return paper_profile();
  throw Error("unknown profile '" + name + "' (expected fast or paper)");
}

/// What every cell of an experiment shares.
struct ExperimentOptions {
  /// torchvision-named backbone weights (.pth / .safetensors) loaded into `backbone.*` with the
  /// head left out; empty: the backbone starts from its random initialisation.
  std::filesystem::path backbone_weights;
  /// Step I result (saliency.* tensors) for methods A and B; required by them.
  std::filesystem::path step_one_weights;
  TrainConfig config = fast_profile();  ///< seed is overwritten by each cell's seed
  data::SplitOptions split;             ///< test / val images per class
  /// Per-cell folder (checkpoints, metrics.jsonl); empty: no files, no mid-cell resume.
  std::filesystem::path out_dir;
  bool keep_model = false;  ///< also write <cell dir>/model.safetensors (the selected weights)
  /// Write a checkpoint (network and optimizer state) every epoch under out_dir, so that an
  /// interrupted cell resumes mid-training; false skips them (short cells: the demo).
  bool checkpoints = true;
  /// Saliency-branch options of HalSalNet / SmicNet cells (the paper's by default; softplus keeps
  /// a branch trained from scratch from switching off, see SaliencyActivation).
  SaliencyOptions saliency;
  /// Data-parallel training of each cell over the processes of this group (null: alone): see
  /// Trainer::set_process_group. Only rank 0 writes the cell's files.
  std::shared_ptr<dist::ProcessGroup> process_group;
};

/// One cell's outcome: accuracies in [0, 1], the selected epoch, the test report and a handle on
/// the trained network for further inference (galleries).
struct CellResult {
  std::string method;
  int k = 0;
  uint64_t seed = 0;
  TrainConfig config;  ///< the configuration the cell ran with (its seed included)
  Composition composition;  ///< the network it trained (type, map activation, head)
  std::filesystem::path out_dir;  ///< the cell's folder (checkpoints, metrics); empty when none
  double top1 = 0, top5 = 0;
  int best_epoch = 0;
  FitResult fit;
  EvalReport report;
  data::Split split;
  std::shared_ptr<torch::nn::Module> model;  ///< the trained network
  /// Eval-mode forward pass of uint8 images N×3×H×W (already at the training size).
  std::function<NetOutput(const torch::Tensor&)> infer;
};

namespace detail {

/// Loads only the `saliency.*` tensors of a Step I file (strict: each must be present).
template <class Net>
void load_step_one(Net& net, const std::filesystem::path& file) {
  if (file.empty())
    throw Error("Approaches A and B and ncm-sal need the Step I saliency weights (a .safetensors file from "
                "run_step_one / halsal_protocol --step-one); none was given");
  if (!std::filesystem::exists(file)) throw file_error(file, "no such file (Step I saliency weights)");
  const auto weights = io::read_weights_file(file);
  // The map's activation has no parameters, so the file says which one its branch was trained with.
  const auto stored = weights.metadata.find("saliency_activation");
  const std::string wanted = to_string(net->saliency->activation());
  if (stored != weights.metadata.end() && stored->second != wanted)
    throw file_error(file, "its saliency branch was trained with a " + stored->second + " map, but this network's map uses " +
                               wanted + " (pass --saliency-activation " + stored->second + ")");
  io::LoadOptions lo;
  lo.strict = true;
  lo.skip_prefixes = {"backbone."};
  try {
    io::load_state_dict(*net, weights.tensors, lo);
  } catch (const Error& e) {
    throw file_error(file, e.what());
  }
}

/// What every cell starts from: its k-shot split and its configuration with the cell's seed.
struct CellSetup {
  data::Split split;
  TrainConfig config;
};

/// A cell's result before it runs: what ran (method, split, configuration).
inline CellResult cell_result(const std::string& method, const data::Split& split, const TrainConfig& config) {
  CellResult r;
  r.method = method;
  r.k = split.k;
  r.seed = split.seed;
  r.config = config;
  r.split = split;
  return r;
}

/// The cell's split and configuration. Also seeds torch's generator with the cell's seed, so the
/// network built next (Xavier head, scratch branch) does not depend on what ran earlier in the
/// process: a resumed protocol gives each cell the numbers a fresh one would (the Trainer seeds
/// dropout per epoch).
inline CellSetup cell_setup(const std::shared_ptr<const data::Dataset>& data, int k, uint64_t seed,
                            const ExperimentOptions& o) {
  if (!data) throw Error("run_cell: no dataset");
  CellSetup s{data::kshot(data, k, seed, o.split), o.config};
  s.config.seed = seed;
  torch::manual_seed(seed);
  return s;
}

/// Loads the backbone's ImageNet weights (without their head) when the options name a file.
template <class Net>
void load_backbone(Net& net, const ExperimentOptions& o) {
  if (!o.backbone_weights.empty()) io::load_weights(*net, o.backbone_weights, backbone_load_options<Net>(false));
}

template <class Net, class Policy>
CellResult fit_and_test(Net net, const std::string& method, CellSetup setup, const ExperimentOptions& o) {
  const data::Split& split = setup.split;
  TrainConfig& config = setup.config;
  std::filesystem::path cell_dir;
  if (!o.out_dir.empty()) {
    cell_dir = o.out_dir;
    if (o.checkpoints) config.checkpoint_dir = cell_dir / "checkpoints";
    config.metrics_jsonl = cell_dir / "metrics.jsonl";
  }
  auto trainer = std::make_shared<Trainer<Net, Policy>>(net, config);
  trainer->set_process_group(o.process_group);
  std::ostringstream prefix;
  prefix << "[" << method << " k=" << data::k_label(split.k)
         << " seed=" << split.seed << "] ";
  trainer->set_progress_prefix(prefix.str());
  CellResult r = cell_result(method, split, config);
  r.out_dir = cell_dir;
  r.fit = trainer->fit(split.train, split.val);
  r.composition = composition_of(trainer->net());  // after fit: the imprint recipe may add a cosine head
  r.best_epoch = r.fit.best_epoch;
  r.report = trainer->evaluate(split.test);
  r.top1 = r.report.metrics.top1();
  r.top5 = r.report.metrics.top5();
  if (!cell_dir.empty() && o.keep_model && trainer->writes_files())
    io::save_weights(*trainer->net(), cell_dir / "model.safetensors");
  r.model = trainer->net().ptr();
  const auto norm = detail::normalization_of(config);
  r.infer = [trainer, norm](const torch::Tensor& images_u8) {
    auto& n = trainer->net();
    const bool was = n->is_training();
    n->eval();
    torch::NoGradGuard no_grad;
    const torch::Device dev(trainer->config().device);
    NetOutput out = trainer->run(norm(images_u8, dev), images_u8);
    n->train(was);
    return out;
  };
  return r;
}

/// A nearest-class-mean cell: the network's pooled features (eval mode, centre crops) of the
/// training images give the class means; validation and test images go to the nearest one.
template <class Net>
CellResult fit_ncm(Net net, const std::string& method, CellSetup setup, const ExperimentOptions&) {
  const data::Split& split = setup.split;
  TrainConfig config = setup.config;
  config.head = "xavier";  // nothing trains: the head is not used
  config.warmup_epochs = 0;
  config.checkpoint_dir.clear();
  config.metrics_jsonl.clear();
  auto trainer = std::make_shared<Trainer<Net, LinearProbe>>(net, config);
  const auto& names = split.train.dataset->class_names;
  const int64_t classes = split.train.num_classes();
  const auto train = trainer->embed(split.train);
  auto ncm = std::make_shared<eval::NearestClassMean>(
      eval::NearestClassMean::fit(train.features, train.labels, classes, names));
  auto report_on = [&](const data::Subset& subset) {
    EvalReport report;
    report.metrics = eval::ClassificationMetrics(classes, names);
    if (subset.empty()) return report;
    const auto t0 = std::chrono::steady_clock::now();
    const auto e = trainer->embed(subset);
    const auto logits = ncm->logits(e.features);
    report.metrics.add_logits(logits, e.labels);
    const auto best = torch::softmax(logits, 1).max(1);
    const auto conf = std::get<0>(best), pred = std::get<1>(best);
    for (size_t i = 0; i < e.indices.size(); ++i) {
      const auto row = static_cast<int64_t>(i);
      report.predictions.push_back({e.indices[i], e.labels[row].template item<int64_t>(),
                                    pred[row].template item<int64_t>(), conf[row].template item<float>()});
    }
    report.images_per_s = static_cast<double>(e.indices.size()) /
                          std::max(1e-9, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return report;
  };
  CellResult r = cell_result(method, split, config);
  r.fit.finished = true;
  if (!split.val.empty()) r.fit.best_val_accuracy = report_on(split.val).metrics.top1();
  r.report = report_on(split.test);
  r.top1 = r.report.metrics.top1();
  r.top5 = r.report.metrics.top5();
  r.model = trainer->net().ptr();
  r.composition = composition_of(trainer->net());
  const auto norm = detail::normalization_of(config);
  r.infer = [trainer, ncm, norm](const torch::Tensor& images_u8) {
    auto& n = trainer->net();
    const bool was = n->is_training();
    n->eval();
    torch::NoGradGuard no_grad;
    NetOutput out = trainer->run(norm(images_u8, torch::Device(trainer->config().device)), images_u8);
    out.logits = ncm->logits(out.embedding.to(torch::kCPU).to(torch::kFloat32));
    n->train(was);
    return out;
  };
  return r;
}

}  // namespace detail

/// A nearest-class-mean cell (nothing trains): "ncm" on the ImageNet backbone's L2-normalised
/// pooled features, "ncm-sal" on the same network's features modulated by the Step I map (does
/// the map alone help, without any training noise?).
template <class Backbone, class Depth_ = Depth<4>, class Fusion = default_fusion_t<Backbone>>
CellResult run_ncm_cell(const std::string& method, std::shared_ptr<const data::Dataset> data, int k, uint64_t seed,
                        const ExperimentOptions& o) {
  if (method != "ncm" && method != "ncm-sal")
    throw Error("run_ncm_cell: method must be ncm or ncm-sal, not '" + method + "'");
  auto setup = detail::cell_setup(data, k, seed, o);
  if (method == "ncm") {
    RgbNet<Backbone> net(data->num_classes());
    detail::load_backbone(net, o);
    return detail::fit_ncm(net, method, std::move(setup), o);
  }
  using Net = HalSalNet<Backbone, Depth_, Fusion>;
  Net net(data->num_classes(), o.saliency);
  detail::load_step_one(net, o.step_one_weights);
  detail::load_backbone(net, o);
  return detail::fit_ncm(net, method, std::move(setup), o);
}

/// Baseline-RGB's cell: RgbNet<Backbone> on the k-shot split (k, seed), Approach B's freezing.
template <class Backbone>
CellResult run_rgb_cell(std::shared_ptr<const data::Dataset> data, int k, uint64_t seed, const ExperimentOptions& o) {
  auto setup = detail::cell_setup(data, k, seed, o);
  RgbNet<Backbone> net(data->num_classes());
  detail::load_backbone(net, o);
  return detail::fit_and_test<RgbNet<Backbone>, ApproachB>(net, "rgb", std::move(setup), o);
}

/// A hallucinated-saliency cell: HalSalNet<Backbone, Depth_, Fusion> trained as `method`
/// ("scratch-sal": Xavier branch, Approach B; "A"/"B": branch from the Step I file). Instantiates
/// only HalSalNet, so variant sweeps (ablations) compile no SmicNet or RgbNet per variant.
template <class Backbone, class Depth_ = Depth<4>, class Fusion = default_fusion_t<Backbone>>
CellResult run_saliency_cell(const std::string& method, std::shared_ptr<const data::Dataset> data, int k,
                             uint64_t seed, const ExperimentOptions& o) {
  if (method != "scratch-sal" && method != "A" && method != "B")
    throw Error("run_saliency_cell: method must be scratch-sal, A or B, not '" + method + "'");
  auto setup = detail::cell_setup(data, k, seed, o);
  using Net = HalSalNet<Backbone, Depth_, Fusion>;
  Net net(data->num_classes(), o.saliency);
  if (method != "scratch-sal") detail::load_step_one(net, o.step_one_weights);
  detail::load_backbone(net, o);
  if (method == "A") return detail::fit_and_test<Net, ApproachA>(net, method, std::move(setup), o);
  return detail::fit_and_test<Net, ApproachB>(net, method, std::move(setup), o);
}

/// Trains and tests one protocol cell: `method` (rgb, scratch-sal, smic, A, B) on the k-shot split
/// (k, seed) of `data`, every method with Approach B's freezing except A. Errors name what is
/// missing (A/B without a Step I file, unreadable weights).
template <class Backbone, class Depth_ = Depth<4>, class Fusion = default_fusion_t<Backbone>>
CellResult run_cell(const std::string& method, std::shared_ptr<const data::Dataset> data, int k, uint64_t seed,
                    const ExperimentOptions& o) {
  if (!is_trained_method(method)) return run_ncm_cell<Backbone, Depth_, Fusion>(method, std::move(data), k, seed, o);
  if (method == "rgb") return run_rgb_cell<Backbone>(std::move(data), k, seed, o);
  if (method != "smic") return run_saliency_cell<Backbone, Depth_, Fusion>(method, std::move(data), k, seed, o);
  auto setup = detail::cell_setup(data, k, seed, o);
  using Net = SmicNet<Backbone, Depth_, Fusion>;
  Net net(data->num_classes(), o.saliency);
  detail::load_backbone(net, o);
  return detail::fit_and_test<Net, ApproachB>(net, method, std::move(setup), o);
}

/// run_cell() on a dataset held by value.
template <class Backbone, class Depth_ = Depth<4>, class Fusion = default_fusion_t<Backbone>>
CellResult run_cell(const std::string& method, const data::Dataset& data, int k, uint64_t seed,
                    const ExperimentOptions& o) {
  return run_cell<Backbone, Depth_, Fusion>(method, std::make_shared<const data::Dataset>(data), k, seed, o);
}

/// What run_protocol() runs and where it writes.
struct ProtocolOptions {
  std::vector<std::string> methods = experiment_methods();
  std::vector<int> ks{1, 2, 3, 5, 10};  ///< data::kOfficial (-1) = the dataset's full split ("K")
  std::vector<uint64_t> seeds{0, 1, 2};
  ExperimentOptions experiment;  ///< its out_dir is overwritten per cell (<out>/cells/<cell>)
  std::filesystem::path out_dir = "protocol-out";
  bool keep_checkpoints = false;  ///< keep each finished cell's checkpoints (else removed)
  std::ostream* log = &std::cout;  ///< one line per cell; nullptr = silent
  std::function<void(const CellResult&)> on_cell;  ///< called after each trained cell
  std::string title;  ///< heading of table.md (empty: none)
  /// This process's share of the grid (shard_from_environment(), parse_shard()): the grid's cell
  /// number i, counted in the order k, seed, method, runs where i % count == index. A sharded
  /// process keeps its runs.csv and runs.jsonl under <out>/shards/rank-I-of-N/ (the cells' own
  /// folders are shared) and writes the tables once every cell of the grid is done, by whichever
  /// process; merge_protocol() writes them from what is there at any time.
  Shard shard;
};

/// The files run_protocol() writes under out_dir.
struct ProtocolFiles {
  std::filesystem::path table_md, table_csv, runs_csv, runs_jsonl, paired_csv, settings_json;
  explicit ProtocolFiles(const std::filesystem::path& out)
      : table_md(out / "table.md"), table_csv(out / "table.csv"), runs_csv(out / "runs.csv"),
        runs_jsonl(out / "runs.jsonl"), paired_csv(out / "paired.csv"), settings_json(out / "settings.json") {}
};

/// A cell's folder name under <out>/cells: "<method>-k<k>-s<seed>".
inline std::string cell_dir_name(const std::string& method, int k, uint64_t seed) {
  return method + "-k" + data::k_label(k) + "-s" + std::to_string(seed);
}

/// The per-image test outcomes of a finished cell.
inline eval::TestOutcomes test_outcomes(const CellResult& r) {
  eval::TestOutcomes t;
  for (const auto& p : r.report.predictions) {
    t.index.push_back(p.index);
    t.label.push_back(p.label);
    t.predicted.push_back(p.predicted);
  }
  return t;
}

/// The label of the row every other row is compared with.
inline std::string baseline_label() { return method_label("rgb"); }

/// Writes table.md (top-1 with the paired differences to Baseline-RGB, then top-5), table.csv
/// (wide top-1), paired.csv and runs.csv (long) atomically. `outcomes` holds the per-image test
/// outcomes of the cells that have them.
inline void write_protocol_tables(const eval::ResultsTable& table, const std::filesystem::path& out_dir,
                                  const eval::OutcomeMap& outcomes = {}, const std::string& title = "") {
  const ProtocolFiles f(out_dir);
  std::string md;
  if (!title.empty()) md += "# " + title + "\n\n";
  md += "Top-1 accuracy (%), mean ± std over seeds\n\n" + table.markdown(eval::Metric::top1);
  const auto paired = eval::paired_comparisons(table, outcomes, baseline_label());
  if (!paired.empty())
    md += "\nPaired difference to " + baseline_label() + " (top-1, points): mean over the test images of all "
          "seeds [95 % interval, paired bootstrap resampling the test images within each seed]\n\n" +
          eval::paired_markdown(table.ks(), paired, baseline_label());
  md += "\nTop-5 accuracy (%)\n\n" + table.markdown(eval::Metric::top5);
  io::write_file_atomic(f.table_md, md);
  io::write_file_atomic(f.table_csv, table.wide_csv(eval::Metric::top1));
  io::write_file_atomic(f.paired_csv, eval::paired_csv(paired));
  table.write_long_csv(f.runs_csv);
}

/// One runs.jsonl line for a finished cell.
inline nlohmann::json cell_json(const CellResult& r, const std::string& label,
                                SaliencyActivation saliency_activation = SaliencyActivation::relu) {
  nlohmann::json j{{"method", label},
                   {"method_key", r.method},
                   {"k", r.k == data::kOfficial ? nlohmann::json("K") : nlohmann::json(r.k)},
                   {"seed", r.seed},
                   {"top1", 100 * r.top1},
                   {"top5", 100 * r.top5},
                   {"mean_per_class", 100 * r.report.metrics.mean_per_class_accuracy()},
                   {"best_epoch", r.best_epoch},
                   {"best_val_accuracy", std::isnan(r.fit.best_val_accuracy) ? nlohmann::json()
                                                                              : nlohmann::json(r.fit.best_val_accuracy)},
                   {"train", r.split.train.size()},
                   {"val", r.split.val.size()},
                   {"test", r.split.test.size()},
                   {"config", to_json(r.config)}};
  if (r.method != "rgb" && r.method != "ncm") j["saliency_activation"] = to_string(saliency_activation);
  if (r.report.has_saliency_score) j["saliency_on_object_ratio"] = r.report.saliency_on_object.ratio;
  return j;
}

namespace detail {

/// runs.jsonl text with `record` appended and any earlier line of the same (method, k, seed)
/// dropped (a cell rerun after an interruption between runs.jsonl and runs.csv). Lines that are
/// not JSON objects are kept as they are.
inline std::string replace_jsonl_record(const std::string& jsonl, const nlohmann::json& record) {
  std::string out;
  std::istringstream in(jsonl);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("method", nlohmann::json()) == record["method"] &&
        j.value("k", nlohmann::json()) == record["k"] && j.value("seed", nlohmann::json()) == record["seed"])
      continue;
    out += line + "\n";
  }
  return out + record.dump() + "\n";
}

/// A file as the settings record it: its name and size (empty when none).
inline nlohmann::json file_identity(const std::filesystem::path& file) {
  if (file.empty()) return "";
  // Name and size: the same file reached by another path (or from another folder) still matches.
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  const std::string name = file.filename().string();
  return ec ? name : name + " (" + std::to_string(size) + " bytes)";
}

/// A dataset as the settings record it: layout, classes and images.
inline std::string dataset_identity(const data::Dataset& d) {
  return d.layout + ": " + std::to_string(d.num_classes()) + " classes, " + std::to_string(d.size()) + " images";
}

/// What decides every cell's numbers besides (method, k, seed) and the network: the dataset, the
/// backbone weights, the split, the saliency options and the training recipe.
inline nlohmann::json cell_settings(const data::Dataset& d, const ExperimentOptions& o) {
  nlohmann::json config = to_json(o.config);
  config.erase("seed");    // every cell has its own
  config.erase("device");  // a resume on another device computes the same
  return {{"dataset", dataset_identity(d)},
          {"weights", file_identity(o.backbone_weights)},
          {"split", {{"test_per_class", o.split.test_per_class}, {"val_per_class", o.split.val_per_class}}},
          {"saliency_activation", to_string(o.saliency.activation)},
          {"saliency_start", to_string(o.saliency.start)},
          {"saliency_score_bias", o.saliency.score_bias},
          {"config", config}};
}

/// What decides a protocol's numbers besides (method, k, seed): a resumed run must match it.
template <class Backbone, class Depth_, class Fusion>
nlohmann::json protocol_settings(const data::Dataset& d, const ProtocolOptions& p) {
  nlohmann::json s = cell_settings(d, p.experiment);
  s["network"] = HalSalNet<Backbone, Depth_, Fusion>::Impl::name();
  s["step_one"] = file_identity(p.experiment.step_one_weights);
  return s;
}

/// Compares the settings of a resumed run (`what`: "protocol run", "ablation") with the stored ones; throws an Error naming every
/// difference (nothing is overwritten). A Step I file may be added later (none before), and a
/// setting the stored file does not record (an older halsal) is taken as it is now.
inline nlohmann::json check_run_settings(const std::filesystem::path& file, const nlohmann::json& now,
                                         const std::string& what = "protocol run") {
  if (!std::filesystem::exists(file)) return now;
  nlohmann::json before;
  try {
    std::ifstream in(file, std::ios::binary);
    before = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw file_error(file, "is not the settings JSON of a " + what + ": " + e.what());
  }
  std::vector<std::string> diffs;
  auto text = [](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
  nlohmann::json merged = before;
  for (const auto& [key, value] : now.items()) {
    if (!before.contains(key)) {  // not recorded by the version that started the run: nothing to compare
      merged[key] = value;
      continue;
    }
    const nlohmann::json old = before[key];
    if (key == "step_one" && old == "" && value != "") {
      merged[key] = value;  // a Step I file added for methods that need it
      continue;
    }
    if (key == "step_one" && value == "") continue;  // this run's methods do not need it
    if (key == "config" && old.is_object() && value.is_object()) {
      for (const auto& [field, v] : value.items()) {
        if (!old.contains(field)) {
          merged[key][field] = v;
          continue;
        }
        if (old[field] != v)
          diffs.push_back("config." + field + ": " + text(old[field]) + " before, " + text(v) + " now");
      }
      continue;
    }
    if (old != value) diffs.push_back(key + ": " + text(old) + " before, " + text(value) + " now");
  }
  if (!diffs.empty()) {
    std::string msg = "this output folder holds a " + what + " with other settings; finish it with the same settings "
                      "or choose another --out. Differences:";
    for (const auto& d : diffs) msg += "\n  " + d;
    throw file_error(file, msg);
  }
  return merged;
}

}  // namespace detail

namespace detail {

/// Every finished cell under out_dir: <out>/runs.csv (a whole-grid run, or an earlier merge) and
/// each shard's shards/<rank-I-of-N>/runs.csv, as one table whose records are in (row, k, seed)
/// order, rows ranked by `order` (others after them, by name), whichever process ran them (a cell
/// in several files: the last file read wins, all hold the same numbers for it).
inline eval::ResultsTable merged_runs(const std::filesystem::path& out_dir, const std::vector<std::string>& order,
                                      const std::string& row_label) {
  std::vector<std::filesystem::path> files{out_dir / "runs.csv"};
  const auto shards = shard_files(out_dir, "runs.csv");
  files.insert(files.end(), shards.begin(), shards.end());
  std::vector<eval::ResultRecord> records;
  for (const auto& f : files) {
    const eval::ResultsTable t = eval::ResultsTable::read_long_csv_or_empty(f, row_label);
    records.insert(records.end(), t.records().begin(), t.records().end());
  }
  auto rank = [&](const eval::ResultRecord& r) {
    const auto at = std::find(order.begin(), order.end(), r.method);
    const long long k = r.k == data::kOfficial ? std::numeric_limits<int>::max() : r.k;
    return std::make_tuple(static_cast<long long>(at - order.begin()), r.method, k, r.seed);
  };
  std::stable_sort(records.begin(), records.end(), [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
  eval::ResultsTable t(row_label);
  t.set_method_order(order);
  for (const auto& r : records) t.add(r);
  return t;
}

/// The per-image test outcomes of the finished cells of `runs` whose file (cell_file(record), a
/// test_outcomes.csv; empty = none) exists.
inline eval::OutcomeMap read_cell_outcomes(const eval::ResultsTable& runs,
                                           const std::function<std::filesystem::path(const eval::ResultRecord&)>& cell_file) {
  eval::OutcomeMap outcomes;
  for (const auto& r : runs.records()) {
    const auto file = cell_file(r);
    if (!file.empty() && std::filesystem::exists(file)) outcomes[{r.method, r.k, r.seed}] = eval::read_test_outcomes(file);
  }
  return outcomes;
}

/// The protocol's cells' outcomes: <out>/cells/<method>-k<k>-s<seed>/test_outcomes.csv.
inline eval::OutcomeMap protocol_cell_outcomes(const std::filesystem::path& out_dir, const eval::ResultsTable& runs) {
  return read_cell_outcomes(runs, [&](const eval::ResultRecord& r) {
    for (const auto& m : experiment_methods())
      if (method_label(m) == r.method)
        return out_dir / "cells" / cell_dir_name(m, r.k, static_cast<uint64_t>(r.seed)) / "test_outcomes.csv";
    return std::filesystem::path();
  });
}

}  // namespace detail

/// Every finished cell of a protocol under out_dir, by any process: its runs.csv and each shard's
/// shards/<rank-I-of-N>/runs.csv, records in (method, k, seed) order.
inline eval::ResultsTable merged_protocol_runs(const std::filesystem::path& out_dir) {
  std::vector<std::string> order;
  for (const auto& m : experiment_methods()) order.push_back(method_label(m));
  return detail::merged_runs(out_dir, order, "method");
}

/// Writes the protocol's tables (table.md, table.csv, paired.csv, runs.csv and runs.jsonl) from
/// every cell finished under out_dir, by any process (merged_protocol_runs), and returns the
/// table: what a sharded grid's last process, or `halsal_protocol --merge`, does.
inline eval::ResultsTable merge_protocol(const std::filesystem::path& out_dir, const std::string& title = "") {
  const ProtocolFiles files(out_dir);
  if (!std::filesystem::exists(files.settings_json))
    throw file_error(out_dir, "no protocol run here (no settings.json): nothing to merge");
  eval::ResultsTable table = merged_protocol_runs(out_dir);
  const eval::OutcomeMap outcomes = detail::protocol_cell_outcomes(out_dir, table);
  std::map<std::tuple<std::string, int, std::int64_t>, std::string> lines;  // runs.jsonl by cell
  auto read_jsonl = [&](const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || !j.contains("method") || !j.contains("k") || !j.contains("seed")) continue;
      const auto& k = j.at("k");
      const int kv = k.is_string() ? data::kOfficial : k.is_number_integer() ? k.get<int>() : 0;
      if (!j.at("method").is_string() || !j.at("seed").is_number_integer()) continue;
      lines[{j.at("method").get<std::string>(), kv, j.at("seed").get<std::int64_t>()}] = line;
    }
  };
  read_jsonl(files.runs_jsonl);
  for (const auto& f : shard_files(out_dir, "runs.jsonl")) read_jsonl(f);
  std::string jsonl;
  for (const auto& r : table.records()) {
    const auto it = lines.find({r.method, r.k, r.seed});
    if (it != lines.end()) jsonl += it->second + "\n";
  }
  io::write_file_atomic(files.runs_jsonl, jsonl);
  write_protocol_tables(table, out_dir, outcomes, title);
  return table;
}

/// Runs methods × ks × seeds with HalSalNet<Backbone, Depth_, Fusion> (and its RgbNet / SmicNet
/// siblings) and returns the table (values in percent). Every method of a seed uses the same
/// split. Resumable: cells already in <out>/runs.csv are skipped (more methods, k or seeds run
/// only the new cells), a cell interrupted mid-training resumes from its checkpoints, and after
/// every cell table.md, table.csv, paired.csv, runs.csv and runs.jsonl are rewritten atomically.
/// A folder written with other settings (settings.json) is refused with the differences.
template <class Backbone, class Depth_ = Depth<4>, class Fusion = default_fusion_t<Backbone>>
eval::ResultsTable run_protocol(std::shared_ptr<const data::Dataset> data, const ProtocolOptions& p) {
  if (!data) throw Error("run_protocol: no dataset");
  if (p.methods.empty() || p.ks.empty() || p.seeds.empty())
    throw Error("run_protocol: methods, ks and seeds must each name at least one value");
  std::vector<std::string> labels;
  for (const auto& m : p.methods) labels.push_back(method_label(m));
  for (int k : p.ks)
    if (k < 1 && k != data::kOfficial) throw Error("run_protocol: k must be >= 1 or K, got " + std::to_string(k));
  if (std::any_of(p.methods.begin(), p.methods.end(), needs_step_one)) {
    if (p.experiment.step_one_weights.empty())
      throw Error("methods A, B and ncm-sal need the Step I saliency weights (--stepI FILE); make them with --step-one");
    if (!std::filesystem::exists(p.experiment.step_one_weights))
      throw file_error(p.experiment.step_one_weights, "no such file (Step I saliency weights)");
  }
  validate(p.experiment.config);
  const ProtocolFiles files(p.out_dir);
  const auto settings =
      detail::check_run_settings(files.settings_json, detail::protocol_settings<Backbone, Depth_, Fusion>(*data, p));
  std::filesystem::create_directories(p.out_dir);
  io::write_file_atomic(files.settings_json, settings.dump(2) + "\n");
  // A sharded process keeps its own resume state; the shared tables are written at the end.
  const bool sharded = p.shard.sharded();
  const ProtocolFiles state(sharded ? p.out_dir / "shards" / p.shard.folder() : p.out_dir);
  if (sharded) std::filesystem::create_directories(state.runs_csv.parent_path());
  eval::ResultsTable table = eval::ResultsTable::read_long_csv_or_empty(state.runs_csv);
  // Cells of the merged tables (an earlier run of the whole grid, or other shards' merge) are done.
  const eval::ResultsTable merged_before =
      sharded ? eval::ResultsTable::read_long_csv_or_empty(files.runs_csv) : eval::ResultsTable();
  std::vector<std::string> order;
  for (const auto& m : experiment_methods()) order.push_back(method_label(m));
  table.set_method_order(order);
  // Per-image outcomes of the finished cells (for the paired differences).
  eval::OutcomeMap outcomes = detail::protocol_cell_outcomes(p.out_dir, table);
  std::string jsonl;
  if (std::filesystem::exists(state.runs_jsonl)) {
    std::ifstream in(state.runs_jsonl, std::ios::binary);
    jsonl.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!jsonl.empty() && jsonl.back() != '\n') jsonl += '\n';
  }
  size_t cell_number = 0;  // in the grid's order: k, seed, method
  for (int k : p.ks)
    for (uint64_t seed : p.seeds)
      for (size_t mi = 0; mi < p.methods.size(); ++mi) {
        if (!p.shard.owns(cell_number++)) continue;
        const std::string& method = p.methods[mi];
        const auto table_seed = static_cast<std::int64_t>(seed);
        const std::string tag = "[" + method + " k=" + data::k_label(k) + " seed=" + std::to_string(seed) + "] ";
        ExperimentOptions o = p.experiment;
        o.out_dir = p.out_dir / "cells" / cell_dir_name(method, k, seed);
        if (table.has(labels[mi], k, table_seed) || merged_before.has(labels[mi], k, table_seed)) {
          // A kill after runs.csv recorded the cell but before its checkpoints were removed.
          if (!p.keep_checkpoints) std::filesystem::remove_all(o.out_dir / "checkpoints");
          if (p.log) *p.log << tag << "done before, skipped\n";
          continue;
        }
        const auto t0 = std::chrono::steady_clock::now();
        CellResult r = run_cell<Backbone, Depth_, Fusion>(method, data, k, seed, o);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const auto cell_outcomes = test_outcomes(r);
        io::write_file_atomic(o.out_dir / "test_outcomes.csv", eval::to_csv(cell_outcomes));
        outcomes[{labels[mi], k, table_seed}] = cell_outcomes;
        table.add(labels[mi], k, table_seed, 100 * r.top1, 100 * r.top5);
        // runs.jsonl first, then runs.csv (the resume state): a kill between the two reruns the
        // cell, whose record then replaces the one written before.
        jsonl = detail::replace_jsonl_record(jsonl, cell_json(r, labels[mi], o.saliency.activation));
        io::write_file_atomic(state.runs_jsonl, jsonl);
        if (sharded)
          table.write_long_csv(state.runs_csv);
        else
          write_protocol_tables(table, p.out_dir, outcomes, p.title);
        if (!p.keep_checkpoints) std::filesystem::remove_all(o.out_dir / "checkpoints");
        if (p.log)
          *p.log << tag << "top-1 " << format_fixed(100 * r.top1, 1) << " %, top-5 "
                 << format_fixed(100 * r.top5, 1) << " % (epoch " << r.best_epoch << ", "
                 << format_fixed(seconds, 0) << " s)\n";
        if (p.on_cell) p.on_cell(r);
      }
  if (sharded) {
    // Whichever process finds every cell of the grid done writes the tables from all of them.
    eval::ResultsTable all = merged_protocol_runs(p.out_dir);
    size_t missing = 0;
    for (int k : p.ks)
      for (uint64_t seed : p.seeds)
        for (const auto& label : labels) missing += all.has(label, k, static_cast<std::int64_t>(seed)) ? 0 : 1;
    if (missing == 0) return merge_protocol(p.out_dir, p.title);
    if (p.log)
      *p.log << "[shard " << p.shard.label() << "] its cells are done; " << missing
             << " cell(s) of other shards are not yet: the last shard to finish (or --merge) writes the tables\n";
    return table;
  }
  write_protocol_tables(table, p.out_dir, outcomes, p.title);
  return table;
}

}  // namespace halsal::train
