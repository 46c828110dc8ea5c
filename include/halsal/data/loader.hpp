// A multi-threaded batch loader with prefetch. The order of samples is a function of
// (seed, epoch) and each sample's augmentation draws from its own generator seeded by
// (seed, epoch, position), so batches are identical whatever the number of workers.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/data/cache.hpp"
#include "halsal/data/dataset.hpp"
#include "halsal/data/rng.hpp"
#include "halsal/data/split.hpp"
#include "halsal/data/transforms.hpp"

namespace halsal::data {

/// One batch: uint8 images N x 3 x H x W, int64 labels N, and (when asked for and available)
/// uint8 masks N x 1 x H x W; `indices` are the samples' indices in the dataset.
struct Batch {
  torch::Tensor images;
  torch::Tensor labels;
  torch::Tensor masks;
  std::vector<size_t> indices;
  std::vector<size_t> positions;  ///< each sample's place in the epoch's order (the subset's, unshuffled)
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

/// Options of a Loader.
struct LoaderOptions {
  int batch_size = 32;
  bool shuffle = true;
  bool drop_last = false;
  int workers = -1;   ///< decoding threads; -1 = one per core less one (at least 1); 0 = in next()
  int prefetch = 4;   ///< batches prepared ahead of the consumer
  uint64_t seed = 0;
  Transform transform = Transform::eval();
  bool masks = false;  ///< also return masks (the dataset must have them)
  OnBadFile on_bad_file = OnBadFile::error;  ///< skip: a bad file is left out of its batch
  std::shared_ptr<const ImageCache> cache;   ///< decoded images to read instead of the files
  bool pin_memory = false;  ///< page-locked batches for faster, asynchronous copies to CUDA
  bool quiet = false;
  /// A process's share in data-parallel training (PyTorch's DistributedSampler): of each epoch's
  /// order, padded to a multiple of shard_count by repeating its start, this process takes the
  /// positions shard_rank, shard_rank + shard_count, … Augmentations follow the position in the
  /// whole order, so the shards' batches together are the samples of one process's.
  int shard_rank = 0;
  int shard_count = 1;
  /// Pad the shards to equal length (training: every process takes the same number of steps);
  /// false leaves the padding out, so that the shards together hold each sample once (evaluation).
  bool shard_pad = true;
};

/// Iterates a Subset in batches, epoch by epoch:
///   Loader loader(split.train, opts);
///   for (int e = 0; e < epochs; ++e) { loader.start_epoch(e); while (auto b = loader.next()) ...; }
class Loader {
 public:
  Loader(Subset subset, LoaderOptions opts) : subset_(std::move(subset)), opts_(std::move(opts)) {
    if (!subset_.dataset) throw Error("Loader: the subset has no dataset");
    if (opts_.batch_size < 1) throw Error("Loader: batch_size must be >= 1");
    if (opts_.shard_count < 1 || opts_.shard_rank < 0 || opts_.shard_rank >= opts_.shard_count)
      throw Error("Loader: shard " + std::to_string(opts_.shard_rank) + " of " + std::to_string(opts_.shard_count) +
                  " (need 0 <= shard_rank < shard_count)");
    if (opts_.masks && !subset_.dataset->has_masks())
      throw Error("Loader: masks requested but " + subset_.dataset->summary() + " has none");
    if (opts_.cache && opts_.cache->size() != subset_.dataset->size())
      throw Error("Loader: the cache " + opts_.cache->file().string() + " holds " +
                  std::to_string(opts_.cache->size()) + " images, the dataset " + std::to_string(subset_.dataset->size()));
    if (opts_.workers < 0) opts_.workers = static_cast<int>(std::max(2u, std::thread::hardware_concurrency()) - 1);
    opts_.prefetch = std::max(1, opts_.prefetch);
    start_epoch(0);
  }
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  ~Loader() { stop(); }

  /// Samples per epoch of this process: its shard, ceil(n / shard_count) when padded (else the
  /// positions below n only).
  size_t samples_per_epoch() const {
    const size_t n = subset_.size(), c = static_cast<size_t>(opts_.shard_count),
                 r = static_cast<size_t>(opts_.shard_rank);
    if (opts_.shard_pad) return (n + c - 1) / c;
    return n > r ? (n - r + c - 1) / c : 0;
  }
  /// Batches per epoch.
  size_t batches_per_epoch() const {
    const size_t n = samples_per_epoch(), b = static_cast<size_t>(opts_.batch_size);
    return opts_.drop_last ? n / b : (n + b - 1) / b;
  }
  /// Samples left out as bad files so far (OnBadFile::skip).
  size_t skipped() const { return skipped_; }
  const LoaderOptions& options() const { return opts_; }
  const Subset& subset() const { return subset_; }

  /// Restarts at the first batch of `epoch` (the shuffle and augmentations depend on it).
  void start_epoch(int64_t epoch) {
    stop();
    epoch_ = epoch;
    order_ = subset_.indices;
    if (opts_.shuffle) {
      Rng rng(seed_of({opts_.seed, static_cast<uint64_t>(epoch), 0x6f72646572ULL /* "order" */}));
      rng.shuffle(order_);
    }
    positions_.clear();
    for (size_t i = 0, c = static_cast<size_t>(opts_.shard_count); i < samples_per_epoch(); ++i)
      positions_.push_back(i * c + static_cast<size_t>(opts_.shard_rank));
    n_batches_ = batches_per_epoch();
    cursor_ = 0;
    issued_ = 0;
    stopping_ = false;
    ready_.clear();
    for (int w = 0; w < opts_.workers; ++w) workers_.emplace_back([this] { work(); });
  }

