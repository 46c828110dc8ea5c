// halsal's public API in one include.
#pragma once
#include "halsal/version.hpp"
#include "halsal/core/compat.hpp"
#include "halsal/core/error.hpp"
#include "halsal/core/threads.hpp"

#include "halsal/backbones/alexnet.hpp"
#include "halsal/backbones/mobilenet_v2.hpp"
#include "halsal/backbones/resnet.hpp"
#include "halsal/fusion/fusion_points.hpp"
#include "halsal/fusion/modulation.hpp"
#include "halsal/saliency/saliency_branch.hpp"
#include "halsal/nets/aliases.hpp"
#include "halsal/nets/halsal_net.hpp"
#include "halsal/nets/rgb_net.hpp"
#include "halsal/nets/smic_net.hpp"
#include "halsal/policy/freeze.hpp"
