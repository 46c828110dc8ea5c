// expect: trains or freezes the saliency branch, but RgbNet has none
#include <halsal/halsal.hpp>
void f() {
  halsal::RgbNet<halsal::AlexNet> net(10);
  halsal::apply_policy<halsal::StepI>(net);
}
