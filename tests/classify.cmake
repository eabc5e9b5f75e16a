# classify (issue 11 parts 2 and 3): the word lists, split, naive Bayes and report by hand;
# the example on tiny made-up lists (three "languages" told apart by their endings) and on
# Debian's own; exact resume with a bidirectional two-layer stack; --predict and --generate
# from a checkpoint alone; bad input; 1, 2 and 3 ranks.
loom_test(test_classify ${PROJECT_SOURCE_DIR}/examples/lang_words.c)
target_include_directories(test_classify PRIVATE ${PROJECT_SOURCE_DIR}/examples)

set(CLS_DICT ${CMAKE_CURRENT_BINARY_DIR}/dict)
set(CLS_EMPTY ${CMAKE_CURRENT_BINARY_DIR}/dict_empty)
set(letters abcdefghijklmnopqrstuvwxyz)
foreach(pair "american-english;ing" "french;eaux" "ngerman;schen")
  list(GET pair 0 file)
  list(GET pair 1 ending)
  set(words "")
  foreach(i RANGE 199)
    math(EXPR a "${i} % 26")
    math(EXPR b "(${i} / 26 * 7 + ${i}) % 26")
    string(SUBSTRING ${letters} ${a} 1 x)
    string(SUBSTRING ${letters} ${b} 1 y)
    string(APPEND words "${x}${y}${ending}\n")
  endforeach()
  file(WRITE ${CLS_DICT}/${file} "${words}")
endforeach()
file(WRITE ${CLS_EMPTY}/american-english "")
file(COPY ${CLS_DICT}/french DESTINATION ${CLS_EMPTY})
set(CLS_TINY --data ${CLS_DICT} --langs en,fr,de --batch 6 --hidden 8 --embed 4 --per-class 100)
string(REPLACE ";" " " CLS_TINY_S "${CLS_TINY}") # for inside sh -c strings
set(CLS_OUT ${CMAKE_CURRENT_BINARY_DIR}/classify_out.txt)

add_test(NAME example_classify COMMAND sh -c
  "$<TARGET_FILE:classify> ${CLS_TINY_S} --steps 6 --log-every 1 --eval-every 3 --count 3 > ${CLS_OUT} 2>&1; f=${CLS_OUT}; grep -Eq '^step 3: validation accuracy [0-9.]+% over [0-9]+ words; generator [0-9.]+ bits/char' $f && grep -Eq '^  accuracy  character-bigram naive Bayes +[0-9.]+%' $f && grep -Eq '^  accuracy  majority class \\(English\\) +33.33%' $f && grep -Eq '^  accuracy  lstm x1, hidden 8 +[0-9.]+%' $f && grep -Eq '^  French +[0-9.]+% +[0-9.]+% +[0-9]+$' $f && grep -Eq '^  confusion' $f && grep -Eq '^  German +[0-9]+ of 3 classified German' $f && grep -Eq '^agreement over all languages: [0-9.]+% \\(chance: 33.3%\\)' $f || { cat $f; exit 1; }")
add_test(NAME example_classify_debian_lists COMMAND sh -c
  "$<TARGET_FILE:classify> --steps 2 --per-class 40 --batch 8 --hidden 8 --embed 4 --count 2 --bidirectional --threads 1 > ${CLS_OUT}.debian 2>&1; f=${CLS_OUT}.debian; grep -Eq '^Swedish .*/usr/share/dict/swedish \\(Latin-1\\)$' $f && grep -Eq '^test: [0-9]+ words, 8 languages x [0-9]+$' $f && grep -Eq '^  accuracy  bidirectional lstm x1, hidden 8' $f || { cat $f; exit 1; }")
add_test(NAME resume_classify COMMAND ${RESUME} ${WORK}/classify $<TARGET_FILE:classify> 6 3
  ${CLS_TINY} --bidirectional --layers 2 --dropout 0.2 --count 2)
