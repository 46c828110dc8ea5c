// A process's share of a grid of cells: the protocol's methods × k × seeds split over the
// processes of a world, with no communication between them. The place in the world comes from
// torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), else Slurm's (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID), else the process is alone; `--shard I/N` sets it by hand.
//
//   ht::Shard s = ht::shard_from_environment();   // or ht::parse_shard("1/4")
//   p.shard = s;                                   // run_protocol runs cells i with i % N == I
#pragma once
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/core/text.hpp"
#include "halsal/dist/process_group.hpp"

namespace halsal::train {

/// This process's place in a world of processes that share one grid of cells.
struct Shard {
  int index = 0;       ///< the process's rank, 0 <= index < count
  int count = 1;       ///< processes in the world
  int local_rank = 0;  ///< the rank on this machine (a CUDA run uses cuda:<local_rank>)
  std::string source = "one process";  ///< where it came from: torchrun, Slurm, --shard

  /// True in a world of several processes.
  bool sharded() const { return count > 1; }
  /// True when the grid's cell number `cell` (in the grid's order) is this process's.
  bool owns(size_t cell) const { return static_cast<int>(cell % static_cast<size_t>(count)) == index; }
  /// "1/4".
  std::string label() const { return std::to_string(index) + "/" + std::to_string(count); }
  /// "rank-1-of-4": the folder of this process's own run files.
  std::string folder() const { return "rank-" + std::to_string(index) + "-of-" + std::to_string(count); }
  /// The device this process trains on: "cuda" becomes "cuda:<local_rank>" in a world of several
  /// processes (one GPU each); any other device is kept.
  std::string device(const std::string& asked) const { return dist::device_of_process(asked, local_rank, count); }
};

/// The shards' own copies of a run file under out_dir: <out>/shards/rank-I-of-N/<name> for every
/// shard folder that holds one, in name order (empty when there are none).
inline std::vector<std::filesystem::path> shard_files(const std::filesystem::path& out_dir, const std::string& name) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  if (!std::filesystem::is_directory(out_dir / "shards", ec)) return files;
  for (const auto& e : std::filesystem::directory_iterator(out_dir / "shards", ec)) {
    if (e.is_directory(ec) && starts_with(e.path().filename().string(), "rank-") && std::filesystem::is_regular_file(e.path() / name, ec))
      files.push_back(e.path() / name);
  }
  std::sort(files.begin(), files.end());
  return files;
}

namespace detail {

/// A non-negative decimal integer below 2^20 (no sign, no spaces); false otherwise.
inline bool parse_count(const std::string& text, int& out) {
  if (text.empty() || text.size() > 7) return false;
  int v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v >= (1 << 20)) return false;
  out = v;
  return true;
}

inline Shard checked_shard(int index, int count, int local_rank, const std::string& source, const std::string& what) {
  if (count < 1) throw Error(what + ": the world must have at least one process");
  if (index >= count)
    throw Error(what + ": rank " + std::to_string(index) + " is not below the world size " + std::to_string(count) +
                " (ranks count from 0: 0 to " + std::to_string(count - 1) + ")");
  Shard s;
  s.index = index;
  s.count = count;
  s.local_rank = local_rank;
  s.source = source;
  return s;
}

}  // namespace detail

/// Parses "I/N" (0 <= I < N, as --shard gives it); errors say what is wrong.
inline Shard parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  int index = 0, count = 0;
  if (slash == std::string::npos || !detail::parse_count(text.substr(0, slash), index) ||
      !detail::parse_count(text.substr(slash + 1), count))
    throw Error("--shard " + text + ": expected I/N with whole numbers, e.g. 0/2 (shard I of N, counting from 0)");
  return detail::checked_shard(index, count, 0, "--shard", "--shard " + text);
}

/// Reads a variable of the environment (std::getenv by default; tests pass their own).
using EnvironmentLookup = std::function<const char*(const char*)>;

/// The place in the world that torchrun (RANK, WORLD_SIZE, LOCAL_RANK) or Slurm (SLURM_PROCID,
/// SLURM_NTASKS, SLURM_LOCALID) set, in that order; one process when neither did. A partial or
/// inconsistent setting (WORLD_SIZE without RANK, a rank not below the size, not a number) is an
/// Error naming the variables.
inline Shard shard_from_environment(const EnvironmentLookup& env = [](const char* name) { return std::getenv(name); }) {
  struct Names {
    const char *rank, *size, *local, *source;
  };
  for (const Names& n : {Names{"RANK", "WORLD_SIZE", "LOCAL_RANK", "torchrun"},
                         Names{"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "Slurm"}}) {
    const char* rank = env(n.rank);
    const char* size = env(n.size);
    if (!rank && !size) continue;
    const std::string what = std::string(n.source) + " environment";
    if (!rank || !size)
      throw Error(what + ": " + (rank ? n.rank : n.size) + " is set but " + (rank ? n.size : n.rank) +
                  " is not (both are needed)");
    int index = 0, count = 0, local = 0;
    if (!detail::parse_count(rank, index)) throw Error(what + ": " + n.rank + "=" + rank + " is not a rank");
    if (!detail::parse_count(size, count)) throw Error(what + ": " + n.size + "=" + size + " is not a world size");
    const char* local_text = env(n.local);
    if (local_text && !detail::parse_count(local_text, local))
      throw Error(what + ": " + n.local + "=" + local_text + " is not a local rank");
    return detail::checked_shard(index, count, local, n.source,
                                 what + " (" + n.rank + "=" + rank + ", " + n.size + "=" + size + ")");
  }
  return Shard{};
}

}  // namespace halsal::train
