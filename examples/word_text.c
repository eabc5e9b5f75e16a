/* word_lm's tokenizer, vocabulary and Kneser-Ney bigram (see word_text.h). */
#include "word_text.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- tokens */

static int push(word_tokens *t, const unsigned char *s, size_t len)
{
    if (t->n == (long)t->off_cap) {
        size_t nc = t->off_cap ? t->off_cap * 2 : 4096;
        size_t *no = realloc(t->off, nc * sizeof *no);
        if (!no) return -1;
        t->off = no, t->off_cap = nc;
    }
    if (t->pool_len + len + 1 > t->pool_cap) {
        size_t nc = (t->pool_len + len + 1) * 2 + 65536;
        char *np = realloc(t->pool, nc);
        if (!np) return -1;
        t->pool = np, t->pool_cap = nc;
    }
    char *d = t->pool + t->pool_len;
    for (size_t k = 0; k < len; k++) d[k] = (char)(s[k] >= 'A' && s[k] <= 'Z' ? s[k] - 'A' + 'a' : s[k]);
    d[len] = '\0';
    t->off[t->n++] = t->pool_len;
    t->pool_len += len + 1;
    return 0;
}

static int push_eos(word_tokens *t)
{
    if (t->n == 0 || strcmp(word_token(t, t->n - 1), WORD_EOS_STR) == 0) return 0;
    return push(t, (const unsigned char *)WORD_EOS_STR, strlen(WORD_EOS_STR));
}

static int is_word(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80; }
static int is_space(unsigned char c) { return c <= ' ' || c == 0x7f; } /* blanks and control characters */
static int is_closer(unsigned char c) { return c == '"' || c == '\'' || c == ')' || c == ']'; }

int word_tokenize(const unsigned char *text, size_t len, word_tokens *toks)
{
    size_t i = 0, eos_at = 0;
    int eos_pending = 0;
    while (i < len) {
        if (eos_pending && i >= eos_at) {
            if (push_eos(toks)) return -1;
            eos_pending = 0;
        }
        unsigned char c = text[i];
        /* a fortune-file separator: a line holding only '%' */
        if (c == '%' && (i == 0 || text[i - 1] == '\n')) {
            size_t j = i + 1;
            if (j < len && text[j] == '\r') j++;
            if (j == len || text[j] == '\n') {
                if (push_eos(toks)) return -1;
                i = j;
                continue;
            }
        }
        if (is_space(c)) {
            i++;
            continue;
        }
        size_t j = i + 1;
        if (is_word(c)) {
            while (j < len && (is_word(text[j]) || (text[j] == '\'' && j + 1 < len && is_word(text[j + 1])))) j++;
        } else {
            while (j < len && text[j] == c) j++;
            if (c == '.' || c == '!' || c == '?') { /* a sentence end: then closers, then a space or the end */
                size_t k = j;
                while (k < len && is_closer(text[k])) k++;
                if (k == len || is_space(text[k])) eos_pending = 1, eos_at = k;
            }
        }
        if (push(toks, text + i, j - i)) return -1;
        i = j;
    }
    return eos_pending ? push_eos(toks) : 0;
}

void word_tokens_free(word_tokens *toks)
{
    free(toks->pool);
    free(toks->off);
    memset(toks, 0, sizeof *toks);
}

/* ---------------------------------------------------------------- hashing */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* A string -> index map over keys[]: table holds index + 1, 0 for empty; cap a power of two. */
static size_t slot_of(const int *table, size_t cap, char *const *keys, const char *key)
{
    size_t s = (size_t)hash_str(key) & (cap - 1);
    while (table[s] && strcmp(keys[table[s] - 1], key) != 0) s = (s + 1) & (cap - 1);
    return s;
}

static size_t pow2_above(size_t n)
{
    size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    return cap;
}

/* ---------------------------------------------------------------- vocabulary */

typedef struct entry {
    char *word;
    long count;
} entry;

static int by_count(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return strcmp(x->word, y->word);
}

/* Fills v from n words (taking no ownership), with counts (NULL: zeros). */
static int vocab_from_words(word_vocab *v, char *const *words, const long *count, int n)
{
    memset(v, 0, sizeof *v);
    size_t bytes = 0;
    for (int i = 0; i < n; i++) bytes += strlen(words[i]) + 1;
    v->n = n;
    v->words = malloc(sizeof *v->words * (size_t)n);
    v->count = calloc((size_t)n, sizeof *v->count);
    v->pool = malloc(bytes ? bytes : 1);
    v->table_cap = pow2_above((size_t)n);
    v->table = calloc(v->table_cap, sizeof *v->table);
    if (!v->words || !v->count || !v->pool || !v->table) {
        word_vocab_free(v);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        size_t l = strlen(words[i]) + 1;
        v->words[i] = memcpy(v->pool + v->pool_len, words[i], l);
        v->pool_len += l;
        if (count) v->count[i] = count[i];
        v->table[slot_of(v->table, v->table_cap, v->words, v->words[i])] = i + 1;
    }
    return 0;
}

