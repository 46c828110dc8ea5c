// Data-parallel training over processes on PyTorch's own c10d: a process group made from the
// environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), Gloo (CPU) or
// NCCL (CUDA) as its transport, and what a data-parallel step needs: broadcast the initial weights
// from rank 0, average the gradients while the backward pass runs (GradientReducer, buckets like
// DistributedDataParallel's). halsal has no transport of its own.
//
//   auto pg = halsal::dist::ProcessGroup::from_environment();   // joins the world (or throws)
//   trainer.set_process_group(pg);                              // Trainer::fit shards each epoch
//
// Built when CMake finds c10d's headers in the LibTorch and gloo's (Debian: libgloo-dev):
// HALSAL_WITH_C10D = 1; NCCL too where the LibTorch was built with it and nccl.h is found
// (HALSAL_WITH_NCCL = 1). Without c10d, available() is false and joining a world of several
// processes is an Error that says so; a world of one process needs nothing.
#pragma once
#include <torch/nn/module.h>
#include <torch/utils.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#ifndef HALSAL_WITH_C10D
#define HALSAL_WITH_C10D 0
#endif
#ifndef HALSAL_WITH_NCCL
#define HALSAL_WITH_NCCL 0
#endif
#if HALSAL_WITH_C10D
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#if HALSAL_WITH_C10D && HALSAL_WITH_NCCL
#include <torch/cuda.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "halsal/core/error.hpp"

namespace halsal::dist {

/// True when this halsal was built with c10d's process groups (CMake option HALSAL_DISTRIBUTED).
constexpr bool available() { return HALSAL_WITH_C10D != 0; }
/// True when this halsal was built with c10d's NCCL process group too (GPUs).
constexpr bool nccl_available() { return HALSAL_WITH_C10D != 0 && HALSAL_WITH_NCCL != 0; }

/// The device of one process of a world of `world_size`: "cuda" becomes "cuda:<local_rank>" (one
/// GPU each) when there are several; any other device is kept.
inline std::string device_of_process(const std::string& asked, int local_rank, int world_size) {
  return world_size > 1 && asked == "cuda" ? "cuda:" + std::to_string(local_rank) : asked;
}

/// Where the processes of a world meet, as torchrun describes it.
struct WorldOptions {
  int rank = 0;        ///< RANK
  int size = 1;        ///< WORLD_SIZE
  int local_rank = 0;  ///< LOCAL_RANK: the process's GPU on its machine
  std::string master_addr = "127.0.0.1";  ///< MASTER_ADDR: the host of rank 0's store
  int master_port = 29500;                ///< MASTER_PORT
  /// torchrun's agent already hosts the store on master_port (TORCHELASTIC_USE_AGENT_STORE=True):
  /// every process joins it as a client.
  bool agent_store = false;
  /// How long joining the world and each collective may wait for the others: a process that died
  /// or hangs makes the others fail with an Error after this, not wait forever.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  /// HALSAL_DIST_BACKEND: "gloo", "nccl", or "auto" (NCCL for a CUDA device where built with it,
  /// else Gloo).
  std::string backend = "auto";

