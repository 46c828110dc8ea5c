include(CMakePackageConfigHelpers)
set(HALSAL_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/halsal")

install(TARGETS halsal EXPORT halsalTargets)
install(DIRECTORY include/halsal DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT halsalTargets NAMESPACE halsal:: DESTINATION "${HALSAL_CMAKE_DIR}")
configure_package_config_file(cmake/halsalConfig.cmake.in "${PROJECT_BINARY_DIR}/halsalConfig.cmake"
  INSTALL_DESTINATION "${HALSAL_CMAKE_DIR}")
# Header-only, but LibTorch's ABI ties a build to one compiler family: SameMajorVersion is enough.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/halsalConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/halsalConfig.cmake" "${PROJECT_BINARY_DIR}/halsalConfigVersion.cmake"
  cmake/halsalDependencies.cmake DESTINATION "${HALSAL_CMAKE_DIR}")

# Where this build found LibTorch (and, for a CUDA-enabled wheel, the CUDA toolkit), so that a
# consumer's find_package(halsal) finds the same LibTorch with nothing but CMAKE_PREFIX_PATH.
# Hints only: a consumer's own Torch_DIR (or a torch target it already has) turns them all off,
# and a consumer's own setting of any one of them wins over that one.
set(HALSAL_TORCH_HINTS "")
foreach(var IN ITEMS Torch_DIR Caffe2_DIR TORCH_LIBRARY c10_LIBRARY CUDA_TOOLKIT_ROOT_DIR CUDAToolkit_ROOT
                     CMAKE_CUDA_COMPILER TORCH_CUDA_ARCH_LIST)
  if(${var})
    string(APPEND HALSAL_TORCH_HINTS "  _halsal_hint(${var} \"${${var}}\")\n")
  endif()
endforeach()
file(CONFIGURE OUTPUT "${PROJECT_BINARY_DIR}/halsalTorchHints.cmake" @ONLY CONTENT [=[
# Written by halsal's build: the LibTorch it was built with. Each is only a default.
macro(_halsal_hint var value)
  if(NOT DEFINED ${var} AND (EXISTS "${value}" OR "${var}" STREQUAL "TORCH_CUDA_ARCH_LIST"))
    set(${var} "${value}" CACHE STRING "halsal: where the LibTorch halsal was built with lives")
  endif()
endmacro()
if(NOT DEFINED Torch_DIR AND NOT TARGET torch)
@HALSAL_TORCH_HINTS@endif()
]=])
install(FILES "${PROJECT_BINARY_DIR}/halsalTorchHints.cmake" DESTINATION "${HALSAL_CMAKE_DIR}")
