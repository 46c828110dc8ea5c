// libFuzzer target: halsal's MATLAB .mat readers (libmatio underneath) on arbitrary bytes -- the
// variables the official Flowers-102, Stanford Cars and ImageNet devkit releases use.
#include <matio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_file.hpp"
#include "halsal/data/mat.hpp"

namespace {

/// A struct array of `n` elements with double fields and char fields, written with matio.
void write_struct(mat_t* m, const char* name, std::size_t n, const std::vector<const char*>& numeric,
                  const std::vector<const char*>& text) {
  std::vector<const char*> fields(numeric);
  fields.insert(fields.end(), text.begin(), text.end());
  size_t dims[2] = {1, n};
  matvar_t* s = Mat_VarCreateStruct(name, 2, dims, fields.data(), static_cast<unsigned>(fields.size()));
  for (std::size_t i = 0; i < n; ++i) {
    size_t one[2] = {1, 1};
    for (const char* f : numeric) {
      double v = static_cast<double>(i + 1);
      Mat_VarSetStructFieldByName(s, f, i, Mat_VarCreate(nullptr, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, one, &v, 0));
    }
    for (const char* f : text) {
      std::string t = std::string(f) == "fname" ? "0000" + std::to_string(i + 1) + ".jpg"
                                                : "n0144076" + std::to_string(i);
      size_t tdims[2] = {1, t.size()};
      Mat_VarSetStructFieldByName(s, f, i, Mat_VarCreate(nullptr, MAT_C_CHAR, MAT_T_UINT8, 2, tdims, t.data(), 0));
    }
  }
  Mat_VarWrite(m, s, MAT_COMPRESSION_NONE);
  Mat_VarFree(s);
}

void write_seeds(const std::filesystem::path& dir) {
  for (int compressed = 0; compressed < 2; ++compressed) {
    const auto comp = compressed ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE;
    const auto file = dir / (compressed ? "seed-zlib.mat" : "seed.mat");
    mat_t* m = Mat_CreateVer(file.c_str(), nullptr, MAT_FT_MAT5);
    if (!m) continue;
    double labels[6] = {1, 2, 3, 1, 2, 3};
    size_t dims[2] = {1, 6};
    matvar_t* v = Mat_VarCreate("labels", MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, labels, 0);
    Mat_VarWrite(m, v, comp);
    Mat_VarFree(v);
    std::uint16_t ids[3] = {1, 4, 6};
    size_t idims[2] = {1, 3};
    v = Mat_VarCreate("trnid", MAT_C_UINT16, MAT_T_UINT16, 2, idims, ids, 0);
    Mat_VarWrite(m, v, comp);
    Mat_VarFree(v);
    size_t cdims[2] = {2, 1};
    matvar_t* cell = Mat_VarCreate("class_names", MAT_C_CELL, MAT_T_CELL, 2, cdims, nullptr, 0);
    const char* names[2] = {"AM General Hummer SUV 2000", "Acura RL Sedan 2012"};
    for (int i = 0; i < 2; ++i) {
      size_t tdims[2] = {1, std::strlen(names[i])};
      Mat_VarSetCell(cell, i, Mat_VarCreate(nullptr, MAT_C_CHAR, MAT_T_UINT8, 2, tdims, const_cast<char*>(names[i]), 0));
    }
    Mat_VarWrite(m, cell, comp);
    Mat_VarFree(cell);
    write_struct(m, "annotations", 2, {"bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class"}, {"fname"});
    write_struct(m, "synsets", 2, {"ILSVRC2012_ID", "num_children"}, {"WNID"});
    Mat_Close(m);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto dir = halsal_fuzz::seed_dir();
  if (!dir.empty()) write_seeds(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace mat = halsal::data::mat;
  const auto file = halsal_fuzz::write_input("input.mat", data, size);
  try {
    (void)mat::read_numbers(file, "labels");
  } catch (const halsal::Error&) {
  }
  try {
    (void)mat::read_numbers(file, "trnid");
  } catch (const halsal::Error&) {
  }
  try {
    (void)mat::read_strings(file, "class_names");
  } catch (const halsal::Error&) {
  }
  try {
    (void)mat::read_car_annotations(file);
  } catch (const halsal::Error&) {
  }
  try {
    (void)mat::read_imagenet_synsets(file);
  } catch (const halsal::Error&) {
  }
  return 0;
}
