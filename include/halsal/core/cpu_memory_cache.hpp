// A caching allocator for CPU tensors: a freed block of 256 KiB or more is kept for the next
// request of the same size instead of going back to the system.
//
// Why: glibc serves large blocks with mmap and unmaps them when they are freed (its threshold
// adapts only up to 32 MiB), so a training step that allocates the same large gradients and
// activations every step pays a page fault for every 4 KiB of them, every step. AlexNet's fc6
// gradient alone is 151 MB; its CPU train step ran 28 % faster with the cache, HalSal AlexNet's
// 32 % (docs/performance.md). Python users get the same from jemalloc or MALLOC_MMAP_THRESHOLD_.
//
// The allocator hands out plain c10::alloc_cpu blocks and remembers the large ones' sizes, so a
// block freed by LibTorch's own deleter (oneDNN keeps buffers past a scope) and a LibTorch block
// freed by this one's both end correctly.
#pragma once
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "halsal/core/compat.hpp"

namespace halsal {

/// What the CPU memory cache did so far (cpu_memory_cache_stats()).
struct CpuMemoryCacheStats {
  bool installed = false;     ///< halsal's allocator is LibTorch's CPU allocator now
  uint64_t hits = 0;          ///< large allocations served from the cache
  uint64_t misses = 0;        ///< large allocations that went to the system
  size_t cached_bytes = 0;    ///< free blocks held now
  size_t cached_blocks = 0;
  size_t limit_bytes = 0;     ///< the most the cache holds; a freed block beyond it goes back to the system
};

namespace detail {

class CachingCpuAllocator final : public c10::Allocator {
 public:
  static constexpr size_t min_cached_bytes = size_t{256} << 10;  // smaller blocks: glibc's heap reuses them
  static constexpr size_t granule = 4096;                       // large requests round up to pages

