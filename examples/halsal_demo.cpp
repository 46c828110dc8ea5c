// halsal_demo: the paper's networks composed at compile time, then its whole pipeline on embedded
// synthetic flowers: an RGB branch pretrained on base classes, Step I, and Baseline-RGB vs
// Approaches A and B on k-shot splits of novel classes (a few minutes on a 2-core CPU).
#include <halsal/halsal.hpp>
#include <halsal/demo/demo.hpp>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iomanip>
#include <iostream>

#include "cli_parse.hpp"

namespace ht = halsal::train;

// The demo's network: ResNet-18 whose layer2 output (8×8 at 64 px) is modulated by a one-layer
// saliency branch (its own map is 6×6 at 64 px; deeper branches pool it down to 2×2).
using DemoBackbone = halsal::ResNet<18>;
using DemoDepth = halsal::Depth<1>;
using DemoFusion = halsal::AfterStage<2>;

int main(int argc, char** argv) {
  CLI::App app{"halsal demo: the paper's networks, then its pipeline on synthetic flowers (base classes for "
               "ImageNet, novel classes for the fine-grained set)"};
  ht::DemoOptions o;
  std::string out = o.out_dir.string(), seeds = "0,1,2", methods = "ncm,rgb,A,B", activation = "softplus";
  std::vector<std::string> set_pretrain, set_step_one, set_fewshot;
  bool summaries_only = false, verbose = false;
  app.add_option("--out", out, "output folder (results.md/.csv, gallery.png, weights, protocol/)")
      ->capture_default_str();
  app.add_option("--seeds", seeds, "k-shot seeds, comma-separated")->capture_default_str();
  app.add_option("--methods", methods, "protocol methods: ncm, ncm-sal, rgb, scratch-sal, smic, A, B (rgb required)")
      ->capture_default_str();
  app.add_option("-k", o.k, "training images per novel class")->capture_default_str()->check(CLI::Range(1, 500));
  app.add_option("--epochs", o.fewshot.epochs, "fine-tuning epochs of each k-shot cell")
      ->capture_default_str()
      ->check(CLI::Range(1, 500));
  app.add_option("--pretrain-epochs", o.pretrain.epochs, "epochs of pretraining the RGB branch on the base classes")
      ->capture_default_str()
      ->check(CLI::Range(1, 500));
  app.add_option("--step-one-epochs", o.step_one.epochs, "epochs of Step I")
      ->capture_default_str()
      ->check(CLI::Range(1, 500));
  app.add_option("--size", o.data.size, "image side in pixels")->capture_default_str()->check(CLI::Range(40, 512));
  app.add_option("--pretrain-per-class", o.data.pretrain_per_class, "base images per class for pretraining")
      ->capture_default_str();
  app.add_option("--step-one-per-class", o.data.step_one_per_class, "other base images per class for Step I")
      ->capture_default_str();
  app.add_option("--novel-per-class", o.data.novel_per_class, "novel images per class (test + val + k at least)")
      ->capture_default_str();
  app.add_option("--test-per-class", o.split.test_per_class, "novel test images per class and seed")
      ->capture_default_str();
  app.add_option("--distractors", o.data.distractors, "loose petal clusters per image in other classes' shades")
      ->capture_default_str();
  app.add_option("--clutter", o.data.clutter, "background shapes per image")->capture_default_str();
  app.add_option("--data-seed", o.data.seed, "seed of the synthetic images")->capture_default_str();
  app.add_option("--saliency-activation", activation,
                 "the map's last non-linearity: softplus (a map trained from Xavier cannot switch off for good) or "
                 "relu (the paper's)")
      ->capture_default_str()
      ->check(CLI::IsMember({"relu", "softplus"}));
  app.add_option("--score-bias", o.saliency.score_bias, "initial bias of the saliency map's 1×1 score")
      ->capture_default_str();
  app.add_option("--set-pretrain", set_pretrain, "FIELD=VALUE over the pretraining configuration (repeatable)");
  app.add_option("--set-step-one", set_step_one, "FIELD=VALUE over the Step I configuration (repeatable)");
  app.add_option("--set-fewshot", set_fewshot, "FIELD=VALUE over the k-shot cells' configuration (repeatable)");
  std::string pretrained;
  bool step_one_only = false;
  app.add_option("--pretrained", pretrained,
                 "an earlier run's pretrained-rgb.safetensors (same base images): skip pretraining");
  app.add_flag("--step-one-only", step_one_only, "stop after Step I (no k-shot protocol)");
  app.add_flag("--verbose", verbose, "a progress line per epoch of every k-shot cell");
  app.add_flag("--summaries-only", summaries_only, "only print the network summaries");
  if (const int rc = halsal::cli::parse(app, argc, argv, "halsal_demo"); rc >= 0) return rc;

  const auto t0 = std::chrono::steady_clock::now();
  try {
    std::cout << "halsal " << HALSAL_VERSION_STRING << " on LibTorch " << TORCH_VERSION << ", "
              << at::get_num_threads() << " threads\n\n== 1. The paper's AlexNet network (227 px, 102 classes) and "
              << "the demo's (" << o.data.size << " px) ==\n";
    {
      halsal::HalSalAlexNet alexnet(102);
      std::cout << halsal::summarize(alexnet, {1, 3, 227, 227});
      halsal::HalSalNet<DemoBackbone, DemoDepth, DemoFusion> demo_net(static_cast<int64_t>(o.data.novel_specs.size()));
      std::cout << halsal::summarize(demo_net, {1, 3, o.data.size, o.data.size}) << "\n";
    }
    if (summaries_only) return 0;

    o.out_dir = out;
    o.seeds = ht::parse_seed_list(seeds);
    o.methods = ht::split_list(methods);
    o.saliency.activation = halsal::parse_saliency_activation(activation);
    for (const auto& s : set_pretrain) o.pretrain = ht::apply_setting(o.pretrain, s);
    for (const auto& s : set_step_one) o.step_one = ht::apply_setting(o.step_one, s);
    for (const auto& s : set_fewshot) o.fewshot = ht::apply_setting(o.fewshot, s);
    o.fewshot.quiet = !verbose;
    o.pretrained_weights = pretrained;
    o.protocol = !step_one_only;
    std::cout << "== 2. The pipeline: pretraining, Step I, k-shot protocol ==\n";
    const ht::DemoResult r = ht::run_demo<DemoBackbone, DemoDepth, DemoFusion>(o);
    if (step_one_only) return 0;
    std::cout << "\n" << r.report() << "\nWrote " << out << "/results.md, results.csv, gallery.png, stepI-*.png, "
              << "pretrained-rgb.safetensors, stepI.safetensors and protocol/\n";
  } catch (const std::exception& e) {
    std::cerr << "halsal_demo: " << e.what() << "\n";
    return 1;
  }
  std::cout << "Total " << std::fixed << std::setprecision(0)
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
  return 0;
}
