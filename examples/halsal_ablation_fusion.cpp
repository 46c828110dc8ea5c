// halsal_ablation_fusion: the paper's Fig. 3 — accuracy for each fusion point of the saliency map
// (AlexNet: Before Pool-2 … After Conv-4; MobileNetV2: After stage 1 … 4) and the Baseline-RGB
// bar, resumable. The variants are the type lists below.
#include <halsal/halsal.hpp>

#include "ablation_cli.hpp"

namespace ht = halsal::train;

/// Fig. 3's variants per backbone, each with the paper's 4-convolution saliency branch.
using AlexNetFusions = ht::type_list<halsal::BeforePool2, halsal::AfterPool2, halsal::AfterConv3, halsal::AfterConv4>;
using StageFusions =
    ht::type_list<halsal::AfterStage<1>, halsal::AfterStage<2>, halsal::AfterStage<3>, halsal::AfterStage<4>>;

int main(int argc, char** argv) {
  const halsal::cli::AblationProgram program{
      "halsal_ablation_fusion",
      "halsal ablation (paper Fig. 3): accuracy per fusion point of the saliency map (Depth<4> branch), plus "
      "Baseline-RGB",
      "alexnet (Before Pool-2, After Pool-2, After Conv-3, After Conv-4) or mobilenet_v2 (After stage 1..4)",
      "fusion point", "ablation-fusion"};
  return halsal::cli::ablation_main(
      argc, argv, program,
      [](auto data, const ht::AblationOptions& o) {
        return ht::run_fusion_ablation<halsal::AlexNet, halsal::Depth<4>>(data, AlexNetFusions{}, o);
      },
      [](auto data, const ht::AblationOptions& o) {
        return ht::run_fusion_ablation<halsal::MobileNetV2, halsal::Depth<4>>(data, StageFusions{}, o);
      });
}
