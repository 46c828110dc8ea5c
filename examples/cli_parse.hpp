// CLI11 parsing shared by every program: a wrong argument is reported as "<program>: <what>
// (see --help)" with exit status 1, as every other error is (CLI11's own codes, such as 106 or
// 109, would differ from program to program and from bad files).
#pragma once
#include <CLI/CLI.hpp>
#include <iostream>

namespace halsal::cli {

/// Parses argv: returns -1 to go on, else the exit status (0 after --help, 1 for a wrong argument,
/// which is printed as "<program>: <what> (see --help)").
inline int parse(CLI::App& app, int argc, char** argv, const char* program) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << program << ": " << e.what() << " (see --help)\n";
    return 1;
  }
  return -1;
}

}  // namespace halsal::cli
