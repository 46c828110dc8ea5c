// An on-disk cache of decoded, resized uint8 images, memory-mapped: epochs after the first read
// pixels straight from the page cache instead of decoding JPEGs again. The file is written under
// a temporary name and renamed, and checked (size, header and index checksums, dataset
// fingerprint) every time it is opened: a stale, truncated or damaged cache is rebuilt, or
// reported as an Error naming the file.
#pragma once
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/data/dataset.hpp"
#include "halsal/data/image.hpp"
#include "halsal/data/rng.hpp"
#include "halsal/data/transforms.hpp"

namespace halsal::data {

/// Options of the decoded-image cache.
struct CacheOptions {
  int shorter_side = 256;  ///< images are stored with this shorter side (never enlarged)
  OnBadFile on_bad_file = OnBadFile::error;
  int threads = 0;               ///< decoding threads for the build; 0 = one per core
  bool rebuild_if_invalid = true;  ///< a stale or damaged file is rebuilt (false: an Error)
  bool quiet = false;            ///< no progress or warnings on stderr
};

namespace detail {

struct CacheHeader {
  char magic[8];
  uint32_t version;
  uint32_t shorter_side;
  uint64_t count;
  uint64_t fingerprint;
  uint64_t file_size;
  uint64_t index_checksum;
  uint64_t reserved;
  uint64_t header_checksum;  // of the 56 bytes before it
};
static_assert(sizeof(CacheHeader) == 64, "cache header layout");

struct CacheEntry {
  uint64_t offset;  // of the RGB pixels; the 1-channel mask follows when flags & 1
  uint32_t height;
  uint32_t width;
  uint32_t flags;   // 1: has mask, 2: bad file (left out under OnBadFile::skip)
  uint32_t reserved;
  uint64_t reserved2;
};
static_assert(sizeof(CacheEntry) == 32, "cache entry layout");

constexpr char kCacheMagic[8] = {'H', 'A', 'L', 'S', 'A', 'L', 'C', '1'};
constexpr uint32_t kCacheVersion = 1;

inline uint64_t entry_bytes(const CacheEntry& e) {
  return uint64_t{e.height} * e.width * (3 + ((e.flags & 1) ? 1 : 0));
}

/// The dims a sample is stored at (shorter side reduced to `side`, never enlarged).
inline std::pair<int, int> cached_dims(int h, int w, int side) {
  if (std::min(h, w) <= side) return {h, w};
  return shorter_side_size(h, w, side);
}

}  // namespace detail

/// A fingerprint of what the cache holds: the dataset's samples and files (size, mtime), the
/// generator, and the stored size. A different fingerprint means a stale cache.
inline uint64_t cache_fingerprint(const Dataset& d, int shorter_side) {
  std::string s = d.layout + "|" + d.root.generic_string() + "|" + std::to_string(d.size()) + "|" +
                  std::to_string(shorter_side) + "|" + (d.crop_to_box ? "box" : "full") + "|" +
                  (d.generator ? d.generator->describe() : std::string());
  uint64_t h = fnv1a(s.data(), s.size());
  for (size_t i = 0; i < d.size(); ++i) {
    const auto& smp = d.samples[i];
    std::string k = smp.file.generic_string() + "|" + std::to_string(smp.label) + "|" + smp.mask.generic_string();
    if (d.crop_to_box && smp.box)
      k += "|" + std::to_string(smp.box->x) + "," + std::to_string(smp.box->y) + "," + std::to_string(smp.box->w) +
           "," + std::to_string(smp.box->h);
    if (!smp.file.empty()) {
      struct stat st {};
      if (::stat(smp.file.c_str(), &st) == 0)
        k += "|" + std::to_string(st.st_size) + "|" + std::to_string(st.st_mtime);
    }
    h = fnv1a(k.data(), k.size(), h);
  }
  return h;
}

/// Where caches go by default: $HALSAL_CACHE_DIR, else $XDG_CACHE_HOME/halsal/images, else
/// ~/.cache/halsal/images.
inline std::filesystem::path default_cache_dir() {
  if (const char* d = std::getenv("HALSAL_CACHE_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::filesystem::path(x) / "halsal" / "images";
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::filesystem::path(home) / ".cache" / "halsal" / "images";
  return std::filesystem::temp_directory_path() / "halsal-images";
}

/// The default cache file of a dataset: <dir>/<layout>-<fingerprint>-s<side>.hcache.
inline std::filesystem::path default_cache_path(const Dataset& d, const CacheOptions& o = {}) {
  char name[96];
  std::snprintf(name, sizeof name, "%s-%016llx-s%d.hcache", d.layout.c_str(),
                static_cast<unsigned long long>(cache_fingerprint(d, o.shorter_side)), o.shorter_side);
  return default_cache_dir() / name;
}

/// A memory-mapped cache of decoded images, one entry per dataset sample.
class ImageCache {
 public:
  ImageCache(const ImageCache&) = delete;
  ImageCache& operator=(const ImageCache&) = delete;
  ~ImageCache() {
    if (map_ && map_ != MAP_FAILED) ::munmap(map_, size_);
  }

  /// Opens `file` if it is a valid cache of `d`; otherwise builds it (or, with
  /// rebuild_if_invalid = false, throws an Error saying what is wrong with the file).
  static std::shared_ptr<ImageCache> open_or_build(const Dataset& d, const std::filesystem::path& file,
                                                   const CacheOptions& o = {}) {
    const uint64_t fp = cache_fingerprint(d, o.shorter_side);
    if (detail::path_exists(file)) {
      std::string why;
      auto c = try_open(file, d.size(), fp, o.shorter_side, why);
      if (c) return c;
      if (!o.rebuild_if_invalid) throw file_error(file, "not a usable image cache: " + why);
      if (!o.quiet) std::cerr << "halsal: " << file.string() << ": " << why << "; rebuilding the cache\n";
    }
    build(d, file, o);
    std::string why;
    auto c = try_open(file, d.size(), fp, o.shorter_side, why);
    if (!c) throw file_error(file, "the cache just written does not read back: " + why);
    return c;
  }

  /// open_or_build at default_cache_path(d, o).
  static std::shared_ptr<ImageCache> open_or_build(const Dataset& d, const CacheOptions& o = {}) {
    return open_or_build(d, default_cache_path(d, o), o);
  }

  /// Opens an existing cache of `d`; an Error naming the file when it is missing, stale or damaged.
  static std::shared_ptr<ImageCache> open(const Dataset& d, const std::filesystem::path& file, int shorter_side = 256) {
    std::string why;
    auto c = try_open(file, d.size(), cache_fingerprint(d, shorter_side), shorter_side, why);
    if (!c) throw file_error(file, "not a usable image cache: " + why);
    return c;
  }

  /// Decodes every sample of `d` (in parallel) into a new cache file at `file`.
  static void build(const Dataset& d, const std::filesystem::path& file, const CacheOptions& o = {},
                    const std::function<void(size_t, size_t)>& progress = {}) {
    using detail::CacheEntry;
    using detail::CacheHeader;
    const size_t n = d.size();
    // 1. The stored size of every sample, from headers only, so the file can be laid out first.
    std::vector<CacheEntry> index(n);
    std::vector<std::string> bad(n);
    {
      std::atomic<size_t> next{0};
      auto work = [&] {
        for (size_t i; (i = next++) < n;) {
          auto& e = index[i];
          std::memset(&e, 0, sizeof e);
          try {
            int h = 0, w = 0;
            bool mask = false;
            if (d.generator || (d.crop_to_box && d.samples[i].box)) {
              // Rendered or cropped: sizes are known only after loading (cheap for synthetic;
              // box crops are recomputed below from the header for files).
              if (d.generator) {
                auto ls = load_sample(d, i);
                h = ls.image.height;
                w = ls.image.width;
                mask = !ls.mask.empty();
              } else {
                const auto info = image_info(d.samples[i].file, d.limits);
                const auto& b = *d.samples[i].box;
                const int x0 = std::clamp(static_cast<int>(std::floor(b.x)), 0, info.width - 1);
                const int y0 = std::clamp(static_cast<int>(std::floor(b.y)), 0, info.height - 1);
                w = std::clamp(static_cast<int>(std::ceil(b.x + b.w)), x0 + 1, info.width) - x0;
                h = std::clamp(static_cast<int>(std::ceil(b.y + b.h)), y0 + 1, info.height) - y0;
                mask = !d.samples[i].mask.empty();
              }
            } else {
              const auto info = image_info(d.samples[i].file, d.limits);
              h = info.height;
              w = info.width;
              mask = !d.samples[i].mask.empty();
            }
            auto [ch, cw] = detail::cached_dims(h, w, o.shorter_side);
            e.height = static_cast<uint32_t>(ch);
            e.width = static_cast<uint32_t>(cw);
            e.flags = mask ? 1u : 0u;
          } catch (const std::exception& ex) {
            bad[i] = ex.what();
            e.flags = 2;
          }
        }
      };
      run_threads(o.threads, n, work);
    }
    BadFileLog log{o, {}};
    for (size_t i = 0; i < n; ++i)
      if (!bad[i].empty()) log.report(bad[i]);
    // 2. Lay out: header, index, then the pixels (64-byte aligned).
    uint64_t offset = sizeof(CacheHeader) + uint64_t{n} * sizeof(CacheEntry);
    for (auto& e : index) {
      offset = (offset + 63) / 64 * 64;
      e.offset = offset;
      offset += detail::entry_bytes(e);
    }
    const uint64_t total = std::max<uint64_t>(offset, sizeof(CacheHeader));
    if (file.has_parent_path()) {
      std::error_code ec;
      std::filesystem::create_directories(file.parent_path(), ec);
    }
    const std::filesystem::path tmp = file.string() + ".tmp." + std::to_string(::getpid());
    int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) throw file_error(tmp, std::string("cannot create the cache file: ") + std::strerror(errno));
    struct Cleanup {
      int fd;
      std::filesystem::path tmp;
      void* map = nullptr;
      size_t size = 0;
      bool keep = false;
      ~Cleanup() {
        if (map && map != MAP_FAILED) ::munmap(map, size);
        if (fd >= 0) ::close(fd);
        if (!keep) {
          std::error_code ec;
          std::filesystem::remove(tmp, ec);
        }
      }
    } guard{fd, tmp};
    if (::ftruncate(fd, static_cast<off_t>(total)) != 0)
      throw file_error(tmp, std::string("cannot size the cache file (disk full?): ") + std::strerror(errno));
    // Reserve the blocks now: writing through the mapping into a sparse file on a full disk is a
    // SIGBUS, not an error. (File systems without fallocate keep the sparse file.)
    if (const int err = ::posix_fallocate(fd, 0, static_cast<off_t>(total));
        err != 0 && err != EOPNOTSUPP && err != EINVAL && err != ENOSYS)
      throw file_error(file, "cannot reserve " + std::to_string(total) + " bytes for the cache (disk full?): " +
                                 std::strerror(err));
    void* map = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) throw file_error(tmp, std::string("cannot map the cache file: ") + std::strerror(errno));
    guard.map = map;
    guard.size = total;
    auto* base = static_cast<uint8_t*>(map);
    // 3. Decode and resize in parallel, each worker writing its entries in place.
    std::atomic<size_t> next{0}, done{0};
    std::vector<std::string> failed(n);
    auto work = [&] {
      for (size_t i; (i = next++) < n;) {
        auto& e = index[i];
        if (e.flags & 2) continue;
        try {
          auto ls = load_sample(d, i);
          const auto [ch, cw] = detail::cached_dims(ls.image.height, ls.image.width, o.shorter_side);
          if (static_cast<uint32_t>(ch) != e.height || static_cast<uint32_t>(cw) != e.width ||
              ((e.flags & 1) != 0) != !ls.mask.empty())
            throw Error(d.key(i) + ": decoded size differs from the header's");
          const Image im = (ch == ls.image.height && cw == ls.image.width) ? std::move(ls.image)
                                                                          : resize(ls.image, ch, cw);
          std::memcpy(base + e.offset, im.data(), im.pixels.size());
          if (e.flags & 1) {
            const Image m = (ch == ls.mask.height && cw == ls.mask.width) ? std::move(ls.mask) : resize(ls.mask, ch, cw);
            std::memcpy(base + e.offset + im.pixels.size(), m.data(), m.pixels.size());
          }
        } catch (const std::exception& ex) {
          failed[i] = ex.what();
          if (o.on_bad_file == OnBadFile::error) next = n;  // stop the others early
        }
        const size_t k = ++done;
        if (progress) progress(k, n);
      }
    };
    run_threads(o.threads, n, work);
    for (size_t i = 0; i < n; ++i)
      if (!failed[i].empty()) {
        log.report(failed[i]);  // throws under OnBadFile::error
        index[i].flags = 2;
      }
    // 4. Index, then the header last: a file without a valid header is never mistaken for a cache.
    std::memcpy(base + sizeof(CacheHeader), index.data(), n * sizeof(CacheEntry));
    CacheHeader hdr{};
    std::memcpy(hdr.magic, detail::kCacheMagic, 8);
    hdr.version = detail::kCacheVersion;
    hdr.shorter_side = static_cast<uint32_t>(o.shorter_side);
    hdr.count = n;
    hdr.fingerprint = cache_fingerprint(d, o.shorter_side);
    hdr.file_size = total;
    hdr.index_checksum = fnv1a(index.data(), n * sizeof(CacheEntry));
    hdr.header_checksum = fnv1a(&hdr, offsetof(CacheHeader, header_checksum));
    std::memcpy(base, &hdr, sizeof hdr);
    if (::msync(map, total, MS_SYNC) != 0) throw file_error(tmp, std::string("msync failed: ") + std::strerror(errno));
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec);
    if (ec) throw file_error(file, "cannot move the finished cache into place: " + ec.message());
    guard.keep = true;
  }

