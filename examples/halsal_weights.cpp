// halsal_weights: look inside and convert weight files without Python.
//   halsal_weights ls FILE          every tensor's name, dtype, shape and float64 sum
//   halsal_weights convert IN OUT   .pth (zip or legacy) <-> .safetensors, by OUT's extension
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <string>

#include "halsal/io/io.hpp"

#include "cli_parse.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "Inspect and convert weight files: PyTorch .pth (zip and legacy containers) and "
      ".safetensors"};
  app.require_subcommand(1);

  std::string ls_file;
  auto* ls = app.add_subcommand("ls", "List every tensor: name, dtype, shape, sum (float64)");
  ls->add_option("FILE", ls_file, "a .pth or .safetensors file (recognised by content)")
      ->required();

  std::string in, out;
  auto* convert = app.add_subcommand(
      "convert",
      "Convert between .pth and .safetensors (the output format follows OUT's extension)");
  convert->add_option("IN", in, "a .pth or .safetensors file")->required();
  convert->add_option("OUT", out, "the file to write: .safetensors, or .pth/.pt (torch.save's zip)")
      ->required();

  if (const int rc = halsal::cli::parse(app, argc, argv, "halsal_weights"); rc >= 0) return rc;
  try {
    if (*ls) {
      const auto file = halsal::io::read_weights_file(ls_file);
      std::cout << "# " << ls_file << ": " << halsal::io::format_name(file.format) << ", "
                << file.tensors.size() << " tensors\n";
      for (const auto& [k, v] : file.metadata)
        std::cout << "# metadata " << k << " = " << v << "\n";
      for (const auto& item : file.tensors) {
        const auto& t = item.value();
        char sum[64];
        std::snprintf(sum, sizeof sum, "%.17g", halsal::io::tensor_sum(t));
        std::cout << item.key() << "\t" << halsal::io::dtype_name(t.scalar_type()) << "\t"
                  << halsal::io::shape_string(t.sizes()) << "\t" << sum << "\n";
      }
    } else if (*convert) {
      const auto file = halsal::io::read_weights_file(in);
      halsal::io::write_weights(out, file.tensors, file.metadata);
      std::cout << "wrote " << file.tensors.size() << " tensors to " << out << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "halsal_weights: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
