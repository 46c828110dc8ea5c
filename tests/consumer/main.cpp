// A user's program: composes a variant at compile time and runs it once.
#include <halsal/halsal.hpp>

#include <iostream>

using Net = halsal::HalSalNet<halsal::ResNet<18>, halsal::Depth<2>, halsal::AfterStage<3>>;

int main() {
  Net net(/*num_classes=*/7);
  net->eval();
  torch::NoGradGuard no_grad;
  auto out = net->forward_full(torch::rand({1, 3, 96, 96}));
  const bool ok = out.logits.sizes() == torch::IntArrayRef{1, 7} && out.saliency.size(1) == 1;
  std::cout << "consumer: " << (ok ? "ok" : "wrong shapes") << " logits " << out.logits.sizes()
            << " saliency " << out.saliency.sizes() << "\n";
  return ok ? 0 : 1;
}
