// Reading MATLAB .mat files (v5 and v7.3) with libmatio: the few shapes the official dataset
// releases use (numeric vectors, cell arrays of strings, struct arrays of annotations).
#pragma once
#include <matio.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/data/image.hpp"  // read_file_bytes

namespace halsal::data::mat {

namespace detail {

/// matio's last log message on this thread; matio's default logger prints to stderr instead.
inline std::string& last_message() {
  static thread_local std::string msg;
  return msg;
}
inline void quiet_log(int, char* message) { last_message() = message ? message : ""; }
inline void install_logger() {
  static const bool done = (Mat_LogInitFunc("halsal", &quiet_log), true);
  (void)done;
}

struct FileCloser {
  void operator()(mat_t* m) const { Mat_Close(m); }
};
struct VarFree {
  void operator()(matvar_t* v) const { Mat_VarFree(v); }
};
using FilePtr = std::unique_ptr<mat_t, FileCloser>;
using VarPtr = std::unique_ptr<matvar_t, VarFree>;

// ---- a structural check before matio sees the file ------------------------------------------
// matio sizes its allocations by the dimensions a file declares and only then finds that the
// data is not there (a damaged 2 KB file made it ask for 120 GB). So every variable's layout is
// walked first -- tags, dimensions, cells, struct fields, compressed elements inflated with a
// bound -- and each count is checked against the bytes that could hold it.

/// A MAT v5 data element's walker over one buffer (the file, or an inflated miCOMPRESSED).
class Mat5Check {
 public:
  Mat5Check(const std::filesystem::path& file, bool swap) : file_(file), swap_(swap) {}

  /// Checks the data elements in bytes [begin, end) of `buf`.
  void elements(const uint8_t* buf, size_t size, int depth) {
    size_t pos = 0;
    while (pos < size) {
      if (size - pos < 8) fail("a data element's tag is cut off");
      const Tag t = tag(buf + pos, size - pos);
      const uint8_t* body = buf + pos + t.header;
      if (t.type == kCompressed) {
        if (depth > 0) fail("a compressed element inside another element");
        const auto plain = inflate_bounded(body, t.bytes);
        // matio's own writer declares the matrices inside a compressed element longer than they
        // are (and reads them back element by element): there, a matrix's extent is what its
        // parts add up to, and every count is still checked against the bytes present.
        inflated_ = true;
        elements(plain.data(), plain.size(), depth + 1);
        inflated_ = false;
        pos += t.header + padded(t);
      } else if (t.type == kMatrix) {
        // A variable always has flags, dimensions and a name; matio reads them after the tag
        // whatever length the tag declares, so a variable of 0 bytes would be read from the
        // elements that follow it (a fuzzed file made matio ask for 10 GB that way).
        if (t.bytes == 0) fail("a variable of 0 bytes (its flags, dimensions and name are missing)");
        pos += t.header + nested(t, body, buf + size, depth + 1);
      } else {  // other top-level element types are ignored by matio too
        pos += t.header + padded(t);
      }
    }
  }

 private:
  static constexpr uint32_t kInt8 = 1, kInt32 = 5, kUInt32 = 6, kMatrix = 14, kCompressed = 15;
  static constexpr int kMaxDepth = 32;
  struct Tag {
    uint32_t type = 0;
    size_t bytes = 0;   ///< the data's length
    size_t header = 8;  ///< 4 for a small data element (data packed into the tag's second word)
  };

