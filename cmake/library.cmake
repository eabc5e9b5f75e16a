# libloom: every module's objects in one shared library (with a SONAME) and one
# static archive, the public headers under include/loom/, and what find_package
# and pkg-config need to use them.
set(LOOM_MODULES loom_autograd loom_layers loom_io loom_dist)
set(LOOM_HEADERS
  ${PROJECT_SOURCE_DIR}/include/loom.h ${PROJECT_SOURCE_DIR}/autograd/loom_autograd.h
  ${PROJECT_SOURCE_DIR}/layers/loom_layers.h ${PROJECT_SOURCE_DIR}/io/loom_io.h ${PROJECT_SOURCE_DIR}/dist/loom_dist.h)

if(TARGET hdf5::hdf5)
  set(LOOM_HDF5 hdf5::hdf5)
else()
  set(LOOM_HDF5 ${HDF5_C_LIBRARIES})
endif()
set(LOOM_MPI_LIB $<$<BOOL:${LOOM_MPI}>:MPI::MPI_C>)

add_library(loom SHARED)
add_library(loom_static STATIC)
foreach(lib loom loom_static)
  foreach(m ${LOOM_MODULES})
    target_sources(${lib} PRIVATE $<TARGET_OBJECTS:${m}>)
  endforeach()
  target_include_directories(${lib} INTERFACE
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/autograd>
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/layers> $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/io>
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/dist> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/loom>)
endforeach()
set_target_properties(loom PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
                                      INSTALL_RPATH "${LOOM_BLAS_DIR}")
# The shared library carries its dependencies; users of the headers' inline helpers need libm.
target_link_libraries(loom PRIVATE ${LOOM_OPENBLAS} OpenMP::OpenMP_C ${LOOM_HDF5} ${LOOM_MPI_LIB} PUBLIC m)
# The archive leaves them to the program's link, with the RUNPATH that keeps the OpenMP OpenBLAS loaded.
set_target_properties(loom_static PROPERTIES OUTPUT_NAME loom EXPORT_NAME loom_static)
target_link_libraries(loom_static INTERFACE ${LOOM_OPENBLAS} OpenMP::OpenMP_C ${LOOM_HDF5} ${LOOM_MPI_LIB} m)
target_link_options(loom_static INTERFACE "LINKER:-rpath,${LOOM_BLAS_DIR}")
add_library(loom::loom ALIAS loom)
add_library(loom::loom_static ALIAS loom_static)

install(TARGETS loom loom_static EXPORT loomTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${LOOM_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/loom)
install(EXPORT loomTargets NAMESPACE loom:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/loom)
include(CMakePackageConfigHelpers)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/loomConfig.cmake.in ${PROJECT_BINARY_DIR}/loomConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/loom)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/loomConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/loomConfig.cmake ${PROJECT_BINARY_DIR}/loomConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/loom)

# pkg-config: Libs for the shared library; Libs.private and Requires.private add what the archive needs.
set(LOOM_PC_PRIVATE "-Wl,-rpath,${LOOM_BLAS_DIR} -L${LOOM_BLAS_DIR} -lopenblas ${OpenMP_C_FLAGS}")
set(LOOM_PC_REQUIRES_PRIVATE "hdf5")
if(LOOM_MPI)
  string(APPEND LOOM_PC_REQUIRES_PRIVATE " ompi-c")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/loom.pc.in ${PROJECT_BINARY_DIR}/loom.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/loom.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
