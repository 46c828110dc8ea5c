// The few-shot protocol of the paper (§4.1): per class 5 test + 5 validation + k training images,
// deterministic from (dataset, seed) and nested over k, or K = the official training split.
#pragma once
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/core/text.hpp"
#include "halsal/data/dataset.hpp"
#include "halsal/data/rng.hpp"
#include "halsal/data/shots.hpp"
#include "halsal/io/bytes.hpp"  // io::AtomicFile

namespace halsal::data {

/// Some samples of a dataset (the dataset is shared, not copied).
struct Subset {
  std::shared_ptr<const Dataset> dataset;
  std::vector<size_t> indices;  ///< into dataset->samples

  /// Every sample of a dataset.
  static Subset all(std::shared_ptr<const Dataset> d) {
    Subset s;
    s.indices.resize(d->size());
    for (size_t i = 0; i < s.indices.size(); ++i) s.indices[i] = i;
    s.dataset = std::move(d);
    return s;
  }
  size_t size() const { return indices.size(); }
  bool empty() const { return indices.empty(); }
  /// The class of the i-th sample of the subset.
  int64_t label(size_t i) const { return dataset->samples.at(indices.at(i)).label; }
  int64_t num_classes() const { return dataset ? dataset->num_classes() : 0; }
};

/// Sizes of the held-out sets per class.
struct SplitOptions {
  int test_per_class = 5;
  int val_per_class = 5;
};

/// A protocol split: train / val / test subsets of one dataset.
struct Split {
  Subset train, val, test;
  int k = 0;          ///< training images per class, or kOfficial
  uint64_t seed = 0;
  /// "k=5 seed=0: 510 train, 510 val, 510 test".
  std::string summary() const {
    std::ostringstream os;
    os << "k=" << k_label(k) << " seed=" << seed << ": "
       << train.size() << " train, " << val.size() << " val, " << test.size() << " test";
    return os.str();
  }
};

namespace detail {

/// Each class's samples in a seed-determined order: sorted by path first, so that the order
/// never depends on the file system, then shuffled once per (seed, class).
inline std::vector<std::vector<size_t>> shuffled_classes(const Dataset& d, uint64_t seed, Part only = Part::none,
                                                         bool filter = false) {
  std::vector<std::vector<size_t>> by_class(d.class_names.size());
  std::vector<std::string> keys(d.size());
  for (size_t i = 0; i < d.size(); ++i) {
    if (filter && d.samples[i].part != only) continue;
    keys[i] = d.key(i);
    by_class.at(static_cast<size_t>(d.samples[i].label)).push_back(i);
  }
  for (size_t c = 0; c < by_class.size(); ++c) {
    auto& v = by_class[c];
    std::sort(v.begin(), v.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
    Rng rng(seed_of({seed, c, static_cast<uint64_t>(only), 0x6b73686f74ULL /* "kshot" */}));
    rng.shuffle(v);
  }
  return by_class;
}

inline std::string class_label(const Dataset& d, size_t c) {
  return "class " + std::to_string(c) + " '" + d.class_names[c] + "'";
}

}  // namespace detail

/// The protocol split for k training images per class (k >= 1), or the official split
/// (k = kOfficial). With k >= 1: each class's images are shuffled once per seed; the first 5 are
/// test, the next 5 validation, and the next k training — so the k = 1 set is inside the k = 2 set
/// and so on. With kOfficial: test = the official test images, val = the official validation
/// images (or, where there are none, 5 per class drawn from the official training images), train
/// = the remaining official training images; without an official split, all images after the
/// 5 test + 5 val. A class with too few images is an Error naming the class and the counts.
inline Split kshot(std::shared_ptr<const Dataset> data, int k, uint64_t seed, const SplitOptions& opts = {}) {
  if (!data) throw Error("kshot: no dataset");
  if (k < 1 && k != kOfficial) throw Error("kshot: k must be >= 1 (or kOfficial), got " + std::to_string(k));
  const Dataset& d = *data;
  Split s;
  s.k = k;
  s.seed = seed;
  s.train.dataset = s.val.dataset = s.test.dataset = data;
  const size_t T = static_cast<size_t>(opts.test_per_class), V = static_cast<size_t>(opts.val_per_class);
  if (k == kOfficial && d.has_official_split()) {
    auto train = detail::shuffled_classes(d, seed, Part::train, true);
    auto val = detail::shuffled_classes(d, seed, Part::val, true);
    auto test = detail::shuffled_classes(d, seed, Part::test, true);
    for (size_t c = 0; c < train.size(); ++c) {
      size_t used = 0;
      if (val[c].empty()) {
        if (train[c].size() < V + 1)
          throw Error(d.summary() + ": " + detail::class_label(d, c) + " has " + std::to_string(train[c].size()) +
                      " official training images; the K split needs " + std::to_string(V) +
                      " for validation + at least 1 for training");
        s.val.indices.insert(s.val.indices.end(), train[c].begin(), train[c].begin() + V);
        used = V;
      } else {
        s.val.indices.insert(s.val.indices.end(), val[c].begin(), val[c].end());
      }
      if (train[c].size() <= used)
        throw Error(d.summary() + ": " + detail::class_label(d, c) + " has no official training images");
      s.train.indices.insert(s.train.indices.end(), train[c].begin() + used, train[c].end());
      s.test.indices.insert(s.test.indices.end(), test[c].begin(), test[c].end());
    }
    return s;
  }
  auto by_class = detail::shuffled_classes(d, seed);
  for (size_t c = 0; c < by_class.size(); ++c) {
    const auto& v = by_class[c];
    const size_t need = T + V + (k == kOfficial ? 1 : static_cast<size_t>(k));
    if (v.size() < need)
      throw Error(d.summary() + ": " + detail::class_label(d, c) + " has " + std::to_string(v.size()) +
                  " images; k=" + k_label(k) + " needs " +
                  std::to_string(T) + " test + " + std::to_string(V) + " val + " +
                  (k == kOfficial ? std::string("at least 1") : std::to_string(k)) + " train = " +
                  std::to_string(need));
    const size_t n_train = k == kOfficial ? v.size() - T - V : static_cast<size_t>(k);
    s.test.indices.insert(s.test.indices.end(), v.begin(), v.begin() + T);
    s.val.indices.insert(s.val.indices.end(), v.begin() + T, v.begin() + T + V);
    s.train.indices.insert(s.train.indices.end(), v.begin() + T + V, v.begin() + T + V + n_train);
  }
  return s;
}

/// kshot on a dataset value (copied once into shared ownership).
inline Split kshot(const Dataset& data, int k, uint64_t seed, const SplitOptions& opts = {}) {
  return kshot(std::make_shared<const Dataset>(data), k, seed, opts);
}

/// Writes a split as CSV: comment lines, then "set,label,path" rows (paths relative to the root).
inline void save_split(const Split& s, const std::filesystem::path& csv) {
  if (!s.train.dataset) throw file_error(csv, "cannot save a split without a dataset");
  const Dataset& d = *s.train.dataset;
  if (csv.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(csv.parent_path(), ec);
    if (ec) throw file_error(csv, "cannot create the folder: " + ec.message());
  }
  std::ostringstream out;  // written atomically below: a failed write leaves no partial file
  out << "# halsal split v1\n# dataset: " << d.layout << " " << d.root.generic_string() << "\n# classes: "
      << d.num_classes() << "\n# k: " << k_label(s.k)
      << "\n# seed: " << s.seed << "\nset,label,path\n";
  for (const auto& [name, sub] : {std::pair<const char*, const Subset*>{"train", &s.train},
                                  {"val", &s.val},
                                  {"test", &s.test}})
    for (size_t i : sub->indices) out << name << ',' << d.samples[i].label << ',' << csv_quote(d.key(i)) << '\n';
  const std::string bytes = out.str();
  io::AtomicFile file(csv);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

/// Reads a split written by save_split against the same dataset; every row must name one of its
/// samples with the same label.
inline Split load_split(const std::filesystem::path& csv, std::shared_ptr<const Dataset> data) {
  if (!data) throw file_error(csv, "load_split needs the dataset the split was made from");
  const Dataset& d = *data;
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < d.size(); ++i) index.emplace(d.key(i), i);
  Split s;
  s.train.dataset = s.val.dataset = s.test.dataset = data;
  bool header = false;
  std::set<size_t> seen;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(csv, ec)) throw file_error(csv, halsal::detail::not_a_file(csv));
  std::ifstream in(csv);
  if (!in) throw file_error(csv, "cannot open");
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const std::string where = "line " + std::to_string(n) + ": ";
    if (line[0] == '#') {
      auto w = detail::words(line.substr(1));
      if (w.size() == 2 && w[0] == "k:") s.k = w[1] == "K" ? kOfficial : static_cast<int>(detail::parse_int(w[1], csv, n));
      if (w.size() == 2 && w[0] == "seed:") s.seed = static_cast<uint64_t>(detail::parse_int(w[1], csv, n));
      continue;
    }
    auto f = csv_fields(line);
    if (!header) {
      if (f.size() != 3 || f[0] != "set" || f[1] != "label" || f[2] != "path")
        throw file_error(csv, where + "expected the header 'set,label,path'");
      header = true;
      continue;
    }
    if (f.size() != 3) throw file_error(csv, where + "expected 3 fields, got " + std::to_string(f.size()));
    auto it = index.find(f[2]);
    if (it == index.end())
      throw file_error(csv, where + "'" + f[2] + "' is not an image of " + d.summary());
    if (detail::parse_int(f[1], csv, n) != d.samples[it->second].label)
      throw file_error(csv, where + "'" + f[2] + "' has label " + f[1] + " but the dataset says " +
                                std::to_string(d.samples[it->second].label));
    if (!seen.insert(it->second).second) throw file_error(csv, where + "'" + f[2] + "' is listed twice");
    if (f[0] == "train")
      s.train.indices.push_back(it->second);
    else if (f[0] == "val")
      s.val.indices.push_back(it->second);
    else if (f[0] == "test")
      s.test.indices.push_back(it->second);
    else
      throw file_error(csv, where + "set '" + f[0] + "' is not train, val or test");
  }
  if (!header) throw file_error(csv, "has no 'set,label,path' header: not a halsal split file");
  return s;
}

