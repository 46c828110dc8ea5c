// A minimal ZIP reader and writer for the archives torch.save writes (PyTorch >= 1.6): entries
// are stored (not compressed), sizes come from the central directory (torch sets the
// data-descriptor flag, so local headers hold zeros), ZIP64 records are understood. Every offset
// and length read from the file is checked against the file's size before use.
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/io/bytes.hpp"

namespace halsal::io {

/// One member of a ZIP archive, with where its (stored) bytes lie in the archive.
struct ZipEntry {
  std::string name;
  std::uint64_t data_offset = 0;  ///< first byte of the entry's data in the archive
  std::uint64_t size = 0;         ///< uncompressed size
  std::uint64_t compressed_size = 0;
  std::uint32_t crc32 = 0;
  std::uint16_t method = 0;  ///< 0 = stored; anything else is refused on read
};

/// True when `bytes` starts like a ZIP archive (a local file header).
inline bool looks_like_zip(ByteSpan bytes) {
  return bytes.size >= 4 && bytes.data[0] == 'P' && bytes.data[1] == 'K' && bytes.data[2] == 3 &&
         bytes.data[3] == 4;
}

/// Reads the central directory of an in-memory ZIP archive and hands out its stored entries.
class ZipReader {
 public:
  /// Parses `archive`; `origin` (the file name) prefixes every error message.
  ZipReader(ByteSpan archive, std::string origin) : bytes_(archive), origin_(std::move(origin)) {
    parse();
  }

  /// All entries, in central-directory order.
  const std::vector<ZipEntry>& entries() const { return entries_; }

  /// The entry called `name`, or nullptr.
  const ZipEntry* find(std::string_view name) const {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &entries_[it->second];
  }

  /// The bytes of a stored entry, checked against its CRC-32 when `verify` is set.
  ByteSpan data(const ZipEntry& e, bool verify = true) const {
    if (e.method != 0)
      throw error("entry '" + e.name + "' is compressed (method " + std::to_string(e.method) +
                  "); only stored entries, as torch.save writes them, are supported");
    ByteSpan d = bytes_.sub(e.data_offset, e.size);
    if (verify && crc32(d.data, d.size) != e.crc32)
      throw error("entry '" + e.name + "' is corrupted (CRC-32 mismatch)");
    return d;
  }

  /// The file name used in error messages.
  const std::string& origin() const { return origin_; }

 private:
  static constexpr std::uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50,
                                 kEndSig = 0x06054b50, kEnd64Sig = 0x06064b50,
                                 kEnd64LocatorSig = 0x07064b50;

  Error error(const std::string& what) const { return Error(origin_ + ": " + what); }

  std::uint16_t u16(std::uint64_t at) const {
    return detail::load_le<std::uint16_t>(bytes_.data + at);
  }
  std::uint32_t u32(std::uint64_t at) const {
    return detail::load_le<std::uint32_t>(bytes_.data + at);
  }
  std::uint64_t u64(std::uint64_t at) const {
    return detail::load_le<std::uint64_t>(bytes_.data + at);
  }

  void need(std::uint64_t at, std::uint64_t n, const char* what) const {
    if (!bytes_.contains(at, n))
      throw error(std::string("truncated or corrupt zip archive (") + what + " at byte " +
                  std::to_string(at) + " runs past the end of the " + std::to_string(bytes_.size) +
                  "-byte file)");
  }

  void parse() {
    if (bytes_.size < 22) throw error("too short to be a zip archive");
    // The end-of-central-directory record sits in the last 22 + 65535 (comment) bytes.
    const std::uint64_t lowest = bytes_.size > 22 + 0xFFFF ? bytes_.size - 22 - 0xFFFF : 0;
    std::uint64_t eocd = 0;
    bool found = false;
    for (std::uint64_t at = bytes_.size - 22 + 1; at-- > lowest;) {
      if (u32(at) == kEndSig && at + 22 + u16(at + 20) == bytes_.size) {
        eocd = at;
        found = true;
        break;
      }
    }
    if (!found) throw error("not a zip archive or truncated (no end-of-central-directory record)");

    std::uint64_t count = u16(eocd + 10), cd_size = u32(eocd + 12), cd_offset = u32(eocd + 16);
    if (u16(eocd + 4) != 0 || u16(eocd + 6) != 0)
      throw error("multi-disk zip archives are not supported");
    if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_offset == 0xFFFFFFFFu) {
      // ZIP64: a locator right before the classic record points at the 64-bit record.
      if (eocd < 20 || u32(eocd - 20) != kEnd64LocatorSig) throw error("ZIP64 locator missing");
      const std::uint64_t rec = u64(eocd - 20 + 8);
      need(rec, 56, "ZIP64 end record");
      if (u32(rec) != kEnd64Sig) throw error("bad ZIP64 end record signature");
      count = u64(rec + 32);
      cd_size = u64(rec + 40);
      cd_offset = u64(rec + 48);
    }
    need(cd_offset, cd_size, "central directory");
    // Each central record takes at least 46 bytes: caps what a forged count can make us reserve.
    if (count > cd_size / 46) throw error("central directory too small for its entry count");
    entries_.reserve(static_cast<std::size_t>(count));

