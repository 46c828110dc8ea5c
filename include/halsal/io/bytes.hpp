// Byte-level plumbing shared by halsal's file readers and writers: bounds-checked views of
// memory-mapped files, little-endian decoding, CRC-32, and atomic (crash-safe) file writing.
// Deliberately free of LibTorch so that the zip and pickle fuzz targets build in seconds.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "halsal/core/error.hpp"

namespace halsal::io {

/// A read-only view of bytes (a whole file, or a part of one).
struct ByteSpan {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;

  /// True when the `n` bytes at `offset` lie inside the span (overflow-safe).
  bool contains(std::uint64_t offset, std::uint64_t n) const {
    return offset <= size && n <= size - offset;
  }
  /// The `n` bytes at `offset`; an empty span when they do not fit (check contains() first).
  ByteSpan sub(std::uint64_t offset, std::uint64_t n) const {
    return contains(offset, n) ? ByteSpan{data + offset, static_cast<std::size_t>(n)} : ByteSpan{};
  }
  /// The bytes as characters.
  std::string_view view() const { return {reinterpret_cast<const char*>(data), size}; }
};

namespace detail {

/// Reads a little-endian unsigned integer of `N` bytes; the caller has checked the bounds.
template <typename T, std::size_t N = sizeof(T)>
inline T load_le(const std::uint8_t* p) {
  T v = 0;
  for (std::size_t i = 0; i < N; ++i) v |= static_cast<T>(p[i]) << (8 * i);
  return v;
}

template <typename T, std::size_t N = sizeof(T)>
inline void store_le(std::uint8_t* p, T v) {
  for (std::size_t i = 0; i < N; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

template <typename T>
inline void append_le(std::vector<std::uint8_t>& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i)
    out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

/// Slicing-by-8 tables for the IEEE CRC-32 (the zip and PNG checksum).
inline const std::array<std::array<std::uint32_t, 256>, 8>& crc32_tables() {
  static const auto tables = [] {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (std::uint32_t i = 0; i < 256; ++i)
      for (std::size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFFu];
    return t;
  }();
  return tables;
}

}  // namespace detail

/// Continues an IEEE CRC-32 over `n` more bytes (start with crc = 0).
inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n) {
  const auto& t = detail::crc32_tables();
  const auto* p = static_cast<const std::uint8_t*>(data);
  crc = ~crc;
  while (n >= 8) {
    const std::uint32_t lo = detail::load_le<std::uint32_t>(p) ^ crc;
    const std::uint32_t hi = detail::load_le<std::uint32_t>(p + 4);
    crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
          t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) crc = t[0][(crc ^ *p++) & 0xFFu] ^ (crc >> 8);
  return ~crc;
}

/// The IEEE CRC-32 of a block of bytes.
inline std::uint32_t crc32(const void* data, std::size_t n) {
  return crc32_update(0, data, n);
}

/// A whole file mapped read-only into memory; readers parse it through `bytes()`.
class MappedFile {
 public:
  /// Maps `path`; a missing, unreadable or empty file is a halsal::Error naming it.
  explicit MappedFile(std::filesystem::path path) : path_(std::move(path)) {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw file_error(path_, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw file_error(path_, halsal::detail::not_a_file(path_));
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ == 0) {
      ::close(fd);
      throw file_error(path_, "file is empty (0 bytes)");
    }
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) throw file_error(path_, std::string("cannot map: ") + std::strerror(err));
    data_ = static_cast<const std::uint8_t*>(p);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
  }

