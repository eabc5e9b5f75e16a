# The gradient all-reduce overlapped with backward (issue 13 part 6).
# The tape's hook: a gradient is final when the hook says so, fused and unrolled layers.
set(LOOM_TEST_LIBS loom_layers)
loom_test(test_overlap_tape)
if(LOOM_MPI)
  # Overlap on and off train the same model (the same bits on 2 ranks, to rounding on 3),
  # the same bits run after run, and buckets really start during backward.
  add_executable(test_overlap_dist test_overlap_dist.c)
  target_link_libraries(test_overlap_dist PRIVATE loom_dist MPI::MPI_C)
  foreach(np 2 3)
    add_test(NAME overlap_dist_${np}_ranks COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe
      ${MPIEXEC_NUMPROC_FLAG} ${np} $<TARGET_FILE:test_overlap_dist>)
    set_tests_properties(overlap_dist_${np}_ranks PROPERTIES TIMEOUT 120 ENVIRONMENT
      "OMPI_MCA_rmaps_base_oversubscribe=1;OMP_NUM_THREADS=1;ASAN_OPTIONS=detect_leaks=0")
  endforeach()
  # The example flag: char_lm on 2 ranks, --overlap 1 and 0, writes the same checkpoint bits.
  add_test(NAME overlap_char_lm_flag COMMAND sh -c
    "rm -rf ${WORK}/overlap && mkdir -p ${WORK}/overlap && cd ${WORK}/overlap && for o in 1 0; do timeout 120 ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe -np 2 $<TARGET_FILE:char_lm> --data ${TINYTXT} --hidden 16 --layers 2 --batch 4 --seq 12 --steps 4 --sample 0 --threads 1 --overlap $o --checkpoint o$o.h5 >/dev/null 2>&1 || exit 1; done; h5diff o1.h5 o0.h5 /model /model && h5diff o1.h5 o0.h5 /optimizer /optimizer")
  set_tests_properties(overlap_char_lm_flag PROPERTIES TIMEOUT 300 ENVIRONMENT
    "OMPI_MCA_rmaps_base_oversubscribe=1;ASAN_OPTIONS=detect_leaks=0")
endif()
add_test(NAME overlap_flag_checked COMMAND ${EXPECT} 2 "--overlap must be 0 or 1"
  $<TARGET_FILE:char_lm> --data ${TINYTXT} --steps 1 --overlap 2)
