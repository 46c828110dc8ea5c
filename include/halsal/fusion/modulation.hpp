// Modulation of the RGB features l by the one-channel saliency map s (paper §3.3).
#pragma once
#include <torch/types.h>

#include <type_traits>

namespace halsal {

/// How a modulation combines features and map; the tags below pick one at compile time.
enum class ModulationKind { Residual, Plain };

/// Eq. 2 (default): l̂ = l · (s + 1). The skip connection keeps the RGB features alive where s = 0,
/// and by Eq. 3 the gradient into l is scaled by the same (s + 1).
struct Residual {
  static constexpr ModulationKind kind = ModulationKind::Residual;
  static constexpr const char* name = "Residual";
};
/// Eq. 1: l̂ = l · s.
struct Plain {
  static constexpr ModulationKind kind = ModulationKind::Plain;
  static constexpr const char* name = "Plain";
};

template <class M>
inline constexpr bool is_modulation_v = std::is_same_v<M, Residual> || std::is_same_v<M, Plain>;

/// Applies the modulation: one map (N×1×h×w) scales every channel of l (N×C×h×w).
inline torch::Tensor modulate(const torch::Tensor& l, const torch::Tensor& s, ModulationKind kind) {
  return kind == ModulationKind::Residual ? l * (s + 1) : l * s;
}

}  // namespace halsal