int word_vocab_build(const word_tokens *toks, long n, long min_count, word_vocab *v)
{
    if (n > toks->n) n = toks->n;
    size_t cap = pow2_above((size_t)n + 2);
    int *table = calloc(cap, sizeof *table);
    char **keys = malloc(sizeof *keys * ((size_t)n + 2));
    entry *e = malloc(sizeof *e * ((size_t)n + 2));
    int distinct = 0, rc = -1;
    if (!table || !keys || !e) goto out;
    keys[distinct] = WORD_UNK_STR, e[distinct++] = (entry){WORD_UNK_STR, 0};
    table[slot_of(table, cap, keys, WORD_UNK_STR)] = distinct;
    keys[distinct] = WORD_EOS_STR, e[distinct++] = (entry){WORD_EOS_STR, 0};
    table[slot_of(table, cap, keys, WORD_EOS_STR)] = distinct;
    for (long i = 0; i < n; i++) {
        char *w = toks->pool + toks->off[i];
        size_t s = slot_of(table, cap, keys, w);
        if (!table[s]) keys[distinct] = w, e[distinct++] = (entry){w, 0}, table[s] = distinct;
        e[table[s] - 1].count++;
    }
    /* <unk> and </s> first, whatever their counts; then the frequent words */
    int kept = 2;
    for (int i = 2; i < distinct; i++)
        if (e[i].count >= min_count) e[kept++] = e[i];
    qsort(e + 2, (size_t)kept - 2, sizeof *e, by_count);
    long *count = malloc(sizeof *count * (size_t)kept);
    if (!count) goto out;
    for (int i = 0; i < kept; i++) keys[i] = e[i].word, count[i] = e[i].count;
    rc = vocab_from_words(v, keys, count, kept);
    free(count);
out:
    free(table);
    free(keys);
    free(e);
    return rc;
}

int word_vocab_id(const word_vocab *v, const char *word)
{
    int id = v->table[slot_of(v->table, v->table_cap, v->words, word)];
    return id ? id - 1 : WORD_UNK;
}

long word_vocab_encode(const word_vocab *v, const word_tokens *toks, int *ids)
{
    long unknown = 0;
    for (long i = 0; i < toks->n; i++) {
        ids[i] = word_vocab_id(v, word_token(toks, i));
        if (ids[i] == WORD_UNK && strcmp(word_token(toks, i), WORD_UNK_STR) != 0) unknown++;
    }
    return unknown;
}

unsigned char *word_vocab_bytes(const word_vocab *v, size_t *len)
{
    *len = v->pool_len;
    unsigned char *b = malloc(v->pool_len ? v->pool_len : 1);
    if (b) memcpy(b, v->pool, v->pool_len);
    return b;
}

int word_vocab_from_bytes(const unsigned char *buf, size_t len, word_vocab *v, char *err, size_t errlen)
{
    memset(v, 0, sizeof *v);
    if (len == 0 || buf[len - 1] != '\0') {
        snprintf(err, errlen, "%s", len ? "does not end in a NUL byte" : "is empty");
        return -1;
    }
    int n = 0;
    for (size_t i = 0; i < len; i++) n += buf[i] == '\0';
    char **words = malloc(sizeof *words * (size_t)n);
    if (!words) {
        snprintf(err, errlen, "out of memory for %d words", n);
        return -1;
    }
    size_t p = 0;
    for (int i = 0; i < n; i++) {
        words[i] = (char *)buf + p;
        p += strlen(words[i]) + 1;
    }
    int rc = -1;
    if (n < 2 || strcmp(words[0], WORD_UNK_STR) != 0 || strcmp(words[1], WORD_EOS_STR) != 0)
        snprintf(err, errlen, "does not start with %s and %s", WORD_UNK_STR, WORD_EOS_STR);
    else if (vocab_from_words(v, words, NULL, n) != 0) snprintf(err, errlen, "out of memory for %d words", n);
    else {
        rc = 0;
        for (int i = 0; i < n && rc == 0; i++)
            if (!*v->words[i]) snprintf(err, errlen, "word %d is empty", i), rc = -1;
            else if (word_vocab_id(v, v->words[i]) != i)
                snprintf(err, errlen, "repeats the word '%.40s' (ids %d and %d)", v->words[i], word_vocab_id(v, v->words[i]), i), rc = -1;
        if (rc) word_vocab_free(v);
    }
    free(words);
    return rc;
}

