// Datasets: a list of (image, label) samples with class names, read from the layouts people
// download (folders, Oxford Flowers 102, CUB-200-2011, Stanford Cars, ImageNet val) or generated.
// open(dir) detects the layout; anything missing or inconsistent is an Error naming the file.
#pragma once
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "halsal/core/error.hpp"
#include "halsal/core/text.hpp"
#include "halsal/data/image.hpp"
#include "halsal/data/mat.hpp"
#include "halsal/data/rng.hpp"
#include "halsal/data/transforms.hpp"

namespace halsal::data {

/// What to do with a damaged, unreadable or missing image file.
enum class OnBadFile {
  error,  ///< stop with an Error naming the file (the default)
  skip,   ///< print a warning, leave the file out, count it in the summary
};

/// How much of each image open() checks before returning.
enum class Verify {
  none,    ///< trust the listing (fastest)
  header,  ///< read each file's header: catches empty, non-image and unreadable files (default)
  decode,  ///< decode every image: also catches corrupt and truncated pixel data (slow)
};

/// Membership in a dataset's official split (where it has one).
enum class Part : uint8_t { none, train, val, test };

/// A bounding box in pixels of the original image: columns [x, x+w), rows [y, y+h).
struct Box {
  double x = 0, y = 0, w = 0, h = 0;
};

/// One image of a dataset.
struct Sample {
  std::filesystem::path file;   ///< the image file (empty for generated datasets)
  int64_t label = 0;            ///< class index in [0, num_classes)
  Part part = Part::none;       ///< official split membership
  std::optional<Box> box;       ///< object bounding box, where the dataset gives one
  std::filesystem::path mask;   ///< ground-truth object mask file, where there is one
};

/// A source of images that are not files (the synthetic dataset).
struct Generator {
  virtual ~Generator() = default;
  /// The RGB image of sample `index` and its object mask (1 channel; empty when none).
  virtual std::pair<Image, Image> render(size_t index) const = 0;
  /// A string that changes whenever the generated pixels would (cache fingerprints).
  virtual std::string describe() const = 0;
};

/// Options of open().
struct OpenOptions {
  OnBadFile on_bad_file = OnBadFile::error;
  Verify verify = Verify::header;
  bool crop_to_box = false;  ///< crop each image to its bounding box (CUB, Cars) when loading
  int threads = 0;           ///< for verification; 0 = one per core
  bool quiet = false;        ///< do not print warnings to stderr (they stay in `problems`)
  DecodeLimits limits{};
};

/// A dataset: samples, class names, and what open() noticed on the way.
struct Dataset {
  std::string layout;  ///< folders, imagenet, imagenet-flat, flowers102, cub200, cars196, synthetic
  std::filesystem::path root;
  std::vector<std::string> class_names;
  std::vector<Sample> samples;
  std::shared_ptr<const Generator> generator;  ///< set for generated datasets
  bool crop_to_box = false;
  DecodeLimits limits{};
  std::vector<std::string> problems;  ///< warnings: skipped files, ignored files
  size_t skipped = 0;                 ///< samples left out under OnBadFile::skip

