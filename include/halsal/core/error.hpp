// halsal's one exception type, and the helper that names the file a problem comes from.
#pragma once
#include <filesystem>
#include <stdexcept>
#include <string>

namespace halsal {

/// Every error halsal reports: a sentence that says what is wrong (and with which file).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An Error about a file: "<path>: <what is wrong>".
inline Error file_error(const std::filesystem::path& file, const std::string& what) {
  return Error(file.string() + ": " + what);
}

}  // namespace halsal