  /// The one instance; never destroyed, because tensors may be freed after static destruction.
  static CachingCpuAllocator& instance() {
    static auto* const allocator = new CachingCpuAllocator();
    return *allocator;
  }

#if HALSAL_TORCH_AT_LEAST(2, 3)
  c10::DataPtr allocate(size_t n) override {
#else
  c10::DataPtr allocate(size_t n) const override {
#endif
    void* data = instance().acquire(n);
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  // Overrides LibTorch's pure virtual copy_data where it exists (2.3 and later).
  void copy_data(void* dest, const void* src, std::size_t count) const {
    if (count > 0) std::memcpy(dest, src, count);
  }

  /// Installs (on) or removes (off) the cache; scopes nest, the outermost one acts.
  bool enter() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (depth_++ == 0) {
      previous_ = c10::GetCPUAllocator();
      if (previous_ != this) c10::SetCPUAllocator(this, /*priority=*/0);
      caching_ = c10::GetCPUAllocator() == this;  // a higher-priority allocator wins: then nothing changes
    }
    return caching_;
  }
  void leave() {
    std::vector<void*> to_free;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (depth_ == 0 || --depth_ > 0) return;
      if (caching_ && c10::GetCPUAllocator() == this) c10::SetCPUAllocator(previous_, /*priority=*/0);
      caching_ = false;
      take_all(to_free);
    }
    for (void* p : to_free) c10::free_cpu(p);
  }
  void release_cached() {
    std::vector<void*> to_free;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      take_all(to_free);
    }
    for (void* p : to_free) c10::free_cpu(p);
  }
  void set_limit(size_t bytes) {
    std::vector<void*> to_free;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      limit_ = bytes;
      while (cached_bytes_ > limit_ && !free_.empty()) {  // evict the largest sizes first
        auto largest = std::max_element(free_.begin(), free_.end(),
                                        [](const auto& a, const auto& b) { return a.first < b.first; });
        to_free.push_back(largest->second.back());
        sizes_.erase(largest->second.back());
        cached_bytes_ -= largest->first;
        largest->second.pop_back();
        if (largest->second.empty()) free_.erase(largest);
      }
    }
    for (void* p : to_free) c10::free_cpu(p);
  }
  CpuMemoryCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    CpuMemoryCacheStats s;
    s.installed = caching_ && c10::GetCPUAllocator() == this;
    s.hits = hits_;
    s.misses = misses_;
    s.cached_bytes = cached_bytes_;
    for (const auto& entry : free_) s.cached_blocks += entry.second.size();
    s.limit_bytes = limit_;
    return s;
  }

 private:
  CachingCpuAllocator() : limit_(default_limit()) {}

  // A quarter of the physical memory, at most 8 GiB.
  static size_t default_limit() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    const size_t cap = size_t{8} << 30;
    if (pages <= 0 || page <= 0) return size_t{1} << 30;
    return std::min(cap, static_cast<size_t>(pages) * static_cast<size_t>(page) / 4);
  }

  void* acquire(size_t n) {
    if (n < min_cached_bytes) return c10::alloc_cpu(n);
    const size_t size = (n + granule - 1) / granule * granule;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end()) {
        void* p = it->second.back();
        it->second.pop_back();
        if (it->second.empty()) free_.erase(it);
        cached_bytes_ -= size;
        ++hits_;
        return p;  // still in sizes_
      }
      ++misses_;
    }
    void* p = nullptr;
    try {
      p = c10::alloc_cpu(size);
    } catch (...) {
      release_cached();  // out of memory: give the cache back and try once more
      p = c10::alloc_cpu(size);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    sizes_[p] = size;
    return p;
  }

  static void release(void* p) {
    if (!p) return;
#if defined(__GLIBC__)
    // Most freed tensors are small: they never were in the cache, so they skip the lock.
    if (malloc_usable_size(p) < min_cached_bytes) {
      c10::free_cpu(p);
      return;
    }
#endif
    auto& self = instance();
    {
      std::lock_guard<std::mutex> lock(self.mutex_);
      auto it = self.sizes_.find(p);
      if (it != self.sizes_.end()) {
        const size_t size = it->second;
        if (self.caching_ && self.cached_bytes_ + size <= self.limit_ && holds(p, size)) {
          self.free_[size].push_back(p);
          self.cached_bytes_ += size;
          return;
        }
        self.sizes_.erase(it);
      }
    }
    c10::free_cpu(p);  // small, or not cached, or LibTorch's own block
  }

  // A block this allocator handed out can come back through LibTorch's own deleter (oneDNN's
  // buffers), leaving a stale size here; glibc can then give the address to a smaller block.
  // Only a block that really holds `size` bytes is kept.
  static bool holds(void* p, size_t size) {
#if defined(__GLIBC__)
    return malloc_usable_size(p) >= size;
#else
    (void)p;
    (void)size;
    return true;
#endif
  }

  void take_all(std::vector<void*>& out) {  // mutex_ held
    for (auto& entry : free_)
      for (void* p : entry.second) {
        out.push_back(p);
        sizes_.erase(p);
      }
    free_.clear();
    cached_bytes_ = 0;
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // block size -> free blocks
  std::unordered_map<void*, size_t> sizes_;              // every large block handed out or cached
  size_t cached_bytes_ = 0, limit_;
  uint64_t hits_ = 0, misses_ = 0;
  c10::Allocator* previous_ = nullptr;
  int depth_ = 0;
  bool caching_ = false;
};

}  // namespace detail

/// While alive, LibTorch's CPU tensors come from halsal's caching allocator: freed blocks of
/// 256 KiB or more are kept for the next request of the same size (no page faults each step).
/// Scopes nest; when the outermost ends, LibTorch's allocator returns and the cache is freed.
/// The allocator is process-wide: open the scope before other threads allocate tensors.
class CpuMemoryCacheScope {
 public:
  /// on = false: a scope that changes nothing.
  explicit CpuMemoryCacheScope(bool on = true) : on_(on) {
    if (on_) installed_ = detail::CachingCpuAllocator::instance().enter();
  }
  ~CpuMemoryCacheScope() {
    if (on_) detail::CachingCpuAllocator::instance().leave();
  }
  CpuMemoryCacheScope(const CpuMemoryCacheScope&) = delete;
  CpuMemoryCacheScope& operator=(const CpuMemoryCacheScope&) = delete;
  /// False when off, or when another allocator was installed with a higher priority.
  bool installed() const { return installed_; }

 private:
  bool on_;
  bool installed_ = false;
};

/// The cache's counters and size.
inline CpuMemoryCacheStats cpu_memory_cache_stats() { return detail::CachingCpuAllocator::instance().stats(); }

/// The most the cache holds (default: a quarter of the physical memory, at most 8 GiB); a lower
/// limit frees cached blocks at once.
inline void set_cpu_memory_cache_limit(size_t bytes) { detail::CachingCpuAllocator::instance().set_limit(bytes); }

/// Gives every cached block back to the system (blocks in use stay).
inline void release_cached_cpu_memory() { detail::CachingCpuAllocator::instance().release_cached(); }

}  // namespace halsal