  int64_t num_classes() const { return static_cast<int64_t>(class_names.size()); }
  size_t size() const { return samples.size(); }
  /// True when samples carry an official train/test membership.
  bool has_official_split() const {
    return std::any_of(samples.begin(), samples.end(), [](const Sample& s) { return s.part != Part::none; });
  }
  /// True when every sample has a ground-truth object mask.
  bool has_masks() const {
    if (generator) return true;
    return !samples.empty() &&
           std::all_of(samples.begin(), samples.end(), [](const Sample& s) { return !s.mask.empty(); });
  }
  /// The sample's name in split files: its path relative to the root, or "synthetic:<i>".
  std::string key(size_t i) const {
    const auto& s = samples.at(i);
    if (s.file.empty()) return layout + ":" + std::to_string(i);
    // Lexical: no file-system calls, and symlinks do not change a sample's name.
    auto rel = s.file.lexically_relative(root);
    return (rel.empty() || *rel.begin() == ".." ? s.file : rel).generic_string();
  }
  /// Images per class.
  std::vector<size_t> class_counts() const {
    std::vector<size_t> n(class_names.size(), 0);
    for (const auto& s : samples) n.at(static_cast<size_t>(s.label))++;
    return n;
  }
  /// One line: layout, root, classes, images.
  std::string summary() const {
    std::ostringstream os;
    os << layout << " dataset at " << root.string() << ": " << num_classes() << " classes, "
       << size() << " images";
    if (skipped) os << " (" << skipped << " bad files skipped)";
    return os.str();
  }
};

/// A decoded sample: RGB image and (when the dataset has one) its 1-channel object mask.
struct LoadedSample {
  Image image;
  Image mask;
};

/// Decodes (or renders) sample i, cropped to its box when the dataset says so.
inline LoadedSample load_sample(const Dataset& data, size_t i) {
  const Sample& s = data.samples.at(i);
  LoadedSample out;
  if (data.generator) {
    auto [im, m] = data.generator->render(i);
    out.image = std::move(im);
    out.mask = std::move(m);
    return out;
  }
  out.image = decode_image(s.file, data.limits);
  if (!s.mask.empty()) {
    Image m = decode_image(s.mask, data.limits);
    if (m.height != out.image.height || m.width != out.image.width)
      throw file_error(s.mask, "mask is " + std::to_string(m.width) + "x" + std::to_string(m.height) +
                                   " but its image is " + std::to_string(out.image.width) + "x" +
                                   std::to_string(out.image.height));
    Image grey(m.height, m.width, 1);
    for (size_t p = 0; p < grey.pixels.size(); ++p) grey.pixels[p] = m.pixels[p * 3];
    out.mask = std::move(grey);
  }
  if (data.crop_to_box && s.box) {
    const int x0 = std::clamp(static_cast<int>(std::floor(s.box->x)), 0, out.image.width - 1);
    const int y0 = std::clamp(static_cast<int>(std::floor(s.box->y)), 0, out.image.height - 1);
    const int x1 = std::clamp(static_cast<int>(std::ceil(s.box->x + s.box->w)), x0 + 1, out.image.width);
    const int y1 = std::clamp(static_cast<int>(std::ceil(s.box->y + s.box->h)), y0 + 1, out.image.height);
    const CropBox b{y0, x0, y1 - y0, x1 - x0};
    out.image = crop(out.image, b);
    if (!out.mask.empty()) out.mask = crop(out.mask, b);
  }
  return out;
}

namespace detail {

/// Lines of a text file with their 1-based numbers; CR and surrounding blanks removed, blank lines
/// dropped.
inline std::vector<std::pair<size_t, std::string>> read_lines(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) throw file_error(file, halsal::detail::not_a_file(file));
  std::ifstream in(file);
  if (!in) throw file_error(file, "cannot open");
  std::vector<std::pair<size_t, std::string>> lines;
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    size_t b = 0;
    while (b < line.size() && std::isspace(static_cast<unsigned char>(line[b]))) ++b;
    if (b < line.size()) lines.emplace_back(n, line.substr(b));
  }
  return lines;
}

/// Whitespace-separated fields.
inline std::vector<std::string> words(const std::string& line) {
  std::istringstream is(line);
  std::vector<std::string> w;
  std::string x;
  while (is >> x) w.push_back(x);
  return w;
}

inline int64_t parse_int(const std::string& s, const std::filesystem::path& file, size_t line) {
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw file_error(file, "line " + std::to_string(line) + ": '" + s + "' is not an integer");
}

