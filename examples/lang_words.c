/* classify's word lists, split, alphabet, naive Bayes baseline and report (see lang_words.h). */
#include "lang_words.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const lang_info lang_table[LANG_MAX] = {
    {"en", "English", "american-english", "wamerican"}, {"de", "German", "ngerman", "wngerman"},
    {"fr", "French", "french", "wfrench"},               {"es", "Spanish", "spanish", "wspanish"},
    {"it", "Italian", "italian", "witalian"},            {"nl", "Dutch", "dutch", "wdutch"},
    {"pt", "Portuguese", "portuguese", "wportuguese"},   {"sv", "Swedish", "swedish", "wswedish"},
};

static void say(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int lang_find(const char *s)
{
    for (int i = 0; s && i < LANG_MAX; i++)
        if (strcasecmp(s, lang_table[i].code) == 0 || strcasecmp(s, lang_table[i].name) == 0) return i;
    return -1;
}

int lang_parse_list(const char *s, int *out, char *err, size_t errlen)
{
    int n = 0;
    char item[64];
    for (const char *p = s; p && *p;) {
        size_t k = strcspn(p, ",");
        if (k == 0 || k >= sizeof item) {
            say(err, errlen, "'%s' is not a comma-separated list of languages", s);
            return -1;
        }
        memcpy(item, p, k);
        item[k] = 0;
        int l = lang_find(item);
        if (l < 0) {
            say(err, errlen, "unknown language '%s' (known: en de fr es it nl pt sv, or their English names)", item);
            return -1;
        }
        for (int i = 0; i < n; i++)
            if (out[i] == l) return say(err, errlen, "language '%s' is listed twice", item), -1;
        out[n++] = l;
        p += k + (p[k] == ',');
    }
    if (n < 2) return say(err, errlen, "'%s': classification needs at least two languages", s ? s : ""), -1;
    return n;
}

/* ---------------------------------------------------------------- characters */

int lang_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0) return 0;
    unsigned char c = s[0];
    int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || (size_t)len > n) return 0;
    uint32_t v = len == 1 ? c : len == 2 ? c & 0x1Fu : len == 3 ? c & 0x0Fu : c & 0x07u;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000}; /* overlong forms are invalid */
    if (v < least[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int lang_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) return o[0] = (unsigned char)cp, 1;
    if (cp < 0x800) return o[0] = (unsigned char)(0xC0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

uint32_t lang_lower(uint32_t c)
{
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32; /* Latin-1: À..Þ -> à..þ */
    if (c >= 0x100 && c <= 0x137) return c | 1;            /* Latin Extended-A: even upper, odd lower */
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return c + (c & 1);
    if (c >= 0x14A && c <= 0x177) return c | 1;
    if (c == 0x178) return 0xFF; /* Ÿ */
    return c;
}

/* Letters: ASCII, and everything from Latin-1's letters up to the general punctuation block. */
static int is_letter(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 0xC0 && c < 0x2000 && c != 0xD7 && c != 0xF7);
}

/* Decodes one code point of a string, as Latin-1 where it is not UTF-8. */
static int next_cp(const unsigned char *s, size_t n, int latin1, uint32_t *cp)
{
    int k = latin1 ? 0 : lang_utf8_decode(s, n, cp);
    if (k == 0) *cp = s[0], k = 1;
    return k;
}

static int valid_utf8(const unsigned char *s, size_t n)
{
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        int k = lang_utf8_decode(s + i, n - i, &cp);
        if (k == 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

/* ---------------------------------------------------------------- reading */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int lang_split_of(const char *word)
{
    int r = (int)(mix64(fnv1a(word)) % 10);
    return r == 0 ? LANG_SPLIT_TEST : r == 1 ? LANG_SPLIT_VALID : LANG_SPLIT_TRAIN;
}

static int push_word(lang_set *s, const char *w, size_t len, int label)
{
    if (s->pool_len + len + 1 > s->pool_cap) {
        size_t cap = s->pool_cap ? s->pool_cap * 2 : 1 << 20;
        while (cap < s->pool_len + len + 1) cap *= 2;
        char *p = realloc(s->pool, cap);
        if (!p) return -1;
        s->pool = p, s->pool_cap = cap;
    }
    if (s->n == s->cap) {
        long cap = s->cap ? s->cap * 2 : 1 << 16;
        size_t *o = realloc(s->off, sizeof(size_t) * (size_t)cap);
        if (o) s->off = o;
        int *l = realloc(s->label, sizeof(int) * (size_t)cap);
        if (l) s->label = l;
        if (!o || !l) return -1;
        s->cap = cap;
    }
    memcpy(s->pool + s->pool_len, w, len);
    s->pool[s->pool_len + len] = 0;
    s->off[s->n] = s->pool_len;
    s->label[s->n++] = label;
    s->pool_len += len + 1;
    return 0;
}

/* Reads one list as class c. Returns 0, or -1 with err. */
static int read_list(lang_set *s, const char *dir, int c, char *err, size_t errlen)
{
    const lang_info *li = &lang_table[s->lang[c]];
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, li->file);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        say(err, errlen, "%s (the %s word list): %s%s%s", path, li->name, strerror(e),
            e == ENOENT ? "; install it with: apt-get install " : "", e == ENOENT ? li->package : "");
        return -1;
    }
    size_t cap = 1 << 20, n = 0, k;
    unsigned char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n, fp)) > 0)
        if ((n += k) == cap) {
            unsigned char *b = realloc(buf, cap * 2);
            if (!b) free(buf);
            buf = b, cap *= 2;
        }
    int bad = !buf || ferror(fp);
    fclose(fp);
    if (bad) return free(buf), say(err, errlen, "%s: %s", path, buf ? "read error" : "out of memory"), -1;
    int latin1 = !valid_utf8(buf, n);
    s->latin1[c] = latin1;
    char word[LANG_MAX_LEN * 4 + 1];
    for (size_t i = 0; i < n;) {
        size_t end = i;
        while (end < n && buf[end] != '\n') end++;
        size_t stop = end > i && buf[end - 1] == '\r' ? end - 1 : end;
        int chars = 0, ok = stop > i;
        size_t wl = 0;
        for (size_t j = i; j < stop && ok;) {
            uint32_t cp;
            j += (size_t)next_cp(buf + j, stop - j, latin1, &cp);
            cp = lang_lower(cp);
            ok = is_letter(cp) && ++chars <= LANG_MAX_LEN;
            if (ok) wl += (size_t)lang_utf8_encode(cp, word + wl);
        }
        s->lines[c]++;
        if (ok && chars >= LANG_MIN_LEN) {
            if (push_word(s, word, wl, c)) return free(buf), say(err, errlen, "out of memory reading %s", path), -1;
        } else
            s->filtered++;
        i = end + 1;
    }
    free(buf);
    return 0;
}