  /// The transport for tensors on `device`: backend, with "auto" resolved.
  std::string backend_for(const std::string& device) const {
    if (backend != "auto") return backend;
    return nccl_available() && device.rfind("cuda", 0) == 0 ? "nccl" : "gloo";
  }
  /// This process's device for `asked` (device_of_process).
  std::string device(const std::string& asked) const { return device_of_process(asked, local_rank, size); }
};

/// Reads a variable of the environment (std::getenv by default; tests pass their own).
using Lookup = std::function<const char*(const char*)>;

/// The world torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT,
/// TORCHELASTIC_USE_AGENT_STORE; HALSAL_DIST_TIMEOUT in seconds overrides the timeout,
/// HALSAL_DIST_BACKEND the transport); one process
/// when WORLD_SIZE is not set. Errors name the variable that is missing or wrong.
inline WorldOptions world_from_environment(const Lookup& env = [](const char* n) { return std::getenv(n); }) {
  WorldOptions w;
  auto number = [&](const char* name, int fallback, int lo, int hi) {
    const char* v = env(name);
    if (!v) return fallback;
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
      throw Error(std::string("distributed environment: ") + name + "=" + v + " is not a whole number in [" +
                  std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int>(x);
  };
  if (const char* b = env("HALSAL_DIST_BACKEND")) {
    w.backend = b;
    if (w.backend != "auto" && w.backend != "gloo" && w.backend != "nccl")
      throw Error(std::string("distributed environment: HALSAL_DIST_BACKEND=") + b + " is not gloo, nccl or auto");
  }
  if (!env("WORLD_SIZE")) return w;
  w.size = number("WORLD_SIZE", 1, 1, 1 << 20);
  if (!env("RANK")) throw Error("distributed environment: WORLD_SIZE is set but RANK is not (both are needed)");
  w.rank = number("RANK", 0, 0, w.size - 1);
  w.local_rank = number("LOCAL_RANK", 0, 0, 1 << 20);
  if (w.size > 1 && (!env("MASTER_ADDR") || !env("MASTER_PORT")))
    throw Error("distributed environment: a world of " + std::to_string(w.size) +
                " processes needs MASTER_ADDR and MASTER_PORT (torchrun sets them)");
  if (const char* a = env("MASTER_ADDR")) w.master_addr = a;
  w.master_port = number("MASTER_PORT", w.master_port, 1, 65535);
  const char* agent = env("TORCHELASTIC_USE_AGENT_STORE");
  w.agent_store = agent && (std::string(agent) == "True" || std::string(agent) == "1");
  w.timeout = std::chrono::seconds(number("HALSAL_DIST_TIMEOUT", static_cast<int>(w.timeout.count() / 1000), 1, 86400));
  return w;
}

/// A joined world of processes (c10d's TCPStore, and its Gloo or NCCL process group). Collectives
/// block until every process took part; a failure or a timeout is an Error naming this rank and
/// the master.
class ProcessGroup {
  // Defined first: the collectives below deduce their types from these.
  template <class Fn>
  auto call(const char* what, Fn&& fn) {
    try {
      return fn();
    } catch (const std::exception& e) {
      throw Error(where() + ": " + what + " failed (another process of the world at " + master() +
                  " stopped, or did not answer within " + seconds() + "): " + first_line(e.what()));
    }
  }
#if HALSAL_WITH_C10D
  template <class Fn>
  auto on_backend(Fn&& fn) {
#if HALSAL_WITH_NCCL
    if (nccl_) return fn(*nccl_);
#endif
    return fn(*gloo_);
  }
  // NCCL moves only CUDA tensors: others are staged on this process's GPU.
  torch::Tensor on_transport(const torch::Tensor& t) const {
#if HALSAL_WITH_NCCL
    if (nccl_ && t.device() != nccl_device_) return t.to(nccl_device_);
#endif
    return t;
  }
#endif

 public:
  /// A collective that was started and not yet waited for.
  class Pending {
   public:
    Pending() = default;
    explicit Pending(std::function<void()> wait) : wait_(std::move(wait)) {}
    /// Blocks until the collective is done (an Error as the blocking collectives'); once.
    void wait() {
      auto w = std::move(wait_);
      wait_ = nullptr;
      if (w) w();
    }
    /// True until wait() was called.
    bool started() const { return static_cast<bool>(wait_); }

   private:
    std::function<void()> wait_;
  };

  /// Joins the world: rank 0 hosts the store at master_addr:master_port (unless torchrun's agent
  /// does) and everyone waits up to `timeout` for the others. `device` is where this process's
  /// tensors live: it picks the transport when world.backend is "auto" (NCCL for CUDA where built
  /// with it). A world of one needs no store.
  explicit ProcessGroup(WorldOptions world, const std::string& device = "cpu")
      : world_(std::move(world)), backend_(world_.backend_for(device)) {
    if (world_.size < 1 || world_.rank < 0 || world_.rank >= world_.size)
      throw Error("ProcessGroup: rank " + std::to_string(world_.rank) + " of a world of " + std::to_string(world_.size));
    if (backend_ != "gloo" && backend_ != "nccl")
      throw Error("ProcessGroup: unknown backend '" + backend_ + "' (gloo, nccl or auto)");
    if (world_.size == 1) return;
#if HALSAL_WITH_C10D
    if (backend_ == "nccl" && !nccl_available())
      throw Error(where() + ": the nccl backend was asked for, but this halsal was built without NCCL (a LibTorch "
                  "built with CUDA and NCCL, and nccl.h, are needed when CMake configures halsal); use gloo");
#if HALSAL_WITH_NCCL
    if (backend_ == "nccl" && !torch::cuda::is_available())
      throw Error(where() + ": the nccl backend needs a CUDA GPU and this process sees none (HALSAL_DIST_BACKEND=gloo "
                  "works on the CPU)");
#endif
    try {
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(world_.master_port);
      so.isServer = world_.rank == 0 && !world_.agent_store;
      // Every process (the server too) counts itself in, so rank 0 knows when all have come.
      if (!world_.agent_store) so.numWorkers = static_cast<std::size_t>(world_.size);
      so.waitWorkers = !world_.agent_store;
      so.timeout = world_.timeout;
      auto tcp = c10::make_intrusive<c10d::TCPStore>(world_.master_addr, so);
      // Our own key space: torchrun's agent store holds its own keys.
      c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::PrefixStore>("halsal", tcp);
#if HALSAL_WITH_NCCL
      if (backend_ == "nccl") {
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = world_.timeout;
        nccl_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, world_.rank, world_.size, opts);
        nccl_device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(world_.local_rank));
        return;
      }
#endif
      auto opts = c10d::ProcessGroupGloo::Options::create(world_.timeout);
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      opts->devices.push_back(ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                     : c10d::ProcessGroupGloo::createDefaultDevice());
      opts->threads = 2;
      gloo_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, world_.rank, world_.size, opts);
    } catch (const std::exception& e) {
      throw Error(where() + ": could not join the world at " + master() + " within " + seconds() + ": " +
                  first_line(e.what()));
    }
#else
    throw Error(where() + ": this halsal was built without c10d (no process groups): a world of " +
                std::to_string(world_.size) + " processes needs a LibTorch with torch/csrc/distributed/c10d and "
                "gloo's headers (Debian: libgloo-dev) when CMake configures halsal");
#endif
  }

  /// Joins the world torchrun set up (world_from_environment()), for tensors on `device`.
  static std::shared_ptr<ProcessGroup> from_environment(const std::string& device = "cpu") {
    return std::make_shared<ProcessGroup>(world_from_environment(), device);
  }

  int rank() const { return world_.rank; }
  int size() const { return world_.size; }
  const WorldOptions& world() const { return world_; }
  /// The transport: "gloo" or "nccl".
  const std::string& backend() const { return backend_; }

  /// Starts summing `tensor` over the world, in place; the result is there after wait(). NCCL
  /// reduces on this process's GPU: a CPU tensor travels there and back.
  Pending start_all_reduce_sum(torch::Tensor tensor) {
    if (world_.size == 1) return {};
#if HALSAL_WITH_C10D
    torch::Tensor staged = on_transport(tensor);
    std::vector<at::Tensor> one{staged};
    auto work = call("all-reduce", [&] { return on_backend([&](auto& b) { return b.allreduce(one); }); });
    return Pending([this, work, tensor, staged]() mutable {
      call("all-reduce", [&] {
        work->wait(world_.timeout);
        if (!staged.is_same(tensor)) tensor.copy_(staged);
        return 0;
      });
    });
#else
    (void)tensor;
    return {};
#endif
  }

  /// Sums each tensor over the world, in place (the collectives started together).
  void all_reduce_sum(std::vector<torch::Tensor>& tensors) {
    std::vector<Pending> pending;
    pending.reserve(tensors.size());
    for (auto& t : tensors) pending.push_back(start_all_reduce_sum(t));
    for (auto& p : pending) p.wait();
  }

  /// Copies `tensor` of rank `root` into every process's `tensor` (same shape and type).
  void broadcast(torch::Tensor& tensor, int root = 0) {
    if (world_.size == 1) return;
#if HALSAL_WITH_C10D
    call("broadcast", [&] {
      torch::Tensor staged = on_transport(tensor);
      std::vector<at::Tensor> one{staged};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      on_backend([&](auto& b) { return b.broadcast(one, o); })->wait(world_.timeout);
      if (!staged.is_same(tensor)) tensor.copy_(staged);
      return 0;
    });
#else
    (void)tensor;
    (void)root;
#endif
  }

  /// Waits until every process reached this point.
  void barrier() {
    if (world_.size == 1) return;
#if HALSAL_WITH_C10D
    call("barrier", [&] {
      on_backend([&](auto& b) { return b.barrier(); })->wait(world_.timeout);
      return 0;
    });
#endif
  }

 private:
  std::string where() const { return "rank " + std::to_string(world_.rank) + "/" + std::to_string(world_.size); }
  std::string master() const { return world_.master_addr + ":" + std::to_string(world_.master_port); }
  std::string seconds() const { return std::to_string(world_.timeout.count() / 1000) + " s"; }
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
  WorldOptions world_;
  std::string backend_;
