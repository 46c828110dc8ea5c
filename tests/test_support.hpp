// Helpers shared by halsal's unit tests: where the fixtures are, and ../shared when present.
#pragma once
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <string>

#include "halsal/core/error.hpp"
#include "halsal_test_config.hpp"

namespace halsal::test {

/// Folder of the committed fixtures (tests/data).
inline std::filesystem::path data_dir() { return HALSAL_TEST_DATA_DIR; }

/// ../shared beside the checkout, or $HALSAL_SHARED; empty when absent (a fresh clone has none).
inline std::filesystem::path shared_dir() {
  const char* env = std::getenv("HALSAL_SHARED");
  std::filesystem::path p = env ? env : HALSAL_DEFAULT_SHARED_DIR;
  std::error_code ec;
  return std::filesystem::is_directory(p, ec) ? std::filesystem::canonical(p) : std::filesystem::path{};
}

/// A writable scratch folder for one test, emptied first.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("halsal-test-" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

/// Runs f, expecting a halsal::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const halsal::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) BOOST_TEST(msg.find(p) != std::string::npos, "'" << msg << "' should contain '" << p << "'");
    return;
  }
  BOOST_ERROR("expected a halsal::Error containing " << *parts.begin());
}

/// The message of the halsal::Error that f throws, or "no error" when it throws none.
template <class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const halsal::Error& e) {
    return e.what();
  }
  return "no error";
}

/// Boost.Test precondition: skips the test cleanly when ../shared/<sub> is absent.
struct SharedPresent {
  std::string sub;
  boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
    auto root = shared_dir();
    boost::test_tools::assertion_result r(!root.empty() && std::filesystem::exists(root / sub));
    if (!r) r.message() << "../shared/" << sub << " is absent: skipped";
    return r;
  }
};

}  // namespace halsal::test