    std::uint64_t at = cd_offset;
    const std::uint64_t end = cd_offset + cd_size;
    for (std::uint64_t i = 0; i < count; ++i) {
      if (at + 46 > end)
        throw error("central directory entry " + std::to_string(i) + " is truncated");
      if (u32(at) != kCentralSig)
        throw error("bad central directory signature at byte " + std::to_string(at));
      ZipEntry e;
      const std::uint16_t flags = u16(at + 8);
      e.method = u16(at + 10);
      e.crc32 = u32(at + 16);
      e.compressed_size = u32(at + 20);
      e.size = u32(at + 24);
      const std::uint64_t name_len = u16(at + 28), extra_len = u16(at + 30),
                          comment_len = u16(at + 32);
      std::uint64_t local = u32(at + 42);
      if (at + 46 + name_len + extra_len + comment_len > end)
        throw error("central directory entry " + std::to_string(i) + " is truncated");
      if (flags & 1u) throw error("encrypted zip entries are not supported");
      e.name.assign(reinterpret_cast<const char*>(bytes_.data + at + 46), name_len);
      // ZIP64 extended information: the 64-bit values for the fields saturated above.
      std::uint64_t x = at + 46 + name_len;
      const std::uint64_t x_end = x + extra_len;
      while (x + 4 <= x_end) {
        const std::uint16_t id = u16(x), len = u16(x + 2);
        if (x + 4 + len > x_end) throw error("bad extra field in entry '" + e.name + "'");
        if (id == 0x0001) {
          std::uint64_t p = x + 4;
          auto take = [&](std::uint64_t& field) {
            if (p + 8 > x + 4 + len) throw error("bad ZIP64 field in entry '" + e.name + "'");
            field = u64(p);
            p += 8;
          };
          if (e.size == 0xFFFFFFFFu) take(e.size);
          if (e.compressed_size == 0xFFFFFFFFu) take(e.compressed_size);
          if (local == 0xFFFFFFFFu) take(local);
        }
        x += 4 + len;
      }
      // The data follows the local header, whose name and extra lengths may differ from the
      // central record's (torch pads the local extra field to align the data to 64 bytes).
      need(local, 30, "local file header");
      if (u32(local) != kLocalSig)
        throw error("bad local header signature for entry '" + e.name + "'");
      e.data_offset = local + 30 + u16(local + 26) + u16(local + 28);
      if (e.method == 0 && e.compressed_size != e.size)
        throw error("stored entry '" + e.name + "' has different compressed and plain sizes");
      if (!bytes_.contains(e.data_offset, e.compressed_size))
        throw error("entry '" + e.name + "' (" + std::to_string(e.compressed_size) +
                    " bytes at offset " + std::to_string(e.data_offset) +
                    ") runs past the end of the file; truncated?");
      index_.emplace(e.name, entries_.size());
      entries_.push_back(std::move(e));
      at += 46 + name_len + extra_len + comment_len;
    }
  }

  ByteSpan bytes_;
  std::string origin_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

/// Writes a ZIP archive of stored entries, each aligned to 64 bytes like torch.save's (so that
/// readers may map tensors in place). Archives over 4 GiB are refused: halsal's models are small.
class ZipWriter {
 public:
  /// Writes into `sink`; `origin` names the output in error messages.
  ZipWriter(ByteSink& sink, std::string origin) : sink_(sink), origin_(std::move(origin)) {}

