// expect: trains or freezes the saliency branch, but RgbNet has none
#include <halsal/nets/rgb_net.hpp>
#include <halsal/policy/freeze.hpp>
void f() {
  halsal::RgbNet<halsal::AlexNet> net(10);
  halsal::apply_policy<halsal::StepI>(net);
}
