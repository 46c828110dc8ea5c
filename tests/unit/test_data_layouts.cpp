// halsal::data::open on every supported layout (fake official trees written here, .mat files
// with libmatio), label-file errors, and the real data in ../shared when it is present.
#include <matio.h>
#include <torch/torch.h>

#include <boost/test/unit_test.hpp>
#include <cstring>
#include <fstream>
#include <set>

#include "halsal/data/data.hpp"
#include "test_support.hpp"

namespace hd = halsal::data;
namespace fs = std::filesystem;
using halsal::test::expect_error;

namespace {

/// A small image whose colour encodes n (so tests can tell which file was loaded).
void image(const fs::path& p, int n, int h = 12, int w = 16) {
  fs::create_directories(p.parent_path());
  hd::Image im(h, w, 3);
  for (size_t i = 0; i < im.pixels.size(); i += 3) {
    im.pixels[i] = static_cast<uint8_t>(n);
    im.pixels[i + 1] = static_cast<uint8_t>(n * 7);
    im.pixels[i + 2] = 100;
  }
  hd::write_image(p, im);
}

void text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << s;
}

// ---- .mat writers (libmatio) ----
struct MatWriter {
  mat_t* m;
  explicit MatWriter(const fs::path& p) : m(Mat_CreateVer(p.c_str(), nullptr, MAT_FT_MAT5)) { BOOST_REQUIRE(m); }
  ~MatWriter() { Mat_Close(m); }
  void numbers(const char* name, const std::vector<double>& v) {
    size_t dims[2] = {1, v.size()};
    matvar_t* x = Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, const_cast<double*>(v.data()), 0);
    BOOST_REQUIRE(Mat_VarWrite(m, x, MAT_COMPRESSION_NONE) == 0);
    Mat_VarFree(x);
  }
  static matvar_t* str(const std::string& s) {
    size_t dims[2] = {1, s.size()};
    return Mat_VarCreate(nullptr, MAT_C_CHAR, MAT_T_UINT8, 2, dims, const_cast<char*>(s.data()), 0);
  }
  void strings(const char* name, const std::vector<std::string>& v) {
    size_t dims[2] = {1, v.size()};
    matvar_t* c = Mat_VarCreate(name, MAT_C_CELL, MAT_T_CELL, 2, dims, nullptr, 0);
    for (size_t i = 0; i < v.size(); ++i) Mat_VarSetCell(c, static_cast<int>(i), str(v[i]));
    BOOST_REQUIRE(Mat_VarWrite(m, c, MAT_COMPRESSION_NONE) == 0);
    Mat_VarFree(c);
  }
  struct Car {
    double x1, y1, x2, y2;
    uint8_t cls;
    std::string fname;
  };
  void cars(const std::vector<Car>& v, bool with_class = true) {
    size_t dims[2] = {1, v.size()};
    const char* fields[] = {"bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"};
    const unsigned nf = with_class ? 6 : 5;
    std::vector<const char*> fl(fields, fields + 6);
    if (!with_class) fl.erase(fl.begin() + 4);
    matvar_t* s = Mat_VarCreateStruct("annotations", 2, dims, fl.data(), nf);
    size_t one[2] = {1, 1};
    for (size_t i = 0; i < v.size(); ++i) {
      double b[4] = {v[i].x1, v[i].y1, v[i].x2, v[i].y2};
      for (int k = 0; k < 4; ++k)
        Mat_VarSetStructFieldByName(s, fields[k], i, Mat_VarCreate(nullptr, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, one, &b[k], 0));
      if (with_class) {
        uint8_t c = v[i].cls;
        Mat_VarSetStructFieldByName(s, "class", i, Mat_VarCreate(nullptr, MAT_C_UINT8, MAT_T_UINT8, 2, one, &c, 0));
      }
      Mat_VarSetStructFieldByName(s, "fname", i, str(v[i].fname));
    }
    // Uncompressed: with matio 1.5.23 a zlib-compressed struct array of this shape reads back
    // with one field missing (a matio bug, writer or reader side).
    BOOST_REQUIRE(Mat_VarWrite(m, s, MAT_COMPRESSION_NONE) == 0);
    Mat_VarFree(s);
  }
};

