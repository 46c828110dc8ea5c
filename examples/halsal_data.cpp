// halsal_data: look at a dataset, make a k-shot split, build the decoded-image cache, or draw the
// synthetic dataset. A thin front end over halsal::data.
//
//   halsal_data info DIR
//   halsal_data split DIR --k 5 --seed 0 --out split.csv
//   halsal_data cache DIR [--out FILE] [--size 256]
//   halsal_data sample-synthetic OUT.png [--classes 8 --cols 8 --size 96 --seed 0]
#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>
#include <map>

#include "halsal/data/data.hpp"

#include "cli_parse.hpp"

namespace hd = halsal::data;

namespace {

hd::OpenOptions open_options(bool skip_bad, const std::string& verify) {
  hd::OpenOptions o;
  o.on_bad_file = skip_bad ? hd::OnBadFile::skip : hd::OnBadFile::error;
  o.verify = verify == "none" ? hd::Verify::none : verify == "decode" ? hd::Verify::decode : hd::Verify::header;
  return o;
}

void info(const hd::Dataset& d) {
  std::cout << "layout:   " << d.layout << "\nroot:     " << d.root.string() << "\nclasses:  " << d.num_classes()
            << "\nimages:   " << d.size() << "\n";
  auto counts = d.class_counts();
  if (!counts.empty()) {
    auto sorted = counts;
    std::sort(sorted.begin(), sorted.end());
    std::cout << "per class: min " << sorted.front() << ", median " << sorted[sorted.size() / 2] << ", max "
              << sorted.back() << "\n";
    const size_t need = 11;  // 5 test + 5 val + k = 1
    const auto few = std::count_if(counts.begin(), counts.end(), [&](size_t n) { return n < need; });
    if (few) std::cout << "  " << few << " classes have fewer than 11 images: too few for the k-shot protocol\n";
  }
  if (d.has_official_split()) {
    std::map<hd::Part, size_t> parts;
    for (const auto& s : d.samples) parts[s.part]++;
    std::cout << "official split: " << parts[hd::Part::train] << " train, " << parts[hd::Part::val] << " val, "
              << parts[hd::Part::test] << " test\n";
  }
  std::cout << "masks:    " << (d.has_masks() ? "yes" : "no") << "\n";
  const size_t show = std::min<size_t>(d.class_names.size(), 5);
  for (size_t c = 0; c < show; ++c)
    std::cout << "  class " << c << ": " << d.class_names[c] << " (" << counts[c] << " images)\n";
  if (show < d.class_names.size()) std::cout << "  ...\n";
  std::cout << "problems: " << d.problems.size() << (d.skipped ? " (" + std::to_string(d.skipped) + " files skipped)" : "")
            << "\n";
  for (size_t i = 0; i < std::min<size_t>(d.problems.size(), 20); ++i) std::cout << "  " << d.problems[i] << "\n";
  if (d.problems.size() > 20) std::cout << "  ... and " << d.problems.size() - 20 << " more\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"halsal_data: inspect datasets, make k-shot splits, build the decoded-image cache"};
  app.require_subcommand(1);
  std::string dir, out, verify = "header", k_text;
  bool skip_bad = false;
  uint64_t seed = 0;
  int size = 256, classes = 8, cols = 8, threads = 0, test = 5, val = 5;
  bool masks = false;

  auto* info_cmd = app.add_subcommand("info", "layout detected, classes, counts, problems");
  info_cmd->add_option("DIR", dir, "dataset folder")->required();
  info_cmd->add_option("--verify", verify, "none, header or decode (check every image fully)")
      ->check(CLI::IsMember({"none", "header", "decode"}));
  info_cmd->add_flag("--skip-bad", skip_bad, "leave bad files out (and list them) instead of stopping");

  auto* split_cmd = app.add_subcommand("split", "write the k-shot protocol split of a dataset as CSV");
  split_cmd->add_option("DIR", dir, "dataset folder")->required();
  split_cmd->add_option("--k", k_text, "training images per class (>= 1), or K for the official split")->required();
  split_cmd->add_option("--seed", seed, "split seed (the paper averages seeds 0, 1, 2)");
  split_cmd->add_option("--out", out, "CSV file to write")->required();
  split_cmd->add_option("--test", test, "test images per class")->check(CLI::NonNegativeNumber);
  split_cmd->add_option("--val", val, "validation images per class")->check(CLI::NonNegativeNumber);
  split_cmd->add_flag("--skip-bad", skip_bad, "leave bad files out instead of stopping");

  auto* cache_cmd = app.add_subcommand("cache", "decode every image once into a memory-mapped cache");
  cache_cmd->add_option("DIR", dir, "dataset folder")->required();
  cache_cmd->add_option("--out", out, "cache file (default: under $HALSAL_CACHE_DIR or ~/.cache/halsal/images)");
  cache_cmd->add_option("--size", size, "shorter side of the stored images")->check(CLI::Range(16, 4096));
  cache_cmd->add_option("--threads", threads, "decoding threads (0: one per core)")->check(CLI::NonNegativeNumber);
  cache_cmd->add_flag("--skip-bad", skip_bad, "leave bad files out instead of stopping");

  auto* synth_cmd = app.add_subcommand("sample-synthetic", "draw a grid of the synthetic dataset as PNG");
  synth_cmd->add_option("OUT", out, "PNG file to write")->required();
  synth_cmd->add_option("--classes", classes, "classes (rows)")->check(CLI::Range(2, 48));
  synth_cmd->add_option("--cols", cols, "samples per class")->check(CLI::Range(1, 64));
  synth_cmd->add_option("--size", size, "image side in pixels")->check(CLI::Range(16, 1024));
  synth_cmd->add_option("--seed", seed, "dataset seed");
  synth_cmd->add_flag("--masks", masks, "show each sample's ground-truth mask beside it");

  if (const int rc = halsal::cli::parse(app, argc, argv, "halsal_data"); rc >= 0) return rc;
  try {
    if (info_cmd->parsed()) {
      info(hd::open(dir, open_options(skip_bad, verify)));
    } else if (split_cmd->parsed()) {
      int k = 0;
      if (k_text == "K" || k_text == "k") {
        k = hd::kOfficial;
      } else {
        try {
          size_t used = 0;
          k = std::stoi(k_text, &used);
          if (used != k_text.size() || k < 1) throw std::invalid_argument("k");
        } catch (const std::exception&) {
          std::cerr << "halsal_data split: --k must be a whole number >= 1 or K, got '" << k_text << "'\n";
          return 2;
        }
      }
      const auto split = hd::kshot(hd::open(dir, open_options(skip_bad, "header")), k, seed, hd::SplitOptions{test, val});
      hd::save_split(split, out);
      std::cout << split.summary() << "\nwrote " << out << "\n";
    } else if (cache_cmd->parsed()) {
      const auto d = hd::open(dir, open_options(skip_bad, "none"));
      hd::CacheOptions co;
      co.shorter_side = size;
      co.threads = threads;
      co.on_bad_file = skip_bad ? hd::OnBadFile::skip : hd::OnBadFile::error;
      const auto file = out.empty() ? hd::default_cache_path(d, co) : std::filesystem::path(out);
      hd::ImageCache::build(d, file, co, [](size_t done, size_t total) {
        if (done % 256 == 0 || done == total) std::cerr << "\rdecoded " << done << " / " << total << std::flush;
      });
      std::cerr << "\n";
      const auto c = hd::ImageCache::open(d, file, size);
      std::cout << d.summary() << "\nwrote " << file.string() << " (" << c->bytes() / (1 << 20) << " MiB)\n";
    } else if (synth_cmd->parsed()) {
      hd::SyntheticOptions so;
      so.classes = classes;
      so.per_class = std::max(cols, 1);
      so.size = size;
      so.seed = seed;
      hd::write_image(out, hd::synthetic_grid(so, classes, cols, masks));
      std::cout << "wrote " << out << " (" << classes << " classes x " << cols << " samples)\n";
    }
  } catch (const std::exception& e) {  // halsal::Error, and std::filesystem_error from the file system
    std::cerr << "halsal_data: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
