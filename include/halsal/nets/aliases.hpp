// Short names for the paper's networks (dlib-style aliases over the composed types).
#pragma once
#include "halsal/backbones/mobilenet_v2.hpp"
#include "halsal/backbones/resnet.hpp"
#include "halsal/nets/halsal_net.hpp"
#include "halsal/nets/rgb_net.hpp"
#include "halsal/nets/smic_net.hpp"

namespace halsal {

/// Paper Table 1: AlexNet, saliency Depth<4>, fusion before pool-2, Eq. 2.
using HalSalAlexNet = HalSalNet<AlexNet, Depth<4>, BeforePool2, Residual>;
/// Paper Table 2: ResNet-152, Depth<4>, after the fourth residual stage.
using HalSalResNet152 = HalSalNet<ResNet<152>, Depth<4>, AfterStage<4>, Residual>;
/// The backbone with ImageNet weights available offline here: MobileNetV2, last stage.
using HalSalMobileNetV2 = HalSalNet<MobileNetV2, Depth<4>, AfterStage<4>, Residual>;

}  // namespace halsal
