// expect: AfterStage<N> is a fusion point of ResNet and MobileNetV2; AlexNet fuses at
#include <halsal/nets/aliases.hpp>
halsal::HalSalNet<halsal::AlexNet, halsal::Depth<4>, halsal::AfterStage<2>> net(10);
