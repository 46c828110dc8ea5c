// A network's composition: compile-time checks (one sentence per mistake, no template pages) and
// the same composition as values (Composition), which model files record and loaders compare.
#pragma once
#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "halsal/backbones/alexnet.hpp"
#include "halsal/backbones/mobilenet_v2.hpp"
#include "halsal/backbones/resnet.hpp"
#include "halsal/core/text.hpp"
#include "halsal/fusion/fusion_points.hpp"
#include "halsal/fusion/modulation.hpp"
#include "halsal/nets/head.hpp"
#include "halsal/saliency/saliency_branch.hpp"

namespace halsal::detail {

template <class B, bool = is_backbone_v<B>>
struct family_of {
  static constexpr int value = -1;
};
template <class B>
struct family_of<B, true> {
  static constexpr int value = static_cast<int>(backbone_traits<B>::family);
};

template <class D, bool = is_depth_v<D>>
struct depth_of {
  static constexpr int value = 4;  // not a Depth: reported by its own assertion
};
template <class D>
struct depth_of<D, true> {
  static constexpr int value = D::value;
};

template <class F, bool = is_after_stage_v<F>>
struct stage_of {
  static constexpr int value = 1;
};
template <class F>
struct stage_of<F, true> {
  static constexpr int value = F::stage;
};

/// A backbone that stands in for a wrong one, so that only the assertion's sentence is printed.
template <class B>
using checked_backbone_t = std::conditional_t<is_backbone_v<B>, B, AlexNet>;

/// Asserts that <B, D, F, M> is a valid saliency network; the base class of HalSalNet / SmicNet.
template <class B, class D, class F, class M>
struct CheckComposition {
  static constexpr int family = family_of<B>::value;
  static constexpr bool alexnet = family == static_cast<int>(BackboneFamily::AlexNet);
  static_assert(is_backbone_v<B>,
                "halsal: the first template argument must be a backbone: AlexNet, "
                "ResNet<18|34|50|101|152> or MobileNetV2");
  static_assert(is_depth_v<D>,
                "halsal: the second template argument must be Depth<N>, the number of convolutional "
                "layers in the saliency branch");
  static_assert(depth_of<D>::value >= 1 && depth_of<D>::value <= 5,
                "halsal: Depth<N> is the number of convolutional layers in the saliency branch and "
                "must be 1 to 5 (the paper's default is Depth<4>)");
  static_assert(is_fusion_point_v<F>,
                "halsal: the third template argument must be a fusion point: BeforePool2, AfterPool2, "
                "AfterConv3, AfterConv4 (AlexNet) or AfterStage<1..4> (ResNet, MobileNetV2)");
  static_assert(!(family >= 0 && alexnet && is_after_stage_v<F>),
                "halsal: AfterStage<N> is a fusion point of ResNet and MobileNetV2; AlexNet fuses at "
                "BeforePool2, AfterPool2, AfterConv3 or AfterConv4");
  static_assert(!(family >= 0 && !alexnet && is_alexnet_fusion_v<F>),
                "halsal: BeforePool2, AfterPool2, AfterConv3 and AfterConv4 are AlexNet's fusion "
                "points; ResNet and MobileNetV2 fuse at AfterStage<1..4>");
  static_assert(stage_of<F>::value >= 1 && stage_of<F>::value <= 4,
                "halsal: AfterStage<N> needs N = 1, 2, 3 or 4 (the four stages of ResNet and "
                "MobileNetV2)");
  static_assert(is_modulation_v<M>,
                "halsal: the fourth template argument must be a modulation: Residual (Eq. 2, the "
                "default) or Plain (Eq. 1)");
  static constexpr bool valid = is_backbone_v<B> && is_depth_v<D> && is_fusion_point_v<F> &&
                                is_modulation_v<M> && depth_of<D>::value >= 1 &&
                                depth_of<D>::value <= 5 && stage_of<F>::value >= 1 &&
                                stage_of<F>::value <= 4 &&
                                !(alexnet && is_after_stage_v<F>) && !(!alexnet && is_alexnet_fusion_v<F>);
};

/// Asserts that B is a backbone; the base class of RgbNet.
template <class B>
struct CheckBackbone {
  static_assert(is_backbone_v<B>,
                "halsal: RgbNet<B> needs a backbone: AlexNet, ResNet<18|34|50|101|152> or MobileNetV2");
};

/// "ResNet-152, Depth<4>, AfterStage<4>, Residual" for names and logs.
template <class B, class D, class F, class M>
std::string composition_name() {
  std::string s;
  if constexpr (is_backbone_v<B>) s += backbone_traits<B>::name;
  if constexpr (is_depth_v<D>) s += ", Depth<" + std::to_string(D::value) + ">";
  if constexpr (is_fusion_point_v<F>) s += std::string(", ") + F::name;
  if constexpr (is_modulation_v<M>) s += std::string(", ") + M::name;
  return s;
}

}  // namespace halsal::detail

