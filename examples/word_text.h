/* word_lm's text side, apart from the model: the tokenizer, the vocabulary (with
 * its serialised form for checkpoints) and the interpolated Kneser-Ney bigram
 * baseline. Plain C, no loom: tests/test_word_lm.c checks it directly. */
#ifndef LOOM_WORD_TEXT_H
#define LOOM_WORD_TEXT_H

#include <stddef.h>

/* Ids 0 and 1 of every vocabulary. Real tokens never contain '<' (it is a
 * punctuation token of its own), so these two cannot collide with a word. */
#define WORD_UNK 0
#define WORD_EOS 1
#define WORD_UNK_STR "<unk>"
#define WORD_EOS_STR "</s>"

/* ---------------------------------------------------------------- tokens */

/* Tokens as NUL-terminated strings in one pool: token i is pool + off[i]. */
typedef struct word_tokens {
    char *pool;
    size_t *off;
    long n;
    size_t pool_len, pool_cap, off_cap;
} word_tokens;

/* Splits text into lower-case tokens, appended to toks:
 * - a word is a run of ASCII letters and digits and of bytes >= 0x80 (UTF-8 kept as
 *   it is), with an apostrophe between two such characters kept inside ("don't");
 * - any other printable character is punctuation: a run of the same character is
 *   one token ("...", "--", "!"); control characters count as spaces;
 * - an end-of-sentence token </s> follows a sentence end ('.', a run of '!' or '?',
 *   then optional closing quotes or brackets, then a space or the end of the text)
 *   and a fortune-file separator (a line holding only '%'); never two in a row, and
 *   never first.
 * Returns 0, or -1 when out of memory. */
int word_tokenize(const unsigned char *text, size_t len, word_tokens *toks);
/* Frees the pool (the struct itself may be reused after a memset to 0). */
void word_tokens_free(word_tokens *toks);
static inline const char *word_token(const word_tokens *t, long i) { return t->pool + t->off[i]; }

/* ---------------------------------------------------------------- vocabulary */

typedef struct word_vocab {
    int n;          /* words, <unk> and </s> included */
    char **words;   /* [n], into pool */
    long *count;    /* [n] occurrences in the text it was built from (0 when read from bytes) */
    char *pool;
    size_t pool_len;
    int *table;     /* open-addressing hash of the words: id + 1, or 0 for empty */
    size_t table_cap;
} word_vocab;

/* The vocabulary of tokens [0, n) of toks: <unk>, </s>, then every token seen at least
 * min_count times (min_count >= 1), most frequent first, ties in byte order.
 * Returns 0, or -1 when out of memory. */
int word_vocab_build(const word_tokens *toks, long n, long min_count, word_vocab *v);
/* The id of a word, WORD_UNK when it is not in the vocabulary. */
int word_vocab_id(const word_vocab *v, const char *word);
/* ids[i] = the id of token i, for i < toks->n; returns how many are WORD_UNK without being "<unk>". */
long word_vocab_encode(const word_vocab *v, const word_tokens *toks, int *ids);
/* The words as NUL-terminated strings one after another (what a checkpoint stores); *len its bytes.
 * NULL when out of memory. */
unsigned char *word_vocab_bytes(const word_vocab *v, size_t *len);
/* The vocabulary back from word_vocab_bytes' form. Returns 0, or -1 with a message in err
 * (the bytes do not end in NUL, an empty or repeated word, <unk> and </s> not first, ...). */
int word_vocab_from_bytes(const unsigned char *buf, size_t len, word_vocab *v, char *err, size_t errlen);
void word_vocab_free(word_vocab *v);

/* ---------------------------------------------------------------- bigram baseline */

/* Interpolated Kneser-Ney bigram over a vocabulary of V ids (Chen and Goodman's
 * formulation, one discount per order):
 *   P(w | v) = max(c(v,w) - D2, 0) / c(v) + D2 N1+(v .) / c(v) * P1(w)     (c(v) > 0)
 *            = P1(w)                                                        (c(v) = 0)
 *   P1(w)    = max(N1+(. w) - D1, 0) / N1+(. .) + D1 |{w: N1+(. w) > 0}| / N1+(. .) / V
 * with c(v) = sum_w c(v,w), N1+(v .) the distinct words after v, N1+(. w) the distinct
 * words before w, N1+(. .) the distinct bigrams, and each D = n1 / (n1 + 2 n2) from the
 * counts of counts of its order (n1 once, n2 twice; 0.5 when n1 is 0). Every word, seen
 * or not, gets a probability above 0. */
typedef struct word_bigram {
    int V;
    long *row;       /* [V+1] CSR over contexts v: the bigrams (v, w) are row[v] .. row[v+1]-1 */
    int *col;        /* w of each distinct bigram, ascending within a row */
    long *cnt;       /* c(v, w) */
    long *ctx_total; /* [V] c(v) */
    long *cont;      /* [V] N1+(. w) */
    long types;      /* N1+(. .) */
    long cont_types; /* |{w : N1+(. w) > 0}| */
    double d1, d2;   /* the discounts */
} word_bigram;

/* Counts the bigrams (ids[i], ids[i+1]) for i < n - 1. Returns 0, or -1 when out of memory. */
int word_bigram_fit(const int *ids, long n, int V, word_bigram *b);
/* P1(w) and P(w | v). */
double word_bigram_unigram(const word_bigram *b, int w);
double word_bigram_prob(const word_bigram *b, int v, int w);
/* Mean -ln P(ids[i+1] | ids[i]) over i < n - 1 (nats per word; its exp is the perplexity). */
double word_bigram_nll(const word_bigram *b, const int *ids, long n);
void word_bigram_free(word_bigram *b);

#endif
