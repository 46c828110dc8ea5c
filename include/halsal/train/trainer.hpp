// The training engine: fits any composed network under a freeze policy, selects the model on
// validation accuracy, evaluates it, checkpoints every epoch and resumes where a run stopped.
#pragma once
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cmath>
#include <iomanip>
#include <limits>
#include <memory>
#include <ostream>
#include <sstream>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "halsal/backbones/batchnorm_folding.hpp"
#include "halsal/core/cpu_memory_cache.hpp"
#include "halsal/data/data.hpp"
#include "halsal/dist/process_group.hpp"
#include "halsal/eval/metrics.hpp"
#include "halsal/eval/ncm.hpp"
#include "halsal/eval/saliency_score.hpp"
#include "halsal/io/checkpoint.hpp"
#include "halsal/io/state_dict.hpp"
#include "halsal/nets/channels_last.hpp"
#include "halsal/policy/freeze.hpp"
#include "halsal/saliency/spectral_residual.hpp"
#include "halsal/train/config.hpp"
#include "halsal/train/grad_scaler.hpp"
#include "halsal/train/progress.hpp"

namespace halsal::train {

/// One epoch's numbers.
struct EpochRecord {
  int epoch = 0;
  double loss = 0, train_accuracy = 0;
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();
  double seconds = 0, images_per_s = 0;
  /// Share of training images whose saliency map was 0 everywhere (NaN: no saliency branch).
  double zero_saliency_share = std::numeric_limits<double>::quiet_NaN();
};

/// What fit() did: the selected epoch and the history.
struct FitResult {
  int best_epoch = 0;  ///< 1-based epoch whose weights the network now holds
  double best_val_accuracy = std::numeric_limits<double>::quiet_NaN();
  int epochs_done = 0;  ///< epochs completed over all (resumed) calls
  bool finished = false;  ///< all configured epochs done (false after stop_after_epochs)
  std::vector<EpochRecord> history;
};

/// One test image's outcome.
struct Prediction {
  size_t index = 0;  ///< into the dataset's samples
  int64_t label = 0, predicted = 0;
  float confidence = 0;  ///< softmax probability of the prediction
};

/// evaluate()'s result: accuracy figures, each image's prediction, and where the saliency looks.
struct EvalReport {
  eval::ClassificationMetrics metrics{1};
  std::vector<Prediction> predictions;
  bool has_saliency_score = false;  ///< the network has a saliency map and the data masks
  eval::SaliencyOnObjectSummary saliency_on_object;
  double images_per_s = 0;
};

/// Top-1, top-5, mean per-class accuracy and (when known) the saliency-on-object score.
inline std::ostream& operator<<(std::ostream& os, const EvalReport& r) {
  os << std::fixed << std::setprecision(1) << "top-1 " << 100 * r.metrics.top1() << " %, top-5 "
     << 100 * r.metrics.top5() << " %, mean per-class " << 100 * r.metrics.mean_per_class_accuracy()
     << " % on " << r.metrics.count() << " images";
  if (r.has_saliency_score) os << "; " << r.saliency_on_object;  // it names itself
  return os << std::defaultfloat;
}

namespace detail {
/// A number as `<<` prints it ("0.01").
inline std::string format_number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
/// Learning-rate factor at optimizer step `step` of `total` for a schedule.
inline double schedule_factor(const std::string& schedule, int64_t step, int64_t total) {
  const double t = total > 1 ? static_cast<double>(step) / static_cast<double>(total - 1) : 1.0;
  const double pi = 3.14159265358979323846;
  if (schedule == "cosine") return 0.5 * (1 + std::cos(pi * t));
  if (schedule == "onecycle") {  // linear warm-up over 30 %, then cosine down to 1/25 of the start
    const double warm = 0.3;
    if (t < warm) return 1.0 / 25 + (1 - 1.0 / 25) * t / warm;
    return 1.0 / 25 + (1 - 1.0 / 25) * 0.5 * (1 + std::cos(pi * (t - warm) / (1 - warm)));
  }
  return 1.0;
}
inline data::Normalization normalization_of(const TrainConfig& c) {
  return c.normalization == "symmetric" ? data::Normalization::symmetric() : data::Normalization::imagenet();
}
/// True for networks that can turn their head into a cosine classifier (they expose the pooled
/// features the head reads).
template <class Impl, class = void>
struct has_cosine_head : std::false_type {};
template <class Impl>
struct has_cosine_head<Impl, std::void_t<decltype(std::declval<Impl&>().use_cosine_head(1.0))>> : std::true_type {};
}  // namespace detail

/// Pooled features (what the head reads) of a subset's images, in the subset's order.
struct Embeddings {
  torch::Tensor features;       ///< N×D, float32, on the CPU
  torch::Tensor labels;         ///< N, int64
  std::vector<size_t> indices;  ///< into the dataset's samples
};

/// Trains `Net` (a HalSalNet, SmicNet or RgbNet holder) with `Policy` (StepI, ApproachA,
/// ApproachB, LinearProbe). SmicNet gets spectral-residual maps computed from each batch.
template <class Net, class Policy>
class Trainer {
  using Impl = typename Net::ContainedType;