inline double parse_double(const std::string& s, const std::filesystem::path& file, size_t line) {
  try {
    size_t used = 0;
    const double v = std::stod(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw file_error(file, "line " + std::to_string(line) + ": '" + s + "' is not a number");
}

inline bool is_wnid(const std::string& s) {
  if (s.size() != 9 || s[0] != 'n') return false;
  return std::all_of(s.begin() + 1, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

inline bool is_hidden(const std::filesystem::path& p) {
  const auto n = p.filename().string();
  return !n.empty() && n[0] == '.';
}

/// Sorted subfolders (hidden ones skipped).
inline std::vector<std::filesystem::path> subdirs(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec))
    if (it->is_directory(ec) && !is_hidden(it->path())) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

/// Sorted regular files of a folder (hidden ones skipped).
inline std::vector<std::filesystem::path> files_in(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator();
       it.increment(ec))
    if (it->is_regular_file(ec) && !is_hidden(it->path())) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

inline bool path_exists(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::exists(p, ec);
}

inline bool is_dir(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_directory(p, ec);
}

/// Reports bad files: under OnBadFile::error collects them and `finish` throws one error that
/// names every one (not only the first); otherwise records a warning per file and skips it.
struct BadFiles {
  const OpenOptions& opts;
  Dataset& data;
  std::vector<std::string> errors{};
  void report(const std::string& message) {
    if (opts.on_bad_file == OnBadFile::error) {
      errors.push_back(message);
      return;
    }
    data.problems.push_back(message + " (skipped)");
    if (!opts.quiet) std::cerr << "halsal: warning: " << message << " (skipped)\n";
    ++data.skipped;
  }
  void finish() const {
    if (errors.empty()) return;
    if (errors.size() == 1) throw Error(errors.front());
    std::string all = std::to_string(errors.size()) + " bad files:";
    for (const auto& e : errors) all += "\n  " + e;
    throw Error(all);
  }
};

/// Leaves out samples whose file is missing or (per opts.verify) unreadable.
inline void verify_samples(Dataset& data, const OpenOptions& opts) {
  std::vector<std::string> problem(data.samples.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next++) < data.samples.size();) {
      const auto& s = data.samples[i];
      try {
        if (opts.verify == Verify::none) {
          if (!path_exists(s.file)) throw file_error(s.file, "no such file");
        } else if (opts.verify == Verify::header) {
          image_info(s.file, opts.limits);
        } else {
          decode_image(s.file, opts.limits);
        }
        if (!s.mask.empty() && !path_exists(s.mask)) throw file_error(s.mask, "no such file (mask)");
      } catch (const Error& e) {
        problem[i] = e.what();
      } catch (const std::exception& e) {
        problem[i] = s.file.string() + ": " + e.what();
      }
    }
  };
  int n = opts.threads > 0 ? opts.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n = static_cast<int>(std::min<size_t>(static_cast<size_t>(n), std::max<size_t>(1, data.samples.size() / 64)));
  std::vector<std::thread> pool;
  for (int t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  BadFiles bad{opts, data};
  std::vector<Sample> kept;
  kept.reserve(data.samples.size());
  for (size_t i = 0; i < data.samples.size(); ++i) {
    if (problem[i].empty())
      kept.push_back(std::move(data.samples[i]));
    else
      bad.report(problem[i]);
  }
  bad.finish();
  data.samples = std::move(kept);
}

/// Class names from an optional classes.csv with a folder (or wnid) column and a name column,
/// and optionally an index column. Returns folder -> (index, name); empty when there is no file.
inline std::map<std::string, std::pair<int64_t, std::string>> read_classes_csv(const std::filesystem::path& file) {
  std::map<std::string, std::pair<int64_t, std::string>> out;
  if (!path_exists(file)) return out;
  auto lines = read_lines(file);
  if (lines.empty()) throw file_error(file, "is empty; expected a header such as 'index,folder,name'");
  auto header = csv_fields(lines[0].second);
  int col_folder = -1, col_name = -1, col_index = -1;
  for (int c = 0; c < static_cast<int>(header.size()); ++c) {
    if (header[c] == "folder" || header[c] == "wnid" || header[c] == "class" || header[c] == "dir") {
      if (col_folder < 0) col_folder = c;
    } else if (header[c] == "name") {
      col_name = c;
    } else if (header[c] == "index") {
      col_index = c;
    }
  }
  if (col_folder < 0)
    throw file_error(file, "header '" + lines[0].second + "' has no 'folder' (or 'wnid') column");
  std::set<int64_t> seen;
  for (size_t l = 1; l < lines.size(); ++l) {
    auto f = csv_fields(lines[l].second);
    const int need = std::max({col_folder, col_name, col_index});
    if (static_cast<int>(f.size()) <= need)
      throw file_error(file, "line " + std::to_string(lines[l].first) + " has " + std::to_string(f.size()) +
                                 " fields, the header " + std::to_string(header.size()));
    const int64_t index = col_index >= 0 ? parse_int(f[col_index], file, lines[l].first)
                                         : static_cast<int64_t>(l - 1);
    if (!seen.insert(index).second)
      throw file_error(file, "line " + std::to_string(lines[l].first) + ": class index " +
                                 std::to_string(index) + " appears twice");
    if (!out.emplace(f[col_folder], std::make_pair(index, col_name >= 0 ? f[col_name] : f[col_folder])).second)
      throw file_error(file, "line " + std::to_string(lines[l].first) + ": folder '" + f[col_folder] +
                                 "' appears twice");
  }
  return out;
}

// ---- layouts ---------------------------------------------------------------------------------

/// <root>/images/<class>/* or <root>/<class>/*, optional classes.csv; wnid folders = ImageNet.
inline Dataset open_folders(const std::filesystem::path& root, const std::filesystem::path& class_root) {
  Dataset d;
  d.root = root;
  auto dirs = subdirs(class_root);
  auto listed = read_classes_csv(root / "classes.csv");
  const bool wnids = !dirs.empty() && std::all_of(dirs.begin(), dirs.end(), [](const auto& p) {
    return is_wnid(p.filename().string());
  });
  d.layout = wnids ? "imagenet" : "folders";
  std::vector<std::pair<int64_t, std::string>> classes;  // (index, folder)
  std::map<std::string, std::string> names;
  if (!listed.empty()) {
    std::set<std::string> present;
    for (const auto& p : dirs) present.insert(p.filename().string());
    for (const auto& [folder, v] : listed) {
      if (!present.count(folder))
        throw file_error(root / "classes.csv", "lists class folder '" + folder + "', which is not in " +
                                                   class_root.string());
      classes.emplace_back(v.first, folder);
      names[folder] = v.second;
    }
    for (const auto& f : present)
      if (!listed.count(f))
        throw file_error(root / "classes.csv", "does not list the class folder '" + f + "'");
    std::sort(classes.begin(), classes.end());
    for (size_t i = 0; i < classes.size(); ++i)
      if (classes[i].first != static_cast<int64_t>(i))
        throw file_error(root / "classes.csv", "class indices must be 0.." + std::to_string(classes.size() - 1) +
                                                   " (missing " + std::to_string(i) + ")");
  } else {
    // torchvision's ImageFolder order: sorted folder names (for wnids: the ILSVRC index).
    for (size_t i = 0; i < dirs.size(); ++i) classes.emplace_back(static_cast<int64_t>(i), dirs[i].filename().string());
  }
  const std::filesystem::path mask_root = root / "masks";
  const bool has_masks = is_dir(mask_root);
  size_t ignored = 0;
  for (const auto& [index, folder] : classes) {
    d.class_names.push_back(names.count(folder) ? names[folder] : folder);
    for (const auto& f : files_in(class_root / folder)) {
      if (!has_image_extension(f)) {
        ++ignored;
        continue;
      }
      Sample s;
      s.file = f;
      s.label = index;
      if (has_masks) {
        auto m = mask_root / folder / (f.stem().string() + ".png");
        if (path_exists(m)) s.mask = m;
      }
      d.samples.push_back(std::move(s));
    }
  }
  if (ignored)
    d.problems.push_back(std::to_string(ignored) + " files without an image extension were ignored");
  if (d.class_names.empty())
    throw file_error(class_root, "has no class folders (expected <class>/<image files>)");
  return d;
}

/// Oxford Flowers 102: jpg/image_NNNNN.jpg, imagelabels.mat (labels 1..102), setid.mat.
inline Dataset open_flowers(const std::filesystem::path& root) {
  for (const char* need : {"imagelabels.mat", "setid.mat", "jpg"})
    if (!path_exists(root / need))
      throw file_error(root / need, "missing: the Oxford Flowers 102 layout needs jpg/, imagelabels.mat and setid.mat");
  Dataset d;
  d.layout = "flowers102";
  d.root = root;
  const auto labels = mat::read_numbers(root / "imagelabels.mat", "labels");
  const size_t n = labels.size();
  std::vector<std::filesystem::path> files = files_in(root / "jpg");
  files.erase(std::remove_if(files.begin(), files.end(), [](const auto& f) { return !has_image_extension(f); }),
              files.end());
  if (files.size() > n)
    throw file_error(root / "imagelabels.mat", "has " + std::to_string(n) + " labels but jpg/ holds " +
                                                   std::to_string(files.size()) + " images (missing rows)");
  int64_t max_label = 0;
  for (size_t i = 0; i < n; ++i) {
    const double v = labels[i];
    if (v < 1 || v > 100000 || v != std::floor(v))
      throw file_error(root / "imagelabels.mat", "label " + std::to_string(i + 1) + " is " + std::to_string(v) +
                                                     ", not a class number 1..");
    max_label = std::max(max_label, static_cast<int64_t>(v));
  }
  char name[32];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(name, sizeof name, "image_%05zu.jpg", i + 1);
    Sample s;
    s.file = root / "jpg" / name;
    s.label = static_cast<int64_t>(labels[i]) - 1;
    d.samples.push_back(std::move(s));
  }
  // setid.mat: 1-based image ids of the official train / validation / test sets.
  const std::pair<const char*, Part> parts[] = {{"trnid", Part::train}, {"valid", Part::val}, {"tstid", Part::test}};
  for (const auto& [var, part] : parts) {
    for (double id : mat::read_numbers(root / "setid.mat", var)) {
      if (id < 1 || id > static_cast<double>(n) || id != std::floor(id))
        throw file_error(root / "setid.mat", std::string(var) + " holds image id " + std::to_string(id) +
                                                 ", outside 1.." + std::to_string(n));
      auto& s = d.samples[static_cast<size_t>(id) - 1];
      if (s.part != Part::none)
        throw file_error(root / "setid.mat", "image id " + std::to_string(static_cast<long>(id)) +
                                                 " is in two of trnid/valid/tstid");
      s.part = part;
    }
  }
  // Names: cat_to_name.json ({"1": "pink primrose", ...}) when present, else the label number.
  std::map<int64_t, std::string> names;
  if (path_exists(root / "cat_to_name.json")) {
    try {
      std::ifstream in(root / "cat_to_name.json");
      auto j = nlohmann::json::parse(in);
      for (auto it = j.begin(); it != j.end(); ++it) names[std::stoll(it.key())] = it.value().get<std::string>();
    } catch (const std::exception& e) {
      throw file_error(root / "cat_to_name.json", std::string("unreadable: ") + e.what());
    }
  }
  for (int64_t c = 1; c <= max_label; ++c) {
    std::snprintf(name, sizeof name, "%03lld", static_cast<long long>(c));
    d.class_names.push_back(names.count(c) ? names[c] : std::string(name));
  }
  return d;
}

/// Index lines "<id> <value...>" of a CUB text file; every id of `ids` exactly once.
inline std::map<int64_t, std::vector<std::string>> read_cub_table(const std::filesystem::path& file,
                                                                  const std::set<int64_t>& ids, size_t fields,
                                                                  const char* what) {
  std::map<int64_t, std::vector<std::string>> out;
  for (const auto& [line, text] : read_lines(file)) {
    auto w = words(text);
    if (w.size() < fields + 1)
      throw file_error(file, "line " + std::to_string(line) + ": expected '<image id> " + what + "'");
    const int64_t id = parse_int(w[0], file, line);
    if (!ids.count(id))
      throw file_error(file, "line " + std::to_string(line) + ": image id " + std::to_string(id) +
                                 " is not in images.txt (extra row)");
    if (!out.emplace(id, std::vector<std::string>(w.begin() + 1, w.end())).second)
      throw file_error(file, "line " + std::to_string(line) + ": image id " + std::to_string(id) + " appears twice");
  }
  if (out.size() != ids.size()) {
    for (int64_t id : ids)
      if (!out.count(id))
        throw file_error(file, "has no row for image id " + std::to_string(id) + " (" +
                                   std::to_string(ids.size() - out.size()) + " rows missing)");
  }
  return out;
}

/// CUB-200-2011: images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/,
/// optional bounding_boxes.txt.
inline Dataset open_cub(const std::filesystem::path& root) {
  for (const char* need : {"images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt", "images"})
    if (!path_exists(root / need))
      throw file_error(root / need, "missing: the CUB-200-2011 layout needs images/, images.txt, "
                                    "image_class_labels.txt, train_test_split.txt and classes.txt");
  Dataset d;
  d.layout = "cub200";
  d.root = root;
  // classes.txt: "<class id> <NNN.Name_With_Underscores>", ids 1..C.
  std::map<int64_t, std::string> classes;
  for (const auto& [line, text] : read_lines(root / "classes.txt")) {
    auto w = words(text);
    if (w.size() < 2) throw file_error(root / "classes.txt", "line " + std::to_string(line) + ": expected '<id> <name>'");
    const int64_t id = parse_int(w[0], root / "classes.txt", line);
    std::string name = text.substr(text.find(w[1]));
    if (name.size() > 4 && std::isdigit(static_cast<unsigned char>(name[0])) && name[3] == '.') name = name.substr(4);
    std::replace(name.begin(), name.end(), '_', ' ');
    if (!classes.emplace(id, name).second)
      throw file_error(root / "classes.txt", "line " + std::to_string(line) + ": class " + std::to_string(id) + " twice");
  }
  int64_t expect = 1;
  for (const auto& [id, name] : classes) {
    if (id != expect++) throw file_error(root / "classes.txt", "class ids must be 1.." + std::to_string(classes.size()));
    d.class_names.push_back(name);
  }
  std::map<int64_t, std::string> images;
  std::set<int64_t> ids;
  for (const auto& [line, text] : read_lines(root / "images.txt")) {
    auto w = words(text);
    if (w.size() != 2)
      throw file_error(root / "images.txt", "line " + std::to_string(line) + ": expected '<image id> <path>'");
    const int64_t id = parse_int(w[0], root / "images.txt", line);
    if (!images.emplace(id, w[1]).second)
      throw file_error(root / "images.txt", "line " + std::to_string(line) + ": image id " + std::to_string(id) + " twice");
    ids.insert(id);
  }
  auto labels = read_cub_table(root / "image_class_labels.txt", ids, 1, "<class id>");
  auto split = read_cub_table(root / "train_test_split.txt", ids, 1, "<is training image 0/1>");
  std::map<int64_t, std::vector<std::string>> boxes;
  if (path_exists(root / "bounding_boxes.txt"))
    boxes = read_cub_table(root / "bounding_boxes.txt", ids, 4, "<x> <y> <width> <height>");
  for (const auto& [id, rel] : images) {
    Sample s;
    s.file = root / "images" / rel;
    const int64_t c = parse_int(labels[id][0], root / "image_class_labels.txt", 0);
    if (c < 1 || c > static_cast<int64_t>(classes.size()))
      throw file_error(root / "image_class_labels.txt", "image id " + std::to_string(id) + " has class " +
                                                            std::to_string(c) + ", not in classes.txt");
    s.label = c - 1;
    s.part = split[id][0] == "1" ? Part::train : Part::test;
    if (boxes.count(id)) {
      const auto& b = boxes[id];
      const auto f = root / "bounding_boxes.txt";
      s.box = Box{parse_double(b[0], f, 0), parse_double(b[1], f, 0), parse_double(b[2], f, 0), parse_double(b[3], f, 0)};
    }
    d.samples.push_back(std::move(s));
  }
  return d;
}

/// Stanford Cars: cars_train/, cars_test/, devkit/cars_meta.mat, devkit/cars_train_annos.mat,
/// cars_test_annos_withlabels.mat (at the root or in devkit/).
inline Dataset open_cars(const std::filesystem::path& root) {
  for (const char* need : {"devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_train"})
    if (!path_exists(root / need))
      throw file_error(root / need, "missing: the Stanford Cars layout needs cars_train/, devkit/cars_meta.mat and "
                                    "devkit/cars_train_annos.mat (and for the test part cars_test/ with "
                                    "cars_test_annos_withlabels.mat)");
  Dataset d;
  d.layout = "cars196";
  d.root = root;
  d.class_names = mat::read_strings(root / "devkit/cars_meta.mat", "class_names");
  auto add = [&](const std::filesystem::path& annos, const std::filesystem::path& dir, Part part) {
    for (const auto& a : mat::read_car_annotations(annos)) {
      if (a.label < 1 || a.label > static_cast<int64_t>(d.class_names.size()))
        throw file_error(annos, "'" + a.fname + "' has class " + std::to_string(a.label) + ", outside 1.." +
                                    std::to_string(d.class_names.size()) + " of cars_meta.mat");
      Sample s;
      s.file = dir / a.fname;
      s.label = a.label - 1;
      s.part = part;
      s.box = Box{a.x1 - 1, a.y1 - 1, a.x2 - a.x1 + 1, a.y2 - a.y1 + 1};  // 1-based inclusive corners
      d.samples.push_back(std::move(s));
    }
  };
  add(root / "devkit/cars_train_annos.mat", root / "cars_train", Part::train);
  std::filesystem::path test_annos = root / "cars_test_annos_withlabels.mat";
  if (!path_exists(test_annos)) test_annos = root / "devkit/cars_test_annos_withlabels.mat";
  if (path_exists(root / "cars_test")) {
    if (!path_exists(test_annos))
      throw file_error(root / "cars_test_annos_withlabels.mat",
                       "missing: cars_test/ is there but its labels are not (devkit/cars_test_annos.mat has none)");
    add(test_annos, root / "cars_test", Part::test);
  }
  return d;
}

/// ImageNet validation images in one folder plus a ground-truth file: LOC_val_solution.csv
/// (ImageId,PredictionString with the wnid first), val.txt ("<file> <index>", 0-based
/// sorted-wnid index), or the devkit's ILSVRC2012_validation_ground_truth.txt with meta.mat.
inline Dataset open_imagenet_flat(const std::filesystem::path& root, const std::vector<std::filesystem::path>& files) {
  Dataset d;
  d.layout = "imagenet-flat";
  d.root = root;
  std::map<std::string, std::filesystem::path> by_stem;
  for (const auto& f : files) by_stem[f.stem().string()] = f;
  std::vector<std::pair<std::filesystem::path, std::string>> labelled;  // file, wnid or "#index"
  std::filesystem::path label_file;
  // Full wnid list when a synset mapping is present (so the index is the ILSVRC one).
  std::vector<std::string> all_wnids;
  std::map<std::string, std::string> wnid_names;
  for (const char* mapping : {"LOC_synset_mapping.txt", "synset_words.txt"}) {
    if (!path_exists(root / mapping)) continue;
    for (const auto& [line, text] : read_lines(root / mapping)) {
      auto w = words(text);
      if (w.empty() || !is_wnid(w[0]))
        throw file_error(root / mapping, "line " + std::to_string(line) + ": expected '<wnid> <names>'");
      all_wnids.push_back(w[0]);
      auto rest = text.substr(std::min(text.size(), w[0].size() + 1));
      wnid_names[w[0]] = rest.substr(0, rest.find(','));
    }
    break;
  }
  auto lookup = [&](const std::string& name, const std::filesystem::path& from, size_t line) {
    const auto stem = std::filesystem::path(name).stem().string();
    auto it = by_stem.find(stem);
    if (it == by_stem.end())
      throw file_error(root / stem, "listed in " + from.filename().string() + " line " + std::to_string(line) +
                                        " but no such image file");
    return it->second;
  };
  if (path_exists(root / "LOC_val_solution.csv")) {
    label_file = root / "LOC_val_solution.csv";
    auto lines = read_lines(label_file);
    for (size_t l = 1; l < lines.size(); ++l) {
      auto f = csv_fields(lines[l].second);
      auto w = f.size() >= 2 ? words(f[1]) : std::vector<std::string>{};
      if (w.empty() || !is_wnid(w[0]))
        throw file_error(label_file, "line " + std::to_string(lines[l].first) + ": expected 'ImageId,<wnid> ...'");
      labelled.emplace_back(lookup(f[0], label_file, lines[l].first), w[0]);
    }
  } else if (path_exists(root / "val.txt")) {
    label_file = root / "val.txt";
    for (const auto& [line, text] : read_lines(label_file)) {
      auto w = words(text);
      if (w.size() != 2) throw file_error(label_file, "line " + std::to_string(line) + ": expected '<file> <label>'");
      const std::string lab = is_wnid(w[1]) ? w[1] : "#" + std::to_string(parse_int(w[1], label_file, line));
      labelled.emplace_back(lookup(w[0], label_file, line), lab);
    }
  } else if (path_exists(root / "ILSVRC2012_validation_ground_truth.txt")) {
    label_file = root / "ILSVRC2012_validation_ground_truth.txt";
    std::filesystem::path meta = root / "meta.mat";
    if (!path_exists(meta)) meta = root / "data/meta.mat";
    if (!path_exists(meta))
      throw file_error(root / "meta.mat", "missing: ILSVRC2012_validation_ground_truth.txt holds devkit ids, "
                                          "which need the devkit's meta.mat to become wnids");
    auto id_to_wnid = mat::read_imagenet_synsets(meta);
    auto lines = read_lines(label_file);
    if (lines.size() != files.size())
      throw file_error(label_file, "has " + std::to_string(lines.size()) + " rows for " +
                                       std::to_string(files.size()) + " images (rows are in sorted file order)");
    for (size_t i = 0; i < lines.size(); ++i) {
      const int64_t id = parse_int(lines[i].second, label_file, lines[i].first);
      auto it = id_to_wnid.find(id);
      if (it == id_to_wnid.end())
        throw file_error(label_file, "line " + std::to_string(lines[i].first) + ": id " + std::to_string(id) +
                                         " is not a class of meta.mat");
      labelled.emplace_back(files[i], it->second);
    }
  } else {
    throw file_error(root, std::to_string(files.size()) +
                               " images lie directly in this folder but no label file is there: expected "
                               "LOC_val_solution.csv, val.txt or ILSVRC2012_validation_ground_truth.txt "
                               "(+ meta.mat), or one folder per class");
  }
  std::set<std::filesystem::path> seen;
  for (const auto& [f, lab] : labelled)
    if (!seen.insert(f).second) throw file_error(label_file, "labels '" + f.filename().string() + "' twice");
  if (seen.size() != files.size()) {
    for (const auto& f : files)
      if (!seen.count(f))
        throw file_error(label_file, "has no row for " + f.filename().string() + " (" +
                                         std::to_string(files.size() - seen.size()) + " images unlabelled)");
  }
  // Classes: sorted wnids (the ILSVRC-2012 index); numeric labels index that order directly.
  std::set<std::string> wnid_set(all_wnids.begin(), all_wnids.end());
  int64_t max_index = -1;
  for (const auto& [f, lab] : labelled) {
    if (lab[0] == '#')
      max_index = std::max<int64_t>(max_index, std::stoll(lab.substr(1)));
    else
      wnid_set.insert(lab);
  }
  std::vector<std::string> wnids(wnid_set.begin(), wnid_set.end());
  if (max_index >= 0 && wnids.empty()) {
    for (int64_t i = 0; i <= max_index; ++i) d.class_names.push_back("class " + std::to_string(i));
  } else {
    if (max_index >= static_cast<int64_t>(wnids.size()))
      throw file_error(label_file, "label " + std::to_string(max_index) + " is beyond the " +
                                       std::to_string(wnids.size()) + " known wnids");
    for (const auto& w : wnids) d.class_names.push_back(wnid_names.count(w) ? wnid_names[w] : w);
  }
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < wnids.size(); ++i) index[wnids[i]] = static_cast<int64_t>(i);
  for (const auto& [f, lab] : labelled) {
    Sample s;
    s.file = f;
    s.label = lab[0] == '#' ? std::stoll(lab.substr(1)) : index[lab];
    d.samples.push_back(std::move(s));
  }
  std::sort(d.samples.begin(), d.samples.end(), [](const Sample& a, const Sample& b) { return a.file < b.file; });
  return d;
}

}  // namespace detail