  [[noreturn]] void fail(const std::string& what) const {
    throw file_error(file_, "damaged .mat file: " + what);
  }
  uint32_t u32(const uint8_t* p) const {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return swap_ ? __builtin_bswap32(v) : v;
  }
  Tag tag(const uint8_t* p, size_t avail) const {
    Tag t;
    const uint32_t first = u32(p);
    if (first >> 16) {  // small data element: type in the low half, length in the high half
      t.type = first & 0xffff;
      t.bytes = first >> 16;
      t.header = 4;
      if (t.bytes > 4) fail("a small data element longer than 4 bytes");
      return t;
    }
    t.type = first;
    t.bytes = u32(p + 4);
    if (inflated_ && t.type == kMatrix) return t;  // see nested()
    if (t.bytes > avail - 8) fail("a data element of " + std::to_string(t.bytes) + " bytes where " +
                                  std::to_string(avail - 8) + " remain");
    return t;
  }
  /// The bytes an element occupies after its tag (data padded to 8 bytes, except compressed).
  static size_t padded(const Tag& t) {
    if (t.header == 4) return 4;
    if (t.type == kCompressed) return t.bytes;
    return (t.bytes + 7) / 8 * 8;
  }
  /// Like padded(), but never past the end of the parent (the last element may omit padding).
  static size_t advance(const Tag& t, size_t left) { return std::min(left, t.header + padded(t)); }

  static size_t type_size(uint32_t type) {
    switch (type) {
      case 1: case 2: case 16: return 1;          // int8, uint8, utf8
      case 3: case 4: case 17: return 2;          // int16, uint16, utf16
      case 5: case 6: case 7: case 18: return 4;  // int32, uint32, single, utf32
      case 9: case 12: case 13: return 8;         // double, int64, uint64
      default: return 0;
    }
  }

  std::vector<uint8_t> inflate_bounded(const uint8_t* data, size_t n) const {
    // zlib's best ratio is about 1032:1; and no variable halsal reads is near 256 MiB.
    const size_t limit = std::min<size_t>(size_t{256} << 20, n * 1032 + 1024);
    std::vector<uint8_t> out;
    z_stream z{};
    if (inflateInit(&z) != Z_OK) fail("zlib cannot start");
    z.next_in = const_cast<Bytef*>(data);
    z.avail_in = static_cast<uInt>(std::min<size_t>(n, UINT32_MAX));
    int rc = Z_OK;
    uint8_t chunk[16384];
    while (rc == Z_OK) {
      z.next_out = chunk;
      z.avail_out = sizeof chunk;
      rc = inflate(&z, Z_NO_FLUSH);
      const size_t got = sizeof chunk - z.avail_out;
      if (out.size() + got > limit) {
        inflateEnd(&z);
        fail("a compressed element inflates past " + std::to_string(limit) + " bytes");
      }
      out.insert(out.end(), chunk, chunk + got);
      if (rc == Z_BUF_ERROR && z.avail_in == 0) break;  // input ended before the stream did
      if (rc == Z_OK && got == 0 && z.avail_in == 0) break;
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END) fail("a compressed element does not inflate (zlib error " + std::to_string(rc) + ")");
    return out;
  }

  /// Checks the miMATRIX element with tag `t` whose data starts at `body` (the buffer ends at
  /// `end`); returns the bytes it occupies after its tag.
  size_t nested(const Tag& t, const uint8_t* body, const uint8_t* end, int depth) {
    if (t.bytes == 0) return 0;  // an empty matrix (e.g. an unset cell or field)
    if (!inflated_) {
      matrix(body, t.bytes, depth);
      return padded(t);
    }
    return (matrix(body, static_cast<size_t>(end - body), depth) + 7) / 8 * 8;
  }