/// load_split on a dataset value.
inline Split load_split(const std::filesystem::path& csv, const Dataset& data) {
  return load_split(csv, std::make_shared<const Dataset>(data));
}

/// Splits a subset into (kept, held out): a seed-determined `share` of its images, drawn over the
/// whole subset (not per class: ImageNet folders here have 1 to 5 images a class), is held out.
/// The order of each part follows the subset's.
inline std::pair<Subset, Subset> holdout(const Subset& all, double share, uint64_t seed) {
  if (!(share > 0 && share < 1)) throw Error("hold-out share must lie in (0, 1), got " + std::to_string(share));
  const size_t n = all.size();
  const auto held_count = static_cast<size_t>(std::llround(share * static_cast<double>(n)));
  if (held_count == 0 || held_count >= n)
    throw Error("holding out " + std::to_string(share) + " of " + std::to_string(n) +
                " images leaves one part empty");
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  Rng rng(seed_of({seed, 0x686f6c64ULL /* "hold" */}));
  rng.shuffle(order);
  std::vector<bool> held(n, false);
  for (size_t i = 0; i < held_count; ++i) held[order[i]] = true;
  std::pair<Subset, Subset> parts{Subset{all.dataset, {}}, Subset{all.dataset, {}}};
  for (size_t i = 0; i < n; ++i) (held[i] ? parts.second : parts.first).indices.push_back(all.indices[i]);
  return parts;
}

}  // namespace halsal::data
