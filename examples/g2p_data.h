/* seq2seq's data: a pronouncing dictionary (Festival's CMUdict or the plain CMUdict
 * format), its fixed train/dev/test split by word, edit distance and scoring against
 * several pronunciations, and the baseline (a letter-aligned majority phoneme). Plain C
 * with no model in it, so tests/test_g2p.c checks it directly. */
#ifndef LOOM_G2P_DATA_H
#define LOOM_G2P_DATA_H

#include <stddef.h>
#include <stdint.h>

/* Longest word and pronunciation kept (a longer entry is skipped and counted). */
#define G2P_MAX_LEN 48

/* A dictionary: distinct lower-case words in byte order, each with one or more distinct
 * pronunciations (phone ids into a sorted phone set). */
typedef struct g2p_dict {
    int nwords;
    char **words;    /* [nwords] */
    int *first;      /* [nwords + 1]: word w's pronunciations are first[w] .. first[w+1]-1 */
    int nprons;
    int *pron_at;    /* [nprons + 1]: pronunciation p is ph[pron_at[p] .. pron_at[p+1]) */
    int *ph;
    int nphones;
    char **phones;   /* [nphones] sorted names ("aa", "ae", ...) */
    char *letters;   /* every byte that occurs in a word, in byte order, NUL-terminated */
    long skipped;    /* entries longer than G2P_MAX_LEN, left out */
    char *buf;       /* private: the strings */
} g2p_dict;

/* Reading options: stress 1 keeps stress digits on the vowels (Festival's syllable stress
 * goes onto each vowel of the syllable, "ae1"); syllables 1 puts a "." phone between
 * Festival's syllables. Both 0 by default. */
typedef struct g2p_read_opts {
    int stress, syllables;
} g2p_read_opts;

/* Reads a dictionary from a file holding lines in either format (one line each):
 *   Festival: ("word" pos (((ph ph) 1) ((ph) 0)))
 *   plain:    WORD  PH1 PH2 ...   (CMUdict: "WORD(2)" a variant; ";;;" a comment)
 * Words are lower-cased, phones lower-cased, stress digits stripped unless opts->stress.
 * Returns 0, or 1 with a message in err (a file that cannot be read, a line that is
 * neither format, no entries). */
int g2p_read(const char *path, const g2p_read_opts *opts, g2p_dict *d, char *err, size_t errn);
/* The same from text in memory (name is used in messages). */
int g2p_parse(const char *text, size_t len, const char *name, const g2p_read_opts *opts, g2p_dict *d, char *err,
              size_t errn);
void g2p_dict_free(g2p_dict *d);
/* The phone id of a name, or -1. */
int g2p_phone_id(const g2p_dict *d, const char *name);
/* The word's index, or -1. */
int g2p_word_id(const g2p_dict *d, const char *word);

/* The split by word: words shuffled by a generator of `seed`, the first test_pct percent
 * (rounded down, at least 1 when there are 3 words or more) are test, the next dev_pct
 * dev, the rest train. Fills split[w] with 0 train, 1 dev, 2 test. */
void g2p_split(int nwords, uint64_t seed, double test_pct, double dev_pct, unsigned char *split);

/* Levenshtein distance between two id sequences (insertions, deletions, substitutions cost 1). */
int g2p_edit_distance(const int *a, int na, const int *b, int nb);
/* Scores a prediction against word w's pronunciations: the fewest edits to any of them
 * and that one's length (on a tie the shorter reference), and whether it equals one. */
void g2p_score(const g2p_dict *d, int w, const int *pred, int n, int *edits, int *ref_len, int *exact);

/* The baseline: each letter is aligned to 0, 1 or 2 phones (hard EM over the training
 * pronunciations), and predicts the chunk it took most often in its context of two letters
 * each side, backing off to one each side, then to the letter alone. */
typedef struct g2p_baseline {
    int nphones;
    long nkeys[3];     /* contexts of half-width 2, 1, 0 */
    uint64_t *keys[3]; /* sorted */
    int *chunk[3];     /* the majority chunk of each context */
    long aligned, unaligned; /* training pronunciations aligned, and ones no alignment fits */
} g2p_baseline;

/* Fits on the pronunciations of the words with split[w] == 0 (split NULL: every word).
 * Returns 0, or 1 when out of memory. */
int g2p_baseline_fit(g2p_baseline *b, const g2p_dict *d, const unsigned char *split);
/* Predicts word's phones into out (room for cap); returns how many. */
int g2p_baseline_predict(const g2p_baseline *b, const char *word, int *out, int cap);
void g2p_baseline_free(g2p_baseline *b);

#endif
