# Recomputation for long sequences (issue 12 part 2): bit-identical outputs and gradients
# against the plain path for every cell, fused and unrolled, one and two directions,
# dropout and variable lengths; gradcheck; the arena's bytes; misuse.
set(LOOM_TEST_LIBS loom_layers)
loom_test(test_recompute ${PROJECT_SOURCE_DIR}/examples/peephole.c)
target_include_directories(test_recompute PRIVATE ${PROJECT_SOURCE_DIR}/examples)
set_tests_properties(test_recompute PROPERTIES TIMEOUT 300)
# --recompute K (a shared example flag) trains to the same bits: checkpoints equal with and without.
add_test(NAME char_lm_recompute_same_bits COMMAND sh -c
  "mkdir -p ${WORK}/recompute && cd ${WORK}/recompute && for c in lstm gru; do for k in 0 5; do $<TARGET_FILE:char_lm> --data ${TINYTXT} --cell $c --hidden 16 --batch 4 --seq 12 --layers 2 --dropout 0.3 --steps 4 --sample 0 --threads 2 --recompute $k --checkpoint $c-k$k.h5 >/dev/null 2>&1 || exit 1; done; h5diff $c-k0.h5 $c-k5.h5 /model /model && h5diff $c-k0.h5 $c-k5.h5 /optimizer /optimizer || exit 1; done")
add_test(NAME error_recompute_negative COMMAND ${EXPECT} 2 "--recompute must be >= 0" $<TARGET_FILE:char_lm> --recompute -1)
