// Image decoding with stb_image (baseline and progressive JPEG, PNG, BMP), uint8 images,
// and writing PNG/JPEG/BMP. No LibTorch here (tensor.hpp converts), so the fuzzer and other
// light tools build without it. Every failure is a halsal::Error that names the file.
#pragma once
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/data/stb.hpp"
#include "halsal/io/bytes.hpp"  // io::AtomicFile

namespace halsal::data {

/// An 8-bit image in memory, rows top to bottom, channels interleaved (H x W x C; C = 3 or 1).
struct Image {
  int height = 0;
  int width = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;

  Image() = default;
  /// A zero-filled image.
  Image(int h, int w, int c = 3)
      : height(h), width(w), channels(c), pixels(static_cast<size_t>(h) * w * c, 0) {}
  bool empty() const { return pixels.empty(); }
  uint8_t* data() { return pixels.data(); }
  const uint8_t* data() const { return pixels.data(); }
  /// The value at row y, column x, channel c.
  uint8_t& at(int y, int x, int c = 0) {
    return pixels[(static_cast<size_t>(y) * width + x) * channels + c];
  }
  uint8_t at(int y, int x, int c = 0) const {
    return pixels[(static_cast<size_t>(y) * width + x) * channels + c];
  }
};

/// A non-owning view of H x W x C uint8 pixels (an Image, or an entry of the memory-mapped cache).
struct ImageView {
  const uint8_t* data = nullptr;
  int height = 0;
  int width = 0;
  int channels = 3;
  ImageView() = default;
  ImageView(const uint8_t* d, int h, int w, int c) : data(d), height(h), width(w), channels(c) {}
  ImageView(const Image& im)  // NOLINT: an Image is a view of itself
      : data(im.data()), height(im.height), width(im.width), channels(im.channels) {}
  bool empty() const { return data == nullptr || height <= 0 || width <= 0; }
  uint8_t at(int y, int x, int c = 0) const {
    return data[(static_cast<size_t>(y) * width + x) * channels + c];
  }
};

/// What the header of an image file says, read without decoding the pixels.
struct ImageInfo {
  int width = 0;
  int height = 0;
  int channels = 0;    ///< channels stored in the file (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA)
  std::string format;  ///< "jpeg", "png" or "bmp"
};

/// Limits that keep a hostile or damaged file from making halsal allocate more than it can justify.
struct DecodeLimits {
  uint64_t max_pixels = uint64_t{1} << 26;          ///< 67 megapixels at most, whatever the file
  uint64_t always_allowed_pixels = uint64_t{1} << 22;  ///< 4 MP: never refused for compression
  double max_pixels_per_byte = 1100;  ///< above 4 MP: deflate's best ratio is ~1032 : 1
};

namespace detail {

inline std::string hex_prefix(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < std::min<size_t>(n, 8); ++i) {
    if (i) s += ' ';
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

/// The container format from the first bytes; empty when it is none halsal decodes. stb would
/// also take TGA, whose header has no signature (random bytes must not decode as a picture), and
/// GIF, PSD, HDR and PNM, whose stb 2.27 decoders have known memory-safety bugs: halsal takes the
/// formats datasets use, JPEG, PNG and BMP, and no others.
inline std::string sniff_format(const uint8_t* p, size_t n) {
  if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return "jpeg";
  if (n >= 8 && std::memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) return "png";
  if (n >= 2 && p[0] == 'B' && p[1] == 'M') return "bmp";
  return {};
}

inline uint32_t le32(const uint8_t* p) {
  return p[0] | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

/// Walks every marker segment and entropy-coded scan of a JPEG. stb 2.27 (Debian's) trusts Huffman
/// tables with more than 256 codes, and scans that use a table never defined (it then reads
/// uninitialized memory); both crash it (fixed upstream in 2.28). This walk refuses such files,
/// and files that end before their end-of-image marker, before stb sees them.
/// With `header_only`, stops at the frame header (all that stbi_info parses; its Huffman tables
/// are checked too) and does not ask for the rest of the file.
inline std::string jpeg_problem(const uint8_t* p, size_t n, bool header_only = false) {
  size_t pos = 2;
  bool scan = false, progressive = false;
  unsigned defined[2] = {0, 0};  // bit t: DC (0) / AC (1) table t has been defined
  while (pos < n) {
    if (p[pos] != 0xFF) return "corrupt JPEG (bad marker structure)";
    while (pos < n && p[pos] == 0xFF) ++pos;
    if (pos >= n) break;
    const uint8_t m = p[pos++];
    if (m == 0xD9) return scan ? std::string() : "corrupt JPEG (end-of-image before any image data)";
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;
    if (m == 0x00) return "corrupt JPEG (bad marker structure)";
    if (pos + 2 > n) break;
    const size_t len = (size_t{p[pos]} << 8) | p[pos + 1];
    if (len < 2) return "corrupt JPEG (bad segment length)";
    if (m == 0xC4) {  // DHT: [class/id, 16 counts, symbols] repeated; checked even when the
                      // file ends inside it, since stb reads on (zeros past the end)
      size_t q = pos + 2;
      const size_t end = std::min(pos + len, n);
      while (q < end) {
        if ((p[q] >> 4) > 1 || (p[q] & 15) > 3) return "corrupt JPEG (bad Huffman table header)";
        size_t codes = 0;
        for (size_t i = 1; i <= 16 && q + i < end; ++i) codes += p[q + i];
        if (codes > 256) return "corrupt JPEG (Huffman table with more than 256 codes)";
        if (q + 17 > end) {
          if (pos + len > n) break;
          return "corrupt JPEG (short Huffman table)";
        }
        defined[p[q] >> 4] |= 1u << (p[q] & 15);
        q += 17 + codes;
        if (q > end && pos + len <= n) return "corrupt JPEG (Huffman table longer than its segment)";
      }
    }
    if (pos + len > n) break;
    if (header_only && (m == 0xC0 || m == 0xC1 || m == 0xC2)) return {};
    if (m == 0xC2) progressive = true;
    if (m == 0xDA) {  // SOS: Ns, Ns x (component, DC table << 4 | AC table), Ss, Se, Ah << 4 | Al
      const size_t ns = len >= 3 ? p[pos + 2] : 0;
      if (ns < 1 || ns > 4 || len != 6 + 2 * ns) return "corrupt JPEG (bad scan header)";
      const uint8_t ss = p[pos + 3 + 2 * ns], ah = p[pos + 5 + 2 * ns] >> 4;
      for (size_t c = 0; c < ns; ++c) {
        const uint8_t tables = p[pos + 4 + 2 * c], dc = tables >> 4, ac = tables & 15;
        if (dc > 3 || ac > 3) return "corrupt JPEG (bad Huffman table selector)";
        const bool uses_dc = !progressive || (ss == 0 && ah == 0), uses_ac = !progressive || ss > 0;
        if ((uses_dc && !(defined[0] >> dc & 1)) || (uses_ac && !(defined[1] >> ac & 1)))
          return "corrupt JPEG (a scan uses a Huffman table that was never defined)";
      }
    }
    pos += len;
    if (m == 0xDA) {  // entropy-coded data runs to the next marker that is not a stuffed byte or RSTn
      scan = true;
      while (pos + 1 < n && !(p[pos] == 0xFF && p[pos + 1] != 0x00 && !(p[pos + 1] >= 0xD0 && p[pos + 1] <= 0xD7)))
        ++pos;
      if (pos + 1 >= n) break;
    }
  }
  if (header_only) return {};
  return scan ? "truncated JPEG (no end-of-image marker)" : "truncated JPEG (no image data)";
}

/// stb fills a truncated JPEG or BMP with grey/black without complaint; PIL and torchvision
/// refuse such files, and so does halsal. Returns what is wrong, or empty.
inline std::string truncation_problem(const std::string& format, const uint8_t* p, size_t n) {
  if (format == "jpeg") return jpeg_problem(p, n);
  if (format == "png") {
    // Walk the chunks: stb sizes its buffers from the chunk lengths, so a length beyond the end
    // of the file must be refused before stb sees it.
    size_t pos = 8;
    while (pos + 12 <= n) {
      const size_t len = (size_t{p[pos]} << 24) | (size_t{p[pos + 1]} << 16) | (size_t{p[pos + 2]} << 8) | p[pos + 3];
      const std::string type(reinterpret_cast<const char*>(p + pos + 4), 4);
      if (len > n - pos - 12)
        return "truncated or corrupt PNG (chunk '" + type + "' claims " + std::to_string(len) + " bytes, " +
               std::to_string(n - pos - 12) + " left)";
      if (type == "IEND") return {};
      pos += 12 + len;
    }
    return "truncated PNG (no IEND chunk)";
  }
  if (format == "bmp") {
    if (n < 34) return "truncated BMP header";
    const uint32_t offset = le32(p + 10);
    const int32_t w = static_cast<int32_t>(le32(p + 18));
    const int32_t h = static_cast<int32_t>(le32(p + 22));
    const uint32_t bpp = p[28] | (uint32_t{p[29]} << 8);
    const uint32_t compression = le32(p + 30);
    if ((compression == 0 || compression == 3) && w > 0 && h != 0 && bpp > 0) {
      const uint64_t stride = (static_cast<uint64_t>(w) * bpp + 31) / 32 * 4;
      const uint64_t need = offset + stride * static_cast<uint64_t>(h < 0 ? -int64_t{h} : h);
      if (n < need)
        return "truncated BMP (" + std::to_string(n) + " bytes, the header needs " +
               std::to_string(need) + ")";
    }
  }
  return {};
}

}  // namespace detail

/// Reads a whole file; an Error naming it when it is missing or unreadable.
inline std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw file_error(path, halsal::detail::not_a_file(path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw file_error(path, "cannot read its size");
  in.seekg(0);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw file_error(path, "read failed");
  return bytes;
}

/// The header of encoded image bytes; `name` is the file named in errors.
inline ImageInfo image_info(const uint8_t* bytes, size_t size, const std::string& name,
                            const DecodeLimits& limits = {}) {
  if (size == 0) throw file_error(name, "empty file (0 bytes), not an image");
  if (size > static_cast<size_t>(INT32_MAX)) throw file_error(name, "too large for an image (> 2 GiB)");
  ImageInfo info;
  info.format = detail::sniff_format(bytes, size);
  if (info.format.empty())
    throw file_error(name, "not a JPEG, PNG or BMP image (first bytes: " +
                               detail::hex_prefix(bytes, size) + ")");
  if (info.format == "jpeg") {  // stbi_info builds the Huffman tables before the frame header
    const std::string problem = detail::jpeg_problem(bytes, size, /*header_only=*/true);
    if (!problem.empty()) throw file_error(name, problem);
  }
  if (!stbi_info_from_memory(bytes, static_cast<int>(size), &info.width, &info.height,
                             &info.channels)) {
    const char* why = stbi_failure_reason();
    throw file_error(name, "unreadable " + info.format + " header" +
                               (why ? std::string(" (") + why + ")" : std::string()));
  }
  if (info.width <= 0 || info.height <= 0)
    throw file_error(name, "image has no pixels (" + std::to_string(info.width) + "x" +
                               std::to_string(info.height) + ")");
  const uint64_t pixels = static_cast<uint64_t>(info.width) * static_cast<uint64_t>(info.height);
  const double justified = std::max(static_cast<double>(limits.always_allowed_pixels),
                                    limits.max_pixels_per_byte * static_cast<double>(size));
  if (pixels > limits.max_pixels || static_cast<double>(pixels) > justified)
    throw file_error(name, "claims " + std::to_string(info.width) + "x" +
                               std::to_string(info.height) + " pixels, more than a " +
                               std::to_string(size) + "-byte file can hold or halsal accepts");
  return info;
}

/// The header of an image file.
inline ImageInfo image_info(const std::filesystem::path& path, const DecodeLimits& limits = {}) {
  // Only the head is needed; 64 KiB holds any JPEG's SOF after EXIF/ICC segments in practice,
  // and the whole file is read when it is smaller.
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    throw file_error(path, std::filesystem::exists(path, ec) ? "cannot open" : "no such file");
  }
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(std::max<std::streamoff>(0, in.tellg()));
  in.seekg(0);
  std::vector<uint8_t> head(std::min<size_t>(size, 1 << 16));
  if (!head.empty() && !in.read(reinterpret_cast<char*>(head.data()), head.size()))
    throw file_error(path, "read failed");
  if (size > head.size()) {
    // Judge the pixel count against the full size, but parse only the head.
    ImageInfo info;
    try {
      info = image_info(head.data(), head.size(), path.string(),
                        DecodeLimits{limits.max_pixels, limits.always_allowed_pixels,
                                     limits.max_pixels_per_byte * size / head.size()});
    } catch (const Error&) {
      auto all = read_file_bytes(path);  // a header beyond 64 KiB: rare, read it all
      return image_info(all.data(), all.size(), path.string(), limits);
    }
    return info;
  }
  return image_info(head.data(), head.size(), path.string(), limits);
}

/// Decodes encoded bytes into an RGB image: grey is replicated, alpha is dropped (as PIL's
/// convert("RGB") and torchvision's read_image(mode=RGB) do). `name` is named in errors.
inline Image decode_image(const uint8_t* bytes, size_t size, const std::string& name,
                          const DecodeLimits& limits = {}) {
  const ImageInfo info = image_info(bytes, size, name, limits);
  const std::string trunc = detail::truncation_problem(info.format, bytes, size);
  if (!trunc.empty()) throw file_error(name, trunc);
  int w = 0, h = 0, c = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> px(
      stbi_load_from_memory(bytes, static_cast<int>(size), &w, &h, &c, 3), stbi_image_free);
  if (!px) {
    const char* why = stbi_failure_reason();
    throw file_error(name, "corrupt " + info.format + " data" +
                               (why ? std::string(" (") + why + ")" : std::string()));
  }
  if (w != info.width || h != info.height)
    throw file_error(name, "decoded size differs from the header's");
  Image im;
  im.height = h;
  im.width = w;
  im.channels = 3;
  im.pixels.assign(px.get(), px.get() + static_cast<size_t>(w) * h * 3);
  return im;
}

/// Decodes an image file into RGB (see the overload on bytes).
inline Image decode_image(const std::filesystem::path& path, const DecodeLimits& limits = {}) {
  const auto bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path.string(), limits);
}

/// Writes an image as PNG, JPEG (quality 1..100) or BMP, chosen by the file's extension.
inline void write_image(const std::filesystem::path& path, ImageView im, int jpeg_quality = 90) {
  if (im.empty()) throw file_error(path, "cannot write an empty image");
  auto ext = path.extension().string();
  for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  // Encoded in memory, then written atomically: stb's own file writer does not notice a failed
  // write (a full disk left an empty file and no error).
  std::string bytes;
  auto sink = [](void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<std::size_t>(size));
  };
  int ok = 0;
  if (ext == ".png")
    ok = stbi_write_png_to_func(sink, &bytes, im.width, im.height, im.channels, im.data, im.width * im.channels);
  else if (ext == ".jpg" || ext == ".jpeg")
    ok = stbi_write_jpg_to_func(sink, &bytes, im.width, im.height, im.channels, im.data, jpeg_quality);
  else if (ext == ".bmp")
    ok = stbi_write_bmp_to_func(sink, &bytes, im.width, im.height, im.channels, im.data);
  else
    throw file_error(path, "unknown image extension '" + ext + "' (use .png, .jpg or .bmp)");
  if (!ok) throw file_error(path, "could not encode the image");
  io::AtomicFile file(path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

/// True for the extensions halsal treats as image files in folder layouts.
inline bool has_image_extension(const std::filesystem::path& p) {
  auto ext = p.extension().string();
  for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

}  // namespace halsal::data
