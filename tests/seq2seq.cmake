# seq2seq (issue 12): the attention ops' gradchecks. (LOOM_TEST_LIBS is put back at the end,
# for the files included after this one.)
set(S2S_SAVED_TEST_LIBS ${LOOM_TEST_LIBS})
set(LOOM_TEST_LIBS loom_autograd)
loom_test(test_attention_ops)

# The dictionary reader, split, scoring and baseline by hand; the model's gradcheck; beam K=1 = greedy.
set(LOOM_TEST_LIBS loom_layers)
loom_test(test_g2p ${PROJECT_SOURCE_DIR}/examples/g2p_data.c ${PROJECT_SOURCE_DIR}/examples/g2p_baseline.c
  ${PROJECT_SOURCE_DIR}/examples/s2s_model.c)
target_include_directories(test_g2p PRIVATE ${PROJECT_SOURCE_DIR}/examples)

# The example on a hand-made dictionary in the plain CMUdict format (stress marks, a variant,
# a comment), 40 words: a few steps, the test's PER and WER greedy and with beams.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/g2p_tiny.dict ";;; a tiny dictionary for the tests
BAD  B AE1 D\nBED  B EH1 D\nBID  B IH1 D\nBUD  B AH1 D\nCAB  K AE1 B\nCAD  K AE1 D\nCAT  K AE1 T\nCOT  K AA1 T
CUT  K AH1 T\nDAB  D AE1 B\nDAD  D AE1 D\nDIG  D IH1 G\nDOG  D AO1 G\nDOT  D AA1 T\nFAT  F AE1 T\nFIG  F IH1 G
GAB  G AE1 B\nGOT  G AA1 T\nHAT  HH AE1 T\nHIT  HH IH1 T\nHOT  HH AA1 T\nHUT  HH AH1 T\nKID  K IH1 D\nLAB  L AE1 B
LID  L IH1 D\nLOT  L AA1 T\nMAT  M AE1 T\nMUD  M AH1 D\nNUT  N AH1 T\nPAT  P AE1 T\nPIT  P IH1 T\nPOT  P AA1 T
RAT  R AE1 T\nREAD  R IY1 D\nREAD(2)  R EH1 D\nSAT  S AE1 T\nSIT  S IH1 T\nTAB  T AE1 B\nTIP  T IH1 P\nTOP  T AA1 P
TUB  T AH1 B\n")
set(G2P_TINY --data ${CMAKE_CURRENT_BINARY_DIR}/g2p_tiny.dict --hidden 8 --embed 4 --batch 4 --log-every 1)
add_test(NAME example_seq2seq COMMAND ${EXPECT} 0 "^test PER [0-9.]+% WER [0-9.]+% \\(beam 3, 4 words, [0-9]+ cut at the length limit\\)"
  $<TARGET_FILE:seq2seq> ${G2P_TINY} --steps 4 --eval-every 2 --beam 3)
# Exact resume: a bidirectional 2-layer LSTM encoder and its decoder, with dropout; a GRU one-way.
add_test(NAME resume_seq2seq COMMAND ${RESUME} ${WORK}/seq2seq $<TARGET_FILE:seq2seq> 7 3
  ${G2P_TINY} --layers 2 --dropout 0.2 --eval-every 0)
add_test(NAME resume_seq2seq_gru COMMAND ${RESUME} ${WORK}/seq2seq_gru $<TARGET_FILE:seq2seq> 5 2
  ${G2P_TINY} --cell gru --bidir 0 --hidden 7 --eval-every 0 --label-smoothing 0.1)
# Label smoothing is part of the checkpoint: a resume without the flag trains on with it (the
# parameters equal a straight run's), and one with another value says which applies.
string(REPLACE ";" " " G2P_TINY_S "${G2P_TINY}")
add_test(NAME resume_seq2seq_label_smoothing COMMAND sh -c
  "rm -rf ${WORK}/s2s_ls && mkdir -p ${WORK}/s2s_ls && cd ${WORK}/s2s_ls && S=$<TARGET_FILE:seq2seq> && \
   $S ${G2P_TINY_S} --eval-every 0 --label-smoothing 0.3 --steps 4 --checkpoint straight.h5 > s.log 2>&1 && \
   $S ${G2P_TINY_S} --eval-every 0 --label-smoothing 0.3 --steps 4 --stop-at 2 --checkpoint part.h5 > p.log 2>&1 && \
   $S ${G2P_TINY_S} --eval-every 0 --resume part.h5 --steps 4 --checkpoint resumed.h5 > r.log 2>&1 && \
   h5diff straight.h5 resumed.h5 /model /model && \
   $S ${G2P_TINY_S} --eval-every 0 --resume part.h5 --steps 3 --label-smoothing 0 > o.log 2>&1 && \
   grep -q 'label-smoothing 0 applies; part.h5 was trained with 0.3' o.log || { cat s.log p.log r.log o.log; exit 1; }")
add_test(NAME error_seq2seq_bad_label_smoothing COMMAND ${EXPECT} 2 "--label-smoothing must be in \\[0, 1\\)"
  $<TARGET_FILE:seq2seq> ${G2P_TINY} --label-smoothing 1)