  /// One miMATRIX element's contents: flags, dimensions, name, then what its class holds.
  /// Returns the bytes its parts occupy.
  size_t matrix(const uint8_t* p, size_t size, int depth) {
    if (depth > kMaxDepth) fail("nested deeper than " + std::to_string(kMaxDepth) + " levels");
    size_t pos = 0;
    auto next = [&](const char* what) {
      if (size - pos < 8) fail(std::string("a matrix's ") + what + " is cut off");
      Tag t = tag(p + pos, size - pos);
      const uint8_t* body = p + pos + t.header;
      pos += advance(t, size - pos);
      return std::make_pair(t, body);
    };
    const auto [flags, flag_data] = next("array flags");
    if (flags.type != kUInt32 || flags.bytes != 8) fail("a matrix's array flags are not 2 uint32 values");
    const uint32_t cls = u32(flag_data) & 0xff;
    const bool complex = (u32(flag_data) & 0x0800) != 0;
    const size_t nzmax = u32(flag_data + 4);
    const auto [dims, dim_data] = next("dimensions");
    if (dims.type != kInt32 || dims.bytes < 8 || dims.bytes % 4) fail("a matrix's dimensions are not int32 values");
    size_t count = 1;
    std::vector<size_t> d;
    for (size_t i = 0; i < dims.bytes / 4; ++i) {
      const auto v = static_cast<int32_t>(u32(dim_data + 4 * i));
      if (v < 0) fail("a negative dimension (" + std::to_string(v) + ")");
      d.push_back(static_cast<size_t>(v));
      if (v != 0 && count > SIZE_MAX / static_cast<size_t>(v)) fail("dimensions whose product overflows");
      count *= static_cast<size_t>(v);
    }
    const auto [name, name_data] = next("name");
    (void)name_data;
    if (name.type != kInt8) fail("a matrix's name is not an int8 array");
    const size_t left = size - pos;
    auto need = [&](size_t n, size_t each, const char* what) {
      if (n > left / each)
        fail(std::string("a ") + what + " declares " + std::to_string(n) + " elements that " + std::to_string(left) +
             " bytes cannot hold");
    };
    switch (cls) {
      case 1: {  // cell: one miMATRIX per element
        need(count, 8, "cell array");
        for (size_t i = 0; i < count; ++i) child(p, size, pos, depth, "cell");
        return pos;
      }
      case 2:    // struct
      case 3: {  // object: a class name, then a struct
        if (cls == 3) next("class name");
        const auto [len, len_data] = next("field-name length");
        if (len.type != kInt32 || len.bytes != 4) fail("a struct's field-name length is not one int32");
        const size_t width = u32(len_data);
        const auto [names, names_data] = next("field names");
        (void)names_data;
        if (width == 0 || names.bytes % width) fail("a struct's field names do not fit its field-name length");
        const size_t fields = names.bytes / width;
        if (fields != 0 && count > SIZE_MAX / fields) fail("a struct array too large");
        need(count * fields, 8, "struct array");
        for (size_t i = 0; i < count * fields; ++i) child(p, size, pos, depth, "struct field");
        return pos;
      }
      case 5: {  // sparse: row indices (nzmax), column starts (columns + 1), values
        need(nzmax, 4, "sparse array's nzmax");
        if (d.size() >= 2) need(d[1] + 1, 4, "sparse array's columns");
        for (int part = 0; part < (complex ? 4 : 3) && pos < size; ++part) next("sparse part");
        return pos;
      }
      case 4: case 6: case 7: case 8: case 9: case 10: case 11: case 12: case 13: case 14: case 15: {
        // char and numeric: the real part must hold `count` values of its stored type
        // Every data element present is checked, an empty matrix's too: matio allocates by a
        // char array's declared data length whatever its dimensions say.
        for (int part = 0; part < (complex ? 2 : 1); ++part) {
          // (inside an inflated element the matrix runs to the buffer's end: the next element
          // may be the parent's next matrix rather than this one's data)
          if (count == 0 && (pos >= size || size - pos < 8 || (inflated_ && tag(p + pos, size - pos).type == kMatrix)))
            break;
          const auto [data, data_bytes] = next("data");
          (void)data_bytes;
          const size_t each = type_size(data.type);
          if (each == 0) fail("a matrix's data has an unknown type (" + std::to_string(data.type) + ")");
          if (count == 0) continue;
          if (count > data.bytes / each)
            fail("a matrix declares " + std::to_string(count) + " elements but holds " + std::to_string(data.bytes) +
                 " bytes of data");
        }
        return pos;
      }
      default:
        fail("a matrix of class " + std::to_string(cls) + ", which halsal does not read");
    }
  }

