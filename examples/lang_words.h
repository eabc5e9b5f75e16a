/* classify's data side, apart from the model: Debian's word lists read into one
 * labelled set (a word in several lists dropped), a split fixed by each word
 * itself, class-balanced samples, the character alphabet, the character-bigram
 * naive Bayes baseline and the confusion-matrix report. Plain C, no loom:
 * tests/test_classify.c checks it directly. */
#ifndef LOOM_LANG_WORDS_H
#define LOOM_LANG_WORDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---------------------------------------------------------------- languages */

typedef struct lang_info {
    const char *code, *name, *file, *package; /* "fr", "French", "french", "wfrench" */
} lang_info;

#define LANG_MAX 8
extern const lang_info lang_table[LANG_MAX];
/* The table index of a language given by code or name, any case ("fr", "French"); -1 if none. */
int lang_find(const char *s);
/* Parses a comma-separated list of codes or names into table indices (no repeats).
 * Returns the count, or -1 with a message in err. */
int lang_parse_list(const char *s, int *out, char *err, size_t errlen);

/* ---------------------------------------------------------------- words */

#define LANG_SPLIT_TRAIN 0
#define LANG_SPLIT_VALID 1
#define LANG_SPLIT_TEST 2
#define LANG_MIN_LEN 2
#define LANG_MAX_LEN 24 /* code points: longer words are dropped, which bounds a batch's steps */

/* The words of a split: word i is pool + off[i] (UTF-8, lower case), of class label[i]. */
typedef struct lang_split {
    long n;
    size_t *off;
    int *label;
} lang_split;

/* Every word list read, filtered, de-duplicated and split. Class c is lang_table[lang[c]]. */
typedef struct lang_set {
    int nclass;
    int lang[LANG_MAX];
    char *pool;
    size_t pool_len, pool_cap;
    /* per class: lines read, words kept, words dropped for being in another list too */
    long lines[LANG_MAX], kept[LANG_MAX], shared[LANG_MAX], latin1[LANG_MAX];
    long filtered; /* lines that are not a word of letters of LANG_MIN_LEN..LANG_MAX_LEN */
    long avail[3][LANG_MAX]; /* words per split and class before balancing */
    lang_split split[3];     /* balanced: the same number per class in each split */
    /* all kept words, before balancing */
    long n, cap;
    size_t *off;
    int *label;
} lang_set;

/* Reads the lists of the languages lang[0..nclass) from dir (lang_table's file
 * names), one word per line. A line is lower-cased and kept if it is LANG_MIN_LEN
 * to LANG_MAX_LEN letters (no digits, apostrophes, hyphens or dots); a file that
 * is not valid UTF-8 is read as Latin-1 (Debian's Swedish list is). A word kept
 * by two or more lists is dropped from all of them: its letters cannot say which
 * language it is. Then splits by word (lang_split_of) and balances: each class
 * gets min(cap, the fewest any class has) words of a split, with cap = per_class
 * for training and per_class / 8 (at least 1) for validation and test, chosen by
 * a seeded hash of the word. Returns 0, or -1 with a message in err naming the
 * file and the problem (missing, unreadable, no words). */
int lang_set_read(lang_set *s, const char *dir, const int *lang, int nclass, long per_class, uint64_t seed, char *err,
                  size_t errlen);
void lang_set_free(lang_set *s);
static inline const char *lang_word(const lang_set *s, const lang_split *sp, long i) { return s->pool + sp->off[i]; }

/* The split of a word, fixed by its bytes alone (FNV-1a): 1 in 10 test, 1 in 10
 * validation, the rest training; the same whatever lists, sizes or seeds are chosen. */
int lang_split_of(const char *word);
/* Lower case of a code point (ASCII, Latin-1, Latin Extended-A). */
uint32_t lang_lower(uint32_t c);
/* Decodes the UTF-8 code point at s (n bytes left) into *cp; returns its length, or 0 if invalid. */
int lang_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* ---------------------------------------------------------------- alphabet */

#define LANG_UNK 0 /* a character outside the alphabet */
#define LANG_BOW 1 /* begin of word: the generator's first input */
#define LANG_EOW 2 /* end of word: the generator's last target */
#define LANG_FIRST_CHAR 3

/* Ids LANG_FIRST_CHAR.. are the code points cp[0..n) in ascending order. */
typedef struct lang_alpha {
    int n;
    uint32_t *cp;
} lang_alpha;

/* The characters of a split's words. Returns 0, or -1 when out of memory. */
int lang_alpha_build(const lang_set *s, const lang_split *sp, lang_alpha *a);
/* From code points (a checkpoint's copy): they must ascend strictly and be valid. 0, or -1 with err. */
int lang_alpha_from(const int64_t *cp, int n, lang_alpha *a, char *err, size_t errlen);
void lang_alpha_free(lang_alpha *a);
/* The alphabet's size in ids: the three specials plus the characters. */
static inline int lang_alpha_size(const lang_alpha *a) { return LANG_FIRST_CHAR + a->n; }
/* The id of a code point, LANG_UNK if not in the alphabet. */
int lang_alpha_id(const lang_alpha *a, uint32_t cp);
/* A word's ids (lower-cased; invalid UTF-8 read as Latin-1) into ids[0..max); returns the
 * number of characters (which may exceed max: only max are written) and, into *unknown,
 * how many are not in the alphabet (the first one's code point into *first_unknown). */
int lang_encode(const lang_alpha *a, const char *word, int *ids, int max, int *unknown, uint32_t *first_unknown);
/* Writes a code point as UTF-8 into out (4 bytes at most); returns the length. */
int lang_utf8_encode(uint32_t cp, char *out);

/* ---------------------------------------------------------------- naive Bayes */

/* Multinomial naive Bayes over a word's character bigrams: the pairs (BOW, c1),
 * (c1, c2), ..., (cn, EOW) of its ids. With A ids and Laplace smoothing,
 *   P(f | c) = (n_c(f) + 1) / (N_c + A * A),   score(c) = ln P(c) + sum_f ln P(f | c)
 * where n_c(f) counts bigram f in class c's training words, N_c all of c's bigrams and
 * P(c) is the class's share of the training words. */
typedef struct lang_nb {
    int A, C;
    double *logp;     /* [C][A*A] */
    double *logprior; /* [C] */
} lang_nb;

int lang_nb_fit(lang_nb *nb, const lang_set *s, const lang_split *sp, const lang_alpha *a, int nclass);
/* Scores of every class for a word into score[C]; returns the best class. */
int lang_nb_scores(const lang_nb *nb, const lang_alpha *a, const char *word, double *score);
void lang_nb_free(lang_nb *nb);

/* ---------------------------------------------------------------- report */

/* conf[truth * C + predicted]: the share on the diagonal. */
double lang_accuracy(const long *conf, int C);
/* Per class precision and recall, then the confusion matrix: rows the true class (by name),
 * columns the predicted one (by code). */
void lang_report(FILE *out, const long *conf, int C, const char *const *names, const char *const *codes);

#endif