std::map<std::string, int64_t> labels_by_file(const hd::Dataset& d) {
  std::map<std::string, int64_t> out;
  for (size_t i = 0; i < d.size(); ++i) out[d.key(i)] = d.samples[i].label;
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(test_data_layouts)

BOOST_AUTO_TEST_CASE(folders_layout_with_and_without_classes_csv) {
  const auto root = halsal::test::scratch_dir("layout-folders");
  image(root / "images/rose/1.png", 1);
  image(root / "images/rose/2.jpg", 2);
  image(root / "images/daisy/3.bmp", 3);
  image(root / "images/tulip/4.png", 4);
  text(root / "images/tulip/README.txt", "ignored");
  // Sorted folder order (torchvision's ImageFolder): daisy 0, rose 1, tulip 2.
  auto d = hd::open(root);
  BOOST_TEST(d.layout == "folders");
  BOOST_TEST(d.class_names == (std::vector<std::string>{"daisy", "rose", "tulip"}), boost::test_tools::per_element());
  auto l = labels_by_file(d);
  BOOST_TEST(l["images/daisy/3.bmp"] == 0);
  BOOST_TEST(l["images/rose/2.jpg"] == 1);
  BOOST_TEST(l["images/tulip/4.png"] == 2);
  BOOST_TEST(d.size() == 4u);
  BOOST_TEST(d.problems.size() == 1u);  // README.txt ignored
  BOOST_TEST(d.class_counts() == (std::vector<size_t>{1, 2, 1}), boost::test_tools::per_element());
  // classes.csv decides indices and names (quoted names with commas allowed).
  text(root / "classes.csv", "index,folder,name\n0,tulip,\"Tulip, garden\"\n1,rose,Rose\n2,daisy,Daisy\n");
  d = hd::open(root);
  BOOST_TEST(d.class_names == (std::vector<std::string>{"Tulip, garden", "Rose", "Daisy"}), boost::test_tools::per_element());
  l = labels_by_file(d);
  BOOST_TEST(l["images/tulip/4.png"] == 0);
  BOOST_TEST(l["images/daisy/3.bmp"] == 2);
  text(root / "classes.csv", "index,folder,name\n0,tulip,T\n1,rose,R\n2,lily,L\n");
  expect_error([&] { hd::open(root); }, {"classes.csv", "'lily'"});
  text(root / "classes.csv", "index,folder,name\n0,tulip,T\n1,rose,R\n");
  expect_error([&] { hd::open(root); }, {"classes.csv", "'daisy'"});
  fs::remove(root / "classes.csv");
  // <root>/<class>/* works too; a masks/ folder gives masks.
  const auto flat = halsal::test::scratch_dir("layout-folders-flat");
  image(flat / "b/x.png", 1);
  image(flat / "a/y.png", 2);
  image(flat / "masks/a/y.png", 255);
  auto f = hd::open(flat);
  BOOST_TEST(f.class_names == (std::vector<std::string>{"a", "b", "masks"}), boost::test_tools::per_element());
  const auto withmask = halsal::test::scratch_dir("layout-folders-mask");
  image(withmask / "images/a/y.png", 2);
  image(withmask / "masks/a/y.png", 255);
  auto m = hd::open(withmask);
  BOOST_TEST(m.has_masks());
  auto ls = hd::load_sample(m, 0);
  BOOST_TEST(ls.mask.channels == 1);
  BOOST_TEST(ls.mask.at(3, 3) == 255);
  // Nothing recognizable: an Error listing the layouts.
  const auto empty = halsal::test::scratch_dir("layout-empty");
  expect_error([&] { hd::open(empty); }, {"no dataset layout recognized", "imagelabels.mat", "images.txt"});
  expect_error([&] { hd::open(empty / "nope"); }, {"nope", "no such folder"});
}

BOOST_AUTO_TEST_CASE(imagenet_wnid_folders_and_flat_val) {
  const auto root = halsal::test::scratch_dir("layout-imagenet");
  image(root / "n02000001/a.JPEG", 1);
  image(root / "n01000002/b.JPEG", 2);
  image(root / "n01500003/c.JPEG", 3);
  auto d = hd::open(root);
  BOOST_TEST(d.layout == "imagenet");
  auto l = labels_by_file(d);
  BOOST_TEST(l["n01000002/b.JPEG"] == 0);  // sorted-wnid order
  BOOST_TEST(l["n01500003/c.JPEG"] == 1);
  BOOST_TEST(l["n02000001/a.JPEG"] == 2);
  // Flat: ILSVRC2012_val_*.JPEG + LOC_val_solution.csv (+ LOC_synset_mapping.txt for all classes).
  const auto flat = halsal::test::scratch_dir("layout-imagenet-flat");
  for (int i = 1; i <= 4; ++i) image(flat / ("ILSVRC2012_val_0000000" + std::to_string(i) + ".JPEG"), i);
  text(flat / "LOC_synset_mapping.txt", "n01000001 tench, Tinca tinca\nn01000002 goldfish\nn01000003 shark\n");
  text(flat / "LOC_val_solution.csv",
       "ImageId,PredictionString\nILSVRC2012_val_00000001,n01000003 1 2 3 4\nILSVRC2012_val_00000002,n01000001 1 2 3 "
       "4\nILSVRC2012_val_00000003,n01000003 0 0 1 1\nILSVRC2012_val_00000004,n01000002 0 0 1 1\n");
  auto f = hd::open(flat);
  BOOST_TEST(f.layout == "imagenet-flat");
  BOOST_TEST(f.class_names == (std::vector<std::string>{"tench", "goldfish", "shark"}), boost::test_tools::per_element());
  l = labels_by_file(f);
  BOOST_TEST(l["ILSVRC2012_val_00000001.JPEG"] == 2);
  BOOST_TEST(l["ILSVRC2012_val_00000002.JPEG"] == 0);
  BOOST_TEST(l["ILSVRC2012_val_00000004.JPEG"] == 1);
  // A missing row names the label file and the image.
  text(flat / "LOC_val_solution.csv", "ImageId,PredictionString\nILSVRC2012_val_00000001,n01000003 1 2 3 4\n");
  expect_error([&] { hd::open(flat); }, {"LOC_val_solution.csv", "ILSVRC2012_val_0000000", "no row"});
  // Caffe's val.txt: "<file> <0-based index>".
  fs::remove(flat / "LOC_val_solution.csv");
  text(flat / "val.txt",
       "ILSVRC2012_val_00000001.JPEG 2\nILSVRC2012_val_00000002.JPEG 0\nILSVRC2012_val_00000003.JPEG "
       "1\nILSVRC2012_val_00000004.JPEG 1\n");
  l = labels_by_file(hd::open(flat));
  BOOST_TEST(l["ILSVRC2012_val_00000001.JPEG"] == 2);
  BOOST_TEST(l["ILSVRC2012_val_00000003.JPEG"] == 1);
  text(flat / "val.txt", "ILSVRC2012_val_00000001.JPEG 2\nILSVRC2012_val_00000009.JPEG 0\n");
  expect_error([&] { hd::open(flat); }, {"ILSVRC2012_val_00000009", "val.txt line 2"});
  fs::remove(flat / "val.txt");
  expect_error([&] { hd::open(flat); }, {"no label file", "LOC_val_solution.csv"});
}

BOOST_AUTO_TEST_CASE(oxford_flowers_official_layout) {
  const auto root = halsal::test::scratch_dir("layout-flowers");
  // 3 classes x 14 images; labels interleaved as in the real file (not sorted by class).
  const int n = 42;
  std::vector<double> labels(n), trn, val, tst;
  for (int i = 0; i < n; ++i) {
    labels[i] = 1 + (i * 5) % 3;
    image(root / "jpg" / (std::string("image_000") + (i + 1 < 10 ? "0" : "") + std::to_string(i + 1) + ".jpg"), i);
  }
  std::vector<int> seen(4, 0);
  for (int i = 0; i < n; ++i) {
    const int c = static_cast<int>(labels[i]), k = seen[c]++;
    (k < 4 ? trn : k < 6 ? val : tst).push_back(i + 1);
  }
  {
    MatWriter w(root / "imagelabels.mat");
    w.numbers("labels", labels);
  }
  expect_error([&] { hd::open(root); }, {"setid.mat", "missing"});
  {
    MatWriter w(root / "setid.mat");
    w.numbers("trnid", trn);
    w.numbers("valid", val);
    w.numbers("tstid", tst);
  }
  auto d = hd::open(root);
  BOOST_TEST(d.layout == "flowers102");
  BOOST_TEST(d.num_classes() == 3);
  BOOST_TEST(d.class_names[2] == "003");
  BOOST_TEST(d.size() == 42u);
  BOOST_TEST(d.samples[1].label == 5 % 3);  // image_00002: label 1 + 5 % 3 = 3 -> index 2
  BOOST_TEST(d.samples[1].label == 2);
  BOOST_TEST(d.has_official_split());
  // K = the official split: 4 train, 2 val, 8 test per class.
  const auto K = hd::kshot(d, hd::kOfficial, 0);
  BOOST_TEST(K.train.size() == 12u);
  BOOST_TEST(K.val.size() == 6u);
  BOOST_TEST(K.test.size() == 24u);
  for (size_t i : K.test.indices) BOOST_TEST((d.samples[i].part == hd::Part::test));
  // The k-shot protocol pools everything: 14 per class = 5 + 5 + k, k <= 4.
  BOOST_TEST(hd::kshot(d, 4, 0).train.size() == 12u);
  expect_error([&] { hd::kshot(d, 5, 0); }, {"has 14 images", "= 15"});
  // Names from cat_to_name.json when present.
  text(root / "cat_to_name.json", R"({"1": "pink primrose", "3": "canterbury bells", "2": "orchid"})");
  BOOST_TEST(hd::open(root).class_names[2] == "canterbury bells");
  // Label file problems name the file.
  image(root / "jpg/image_00043.jpg", 43);
  expect_error([&] { hd::open(root); }, {"imagelabels.mat", "42 labels", "43 images"});
  fs::remove(root / "jpg/image_00043.jpg");
  fs::remove(root / "jpg/image_00007.jpg");
  expect_error([&] { hd::open(root); }, {"image_00007.jpg", "no such file"});
  hd::OpenOptions skip;
  skip.on_bad_file = hd::OnBadFile::skip;
  skip.quiet = true;
  BOOST_TEST(hd::open(root, skip).size() == 41u);
  image(root / "jpg/image_00007.jpg", 7);
  {
    MatWriter w(root / "setid.mat");
    w.numbers("trnid", {1, 2, 99});
    w.numbers("valid", val);
    w.numbers("tstid", tst);
  }
  expect_error([&] { hd::open(root); }, {"setid.mat", "99"});
  {
    MatWriter w(root / "setid.mat");
    w.numbers("trnid", trn);
    w.numbers("tstid", tst);
  }
  expect_error([&] { hd::open(root); }, {"setid.mat", "'valid'"});
  text(root / "setid.mat", "this is not a MATLAB file at all, just some text of some length........");
  expect_error([&] { hd::open(root); }, {"setid.mat"});
  std::ofstream(root / "setid.mat", std::ios::trunc).close();
  expect_error([&] { hd::open(root); }, {"setid.mat", "empty"});
}

// A .mat file's declared dimensions are checked against its bytes before libmatio reads it
// (libmatio allocates by the declared size first: a 2 KB file once made it ask for 120 GB).
BOOST_AUTO_TEST_CASE(damaged_mat_files_are_refused_before_matio_reads_them) {
  namespace mat = hd::mat;
  const auto root = halsal::test::scratch_dir("mat-damaged");
  const auto good = root / "labels.mat";
  {
    MatWriter w(good);
    w.numbers("labels", {1, 2, 3, 4});
  }
  BOOST_TEST(mat::read_numbers(good, "labels").size() == 4u);
  std::string bytes;
  {
    std::ifstream in(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto write = [&](const std::string& name, const std::string& b) {
    std::ofstream(root / name, std::ios::binary) << b;
    return root / name;
  };
  // Header (128) + matrix tag (8) + array flags (16) + dimensions tag (8): the second dimension.
  std::string huge = bytes;
  const int32_t columns = 0x7fffffff;
  std::memcpy(&huge[128 + 8 + 16 + 8 + 4], &columns, 4);
  expect_error([&] { mat::read_numbers(write("huge.mat", huge), "labels"); },
               {"huge.mat", "damaged .mat file", "2147483647 elements"});
  expect_error([&] { mat::read_numbers(write("cut.mat", bytes.substr(0, 150)), "labels"); },
               {"cut.mat", "damaged .mat file"});
  expect_error([&] { mat::read_numbers(write("short.mat", bytes.substr(0, 100)), "labels"); },
               {"short.mat", "too short"});
  std::string v73 = bytes;
  v73[124] = 0;
  v73[125] = 2;
  expect_error([&] { mat::read_numbers(write("v73.mat", v73), "labels"); }, {"v73.mat", "v7.3"});
  fs::create_directories(root / "folder.mat");
  expect_error([&] { mat::read_numbers(root / "folder.mat", "labels"); }, {"folder.mat", "is a folder"});
}

BOOST_AUTO_TEST_CASE(cub_official_layout_with_boxes) {
  const auto root = halsal::test::scratch_dir("layout-cub") / "CUB_200_2011";
  std::string images, labels, split, boxes;
  for (int i = 1; i <= 12; ++i) {
    const int c = 1 + (i - 1) % 2;
    const std::string rel = (c == 1 ? "001.Black_footed_Albatross/" : "002.Laysan_Albatross/") + std::string("b") +
                            std::to_string(i) + ".jpg";
    image(root / "images" / rel, i, 30, 40);
    images += std::to_string(i) + " " + rel + "\n";
    labels += std::to_string(i) + " " + std::to_string(c) + "\n";
    split += std::to_string(i) + " " + (i <= 8 ? "1" : "0") + "\n";
    boxes += std::to_string(i) + " 4.0 6.0 20.0 10.0\n";
  }
  text(root / "classes.txt", "1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n");
  text(root / "images.txt", images);
  text(root / "image_class_labels.txt", labels);
  text(root / "train_test_split.txt", split);
  text(root / "bounding_boxes.txt", boxes);
  auto d = hd::open(root.parent_path());  // the folder above CUB_200_2011 works too
  BOOST_TEST(d.layout == "cub200");
  BOOST_TEST(d.class_names == (std::vector<std::string>{"Black footed Albatross", "Laysan Albatross"}),
             boost::test_tools::per_element());
  BOOST_TEST(d.size() == 12u);
  BOOST_TEST(d.samples[2].label == 0);
  BOOST_TEST(d.samples[3].label == 1);
  BOOST_TEST((d.samples[9].part == hd::Part::test));
  BOOST_TEST(hd::load_sample(d, 0).image.width == 40);
  hd::OpenOptions crop;
  crop.crop_to_box = true;
  const auto dc = hd::open(root, crop);
  const auto ls = hd::load_sample(dc, 0);
  BOOST_TEST(ls.image.width == 20);
  BOOST_TEST(ls.image.height == 10);
  // K: val drawn from the official training images (CUB has no official val): 4 train - ... per class.
  const auto K = hd::kshot(d, hd::kOfficial, 0, hd::SplitOptions{5, 2});
  BOOST_TEST(K.val.size() == 4u);
  BOOST_TEST(K.train.size() == 4u);
  BOOST_TEST(K.test.size() == 4u);
  // Missing and extra rows.
  text(root / "image_class_labels.txt", labels.substr(0, labels.rfind("12 ")));
  expect_error([&] { hd::open(root); }, {"image_class_labels.txt", "image id 12", "missing"});
  text(root / "image_class_labels.txt", labels + "13 1\n");
  expect_error([&] { hd::open(root); }, {"image_class_labels.txt", "line 13", "extra row"});
  text(root / "image_class_labels.txt", labels);
  text(root / "train_test_split.txt", split + "5 1\n");
  expect_error([&] { hd::open(root); }, {"train_test_split.txt", "appears twice"});
  fs::remove(root / "train_test_split.txt");
  expect_error([&] { hd::open(root); }, {"train_test_split.txt", "missing"});
}

BOOST_AUTO_TEST_CASE(stanford_cars_official_layout) {
  const auto root = halsal::test::scratch_dir("layout-cars");
  std::vector<MatWriter::Car> train, test;
  for (int i = 1; i <= 6; ++i) {
    const std::string f = "0000" + std::to_string(i) + ".jpg";
    image(root / "cars_train" / f, i, 40, 60);
    image(root / "cars_test" / f, 100 + i, 40, 60);
    train.push_back({11, 5, 40, 24, static_cast<uint8_t>(1 + i % 3), f});
    test.push_back({1, 1, 60, 40, static_cast<uint8_t>(1 + (i + 1) % 3), f});
  }
  fs::create_directories(root / "devkit");
  {
    MatWriter w(root / "devkit/cars_meta.mat");
    w.strings("class_names", {"AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"});
  }
  {
    MatWriter w(root / "devkit/cars_train_annos.mat");
    w.cars(train);
  }
  expect_error([&] { hd::open(root); }, {"cars_test_annos_withlabels.mat", "missing"});
  {
    MatWriter w(root / "cars_test_annos_withlabels.mat");
    w.cars(test);
  }
  auto d = hd::open(root);
  BOOST_TEST(d.layout == "cars196");
  BOOST_TEST(d.class_names[1] == "Acura RL Sedan 2012");
  BOOST_TEST(d.size() == 12u);
  BOOST_TEST(d.samples[0].label == 1);  // image 1: class 1 + 1 % 3 = 2 -> index 1
  BOOST_TEST((d.samples[0].part == hd::Part::train));
  BOOST_TEST((d.samples[6].part == hd::Part::test));
  BOOST_TEST(d.samples[6].label == 2);
  hd::OpenOptions crop;
  crop.crop_to_box = true;
  const auto ls = hd::load_sample(hd::open(root, crop), 0);
  BOOST_TEST(ls.image.width == 30);   // x 11..40 inclusive
  BOOST_TEST(ls.image.height == 20);  // y 5..24 inclusive
  BOOST_TEST(std::abs(int(ls.image.at(0, 0, 0)) - 1) <= 3);  // JPEG: about the value written
  // A class outside cars_meta.mat, and annotations without a class field.
  {
    MatWriter w(root / "cars_test_annos_withlabels.mat");
    auto bad = test;
    bad[2].cls = 9;
    w.cars(bad);
  }
  expect_error([&] { hd::open(root); }, {"cars_test_annos_withlabels.mat", "00003.jpg", "class 9"});
  {
    MatWriter w(root / "cars_test_annos_withlabels.mat");
    w.cars(test, false);
  }
  expect_error([&] { hd::open(root); }, {"cars_test_annos_withlabels.mat", "no field 'class'"});
}

// ---- the real data in ../shared -------------------------------------------------------------

BOOST_AUTO_TEST_CASE(shared_flowers102, *boost::unit_test::precondition(halsal::test::SharedPresent{"data/flowers102"})) {
  const auto d = hd::open(halsal::test::shared_dir() / "data/flowers102");
  BOOST_TEST(d.layout == "folders");
  BOOST_TEST(d.num_classes() == 102);
  BOOST_TEST(d.size() == 4080u);
  BOOST_TEST(d.class_counts() == std::vector<size_t>(102, 40), boost::test_tools::per_element());
  BOOST_TEST(d.class_names[0] == "pink primrose");
  // Folder NNN = official label NNN = index NNN - 1.
  for (size_t i = 0; i < d.size(); i += 97) {
    const auto folder = d.samples[i].file.parent_path().filename().string();
    BOOST_TEST(std::stoi(folder) - 1 == d.samples[i].label);
  }
  auto data = std::make_shared<const hd::Dataset>(d);
  const auto s1 = hd::kshot(data, 1, 0), s30 = hd::kshot(data, 30, 0);
  BOOST_TEST(s1.train.size() == 102u);
  BOOST_TEST(s30.train.size() == 3060u);
  BOOST_TEST(s30.val.size() == 510u);
  BOOST_TEST(s30.test.size() == 510u);
  BOOST_TEST(hd::kshot(data, hd::kOfficial, 0).train.size() == 3060u);
  std::set<size_t> prev;
  for (int k : hd::paper_ks()) {
    const auto s = hd::kshot(data, k, 0);
    std::set<size_t> cur(s.train.indices.begin(), s.train.indices.end());
    BOOST_TEST(std::includes(cur.begin(), cur.end(), prev.begin(), prev.end()));
    BOOST_TEST(s.test.indices == s1.test.indices, boost::test_tools::per_element());
    prev = cur;
  }
  BOOST_TEST(hd::kshot(data, 5, 0).train.indices == hd::kshot(data, 5, 0).train.indices, boost::test_tools::per_element());
  const auto img = hd::load_sample(d, 0).image;
  BOOST_TEST(std::min(img.height, img.width) == 256);
}

BOOST_AUTO_TEST_CASE(shared_imagenet_sorted_wnids,
                     *boost::unit_test::precondition(halsal::test::SharedPresent{"data/imagenet_samples"})) {
  const auto d = hd::open(halsal::test::shared_dir() / "data/imagenet_samples");
  BOOST_TEST(d.layout == "imagenet");
  BOOST_TEST(d.num_classes() == 1000);
  BOOST_TEST(d.size() == 1000u);
  BOOST_TEST(d.class_names[0] == "tench");
  BOOST_TEST(d.class_names[999] == "toilet tissue");
  std::vector<std::string> wnids;
  for (const auto& s : d.samples) wnids.push_back(s.file.parent_path().filename().string());
  for (size_t i = 0; i < d.size(); ++i) {
    // The label is the wnid's position in sorted order.
    const auto pos = std::lower_bound(wnids.begin(), wnids.end(), wnids[i]) - wnids.begin();
    BOOST_TEST(d.samples[i].label == pos);
  }
  BOOST_TEST(std::is_sorted(wnids.begin(), wnids.end()));
  if (fs::exists(halsal::test::shared_dir() / "data/imagenet_extra")) {
    const auto e = hd::open(halsal::test::shared_dir() / "data/imagenet_extra");
    BOOST_TEST(e.num_classes() == 1000);
    BOOST_TEST(e.size() == 1345u);
    for (const auto& s : e.samples)
      if (s.file.parent_path().filename() == "n01443537") BOOST_TEST(s.label == 1);  // goldfish
  }
}

BOOST_AUTO_TEST_CASE(shared_cub200_subset100,
                     *boost::unit_test::precondition(halsal::test::SharedPresent{"data/cub200_subset100"})) {
  const auto d = hd::open(halsal::test::shared_dir() / "data/cub200_subset100");
  BOOST_TEST(d.num_classes() == 100);
  BOOST_TEST(d.size() >= 1000u);
}

BOOST_AUTO_TEST_SUITE_END()