/* Keeps each word once, and only if a single list has it. */
static int drop_shared(lang_set *s)
{
    size_t cap = 16;
    while (cap < (size_t)s->n * 2) cap *= 2;
    long *slot = malloc(sizeof(long) * cap); /* index + 1 of a word's first occurrence, 0 empty */
    unsigned *mask = calloc((size_t)s->n + 1, sizeof(unsigned));
    if (!slot || !mask) return free(slot), free(mask), -1;
    memset(slot, 0, sizeof(long) * cap);
    long *first = malloc(sizeof(long) * (size_t)(s->n + 1));
    if (!first) return free(slot), free(mask), -1;
    for (long i = 0; i < s->n; i++) {
        const char *w = s->pool + s->off[i];
        size_t h = (size_t)(fnv1a(w) & (cap - 1));
        while (slot[h] && strcmp(s->pool + s->off[slot[h] - 1], w) != 0) h = (h + 1) & (cap - 1);
        if (!slot[h]) slot[h] = i + 1;
        first[i] = slot[h] - 1;
        mask[first[i]] |= 1u << s->label[i];
    }
    long m = 0;
    for (long i = 0; i < s->n; i++) {
        if (first[i] != i) continue; /* a repeat */
        unsigned b = mask[i];
        if (b & (b - 1)) {
            for (int c = 0; c < s->nclass; c++) s->shared[c] += (b >> c) & 1;
            continue;
        }
        s->kept[s->label[i]]++;
        s->off[m] = s->off[i];
        s->label[m++] = s->label[i];
    }
    s->n = m;
    free(slot);
    free(mask);
    free(first);
    return 0;
}

