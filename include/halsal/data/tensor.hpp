// Conversions between halsal::data::Image and uint8 LibTorch tensors.
#pragma once
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "halsal/core/error.hpp"
#include "halsal/data/image.hpp"

namespace halsal::data {

/// A copy of an image as a uint8 tensor, 3 x H x W (or C x H x W).
inline torch::Tensor to_tensor_chw(ImageView im) {
  auto t = torch::empty({im.channels, im.height, im.width}, torch::kUInt8);
  uint8_t* out = t.data_ptr<uint8_t>();
  const size_t plane = static_cast<size_t>(im.height) * im.width;
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < im.channels; ++c) out[c * plane + i] = im.data[i * im.channels + c];
  return t;
}

/// A copy of an image as a uint8 tensor, H x W x C.
inline torch::Tensor to_tensor_hwc(ImageView im) {
  auto t = torch::empty({im.height, im.width, im.channels}, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), im.data, static_cast<size_t>(im.height) * im.width * im.channels);
  return t;
}

/// Decodes an image file into a uint8 tensor, 3 x H x W (torchvision's read_image layout).
inline torch::Tensor read_image(const std::filesystem::path& path) {
  return to_tensor_chw(decode_image(path));
}

/// An Image from a uint8 tensor laid out C x H x W (C = 1 or 3) or H x W x C when `hwc`.
inline Image from_tensor(const torch::Tensor& t, bool hwc = false) {
  if (t.dim() != 3 || t.scalar_type() != torch::kUInt8)
    throw Error("from_tensor: expected a 3-d uint8 tensor, got " + std::to_string(t.dim()) +
                "-d " + std::string(c10::toString(t.scalar_type())));
  auto u = (hwc ? t : t.permute({1, 2, 0})).contiguous().cpu();
  Image im(static_cast<int>(u.size(0)), static_cast<int>(u.size(1)), static_cast<int>(u.size(2)));
  if (im.channels != 1 && im.channels != 3)
    throw Error("from_tensor: expected 1 or 3 channels, got " + std::to_string(im.channels));
  std::memcpy(im.data(), u.data_ptr<uint8_t>(), im.pixels.size());
  return im;
}

}  // namespace halsal::data