add_test(NAME classify_predict_and_generate_from_checkpoint COMMAND sh -c
  "cd ${WORK}/classify && $<TARGET_FILE:classify> --resume straight.h5 --predict abing Xyeaux > p.txt && [ $(grep -Ec '^[a-zA-Z]+ +(English|French|German) +0\\.[0-9]{3}  (English|French|German) +0\\.[0-9]{3}  (English|French|German) +0\\.[0-9]{3}$' p.txt) = 2 ] && $<TARGET_FILE:classify> --resume straight.h5 --generate French --count 4 | grep -Eq '^  French +[0-9] of 4 classified French \\([0-9]+%\\): [a-z]+ [a-z]+ [a-z]+ [a-z]+$' || { cat p.txt; exit 1; }")
add_test(NAME classify_predict_letters_outside_alphabet COMMAND ${EXPECT} 0
  "--predict 'ab.*ing': 1 character \\('.*'\\) not in the model's alphabet of [0-9]+, read as unknown"
  $<TARGET_FILE:classify> --resume ${WORK}/classify/straight.h5 --predict "abéing")
add_test(NAME error_classify_predict_no_known_letter COMMAND ${EXPECT} 2
  "--predict '123': none of its characters is among the [0-9]+ letters the model was trained on"
  $<TARGET_FILE:classify> --resume ${WORK}/classify/straight.h5 --predict 123)
add_test(NAME error_classify_generate_language_not_in_model COMMAND ${EXPECT} 2
  "--generate sv: not a language of this model \\(the model knows en,fr,de\\)"
  $<TARGET_FILE:classify> --resume ${WORK}/classify/straight.h5 --generate sv)
add_test(NAME error_classify_generate_unknown_language COMMAND ${EXPECT} 2
  "--generate klingon: unknown language"
  $<TARGET_FILE:classify> --resume ${WORK}/classify/straight.h5 --generate klingon)
add_test(NAME error_classify_langs_conflict COMMAND ${EXPECT} 2
  "--langs en,fr conflicts with checkpoint .*straight.h5, which has langs en,fr,de"
  $<TARGET_FILE:classify> --resume ${WORK}/classify/straight.h5 --langs en,fr --data ${CLS_DICT})
set_tests_properties(classify_predict_and_generate_from_checkpoint classify_predict_letters_outside_alphabet
  error_classify_predict_no_known_letter error_classify_generate_language_not_in_model
  error_classify_generate_unknown_language error_classify_langs_conflict PROPERTIES DEPENDS resume_classify)
add_test(NAME error_classify_unknown_language COMMAND ${EXPECT} 2 "--langs: unknown language 'xx'"
  $<TARGET_FILE:classify> --data ${CLS_DICT} --langs en,xx)
add_test(NAME error_classify_empty_list COMMAND ${EXPECT} 1
  "--data .*/dict_empty/american-english \\(the English word list\\): no words in it \\(0 lines"
  $<TARGET_FILE:classify> --data ${CLS_EMPTY} --langs en,fr --steps 1)
add_test(NAME error_classify_missing_list COMMAND ${EXPECT} 1
  "swedish \\(the Swedish word list\\): No such file or directory; install it with: apt-get install wswedish"
  $<TARGET_FILE:classify> --data ${CLS_DICT} --langs en,sv --steps 1)
add_test(NAME error_classify_predict_without_resume COMMAND ${EXPECT} 2 "--predict and --generate need --resume"
  $<TARGET_FILE:classify> --predict haus)
add_test(NAME error_classify_predict_no_words COMMAND ${EXPECT} 2 "--predict needs one or more words"
  $<TARGET_FILE:classify> --resume x.h5 --predict --count 3)
if(LOOM_MPI)
  add_test(NAME dist_classify COMMAND ${DIST} ${WORK}/dist_classify ${MPIEXEC_EXECUTABLE} $<TARGET_FILE:classify> 2e-5 10 4
    ${CLS_TINY} --layers 2 --dropout 0.2 --count 0 --eval-every 5)
  set_tests_properties(dist_classify PROPERTIES TIMEOUT 300 ENVIRONMENT
    "OMPI_MCA_rmaps_base_oversubscribe=1;ASAN_OPTIONS=detect_leaks=0")
endif()
