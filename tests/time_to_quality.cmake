# Time to quality (issue 13 part 7): bench/time_to_quality.py --check proves that its PyTorch twin is
# char_lm's twin on a small model: the same initial weights (held-out loss at step 0 to 1e-4),
# then the same windows, state carry, stream wrap (after 4 windows here), clipping (0.22 clips
# some of the steps) and Adam steps (training losses to 1e-5 relative, held-out losses to 1e-4).
# Skipped (77) where /usr/bin/python3 cannot import torch and h5py.
foreach(cell lstm gru)
  add_test(NAME time_to_quality_check_${cell} COMMAND sh -c
    "[ -x /usr/bin/python3 ] || exit 77; exec /usr/bin/python3 ${PROJECT_SOURCE_DIR}/bench/time_to_quality.py --check --char-lm $<TARGET_FILE:char_lm> --work ${WORK}/ttq_${cell} --data ${TINYTXT} --cell ${cell} --hidden 32 --embed 8 --layers 2 --batch 16 --seq 8 --clip 0.22 --steps 6 --threads 1")
  set_tests_properties(time_to_quality_check_${cell} PROPERTIES TIMEOUT 60 SKIP_RETURN_CODE 77)
endforeach()