  /// Entries (= dataset samples).
  size_t size() const { return count_; }
  /// False for a sample left out as a bad file.
  bool ok(size_t i) const { return !(entry(i).flags & 2); }
  /// The stored RGB pixels of sample i (valid while the cache lives).
  ImageView image(size_t i) const {
    const auto& e = entry(i);
    if (e.flags & 2) return {};
    return {base() + e.offset, static_cast<int>(e.height), static_cast<int>(e.width), 3};
  }
  /// The stored mask of sample i, or an empty view.
  ImageView mask(size_t i) const {
    const auto& e = entry(i);
    if (!(e.flags & 1) || (e.flags & 2)) return {};
    return {base() + e.offset + uint64_t{e.height} * e.width * 3, static_cast<int>(e.height),
            static_cast<int>(e.width), 1};
  }
  /// The fingerprint of the dataset the cache was built from.
  uint64_t fingerprint() const { return header().fingerprint; }
  int shorter_side() const { return static_cast<int>(header().shorter_side); }
  size_t bytes() const { return size_; }
  const std::filesystem::path& file() const { return file_; }

 private:
  ImageCache() = default;

  struct BadFileLog {
    const CacheOptions& o;
    std::vector<std::string> seen;
    void report(const std::string& m) {
      if (o.on_bad_file == OnBadFile::error) throw Error(m);
      if (!o.quiet) std::cerr << "halsal: warning: " << m << " (skipped)\n";
      seen.push_back(m);
    }
  };

