// MobileNetV2 fused after stage 3 (halsal_protocol --fusion-stage 3), compiled once
// (halsal/models/instances.hpp).
#include <halsal/halsal.hpp>
#include <halsal/models/instances.hpp>

HALSAL_FUSION_INSTANCES(, ::halsal::MobileNetV2, ::halsal::AfterStage<3>)
