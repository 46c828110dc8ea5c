// Data-parallel training over processes on PyTorch's own c10d: a process group made from the
// environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), Gloo as its
// transport, and the two collectives a data-parallel step needs: broadcast the initial weights
// from rank 0, average the gradients after the backward pass. halsal has no transport of its own.
//
//   auto pg = halsal::dist::ProcessGroup::from_environment();   // joins the world (or throws)
//   trainer.set_process_group(pg);                              // Trainer::fit shards each epoch
//
// Built when CMake finds c10d's headers in the LibTorch and gloo's (Debian's libgloo-dev):
// HALSAL_WITH_C10D = 1. Without them, available() is false and joining a world of several
// processes is an Error that says so; a world of one process needs nothing.
#pragma once
#include <torch/nn/module.h>
#include <torch/utils.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#ifndef HALSAL_WITH_C10D
#define HALSAL_WITH_C10D 0
#endif
#if HALSAL_WITH_C10D
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include "halsal/core/error.hpp"

namespace halsal::dist {

/// True when this halsal was built with c10d's process groups (CMake option HALSAL_DISTRIBUTED).
constexpr bool available() { return HALSAL_WITH_C10D != 0; }

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

  /// This process's device for `asked` (device_of_process).
  std::string device(const std::string& asked) const { return device_of_process(asked, local_rank, size); }
};

/// Reads a variable of the environment (std::getenv by default; tests pass their own).
using Lookup = std::function<const char*(const char*)>;

/// The world torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT,
/// TORCHELASTIC_USE_AGENT_STORE; HALSAL_DIST_TIMEOUT in seconds overrides the timeout); one process
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

/// A joined world of processes (c10d's TCPStore and Gloo process group). Collectives block until
/// every process took part; a failure or a timeout is an Error naming this rank and the master.
class ProcessGroup {
 public:
  /// Joins the world: rank 0 hosts the store at master_addr:master_port (unless torchrun's agent
  /// does) and everyone waits up to `timeout` for the others. A world of one needs no store.
  explicit ProcessGroup(WorldOptions world) : world_(std::move(world)) {
    if (world_.size < 1 || world_.rank < 0 || world_.rank >= world_.size)
      throw Error("ProcessGroup: rank " + std::to_string(world_.rank) + " of a world of " + std::to_string(world_.size));
    if (world_.size == 1) return;
#if HALSAL_WITH_C10D
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

  /// Joins the world torchrun set up (world_from_environment()).
  static std::shared_ptr<ProcessGroup> from_environment() {
    return std::make_shared<ProcessGroup>(world_from_environment());
  }

  int rank() const { return world_.rank; }
  int size() const { return world_.size; }
  const WorldOptions& world() const { return world_; }

  /// Sums each tensor over the world, in place (one collective per tensor, started together).
  void all_reduce_sum(std::vector<torch::Tensor>& tensors) {
    if (world_.size == 1 || tensors.empty()) return;
#if HALSAL_WITH_C10D
    run("all-reduce", [&] {
      std::vector<decltype(gloo_->allreduce(std::declval<std::vector<at::Tensor>&>()))> works;
      std::vector<std::vector<at::Tensor>> each;
      each.reserve(tensors.size());
      for (auto& t : tensors) {
        each.push_back({t});
        works.push_back(gloo_->allreduce(each.back()));
      }
      for (auto& w : works) w->wait(world_.timeout);
    });
#endif
  }

  /// Copies `tensor` of rank `root` into every process's `tensor` (same shape and type).
  void broadcast(torch::Tensor& tensor, int root = 0) {
    if (world_.size == 1) return;
#if HALSAL_WITH_C10D
    run("broadcast", [&] {
      std::vector<at::Tensor> one{tensor};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      gloo_->broadcast(one, o)->wait(world_.timeout);
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
    run("barrier", [&] { gloo_->barrier()->wait(world_.timeout); });
#endif
  }

 private:
  std::string where() const { return "rank " + std::to_string(world_.rank) + "/" + std::to_string(world_.size); }
  std::string master() const { return world_.master_addr + ":" + std::to_string(world_.master_port); }
  std::string seconds() const { return std::to_string(world_.timeout.count() / 1000) + " s"; }
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
  template <class Fn>
  void run(const char* what, Fn&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      throw Error(where() + ": " + what + " failed (another process of the world at " + master() +
                  " stopped, or did not answer within " + seconds() + "): " + first_line(e.what()));
    }
  }

  WorldOptions world_;
#if HALSAL_WITH_C10D
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo_;
#endif
};

/// Averages the gradients of `params` over the world: those with a gradient (the same on every
/// process), flattened into buckets of at most bucket_bytes per type and device, each summed by
/// one all-reduce and divided by the world's size. Call it after backward(), before the step.
inline void average_gradients(ProcessGroup& pg, const std::vector<torch::Tensor>& params,
                              size_t bucket_bytes = size_t{25} << 20) {
  if (pg.size() == 1) return;
  std::vector<std::vector<torch::Tensor>> buckets;
  size_t bytes = bucket_bytes;
  for (const auto& p : params) {
    const auto& g = p.grad();
    if (!g.defined()) continue;
    const size_t b = static_cast<size_t>(g.numel()) * g.element_size();
    if (buckets.empty() || bytes + b > bucket_bytes || buckets.back().front().scalar_type() != g.scalar_type() ||
        buckets.back().front().device() != g.device()) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(g);
    bytes += b;
  }
  std::vector<torch::Tensor> flat;
  for (const auto& bucket : buckets) {
    std::vector<torch::Tensor> parts;
    for (const auto& g : bucket) parts.push_back(g.reshape({-1}));
    flat.push_back(torch::cat(parts));
  }
  pg.all_reduce_sum(flat);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < buckets.size(); ++i) {
    flat[i].div_(pg.size());
    int64_t at = 0;
    for (auto& g : buckets[i]) {
      g.copy_(flat[i].narrow(0, at, g.numel()).view_as(g));
      at += g.numel();
    }
  }
}

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
