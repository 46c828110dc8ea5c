// halsal_ablation_depth: the paper's Fig. 2 — accuracy for saliency branches of 1–4 convolutions
// (Conv-1 … Conv-4) and the Baseline-RGB bar, resumable. The variants are the type list below.
#include <halsal/halsal.hpp>

#include "ablation_cli.hpp"

namespace ht = halsal::train;

/// Fig. 2's variants, each fused at the backbone's default point (AlexNet: before pool-2,
/// MobileNetV2: after stage 4).
using Depths = ht::type_list<halsal::Depth<1>, halsal::Depth<2>, halsal::Depth<3>, halsal::Depth<4>>;

int main(int argc, char** argv) {
  const halsal::cli::AblationProgram program{
      "halsal_ablation_depth",
      "halsal ablation (paper Fig. 2): accuracy per saliency-branch depth Conv-1..Conv-4, plus Baseline-RGB",
      "alexnet (fused before pool-2, the paper's) or mobilenet_v2 (after stage 4)", "depth", "ablation-depth"};
  return halsal::cli::ablation_main(
      argc, argv, program,
      [](auto data, const ht::AblationOptions& o) { return ht::run_depth_ablation<halsal::AlexNet>(data, Depths{}, o); },
      [](auto data, const ht::AblationOptions& o) {
        return ht::run_depth_ablation<halsal::MobileNetV2>(data, Depths{}, o);
      });
}