 public:
  /// Applies the policy and builds the optimizer; the network moves to config.device.
  /// head = "imprint" makes the head a cosine classifier here (imprinted when fit() starts).
  Trainer(Net net, TrainConfig config) : net_(std::move(net)), config_(std::move(config)), device_(config_.device) {
    validate(config_);
    precision_ = parse_precision(config_.precision);
    if (precision_ == Precision::fp16) scaler_ = std::make_unique<GradScaler>();
    if (config_.head == "imprint") {
      if (!Policy::trains_head)
        throw Error(std::string("Trainer: head = imprint replaces the head's weights, but policy ") + Policy::name +
                    " keeps the head as it is (Step I trains against the pretrained head): use head = xavier");
      if constexpr (detail::has_cosine_head<Impl>::value) {
        net_->use_cosine_head(config_.cosine_scale);
      } else {
        throw Error("Trainer: head = imprint needs a cosine head over the network's pooled features, and " +
                    Impl::name() + " has no use_cosine_head(): use head = xavier");
      }
    }
    if (config_.warmup_epochs > 0 && !Policy::trains_head)
      throw Error(std::string("Trainer: a warm-up trains only the head, but policy ") + Policy::name +
                  " keeps the head frozen: set warmup_epochs = 0");
    net_->to(device_);
    memory_cache_ = std::make_unique<CpuMemoryCacheScope>(config_.cache_cpu_memory);
    set_batchnorm_folding(*net_, config_.fold_batchnorm);
    channels_last_ = std::make_unique<ChannelsLastScope>(
        net_.ptr(), config_.channels_last.value_or(channels_last_by_default(*net_, device_)));
    groups_ = apply_policy<Policy>(net_, FreezeOptions{config_.freeze_batchnorm});
    build_optimizer();
  }

