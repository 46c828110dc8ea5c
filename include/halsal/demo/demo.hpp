// The paper's whole pipeline on embedded synthetic data (what `make demo` runs): synthetic *base*
// classes stand in for ImageNet, synthetic *novel* classes (disjoint from them) for the
// fine-grained set.
//
//   1. pretrain the RGB branch from scratch on the base classes (its weights, with their head,
//      are the demo's "ImageNet weights");
//   2. Step I (§3.4): train the saliency branch against that frozen network on other base images,
//      and check on held-out ones that the map helps the frozen classifier (paired interval);
//   3. the k-shot protocol on the novel classes: NCM, Baseline-RGB, Approach A and Approach B on
//      the same splits per seed, mean ± std over seeds and paired differences to Baseline-RGB;
//   4. where the hallucinated map looks (saliency on the object masks), and a gallery of the test
//      images where Approach B and Baseline-RGB disagree.
//
// The images carry clutter and *distractors*: loose petals in the shades of other classes, so a
// network that pools colour from everywhere is misled, and one that looks at the flower is not.
//
//   namespace ht = halsal::train;
//   ht::DemoOptions o;                      // the defaults are `make demo`'s
//   o.out_dir = "demo-out";
//   ht::DemoResult r = ht::run_demo(o);     // HalSalNet<ResNet<18>, Depth<1>, AfterStage<2>>
//   std::cout << r.report();                // also in demo-out/results.md
#pragma once
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "halsal/backbones/resnet.hpp"
#include "halsal/data/data.hpp"
#include "halsal/eval/paired.hpp"
#include "halsal/eval/saliency_score.hpp"
#include "halsal/eval/table.hpp"
#include "halsal/io/weights.hpp"
#include "halsal/nets/halsal_net.hpp"
#include "halsal/nets/rgb_net.hpp"
#include "halsal/experiments/experiment.hpp"
#include "halsal/experiments/step_one.hpp"
#include "halsal/train/trainer.hpp"
#include "halsal/models/comparison.hpp"
#include "halsal/viz/gallery.hpp"

