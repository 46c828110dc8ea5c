// Intra-op threads: halsal defaults them to the number of cores (Debian's LibTorch starts with 1).
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

namespace halsal {

/// Sets LibTorch's intra-op threads; n <= 0 means one per hardware thread.
inline void set_num_threads(int n = 0) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
}

/// The default: $HALSAL_NUM_THREADS if set, else leave an explicit $OMP_NUM_THREADS alone,
/// else one thread per core.
inline bool configure_default_threads() {
  if (const char* env = std::getenv("HALSAL_NUM_THREADS")) {
    set_num_threads(std::atoi(env));
  } else if (!std::getenv("OMP_NUM_THREADS")) {
    set_num_threads(0);
  }
  return true;
}

namespace detail {
// Runs once per program at start-up, in every program that includes halsal.
inline const bool threads_configured = configure_default_threads();
}  // namespace detail

}  // namespace halsal
