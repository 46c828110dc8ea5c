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