  /// The next batch of the epoch, or nothing at its end. Rethrows a worker's Error.
  std::optional<Batch> next() {
    if (cursor_ >= n_batches_) return std::nullopt;
    if (opts_.workers == 0) return make_batch(cursor_++);
    std::unique_lock<std::mutex> lk(mu_);
    ready_cv_.wait(lk, [&] { return ready_.count(cursor_) > 0; });
    auto node = ready_.extract(cursor_);
    ++cursor_;
    lk.unlock();
    space_cv_.notify_all();
    if (node.mapped().error) {
      stop();
      cursor_ = n_batches_;
      std::rethrow_exception(node.mapped().error);
    }
    return std::move(node.mapped().batch);
  }

  /// Builds batch b of the current epoch (what the workers run).
  Batch make_batch(size_t b) {
    const size_t bs = static_cast<size_t>(opts_.batch_size);
    const size_t lo = b * bs, hi = std::min(positions_.size(), lo + bs);
    const Dataset& d = *subset_.dataset;
    const int S = opts_.transform.size;
    std::vector<std::pair<Image, Image>> items;
    std::vector<size_t> kept, kept_positions;
    items.reserve(hi - lo);
    for (size_t i = lo; i < hi; ++i) {
      const size_t pos = positions_[i];  // in the whole (padded) order: the same augmentation on any shard
      const size_t idx = order_[pos % order_.size()];
      Rng rng(seed_of({opts_.seed, static_cast<uint64_t>(epoch_), pos, 0x6175676dULL /* "augm" */}));
      try {
        if (opts_.cache) {
          const ImageView im = opts_.cache->image(idx);
          if (im.empty()) throw Error(d.key(idx) + ": left out of the cache as a bad file");
          items.push_back(opts_.transform(im, opts_.masks ? opts_.cache->mask(idx) : ImageView{}, rng));
        } else {
          LoadedSample ls = load_sample(d, idx);
          items.push_back(opts_.transform(ls.image, opts_.masks ? ImageView(ls.mask) : ImageView{}, rng));
        }
        kept.push_back(idx);
      kept_positions.push_back(pos % order_.size());
      } catch (const std::exception& e) {
        if (opts_.on_bad_file == OnBadFile::error) throw;
        ++skipped_;
        if (!opts_.quiet) std::cerr << "halsal: warning: " << e.what() << " (skipped)\n";
      }
    }
    Batch batch;
    const int64_t n = static_cast<int64_t>(items.size());
    auto u8 = torch::TensorOptions().dtype(torch::kUInt8);
    if (opts_.pin_memory) u8 = u8.pinned_memory(true);
    batch.images = torch::empty({n, 3, S, S}, u8);
    batch.labels = torch::empty({n}, torch::kInt64);
    if (opts_.masks) batch.masks = torch::empty({n, 1, S, S}, u8);
    uint8_t* out = batch.images.data_ptr<uint8_t>();
    int64_t* lab = batch.labels.data_ptr<int64_t>();
    const size_t plane = static_cast<size_t>(S) * S;
    for (int64_t i = 0; i < n; ++i) {
      const Image& im = items[static_cast<size_t>(i)].first;
      if (im.height != S || im.width != S || im.channels != 3) throw Error("Loader: transform gave a wrong size");
      uint8_t* dst = out + static_cast<size_t>(i) * 3 * plane;
      const uint8_t* src = im.data();
      for (size_t p = 0; p < plane; ++p) {  // H x W x 3 -> 3 x H x W
        dst[p] = src[3 * p];
        dst[plane + p] = src[3 * p + 1];
        dst[2 * plane + p] = src[3 * p + 2];
      }
      lab[i] = d.samples[kept[static_cast<size_t>(i)]].label;
      if (opts_.masks) {
        const Image& m = items[static_cast<size_t>(i)].second;
        uint8_t* md = batch.masks.data_ptr<uint8_t>() + static_cast<size_t>(i) * plane;
        if (m.empty())
          std::memset(md, 0, plane);
        else
          std::memcpy(md, m.data(), plane);
      }
    }
    batch.indices = std::move(kept);
    batch.positions = std::move(kept_positions);
    return batch;
  }

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  void work() {
    for (;;) {
      size_t b;
      {
        std::unique_lock<std::mutex> lk(mu_);
        space_cv_.wait(lk, [&] {
          return stopping_ || issued_ >= n_batches_ || issued_ < cursor_ + static_cast<size_t>(opts_.prefetch);
        });
        if (stopping_ || issued_ >= n_batches_) return;
        b = issued_++;
      }
      Slot slot;
      try {
        slot.batch = make_batch(b);
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lk(mu_);
        ready_.emplace(b, std::move(slot));
      }
      ready_cv_.notify_all();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
    }
    space_cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  Subset subset_;
  LoaderOptions opts_;
  std::vector<size_t> order_;
  std::vector<size_t> positions_;  // this shard's positions in order_ (padded past its end)
  int64_t epoch_ = 0;
  size_t n_batches_ = 0;
  size_t cursor_ = 0;  // next batch handed to the consumer
  size_t issued_ = 0;  // next batch a worker takes
  bool stopping_ = false;
  std::atomic<size_t> skipped_{0};
  std::mutex mu_;
  std::condition_variable ready_cv_, space_cv_;
  std::map<size_t, Slot> ready_;
  std::vector<std::thread> workers_;
};

}  // namespace halsal::data