  /// Trains on `train`, validates on `val` (may be empty: then the last epoch is selected), and
  /// leaves the network holding the selected weights. Resumes from config.checkpoint_dir.
  FitResult fit(const data::Subset& train, const data::Subset& val) {
    if (train.empty()) throw Error("Trainer: the training set is empty");
    if (train.num_classes() > 0 && logits_width() != train.num_classes())
      throw Error("Trainer: the network has " + std::to_string(logits_width()) + " outputs but the data " +
                  std::to_string(train.num_classes()) + " classes");
    data::LoaderOptions lo = loader_options(/*training=*/true);
    if (pg_) {
      lo.shard_rank = pg_->rank();
      lo.shard_count = pg_->size();
    }
    data::Loader loader(train, lo);
    const int64_t steps_per_epoch = static_cast<int64_t>(loader.batches_per_epoch());
    // Epochs 1..warmup train the head alone; the schedule runs over the fine-tuning steps after them.
    const int warmup = config_.warmup_epochs;
    const int total_epochs = warmup + config_.epochs;
    const int64_t warmup_steps = steps_per_epoch * warmup;
    const int64_t total_steps = steps_per_epoch * config_.epochs;

    FitResult result;
    int64_t step = 0;
    resume(result, step);
    // Imprinting happens once, on a fresh start; a resumed run's head comes from its checkpoint.
    if (result.epochs_done == 0 && config_.head == "imprint") imprint(train);
    if (pg_) dist::broadcast_module(*pg_, *net_);  // every process starts from rank 0's weights
    if (pg_ && pg_->size() > 1 && !reducer_) reducer_ = std::make_unique<dist::GradientReducer>(pg_, net_->parameters());
    std::unique_ptr<JsonlWriter> jsonl;
    if (!config_.metrics_jsonl.empty() && writes_files()) jsonl = std::make_unique<JsonlWriter>(config_.metrics_jsonl, result.epochs_done > 0);

    ProgressOptions po;
    po.prefix = progress_prefix_;
    if (config_.quiet || !writes_files()) po.style = ProgressStyle::Silent;
    Progress progress(total_epochs, steps_per_epoch, po);
    const auto norm = detail::normalization_of(config_);
    int run_this_call = 0;
    for (int epoch = result.epochs_done + 1; epoch <= total_epochs; ++epoch) {
      if (config_.stop_after_epochs > 0 && run_this_call >= config_.stop_after_epochs) break;
      const bool warming = epoch <= warmup;
      set_phase(warming);
      if (warming && epoch == 1)
        progress.message("warm-up: " + std::to_string(warmup) + " epoch(s) of the head alone at lr " +
                         detail::format_number(config_.warmup_lr) + ", then " +
                         std::to_string(config_.epochs) + " of fine-tuning");
      net_->train();
      progress.begin_epoch(epoch);
      loader.start_epoch(epoch);
      // Dropout draws from torch's generator: seeded per epoch, a resumed run repeats the masks of
      // an uninterrupted one (the loader's shuffle and crops already follow (seed, epoch)).
      torch::manual_seed(data::seed_of({config_.seed, static_cast<uint64_t>(epoch), 0x64726f70ULL /* "drop" */}));
      const auto t0 = std::chrono::steady_clock::now();
      double loss_sum = 0;
      int64_t correct = 0, seen = 0;
      // Loss, hits and dead maps are summed on the device and read when a progress line is drawn
      // and once at the end of the epoch: no host sync per step otherwise.
      const auto on_device = torch::TensorOptions().device(device_);
      torch::Tensor loss_sum_d = torch::zeros({}, on_device.dtype(torch::kFloat64));
      torch::Tensor correct_d = torch::zeros({}, on_device.dtype(torch::kLong));
      torch::Tensor zero_maps = torch::zeros({}, on_device.dtype(torch::kLong));
      auto read_sums = [&] {
        const auto host = torch::stack({loss_sum_d, correct_d.to(torch::kFloat64)}).to(torch::kCPU);
        return std::make_pair(host[0].template item<double>(), static_cast<int64_t>(host[1].template item<double>()));
      };
      while (auto batch = loader.next()) {
        if (warming) set_warmup_rates();
        else set_learning_rates(detail::schedule_factor(config_.schedule, step - warmup_steps, total_steps));
        const auto x = norm(batch->images, device_);
        const auto labels = batch->labels.to(device_);
        optimizer_->zero_grad();
        const auto out = run(x, batch->images);
        // The loss in fp32 whatever the precision (as autocast's own lists do for cross-entropy).
        auto loss = torch::nn::functional::cross_entropy(
            out.logits.to(torch::kFloat32), labels,
            torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(config_.label_smoothing));
        if (reducer_) reducer_->prepare();  // gradients averaged over the world as backward runs
        (scaler_ ? scaler_->scale(loss) : loss).backward();
        if (reducer_) reducer_->finish();
        if (scaler_) {  // fp16: skipped when a gradient overflowed, the scale backed off
          scaler_->step(*optimizer_);
          scaler_->update();
        } else {
          optimizer_->step();
        }
        ++step;
        const int64_t n = batch->size();
        loss_sum_d += loss.detach().to(torch::kFloat64) * static_cast<double>(n);
        correct_d += out.logits.detach().argmax(1).eq(labels).sum();
        if (out.saliency.defined())
          zero_maps += std::get<0>(out.saliency.detach().flatten(1).max(1)).le(0).sum();
        seen += n;
        progress.step_deferred(n, read_sums);
      }
      std::tie(loss_sum, correct) = read_sums();
      progress.set_totals(loss_sum, correct);
      if (pg_) {  // the epoch's loss and accuracy over every process's samples
        std::vector<torch::Tensor> sums{torch::tensor({loss_sum, static_cast<double>(correct), static_cast<double>(seen)},
                                                      torch::kFloat64)};
        pg_->all_reduce_sum(sums);
        loss_sum = sums[0][0].template item<double>();
        correct = static_cast<int64_t>(sums[0][1].template item<double>());
        seen = static_cast<int64_t>(sums[0][2].template item<double>());
      }
      EpochRecord rec;
      rec.epoch = epoch;
      rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rec.loss = loss_sum / std::max<int64_t>(1, seen);
      rec.train_accuracy = static_cast<double>(correct) / std::max<int64_t>(1, seen);
      rec.images_per_s = static_cast<double>(seen) / std::max(1e-9, rec.seconds);
      if constexpr (Impl::has_saliency)
        rec.zero_saliency_share =
            static_cast<double>(zero_maps.template item<int64_t>()) / static_cast<double>(std::max<int64_t>(1, seen));
      const bool last = epoch == total_epochs;
      // Validated: at the end of the warm-up (the linear probe is a candidate too), every
      // eval_every-th fine-tuning epoch, and after the last.
      const bool validate_now = epoch == warmup || last ||
                                (epoch > warmup && (epoch - warmup) % std::max(1, config_.eval_every) == 0);
      std::vector<std::pair<std::string, double>> extra;
      if (!val.empty() && validate_now) {
        rec.val_accuracy = evaluate(val, /*keep_predictions=*/false).metrics.top1();
        extra.emplace_back("val_acc", rec.val_accuracy);
      }
      // Selection: best validation top-1 (earliest on ties); without validation, the last epoch.
      const bool better = val.empty() ? true
                          : !std::isnan(rec.val_accuracy) &&
                                (std::isnan(result.best_val_accuracy) || rec.val_accuracy > result.best_val_accuracy);
      if (better) {
        result.best_epoch = epoch;
        result.best_val_accuracy = rec.val_accuracy;
        best_state_ = snapshot();
        if (!config_.checkpoint_dir.empty() && writes_files()) write_best();
      }
      auto line = progress.end_epoch(extra);
      if (pg_) {  // the file holds the whole world's epoch (the printed line is rank 0's share)
        line["loss"] = rec.loss;
        line["accuracy"] = rec.train_accuracy;
        line["images"] = seen;
        line["images_per_s"] = rec.images_per_s;
        line["world_size"] = pg_->size();
      }
      if (!std::isnan(rec.zero_saliency_share)) {
        line["zero_saliency_share"] = rec.zero_saliency_share;
        // A ReLU map that is 0 everywhere gets no gradient: say so once instead of silently
        // training the baseline.
        if (rec.zero_saliency_share >= 1 && !warned_dead_map_) {
          warned_dead_map_ = true;
          progress.message("warning: the saliency map was 0 on every training image of this epoch; its ReLU has "
                           "switched off, so the network now trains like the baseline (a lower learning rate for the "
                           "branch, TrainConfig::saliency_lr_scale, or SaliencyActivation::softplus can avoid this)");
        }
      }
      if (jsonl) jsonl->write(line);
      result.history.push_back(rec);
      result.epochs_done = epoch;
      ++run_this_call;
      if (!config_.checkpoint_dir.empty() && writes_files()) write_checkpoint(result, step);
    }
    result.finished = result.epochs_done >= total_epochs;
    set_phase(false);
    if (!best_state_.empty()) restore(best_state_);
    return result;
  }