namespace halsal::train {

/// The demo's classes as (base, novel): the 12 plain-centred flowers, 4 petal counts x 3 shades,
/// split like a checkerboard, so that both sets hold every petal count and every shade (the base
/// set teaches the features the novel set needs) while no class is in both. Every novel class
/// shares its shade with one other novel class and its petal count with another: fine-grained.
/// (The centre patterns are left out: at 64 px a ring is a pixel wide.)
inline std::pair<std::vector<data::FlowerSpec>, std::vector<data::FlowerSpec>> demo_class_specs() {
  std::vector<data::FlowerSpec> base, novel;
  const int petals[] = {5, 6, 7, 8};
  for (int p = 0; p < 4; ++p)
    for (int shade = 0; shade < 3; ++shade) ((p + shade) % 2 == 0 ? base : novel).push_back({petals[p], shade, 0});
  return {base, novel};
}

/// The demo's synthetic images: a base set (ImageNet's role) and a novel set (the fine-grained
/// set's role) with disjoint classes, on cluttered backgrounds with distractors.
struct DemoDataOptions {
  std::vector<data::FlowerSpec> base_specs = demo_class_specs().first;    ///< the base classes
  std::vector<data::FlowerSpec> novel_specs = demo_class_specs().second;  ///< disjoint from them
  int pretrain_per_class = 150;  ///< base images per class that pretrain the RGB branch
  /// Other base images per class for Step I (the paper's ImageNet *validation* images: ones the
  /// frozen network was not trained on, so its mistakes there give the branch something to fix).
  int step_one_per_class = 150;
  int novel_per_class = 35;  ///< novel images per class: test + val + k at least
  int size = 64;             ///< image side in pixels (also the networks' input size)
  int clutter = 8;           ///< background shapes per image
  int distractors = 3;       ///< loose petal clusters per image in other classes' shades
  double min_scale = 0.4;    ///< flower diameter as a share of the image side
  double max_scale = 0.7;
  uint64_t seed = 0;  ///< the three image sets follow from it (each its own stream)
};

/// The three image sets of the demo.
struct DemoDatasets {
  std::shared_ptr<const data::Dataset> pretrain;  ///< base classes: pretraining the RGB branch
  std::shared_ptr<const data::Dataset> step_one;  ///< the same classes, other images: Step I
  std::shared_ptr<const data::Dataset> novel;     ///< the fine-grained stand-in: k-shot protocol
};

/// Builds the demo's three synthetic image sets (nothing is rendered until a sample is loaded).
inline DemoDatasets demo_datasets(const DemoDataOptions& o) {
  auto options = [&](const std::vector<data::FlowerSpec>& specs, int per_class, uint64_t stream) {
    data::SyntheticOptions s;
    s.class_specs = specs;
    s.classes = static_cast<int>(specs.size());
    s.per_class = per_class;
    s.size = o.size;
    s.clutter = o.clutter;
    s.distractors = o.distractors;
    s.min_scale = o.min_scale;
    s.max_scale = o.max_scale;
    // Each set draws its own images: the Step I images are not the pretraining ones.
    s.seed = data::seed_of({o.seed, stream});
    return std::make_shared<const data::Dataset>(data::synthetic(s));
  };
  if (o.base_specs.size() < 2 || o.novel_specs.size() < 2)
    throw Error("demo data: the base and the novel set need at least 2 classes each, got " +
                std::to_string(o.base_specs.size()) + " and " + std::to_string(o.novel_specs.size()));
  for (const auto& b : o.base_specs)
    if (std::find(o.novel_specs.begin(), o.novel_specs.end(), b) != o.novel_specs.end())
      throw Error("demo data: class '" + b.name() + "' is both a base and a novel class; the sets must be disjoint");
  DemoDatasets d;
  d.pretrain = options(o.base_specs, o.pretrain_per_class, 1);
  d.step_one = options(o.base_specs, o.step_one_per_class, 2);
  d.novel = options(o.novel_specs, o.novel_per_class, 3);
  return d;
}

/// Pretraining the RGB branch from scratch: Adam with a cosine schedule, BatchNorm learning its
/// statistics (nothing is pretrained), whole images with flips. 6 epochs over 150 images a class
/// (DemoDataOptions) reached 48 % top-1 on held-out base images; 8 epochs over 60 a class, the
/// same time, 39 %: more distinct images beat more passes over few.
inline TrainConfig demo_pretrain_config() {
  TrainConfig c;
  c.optimizer = "adam";
  c.lr = 2e-3;
  c.weight_decay = 1e-4;
  c.schedule = "cosine";
  c.epochs = 6;
  c.batch_size = 32;
  c.random_resized_crop = false;
  c.freeze_batchnorm = false;
  c.new_layer_lr_scale = 1;
  return c;
}

/// Step I: only the saliency branch trains (Adam), against the frozen pretrained network. At
/// 3e-3 its map put 2.2× the area's share of its mass on held-out flowers, at 1e-3 1.2× (the
/// classifier's held-out top-1 and loss were the same); at 1e-2 the map switched off.
inline TrainConfig demo_step_one_config() {
  TrainConfig c;
  c.optimizer = "adam";
  c.lr = 3e-3;
  c.weight_decay = 0;
  c.schedule = "cosine";
  c.epochs = 8;
  c.batch_size = 16;
  c.random_resized_crop = false;
  c.saliency_lr_scale = 1;
  return c;
}

/// The k-shot cells: a cosine head imprinted with the class means (a strong start from few
/// images), then everything fine-tunes at a low rate with frozen BatchNorm (a few-shot batch
/// gives useless statistics); the head at 10× the rate, the saliency branch at the backbone's
/// (at 30× Approach B's validation accuracy was no higher, on seeds the demo does not report,
/// and its map left the flowers).
inline TrainConfig demo_fewshot_config() {
  TrainConfig c;
  c.optimizer = "adam";
  c.lr = 1e-4;
  c.new_layer_lr_scale = 10;
  c.saliency_lr_scale = 1;
  c.weight_decay = 1e-4;
  c.schedule = "cosine";
  c.head = "imprint";
  c.epochs = 10;
  c.eval_every = 2;
  c.batch_size = 16;
  c.random_resized_crop = false;
  c.freeze_batchnorm = true;
  c.quiet = true;  // one line per cell from the protocol instead of one per epoch
  return c;
}

/// Everything the demo does, and where it writes.
struct DemoOptions {
  std::filesystem::path out_dir = "demo-out";  ///< results.md/.csv, gallery.png, weights, protocol/
  DemoDataOptions data;
  int k = 5;                           ///< training images per novel class
  std::vector<uint64_t> seeds{0, 1, 2};  ///< k-shot splits (and cell initialisations)
  /// Novel images per class held out: many test images, because each seed's top-1 is what the
  /// methods are compared on; 5 validation images choose the epoch, as in the paper.
  data::SplitOptions split{20, 5};
  std::vector<std::string> methods{"ncm", "rgb", "A", "B"};  ///< run_protocol's method keys
  TrainConfig pretrain = demo_pretrain_config();  ///< its image_size is set to data.size
  TrainConfig step_one = demo_step_one_config();  ///< its image_size is set to data.size
  double step_one_holdout = 0.3;  ///< share of the Step I images kept for its check
  TrainConfig fewshot = demo_fewshot_config();  ///< its image_size is set to data.size
  /// Softplus: a map trained from Xavier can switch off for good with the paper's ReLU
  /// (docs/architecture.md); the score's negative bias starts the map near 0, so Step I starts
  /// from the pretrained network's own predictions instead of features scaled several times.
  SaliencyOptions saliency = [] {
    SaliencyOptions s;
    s.activation = SaliencyActivation::softplus;
    s.score_bias = -5.0;
    return s;
  }();
  uint64_t seed = 0;       ///< pretraining's and Step I's seed (the protocol uses `seeds`)
  /// A pretrained-rgb.safetensors of an earlier run with the same base images: used instead of
  /// pretraining again (empty: pretrain).
  std::filesystem::path pretrained_weights;
  bool protocol = true;    ///< false: stop after Step I (to look at Step I alone; no results files)
  int gallery_rows = 4;    ///< rows of each kind in gallery.png and the stepI-*.png pages
  std::ostream* log = &std::cout;  ///< progress lines; nullptr = silent
};

/// Where a saliency network looked on the novel test images, over the seeds.
struct DemoSaliencyScore {
  std::string method;                   ///< table label ("Approach B")
  std::vector<double> ratio_per_seed;   ///< mean per-image ratio on each seed's test images
  double ratio_mean = std::numeric_limits<double>::quiet_NaN();
  double ratio_std = std::numeric_limits<double>::quiet_NaN();  ///< sample std over seeds
  double mass_share = std::numeric_limits<double>::quiet_NaN();  ///< mean over seeds
  double area_share = std::numeric_limits<double>::quiet_NaN();  ///< mean over seeds
  int64_t images = 0;                   ///< test images with a defined ratio, all seeds
};

/// One method's row of the demo's result.
struct DemoMethodRow {
  std::string method;  ///< table label
  eval::CellStats top1, top5;  ///< percent, over the seeds
  std::optional<eval::PairedDifference> vs_baseline;  ///< top-1 points; none for the baseline
  std::optional<DemoSaliencyScore> saliency;          ///< for methods with a saliency map
};

/// The files run_demo() writes under out_dir.
struct DemoFiles {
  std::filesystem::path results_md, results_csv, gallery_png, pretrained_weights, step_one_weights, protocol_dir;
  explicit DemoFiles(const std::filesystem::path& out)
      : results_md(out / "results.md"), results_csv(out / "results.csv"), gallery_png(out / "gallery.png"),
        pretrained_weights(out / "pretrained-rgb.safetensors"), step_one_weights(out / "stepI.safetensors"),
        protocol_dir(out / "protocol") {}
};

/// What run_demo() found.
struct DemoResult {
  std::string network;     ///< the HalSalNet type of A and B
  std::vector<int64_t> map_size;  ///< h, w of the saliency map at the fusion point
  std::string data_description;   ///< one paragraph: the three image sets
  FitResult pretrain;      ///< the RGB branch's pretraining history
  StepOneReport step_one;  ///< Step I and its held-out check
  /// Where the Step I map looks on the held-out base images (before any k-shot training).
  eval::SaliencyOnObjectSummary step_one_saliency;
  std::vector<DemoMethodRow> rows;  ///< in table order
  eval::ResultsTable table;         ///< the protocol's table (percent)
  int k = 0;
  std::vector<uint64_t> seeds;
  size_t gallery_better = 0, gallery_worse = 0;  ///< rows of each kind in gallery.png
  std::string gallery_methods;                   ///< "Approach B vs Baseline-RGB, seed 0"
  double seconds_pretrain = 0, seconds_step_one = 0, seconds_protocol = 0;
  std::filesystem::path out_dir;

