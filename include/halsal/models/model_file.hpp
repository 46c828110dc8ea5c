// The model file: a trained network's weights in one .safetensors file together with what is
// needed to use it again — its whole composition (network kind, backbone, saliency depth, fusion
// point, modulation, map activation, head kind: which network to rebuild), the method that trained
// it, class names, preprocessing (image size, normalization) and the k-shot split it was trained on
// (k, seed, split options), so that data::kshot(dataset, k, seed, split) gives the same test set
// later. The information carries a format version (kModelFormatVersion); files of format 1 (no
// composition: it is read from the network's name) still load.
//
//   namespace ht = halsal::train;
//   ht::TrainModelOptions t;                     // backbone, method, k, seed, ExperimentOptions
//   t.experiment.out_dir = "model-B-k5";         // checkpoints, metrics.jsonl, model.safetensors
//   ht::TrainedModel r = ht::train_and_save(dataset, t);
//   ht::LoadedModel m = ht::load_model("model-B-k5/model.safetensors");   // the right Net type
//   auto mine = ht::load_model<HalSalNet<AlexNet, Depth<2>, AfterConv3>>("mine.safetensors");  // typed
//   ht::EvalReport test = m.evaluate(ht::model_subset(m.info, dataset, "test"));
//   ht::ImagePrediction p = ht::predict(m, "rose.jpg", /*top=*/5);      // classes, saliency map
#pragma once
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "halsal/backbones/alexnet.hpp"
#include "halsal/backbones/mobilenet_v2.hpp"
#include "halsal/backbones/resnet.hpp"
#include "halsal/data/data.hpp"
#include "halsal/eval/table.hpp"
#include "halsal/io/state_dict.hpp"
#include "halsal/io/weights.hpp"
#include "halsal/experiments/ablation.hpp"
#include "halsal/experiments/experiment.hpp"
#include "halsal/nets/composition.hpp"
#include "halsal/train/trainer.hpp"

namespace halsal::train {

/// The format of the model information this halsal writes: 1 = backbone, method and network name
/// only; 2 = adds the whole composition (ModelInfo::composition).
inline constexpr int kModelFormatVersion = 2;

/// Everything a model file records besides the weights.
struct ModelInfo {
  int format_version = kModelFormatVersion;  ///< of the file it was read from (1 or 2)
  /// The network: kind, backbone, depth, fusion point, modulation, map activation, head kind.
  /// backbone, network and saliency_activation below repeat parts of it (format 1 had only them).
  Composition composition;
  std::string backbone;  ///< backbone key, see backbone_names() (alexnet, resnet18 … mobilenet_v2)
  std::string method;    ///< "rgb", "scratch-sal", "smic", "A" or "B" (see experiment_methods)
  std::string network;   ///< the network type's name, Impl::name(), e.g. "RgbNet<ResNet-18>"
  std::vector<std::string> class_names;  ///< in logit order
  int image_size = 224;                  ///< evaluation size (the training crop size)
  std::string normalization = "imagenet";  ///< "imagenet" or "symmetric"
  /// How evaluation preprocesses: true → Transform::eval (resize + center crop), false →
  /// Transform::squash (whole image), as the trainer does for its config.
  bool center_crop = true;
  /// The saliency map's last non-linearity ("relu" or "softplus"; not in the weights).
  std::string saliency_activation = "relu";
  int k = 0;          ///< training images per class, or data::kOfficial (the dataset's split)
  uint64_t seed = 0;  ///< split and training seed
  data::SplitOptions split;  ///< test / val images per class of the k-shot split
  std::string dataset_path, dataset_layout, dataset_summary;  ///< where it was trained
  double top1 = std::numeric_limits<double>::quiet_NaN();  ///< on the split's test set, in [0, 1]
  double top5 = std::numeric_limits<double>::quiet_NaN();
  int best_epoch = 0;
  nlohmann::json config = nlohmann::json::object();  ///< the training configuration (to_json)

