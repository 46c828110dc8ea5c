# Checks halsal's include layering against the table in docs/architecture.md ("## Layers"):
# a header in include/halsal/<folder>/ may include halsal headers only from its own folder and
# from folders of a lower layer number; programs (examples/, bench/) must not use detail::.
#
#   cmake -DHALSAL_ROOT=<source tree> -P cmake/CheckLayers.cmake
#
# Exits with an error that lists every violation (file, include, both layers).
cmake_minimum_required(VERSION 3.16)
if(NOT HALSAL_ROOT)
  get_filename_component(HALSAL_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
endif()
set(doc "${HALSAL_ROOT}/docs/architecture.md")
if(NOT EXISTS "${doc}")
  message(FATAL_ERROR "layers: ${doc} is missing")
endif()

# The table rows: | N | `folder/` | ...
file(STRINGS "${doc}" rows REGEX "^\\| *[0-9]+ *\\| *`[a-z_]+/`")
set(folders "")
foreach(row IN LISTS rows)
  string(REGEX REPLACE "^\\| *([0-9]+) *\\| *`([a-z_]+)/`.*" "\\1;\\2" parsed "${row}")
  list(GET parsed 0 rank)
  list(GET parsed 1 folder)
  set(rank_${folder} ${rank})
  list(APPEND folders ${folder})
endforeach()
if(NOT folders)
  message(FATAL_ERROR "layers: ${doc} has no layer table (rows like | 1 | `core/` | ... |)")
endif()

set(problems "")
file(GLOB_RECURSE headers RELATIVE "${HALSAL_ROOT}/include/halsal" "${HALSAL_ROOT}/include/halsal/*.hpp")
foreach(header IN LISTS headers)
  if(NOT header MATCHES "/")
    continue()  # halsal.hpp (the whole public API) and version.hpp
  endif()
  string(REGEX REPLACE "/.*" "" folder "${header}")
  if(NOT DEFINED rank_${folder})
    list(APPEND problems "include/halsal/${folder}/ is not in the layer table of docs/architecture.md")
    continue()
  endif()
  file(STRINGS "${HALSAL_ROOT}/include/halsal/${header}" includes REGEX "^#include [<\"]halsal/")
  foreach(line IN LISTS includes)
    string(REGEX REPLACE "^#include [<\"]halsal/([^>\"]*)[>\"].*" "\\1" target "${line}")
    if(NOT target MATCHES "/")
      if(NOT target STREQUAL "version.hpp")
        list(APPEND problems "include/halsal/${header} includes halsal/${target}, the whole public API")
      endif()
      continue()
    endif()
    string(REGEX REPLACE "/.*" "" to "${target}")
    if(NOT DEFINED rank_${to})
      list(APPEND problems "include/halsal/${header} includes halsal/${target}: ${to}/ is not in the layer table")
    elseif(rank_${to} GREATER rank_${folder})
      list(APPEND problems
        "include/halsal/${header} includes halsal/${target}: ${folder}/ is layer ${rank_${folder}}, ${to}/ is layer ${rank_${to}} (includes must go down)")
    endif()
  endforeach()
endforeach()

file(GLOB programs "${HALSAL_ROOT}/examples/*.cpp" "${HALSAL_ROOT}/examples/*.hpp" "${HALSAL_ROOT}/bench/*.cpp"
     "${HALSAL_ROOT}/bench/*.hpp")
foreach(program IN LISTS programs)
  file(STRINGS "${program}" uses REGEX "detail::")
  if(uses)
    file(RELATIVE_PATH rel "${HALSAL_ROOT}" "${program}")
    list(APPEND problems "${rel} uses detail:: (programs use only the public API)")
  endif()
endforeach()

list(LENGTH headers n_headers)
list(LENGTH folders n_folders)
if(problems)
  list(LENGTH problems n)
  string(REPLACE ";" "\n  " text "${problems}")
  message(FATAL_ERROR "layers: ${n} problem(s):\n  ${text}")
endif()
message(STATUS "layers: ok (${n_headers} headers in ${n_folders} layers, programs use no detail::)")
