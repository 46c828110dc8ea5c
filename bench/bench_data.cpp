// Data-loading throughput: JPEG decoding (1 and N threads) on the synthetic data and on
// ../shared/data/flowers102 when present, and the loader at 224 px with and without the
// memory-mapped decoded-image cache. Prints a table of images/s.
//
//   bench_data [--threads N] [--images M] [--shared DIR] [--json FILE]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "halsal/data/data.hpp"
#include "halsal/io/bytes.hpp"

namespace hd = halsal::data;
namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Decodes every file once with `threads` threads; returns images/s.
double decode_rate(const std::vector<fs::path>& files, int threads) {
  std::vector<std::vector<uint8_t>> bytes;
  for (const auto& f : files) bytes.push_back(hd::read_file_bytes(f));  // file reading not timed
  std::atomic<size_t> next{0};
  const auto t0 = std::chrono::steady_clock::now();
  auto work = [&] {
    for (size_t i; (i = next++) < bytes.size();) hd::decode_image(bytes[i].data(), bytes[i].size(), files[i].string());
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return files.size() / seconds_since(t0);
}

/// One epoch of a Loader (train transform at 224 px); returns images/s.
double loader_rate(std::shared_ptr<const hd::Dataset> d, std::shared_ptr<const hd::ImageCache> cache, int workers,
                   size_t limit) {
  hd::Subset sub = hd::Subset::all(d);
  if (sub.indices.size() > limit) sub.indices.resize(limit);
  hd::LoaderOptions o;
  o.batch_size = 32;
  o.workers = workers;
  o.transform = hd::Transform::train(224);
  o.cache = std::move(cache);
  hd::Loader loader(sub, o);
  const auto t0 = std::chrono::steady_clock::now();
  size_t n = 0;
  while (auto b = loader.next()) n += static_cast<size_t>(b->size());
  return n / seconds_since(t0);
}

nlohmann::json rows = nlohmann::json::array();  // every printed row, for --json

void row(const std::string& what, const std::string& data, int threads, double rate) {
  std::printf("| %-28s | %-22s | %7d | %10.1f |\n", what.c_str(), data.c_str(), threads, rate);
  rows.push_back({{"what", what}, {"data", data}, {"threads", threads}, {"images_per_s", rate}});
}

}  // namespace

int main(int argc, char** argv) {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  size_t images = 1000;
  std::string json_file;
  // ../shared beside the checkout (this file is <checkout>/bench/bench_data.cpp), or $HALSAL_SHARED.
  fs::path shared = std::getenv("HALSAL_SHARED") ? fs::path(std::getenv("HALSAL_SHARED"))
                                                 : fs::path(__FILE__).parent_path().parent_path().parent_path() / "shared";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--images") images = static_cast<size_t>(std::max(1, std::atoi(argv[i + 1])));
    else if (a == "--shared") shared = argv[i + 1];
    else if (a == "--json") json_file = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: bench_data [--threads N] [--images M] [--shared DIR] [--json FILE]\n");
      return 2;
    }
  }
  const fs::path tmp = fs::temp_directory_path() / "halsal-bench-data";
  fs::create_directories(tmp);
  std::printf("halsal data bench: %d threads (hardware: %u), up to %zu images per row\n\n", threads,
              std::thread::hardware_concurrency(), images);
  std::printf("| %-28s | %-22s | %7s | %10s |\n", "what", "data", "threads", "images/s");
  std::printf("|%s|%s|%s|%s|\n", std::string(30, '-').c_str(), std::string(24, '-').c_str(), std::string(9, '-').c_str(),
              std::string(12, '-').c_str());
  try {
    // Synthetic images at 256 px written as JPEG q90 (what a user's photos look like to the decoder).
    hd::SyntheticOptions so;
    so.classes = 8;
    so.per_class = static_cast<int>(std::min<size_t>(images, 400) / 8);
    so.size = 256;
    const auto synth = hd::synthetic(so);
    std::vector<fs::path> files;
    for (size_t i = 0; i < synth.size(); ++i) {
      const auto f = tmp / ("synth_" + std::to_string(i) + ".jpg");
      if (!fs::exists(f)) hd::write_image(f, synth.generator->render(i).first, 90);
      files.push_back(f);
    }
    row("decode JPEG", "synthetic 256x256", 1, decode_rate(files, 1));
    row("decode JPEG", "synthetic 256x256", threads, decode_rate(files, threads));
    auto sd = std::make_shared<const hd::Dataset>(synth);
    row("render (no decode)", "synthetic 256x256", 1, [&] {
      const auto t0 = std::chrono::steady_clock::now();
      for (size_t i = 0; i < 50; ++i) sd->generator->render(i);
      return 50 / seconds_since(t0);
    }());

    const fs::path flowers = shared / "data" / "flowers102";
    std::shared_ptr<const hd::Dataset> fd;
    if (fs::exists(flowers)) {
      hd::OpenOptions oo;
      oo.verify = hd::Verify::none;
      fd = std::make_shared<const hd::Dataset>(hd::open(flowers, oo));
      std::vector<fs::path> ff;
      for (size_t i = 0; i < fd->size() && ff.size() < images; i += std::max<size_t>(1, fd->size() / images))
        ff.push_back(fd->samples[i].file);
      row("decode JPEG", "flowers102 (256 px)", 1, decode_rate(ff, 1));
      row("decode JPEG", "flowers102 (256 px)", threads, decode_rate(ff, threads));
    } else {
      std::printf("| %-28s | %-22s | %7s | %10s |\n", "decode JPEG", "flowers102: absent", "-", "-");
    }

    // The loader at 224 px (RandomResizedCrop + flip), decoding vs reading the cache.
    auto data = fd ? fd : sd;
    const std::string name = fd ? "flowers102" : "synthetic 256x256";
    hd::CacheOptions co;
    co.threads = threads;
    co.quiet = true;
    const auto t0 = std::chrono::steady_clock::now();
    auto cache = hd::ImageCache::open_or_build(*data, tmp / (data->layout + ".hcache"), co);
    std::printf("| %-28s | %-22s | %7d | %10.1f |  (cache %zu MiB)\n", "cache build or open", name.c_str(), threads,
                data->size() / seconds_since(t0), cache->bytes() >> 20);
    const int workers = std::max(1, threads - 1);
    row("loader 224 px, decoding", name, workers, loader_rate(data, nullptr, workers, images));
    row("loader 224 px, cached", name, workers, loader_rate(data, cache, workers, images));
    if (workers != 1) row("loader 224 px, cached", name, 1, loader_rate(data, cache, 1, images));
    if (!json_file.empty())
      halsal::io::write_file_atomic(json_file, nlohmann::json{{"threads", threads}, {"images", images}, {"rows", rows}}.dump(2) + "\n");
  } catch (const halsal::Error& e) {
    std::fprintf(stderr, "bench_data: %s\n", e.what());
    return 1;
  }
  return 0;
}