  /// The mapped bytes.
  ByteSpan bytes() const { return {data_, size_}; }
  /// The file's path, for error messages.
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Where writers put bytes: a file being written atomically, or memory.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  /// Appends `n` bytes.
  virtual void write(const void* data, std::size_t n) = 0;
  /// Bytes written so far.
  virtual std::uint64_t position() const = 0;
};

/// A ByteSink that collects the bytes in memory (tests, fuzzers, small files).
class VectorSink : public ByteSink {
 public:
  void write(const void* data, std::size_t n) override {
    const auto* p = static_cast<const std::uint8_t*>(data);
    bytes.insert(bytes.end(), p, p + n);
  }
  std::uint64_t position() const override { return bytes.size(); }
  std::vector<std::uint8_t> bytes;
};

/// Writes a file so that readers only ever see the old content or the complete new one: the
/// bytes go to a temporary file in the same folder (".NAME.tmp-PID-N"), which commit() fsyncs
/// and renames over NAME, then fsyncs the folder. Without commit() (an exception, a crash) the
/// target is untouched; the destructor removes the temporary file, and the temporary files of a
/// killed writer are removed by the next AtomicFile opened in the same folder.
class AtomicFile : public ByteSink {
 public:
  /// Opens the temporary file beside `target`; the folder must exist.
  explicit AtomicFile(std::filesystem::path target) : target_(std::move(target)) {
    static std::atomic<unsigned> counter{0};
    auto dir = target_.parent_path();
    if (dir.empty()) dir = ".";
    remove_stale_temps(dir);
    temp_ = dir / ("." + target_.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                   std::to_string(counter++));
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw file_error(target_, std::string("cannot create temporary file ") + temp_.string() +
                                    ": " + std::strerror(errno));
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() override {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(temp_.c_str());
    }
  }

  void write(const void* data, std::size_t n) override {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("write failed");
      p += w;
      n -= static_cast<std::size_t>(w);
      written_ += static_cast<std::uint64_t>(w);
    }
  }
  std::uint64_t position() const override { return written_; }

  /// Overwrites already-written bytes at `offset` (used to fill in a checksum at the end).
  void patch(std::uint64_t offset, const void* data, std::size_t n) {
    if (offset > written_ || n > written_ - offset) throw file_error(target_, "patch out of range");
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("write failed");
      p += w;
      offset += static_cast<std::uint64_t>(w);
      n -= static_cast<std::size_t>(w);
    }
  }

  /// Makes the new content durable and visible under the target name.
  void commit() {
    if (::fsync(fd_) != 0) fail("fsync failed");
    if (::close(fd_) != 0) {
      fd_ = -1;
      ::unlink(temp_.c_str());
      throw file_error(target_, std::string("close failed: ") + std::strerror(errno));
    }
    fd_ = -1;
    if (::rename(temp_.c_str(), target_.c_str()) != 0) {
      const int err = errno;
      ::unlink(temp_.c_str());
      throw file_error(target_, std::string("rename failed: ") + std::strerror(err));
    }
    // The rename itself must reach the disk too, or a crash could bring back the old name.
    auto dir = target_.parent_path();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }

  /// The temporary file's path (tests use it to simulate a crash).
  const std::filesystem::path& temp_path() const { return temp_; }

  /// Removes the temporary files in `dir` that a killed writer left (".NAME.tmp-PID-N" whose
  /// process no longer exists); a live writer's are kept. Never throws.
  /// Each folder is scanned once per process (a writer of many files into one folder pays once).
  static void remove_stale_temps(const std::filesystem::path& dir) {
    {
      static std::mutex mutex;
      static std::set<std::string> scanned;
      std::lock_guard<std::mutex> lock(mutex);
      if (!scanned.insert(dir.lexically_normal().string()).second) return;
    }
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      const auto at = name.rfind(".tmp-");
      if (name.empty() || name[0] != '.' || at == std::string::npos) continue;
      const std::string rest = name.substr(at + 5);  // PID-N
      const auto dash = rest.find('-');
      if (dash == 0 || dash == std::string::npos || dash > 9 ||
          rest.find_first_not_of("0123456789-") != std::string::npos)
        continue;
      const auto pid = static_cast<pid_t>(std::stol(rest.substr(0, dash)));
      if (pid > 0 && pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) ::unlink(it->path().c_str());
    }
  }

 private:
  [[noreturn]] void fail(const char* what) {
    throw file_error(target_, std::string(what) + ": " + std::strerror(errno));
  }

  std::filesystem::path target_, temp_;
  int fd_ = -1;
  std::uint64_t written_ = 0;
};

/// True when `name` looks like a temporary file left by AtomicFile (".NAME.tmp-...").
inline bool is_atomic_temp_name(const std::string& name) {
  return !name.empty() && name[0] == '.' && name.find(".tmp-") != std::string::npos;
}

/// Writes `bytes` to `path` atomically (AtomicFile: temp file, fsync, rename); creates parents.
inline void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  std::error_code ec;
  if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) throw file_error(path, "cannot create the folder: " + ec.message());
  }
  AtomicFile file(path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

}  // namespace halsal::io