  /// The row of a method label ("Approach B"); nullptr when it did not run.
  const DemoMethodRow* row(const std::string& label) const {
    for (const auto& r : rows)
      if (r.method == label) return &r;
    return nullptr;
  }

  /// The result as Markdown for a person (results.md): the data, the table, where the maps look,
  /// Step I's verdict and the time each part took.
  std::string report() const {
    auto pct = [](const eval::CellStats& s) {
      if (s.n == 0) return std::string("—");
      return format_fixed(s.mean, 1) + (s.n > 1 ? " ± " + format_fixed(s.std, 1) : std::string());
    };
    std::string seed_text;
    for (size_t i = 0; i < seeds.size(); ++i) seed_text += (i ? ", " : "") + std::to_string(seeds[i]);
    std::string md = "# halsal demo: hallucinated saliency on synthetic flowers\n\n" + data_description + "\n\n";
    md += "Network of Approaches A and B: " + network + ", saliency map " + std::to_string(map_size.at(0)) + "×" +
          std::to_string(map_size.at(1)) + " at the fusion point.\n\n";
    md += "## k-shot top-1 on the novel classes (k = " + std::to_string(k) + ", seeds " + seed_text + ")\n\n";
    md += "| method | top-1 (%) | top-5 (%) | top-1 − " + baseline_label() +
          " (points, 95 % paired bootstrap) | saliency-on-object ratio |\n|---|---|---|---|---|\n";
    for (const auto& r : rows) {
      md += "| " + r.method + " | " + pct(r.top1) + " | " + pct(r.top5) + " | " +
            (r.vs_baseline ? eval::to_text(*r.vs_baseline) : std::string("—")) + " | ";
      if (r.saliency && r.saliency->images > 0)
        md += format_fixed(r.saliency->ratio_mean, 2) +
              (r.saliency->ratio_per_seed.size() > 1 ? " ± " + format_fixed(r.saliency->ratio_std, 2) : "");
      else
        md += r.saliency ? "map is zero" : "—";
      md += " |\n";
    }
    md += "\nmean ± sample std over the seeds; the paired difference pools the test images of all seeds.\n";
    for (const auto& r : rows)
      if (r.saliency && r.saliency->images > 0)
        md += "\n" + r.method + ": " + format_fixed(100 * r.saliency->mass_share, 1) +
              " % of the hallucinated saliency mass lies on the flowers, which cover " +
              format_fixed(100 * r.saliency->area_share, 1) + " % of the image (ratio " +
              format_fixed(r.saliency->ratio_mean, 2) + "; 1 = no preference; " + std::to_string(r.saliency->images) +
              " test images).";
    md += "\n\n## Step I on the base classes (the demo's ImageNet)\n\n";
    md += "```\n" + step_one.verdict() + "```\n";
    if (step_one_saliency.images > 0)
      md += "\nThe Step I map on the held-out base images: " + format_fixed(100 * step_one_saliency.mass_share, 1) +
            " % of its mass on " + format_fixed(100 * step_one_saliency.area_share, 1) + " % of the area (ratio " +
            format_fixed(step_one_saliency.ratio, 2) + ").\n";
    md += "\n## Files and time\n\n";
    md += "gallery.png (" + gallery_methods + "): test images where HalSal is right and the baseline wrong, " +
          std::to_string(gallery_better) + " rows at the top; the reverse, " + std::to_string(gallery_worse) +
          " rows below. stepI-*.png: held-out base images with their Step I maps. protocol/: the protocol's "
          "table.md, runs.csv, paired.csv and per-cell logs.\n\n";
    md += "Pretraining " + format_fixed(seconds_pretrain, 0) + " s (" + std::to_string(pretrain.epochs_done) +
          " epochs, last training accuracy " +
          (pretrain.history.empty() ? std::string("—")
                                    : format_fixed(100 * pretrain.history.back().train_accuracy, 1) + " %") +
          "), Step I " + format_fixed(seconds_step_one, 0) + " s, protocol " + format_fixed(seconds_protocol, 0) +
          " s.\n";
    return md;
  }
};

namespace detail {

/// Checks the demo's options before anything trains; the Error names the option.
inline void check_demo_options(const DemoOptions& o) {
  if (o.out_dir.empty()) throw Error("demo: out_dir is empty");
  if (o.seeds.empty()) throw Error("demo: no seeds (expected e.g. 0,1,2)");
  if (o.methods.empty()) throw Error("demo: no methods (expected e.g. ncm,rgb,A,B)");
  for (const auto& m : o.methods) method_label(m);  // unknown ones throw, naming the method
  if (std::find(o.methods.begin(), o.methods.end(), "rgb") == o.methods.end())
    throw Error("demo: the methods must include rgb (Baseline-RGB, what every other method is compared with)");
  if (o.k < 1) throw Error("demo: k must be at least 1, got " + std::to_string(o.k));
  if (o.split.test_per_class < 1 || o.split.val_per_class < 1)
    throw Error("demo: the split needs at least 1 test and 1 validation image per class");
  const int need = o.split.test_per_class + o.split.val_per_class + o.k;
  if (o.data.novel_per_class < need)
    throw Error("demo: novel_per_class is " + std::to_string(o.data.novel_per_class) + " but k = " +
                std::to_string(o.k) + " needs " + std::to_string(o.split.test_per_class) + " test + " +
                std::to_string(o.split.val_per_class) + " val + " + std::to_string(o.k) + " train = " +
                std::to_string(need) + " per class");
  if (o.data.pretrain_per_class < 1 || o.data.step_one_per_class < 2)
    throw Error("demo: pretrain_per_class must be >= 1 and step_one_per_class >= 2");
  if (!(o.step_one_holdout > 0 && o.step_one_holdout < 1))
    throw Error("demo: step_one_holdout must lie in (0, 1), got " + std::to_string(o.step_one_holdout));
  if (o.gallery_rows < 0) throw Error("demo: gallery_rows must be >= 0");
  for (const TrainConfig* c : {&o.pretrain, &o.step_one, &o.fewshot}) {
    TrainConfig sized = *c;
    sized.image_size = o.data.size;  // as run_demo uses it
    validate(sized);
  }
}

/// Removes the demo's protocol folder from an earlier run (each demo run starts afresh: its
/// pretrained network and Step I are new, so old cells would not match them). Refuses a folder
/// that does not look like a protocol run's, rather than deleting someone's files.
inline void clear_demo_protocol_dir(const std::filesystem::path& dir) {
  if (!std::filesystem::exists(dir)) return;
  if (!std::filesystem::exists(ProtocolFiles(dir).settings_json))
    throw file_error(dir, "exists but holds no protocol run (no settings.json); the demo writes its protocol "
                          "there and will not delete it: move it away or choose another output folder");
  std::filesystem::remove_all(dir);
}

}  // namespace detail

/// Pretrains RgbNet<Backbone> from scratch on every image of `base` (no validation: the last
/// epoch is kept) and writes its backbone *with its head* in torchvision names to `out_file` —
/// the file Step I trains against and the k-shot cells start from.
template <class Backbone>
FitResult pretrain_rgb_branch(std::shared_ptr<const data::Dataset> base, const TrainConfig& config,
                              const std::filesystem::path& out_file,
                              const std::string& progress_prefix = "[pretrain] ") {
  if (!base) throw Error("pretrain_rgb_branch: no dataset");
  torch::manual_seed(config.seed);  // the initialisation follows the seed, as in run_cell
  RgbNet<Backbone> net(base->num_classes());
  Trainer<RgbNet<Backbone>, ApproachB> trainer(net, config);
  trainer.set_progress_prefix(progress_prefix);
  const FitResult fit = trainer.fit(data::Subset::all(base), data::Subset{});
  io::save_weights(*net->backbone, out_file);
  return fit;
}

/// Where the Step I map of `step_one_file` looks on the images Step I held out (the same
/// data::holdout draw as run_step_one's): the pretrained network with its head and the branch,
/// evaluated on the object masks.
template <class Backbone, class Depth_, class Fusion>
eval::SaliencyOnObjectSummary step_one_map_on_objects(std::shared_ptr<const data::Dataset> base,
                                                      const std::filesystem::path& pretrained,
                                                      const std::filesystem::path& step_one_file,
                                                      const StepOneOptions& so) {
  using Net = HalSalNet<Backbone, Depth_, Fusion>;
  Net net(base->num_classes(), so.saliency);
  io::load_weights(*net, pretrained, detail::backbone_load_options<Net>(/*with_head=*/true));
  detail::load_step_one(net, step_one_file);
  TrainConfig config = so.config;
  config.head = "xavier";
  config.warmup_epochs = 0;
  config.quiet = true;
  Trainer<Net, StepI> trainer(net, config);
  const auto heldout = data::holdout(data::Subset::all(base), so.holdout, config.seed).second;
  return trainer.evaluate(heldout, /*keep_predictions=*/false).saliency_on_object;
}

/// Runs the demo (see the top of this file) with HalSalNet<Backbone, Depth_, Fusion> for
/// Approaches A and B and writes results.md, results.csv, gallery.png, the pretrained and Step I
/// weights and the protocol's files under o.out_dir. Each run starts afresh.
template <class Backbone = ResNet<18>, class Depth_ = Depth<1>, class Fusion = AfterStage<2>>
DemoResult run_demo(const DemoOptions& o) {
  using Clock = std::chrono::steady_clock;
  auto seconds_since = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  detail::check_demo_options(o);
  const DemoFiles files(o.out_dir);
  std::filesystem::create_directories(o.out_dir);
  detail::clear_demo_protocol_dir(files.protocol_dir);
  const DemoDatasets sets = demo_datasets(o.data);
  auto sized = [&](TrainConfig c) {
    c.image_size = o.data.size;  // the images are rendered at the networks' input size
    return c;
  };

  DemoResult result;
  result.k = o.k;
  result.seeds = o.seeds;
  result.out_dir = o.out_dir;
  using Net = HalSalNet<Backbone, Depth_, Fusion>;
  result.network = Net::Impl::name();
  {
    Net probe(2, o.saliency);
    probe->eval();
    torch::NoGradGuard no_grad;
    const auto map = probe->forward_full(torch::zeros({1, 3, o.data.size, o.data.size})).saliency;
    result.map_size = map.sizes().slice(2).vec();
  }
  const auto& d = o.data;
  result.data_description =
      "Synthetic flowers, " + std::to_string(d.size) + " px, " + std::to_string(d.clutter) +
      " clutter shapes and " + std::to_string(d.distractors) +
      " clusters of loose petals in other classes' shades per image. Base classes (the demo's ImageNet): " +
      std::to_string(d.base_specs.size()) + " classes, " + std::to_string(d.pretrain_per_class) +
      " images each to pretrain the RGB branch from scratch and " + std::to_string(d.step_one_per_class) +
      " others for Step I. Novel classes (the fine-grained set, disjoint from the base ones): " +
      std::to_string(d.novel_specs.size()) + " classes, k = " + std::to_string(o.k) + " training, " +
      std::to_string(o.split.val_per_class) + " validation and " + std::to_string(o.split.test_per_class) +
      " test images per class and seed.";

  // 1. The RGB branch, pretrained from scratch on the base classes.
  auto t0 = Clock::now();
  TrainConfig pretrain = sized(o.pretrain);
  pretrain.seed = o.seed;
  if (!o.pretrained_weights.empty()) {
    if (!std::filesystem::exists(o.pretrained_weights))
      throw file_error(o.pretrained_weights, "no such file (pretrained RGB branch)");
    if (!std::filesystem::exists(files.pretrained_weights) ||
        !std::filesystem::equivalent(o.pretrained_weights, files.pretrained_weights))
      std::filesystem::copy_file(o.pretrained_weights, files.pretrained_weights,
                                 std::filesystem::copy_options::overwrite_existing);
    if (o.log) *o.log << "Pretrained RGB branch: " << o.pretrained_weights.string() << " (not pretrained again)\n";
  } else {
    if (o.log) *o.log << "Pretraining the RGB branch (" << backbone_traits<Backbone>::name << ") on "
                      << sets.pretrain->size() << " base images\n";
    result.pretrain = pretrain_rgb_branch<Backbone>(sets.pretrain, pretrain, files.pretrained_weights);
  }
  result.seconds_pretrain = seconds_since(t0);

  // 2. Step I against the frozen pretrained network, on base images it was not trained on.
  t0 = Clock::now();
  StepOneOptions so;
  so.weights = files.pretrained_weights;
  so.config = sized(o.step_one);
  so.config.seed = o.seed;
  so.saliency = o.saliency;
  so.holdout = o.step_one_holdout;
  so.gallery_dir = o.out_dir;
  so.gallery_rows = o.gallery_rows;
  if (o.log) *o.log << "Step I: the saliency branch against the frozen network, on " << sets.step_one->size()
                    << " other base images (" << format_fixed(100 * o.step_one_holdout, 0)
                    << " % held out)\n";
  result.step_one = run_step_one<Backbone, Depth_, Fusion>(sets.step_one, so, files.step_one_weights);
  result.step_one_saliency =
      step_one_map_on_objects<Backbone, Depth_, Fusion>(sets.step_one, files.pretrained_weights,
                                                        files.step_one_weights, so);
  result.seconds_step_one = seconds_since(t0);
  if (o.log)
    *o.log << result.step_one.verdict() << "  the map on the held-out images: "
           << result.step_one_saliency << "\n";
  if (!o.protocol) return result;

  // 3. The k-shot protocol on the novel classes: the same split per seed for every method.
  t0 = Clock::now();
  ProtocolOptions p;
  p.methods = o.methods;
  p.ks = {o.k};
  p.seeds = o.seeds;
  p.experiment.backbone_weights = files.pretrained_weights;
  p.experiment.step_one_weights = files.step_one_weights;
  p.experiment.config = sized(o.fewshot);
  p.experiment.split = o.split;
  p.experiment.saliency = o.saliency;
  p.experiment.checkpoints = false;  // cells of seconds: writing network + Adam state every epoch costs more
  p.out_dir = files.protocol_dir;
  p.log = o.log;
  p.title = "halsal demo: k-shot protocol on the novel synthetic classes";
  eval::OutcomeMap outcomes;
  std::map<std::string, std::vector<eval::SaliencyOnObjectSummary>> saliency_by_method;
  // The gallery compares the first seed's Baseline-RGB with its Approach B (or A, or whichever
  // saliency method ran).
  std::optional<CellResult> gallery_baseline, gallery_ours;
  const std::vector<std::string> preference{"B", "A", "scratch-sal", "smic"};
  std::string gallery_method;
  for (const auto& m : preference)
    if (std::find(o.methods.begin(), o.methods.end(), m) != o.methods.end()) {
      gallery_method = m;
      break;
    }
  p.on_cell = [&](const CellResult& r) {
    const std::string label = method_label(r.method);
    outcomes[{label, r.k, static_cast<int64_t>(r.seed)}] = test_outcomes(r);
    if (r.report.has_saliency_score) saliency_by_method[label].push_back(r.report.saliency_on_object);
    if (r.seed == o.seeds.front() && r.method == "rgb") gallery_baseline = r;
    if (r.seed == o.seeds.front() && r.method == gallery_method) gallery_ours = r;
  };
  result.table = run_protocol<Backbone, Depth_, Fusion>(sets.novel, p);
  result.seconds_protocol = seconds_since(t0);

  // 4. The table's rows with their paired differences and saliency scores.
  const auto paired = eval::paired_comparisons(result.table, outcomes, baseline_label());
  for (const auto& label : result.table.methods()) {
    DemoMethodRow row;
    row.method = label;
    row.top1 = result.table.cell(label, o.k, eval::Metric::top1);
    row.top5 = result.table.cell(label, o.k, eval::Metric::top5);
    for (const auto& pr : paired)
      if (pr.method == label && pr.k == o.k) row.vs_baseline = pr.diff;
    if (const auto it = saliency_by_method.find(label); it != saliency_by_method.end()) {
      DemoSaliencyScore s;
      s.method = label;
      std::vector<double> mass, area;
      for (const auto& seed_score : it->second) {
        s.images += seed_score.images;
        if (seed_score.images == 0) continue;  // a map of zeros has no mass to place
        s.ratio_per_seed.push_back(seed_score.ratio);
        mass.push_back(seed_score.mass_share);
        area.push_back(seed_score.area_share);
      }
      const eval::CellStats ratio = eval::mean_and_std(s.ratio_per_seed);
      s.ratio_mean = ratio.mean, s.ratio_std = ratio.std;
      s.mass_share = eval::mean_and_std(mass).mean;
      s.area_share = eval::mean_and_std(area).mean;
      row.saliency = s;
    }
    result.rows.push_back(std::move(row));
  }

  // 5. The gallery: test images where the two disagree, with the saliency map (Tables 3-4).
  viz::GalleryOptions go;
  go.tile = 128;
  go.font_scale = 1;
  std::vector<viz::GalleryRow> gallery;
  if (gallery_baseline && gallery_ours) {
    const std::string ours = method_label(gallery_ours->method);
    result.gallery_methods = ours + " vs " + baseline_label() + ", seed " + std::to_string(o.seeds.front());
    const auto rows = static_cast<size_t>(o.gallery_rows);
    gallery = viz::comparison_rows(gallery_baseline->report, gallery_ours->report, gallery_ours->infer, *sets.novel,
                                   gallery_ours->split.train, true, rows, "RGB", ours);
    auto worse = viz::comparison_rows(gallery_baseline->report, gallery_ours->report, gallery_ours->infer,
                                      *sets.novel, gallery_ours->split.train, false, rows, "RGB", ours);
    result.gallery_better = gallery.size();
    result.gallery_worse = worse.size();
    gallery.insert(gallery.end(), worse.begin(), worse.end());
    // Short enough for three 128-px tiles; results.md says that the lower rows are the reverse.
    go.title = "Top: " + gallery_ours->method + " right, RGB wrong";
  } else {
    result.gallery_methods = "no saliency method ran";
    go.title = "No saliency method ran";
  }
  viz::write_gallery_png(gallery, files.gallery_png, go);

  // 6. results.md and results.csv.
  io::write_file_atomic(files.results_md, result.report());
  auto num = [](double v, int decimals) { return std::isnan(v) ? std::string() : format_fixed(v, decimals); };
  std::string csv =
      "method,k,seeds,top1_mean,top1_std,top5_mean,top5_std,top1_vs_baseline,top1_vs_baseline_lo,"
      "top1_vs_baseline_hi,saliency_on_object_ratio,saliency_on_object_ratio_std\n";
  for (const auto& r : result.rows) {
    csv += csv_quote(r.method) + "," + std::to_string(o.k) + "," + std::to_string(r.top1.n) + "," +
           num(r.top1.mean, 2) + "," + num(r.top1.std, 2) + "," + num(r.top5.mean, 2) + "," + num(r.top5.std, 2) + ",";
    csv += r.vs_baseline ? num(r.vs_baseline->mean, 2) + "," + num(r.vs_baseline->lo, 2) + "," +
                               num(r.vs_baseline->hi, 2)
                         : std::string(",,");
    csv += ",";
    csv += r.saliency ? num(r.saliency->ratio_mean, 3) + "," + num(r.saliency->ratio_std, 3) : std::string(",");
    csv += "\n";
  }
  io::write_file_atomic(files.results_csv, csv);
  return result;
}

}  // namespace halsal::train
