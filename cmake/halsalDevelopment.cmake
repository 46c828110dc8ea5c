# Settings for halsal's own tests, examples and benchmarks (never exported to users).
set(CMAKE_CXX_STANDARD ${HALSAL_CXX_STANDARD})
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)

find_program(HALSAL_CCACHE ccache)
if(HALSAL_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  # pch_defines/time_macros: lets ccache cache translation units that use precompiled headers.
  # BASEDIR: paths inside the checkout hash relative, so clean clones elsewhere (CI) hit the cache.
  set(CMAKE_CXX_COMPILER_LAUNCHER "${CMAKE_COMMAND};-E;env;CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime;CCACHE_BASEDIR=${PROJECT_SOURCE_DIR};${HALSAL_CCACHE}")
endif()

add_library(halsal_dev_options INTERFACE)
target_compile_options(halsal_dev_options INTERFACE -Wall -Wextra $<$<BOOL:${HALSAL_WERROR}>:-Werror>)
if(HALSAL_SANITIZE)
  target_compile_options(halsal_dev_options INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer)
  target_link_options(halsal_dev_options INTERFACE -fsanitize=address,undefined)
endif()

# One precompiled <torch/torch.h> shared by all example programs: each saves ~20 s of parsing.
# (halsal/halsal.hpp in it was measured slower: a larger header to load in every TU, 1910 s of CPU
# for a clean build against 1842 s without.)
add_library(halsal_pch OBJECT "${PROJECT_SOURCE_DIR}/cmake/pch.cpp")
target_link_libraries(halsal_pch PRIVATE halsal::halsal halsal_dev_options)
target_precompile_headers(halsal_pch PRIVATE <torch/torch.h> <vector> <string> <memory> <iostream>)

# The programs' per-backbone work, one translation unit per backbone (halsal/models/instances.hpp):
# compiled once and linked by the programs and tests that include that header, instead of every
# such program compiling all seven backbones itself.
if(HALSAL_BUILD_EXAMPLES OR HALSAL_BUILD_TESTS)
  file(GLOB HALSAL_INSTANCE_SOURCES CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/examples/instances/*.cpp")
  add_library(halsal_instances STATIC ${HALSAL_INSTANCE_SOURCES})
  target_link_libraries(halsal_instances PUBLIC halsal::halsal PRIVATE halsal_dev_options)
  target_precompile_headers(halsal_instances REUSE_FROM halsal_pch)
endif()

# halsal_add_program(NAME SOURCES...): an executable over the library, with the shared PCH.
function(halsal_add_program name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE halsal::halsal halsal_dev_options)
  target_precompile_headers(${name} REUSE_FROM halsal_pch)
endfunction()