typedef struct keyed {
    uint64_t key;
    long i;
} keyed;

static int by_key(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key ? 1 : (x->i > y->i) - (x->i < y->i);
}

/* Each class's first n words of split sp in seeded-hash order, class after class. */
static int balance(lang_set *s, int sp, long cap, uint64_t seed)
{
    long n = cap;
    for (int c = 0; c < s->nclass; c++) n = s->avail[sp][c] < n ? s->avail[sp][c] : n;
    lang_split *out = &s->split[sp];
    keyed *k = malloc(sizeof(keyed) * (size_t)(s->n + 1));
    out->off = malloc(sizeof(size_t) * (size_t)(n * s->nclass + 1));
    out->label = malloc(sizeof(int) * (size_t)(n * s->nclass + 1));
    if (!k || !out->off || !out->label) return free(k), -1;
    out->n = 0;
    for (int c = 0; c < s->nclass; c++) {
        long m = 0;
        for (long i = 0; i < s->n; i++) {
            const char *w = s->pool + s->off[i];
            if (s->label[i] == c && lang_split_of(w) == sp) k[m++] = (keyed){mix64(fnv1a(w) ^ mix64(seed)), i};
        }
        qsort(k, (size_t)m, sizeof *k, by_key);
        for (long j = 0; j < n; j++) {
            out->off[out->n] = s->off[k[j].i];
            out->label[out->n++] = c;
        }
    }
    free(k);
    return 0;
}

int lang_set_read(lang_set *s, const char *dir, const int *lang, int nclass, long per_class, uint64_t seed, char *err,
                  size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->nclass = nclass;
    memcpy(s->lang, lang, sizeof(int) * (size_t)nclass);
    for (int c = 0; c < nclass; c++) {
        long before = s->n;
        if (read_list(s, dir, c, err, errlen)) return -1;
        if (s->n == before) {
            say(err, errlen, "%s/%s (the %s word list): no words in it (%ld lines; a word is %d to %d letters)", dir,
                lang_table[lang[c]].file, lang_table[lang[c]].name, s->lines[c], LANG_MIN_LEN, LANG_MAX_LEN);
            return -1;
        }
    }
    if (drop_shared(s)) return say(err, errlen, "out of memory for the word lists"), -1;
    for (long i = 0; i < s->n; i++) s->avail[lang_split_of(s->pool + s->off[i])][s->label[i]]++;
    static const char *split_name[3] = {"training", "validation", "test"};
    for (int sp = 0; sp < 3; sp++) {
        long cap = sp == LANG_SPLIT_TRAIN ? per_class : (per_class / 8 > 0 ? per_class / 8 : 1);
        for (int c = 0; c < nclass; c++)
            if (s->avail[sp][c] == 0) {
                say(err, errlen, "%s/%s (the %s word list): no %s words left (%ld words of its own; 1 in 10 is for "
                    "test, 1 in 10 for validation)", dir, lang_table[lang[c]].file, lang_table[lang[c]].name,
                    split_name[sp], s->kept[c]);
                return -1;
            }
        if (balance(s, sp, cap, seed)) return say(err, errlen, "out of memory for the word lists"), -1;
    }
    return 0;
}

