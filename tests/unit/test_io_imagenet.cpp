// The real thing: ../shared/weights/mobilenet_v2-imagenet.pth (a torchvision-layout state_dict)
// read by halsal::io, loaded into halsal's MobileNetV2 and scored on the 1000 ImageNet sample
// images. Its README gives 78.5 % top-1 / 94.3 % top-5 with torchvision; halsal must reach 78 %.
// Skipped when ../shared is absent.
#include <torch/torch.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "halsal/backbones/mobilenet_v2.hpp"
#include "halsal/data/image.hpp"
#include "halsal/data/tensor.hpp"
#include "halsal/data/transforms.hpp"
#include "halsal/io/io.hpp"
#include "halsal/nets/halsal_net.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
namespace io = halsal::io;

namespace {

fs::path weights() {
  return halsal::test::shared_dir() / "weights" / "mobilenet_v2-imagenet.pth";
}

// torchvision's eval transform for this file: Resize(256) (antialiased), CenterCrop(224), then
// (x - 0.5) / 0.5 per channel (the README's normalization, not ImageNet's mean/std).
torch::Tensor preprocess(const fs::path& file) {
  const auto image = halsal::data::decode_image(file);
  const auto resized = halsal::data::resize_shorter(image, 256);
  const auto crop = halsal::data::center_crop(resized, 224, 224);
  return halsal::data::to_tensor_chw(crop).to(torch::kFloat32).div(255).sub(0.5).div(0.5);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(test_io_imagenet)

BOOST_AUTO_TEST_CASE(mobilenet_v2_pth_has_torchvision_layout,
                     *boost::unit_test::precondition(halsal::test::SharedPresent{
                         "weights/mobilenet_v2-imagenet.pth"})) {
  const auto start = std::chrono::steady_clock::now();
  io::PthInfo info;
  const auto tensors = io::read_pth(weights(), &info);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  BOOST_TEST_MESSAGE("read " << tensors.size() << " tensors from " << fs::file_size(weights())
                             << " bytes in " << ms << " ms");
  BOOST_CHECK(info.container == io::PthContainer::Zip);
  BOOST_CHECK_EQUAL(info.prefix, "mobilenet_v2-imagenet/");
  BOOST_REQUIRE_EQUAL(tensors.size(), 314u);
  BOOST_CHECK_EQUAL(tensors[0].key(), "features.0.0.weight");
  BOOST_CHECK(tensors["features.0.0.weight"].sizes().vec() ==
              (std::vector<std::int64_t>{32, 3, 3, 3}));
  BOOST_CHECK(tensors["classifier.1.weight"].sizes().vec() ==
              (std::vector<std::int64_t>{1000, 1280}));
  std::int64_t params = 0;
  for (const auto& kv : tensors) {
    BOOST_CHECK(kv.value().scalar_type() ==
                (kv.key().find("num_batches_tracked") != std::string::npos ? torch::kInt64
                                                                           : torch::kFloat32));
    if (kv.key().find("running_") == std::string::npos &&
        kv.key().find("num_batches") == std::string::npos)
      params += kv.value().numel();
  }
  BOOST_CHECK_EQUAL(params, 3504872);  // torchvision's mobilenet_v2(): 3.5 M parameters

  // Keys and shapes are exactly halsal's MobileNetV2's, in the same order.
  halsal::MobileNetV2 net(1000);
  const auto mine = io::state_dict(*net);
  BOOST_REQUIRE_EQUAL(mine.size(), tensors.size());
  for (std::size_t i = 0; i < mine.size(); ++i) {
    BOOST_CHECK_EQUAL(mine[i].key(), tensors[i].key());
    BOOST_CHECK(mine[i].value().sizes() == tensors[i].value().sizes());
  }

  // A 10-class network takes everything but the head.
  halsal::MobileNetV2 small(10);
  io::LoadOptions opt;
  opt.skip_prefixes = {halsal::MobileNetV2Impl::head_name() + "."};
  const auto report = io::load_state_dict(*small, tensors, opt);
  BOOST_CHECK(report.ok());
  BOOST_CHECK_EQUAL(report.loaded.size(), 312u);
  BOOST_CHECK_EQUAL(report.skipped.size(), 2u);

  // The RGB branch of a HalSalNet (child "backbone") from the plain backbone file: every key
  // renamed, the new head and the saliency branch left alone.
  halsal::HalSalNet<halsal::MobileNetV2> hal(102);
  io::LoadOptions to_net;
  to_net.rename_prefixes = {{"", "backbone."}};
  to_net.skip_prefixes = {hal->head_name() + ".", "saliency."};
  const auto net_report = io::load_state_dict(*hal, tensors, to_net);
  BOOST_CHECK(net_report.ok());
  BOOST_CHECK_EQUAL(net_report.loaded.size(), 312u);
  BOOST_CHECK(net_report.skipped ==
              (std::vector<std::string>{"classifier.1.weight", "classifier.1.bias"}));
  BOOST_CHECK(torch::equal(io::state_dict(*hal)["backbone.features.18.1.running_var"],
                           tensors["features.18.1.running_var"]));
}

BOOST_AUTO_TEST_CASE(mobilenet_v2_imagenet_top1,
                     *boost::unit_test::precondition(halsal::test::SharedPresent{
                         "weights/mobilenet_v2-imagenet.pth"}) *
                         boost::unit_test::precondition(halsal::test::SharedPresent{
                             "data/imagenet_samples/images"})) {
  halsal::MobileNetV2 net(1000);
  const auto report = io::load_weights(*net, weights());
  BOOST_REQUIRE(report.ok());
  BOOST_REQUIRE_EQUAL(report.loaded.size(), 314u);
  net->eval();

  // Class index = position of the wnid folder in sorted order (torchvision's ImageNet order).
  const fs::path root = halsal::test::shared_dir() / "data" / "imagenet_samples" / "images";
  std::vector<fs::path> folders;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory()) folders.push_back(e.path());
  std::sort(folders.begin(), folders.end());
  BOOST_REQUIRE_EQUAL(folders.size(), 1000u);
  std::vector<std::pair<fs::path, std::int64_t>> samples;
  for (std::size_t c = 0; c < folders.size(); ++c) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(folders[c]))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) samples.emplace_back(f, static_cast<std::int64_t>(c));
  }
  BOOST_REQUIRE_EQUAL(samples.size(), 1000u);

  torch::NoGradGuard no_grad;
  std::int64_t top1 = 0, top5 = 0;
  const std::size_t batch = 50;
  for (std::size_t b = 0; b < samples.size(); b += batch) {
    std::vector<torch::Tensor> xs;
    std::vector<std::int64_t> ys;
    for (std::size_t i = b; i < std::min(samples.size(), b + batch); ++i) {
      xs.push_back(preprocess(samples[i].first));
      ys.push_back(samples[i].second);
    }
    const auto logits = net->forward(torch::stack(xs));
    const auto labels = torch::tensor(ys, torch::kInt64);
    const auto best5 = std::get<1>(logits.topk(5, 1));
    top1 += best5.select(1, 0).eq(labels).sum().item<std::int64_t>();
    top5 += best5.eq(labels.unsqueeze(1)).any(1).sum().item<std::int64_t>();
  }
  const double acc1 = 100.0 * static_cast<double>(top1) / static_cast<double>(samples.size());
  const double acc5 = 100.0 * static_cast<double>(top5) / static_cast<double>(samples.size());
  BOOST_TEST_MESSAGE("mobilenet_v2-imagenet.pth on imagenet_samples: top-1 " << acc1 << " %, top-5 "
                                                                             << acc5 << " %");
  BOOST_CHECK_GE(acc1, 78.0);
  BOOST_CHECK_GE(acc5, 93.0);
}

BOOST_AUTO_TEST_SUITE_END()
