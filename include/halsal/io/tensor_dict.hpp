// The ordered name -> tensor map every halsal weight reader returns and every writer takes, and
// small helpers around it (dtype names, float64 sums).
#pragma once
#include <torch/torch.h>

#include <string>

#include "halsal/core/error.hpp"
#include "halsal/io/pickle.hpp"

namespace halsal::io {

/// Tensors by name, in file order (a state_dict).
using TensorDict = torch::OrderedDict<std::string, torch::Tensor>;

/// Inserts or replaces `name` (a later entry wins, as in a Python dict), keeping first position.
inline void set_tensor(TensorDict& dict, const std::string& name, torch::Tensor t) {
  if (auto* existing = dict.find(name)) {
    *existing = std::move(t);
  } else {
    dict.insert(name, std::move(t));
  }
}

/// The LibTorch dtype of a torch storage element type.
inline torch::Dtype to_torch_dtype(pickle::ElementType t) {
  using E = pickle::ElementType;
  switch (t) {
    case E::Float32:
      return torch::kFloat32;
    case E::Float16:
      return torch::kFloat16;
    case E::BFloat16:
      return torch::kBFloat16;
    case E::Float64:
      return torch::kFloat64;
    case E::Int64:
      return torch::kInt64;
    case E::Int32:
      return torch::kInt32;
    case E::Int16:
      return torch::kInt16;
    case E::UInt8:
      return torch::kUInt8;
    case E::Int8:
      return torch::kInt8;
    case E::Bool:
      return torch::kBool;
  }
  return torch::kFloat32;
}

/// The storage element type of a LibTorch dtype; false for dtypes .pth files of halsal lack.
inline bool from_torch_dtype(torch::Dtype d, pickle::ElementType* out) {
  using E = pickle::ElementType;
  for (int i = 0; i <= static_cast<int>(E::Bool); ++i) {
    if (to_torch_dtype(static_cast<E>(i)) == d) {
      *out = static_cast<E>(i);
      return true;
    }
  }
  return false;
}

/// Python's name of a dtype ("float32", "bfloat16", "int64", "bool", ...).
inline std::string dtype_name(torch::Dtype d) {
  switch (d) {
    case torch::kFloat32:
      return "float32";
    case torch::kFloat16:
      return "float16";
    case torch::kBFloat16:
      return "bfloat16";
    case torch::kFloat64:
      return "float64";
    case torch::kInt64:
      return "int64";
    case torch::kInt32:
      return "int32";
    case torch::kInt16:
      return "int16";
    case torch::kUInt8:
      return "uint8";
    case torch::kInt8:
      return "int8";
    case torch::kBool:
      return "bool";
    default:
      return std::string(c10::toString(d));
  }
}

/// The sum of all elements accumulated in float64 (bool counts the true elements).
inline double tensor_sum(const torch::Tensor& t) {
  if (t.numel() == 0) return 0.0;
  return t.detach().to(torch::kCPU).to(torch::kFloat64).sum().item<double>();
}

/// "[32, 3, 3, 3]"
inline std::string shape_string(torch::IntArrayRef sizes) {
  std::string s = "[";
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(sizes[i]);
  }
  return s + "]";
}

}  // namespace halsal::io
