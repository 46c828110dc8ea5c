// Compile each backbone once: explicit instantiation of the work a program does per backbone.
//
// A program that picks its backbone at run time (with_backbone) instantiates the whole training
// and loading stack for every backbone in its own translation unit: seven backbones, many minutes
// and gigabytes per program. Including this header instead declares that work `extern` for every
// backbone, so the program's TU only calls it; one TU per backbone defines it:
//
//   // instances/resnet152.cpp — compiled once, linked into every program that needs it
//   #include <halsal/halsal.hpp>
//   #include <halsal/models/instances.hpp>
//   HALSAL_BACKBONE_INSTANCES(, ::halsal::ResNet<152>)
//
// What is instantiated for backbone B (Depth<4>, the backbone's default fusion point): the protocol
// (run_protocol), Step I (run_step_one), one cell (run_cell, behind train_and_save) and the model
// loader (load_model's networks of B). halsal's own programs and tests link such a library
// (examples/instances/, the CMake target halsal_instances). A program that does not include this
// header compiles what it uses itself, as with any header-only library.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "halsal/experiments/experiment.hpp"
#include "halsal/experiments/step_one.hpp"
#include "halsal/models/model_file.hpp"

/// Declares (PREFIX = extern) or defines (PREFIX empty) the explicit instantiations of the
/// protocol, Step I and one cell of backbone B fused at F with the paper's Depth<4> branch.
#define HALSAL_FUSION_INSTANCES(PREFIX, B, F)                                                              \
  PREFIX template ::halsal::eval::ResultsTable halsal::train::run_protocol<B, ::halsal::Depth<4>, F>(    \
      std::shared_ptr<const ::halsal::data::Dataset>, const ::halsal::train::ProtocolOptions&);            \
  PREFIX template ::halsal::train::StepOneReport halsal::train::run_step_one<B, ::halsal::Depth<4>, F>(  \
      std::shared_ptr<const ::halsal::data::Dataset>, const ::halsal::train::StepOneOptions&,              \
      const std::filesystem::path&);                                                                       \
  PREFIX template ::halsal::train::CellResult halsal::train::run_cell<B, ::halsal::Depth<4>, F>(          \
      const std::string&, std::shared_ptr<const ::halsal::data::Dataset>, int, std::uint64_t,              \
      const ::halsal::train::ExperimentOptions&);

/// HALSAL_FUSION_INSTANCES at B's default fusion point, plus the model loader of B.
#define HALSAL_BACKBONE_INSTANCES(PREFIX, B)                                                               \
  HALSAL_FUSION_INSTANCES(PREFIX, B, ::halsal::default_fusion_t<B>)                                        \
  PREFIX template ::halsal::train::LoadedModel halsal::train::detail::load_backbone_model<B>(            \
      const std::filesystem::path&, const ::halsal::train::ModelInfo&, const ::halsal::io::TensorDict&,    \
      const std::string&);

// Every backbone, and halsal_protocol's MobileNetV2 fused after stage 3 (--fusion-stage 3).
HALSAL_BACKBONE_INSTANCES(extern, ::halsal::AlexNet)
HALSAL_BACKBONE_INSTANCES(extern, ::halsal::ResNet<18>)
HALSAL_BACKBONE_INSTANCES(extern, ::halsal::ResNet<34>)
HALSAL_BACKBONE_INSTANCES(extern, ::halsal::ResNet<50>)
HALSAL_BACKBONE_INSTANCES(extern, ::halsal::ResNet<101>)
HALSAL_BACKBONE_INSTANCES(extern, ::halsal::ResNet<152>)
HALSAL_BACKBONE_INSTANCES(extern, ::halsal::MobileNetV2)
HALSAL_FUSION_INSTANCES(extern, ::halsal::MobileNetV2, ::halsal::AfterStage<3>)
