// Fusion points: where the saliency map modulates the RGB branch (paper §3.3, Fig. 3).
// The network is cut there: everything before is the RGB branch, everything after the joint branch.
#pragma once
#include <type_traits>

namespace halsal {

/// AlexNet: after conv2's ReLU, before the second max-pool (27×27 at a 227 input; the paper's default).
struct BeforePool2 {
  static constexpr const char* name = "BeforePool2";
};
/// AlexNet: after the second max-pool (13×13).
struct AfterPool2 {
  static constexpr const char* name = "AfterPool2";
};
/// AlexNet: after conv3's ReLU (13×13).
struct AfterConv3 {
  static constexpr const char* name = "AfterConv3";
};
/// AlexNet: after conv4's ReLU (13×13).
struct AfterConv4 {
  static constexpr const char* name = "AfterConv4";
};

/// ResNet / MobileNetV2: at the end of stage N (output stride 4·2^(N-1)); N = 4 is the paper's
/// ResNet default, "after the fourth residual block".
template <int N>
struct AfterStage {
  static constexpr int stage = N;
  static constexpr const char* name = N == 1   ? "AfterStage<1>"
                                      : N == 2 ? "AfterStage<2>"
                                      : N == 3 ? "AfterStage<3>"
                                      : N == 4 ? "AfterStage<4>"
                                               : "AfterStage<?>";
};

/// True for AlexNet's four fusion tags.
template <class F>
inline constexpr bool is_alexnet_fusion_v =
    std::is_same_v<F, BeforePool2> || std::is_same_v<F, AfterPool2> ||
    std::is_same_v<F, AfterConv3> || std::is_same_v<F, AfterConv4>;

template <class F>
struct is_after_stage : std::false_type {};
template <int N>
struct is_after_stage<AfterStage<N>> : std::true_type {};
/// True for AfterStage<N>, whatever N.
template <class F>
inline constexpr bool is_after_stage_v = is_after_stage<F>::value;

/// True for any fusion tag.
template <class F>
inline constexpr bool is_fusion_point_v = is_alexnet_fusion_v<F> || is_after_stage_v<F>;

}  // namespace halsal