#if HALSAL_WITH_C10D
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo_;
#endif
#if HALSAL_WITH_C10D && HALSAL_WITH_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl_;
  torch::Device nccl_device_{torch::kCPU};
#endif
};

/// A program's data-parallel start: when torchrun (or RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
/// put this process in a world of several, sets `device` to this process's own ("cuda" →
/// "cuda:<local rank>") and joins the world; null when the process is alone.
inline std::shared_ptr<ProcessGroup> join_world_from_environment(std::string& device) {
  const WorldOptions world = world_from_environment();
  if (world.size <= 1) return nullptr;
  device = world.device(device);
  return std::make_shared<ProcessGroup>(world, device);
}

/// Averages the gradients of a network's parameters over the world while the backward pass runs,
/// as PyTorch's DistributedDataParallel does: the parameters that require a gradient, in reverse
/// order (roughly the order backward reaches them), are packed into buckets of at most
/// bucket_bytes per type and device (the first one smaller, first_bucket_bytes, so that traffic
/// starts early); a hook on each parameter copies its gradient into its bucket, and a full
/// bucket's all-reduce starts at once (in bucket order, the same on every process), overlapping
/// the rest of the backward pass. finish() starts what is left (a parameter that got no gradient
/// counts as zero), waits, and writes the averages into the gradients.
///
///   reducer.prepare();  loss.backward();  reducer.finish();  optimizer.step();
///
/// One backward per step, with the gradients zeroed before it (the buckets carry this backward's
/// gradients, not sums over several).
class GradientReducer {
 public:
  GradientReducer(std::shared_ptr<ProcessGroup> pg, std::vector<torch::Tensor> params,
                  size_t bucket_bytes = size_t{25} << 20, size_t first_bucket_bytes = size_t{1} << 20)
      : state_(std::make_shared<State>()) {
    if (!pg) throw Error("GradientReducer: no process group");
    state_->pg = std::move(pg);
    state_->params = std::move(params);
    state_->bucket_bytes = std::max<size_t>(1, bucket_bytes);
    state_->first_bucket_bytes = std::max<size_t>(1, first_bucket_bytes);
    hooks_.assign(state_->params.size(), -1);
  }
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;
  ~GradientReducer() {
    for (size_t i = 0; i < hooks_.size(); ++i) {
      if (hooks_[i] < 0) continue;
      try {
        state_->params[i].remove_hook(static_cast<unsigned>(hooks_[i]));
      } catch (...) {  // a parameter that no longer takes hooks keeps a disarmed one
      }
    }
  }

