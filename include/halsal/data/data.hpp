// halsal::data — images and datasets. The whole API in 15 lines:
//
//   namespace hd = halsal::data;
//   hd::Dataset data = hd::open("flowers102/");          // layout detected; Error names what is missing
//   // or: hd::synthetic(hd::SyntheticOptions{})  — 8 classes x 40 images, no files needed
//   hd::Split split = hd::kshot(data, /*k=*/5, /*seed=*/0);  // 5 test + 5 val + k train per class, nested in k
//   hd::save_split(split, "split.csv");                   // and hd::load_split("split.csv", data)
//   hd::LoaderOptions lo;
//   lo.batch_size = 32; lo.seed = 0;
//   lo.transform = hd::Transform::train(224);             // RandomResizedCrop + flip; eval(224) for val/test
//   lo.cache = hd::ImageCache::open_or_build(data);       // optional: decoded, memory-mapped images
//   hd::Loader loader(split.train, lo);                   // worker threads, prefetch, deterministic
//   const auto norm = hd::Normalization::symmetric();     // what the weights need (imagenet() for torchvision's)
//   for (int epoch = 0; epoch < E; ++epoch) { loader.start_epoch(epoch);
//     while (auto b = loader.next()) {                     // b->images: uint8 N x 3 x H x W; b->labels: int64 N
//       torch::Tensor x = norm(b->images, device);         // float conversion happens on the device
//       ... } }
#pragma once

#include "halsal/data/cache.hpp"
#include "halsal/data/dataset.hpp"
#include "halsal/data/image.hpp"
#include "halsal/data/loader.hpp"
#include "halsal/data/mat.hpp"
#include "halsal/data/rng.hpp"
#include "halsal/data/shots.hpp"
#include "halsal/data/split.hpp"
#include "halsal/data/synthetic.hpp"
#include "halsal/data/tensor.hpp"
#include "halsal/data/transforms.hpp"