/// Opens a dataset folder, detecting its layout (see docs/data.md):
///   folders      <dir>/images/<class>/* or <dir>/<class>/*, optional classes.csv (index,folder,name)
///   imagenet     the same with wnid folders (n01440764/...): class index = sorted-wnid order
///   imagenet-flat  images in <dir> + LOC_val_solution.csv | val.txt | devkit ground truth + meta.mat
///   flowers102   jpg/, imagelabels.mat, setid.mat (Oxford Flowers 102)
///   cub200       images.txt, image_class_labels.txt, train_test_split.txt, classes.txt (CUB-200-2011)
///   cars196      cars_train/, cars_test/, devkit/*.mat (Stanford Cars)
/// Throws an Error naming what is missing or wrong.
inline Dataset open(const std::filesystem::path& dir, const OpenOptions& opts = {}) {
  using detail::path_exists;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) throw file_error(dir, "no such folder");
  if (!std::filesystem::is_directory(dir, ec)) throw file_error(dir, "is a file; open() takes a dataset folder");
  std::filesystem::path root = std::filesystem::absolute(dir).lexically_normal();
  if (root.filename().empty()) root = root.parent_path();
  if (path_exists(root / "CUB_200_2011" / "images.txt")) root /= "CUB_200_2011";
  Dataset d;
  if (path_exists(root / "images.txt") || path_exists(root / "image_class_labels.txt")) {
    d = detail::open_cub(root);
  } else if (path_exists(root / "imagelabels.mat") || path_exists(root / "setid.mat")) {
    d = detail::open_flowers(root);
  } else if (path_exists(root / "devkit" / "cars_meta.mat") || path_exists(root / "cars_train")) {
    d = detail::open_cars(root);
  } else {
    std::vector<std::filesystem::path> loose;
    for (const auto& f : detail::files_in(root))
      if (has_image_extension(f)) loose.push_back(f);
    const bool has_images_dir = detail::is_dir(root / "images") && !detail::subdirs(root / "images").empty();
    if (!has_images_dir && !loose.empty()) {
      d = detail::open_imagenet_flat(root, loose);
    } else if (has_images_dir) {
      d = detail::open_folders(root, root / "images");
    } else if (!detail::subdirs(root).empty()) {
      d = detail::open_folders(root, root);
    } else {
      throw file_error(root,
                       "no dataset layout recognized: expected images/<class>/<files> or <class>/<files> "
                       "(folders, ImageNet wnid folders), jpg/ + imagelabels.mat + setid.mat (Oxford Flowers "
                       "102), images.txt + image_class_labels.txt + train_test_split.txt + classes.txt "
                       "(CUB-200-2011), cars_train/ + devkit/cars_meta.mat (Stanford Cars), or image files + "
                       "LOC_val_solution.csv / val.txt (ImageNet val)");
    }
  }
  d.crop_to_box = opts.crop_to_box;
  d.limits = opts.limits;
  detail::verify_samples(d, opts);
  if (d.samples.empty()) throw file_error(root, "no images found (" + d.layout + " layout)");
  return d;
}