void lang_set_free(lang_set *s)
{
    for (int sp = 0; sp < 3; sp++) free(s->split[sp].off), free(s->split[sp].label);
    free(s->pool);
    free(s->off);
    free(s->label);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------- alphabet */

static int by_cp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int lang_alpha_build(const lang_set *s, const lang_split *sp, lang_alpha *a)
{
    size_t cap = 256, n = 0;
    uint32_t *cp = malloc(sizeof(uint32_t) * cap);
    for (long i = 0; cp && i < sp->n; i++) {
        const unsigned char *w = (const unsigned char *)lang_word(s, sp, i);
        size_t len = strlen((const char *)w);
        for (size_t j = 0; j < len;) {
            uint32_t c;
            j += (size_t)next_cp(w + j, len - j, 0, &c);
            size_t k = 0;
            while (k < n && cp[k] != c) k++;
            if (k < n) continue;
            if (n == cap) {
                uint32_t *p = realloc(cp, sizeof(uint32_t) * cap * 2);
                if (!p) return free(cp), -1;
                cp = p, cap *= 2;
            }
            cp[n++] = c;
        }
    }
    if (!cp) return -1;
    qsort(cp, n, sizeof *cp, by_cp);
    a->cp = cp;
    a->n = (int)n;
    return 0;
}

int lang_alpha_from(const int64_t *cp, int n, lang_alpha *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    if (n < 1) return say(err, errlen, "holds no characters"), -1;
    if (!(a->cp = malloc(sizeof(uint32_t) * (size_t)n))) return say(err, errlen, "out of memory"), -1;
    for (int i = 0; i < n; i++) {
        if (cp[i] <= 0 || cp[i] > 0x10FFFF || (i > 0 && cp[i] <= cp[i - 1])) {
            lang_alpha_free(a);
            return say(err, errlen, "entry %d (%lld) is not a code point above the one before it", i, (long long)cp[i]), -1;
        }
        a->cp[i] = (uint32_t)cp[i];
    }
    a->n = n;
    return 0;
}

void lang_alpha_free(lang_alpha *a)
{
    free(a->cp);
    memset(a, 0, sizeof *a);
}

int lang_alpha_id(const lang_alpha *a, uint32_t cp)
{
    int lo = 0, hi = a->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (a->cp[mid] == cp) return LANG_FIRST_CHAR + mid;
        if (a->cp[mid] < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return LANG_UNK;
}

int lang_encode(const lang_alpha *a, const char *word, int *ids, int max, int *unknown, uint32_t *first_unknown)
{
    const unsigned char *w = (const unsigned char *)word;
    size_t len = strlen(word);
    int n = 0, unk = 0, latin1 = !valid_utf8(w, len);
    for (size_t j = 0; j < len; n++) {
        uint32_t c;
        j += (size_t)next_cp(w + j, len - j, latin1, &c);
        int id = lang_alpha_id(a, lang_lower(c));
        if (id == LANG_UNK && unk++ == 0 && first_unknown) *first_unknown = c;
        if (n < max) ids[n] = id;
    }
    if (unknown) *unknown = unk;
    return n;
}

/* ---------------------------------------------------------------- naive Bayes */

/* Calls f(ctx, prev, cur) for each bigram of the word, BOW and EOW included. */
static void bigrams(const lang_alpha *a, const char *word, void (*f)(void *, int, int), void *ctx)
{
    int ids[LANG_MAX_LEN * 4 + 2];
    int n = lang_encode(a, word, ids, LANG_MAX_LEN * 4 + 2, NULL, NULL);
    if (n > LANG_MAX_LEN * 4 + 2) n = LANG_MAX_LEN * 4 + 2;
    int prev = LANG_BOW;
    for (int i = 0; i < n; i++) f(ctx, prev, ids[i]), prev = ids[i];
    f(ctx, prev, LANG_EOW);
}

typedef struct nb_count {
    double *row; /* the class's counts [A*A] */
    int A;
    double total;
} nb_count;

static void count_bigram(void *ctx, int p, int c)
{
    nb_count *k = ctx;
    k->row[p * k->A + c] += 1;
    k->total += 1;
}

int lang_nb_fit(lang_nb *nb, const lang_set *s, const lang_split *sp, const lang_alpha *a, int nclass)
{
    int A = lang_alpha_size(a);
    size_t F = (size_t)A * (size_t)A;
    nb->A = A, nb->C = nclass;
    nb->logp = calloc(F * (size_t)nclass, sizeof(double));
    nb->logprior = calloc((size_t)nclass, sizeof(double));
    double *total = calloc((size_t)nclass, sizeof(double)), *words = calloc((size_t)nclass, sizeof(double));
    if (!nb->logp || !nb->logprior || !total || !words) return free(total), free(words), lang_nb_free(nb), -1;
    for (long i = 0; i < sp->n; i++) {
        int c = sp->label[i];
        nb_count k = {nb->logp + F * (size_t)c, A, 0};
        bigrams(a, lang_word(s, sp, i), count_bigram, &k);
        total[c] += k.total;
        words[c] += 1;
    }
    for (int c = 0; c < nclass; c++) {
        for (size_t f = 0; f < F; f++)
            nb->logp[F * (size_t)c + f] = log((nb->logp[F * (size_t)c + f] + 1) / (total[c] + (double)F));
        nb->logprior[c] = log(words[c] > 0 ? words[c] / (double)sp->n : 1e-300);
    }
    free(total);
    free(words);
    return 0;
}

typedef struct nb_score {
    const lang_nb *nb;
    double *score;
} nb_score;

static void add_bigram(void *ctx, int p, int c)
{
    nb_score *k = ctx;
    size_t F = (size_t)k->nb->A * (size_t)k->nb->A;
    for (int y = 0; y < k->nb->C; y++) k->score[y] += k->nb->logp[F * (size_t)y + (size_t)p * (size_t)k->nb->A + (size_t)c];
}

int lang_nb_scores(const lang_nb *nb, const lang_alpha *a, const char *word, double *score)
{
    for (int y = 0; y < nb->C; y++) score[y] = nb->logprior[y];
    nb_score k = {nb, score};
    bigrams(a, word, add_bigram, &k);
    int best = 0;
    for (int y = 1; y < nb->C; y++)
        if (score[y] > score[best]) best = y;
    return best;
}

void lang_nb_free(lang_nb *nb)
{
    free(nb->logp);
    free(nb->logprior);
    memset(nb, 0, sizeof *nb);
}

/* ---------------------------------------------------------------- report */

double lang_accuracy(const long *conf, int C)
{
    long right = 0, all = 0;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) all += conf[i * C + j], right += i == j ? conf[i * C + j] : 0;
    return all ? (double)right / (double)all : 0;
}

void lang_report(FILE *out, const long *conf, int C, const char *const *names, const char *const *codes)
{
    fprintf(out, "  %-12s %9s %9s %7s\n", "class", "precision", "recall", "words");
    for (int c = 0; c < C; c++) {
        long tp = conf[c * C + c], predicted = 0, truth = 0;
        for (int k = 0; k < C; k++) predicted += conf[k * C + c], truth += conf[c * C + k];
        fprintf(out, "  %-12s %8.1f%% %8.1f%% %7ld\n", names[c], predicted ? 100.0 * (double)tp / (double)predicted : 0.0,
                truth ? 100.0 * (double)tp / (double)truth : 0.0, truth);
    }
    fprintf(out, "  confusion (rows: true language, columns: predicted)\n  %-12s", "");
    for (int c = 0; c < C; c++) fprintf(out, " %6s", codes[c]);
    fputc('\n', out);
    for (int r = 0; r < C; r++) {
        fprintf(out, "  %-12s", names[r]);
        for (int c = 0; c < C; c++) fprintf(out, " %6ld", conf[r * C + c]);
        fputc('\n', out);
    }
}
