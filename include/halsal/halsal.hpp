// halsal's public API in one include, in layer order (docs/architecture.md, "Layers"): core, weights
// and data, evaluation, the networks and their policies, pictures, training, experiments, model
// files. The demo (halsal/demo/demo.hpp) is included on its own.
#pragma once
#include "halsal/version.hpp"
#include "halsal/core/compat.hpp"
#include "halsal/core/cpu_memory_cache.hpp"
#include "halsal/core/error.hpp"
#include "halsal/core/text.hpp"
#include "halsal/core/threads.hpp"

// Weights, data, evaluation.
#include "halsal/io/io.hpp"
#include "halsal/data/data.hpp"
#include "halsal/eval/metrics.hpp"
#include "halsal/eval/saliency_score.hpp"
#include "halsal/eval/table.hpp"

// Networks composed at compile time, and what trains.
#include "halsal/fusion/fusion_points.hpp"
#include "halsal/fusion/modulation.hpp"
#include "halsal/saliency/saliency_branch.hpp"
#include "halsal/saliency/spectral_residual.hpp"
#include "halsal/backbones/alexnet.hpp"
#include "halsal/backbones/batchnorm_folding.hpp"
#include "halsal/backbones/mobilenet_v2.hpp"
#include "halsal/backbones/resnet.hpp"
#include "halsal/nets/aliases.hpp"
#include "halsal/nets/channels_last.hpp"
#include "halsal/nets/halsal_net.hpp"
#include "halsal/nets/rgb_net.hpp"
#include "halsal/nets/smic_net.hpp"
#include "halsal/nets/summary.hpp"
#include "halsal/policy/freeze.hpp"

// Pictures, the training engine, experiments, model files.
#include "halsal/viz/gallery.hpp"
#include "halsal/viz/image_ops.hpp"
#include "halsal/viz/svg.hpp"
#include "halsal/dist/process_group.hpp"
#include "halsal/train/config.hpp"
#include "halsal/train/grad_scaler.hpp"
#include "halsal/train/precision.hpp"
#include "halsal/train/progress.hpp"
#include "halsal/train/trainer.hpp"
#include "halsal/experiments/step_one.hpp"
#include "halsal/experiments/experiment.hpp"
#include "halsal/experiments/ablation.hpp"
#include "halsal/models/model_file.hpp"
#include "halsal/models/comparison.hpp"
