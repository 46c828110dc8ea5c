// Reading MATLAB .mat files (v5 and v7.3) with libmatio: the few shapes the official dataset
// releases use (numeric vectors, cell arrays of strings, struct arrays of annotations).
#pragma once
#include <matio.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "halsal/core/error.hpp"

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

inline FilePtr open_file(const std::filesystem::path& file) {
  install_logger();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) throw file_error(file, "no such file");
  if (std::filesystem::file_size(file, ec) == 0) throw file_error(file, "empty file (0 bytes), not a .mat file");
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

inline size_t element_count(const matvar_t* v) {
  size_t n = 1;
  for (int i = 0; i < v->rank; ++i) n *= v->dims[i];
  return n;
}

/// Numeric contents as doubles; an Error for anything else.
inline std::vector<double> numbers(const matvar_t* v, const std::filesystem::path& file, const std::string& what) {
  const size_t n = element_count(v);
  std::vector<double> out(n);
  if (v->isComplex || (v->data == nullptr && n > 0))
    throw file_error(file, what + " is not a real numeric array");
  // matio hands back data in the memory type of the class.
  auto copy = [&](auto tag) {
    using T = decltype(tag);
    if (v->data_size != static_cast<int>(sizeof(T)) && v->data_size != 0)
      throw file_error(file, what + " has an unexpected element size");
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

/// A char array as a string (ASCII; UTF-16 code units above 127 become '?').
inline std::string text(const matvar_t* v, const std::filesystem::path& file, const std::string& what) {
  if (!v || v->class_type != MAT_C_CHAR) throw file_error(file, what + " is not a string");
  const size_t n = element_count(v);
  std::string s;
  if (n == 0) return s;
  if (!v->data) throw file_error(file, what + " has no data");
  if (v->data_type == MAT_T_UINT16 || v->data_type == MAT_T_UTF16 || v->data_size == 2) {
    const auto* p = static_cast<const uint16_t*>(v->data);
    for (size_t i = 0; i < n; ++i) s += p[i] < 128 ? static_cast<char>(p[i]) : '?';
  } else if (v->data_size == 1 || v->data_type == MAT_T_UINT8 || v->data_type == MAT_T_UTF8 ||
             v->data_type == MAT_T_INT8) {
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
  const size_t n = detail::element_count(v.get());
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
  const size_t n = detail::element_count(v.get());
  std::vector<CarAnnotation> out(n);
  for (size_t i = 0; i < n; ++i) {
    auto field = [&](const char* f) {
      matvar_t* x = Mat_VarGetStructFieldByName(v.get(), f, i);
      if (!x) throw file_error(file, "annotation " + std::to_string(i + 1) + " has no field '" + f + "'");
      return x;
    };
    const std::string at = "annotation " + std::to_string(i + 1) + " ";
    out[i].x1 = detail::scalar(field("bbox_x1"), file, at + "bbox_x1");
    out[i].y1 = detail::scalar(field("bbox_y1"), file, at + "bbox_y1");
    out[i].x2 = detail::scalar(field("bbox_x2"), file, at + "bbox_x2");
    out[i].y2 = detail::scalar(field("bbox_y2"), file, at + "bbox_y2");
    out[i].label = static_cast<int64_t>(detail::scalar(field("class"), file, at + "class"));
    out[i].fname = detail::text(field("fname"), file, at + "fname");
    if (out[i].fname.empty() || out[i].fname.find("..") != std::string::npos || out[i].fname[0] == '/')
      throw file_error(file, at + "has a bad file name '" + out[i].fname + "'");
  }
  return out;
}

/// The ImageNet devkit's meta.mat: ILSVRC2012_ID -> wnid for the 1000 leaf classes.
inline std::map<int64_t, std::string> read_imagenet_synsets(const std::filesystem::path& file) {
  auto m = detail::open_file(file);
  auto v = detail::read_var(m.get(), file, "synsets");
  if (v->class_type != MAT_C_STRUCT) throw file_error(file, "'synsets' is not a struct array");
  const size_t n = detail::element_count(v.get());
  std::map<int64_t, std::string> out;
  for (size_t i = 0; i < n; ++i) {
    const std::string at = "synset " + std::to_string(i + 1) + " ";
    auto id = static_cast<int64_t>(
        detail::scalar(Mat_VarGetStructFieldByName(v.get(), "ILSVRC2012_ID", i), file, at + "ILSVRC2012_ID"));
    auto children = Mat_VarGetStructFieldByName(v.get(), "num_children", i);
    if (children && detail::scalar(children, file, at + "num_children") != 0) continue;  // inner node
    out[id] = detail::text(Mat_VarGetStructFieldByName(v.get(), "WNID", i), file, at + "WNID");
  }
  return out;
}

}  // namespace halsal::data::mat