  /// The next element of a cell or struct at p[pos]: a miMATRIX, checked; pos moves past it.
  void child(const uint8_t* p, size_t size, size_t& pos, int depth, const char* what) {
    if (size - pos < 8) fail(std::string("a ") + what + " is cut off");
    const Tag t = tag(p + pos, size - pos);
    if (t.type != kMatrix) fail(std::string("a ") + what + " that is not a matrix");
    pos += t.header;
    pos += nested(t, p + pos, p + size, depth + 1);
    if (pos > size) fail(std::string("a ") + what + " runs past its parent");
  }

  std::filesystem::path file_;
  bool swap_;
  bool inflated_ = false;
};

/// Reads `file` and checks its layout (MAT v5/v7, either byte order) before matio opens it.
inline void check_mat5(const std::filesystem::path& file) {
  const std::vector<uint8_t> bytes = read_file_bytes(file);
  if (bytes.size() < 128) throw file_error(file, "too short for a MATLAB .mat file (" + std::to_string(bytes.size()) + " bytes, the header alone is 128)");
  const bool little = bytes[126] == 'I' && bytes[127] == 'M';
  const bool big = bytes[126] == 'M' && bytes[127] == 'I';
  if (!little && !big) throw file_error(file, "not a MATLAB v5/v7 .mat file (no 'IM'/'MI' marker at byte 126)");
  const unsigned version = little ? bytes[124] | bytes[125] << 8 : bytes[125] | bytes[124] << 8;
  if (version == 0x0200)
    throw file_error(file, "a MATLAB v7.3 (HDF5) .mat file; halsal reads v5/v7 files (save with -v7)");
  if (version != 0x0100) throw file_error(file, "unknown .mat version (" + std::to_string(version) + ", expected 256)");
  Mat5Check(file, big).elements(bytes.data() + 128, bytes.size() - 128, 0);
}

inline FilePtr open_file(const std::filesystem::path& file) {
  install_logger();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) throw file_error(file, halsal::detail::not_a_file(file));
  if (std::filesystem::file_size(file, ec) == 0) throw file_error(file, "empty file (0 bytes), not a .mat file");
  check_mat5(file);
  last_message().clear();
  FilePtr m(Mat_Open(file.string().c_str(), MAT_ACC_RDONLY));
  if (!m) throw file_error(file, "not a readable MATLAB .mat file" + (last_message().empty() ? "" : " (" + last_message() + ")"));
  return m;
}

inline VarPtr read_var(mat_t* m, const std::filesystem::path& file, const char* name) {
  last_message().clear();
  VarPtr v(Mat_VarRead(m, name));
  if (!v) {
    VarPtr info(Mat_VarReadInfo(m, name));
    throw file_error(file, std::string(info ? "cannot read variable '" : "has no variable '") + name + "'" +
                               (last_message().empty() ? "" : " (" + last_message() + ")"));
  }
  return v;
}

/// The number of elements its dimensions give; an Error when that product overflows.
inline size_t element_count(const matvar_t* v, const std::filesystem::path& file) {
  size_t n = 1;
  for (int i = 0; i < v->rank; ++i) {
    const size_t d = v->dims ? v->dims[i] : 0;
    if (d != 0 && n > SIZE_MAX / d) throw file_error(file, "a variable's dimensions overflow");
    n *= d;
  }
  return n;
}

/// Checks that a variable's data holds `n` elements of `size` bytes: the dimensions are a field
/// of the file, the data what matio actually read, and a damaged file can make them disagree.
inline void check_data_size(const matvar_t* v, size_t n, size_t size, const std::filesystem::path& file,
                            const std::string& what) {
  if (n == 0) return;
  if (!v->data || n > v->nbytes / size)
    throw file_error(file, what + " has " + std::to_string(v->nbytes) + " bytes of data, its dimensions need " +
                               (n > SIZE_MAX / size ? std::string("more") : std::to_string(n * size)));
}

/// Numeric contents as doubles; an Error for anything else.
inline std::vector<double> numbers(const matvar_t* v, const std::filesystem::path& file, const std::string& what) {
  const size_t n = element_count(v, file);
  if (v->isComplex || (v->data == nullptr && n > 0))
    throw file_error(file, what + " is not a real numeric array");
  std::vector<double> out;
  // matio hands back data in the memory type of the class.
  auto copy = [&](auto tag) {
    using T = decltype(tag);
    if (v->data_size != static_cast<int>(sizeof(T)) && v->data_size != 0)
      throw file_error(file, what + " has an unexpected element size");
    check_data_size(v, n, sizeof(T), file, what);
    out.resize(n);
    const T* p = static_cast<const T*>(v->data);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<double>(p[i]);
  };
  switch (v->class_type) {
    case MAT_C_DOUBLE: copy(double{}); break;
    case MAT_C_SINGLE: copy(float{}); break;
    case MAT_C_INT8: copy(int8_t{}); break;
    case MAT_C_UINT8: copy(uint8_t{}); break;
    case MAT_C_INT16: copy(int16_t{}); break;
    case MAT_C_UINT16: copy(uint16_t{}); break;
    case MAT_C_INT32: copy(int32_t{}); break;
    case MAT_C_UINT32: copy(uint32_t{}); break;
    case MAT_C_INT64: copy(int64_t{}); break;
    case MAT_C_UINT64: copy(uint64_t{}); break;
    default: throw file_error(file, what + " is not numeric");
  }
  return out;
}

inline double scalar(const matvar_t* v, const std::filesystem::path& file, const std::string& what) {
  if (!v) throw file_error(file, what + " is missing");
  auto x = numbers(v, file, what);
  if (x.size() != 1) throw file_error(file, what + " should be one number, has " + std::to_string(x.size()));
  return x[0];
}

/// A scalar that must be a whole number of at most 2^53 in magnitude (ids, class numbers).
inline int64_t integer(const matvar_t* v, const std::filesystem::path& file, const std::string& what) {
  const double x = scalar(v, file, what);
  if (!std::isfinite(x) || x != std::floor(x) || std::fabs(x) > 9007199254740992.0)
    throw file_error(file, what + " is " + std::to_string(x) + ", not a whole number");
  return static_cast<int64_t>(x);
}

/// A scalar that must be finite (coordinates).
inline double finite(const matvar_t* v, const std::filesystem::path& file, const std::string& what) {
  const double x = scalar(v, file, what);
  if (!std::isfinite(x)) throw file_error(file, what + " is not a finite number");
  return x;
}

/// A char array as a string (ASCII; UTF-16 code units above 127 become '?').
inline std::string text(const matvar_t* v, const std::filesystem::path& file, const std::string& what) {
  if (!v || v->class_type != MAT_C_CHAR) throw file_error(file, what + " is not a string");
  const size_t n = element_count(v, file);
  std::string s;
  if (n == 0) return s;
  if (!v->data) throw file_error(file, what + " has no data");
  if (v->data_type == MAT_T_UINT16 || v->data_type == MAT_T_UTF16 || v->data_size == 2) {
    check_data_size(v, n, 2, file, what);
    const auto* p = static_cast<const uint16_t*>(v->data);
    for (size_t i = 0; i < n; ++i) s += p[i] < 128 ? static_cast<char>(p[i]) : '?';
  } else if (v->data_size == 1 || v->data_type == MAT_T_UINT8 || v->data_type == MAT_T_UTF8 ||
             v->data_type == MAT_T_INT8) {
    check_data_size(v, n, 1, file, what);
    s.assign(static_cast<const char*>(v->data), n);
  } else {
    throw file_error(file, what + " uses an unsupported character encoding");
  }
  while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace detail

/// All numbers of variable `name` (column-major order), e.g. imagelabels.mat's `labels`.
inline std::vector<double> read_numbers(const std::filesystem::path& file, const char* name) {
  auto m = detail::open_file(file);
  auto v = detail::read_var(m.get(), file, name);
  return detail::numbers(v.get(), file, std::string("variable '") + name + "'");
}

/// A cell array of strings, e.g. cars_meta.mat's `class_names`.
inline std::vector<std::string> read_strings(const std::filesystem::path& file, const char* name) {
  auto m = detail::open_file(file);
  auto v = detail::read_var(m.get(), file, name);
  const std::string what = std::string("variable '") + name + "'";
  if (v->class_type != MAT_C_CELL) throw file_error(file, what + " is not a cell array of strings");
  const size_t n = detail::element_count(v.get(), file);
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(detail::text(Mat_VarGetCell(v.get(), static_cast<int>(i)), file,
                               what + " element " + std::to_string(i + 1)));
  return out;
}

/// One Stanford Cars annotation (1-based inclusive pixel corners, 1-based class).
struct CarAnnotation {
  double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
  int64_t label = 0;
  std::string fname;
};

/// The `annotations` struct array of cars_train_annos.mat / cars_test_annos_withlabels.mat.
inline std::vector<CarAnnotation> read_car_annotations(const std::filesystem::path& file) {
  auto m = detail::open_file(file);
  auto v = detail::read_var(m.get(), file, "annotations");
  if (v->class_type != MAT_C_STRUCT) throw file_error(file, "'annotations' is not a struct array");
  const size_t n = detail::element_count(v.get(), file);
  std::vector<CarAnnotation> out;  // grown per element: n is a field of the file
  for (size_t i = 0; i < n; ++i) {
    out.emplace_back();
    auto field = [&](const char* f) {
      matvar_t* x = Mat_VarGetStructFieldByName(v.get(), f, i);
      if (!x) throw file_error(file, "annotation " + std::to_string(i + 1) + " has no field '" + f + "'");
      return x;
    };
    const std::string at = "annotation " + std::to_string(i + 1) + " ";
    auto& a = out.back();
    a.x1 = detail::finite(field("bbox_x1"), file, at + "bbox_x1");
    a.y1 = detail::finite(field("bbox_y1"), file, at + "bbox_y1");
    a.x2 = detail::finite(field("bbox_x2"), file, at + "bbox_x2");
    a.y2 = detail::finite(field("bbox_y2"), file, at + "bbox_y2");
    a.label = detail::integer(field("class"), file, at + "class");
    a.fname = detail::text(field("fname"), file, at + "fname");
    if (a.fname.empty() || a.fname.find("..") != std::string::npos || a.fname[0] == '/')
      throw file_error(file, at + "has a bad file name '" + a.fname + "'");
  }
  return out;
}

/// The ImageNet devkit's meta.mat: ILSVRC2012_ID -> wnid for the 1000 leaf classes.
inline std::map<int64_t, std::string> read_imagenet_synsets(const std::filesystem::path& file) {
  auto m = detail::open_file(file);
  auto v = detail::read_var(m.get(), file, "synsets");
  if (v->class_type != MAT_C_STRUCT) throw file_error(file, "'synsets' is not a struct array");
  const size_t n = detail::element_count(v.get(), file);
  std::map<int64_t, std::string> out;
  for (size_t i = 0; i < n; ++i) {
    const std::string at = "synset " + std::to_string(i + 1) + " ";
    const int64_t id =
        detail::integer(Mat_VarGetStructFieldByName(v.get(), "ILSVRC2012_ID", i), file, at + "ILSVRC2012_ID");
    auto children = Mat_VarGetStructFieldByName(v.get(), "num_children", i);
    if (children && detail::scalar(children, file, at + "num_children") != 0) continue;  // inner node
    out[id] = detail::text(Mat_VarGetStructFieldByName(v.get(), "WNID", i), file, at + "WNID");
  }
  return out;
}

}  // namespace halsal::data::mat