# --predict from the checkpoint alone: each word, then its beam's candidates with scores.
add_test(NAME seq2seq_predict_from_checkpoint COMMAND sh -c
  "cd ${WORK}/seq2seq && $<TARGET_FILE:seq2seq> --resume straight.h5 --predict Cab tub --beam 4 > p.txt && grep -q '^cab:' p.txt && grep -q '^tub:' p.txt && [ $(grep -Ec '^ +[1-4]\\. +-?[0-9]+\\.[0-9]{4} ' p.txt) -ge 2 ] && [ $(grep -Ec '^ +1\\. ' p.txt) = 2 ] || { cat p.txt; exit 1; }")
add_test(NAME error_seq2seq_predict_letter COMMAND ${EXPECT} 2 "--predict 'ca-b': letter '-' \\(byte 0x2d\\) is not in the model's alphabet \\(abcdefghiklmnoprstu\\)"
  $<TARGET_FILE:seq2seq> --resume ${WORK}/seq2seq/straight.h5 --predict ca-b)
add_test(NAME error_seq2seq_predict_no_words COMMAND ${EXPECT} 2 "--predict ' ,': no words in it"
  $<TARGET_FILE:seq2seq> --resume ${WORK}/seq2seq/straight.h5 --predict " ,")
set_tests_properties(seq2seq_predict_from_checkpoint error_seq2seq_predict_letter error_seq2seq_predict_no_words
  PROPERTIES DEPENDS resume_seq2seq)
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/g2p_empty.dict ";;; nothing but comments\n\n")
add_test(NAME error_seq2seq_missing_dict COMMAND ${EXPECT} 1 "--data /nonexistent/cmudict: No such file or directory \\(.*apt-get install festlex-cmu"
  $<TARGET_FILE:seq2seq> --data /nonexistent/cmudict --steps 1)
add_test(NAME error_seq2seq_empty_dict COMMAND ${EXPECT} 1 "g2p_empty.dict: no entries in it"
  $<TARGET_FILE:seq2seq> --data ${CMAKE_CURRENT_BINARY_DIR}/g2p_empty.dict --steps 1)
add_test(NAME error_seq2seq_bad_beam COMMAND ${EXPECT} 2 "--beam must be 1 to 64"
  $<TARGET_FILE:seq2seq> ${G2P_TINY} --beam 0)
add_test(NAME error_seq2seq_bad_len_norm COMMAND ${EXPECT} 2 "--len-norm must be 0 to 4"
  $<TARGET_FILE:seq2seq> ${G2P_TINY} --len-norm -1)
add_test(NAME error_seq2seq_odd_hidden COMMAND ${EXPECT} 2 "--hidden 7: a bidirectional encoder needs it even"
  $<TARGET_FILE:seq2seq> ${G2P_TINY} --hidden 7)
add_test(NAME error_seq2seq_predict_without_resume COMMAND ${EXPECT} 2 "--predict needs --resume"
  $<TARGET_FILE:seq2seq> --predict hello)
set_tests_properties(test_attention_ops test_g2p example_seq2seq resume_seq2seq resume_seq2seq_gru
  resume_seq2seq_label_smoothing error_seq2seq_bad_label_smoothing
  seq2seq_predict_from_checkpoint error_seq2seq_predict_letter error_seq2seq_predict_no_words error_seq2seq_missing_dict
  error_seq2seq_empty_dict error_seq2seq_bad_beam error_seq2seq_bad_len_norm error_seq2seq_odd_hidden error_seq2seq_predict_without_resume
  PROPERTIES TIMEOUT 120)
# The real dictionary (festlex-cmu), read, split and scored by the baseline, and two steps.
if(EXISTS /usr/share/festival/dicts/cmu/cmudict-0.4.out)
  add_test(NAME example_seq2seq_cmudict COMMAND sh -c
    "$<TARGET_FILE:seq2seq> --steps 2 --hidden 8 --embed 4 --batch 8 --eval-every 0 --test-limit 20 --threads 1 > ${WORK}/seq2seq_cmudict.txt 2>&1; f=${WORK}/seq2seq_cmudict.txt; grep -Eq 'cmudict-0.4.out: 105664 words \\(105832 pronunciations.*26 letters, 40 phones' $f && grep -Eq '^baseline .*test PER [0-9.]+% WER [0-9.]+% \\(20 words' $f && grep -Eq '^test PER [0-9.]+% WER [0-9.]+% \\(beam 5, 20 words' $f || { cat $f; exit 1; }")
  set_tests_properties(example_seq2seq_cmudict PROPERTIES TIMEOUT 300)
endif()
if(LOOM_MPI)
  add_test(NAME dist_seq2seq COMMAND ${DIST} ${WORK}/dist_seq2seq ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:seq2seq> 2e-5 10 4
    ${G2P_TINY} --batch 6 --layers 2 --dropout 0.2 --eval-every 5)
  set_tests_properties(dist_seq2seq PROPERTIES TIMEOUT 300 ENVIRONMENT "OMPI_MCA_rmaps_base_oversubscribe=1;ASAN_OPTIONS=detect_leaks=0")
endif()
set(LOOM_TEST_LIBS ${S2S_SAVED_TEST_LIBS})
