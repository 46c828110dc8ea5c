// Model files: train_and_save's file round-trips every ModelInfo field, load_model rebuilds the
// network with identical outputs, bad files give errors that name them, predict() on an image file
// agrees with infer, and the comparison gallery picks exactly the disagreeing images.
#include <halsal/halsal.hpp>
#include <halsal/models/comparison.hpp>
#include <halsal/models/instances.hpp>
#include <halsal/models/model_file.hpp>

#include <fstream>
#include <sstream>

#include "test_support.hpp"
#include "tiny_data.hpp"

using namespace halsal;
namespace hd = halsal::data;
namespace ht = halsal::train;
using test::tiny_config;
using test::tiny_synthetic;

namespace {

// One 1-epoch scratch-sal ResNet-18 run (k=2, seed 1), written to <scratch>/model.safetensors.
struct Trained {
  std::shared_ptr<const hd::Dataset> data = tiny_synthetic();
  std::filesystem::path dir;
  ht::TrainedModel result;
  explicit Trained(const std::string& name) : dir(test::scratch_dir(name)) {
    ht::TrainModelOptions t;
    t.backbone = "resnet18";
    t.method = "scratch-sal";
    t.k = 2;
    t.seed = 1;
    t.experiment.config = tiny_config();
    t.experiment.config.normalization = "symmetric";
    t.experiment.split.test_per_class = 5;
    t.experiment.split.val_per_class = 5;
    t.experiment.out_dir = dir;
    // Not the default: loading must rebuild it (it has no weights), or the saliency maps differ.
    t.experiment.saliency.activation = SaliencyActivation::softplus;
    result = ht::train_and_save(data, t);
  }
};

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

torch::Tensor test_images(const hd::Dataset& d, const hd::Subset& s, size_t n) {
  std::vector<torch::Tensor> v;
  for (size_t i = 0; i < n && i < s.size(); ++i) v.push_back(hd::to_tensor_chw(hd::load_sample(d, s.indices[i]).image));
  return torch::stack(v);
}

void copy_prefix(const std::filesystem::path& from, const std::filesystem::path& to, size_t bytes) {
  std::ifstream in(from, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream out(to, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(std::min(bytes, content.size())));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(test_model_file)

BOOST_AUTO_TEST_CASE(info_round_trips_every_field) {
  Trained t("model_file_info");
  const auto& r = t.result;
  BOOST_TEST(r.model_file == t.dir / "model.safetensors");
  BOOST_TEST(std::filesystem::exists(r.model_file));
  BOOST_TEST(std::filesystem::exists(t.dir / "metrics.jsonl"));
  BOOST_TEST(!std::filesystem::exists(t.dir / "checkpoints"));  // removed after the model file
  const ht::ModelInfo back = ht::read_model_info(r.model_file);
  BOOST_TEST(back.backbone == "resnet18");
  BOOST_TEST(back.method == "scratch-sal");
  BOOST_TEST(back.network == HalSalNet<ResNet<18>>::Impl::name());
  BOOST_TEST(back.class_names == t.data->class_names);
  BOOST_TEST(back.image_size == 64);
  BOOST_TEST(back.normalization == "symmetric");
  BOOST_TEST(back.center_crop == false);
  BOOST_TEST(back.saliency_activation == "softplus");
  BOOST_TEST(back.k == 2);
  BOOST_TEST(back.seed == 1u);
  BOOST_TEST(back.split.test_per_class == 5);
  BOOST_TEST(back.split.val_per_class == 5);
  BOOST_TEST(back.dataset_path == t.data->root.string());
  BOOST_TEST(back.dataset_layout == "synthetic");
  BOOST_TEST(back.dataset_summary == t.data->summary());
  BOOST_TEST(back.top1 == r.cell.top1);
  BOOST_TEST(back.top5 == r.cell.top5);
  BOOST_TEST(back.best_epoch == 1);
  BOOST_TEST(back.config.at("optimizer").get<std::string>() == "adam");
  BOOST_TEST(back.config.at("seed").get<uint64_t>() == 1u);
  BOOST_TEST(ht::to_json(back).dump() == ht::to_json(r.info).dump());
  // The stored split gives the same test set again.
  const auto test = ht::model_subset(back, t.data, "test");
  BOOST_TEST(test.indices == r.cell.split.test.indices);
  BOOST_TEST(test.size() == 10u);
  BOOST_TEST(ht::model_subset(back, t.data, "train").size() == 4u);
  BOOST_TEST(ht::model_subset(back, t.data, "all").size() == t.data->size());
  BOOST_TEST(ht::model_subset(back, t.data, "train", 1).size() == 2u);  // k override
  BOOST_TEST(message_of([&] { ht::model_subset(back, t.data, "dev"); }).find("unknown subset 'dev'") != std::string::npos);
  // k = K is stored as "K".
  ht::ModelInfo official = back;
  official.k = hd::kOfficial;
  BOOST_TEST(ht::to_json(official).at("k").get<std::string>() == "K");
  BOOST_TEST(ht::model_info_from_json(ht::to_json(official)).k == hd::kOfficial);
}

BOOST_AUTO_TEST_CASE(loaded_model_matches_the_trained_network) {
  Trained t("model_file_load");
  const auto& cell = t.result.cell;
  const ht::LoadedModel m = ht::load_model(t.result.model_file);
  BOOST_TEST(m.has_saliency);
  BOOST_TEST((m.module->as<HalSalNet<ResNet<18>>::Impl>()->saliency->activation() == SaliencyActivation::softplus));
  BOOST_TEST(m.info.network == HalSalNet<ResNet<18>>::Impl::name());
  const auto x = test_images(*t.data, cell.split.test, 6);
  const auto a = cell.infer(x), b = m.infer(x);
  BOOST_TEST(a.logits.sizes().vec() == b.logits.sizes().vec());
  BOOST_TEST((a.logits - b.logits).abs().max().item<float>() <= 1e-6f);
  BOOST_TEST((a.saliency - b.saliency).abs().max().item<float>() <= 1e-6f);
  const auto report = m.evaluate(cell.split.test);
  BOOST_TEST(report.metrics.top1() == cell.top1);
  BOOST_REQUIRE(report.predictions.size() == cell.report.predictions.size());
  for (size_t i = 0; i < report.predictions.size(); ++i) {
    BOOST_TEST(report.predictions[i].index == cell.report.predictions[i].index);
    BOOST_TEST(report.predictions[i].predicted == cell.report.predictions[i].predicted);
  }
  // Evaluation files.
  const auto out = test::scratch_dir("model_file_eval_files");
  const auto f = ht::write_evaluation_files(report, *t.data, out);
  std::ifstream pc(f.per_class_csv), pr(f.predictions_csv);
  std::string line;
  std::getline(pc, line);
  BOOST_TEST(line == "class,name,samples,correct,accuracy");
  std::getline(pc, line);
  BOOST_TEST(line.rfind("0," + t.data->class_names[0] + ",5,", 0) == 0u, line);
  size_t lines = 0;
  while (std::getline(pr, line)) ++lines;
  BOOST_TEST(lines == 11u);  // header + 10 test images
  BOOST_TEST(std::filesystem::exists(f.confusion_csv));
  // A dataset with other classes is refused.
  const auto three = tiny_synthetic(3);
  const std::string msg = message_of([&] { m.evaluate(hd::Subset::all(three)); });
  BOOST_TEST(msg.find("3 classes") != std::string::npos, msg);
  BOOST_TEST(msg.find("model.safetensors") != std::string::npos, msg);
}

BOOST_AUTO_TEST_CASE(rgb_and_smic_files_rebuild_their_networks) {
  const auto dir = test::scratch_dir("model_file_kinds");
  const auto x = test_images(*tiny_synthetic(), hd::Subset::all(tiny_synthetic()), 2);
  const auto norm = hd::Normalization::imagenet();
  ht::ModelInfo info;
  info.backbone = "resnet18";
  info.class_names = {"a", "b", "c"};
  info.image_size = 64;
  info.center_crop = false;
  torch::NoGradGuard no_grad;
  {
    RgbNet<ResNet<18>> net(3);
    net->eval();
    info.method = "rgb";
    info.network = ht::network_name<ResNet<18>>("rgb");
    BOOST_TEST(info.network == RgbNet<ResNet<18>>::Impl::name());
    ht::save_model(*net, info, dir / "rgb.safetensors");
    const auto m = ht::load_model(dir / "rgb.safetensors");
    BOOST_TEST(!m.has_saliency);
    const auto out = m.infer(x);
    BOOST_TEST(!out.saliency.defined());
    BOOST_TEST((out.logits - net->forward_full(norm(x)).logits).abs().max().item<float>() <= 1e-6f);
  }
  {
    SmicNet<ResNet<18>> net(3);
    net->eval();
    info.method = "smic";
    info.network = ht::network_name<ResNet<18>>("smic");
    ht::save_model(*net, info, dir / "smic.safetensors");
    const auto m = ht::load_model(dir / "smic.safetensors");
    const auto maps = saliency::spectral_residual(x.to(torch::kFloat32).div(255));
    BOOST_TEST((m.infer(x).logits - net->forward_full(norm(x), maps).logits).abs().max().item<float>() <= 1e-6f);
  }
}

BOOST_AUTO_TEST_CASE(bad_files_give_errors_naming_them) {
  const auto dir = test::scratch_dir("model_file_errors");
  ht::ModelInfo info;
  info.backbone = "resnet18";
  info.method = "rgb";
  info.class_names = {"a", "b"};
  info.image_size = 64;
  info.network = ht::network_name<ResNet<18>>("rgb");
  RgbNet<ResNet<18>> net(2);
  const auto good = dir / "good.safetensors";
  ht::save_model(*net, info, good);
  BOOST_TEST(ht::read_model_info(good).network == "RgbNet<ResNet-18>");

  // Into the wrong type.
  std::string msg = message_of([&] { ht::load_network<HalSalNet<ResNet<18>>>(good); });
  BOOST_TEST(msg.find("good.safetensors") != std::string::npos, msg);
  BOOST_TEST(msg.find("holds a RgbNet<ResNet-18>, not a HalSalNet") != std::string::npos, msg);
  // Plain weights without model metadata.
  io::save_weights(*net, dir / "plain.safetensors");
  msg = message_of([&] { ht::read_model_info(dir / "plain.safetensors"); });
  BOOST_TEST(msg.find("plain.safetensors: not a halsal model file") != std::string::npos, msg);
  // A .pth file.
  io::save_weights(*net, dir / "weights.pth");
  msg = message_of([&] { ht::load_model(dir / "weights.pth"); });
  BOOST_TEST(msg.find("weights.pth: not a halsal model file: a pth") != std::string::npos, msg);
  // Truncated.
  copy_prefix(good, dir / "cut.safetensors", std::filesystem::file_size(good) / 2);
  msg = message_of([&] { ht::load_model(dir / "cut.safetensors"); });
  BOOST_TEST(msg.find("cut.safetensors") != std::string::npos, msg);
  // Not there.
  msg = message_of([&] { ht::load_model(dir / "none.safetensors"); });
  BOOST_TEST(msg.find("none.safetensors: no such model file") != std::string::npos, msg);
  // Unknown backbone, unknown method, a network name that is not the rebuilt one.
  ht::ModelInfo bad = info;
  bad.backbone = "vgg16";
  ht::save_model(*net, bad, dir / "vgg.safetensors");
  msg = message_of([&] { ht::load_model(dir / "vgg.safetensors"); });
  BOOST_TEST(msg.find("vgg.safetensors: unknown backbone 'vgg16' (expected alexnet, resnet18, resnet34, resnet50, "
                      "resnet101, resnet152 or mobilenet_v2)") != std::string::npos, msg);
  bad = info;
  bad.method = "C";
  ht::save_model(*net, bad, dir / "method.safetensors");
  msg = message_of([&] { ht::load_model(dir / "method.safetensors"); });
  BOOST_TEST(msg.find("method.safetensors: unknown method 'C'") != std::string::npos, msg);
  bad = info;
  bad.backbone = "alexnet";  // says AlexNet, holds ResNet-18 weights and name
  ht::save_model(*net, bad, dir / "alex.safetensors");
  msg = message_of([&] { ht::load_model(dir / "alex.safetensors"); });
  BOOST_TEST(msg.find("alex.safetensors: holds a RgbNet<ResNet-18>, not a RgbNet<AlexNet>") != std::string::npos, msg);
  // The right name but weights of another class count.
  RgbNet<ResNet<18>> five(5);
  ht::save_model(*five, info, dir / "shape.safetensors");
  msg = message_of([&] { ht::load_model(dir / "shape.safetensors"); });
  BOOST_TEST(msg.find("shape.safetensors: load_state_dict") != std::string::npos, msg);
  // Writing needs .safetensors.
  msg = message_of([&] { ht::save_model(*net, info, dir / "model.pth"); });
  BOOST_TEST(msg.find("model.pth: a model file must be a .safetensors file") != std::string::npos, msg);
  // with_backbone by name.
  BOOST_TEST(ht::with_backbone("alexnet", [](auto tag) { return backbone_traits<typename decltype(tag)::type>::name; }) ==
             std::string(backbone_traits<AlexNet>::name));
  BOOST_TEST(ht::with_backbone("mobilenet_v2", [](auto tag) { return ht::backbone_key<typename decltype(tag)::type>(); }) ==
             "mobilenet_v2");
  BOOST_TEST(ht::with_backbone("resnet152", [](auto tag) { return ht::backbone_key<typename decltype(tag)::type>(); }) ==
             "resnet152");
  BOOST_TEST(ht::backbone_names().size() == 7u);
  msg = message_of([&] { ht::with_backbone("resnet200", [](auto) { return 0; }); });
  BOOST_TEST(msg == "unknown backbone 'resnet200' (expected alexnet, resnet18, resnet34, resnet50, resnet101, "
                    "resnet152 or mobilenet_v2)");
}

BOOST_AUTO_TEST_CASE(predict_an_image_file) {
  const auto dir = test::scratch_dir("model_file_predict");
  const auto data = tiny_synthetic();
  ht::ModelInfo info;
  info.backbone = "resnet18";
  info.method = "scratch-sal";
  info.network = ht::network_name<ResNet<18>>("scratch-sal");
  info.class_names = data->class_names;
  info.image_size = 64;
  info.center_crop = true;  // the eval transform: resize to 73 + center crop 64
  HalSalNet<ResNet<18>> net(2);
  ht::save_model(*net, info, dir / "m.safetensors");
  const auto m = ht::load_model(dir / "m.safetensors");
  const auto png = dir / "flower.png";
  hd::write_image(png, hd::load_sample(*data, 5).image);
  const auto p = ht::predict(m, png, 5);
  BOOST_TEST(p.classes.size() == 2u);  // top 5 of 2 classes
  BOOST_TEST(p.probabilities[0] >= p.probabilities[1]);
  BOOST_TEST(p.probabilities[0] + p.probabilities[1] == 1.0f, boost::test_tools::tolerance(1e-5f));
  BOOST_TEST(p.probabilities_all.sum().item<float>() == 1.0f, boost::test_tools::tolerance(1e-5f));
  BOOST_TEST(p.image.sizes().vec() == std::vector<int64_t>({3, 64, 64}));
  BOOST_TEST(p.saliency.dim() == 2);
  const auto out = m.infer(p.image.unsqueeze(0));
  BOOST_TEST(p.classes[0] == out.logits.argmax(1).item<int64_t>());
  BOOST_TEST(p.names[0] == data->class_names.at(static_cast<size_t>(p.classes[0])));
  // The same preprocessing as evaluation: the loader's eval batch holds the same pixels.
  hd::LoaderOptions lo;
  lo.batch_size = 1;
  lo.workers = 0;
  lo.shuffle = false;
  lo.transform = info.eval_transform();
  hd::Subset one;
  one.dataset = data;
  one.indices = {5};
  hd::Loader loader(one, lo);
  loader.start_epoch(0);
  const auto batch = loader.next();
  BOOST_REQUIRE(batch.has_value());
  BOOST_TEST(torch::equal(batch->images[0], p.image));
  BOOST_TEST(ht::predict(m, png, 1).classes.size() == 1u);
  // Bad image files.
  { std::ofstream(dir / "not.png") << "not an image"; }
  const std::string msg = message_of([&] { ht::predict(m, dir / "not.png"); });
  BOOST_TEST(msg.find("not.png") != std::string::npos, msg);
}

// An ablation variant (MobileNetV2 fused after stage 2, a cosine head) trained, saved and loaded by
// the loader behind halsal_eval / halsal_predict gives the trained network's logits and map.
BOOST_AUTO_TEST_CASE(ablation_variant_round_trips) {
  const auto data = tiny_synthetic();
  ht::ExperimentOptions o;
  o.config = tiny_config();
  o.config.head = "imprint";
  o.split.test_per_class = 5;
  o.split.val_per_class = 5;
  o.out_dir = test::scratch_dir("model_file_variant");
  o.saliency.activation = SaliencyActivation::softplus;
  using Variant = HalSalNet<MobileNetV2, Depth<4>, AfterStage<2>>;
  const ht::CellResult cell = ht::run_saliency_cell<MobileNetV2, Depth<4>, AfterStage<2>>("scratch-sal", data, 2, 1, o);
  BOOST_TEST(cell.out_dir == o.out_dir);
  BOOST_TEST(cell.composition.network == "HalSalNet");
  BOOST_TEST(cell.composition.backbone == "mobilenet_v2");
  BOOST_TEST(cell.composition.depth == 4);
  BOOST_TEST(cell.composition.fusion == "AfterStage<2>");
  BOOST_TEST(cell.composition.modulation == "Residual");
  BOOST_TEST(cell.composition.activation == "softplus");
  BOOST_TEST(cell.composition.head == "cosine");
  const auto file = o.out_dir / "model.safetensors";
  ht::save_cell_model(cell, *data, o, file);

  const ht::ModelInfo info = ht::read_model_info(file);
  BOOST_TEST(info.format_version == ht::kModelFormatVersion);
  BOOST_TEST((info.composition == cell.composition));
  BOOST_TEST(info.network == Variant::Impl::name());
  BOOST_TEST(info.network == "HalSalNet<MobileNetV2, Depth<4>, AfterStage<2>, Residual>");
  BOOST_TEST(info.backbone == "mobilenet_v2");
  BOOST_TEST(info.saliency_activation == "softplus");

  const auto x = test_images(*data, cell.split.test, 4);
  const auto trained = cell.infer(x);
  for (const auto& m : {ht::load_model(file), ht::load_model<Variant>(file)}) {
    const auto back = m.infer(x);
    BOOST_TEST((trained.logits - back.logits).abs().max().item<float>() <= 1e-6f);
    BOOST_TEST((trained.saliency - back.saliency).abs().max().item<float>() <= 1e-6f);
    const Variant net = m.network<Variant>();
    BOOST_TEST((net->saliency->activation() == SaliencyActivation::softplus));
    BOOST_TEST((composition_of(net) == cell.composition));
  }
  // Another type is refused, naming both.
  std::string msg = message_of([&] { ht::load_model<HalSalNet<MobileNetV2>>(file); });
  BOOST_TEST(msg.find("model.safetensors: holds a HalSalNet<MobileNetV2, Depth<4>, AfterStage<2>, Residual>, not a "
                      "HalSalNet<MobileNetV2, Depth<4>, AfterStage<4>, Residual>") != std::string::npos, msg);
  msg = message_of([&] { ht::load_model(file).network<HalSalNet<MobileNetV2, Depth<3>>>(); });
  BOOST_TEST(msg.find("not a HalSalNet<MobileNetV2, Depth<3>, AfterStage<4>, Residual>") != std::string::npos, msg);
}

// A composition of the user's own (not one the programs train) loads with load_model<Net>; the
// untyped loader says what it is and how to load it.
BOOST_AUTO_TEST_CASE(own_composition_loads_typed) {
  using Mine = HalSalNet<AlexNet, Depth<2>, AfterConv3, Plain>;
  const auto dir = test::scratch_dir("model_file_own");
  torch::manual_seed(4);
  Mine net(3);
  net->eval();
  const ht::ModelInfo info = ht::model_info_for(net, {"a", "b", "c"}, "scratch-sal");
  BOOST_TEST(info.composition.depth == 2);
  BOOST_TEST(info.composition.fusion == "AfterConv3");
  BOOST_TEST(info.composition.modulation == "Plain");
  BOOST_TEST(info.composition.head == "linear");
  BOOST_TEST(info.network == "HalSalNet<AlexNet, Depth<2>, AfterConv3, Plain>");
  ht::ModelInfo sized = info;
  sized.image_size = 64;
  sized.center_crop = false;
  ht::save_model(*net, sized, dir / "mine.safetensors");
  const auto m = ht::load_model<Mine>(dir / "mine.safetensors");
  const auto x = test_images(*tiny_synthetic(), hd::Subset::all(tiny_synthetic()), 2);
  torch::NoGradGuard no_grad;
  const auto direct = net->forward_full(hd::Normalization::imagenet()(x));
  const auto back = m.infer(x);
  BOOST_TEST((direct.logits - back.logits).abs().max().item<float>() <= 1e-6f);
  BOOST_TEST((direct.saliency - back.saliency).abs().max().item<float>() <= 1e-6f);
  const std::string msg = message_of([&] { ht::load_model(dir / "mine.safetensors"); });
  BOOST_TEST(msg.find("mine.safetensors: holds a HalSalNet<AlexNet, Depth<2>, AfterConv3, Plain>, a composition the "
                      "programs do not build") != std::string::npos, msg);
  BOOST_TEST(msg.find("load it with load_model<HalSalNet<AlexNet, Depth<2>, AfterConv3, Plain>>") != std::string::npos, msg);
}

// Files of format 1 (no composition, no version) still load; a damaged composition or a newer
// format is refused with a message.
BOOST_AUTO_TEST_CASE(format_one_files_and_bad_compositions) {
  const auto dir = test::scratch_dir("model_file_format");
  torch::manual_seed(5);
  HalSalNet<ResNet<18>> net(2);
  net->eval();
  ht::ModelInfo info = ht::model_info_for(net, {"a", "b"}, "B");
  info.image_size = 64;
  io::TensorDict tensors;
  for (const auto& kv : io::state_dict(*net)) tensors.insert(kv.key(), kv.value().detach().clone());
  auto write = [&](const std::string& name, const nlohmann::json& j) {
    io::write_weights(dir / name, tensors, {{"halsal", "model"}, {"network", info.network}, {"info", j.dump()}});
    return dir / name;
  };
  nlohmann::json v1 = ht::to_json(info);
  BOOST_TEST(v1.at("format_version").get<int>() == 2);
  v1.erase("format_version");
  v1.erase("composition");
  v1["saliency_activation"] = "softplus";
  const auto old = write("v1.safetensors", v1);
  const ht::ModelInfo read = ht::read_model_info(old);
  BOOST_TEST(read.format_version == 1);
  BOOST_TEST(read.composition.network == "HalSalNet");
  BOOST_TEST(read.composition.backbone == "resnet18");
  BOOST_TEST(read.composition.depth == 4);
  BOOST_TEST(read.composition.fusion == "AfterStage<4>");
  BOOST_TEST(read.composition.activation == "softplus");
  const auto m = ht::load_model(old);
  BOOST_TEST((m.module->as<HalSalNet<ResNet<18>>::Impl>()->saliency->activation() == SaliencyActivation::softplus));

  nlohmann::json bad = ht::to_json(info);
  bad["composition"]["depth"] = 9;
  std::string msg = message_of([&] { ht::read_model_info(write("depth.safetensors", bad)); });
  BOOST_TEST(msg.find("depth.safetensors: corrupt model file: model information: composition:") != std::string::npos, msg);
  bad = ht::to_json(info);
  bad["composition"]["fusion"] = "AfterStage<3>";
  msg = message_of([&] { ht::read_model_info(write("mismatch.safetensors", bad)); });
  BOOST_TEST(msg.find("the composition is a HalSalNet<ResNet-18, Depth<4>, AfterStage<3>, Residual> but the network is "
                      "called HalSalNet<ResNet-18, Depth<4>, AfterStage<4>, Residual>") != std::string::npos, msg);
  bad = ht::to_json(info);
  bad["composition"]["head"] = "mlp";
  msg = message_of([&] { ht::read_model_info(write("head.safetensors", bad)); });
  BOOST_TEST(msg.find("unknown head kind 'mlp'") != std::string::npos, msg);
  bad = ht::to_json(info);
  bad["format_version"] = 3;
  msg = message_of([&] { ht::read_model_info(write("newer.safetensors", bad)); });
  BOOST_TEST(msg.find("newer.safetensors: corrupt model file: model information: format 3 (this halsal reads formats 1 "
                      "to 2; the file was written by a newer halsal)") != std::string::npos, msg);
  // Names parse back into compositions; others are refused.
  BOOST_TEST((parse_network_name(HalSalNet<AlexNet, Depth<1>, AfterPool2, Plain>::Impl::name()).same_type(
      composition_of<HalSalNet<AlexNet, Depth<1>, AfterPool2, Plain>>())));
  BOOST_TEST((parse_network_name("RgbNet<ResNet-152>").same_type(composition_of<RgbNet<ResNet<152>>>())));
  BOOST_TEST((parse_network_name("SmicNet<MobileNetV2, Depth<4>, AfterStage<3>, Residual>")
                  .same_type(composition_of<SmicNet<MobileNetV2, Depth<4>, AfterStage<3>>>())));
  BOOST_CHECK_THROW(parse_network_name("VggNet<VGG-16>"), Error);
  BOOST_CHECK_THROW(parse_network_name("HalSalNet<ResNet-18, Depth<7>, AfterStage<4>, Residual>"), Error);
}

BOOST_AUTO_TEST_CASE(comparison_rows_pick_the_disagreements) {
  const auto data = tiny_synthetic();
  // labels: images 0..11 are class 0, 12..23 class 1 (synthetic order).
  const std::vector<size_t> idx{0, 1, 2, 12, 13, 14};
  const std::vector<int64_t> base_pred{1, 0, 1, 0, 1, 1}, ours_pred{0, 0, 1, 1, 0, 1};
  ht::EvalReport base, ours;
  for (size_t i = 0; i < idx.size(); ++i) {
    const int64_t label = data->samples[idx[i]].label;
    base.predictions.push_back({idx[i], label, base_pred[i], 0.9f});
    ours.predictions.push_back({idx[i], label, ours_pred[i], 0.8f});
  }
  BOOST_REQUIRE(data->samples[12].label == 1);
  // ours right, base wrong: positions 0 (img 0), 3 (img 12); base right, ours wrong: 4 (img 13).
  BOOST_TEST(viz::disagreements(base.predictions, ours.predictions, true) == std::vector<size_t>({0, 3}));
  BOOST_TEST(viz::disagreements(base.predictions, ours.predictions, false) == std::vector<size_t>({4}));
  hd::Subset train;
  train.dataset = data;
  train.indices = {7, 20};  // class 0, class 1
  int calls = 0;
  viz::InferFunction infer = [&](const torch::Tensor& x) {
    ++calls;
    NetOutput o;
    o.logits = torch::zeros({x.size(0), 2});
    o.saliency = torch::ones({x.size(0), 1, 4, 4});
    return o;
  };
  const auto rows = viz::comparison_rows(base, ours, infer, *data, train, true, 10, "Baseline-RGB", "Approach B");
  BOOST_REQUIRE(rows.size() == 2u);
  BOOST_TEST(calls == 2);
  BOOST_TEST(torch::equal(rows[0].input, hd::to_tensor_chw(hd::load_sample(*data, 0).image)));
  BOOST_TEST(torch::equal(rows[0].example, hd::to_tensor_chw(hd::load_sample(*data, 7).image)));
  BOOST_TEST(torch::equal(rows[1].input, hd::to_tensor_chw(hd::load_sample(*data, 12).image)));
  BOOST_TEST(torch::equal(rows[1].example, hd::to_tensor_chw(hd::load_sample(*data, 20).image)));
  BOOST_TEST(rows[1].saliency.sizes().vec() == std::vector<int64_t>({1, 4, 4}));
  const std::vector<std::string> caption{"Predicted (Baseline-RGB): " + data->class_names[0],
                                         "Predicted (Approach B): " + data->class_names[1],
                                         "Ground truth: " + data->class_names[1]};
  BOOST_TEST(rows[1].caption == caption);
  const auto worse = viz::comparison_rows(base, ours, infer, *data, train, false, 10, "B", "O");
  BOOST_REQUIRE(worse.size() == 1u);
  BOOST_TEST(torch::equal(worse[0].input, hd::to_tensor_chw(hd::load_sample(*data, 13).image)));
  BOOST_TEST(torch::equal(worse[0].example, hd::to_tensor_chw(hd::load_sample(*data, 7).image)));  // predicted 0
  BOOST_TEST(viz::comparison_rows(base, ours, infer, *data, train, true, 1, "B", "O").size() == 1u);
  BOOST_TEST(viz::comparison_rows(base, ours, infer, *data, train, true, 0, "B", "O").empty());
  // Reports over different images are refused.
  ht::EvalReport other = ours;
  other.predictions[2].index = 3;
  const std::string msg = message_of([&] { viz::comparison_rows(base, other, infer, *data, train, true, 4, "B", "O"); });
  BOOST_TEST(msg.find("same images") != std::string::npos, msg);
  other.predictions.pop_back();
  BOOST_CHECK_THROW(viz::disagreements(base.predictions, other.predictions, true), Error);
}

BOOST_AUTO_TEST_SUITE_END()