  /// The evaluation transform (what Trainer::evaluate applies to every image).
  data::Transform eval_transform() const {
    return center_crop ? data::Transform::eval(image_size) : data::Transform::squash(image_size);
  }
  /// The input normalization.
  data::Normalization input_normalization() const {
    return normalization == "symmetric" ? data::Normalization::symmetric() : data::Normalization::imagenet();
  }
  /// "resnet18 / Approach B, k=5 seed=0, 4 classes, 64 px".
  std::string summary() const {
    std::ostringstream os;
    os << backbone << " / " << method << " (" << (composition.network.empty() ? network : describe(composition))
       << "), k=" << data::k_label(k)
       << " seed=" << seed << ", " << class_names.size() << " classes, " << image_size << " px, " << normalization
       << " normalization";
    return os.str();
  }
};

/// A composition as JSON.
inline nlohmann::json to_json(const Composition& c) {
  return {{"network", c.network},       {"backbone", c.backbone},     {"depth", c.depth},
          {"fusion", c.fusion},         {"modulation", c.modulation}, {"activation", c.activation},
          {"head", c.head}};
}

/// Reads a composition written by to_json; a missing or mistyped field, an unknown backbone,
/// activation or head is an Error naming it.
inline Composition composition_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw Error("composition: expected a JSON object");
  Composition c;
  std::string field;
  try {
    for (const char* key : {"network", "backbone", "depth", "fusion", "modulation", "activation", "head"}) {
      field = key;
      if (!j.contains(key)) throw Error(std::string("composition: field '") + key + "' is missing");
    }
    field = "network", c.network = j.at("network").get<std::string>();
    field = "backbone", c.backbone = j.at("backbone").get<std::string>();
    field = "depth", c.depth = j.at("depth").get<int>();
    field = "fusion", c.fusion = j.at("fusion").get<std::string>();
    field = "modulation", c.modulation = j.at("modulation").get<std::string>();
    field = "activation", c.activation = j.at("activation").get<std::string>();
    field = "head", c.head = j.at("head").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error("composition: field '" + field + "' has the wrong type (" + e.what() + ")");
  }
  try {
    const auto& keys = backbone_keys();
    if (std::find(keys.begin(), keys.end(), c.backbone) == keys.end())
      throw Error("unknown backbone '" + c.backbone + "'");
    // The name must parse back into the same type: this checks kind, depth, fusion and modulation.
    if (!parse_network_name(network_name(c)).same_type(c))
      throw Error("'" + network_name(c) + "' is not a network halsal has");
    if (c.network != "RgbNet") parse_saliency_activation(c.activation);
    parse_head_kind(c.head);
  } catch (const Error& e) {
    throw Error(std::string("composition: ") + e.what());
  }
  return c;
}

/// ModelInfo as JSON (NaN accuracies as null; k = kOfficial as "K").
inline nlohmann::json to_json(const ModelInfo& m) {
  auto num = [](double v) { return std::isnan(v) ? nlohmann::json() : nlohmann::json(v); };
  nlohmann::json j = {{"format_version", kModelFormatVersion},
          {"backbone", m.backbone},
          {"method", m.method},
          {"network", m.network},
          {"class_names", m.class_names},
          {"image_size", m.image_size},
          {"normalization", m.normalization},
          {"center_crop", m.center_crop},
          {"saliency_activation", m.saliency_activation},
          {"k", m.k == data::kOfficial ? nlohmann::json("K") : nlohmann::json(m.k)},
          {"seed", m.seed},
          {"test_per_class", m.split.test_per_class},
          {"val_per_class", m.split.val_per_class},
          {"dataset_path", m.dataset_path},
          {"dataset_layout", m.dataset_layout},
          {"dataset_summary", m.dataset_summary},
          {"top1", num(m.top1)},
          {"top5", num(m.top5)},
          {"best_epoch", m.best_epoch},
          {"config", m.config}};
  if (!m.composition.network.empty()) j["composition"] = to_json(m.composition);
  return j;
}

