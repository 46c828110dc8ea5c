// halsal's public API in one include: networks, policies, weights, data, training, evaluation.
#pragma once
#include "halsal/version.hpp"
#include "halsal/core/compat.hpp"
#include "halsal/core/error.hpp"
#include "halsal/core/threads.hpp"

// Networks composed at compile time.
#include "halsal/backbones/alexnet.hpp"
#include "halsal/backbones/mobilenet_v2.hpp"
#include "halsal/backbones/resnet.hpp"
#include "halsal/fusion/fusion_points.hpp"
#include "halsal/fusion/modulation.hpp"
#include "halsal/saliency/saliency_branch.hpp"
#include "halsal/saliency/spectral_residual.hpp"
#include "halsal/nets/aliases.hpp"
#include "halsal/nets/halsal_net.hpp"
#include "halsal/nets/rgb_net.hpp"
#include "halsal/nets/smic_net.hpp"
#include "halsal/nets/summary.hpp"
#include "halsal/policy/freeze.hpp"

// Weights, data, training, evaluation, pictures.
#include "halsal/io/io.hpp"
#include "halsal/data/data.hpp"
#include "halsal/train/config.hpp"
#include "halsal/train/progress.hpp"
#include "halsal/train/trainer.hpp"
#include "halsal/eval/metrics.hpp"
#include "halsal/eval/saliency_score.hpp"
#include "halsal/eval/table.hpp"
#include "halsal/viz/gallery.hpp"
#include "halsal/viz/image_ops.hpp"
#include "halsal/viz/svg.hpp"
