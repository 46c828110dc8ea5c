# halsal's dependencies, found the same way for the source tree and for an installed halsal.
include(GNUInstallDirs)
include(CMakeFindDependencyMacro)

# GLOBAL so that a parent project that add_subdirectory()s halsal sees the torch targets too.
if(NOT TARGET torch)
  find_package(Torch REQUIRED GLOBAL)
endif()
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(nlohmann_json 3.2 REQUIRED)

find_path(HALSAL_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb REQUIRED)
find_library(HALSAL_STB_LIBRARY NAMES stb) # Debian's libstb compiles the implementations
find_path(HALSAL_MATIO_INCLUDE_DIR matio.h REQUIRED)
find_library(HALSAL_MATIO_LIBRARY NAMES matio REQUIRED)
find_package(ZLIB REQUIRED) # halsal checks compressed .mat variables before matio reads them

if(NOT TARGET halsal_stb)
  add_library(halsal_stb INTERFACE IMPORTED GLOBAL)
  target_include_directories(halsal_stb INTERFACE "${HALSAL_STB_INCLUDE_DIR}")
  if(HALSAL_STB_LIBRARY)
    target_link_libraries(halsal_stb INTERFACE "${HALSAL_STB_LIBRARY}")
  else()
    # No prebuilt library: halsal compiles stb's implementation into each program instead.
    target_compile_definitions(halsal_stb INTERFACE HALSAL_STB_IMPLEMENTATION)
  endif()
  add_library(halsal_matio INTERFACE IMPORTED GLOBAL)
  target_include_directories(halsal_matio INTERFACE "${HALSAL_MATIO_INCLUDE_DIR}")
  target_link_libraries(halsal_matio INTERFACE "${HALSAL_MATIO_LIBRARY}" ZLIB::ZLIB)
endif()

# PyTorch 2.x's headers refuse anything older than C++20; halsal itself is C++17.
set(HALSAL_CXX_STANDARD 17)
foreach(dir IN LISTS TORCH_INCLUDE_DIRS)
  if(EXISTS "${dir}/ATen/ATen.h")
    file(STRINGS "${dir}/ATen/ATen.h" _halsal_needs_cxx20 REGEX "C\\+\\+20 or later")
    if(_halsal_needs_cxx20)
      set(HALSAL_CXX_STANDARD 20)
    endif()
    break()
  endif()
endforeach()

function(halsal_link_dependencies target)
  target_link_libraries(${target} INTERFACE torch Eigen3::Eigen nlohmann_json::nlohmann_json halsal_stb halsal_matio)
  target_compile_features(${target} INTERFACE cxx_std_${HALSAL_CXX_STANDARD})
endfunction()