namespace halsal {

/// A network's whole composition as values: its type (network kind, backbone, saliency depth,
/// fusion point, modulation) and the two choices that are not in the type (the map's activation and
/// the head's kind). Model files record it; loaders rebuild and compare it.
struct Composition {
  std::string network;     ///< "HalSalNet", "SmicNet" or "RgbNet"
  std::string backbone;    ///< backbone key: alexnet, resnet18 … resnet152, mobilenet_v2
  int depth = 0;           ///< saliency-branch convolutions (0: no branch, RgbNet)
  std::string fusion;      ///< "BeforePool2" … "AfterStage<4>" (empty for RgbNet)
  std::string modulation;  ///< "Residual" or "Plain" (empty for RgbNet)
  std::string activation = "relu";  ///< the map's last non-linearity: relu or softplus (empty for RgbNet)
  std::string head = "linear";      ///< linear or cosine

  /// True when both name the same network type (activation and head aside).
  bool same_type(const Composition& o) const {
    return network == o.network && backbone == o.backbone && depth == o.depth && fusion == o.fusion &&
           modulation == o.modulation;
  }
  bool operator==(const Composition& o) const { return same_type(o) && activation == o.activation && head == o.head; }
  bool operator!=(const Composition& o) const { return !(*this == o); }
};

namespace detail {

/// Every backbone halsal ships: its key ("resnet152") and display name ("ResNet-152").
inline const std::vector<std::pair<std::string, std::string>>& backbone_table() {
  static const std::vector<std::pair<std::string, std::string>> t{
      {backbone_traits<AlexNet>::key, backbone_traits<AlexNet>::name},
      {backbone_traits<ResNet<18>>::key, backbone_traits<ResNet<18>>::name},
      {backbone_traits<ResNet<34>>::key, backbone_traits<ResNet<34>>::name},
      {backbone_traits<ResNet<50>>::key, backbone_traits<ResNet<50>>::name},
      {backbone_traits<ResNet<101>>::key, backbone_traits<ResNet<101>>::name},
      {backbone_traits<ResNet<152>>::key, backbone_traits<ResNet<152>>::name},
      {backbone_traits<MobileNetV2>::key, backbone_traits<MobileNetV2>::name}};
  return t;
}

/// Display name ("ResNet-152") ↔ key ("resnet152") of the backbones; empty when unknown.
inline std::string backbone_name_of_key(const std::string& key) {
  for (const auto& kv : backbone_table())
    if (kv.first == key) return kv.second;
  return {};
}
inline std::string backbone_key_of_name(const std::string& name) {
  for (const auto& kv : backbone_table())
    if (kv.second == name) return kv.first;
  return {};
}

}  // namespace detail

/// The keys of every backbone halsal ships ("alexnet", "resnet18", …, "mobilenet_v2").
inline const std::vector<std::string>& backbone_keys() {
  static const std::vector<std::string> k = [] {
    std::vector<std::string> keys;
    for (const auto& kv : detail::backbone_table()) keys.push_back(kv.first);
    return keys;
  }();
  return k;
}

/// The network type's name as Impl::name() spells it: "HalSalNet<ResNet-152, Depth<4>,
/// AfterStage<4>, Residual>", "RgbNet<AlexNet>".
inline std::string network_name(const Composition& c) {
  std::string backbone = detail::backbone_name_of_key(c.backbone);
  if (backbone.empty()) backbone = c.backbone;
  if (c.network == "RgbNet") return "RgbNet<" + backbone + ">";
  return c.network + "<" + backbone + ", Depth<" + std::to_string(c.depth) + ">, " + c.fusion + ", " + c.modulation + ">";
}

/// The whole composition in words: the type's name, then the map's activation and the head.
inline std::string describe(const Composition& c) {
  std::string s = network_name(c);
  if (c.network != "RgbNet") s += ", " + c.activation + " map";
  return s + ", " + c.head + " head";
}

/// Parses a network type's name (network_name(), Impl::name()) back into a composition with the
/// default activation and head; throws an Error naming the text when it is not one.
inline Composition parse_network_name(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error("'" + text + "' is not a halsal network name (" + why + ")");
  };
  const auto open = text.find('<');
  if (open == std::string::npos || text.empty() || text.back() != '>') throw bad("expected Kind<Backbone, ...>");
  Composition c;
  c.network = text.substr(0, open);
  if (c.network != "HalSalNet" && c.network != "SmicNet" && c.network != "RgbNet")
    throw bad("the network is HalSalNet, SmicNet or RgbNet");
  std::vector<std::string> parts;
  const std::string inner = text.substr(open + 1, text.size() - open - 2);
  for (size_t at = 0;;) {
    const size_t comma = inner.find(", ", at);
    parts.push_back(inner.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (comma == std::string::npos) break;
    at = comma + 2;
  }
  c.backbone = detail::backbone_key_of_name(parts[0]);
  if (c.backbone.empty()) throw bad("unknown backbone '" + parts[0] + "'");
  if (c.network == "RgbNet") {
    if (parts.size() != 1) throw bad("RgbNet takes a backbone only");
    c.activation.clear();
    return c;
  }
  if (parts.size() != 4) throw bad("expected a backbone, Depth<N>, a fusion point and a modulation");
  if (!starts_with(parts[1], "Depth<") || parts[1].size() != 8 || parts[1][7] != '>' || parts[1][6] < '1' ||
      parts[1][6] > '5')
    throw bad("the depth is Depth<1..5>");
  c.depth = parts[1][6] - '0';
  c.fusion = parts[2];
  const bool alexnet = c.backbone == backbone_traits<AlexNet>::key;
  const std::vector<std::string> fusions =
      alexnet ? std::vector<std::string>{BeforePool2::name, AfterPool2::name, AfterConv3::name, AfterConv4::name}
              : std::vector<std::string>{AfterStage<1>::name, AfterStage<2>::name, AfterStage<3>::name,
                                         AfterStage<4>::name};
  if (std::find(fusions.begin(), fusions.end(), c.fusion) == fusions.end())
    throw bad("'" + c.fusion + "' is not a fusion point of " + parts[0]);
  c.modulation = parts[3];
  if (c.modulation != "Residual" && c.modulation != "Plain") throw bad("the modulation is Residual or Plain");
  return c;
}

/// The composition of network type Net (HalSalNet, SmicNet or RgbNet holder) with the default
/// activation (relu) and head (linear).
template <class Net>
Composition composition_of() {
  using Impl = typename Net::Impl;
  using B = typename Impl::backbone_type;
  Composition c;
  const std::string name = Impl::name();
  c.network = name.substr(0, name.find('<'));
  c.backbone = backbone_traits<B>::key;
  if constexpr (Impl::has_saliency) {
    c.depth = Impl::depth_type::value;
    c.fusion = Impl::fusion_type::name;
    c.modulation = Impl::modulation_type::name;
  } else {
    c.activation.clear();
  }
  return c;
}

/// The composition of a network instance: its type's, with the map's activation and the head it
/// has.
template <class Net>
Composition composition_of(const Net& net) {
  using Impl = typename Net::Impl;
  Composition c = composition_of<Net>();
  if constexpr (Impl::has_saliency) c.activation = to_string(net->saliency->activation());
  c.head = to_string(net->head_kind());
  return c;
}

}  // namespace halsal