  /// Arms the hooks for the next backward pass; plans the buckets again when the set of
  /// parameters that require a gradient changed (a warm-up phase, a freeze).
  void prepare() {
    if (state_->pg->size() == 1) return;
    std::lock_guard<std::mutex> lock(state_->mutex);
    std::vector<bool> trainable(state_->params.size());
    for (size_t i = 0; i < trainable.size(); ++i) trainable[i] = state_->params[i].requires_grad();
    if (trainable != state_->planned_for) state_->plan(trainable);
    for (size_t i = 0; i < trainable.size(); ++i) {
      if (!trainable[i] || hooks_[i] >= 0) continue;
      std::weak_ptr<State> weak = state_;
      hooks_[i] = static_cast<int64_t>(state_->params[i].register_hook([weak, i](torch::Tensor g) {
        if (auto s = weak.lock()) s->arrived(i, g);
      }));
    }
    for (auto& b : state_->buckets) {
      b.pending = b.members.size();
      std::fill(b.filled.begin(), b.filled.end(), false);
      b.work = {};
    }
    state_->next = 0;
    state_->started_early = 0;
    state_->armed = true;
  }

  /// After backward: starts the buckets not yet started, waits for all, and leaves each parameter's
  /// gradient the world's average.
  void finish() {
    if (state_->pg->size() == 1) return;
    {
      std::lock_guard<std::mutex> lock(state_->mutex);
      if (!state_->armed) throw Error("GradientReducer::finish without prepare() before the backward pass");
      state_->armed = false;
      torch::NoGradGuard no_grad;
      for (; state_->next < state_->buckets.size(); ++state_->next) {
        auto& b = state_->buckets[state_->next];
        for (size_t k = 0; k < b.members.size(); ++k)
          if (!b.filled[k]) state_->slice(b, k).zero_();
        b.work = state_->pg->start_all_reduce_sum(b.flat);
      }
    }
    torch::NoGradGuard no_grad;
    const double n = static_cast<double>(state_->pg->size());
    for (auto& b : state_->buckets) {
      b.work.wait();
      b.flat.div_(n);
      for (size_t k = 0; k < b.members.size(); ++k) {
        auto& p = state_->params[b.members[k]];
        const auto avg = state_->slice(b, k).view(p.sizes());
        if (p.grad().defined()) p.mutable_grad().copy_(avg);
        else if (b.filled[k]) p.mutable_grad() = avg.clone();
      }
    }
  }