  /// Calls fn(normalised images, batch) for each batch of `subset` in eval mode (centre crops, no
  /// gradient), in the subset's order; the training mode is restored afterwards.
  template <class Fn>
  void for_each_eval_batch(const data::Subset& subset, Fn&& fn) {
    if (subset.empty()) return;
    data::Loader loader(subset, loader_options(/*training=*/false));
    const bool was_training = net_->is_training();
    net_->eval();
    torch::NoGradGuard no_grad;
    const auto norm = detail::normalization_of(config_);
    loader.start_epoch(0);
    while (auto batch = loader.next()) fn(norm(batch->images, device_), *batch);
    net_->train(was_training);
  }

  /// Pooled features of `subset` as evaluation sees them (eval mode, centre crops, no gradient).
  Embeddings embed(const data::Subset& subset) {
    if (subset.empty()) throw Error("Trainer::embed: the subset is empty");
    Embeddings e;
    std::vector<torch::Tensor> features, labels;
    for_each_eval_batch(subset, [&](const torch::Tensor& x, const data::Batch& batch) {
      const auto out = run(x, batch.images);
      if (!out.embedding.defined())
        throw Error("Trainer::embed: " + Impl::name() + " gives no pooled features (NetOutput::embedding)");
      features.push_back(out.embedding.to(torch::kCPU).to(torch::kFloat32));
      labels.push_back(batch.labels);
      e.indices.insert(e.indices.end(), batch.indices.begin(), batch.indices.end());
    });
    e.features = torch::cat(features);
    e.labels = torch::cat(labels);
    return e;
  }