/// Several datasets with the same classes (same names, same order) as one, e.g. two ImageNet
/// validation folders; samples keep their files, the first dataset gives layout and root. The
/// Error names the folders and the first class that differs.
inline Dataset concat(const std::vector<Dataset>& parts) {
  if (parts.empty()) throw Error("concat: no datasets");
  Dataset out = parts.front();
  for (size_t p = 1; p < parts.size(); ++p) {
    const Dataset& d = parts[p];
    if (d.generator || out.generator) throw Error("concat: generated datasets cannot be joined");
    if (d.class_names.size() != out.class_names.size())
      throw Error("concat: " + d.root.string() + " has " + std::to_string(d.class_names.size()) + " classes but " +
                  out.root.string() + " has " + std::to_string(out.class_names.size()) +
                  "; joined datasets need the same classes in the same order");
    for (size_t c = 0; c < d.class_names.size(); ++c)
      if (d.class_names[c] != out.class_names[c])
        throw Error("concat: class " + std::to_string(c) + " is '" + d.class_names[c] + "' in " + d.root.string() +
                    " but '" + out.class_names[c] + "' in " + parts.front().root.string());
    out.samples.insert(out.samples.end(), d.samples.begin(), d.samples.end());
    out.problems.insert(out.problems.end(), d.problems.begin(), d.problems.end());
    out.skipped += d.skipped;
    if (d.crop_to_box != out.crop_to_box) throw Error("concat: the datasets differ in crop_to_box");
  }
  return out;
}

}  // namespace halsal::data