  /// How many buckets the current plan has (after prepare()).
  size_t buckets() const { return state_->buckets.size(); }
  /// How many buckets started during the last backward pass, before finish() (overlap).
  size_t started_during_backward() const { return state_->started_early; }

 private:
  struct Bucket {
    torch::Tensor flat;
    std::vector<size_t> members;  // indices into params
    std::vector<int64_t> offsets;
    std::vector<bool> filled;
    size_t pending = 0;
    ProcessGroup::Pending work;
  };
  struct State {
    std::shared_ptr<ProcessGroup> pg;
    std::vector<torch::Tensor> params;
    size_t bucket_bytes = 0, first_bucket_bytes = 0;
    std::vector<bool> planned_for;
    std::vector<Bucket> buckets;
    std::vector<std::pair<int64_t, size_t>> where;  // param -> (bucket or -1, member)
    size_t next = 0, started_early = 0;
    bool armed = false;
    std::mutex mutex;

    torch::Tensor slice(Bucket& b, size_t k) {
      return b.flat.narrow(0, b.offsets[k], params[b.members[k]].numel());
    }
    void plan(const std::vector<bool>& trainable) {
      planned_for = trainable;
      buckets.clear();
      where.assign(params.size(), {-1, 0});
      std::vector<int64_t> elements;
      size_t bytes = 0;
      for (size_t r = params.size(); r-- > 0;) {
        if (!trainable[r]) continue;
        const auto& p = params[r];
        const size_t b = static_cast<size_t>(p.numel()) * p.element_size();
        const size_t cap = buckets.size() == 1 ? first_bucket_bytes : bucket_bytes;
        const auto& first = buckets.empty() ? p : params[buckets.back().members.front()];
        if (buckets.empty() || bytes + b > cap || first.scalar_type() != p.scalar_type() || first.device() != p.device()) {
          buckets.emplace_back();
          elements.push_back(0);
          bytes = 0;
        }
        auto& bucket = buckets.back();
        where[r] = {static_cast<int64_t>(buckets.size() - 1), bucket.members.size()};
        bucket.members.push_back(r);
        bucket.offsets.push_back(elements.back());
        elements.back() += p.numel();
        bytes += b;
      }
      for (size_t i = 0; i < buckets.size(); ++i) {
        auto& bucket = buckets[i];
        bucket.flat = torch::empty({elements[i]}, params[bucket.members.front()].options().requires_grad(false));
        bucket.filled.assign(bucket.members.size(), false);
      }
    }
    // A parameter's gradient of this backward pass: into its bucket; start the full buckets in order.
    void arrived(size_t i, const torch::Tensor& g) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!armed || where[i].first < 0) return;
      torch::NoGradGuard no_grad;
      auto& b = buckets[static_cast<size_t>(where[i].first)];
      const size_t k = where[i].second;
      if (b.filled[k]) return;
      slice(b, k).copy_(g.reshape({-1}));
      b.filled[k] = true;
      --b.pending;
      while (next < buckets.size() && buckets[next].pending == 0) {
        buckets[next].work = pg->start_all_reduce_sum(buckets[next].flat);
        ++next;
        ++started_early;
      }
    }
  };

  std::shared_ptr<State> state_;
  std::vector<int64_t> hooks_;
};
/// Copies rank 0's parameters and buffers into every process's module (before training starts,
/// so that every process starts from the same weights).
inline void broadcast_module(ProcessGroup& pg, torch::nn::Module& module) {
  if (pg.size() == 1) return;
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    auto t = p.detach();
    pg.broadcast(t, 0);
  }
  for (auto& b : module.buffers()) {
    auto t = b.detach();
    pg.broadcast(t, 0);
  }
}

}  // namespace halsal::dist