  /// Imprints the cosine head: each class's weight row becomes the normalised mean of its
  /// training images' normalised pooled features, the scale config.cosine_scale. Every class
  /// needs a training image (the Error names one that has none).
  void imprint(const data::Subset& train) {
    if (net_->head_kind() != HeadKind::Cosine)
      throw Error("Trainer::imprint: the head is not a cosine head (set TrainConfig::head = imprint)");
    const Embeddings e = embed(train);
    const auto means = eval::class_means(eval::l2_normalize(e.features), e.labels, logits_width(),
                                         train.dataset ? train.dataset->class_names : std::vector<std::string>{});
    torch::NoGradGuard no_grad;
    auto head = net_->backbone->head();
    head->weight.copy_(eval::l2_normalize(means).to(head->weight.device()));
    if (head->bias.defined()) head->bias.zero_();
    net_->head_scale().fill_(config_.cosine_scale);
  }

  /// Evaluates the network as it is on `subset` (eval-mode, center crops).
  EvalReport evaluate(const data::Subset& subset, bool keep_predictions = true) {
    EvalReport report;
    report.metrics = eval::ClassificationMetrics(std::max<int64_t>(1, logits_width()),
                                                 subset.dataset ? subset.dataset->class_names : std::vector<std::string>{});
    if (subset.empty()) return report;
    data::LoaderOptions lo = loader_options(/*training=*/false);
    lo.masks = Impl::has_saliency && subset.dataset->has_masks();
    // Data-parallel: each process evaluates every N-th image (no padding), the logits are summed
    // over the world, and every process counts each image once. (Saliency-on-object scores need
    // the maps: with masks every process evaluates the whole subset.)
    const bool shared = pg_ && pg_->size() > 1 && !lo.masks;
    if (shared) {
      lo.shard_rank = pg_->rank();
      lo.shard_count = pg_->size();
      lo.shard_pad = false;
    }
    data::Loader loader(subset, lo);
    const bool was_training = net_->is_training();
    net_->eval();
    const auto norm = detail::normalization_of(config_);
    std::vector<eval::SaliencyOnObject> scores;
    const auto t0 = std::chrono::steady_clock::now();
    int64_t seen = 0;
    // Metrics and predictions of a set of logits (CPU, float) and their labels and sample indices.
    auto record = [&](const torch::Tensor& logits, const torch::Tensor& labels, const std::vector<size_t>& indices) {
      report.metrics.add_logits(logits, labels);
      if (!keep_predictions) return;
      const auto best = torch::softmax(logits, 1).max(1);
      const auto conf = std::get<0>(best).contiguous(), pred = std::get<1>(best).contiguous();
      const auto lab = labels.contiguous();
      for (size_t i = 0; i < indices.size(); ++i)
        report.predictions.push_back({indices[i], lab.template data_ptr<int64_t>()[i], pred.template data_ptr<int64_t>()[i],
                                      conf.template data_ptr<float>()[i]});
    };
    const auto n = static_cast<int64_t>(subset.size());
    torch::Tensor all_logits = shared ? torch::zeros({n, logits_width()}) : torch::Tensor();
    loader.start_epoch(0);
    while (auto batch = loader.next()) {
      // The forward pass under inference mode (no autograd records, no version counters); what it
      // returns is only read afterwards. The loader's tensors are made outside it: they may be reused.
      NetOutput out;
      {
        c10::InferenceMode inference;
        out = run(norm(batch->images, device_), batch->images);
      }
      const auto logits = out.logits.to(torch::kCPU).to(torch::kFloat32);
      seen += batch->size();
      if (shared) {  // into the rows of the images' places in the subset; summed over the world below
        const std::vector<int64_t> rows(batch->positions.begin(), batch->positions.end());
        all_logits.index_copy_(0, torch::tensor(rows, torch::kInt64), logits);
        continue;
      }
      record(logits, batch->labels, batch->indices);
      if (lo.masks && out.saliency.defined()) {
        auto s = eval::saliency_on_object(out.saliency.to(torch::kCPU).to(torch::kFloat32), batch->masks);
        scores.insert(scores.end(), s.begin(), s.end());
      }
    }
    if (shared) {
      std::vector<torch::Tensor> sum{all_logits};
      pg_->all_reduce_sum(sum);
      std::vector<int64_t> labels(static_cast<size_t>(n));
      for (size_t i = 0; i < labels.size(); ++i) labels[i] = subset.dataset->samples[subset.indices[i]].label;
      record(all_logits, torch::tensor(labels, torch::kInt64), subset.indices);
      seen = n;  // the world evaluated each image once
    }
    report.images_per_s = static_cast<double>(seen) /
                          std::max(1e-9, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (lo.masks) {
      report.has_saliency_score = true;
      report.saliency_on_object = eval::summarize(scores);
    }
    net_->train(was_training);
    return report;
  }

  /// The network being trained.
  Net& net() { return net_; }
  /// The configuration in use.
  const TrainConfig& config() const { return config_; }
  /// Whether the network is stored channels-last while this trainer lives (config.channels_last,
  /// or when unset: depthwise convolutions on the CPU).
  bool channels_last() const { return channels_last_->on(); }
  /// The trainable parameters by part.
  const ParamGroups& parameter_groups() const { return groups_; }
  /// The optimizer (SGD or Adam) over the parameter groups.
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  /// Text before every progress line, e.g. "[B k=5 seed=0] ".
  void set_progress_prefix(std::string prefix) { progress_prefix_ = std::move(prefix); }
  /// Data-parallel training over the processes of `pg` (null: this process alone): fit() gives each
  /// process its share of every epoch (Loader's shard; config.batch_size is per process), starts
  /// from rank 0's weights, averages the gradients while each backward pass runs
  /// (dist::GradientReducer), and only rank 0 prints progress and writes metrics and checkpoints.
  /// Every process must call fit() alike.
  void set_process_group(std::shared_ptr<dist::ProcessGroup> pg) {
    reducer_.reset();
    pg_ = std::move(pg);
  }
  /// True when this process writes the run's files (alone, or rank 0 of its world).
  bool writes_files() const { return !pg_ || pg_->rank() == 0; }

  /// The forward pass the trainer uses: SmicNet gets spectral-residual maps of the batch.
  /// In config.precision (autocast; the outputs may be bf16/fp16).
  NetOutput run(const torch::Tensor& x, const torch::Tensor& images_u8) {
    const auto input = in_channels_last(x, channels_last_->on());
    if constexpr (Impl::reads_saliency_map) {
      const auto maps = saliency::spectral_residual(images_u8.to(device_).to(torch::kFloat32).div(255));
      AutocastScope autocast(device_, precision_);
      return net_->forward_full(input, maps);
    } else {
      (void)images_u8;
      AutocastScope autocast(device_, precision_);
      return net_->forward_full(input);
    }
  }

 private:
  int64_t logits_width() {
    auto head = net_->backbone->head();
    return head->weight.size(0);
  }

  data::LoaderOptions loader_options(bool training) const {
    data::LoaderOptions lo;
    lo.batch_size = config_.batch_size;
    lo.seed = config_.seed;
    lo.shuffle = training;
    lo.workers = config_.workers;
    lo.quiet = config_.quiet;
    if (!config_.random_resized_crop) lo.transform = data::Transform::squash(config_.image_size);
    else if (training) lo.transform = data::Transform::train(config_.image_size, {config_.crop_scale_min, 1.0});
    else lo.transform = data::Transform::eval(config_.image_size);
    if (!training) lo.transform.flip = 0;
    if (training && !config_.random_resized_crop) lo.transform.flip = 0.5;
    lo.pin_memory = device_.is_cuda();
    return lo;
  }

  void build_optimizer() {
    std::vector<torch::optim::OptimizerParamGroup> groups;
    base_lrs_.clear();
    group_is_head_.clear();
    auto add = [&](const std::vector<torch::Tensor>& params, double lr) {
      if (params.empty()) return;
      base_lrs_.push_back(lr);
      group_is_head_.push_back(&params == &groups_.head);
      if (config_.optimizer == "adam") {
        groups.emplace_back(params, std::make_unique<torch::optim::AdamOptions>(
                                        torch::optim::AdamOptions(lr).weight_decay(config_.weight_decay)));
      } else {
        groups.emplace_back(params, std::make_unique<torch::optim::SGDOptions>(
                                        torch::optim::SGDOptions(lr).momentum(config_.momentum).weight_decay(config_.weight_decay)));
      }
    };
    add(groups_.backbone, config_.lr);
    add(groups_.head, config_.lr * config_.new_layer_lr_scale);
    add(groups_.saliency,
        config_.lr * (config_.saliency_lr_scale > 0 ? config_.saliency_lr_scale : config_.new_layer_lr_scale));
    if (groups.empty()) throw Error(std::string("Trainer: policy ") + Policy::name + " leaves nothing to train");
    if (config_.optimizer == "adam")
      optimizer_ = std::make_unique<torch::optim::Adam>(std::move(groups), torch::optim::AdamOptions(config_.lr));
    else
      optimizer_ = std::make_unique<torch::optim::SGD>(std::move(groups), torch::optim::SGDOptions(config_.lr));
  }

  void set_learning_rates(double factor) {
    auto& groups = optimizer_->param_groups();
    for (size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(base_lrs_[i] * factor);
  }
  // Warm-up: the head at warmup_lr; the other groups have no gradient (set_phase) and rate 0.
  void set_warmup_rates() {
    auto& groups = optimizer_->param_groups();
    for (size_t i = 0; i < groups.size(); ++i) groups[i].options().set_lr(group_is_head_[i] ? config_.warmup_lr : 0.0);
  }
  // In the warm-up only the head gets gradients: the backward pass stops there, and the
  // optimizer skips parameters without a gradient (their momentum stays untouched).
  void set_phase(bool warming) {
    for (auto* part : {&groups_.backbone, &groups_.saliency})
      for (auto& p : *part) p.set_requires_grad(!warming);
  }

  std::vector<torch::Tensor> snapshot() const {
    std::vector<torch::Tensor> s;
    for (const auto& kv : io::state_dict(*net_)) s.push_back(kv.value().detach().clone());
    return s;
  }
  void restore(const std::vector<torch::Tensor>& state) {
    torch::NoGradGuard no_grad;
    size_t i = 0;
    for (auto& kv : io::state_dict(*net_)) kv.value().copy_(state.at(i++));
  }

  std::filesystem::path best_file() const { return config_.checkpoint_dir / "best.safetensors"; }
  void write_best() const { io::save_weights(*net_, best_file()); }

  void write_checkpoint(const FitResult& r, int64_t step) const {
    io::CheckpointInfo info;
    info.epoch = r.epochs_done;
    info.step = step;
    nlohmann::json history = nlohmann::json::array();
    for (const auto& h : r.history)
      history.push_back({{"epoch", h.epoch}, {"loss", h.loss}, {"train_accuracy", h.train_accuracy},
                         {"val_accuracy", std::isnan(h.val_accuracy) ? nlohmann::json() : nlohmann::json(h.val_accuracy)},
                         {"seconds", h.seconds}, {"images_per_s", h.images_per_s}});
    info.config = {{"train", to_json(config_)},
                   {"policy", Policy::name},
                   {"network", Impl::name()},
                   {"world_size", pg_ ? pg_->size() : 1},
                   {"best_epoch", r.best_epoch},
                   {"grad_scaler", scaler_state_json()},
                   {"best_val_accuracy", std::isnan(r.best_val_accuracy) ? nlohmann::json() : nlohmann::json(r.best_val_accuracy)},
                   {"history", history}};
    // Keep the newest two: one may be unreadable if the machine dies mid-write of the next.
    io::save_epoch_checkpoint(config_.checkpoint_dir, *net_, optimizer_.get(), info, /*keep_last=*/2);
  }

  // The fp16 scaler's state for checkpoints (null without one); read from the device once.
  nlohmann::json scaler_state_json() const {
    if (!scaler_) return nlohmann::json();
    const GradScalerState st = scaler_->state();
    return {{"scale", st.scale}, {"growth_tracker", st.growth_tracker}};
  }

  void resume(FitResult& r, int64_t& step) {
    if (config_.checkpoint_dir.empty()) return;
    std::filesystem::create_directories(config_.checkpoint_dir);
    const auto resumed = io::resume(config_.checkpoint_dir, *net_, optimizer_.get());
    if (!resumed) return;
    const io::CheckpointInfo& info = *resumed;
    const auto& c = info.config;
    if (c.value("network", std::string()) != Impl::name() || c.value("policy", std::string()) != Policy::name)
      throw file_error(info.path, "checkpoint of " + c.value("network", std::string("?")) + " / " +
                                    c.value("policy", std::string("?")) + ", not of " + Impl::name() + " / " + Policy::name);
    // Another world size gives other batches and another schedule: not the run that was started.
    const int world = pg_ ? pg_->size() : 1;
    if (c.value("world_size", 1) != world)
      throw file_error(info.path, "checkpoint of a run over " + std::to_string(c.value("world_size", 1)) +
                                    " process(es); resume it with the same world size, not " + std::to_string(world));
    r.epochs_done = static_cast<int>(info.epoch);
    r.best_epoch = c.value("best_epoch", 0);
    r.best_val_accuracy = c.contains("best_val_accuracy") && c["best_val_accuracy"].is_number()
                              ? c["best_val_accuracy"].template get<double>()
                              : std::numeric_limits<double>::quiet_NaN();
    for (const auto& h : c.value("history", nlohmann::json::array())) {
      EpochRecord e;
      e.epoch = h.value("epoch", 0);
      e.loss = h.value("loss", 0.0);
      e.train_accuracy = h.value("train_accuracy", 0.0);
      e.val_accuracy = h["val_accuracy"].is_number() ? h["val_accuracy"].template get<double>() : std::numeric_limits<double>::quiet_NaN();
      e.seconds = h.value("seconds", 0.0);
      e.images_per_s = h.value("images_per_s", 0.0);
      r.history.push_back(e);
    }
    step = info.step;
    // fp16: the loss scale goes on where it was (a checkpoint from before the scaler: a fresh one).
    if (scaler_ && c.contains("grad_scaler") && c["grad_scaler"].is_object()) {
      try {
        scaler_->load_state({c["grad_scaler"].at("scale").template get<double>(),
                             c["grad_scaler"].at("growth_tracker").template get<int64_t>()});
      } catch (const std::exception& e) {
        throw file_error(info.path, std::string("its grad_scaler state is unreadable: ") + e.what());
      }
    }
    if (r.best_epoch > 0 && std::filesystem::exists(best_file())) {
      // The selected weights, without disturbing the resumed ones.
      const auto current = snapshot();
      io::load_weights(*net_, best_file());
      best_state_ = snapshot();
      restore(current);
    }
  }

  Net net_;
  TrainConfig config_;
  torch::Device device_;
  ParamGroups groups_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<double> base_lrs_;
  std::vector<bool> group_is_head_;
  std::vector<torch::Tensor> best_state_;
  std::string progress_prefix_;
  bool warned_dead_map_ = false;
  std::shared_ptr<dist::ProcessGroup> pg_;
  std::unique_ptr<dist::GradientReducer> reducer_;
  Precision precision_ = Precision::fp32;
  std::unique_ptr<GradScaler> scaler_;  // fp16 only
  std::unique_ptr<CpuMemoryCacheScope> memory_cache_;  // config.cache_cpu_memory; ends with the trainer
  std::unique_ptr<ChannelsLastScope> channels_last_;  // config.channels_last; NCHW again after the trainer
};

}  // namespace halsal::train