  template <class F>
  static void run_threads(int threads, size_t n, F& work) {
    int t = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    t = static_cast<int>(std::min<size_t>(static_cast<size_t>(t), std::max<size_t>(1, n)));
    std::vector<std::thread> pool;
    for (int k = 1; k < t; ++k) pool.emplace_back([&] { work(); });
    work();
    for (auto& th : pool) th.join();
  }

  const uint8_t* base() const { return static_cast<const uint8_t*>(map_); }
  const detail::CacheHeader& header() const { return *static_cast<const detail::CacheHeader*>(map_); }
  const detail::CacheEntry& entry(size_t i) const {
    if (i >= count_) throw Error(file_.string() + ": cache entry " + std::to_string(i) + " out of range");
    return reinterpret_cast<const detail::CacheEntry*>(base() + sizeof(detail::CacheHeader))[i];
  }

  /// Maps and checks a cache file; nullptr with the reason in `why` when unusable.
  static std::shared_ptr<ImageCache> try_open(const std::filesystem::path& file, size_t count, uint64_t fp, int side,
                                              std::string& why) {
    using detail::CacheEntry;
    using detail::CacheHeader;
    int fd = ::open(file.c_str(), O_RDONLY);
    if (fd < 0) {
      why = std::string("cannot open: ") + std::strerror(errno);
      return nullptr;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(CacheHeader))) {
      ::close(fd);
      why = "truncated (" + std::to_string(st.st_size) + " bytes, shorter than the header)";
      return nullptr;
    }
    const size_t size = static_cast<size_t>(st.st_size);
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) {
      why = std::string("cannot map: ") + std::strerror(errno);
      return nullptr;
    }
    std::shared_ptr<ImageCache> c(new ImageCache());
    c->map_ = map;
    c->size_ = size;
    c->file_ = file;
    const auto& h = c->header();
    if (std::memcmp(h.magic, detail::kCacheMagic, 8) != 0) {
      why = "not a halsal image cache (bad magic)";
    } else if (h.version != detail::kCacheVersion) {
      why = "cache format version " + std::to_string(h.version) + ", expected " + std::to_string(detail::kCacheVersion);
    } else if (h.header_checksum != fnv1a(&h, offsetof(CacheHeader, header_checksum))) {
      why = "damaged header (checksum mismatch)";
    } else if (h.file_size != size) {
      why = "truncated or extended: " + std::to_string(size) + " bytes, the header says " + std::to_string(h.file_size);
    } else if (h.count != count || h.fingerprint != fp || static_cast<int>(h.shorter_side) != side) {
      why = "stale: built for another version of the dataset or another image size";
    } else if ((size - sizeof(CacheHeader)) / sizeof(CacheEntry) < h.count) {
      why = "truncated index";
    } else if (h.index_checksum != fnv1a(c->base() + sizeof(CacheHeader), h.count * sizeof(CacheEntry))) {
      why = "damaged index (checksum mismatch)";
    } else {
      c->count_ = static_cast<size_t>(h.count);
      const uint64_t data_start = sizeof(CacheHeader) + h.count * sizeof(CacheEntry);
      for (size_t i = 0; i < c->count_ && why.empty(); ++i) {
        const auto& e = c->entry(i);
        if (e.flags & 2) continue;
        if (e.height == 0 || e.width == 0 || e.height > 65535 || e.width > 65535 || e.offset < data_start ||
            e.offset > size || detail::entry_bytes(e) > size - e.offset)
          why = "entry " + std::to_string(i) + " points outside the file";
      }
    }
    if (!why.empty()) return nullptr;
    return c;
  }

  void* map_ = nullptr;
  size_t size_ = 0;
  size_t count_ = 0;
  std::filesystem::path file_;
};

}  // namespace halsal::data