/// Reads ModelInfo from JSON; a missing or mistyped field is an Error naming it.
inline ModelInfo model_info_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw Error("model information: expected a JSON object");
  auto need = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key)) throw Error(std::string("model information: field '") + key + "' is missing");
    return j.at(key);
  };
  ModelInfo m;
  std::string field;
  try {
    field = "format_version", m.format_version = j.value("format_version", 1);
    if (m.format_version < 1 || m.format_version > kModelFormatVersion)
      throw Error("model information: format " + std::to_string(m.format_version) + " (this halsal reads formats 1 to " +
                  std::to_string(kModelFormatVersion) +
                  (m.format_version > kModelFormatVersion ? "; the file was written by a newer halsal)" : ")"));
    field = "backbone", m.backbone = need("backbone").get<std::string>();
    field = "method", m.method = need("method").get<std::string>();
    field = "network", m.network = need("network").get<std::string>();
    field = "class_names", m.class_names = need("class_names").get<std::vector<std::string>>();
    field = "image_size", m.image_size = need("image_size").get<int>();
    field = "normalization", m.normalization = need("normalization").get<std::string>();
    field = "center_crop", m.center_crop = j.value("center_crop", true);
    field = "saliency_activation", m.saliency_activation = j.value("saliency_activation", std::string("relu"));
    field = "k";
    const auto& k = need("k");
    m.k = k.is_string() && (k.get<std::string>() == "K" || k.get<std::string>() == "k") ? data::kOfficial : k.get<int>();
    field = "seed", m.seed = need("seed").get<uint64_t>();
    field = "test_per_class", m.split.test_per_class = need("test_per_class").get<int>();
    field = "val_per_class", m.split.val_per_class = need("val_per_class").get<int>();
    field = "dataset_path", m.dataset_path = j.value("dataset_path", std::string());
    field = "dataset_layout", m.dataset_layout = j.value("dataset_layout", std::string());
    field = "dataset_summary", m.dataset_summary = j.value("dataset_summary", std::string());
    auto num = [&](const char* key) {
      return j.contains(key) && j.at(key).is_number() ? j.at(key).get<double>() : std::numeric_limits<double>::quiet_NaN();
    };
    field = "top1", m.top1 = num("top1");
    field = "top5", m.top5 = num("top5");
    field = "best_epoch", m.best_epoch = j.value("best_epoch", 0);
    field = "config", m.config = j.value("config", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    throw Error("model information: field '" + field + "' has the wrong type (" + e.what() + ")");
  }
  if (m.class_names.empty()) throw Error("model information: no class names");
  parse_saliency_activation(m.saliency_activation);  // throws on unknown names
  if (j.contains("composition")) {
    try {
      m.composition = composition_from_json(j.at("composition"));
    } catch (const Error& e) {
      throw Error(std::string("model information: ") + e.what());
    }
    if (network_name(m.composition) != m.network)
      throw Error("model information: the composition is a " + network_name(m.composition) + " but the network is called " +
                  m.network);
  } else {
    // Format 1: the network's name says the type; the activation was recorded beside it. The head
    // kind is read from the weights (read_model_file).
    try {
      m.composition = parse_network_name(m.network);
      if (m.composition.network != "RgbNet") m.composition.activation = m.saliency_activation;
    } catch (const Error&) {
      m.composition = Composition{};  // a name halsal does not know: the loaders say so
    }
  }
  if (m.image_size < 32 || m.image_size > 1024)
    throw Error("model information: image_size " + std::to_string(m.image_size) + " is outside 32..1024");
  if (m.normalization != "imagenet" && m.normalization != "symmetric")
    throw Error("model information: normalization must be imagenet or symmetric, not " + m.normalization);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Backbones by name

/// A compile-time backbone as a value: with_backbone() passes one to its function.
template <class B>
struct BackboneTag {
  using type = B;
};

/// The backbone names model files and the programs use: alexnet, resnet18, resnet34, resnet50,
/// resnet101, resnet152, mobilenet_v2.
inline const std::vector<std::string>& backbone_names() { return backbone_keys(); }

/// "alexnet, resnet18, …, resnet152 or mobilenet_v2" (for messages and --help).
inline std::string backbone_names_text() {
  std::string s;
  const auto& n = backbone_names();
  for (size_t i = 0; i < n.size(); ++i) s += (i == 0 ? "" : i + 1 == n.size() ? " or " : ", ") + n[i];
  return s;
}

/// The name of a backbone type ("resnet18" for ResNet<18>).
template <class B>
std::string backbone_key() {
  static_assert(is_backbone_v<B>, "halsal: backbone_key<B> needs a backbone: AlexNet, ResNet<18|34|50|101|152> or MobileNetV2");
  return backbone_traits<B>::key;
}

/// Runtime name → compile-time backbone: calls f(BackboneTag<B>{}) for "alexnet" (AlexNet),
/// "resnet18" … "resnet152" (ResNet<N>) or "mobilenet_v2" (MobileNetV2) and returns its result;
/// other names are an Error listing the valid ones. Every branch must return the same type. Each
/// branch instantiates f for its backbone: see halsal/models/instances.hpp for programs that
/// would rather compile each backbone once.
template <class F>
auto with_backbone(const std::string& name, F&& f) {
  if (name == "alexnet") return f(BackboneTag<AlexNet>{});
  if (name == "resnet18") return f(BackboneTag<ResNet<18>>{});
  if (name == "resnet34") return f(BackboneTag<ResNet<34>>{});
  if (name == "resnet50") return f(BackboneTag<ResNet<50>>{});
  if (name == "resnet101") return f(BackboneTag<ResNet<101>>{});
  if (name == "resnet152") return f(BackboneTag<ResNet<152>>{});
  if (name == "mobilenet_v2") return f(BackboneTag<MobileNetV2>{});
  throw Error("unknown backbone '" + name + "' (expected " + backbone_names_text() + ")");
}

/// The network type a method trains, as run_cell builds it: rgb → RgbNet<B>, smic → SmicNet<B>,
/// the others → HalSalNet<B>; calls f(net_type_tag) with a BackboneTag<Net>-like tag.
template <class B, class F>
auto with_network(const std::string& method, F&& f) {
  method_label(method);  // validates
  if (method == "rgb") return f(BackboneTag<RgbNet<B>>{});
  if (method == "smic") return f(BackboneTag<SmicNet<B>>{});
  return f(BackboneTag<HalSalNet<B>>{});
}

/// The network name (Impl::name()) of `method` on backbone B.
template <class B>
std::string network_name(const std::string& method) {
  return with_network<B>(method, [](auto tag) { return decltype(tag)::type::Impl::name(); });
}

// ---------------------------------------------------------------------------------------------
// Writing and reading

/// The metadata keys of a model file.
inline constexpr const char* kModelMetadataKind = "halsal";  ///< value "model"
inline constexpr const char* kModelMetadataInfo = "info";    ///< value: to_json(ModelInfo)

namespace detail {

/// True when a state dict holds a cosine head's scale (`backbone.<head>.scale`).
template <class Keys>
bool has_cosine_scale(const Keys& keys) {
  for (const auto& k : keys)
    if (starts_with(k, "backbone.") && k.size() > 6 && k.compare(k.size() - 6, 6, ".scale") == 0) return true;
  return false;
}

/// Fills what `info` leaves out of the composition and its mirrors: the composition from the
/// network's name (with info.saliency_activation and the module's head) when it is empty, the name,
/// backbone and activation from the composition when they are empty.
inline ModelInfo completed(ModelInfo info, const torch::nn::Module& module) {
  if (info.composition.network.empty() && !info.network.empty()) {
    try {
      info.composition = parse_network_name(info.network);
      if (info.composition.network != "RgbNet") info.composition.activation = info.saliency_activation;
      std::vector<std::string> keys;
      for (const auto& p : module.named_parameters(/*recurse=*/true)) keys.push_back(p.key());
      if (has_cosine_scale(keys)) info.composition.head = "cosine";
    } catch (const Error&) {
      info.composition = Composition{};  // a network halsal does not know: recorded by name only
    }
  }
  if (!info.composition.network.empty()) {
    if (info.network.empty()) info.network = network_name(info.composition);
    if (info.backbone.empty()) info.backbone = info.composition.backbone;
    if (!info.composition.activation.empty()) info.saliency_activation = info.composition.activation;
  }
  info.format_version = kModelFormatVersion;
  return info;
}

}  // namespace detail

/// Writes `module`'s weights and `info` as a .safetensors model file, atomically. info.network
/// must name the module's type (Impl::name()), or info.composition describe it (model_info_for());
/// what one leaves out is filled from the other.
inline void save_model(const torch::nn::Module& module, const ModelInfo& info_in, const std::filesystem::path& file) {
  if (file.extension() != ".safetensors") throw file_error(file, "a model file must be a .safetensors file");
  const ModelInfo info = detail::completed(info_in, module);
  if (info.network.empty()) throw file_error(file, "save_model: info.network (the network's name) is empty");
  if (info.class_names.empty()) throw file_error(file, "save_model: info.class_names is empty");
  io::TensorDict tensors;
  for (const auto& kv : io::state_dict(module)) tensors.insert(kv.key(), kv.value().detach().to(torch::kCPU).contiguous());
  io::write_weights(file, tensors,
                    {{kModelMetadataKind, "model"}, {"network", info.network}, {kModelMetadataInfo, to_json(info).dump()}});
}

/// The information of a network of a user's own composition, for save_model(): composition,
/// network name, backbone and map activation from `net`, the class names given; preprocessing and
/// the rest keep their defaults (set them to what training used).
template <class Net>
ModelInfo model_info_for(const Net& net, std::vector<std::string> class_names, std::string method = "B") {
  ModelInfo m;
  m.composition = composition_of(net);
  m.network = network_name(m.composition);
  m.backbone = m.composition.backbone;
  if (!m.composition.activation.empty()) m.saliency_activation = m.composition.activation;
  m.method = std::move(method);
  m.class_names = std::move(class_names);
  return m;
}

namespace detail {

/// A model file's information and tensors; errors name the file.
inline std::pair<ModelInfo, io::TensorDict> read_model_file(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    throw file_error(file, std::filesystem::exists(file, ec) ? halsal::detail::not_a_file(file) : "no such model file");
  io::WeightsFile w = io::read_weights_file(file);
  if (w.format != io::WeightsFormat::Safetensors)
    throw file_error(file, std::string("not a halsal model file: a ") + io::format_name(w.format) +
                               " weight file (model files are .safetensors files written by halsal_train / save_model)");
  const auto kind = w.metadata.find(kModelMetadataKind);
  if (kind == w.metadata.end() || kind->second != "model") {
    std::string what = kind == w.metadata.end() ? "it has no halsal metadata" : "its metadata says halsal=" + kind->second;
    if (kind != w.metadata.end() && kind->second == "step-one") what += " (a Step I saliency file)";
    throw file_error(file, "not a halsal model file: " + what + "; model files are written by halsal_train / save_model");
  }
  const auto info = w.metadata.find(kModelMetadataInfo);
  if (info == w.metadata.end()) throw file_error(file, "corrupt model file: the 'info' metadata is missing");
  ModelInfo m;
  try {
    m = model_info_from_json(nlohmann::json::parse(info->second));
  } catch (const nlohmann::json::exception& e) {
    throw file_error(file, std::string("corrupt model file: the 'info' metadata is not JSON (") + e.what() + ")");
  } catch (const Error& e) {
    throw file_error(file, std::string("corrupt model file: ") + e.what());
  }
  // Format 1 did not record the head: a cosine head stores its scale next to its weights.
  if (m.format_version < 2 && !m.composition.network.empty() && has_cosine_scale(w.tensors.keys()))
    m.composition.head = "cosine";
  return {std::move(m), std::move(w.tensors)};
}

}  // namespace detail

/// The information of a model file (reads and checks the whole file); errors name the file.
inline ModelInfo read_model_info(const std::filesystem::path& file) { return detail::read_model_file(file).first; }

// ---------------------------------------------------------------------------------------------
// Loading

/// A model file loaded into the network type it names, ready for inference and evaluation.
struct LoadedModel {
  ModelInfo info;
  std::filesystem::path file;
  std::string device = "cpu";
  bool has_saliency = false;  ///< false for rgb models (RgbNet has no saliency branch)
  std::shared_ptr<torch::nn::Module> module;  ///< the network (eval mode)
  /// Eval-mode, no-grad forward pass of uint8 images N×3×H×W already at info.image_size (any
  /// device; outputs on the model's device). SmicNet gets its spectral-residual maps here.
  std::function<NetOutput(const torch::Tensor&)> infer;
  /// Evaluates on a subset of a dataset with the model's preprocessing (Trainer::evaluate); the
  /// dataset's class names must be the model's (Error otherwise).
  std::function<EvalReport(const data::Subset&)> evaluate;

  /// The network as its own type (e.g. HalSalNet<AlexNet, Depth<2>, AfterConv3>); an Error names
  /// both types when it is another one.
  template <class Net>
  Net network() const {
    auto impl = std::dynamic_pointer_cast<typename Net::Impl>(module);
    if (!impl) throw Error(file.string() + ": the model is a " + info.network + ", not a " + Net::Impl::name());
    return Net(impl);
  }
};

/// Checks that `d` has the model's classes in the model's order; the Error names the first
/// difference.
inline void check_same_classes(const ModelInfo& info, const data::Dataset& d, const std::filesystem::path& model_file = {}) {
  const std::string model = model_file.empty() ? std::string("the model") : "the model " + model_file.string();
  if (d.class_names.size() != info.class_names.size())
    throw Error("the dataset at " + d.root.string() + " has " + std::to_string(d.class_names.size()) + " classes but " +
                model + " was trained on " + std::to_string(info.class_names.size()));
  for (size_t c = 0; c < d.class_names.size(); ++c)
    if (d.class_names[c] != info.class_names[c])
      throw Error("the dataset at " + d.root.string() + " names class " + std::to_string(c) + " '" + d.class_names[c] +
                  "' but " + model + " calls it '" + info.class_names[c] + "'");
}

/// A Trainer configuration that evaluates like the model's training did (quiet, one batch size).
inline TrainConfig evaluation_config(const ModelInfo& info, const std::string& device, int batch_size = 32) {
  TrainConfig c;
  if (info.config.is_object() && !info.config.empty()) {
    try {
      c = from_json(info.config);
    } catch (const Error&) {
      c = TrainConfig{};  // a newer/older configuration: the fields below are what evaluation needs
    }
  }
  c.image_size = info.image_size;
  c.normalization = info.normalization;
  c.random_resized_crop = info.center_crop;
  c.device = device;
  c.batch_size = batch_size;
  // The loaded network already has its trained head: "imprint" would make the Trainer reset a
  // cosine head's learned scale to its starting value.
  c.head = "xavier";
  c.warmup_epochs = 0;
  c.quiet = true;
  c.checkpoint_dir.clear();
  c.metrics_jsonl.clear();
  return c;
}

/// Loads a model file into network type Net (e.g. HalSalNet<ResNet<18>>): the recorded composition
/// must be Net's (else an Error naming both) and the weights must fit it exactly; the map's
/// activation and the head's kind are rebuilt as recorded. Errors name the file.
template <class Net>
Net load_network(const std::filesystem::path& file, const ModelInfo& info, const io::TensorDict& tensors) {
  using Impl = typename Net::Impl;
  const Composition want = composition_of<Net>();
  if (info.network != Impl::name() || (!info.composition.network.empty() && !info.composition.same_type(want)))
    throw file_error(file, "holds a " + info.network + ", not a " + Impl::name());
  const auto classes = static_cast<int64_t>(info.class_names.size());
  Net net = [&] {
    if constexpr (Impl::has_saliency) {
      SaliencyOptions so;
      so.activation = parse_saliency_activation(info.composition.network.empty() ? info.saliency_activation
                                                                                 : info.composition.activation);
      return Net(classes, so);
    } else {
      return Net(classes);
    }
  }();
  // A cosine head (TrainConfig::head = "imprint") stores its scale next to its weights.
  if (info.composition.head == "cosine" || tensors.contains(Impl::head_name() + ".scale")) net->use_cosine_head();
  try {
    io::load_state_dict(*net, tensors, io::LoadOptions{});
  } catch (const Error& e) {
    throw file_error(file, e.what());
  }
  net->eval();
  return net;
}

/// load_network() reading the file.
template <class Net>
Net load_network(const std::filesystem::path& file) {
  const auto loaded = detail::read_model_file(file);
  return load_network<Net>(file, loaded.first, loaded.second);
}

namespace detail {

template <class Net>
LoadedModel wrap_loaded(Net net, ModelInfo info, const std::filesystem::path& file, const std::string& device) {
  using Impl = typename Net::Impl;
  auto trainer = std::make_shared<Trainer<Net, ApproachB>>(net, evaluation_config(info, device));
  trainer->net()->eval();
  LoadedModel m;
  m.info = std::move(info);
  m.file = file;
  m.device = device;
  m.has_saliency = Impl::has_saliency;
  m.module = trainer->net().ptr();
  const auto norm = m.info.input_normalization();
  m.infer = [trainer, norm](const torch::Tensor& images_u8) {
    if (images_u8.dim() != 4 || images_u8.size(1) != 3 || images_u8.scalar_type() != torch::kByte)
      throw Error("infer: expected uint8 images N×3×H×W");
    auto& n = trainer->net();
    n->eval();
    torch::NoGradGuard no_grad;
    const torch::Device dev(trainer->config().device);
    return trainer->run(norm(images_u8, dev), images_u8);
  };
  const ModelInfo info_copy = m.info;
  m.evaluate = [trainer, info_copy, file](const data::Subset& subset) {
    if (subset.dataset) check_same_classes(info_copy, *subset.dataset, file);
    return trainer->evaluate(subset);
  };
  return m;
}

}  // namespace detail

/// Loads a model file into network type Net, a composition of the user's own included, on
/// `device` ("cpu", "cuda[:n]"): `load_model<HalSalNet<AlexNet, Depth<2>, AfterConv3>>(file)`. A
/// file whose recorded composition is not Net's is refused with an Error naming both; other errors
/// as load_model(file).
template <class Net>
LoadedModel load_model(const std::filesystem::path& file, const std::string& device = "cpu") {
  auto loaded = detail::read_model_file(file);
  return detail::wrap_loaded<Net>(load_network<Net>(file, loaded.first, loaded.second), loaded.first, file, device);
}

/// The networks load_model(file) rebuilds for backbone B: RgbNet<B>, HalSalNet<B> and SmicNet<B>
/// with the default depth and fusion, plus the variants the programs train (the ablations'
/// depths and fusion points, halsal_protocol's --fusion-stage 3). A user's own composition loads
/// with load_model<Net>(file).
template <class B>
struct loadable_networks {
  using type = type_list<RgbNet<B>, HalSalNet<B>, SmicNet<B>>;
};
template <>
struct loadable_networks<AlexNet> {
  using type = type_list<RgbNet<AlexNet>, HalSalNet<AlexNet>, SmicNet<AlexNet>, HalSalNet<AlexNet, Depth<1>>,
                         HalSalNet<AlexNet, Depth<2>>, HalSalNet<AlexNet, Depth<3>>,
                         HalSalNet<AlexNet, Depth<4>, AfterPool2>, HalSalNet<AlexNet, Depth<4>, AfterConv3>,
                         HalSalNet<AlexNet, Depth<4>, AfterConv4>>;
};
template <>
struct loadable_networks<MobileNetV2> {
  using type = type_list<RgbNet<MobileNetV2>, HalSalNet<MobileNetV2>, SmicNet<MobileNetV2>,
                         HalSalNet<MobileNetV2, Depth<1>>, HalSalNet<MobileNetV2, Depth<2>>,
                         HalSalNet<MobileNetV2, Depth<3>>, HalSalNet<MobileNetV2, Depth<4>, AfterStage<1>>,
                         HalSalNet<MobileNetV2, Depth<4>, AfterStage<2>>, HalSalNet<MobileNetV2, Depth<4>, AfterStage<3>>,
                         SmicNet<MobileNetV2, Depth<4>, AfterStage<3>>>;
};

namespace detail {

template <class... Nets, class F>
void for_each_network(type_list<Nets...>, F&& f) {
  (f(BackboneTag<Nets>{}), ...);
}

/// load_model(file)'s work for backbone B: the first of loadable_networks<B> whose type is the
/// recorded composition. Not inline, so that a program can compile it once per backbone
/// (halsal/models/instances.hpp).
template <class B>
LoadedModel load_backbone_model(const std::filesystem::path& file, const ModelInfo& info, const io::TensorDict& tensors,
                                const std::string& device) {
  if (info.composition.network.empty() || info.composition.backbone != backbone_traits<B>::key) {
    // The recorded backbone is not the one the name says (or the name is not halsal's).
    std::string expected;
    with_network<B>(info.method, [&](auto tag) {
      expected = decltype(tag)::type::Impl::name();
      return 0;
    });
    throw file_error(file, "holds a " + info.network + ", not a " + expected);
  }
  std::optional<LoadedModel> out;
  std::string known;
  for_each_network(typename loadable_networks<B>::type{}, [&](auto tag) {
    using Net = typename decltype(tag)::type;
    const Composition c = composition_of<Net>();
    known += (known.empty() ? "" : ", ") + network_name(c);
    if (!out && c.same_type(info.composition))
      out = wrap_loaded<Net>(load_network<Net>(file, info, tensors), info, file, device);
  });
  if (!out)
    throw file_error(file, "holds a " + info.network + ", a composition the programs do not build (for " +
                               backbone_traits<B>::name + " they build " + known + "); load it with load_model<" +
                               info.network + "> in a program of your own");
  return std::move(*out);
}

}  // namespace detail

/// Loads a model file into the network its composition names, on `device` ("cpu", "cuda[:n]"):
/// every backbone with the default depth and fusion, and the variants the programs train (see
/// loadable_networks). Errors name the file: not a model file, an unknown backbone or method, a
/// composition it does not build (load_model<Net> does), weights that do not fit.
inline LoadedModel load_model(const std::filesystem::path& file, const std::string& device = "cpu") {
  auto loaded = detail::read_model_file(file);
  const ModelInfo& info = loaded.first;
  const io::TensorDict& tensors = loaded.second;
  try {
    method_label(info.method);
    with_backbone(info.backbone, [](auto) { return 0; });
  } catch (const Error& e) {
    throw file_error(file, e.what());
  }
  return with_backbone(info.backbone, [&](auto btag) {
    using B = typename decltype(btag)::type;
    return detail::load_backbone_model<B>(file, info, tensors, device);
  });
}

/// The subset `which` ("test", "val", "train" or "all") of `data` under the model's k-shot split;
/// k and seed may be overridden. Errors for unknown names.
inline data::Subset model_subset(const ModelInfo& info, std::shared_ptr<const data::Dataset> data, const std::string& which,
                                 std::optional<int> k = std::nullopt, std::optional<uint64_t> seed = std::nullopt) {
  if (!data) throw Error("model_subset: no dataset");
  if (which == "all") return data::Subset::all(data);
  if (which != "test" && which != "val" && which != "train")
    throw Error("unknown subset '" + which + "' (expected test, val, train or all)");
  const data::Split split = data::kshot(data, k.value_or(info.k), seed.value_or(info.seed), info.split);
  if (which == "test") return split.test;
  if (which == "val") return split.val;
  return split.train;
}

// ---------------------------------------------------------------------------------------------
// Training

/// What train_and_save() trains and where it writes.
struct TrainModelOptions {
  std::string backbone = "mobilenet_v2";  ///< see backbone_names()
  std::string method = "B";               ///< see experiment_methods()
  int k = 5;                              ///< or data::kOfficial
  uint64_t seed = 0;
  ExperimentOptions experiment;  ///< out_dir: required (checkpoints, metrics.jsonl, model.safetensors)
  bool keep_checkpoints = false;  ///< keep out_dir/checkpoints after the model file is written
};

/// train_and_save()'s outcome.
struct TrainedModel {
  CellResult cell;
  ModelInfo info;
  std::filesystem::path model_file;
  std::vector<std::filesystem::path> files;  ///< everything written that remains
};

/// The ModelInfo of a finished cell: the composition it trained (CellResult::composition), its
/// method, split and configuration, the dataset's classes and where it lies.
inline ModelInfo model_info_of(const CellResult& r, const data::Dataset& d, const ExperimentOptions& o) {
  if (r.composition.network.empty()) throw Error("model_info_of: the cell records no network (composition)");
  ModelInfo m;
  m.composition = r.composition;
  m.backbone = r.composition.backbone;
  m.method = r.method;
  m.network = network_name(r.composition);
  m.class_names = d.class_names;
  m.image_size = r.config.image_size;
  m.normalization = r.config.normalization;
  m.center_crop = r.config.random_resized_crop;
  m.saliency_activation = r.composition.activation.empty() ? to_string(o.saliency.activation) : r.composition.activation;
  m.k = r.k;
  m.seed = r.seed;
  m.split = o.split;
  m.dataset_path = d.root.string();
  m.dataset_layout = d.layout;
  m.dataset_summary = d.summary();
  m.top1 = r.top1;
  m.top5 = r.top5;
  m.best_epoch = r.best_epoch;
  m.config = to_json(r.config);  // what the cell ran with (its seed included)
  return m;
}

/// Writes a finished cell's network as a model file (model_info_of + save_model), e.g. each cell of
/// an ablation; load_model(file) rebuilds it. Returns the information written.
inline ModelInfo save_cell_model(const CellResult& r, const data::Dataset& d, const ExperimentOptions& o,
                                 const std::filesystem::path& file) {
  if (!r.model) throw file_error(file, "save_cell_model: the cell kept no network");
  const ModelInfo info = model_info_of(r, d, o);
  save_model(*r.model, info, file);
  return info;
}

/// Trains one network (run_cell: `method` on the k-shot split (k, seed)) and writes
/// <out_dir>/model.safetensors with its ModelInfo. Resumes from <out_dir>/checkpoints when a run
/// was interrupted; the checkpoints are removed at the end unless keep_checkpoints.
inline TrainedModel train_and_save(std::shared_ptr<const data::Dataset> data, const TrainModelOptions& t) {
  if (!data) throw Error("train_and_save: no dataset");
  if (t.experiment.out_dir.empty()) throw Error("train_and_save: an output folder is needed");
  if (!is_trained_method(t.method))
    throw Error("method '" + t.method + "' trains nothing, so there is no model to save (run it in halsal_protocol)");
  if (t.k < 1 && t.k != data::kOfficial) throw Error("k must be >= 1 or K, got " + std::to_string(t.k));
  std::filesystem::create_directories(t.experiment.out_dir);
  TrainedModel out;
  out.model_file = t.experiment.out_dir / "model.safetensors";
  with_backbone(t.backbone, [&](auto tag) {
    using B = typename decltype(tag)::type;
    ExperimentOptions o = t.experiment;
    o.keep_model = false;
    out.cell = run_cell<B>(t.method, data, t.k, t.seed, o);
    out.info = model_info_of(out.cell, *data, o);
    return 0;
  });
  // Data-parallel: every process holds the same weights, rank 0 writes them.
  if (t.experiment.process_group && t.experiment.process_group->rank() != 0) return out;
  save_model(*out.cell.model, out.info, out.model_file);
  if (!t.keep_checkpoints) std::filesystem::remove_all(t.experiment.out_dir / "checkpoints");
  out.files.push_back(out.model_file);
  for (const char* name : {"metrics.jsonl", "checkpoints"})
    if (std::filesystem::exists(t.experiment.out_dir / name)) out.files.push_back(t.experiment.out_dir / name);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Prediction of single images

/// One image's prediction: the top classes, the saliency map and the network's input.
struct ImagePrediction {
  std::vector<int64_t> classes;       ///< best first
  std::vector<std::string> names;     ///< class names of `classes`
  std::vector<float> probabilities;   ///< softmax probabilities of `classes`
  torch::Tensor probabilities_all;    ///< all classes' probabilities (CPU float, sums to 1)
  torch::Tensor saliency;             ///< CPU float h×w map; undefined for rgb models
  torch::Tensor image;                ///< the preprocessed input, uint8 3×S×S (S = image_size)
};

/// Predicts one preprocessed uint8 image 3×S×S (or 1×3×S×S): the `top` best classes.
inline ImagePrediction predict_tensor(const LoadedModel& m, const torch::Tensor& image_u8, int top = 5) {
  if (top < 1) throw Error("predict: top must be at least 1");
  torch::Tensor x = image_u8.dim() == 3 ? image_u8.unsqueeze(0) : image_u8;
  if (x.dim() != 4 || x.size(0) != 1) throw Error("predict: expected one image 3×H×W");
  const NetOutput out = m.infer(x);
  ImagePrediction p;
  p.image = x[0].to(torch::kCPU);
  p.probabilities_all = torch::softmax(out.logits.to(torch::kCPU).to(torch::kFloat32)[0], 0);
  const int64_t n = std::min<int64_t>(top, p.probabilities_all.size(0));
  const auto best = p.probabilities_all.topk(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = std::get<1>(best)[i].item<int64_t>();
    p.classes.push_back(c);
    p.names.push_back(m.info.class_names.at(static_cast<size_t>(c)));
    p.probabilities.push_back(std::get<0>(best)[i].item<float>());
  }
  if (out.saliency.defined()) p.saliency = out.saliency[0][0].to(torch::kCPU).to(torch::kFloat32);
  return p;
}

/// Decodes an image file (JPEG, PNG, BMP; errors name the file), preprocesses it exactly as
/// evaluation does (the model's eval transform) and predicts its `top` best classes.
inline ImagePrediction predict(const LoadedModel& m, const std::filesystem::path& image, int top = 5) {
  const data::Image decoded = data::decode_image(image);
  data::Rng rng(0);  // the eval transforms draw nothing
  const auto transformed = m.info.eval_transform()(decoded, data::ImageView{}, rng);
  return predict_tensor(m, data::to_tensor_chw(transformed.first), top);
}

// ---------------------------------------------------------------------------------------------
// Evaluation files

/// The files write_evaluation_files() writes.
struct EvaluationFiles {
  std::filesystem::path per_class_csv, confusion_csv, predictions_csv, report_md;
  explicit EvaluationFiles(const std::filesystem::path& out)
      : per_class_csv(out / "per_class.csv"), confusion_csv(out / "confusion.csv"),
        predictions_csv(out / "predictions.csv"), report_md(out / "report.md") {}
  std::vector<std::filesystem::path> all() const { return {per_class_csv, confusion_csv, predictions_csv, report_md}; }
};

/// Writes an evaluation to `out_dir`, atomically: per_class.csv (class,name,samples,correct,accuracy),
/// confusion.csv (rows true, columns predicted), predictions.csv (file,label,predicted,confidence,
/// label_name,predicted_name) and report.md. Returns the paths.
inline EvaluationFiles write_evaluation_files(const EvalReport& r, const data::Dataset& d, const std::filesystem::path& out_dir,
                                              const std::string& title = "Evaluation") {
  std::filesystem::create_directories(out_dir);
  const EvaluationFiles f(out_dir);
  const auto& m = r.metrics;
  std::ostringstream pc;
  pc << "class,name,samples,correct,accuracy\n";
  const Eigen::VectorXi n = m.class_counts();
  const Eigen::VectorXd acc = m.per_class_accuracy();
  for (Eigen::Index c = 0; c < acc.size(); ++c)
    pc << c << ',' << csv_quote(m.class_name(c)) << ',' << n(c) << ',' << m.confusion()(c, c) << ','
       << (std::isnan(acc(c)) ? std::string() : format_fixed(acc(c), 6)) << '\n';
  io::write_file_atomic(f.per_class_csv, pc.str());
  m.write_confusion_csv(f.confusion_csv);
  std::ostringstream pr;
  pr << "file,label,predicted,confidence,label_name,predicted_name\n";
  auto name = [&](int64_t c) {
    return c >= 0 && static_cast<size_t>(c) < d.class_names.size() ? d.class_names[static_cast<size_t>(c)] : std::string();
  };
  for (const auto& p : r.predictions)
    pr << csv_quote(d.key(p.index)) << ',' << p.label << ',' << p.predicted << ','
       << format_fixed(p.confidence, 6) << ',' << csv_quote(name(p.label)) << ','
       << csv_quote(name(p.predicted)) << '\n';
  io::write_file_atomic(f.predictions_csv, pr.str());
  m.write_markdown(f.report_md, title);
  return f;
}

}  // namespace halsal::train