  /// Appends one stored entry.
  void add(const std::string& name, const void* data, std::size_t size) {
    const std::uint64_t offset = sink_.position();
    if (name.size() > 0xFFFF) throw Error(origin_ + ": zip entry name too long");
    // Pad the local extra field ("FB" id, as PyTorch does) so the data starts at a multiple of 64.
    const std::uint64_t header_end = offset + 30 + name.size() + 4;
    const std::uint64_t pad = (64 - header_end % 64) % 64;
    if (offset + 30 + name.size() + 4 + pad + size > 0xFFFFFFFFull)
      throw Error(origin_ + ": archive would exceed 4 GiB (ZIP64 writing is not supported)");
    const std::uint32_t crc = crc32(data, size);
    std::vector<std::uint8_t> h;
    detail::append_le<std::uint32_t>(h, 0x04034b50);
    detail::append_le<std::uint16_t>(h, 20);    // version needed
    detail::append_le<std::uint16_t>(h, 0);     // flags
    detail::append_le<std::uint16_t>(h, 0);     // stored
    detail::append_le<std::uint16_t>(h, 0);     // time
    detail::append_le<std::uint16_t>(h, 0x21);  // date: 1980-01-01
    detail::append_le<std::uint32_t>(h, crc);
    detail::append_le<std::uint32_t>(h, static_cast<std::uint32_t>(size));
    detail::append_le<std::uint32_t>(h, static_cast<std::uint32_t>(size));
    detail::append_le<std::uint16_t>(h, static_cast<std::uint16_t>(name.size()));
    detail::append_le<std::uint16_t>(h, static_cast<std::uint16_t>(4 + pad));
    h.insert(h.end(), name.begin(), name.end());
    detail::append_le<std::uint16_t>(h, 0x4246);  // "FB"
    detail::append_le<std::uint16_t>(h, static_cast<std::uint16_t>(pad));
    h.insert(h.end(), static_cast<std::size_t>(pad), 'Z');
    sink_.write(h.data(), h.size());
    if (size) sink_.write(data, size);
    central_.push_back({name, offset, size, crc});
  }

  /// Writes the central directory; the archive is complete afterwards.
  void finish() {
    const std::uint64_t cd_offset = sink_.position();
    std::vector<std::uint8_t> c;
    for (const auto& e : central_) {
      detail::append_le<std::uint32_t>(c, 0x02014b50);
      detail::append_le<std::uint16_t>(c, 20);  // version made by
      detail::append_le<std::uint16_t>(c, 20);  // version needed
      detail::append_le<std::uint16_t>(c, 0);
      detail::append_le<std::uint16_t>(c, 0);
      detail::append_le<std::uint16_t>(c, 0);
      detail::append_le<std::uint16_t>(c, 0x21);
      detail::append_le<std::uint32_t>(c, e.crc);
      detail::append_le<std::uint32_t>(c, static_cast<std::uint32_t>(e.size));
      detail::append_le<std::uint32_t>(c, static_cast<std::uint32_t>(e.size));
      detail::append_le<std::uint16_t>(c, static_cast<std::uint16_t>(e.name.size()));
      detail::append_le<std::uint16_t>(c, 0);  // extra
      detail::append_le<std::uint16_t>(c, 0);  // comment
      detail::append_le<std::uint16_t>(c, 0);  // disk
      detail::append_le<std::uint16_t>(c, 0);  // internal attributes
      detail::append_le<std::uint32_t>(c, 0);  // external attributes
      detail::append_le<std::uint32_t>(c, static_cast<std::uint32_t>(e.offset));
      c.insert(c.end(), e.name.begin(), e.name.end());
    }
    const std::uint64_t cd_size = c.size();
    if (central_.size() > 0xFFFF || cd_offset + cd_size > 0xFFFFFFFFull)
      throw Error(origin_ + ": archive too large for a classic zip directory");
    detail::append_le<std::uint32_t>(c, 0x06054b50);
    detail::append_le<std::uint16_t>(c, 0);  // this disk
    detail::append_le<std::uint16_t>(c, 0);  // directory's disk
    detail::append_le<std::uint16_t>(c, static_cast<std::uint16_t>(central_.size()));
    detail::append_le<std::uint16_t>(c, static_cast<std::uint16_t>(central_.size()));
    detail::append_le<std::uint32_t>(c, static_cast<std::uint32_t>(cd_size));
    detail::append_le<std::uint32_t>(c, static_cast<std::uint32_t>(cd_offset));
    detail::append_le<std::uint16_t>(c, 0);  // comment length
    sink_.write(c.data(), c.size());
  }

 private:
  struct Central {
    std::string name;
    std::uint64_t offset, size;
    std::uint32_t crc;
  };
  ByteSink& sink_;
  std::string origin_;
  std::vector<Central> central_;
};

}  // namespace halsal::io