void word_vocab_free(word_vocab *v)
{
    free(v->words);
    free(v->count);
    free(v->pool);
    free(v->table);
    memset(v, 0, sizeof *v);
}

/* ---------------------------------------------------------------- bigram */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* n1 / (n1 + 2 n2), or 0.5 without singletons. */
static double discount(long n1, long n2) { return n1 > 0 ? (double)n1 / (double)(n1 + 2 * n2) : 0.5; }

int word_bigram_fit(const int *ids, long n, int V, word_bigram *b)
{
    memset(b, 0, sizeof *b);
    b->V = V;
    long np = n > 1 ? n - 1 : 0;
    uint64_t *key = malloc(sizeof *key * (size_t)(np ? np : 1));
    b->row = calloc((size_t)V + 1, sizeof *b->row);
    b->ctx_total = calloc((size_t)V, sizeof *b->ctx_total);
    b->cont = calloc((size_t)V, sizeof *b->cont);
    b->col = malloc(sizeof *b->col * (size_t)(np ? np : 1));
    b->cnt = malloc(sizeof *b->cnt * (size_t)(np ? np : 1));
    if (!key || !b->row || !b->ctx_total || !b->cont || !b->col || !b->cnt) {
        free(key);
        word_bigram_free(b);
        return -1;
    }
    for (long i = 0; i < np; i++) key[i] = (uint64_t)ids[i] * (uint64_t)V + (uint64_t)ids[i + 1];
    qsort(key, (size_t)np, sizeof *key, cmp_u64);
    long types = 0, n1 = 0, n2 = 0;
    for (long i = 0; i < np;) {
        long j = i;
        while (j < np && key[j] == key[i]) j++;
        int v = (int)(key[i] / (uint64_t)V), w = (int)(key[i] % (uint64_t)V);
        long c = j - i;
        b->col[types] = w, b->cnt[types] = c, types++;
        b->row[v + 1]++;
        b->ctx_total[v] += c;
        b->cont[w]++;
        n1 += c == 1, n2 += c == 2;
        i = j;
    }
    free(key);
    for (int v = 0; v < V; v++) b->row[v + 1] += b->row[v];
    long c1 = 0, c2 = 0;
    for (int w = 0; w < V; w++) {
        b->cont_types += b->cont[w] > 0;
        c1 += b->cont[w] == 1, c2 += b->cont[w] == 2;
    }
    b->types = types;
    b->d2 = discount(n1, n2);
    b->d1 = discount(c1, c2);
    return 0;
}

double word_bigram_unigram(const word_bigram *b, int w)
{
    if (b->types == 0) return 1.0 / b->V; /* no bigrams at all: uniform */
    double T = (double)b->types;
    return fmax((double)b->cont[w] - b->d1, 0.0) / T + b->d1 * (double)b->cont_types / T / b->V;
}

double word_bigram_prob(const word_bigram *b, int v, int w)
{
    double p1 = word_bigram_unigram(b, w);
    long lo = b->row[v], hi = b->row[v + 1], c = 0;
    if (b->ctx_total[v] == 0) return p1;
    while (lo < hi) { /* binary search for w among v's followers */
        long mid = lo + (hi - lo) / 2;
        if (b->col[mid] < w) lo = mid + 1;
        else hi = mid;
    }
    if (lo < b->row[v + 1] && b->col[lo] == w) c = b->cnt[lo];
    double cv = (double)b->ctx_total[v];
    return fmax((double)c - b->d2, 0.0) / cv + b->d2 * (double)(b->row[v + 1] - b->row[v]) / cv * p1;
}

double word_bigram_nll(const word_bigram *b, const int *ids, long n)
{
    double s = 0;
    for (long i = 0; i + 1 < n; i++) s -= log(word_bigram_prob(b, ids[i], ids[i + 1]));
    return n > 1 ? s / (double)(n - 1) : NAN;
}

void word_bigram_free(word_bigram *b)
{
    free(b->row);
    free(b->col);
    free(b->cnt);
    free(b->ctx_total);
    free(b->cont);
    memset(b, 0, sizeof *b);
}
