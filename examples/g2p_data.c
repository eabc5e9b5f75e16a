/* seq2seq's data: dictionary reader, split, edit distance, scoring (the baseline is in
 * g2p_baseline.c). */
#define _POSIX_C_SOURCE 200809L
#include "g2p_data.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom_autograd.h"

#define PHONE_MAX 16 /* bytes of a phone name, NUL included */

typedef struct pname {
    char s[PHONE_MAX];
} pname;

/* One parsed line: a word (offset into the words buffer) and its phones (into the tokens). */
typedef struct rec {
    long word, ph, n;
} rec;

typedef struct parser {
    char *wbuf;     /* words, NUL-terminated */
    long wlen, wcap;
    pname *tok;     /* every phone token, in line order */
    long ntok, tcap;
    rec *recs;
    long nrec, rcap;
    long skipped;
} parser;

static int fail(char *err, size_t errn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errn) vsnprintf(err, errn, fmt, ap);
    va_end(ap);
    return 1;
}

static int grow(void **p, long *cap, long need, size_t size)
{
    if (need <= *cap) return 0;
    long n = *cap ? *cap : 1024;
    while (n < need) n *= 2;
    void *q = realloc(*p, (size_t)n * size);
    if (!q) return 1;
    *p = q;
    *cap = n;
    return 0;
}

static int is_space(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }
static int is_vowel_phone(const char *s) { return strchr("aeiouAEIOU", s[0]) != NULL; }

/* Appends a phone token (lower-cased, digits stripped unless keep_digits). Returns 0, 1 on
 * out of memory, 2 when it is too long. */
static int add_phone(parser *p, const char *s, long n, int keep_digits)
{
    if (grow((void **)&p->tok, &p->tcap, p->ntok + 1, sizeof(pname))) return 1;
    char *d = p->tok[p->ntok].s;
    long k = 0;
    for (long i = 0; i < n; i++) {
        if (is_digit(s[i]) && !keep_digits) continue;
        if (k + 1 >= PHONE_MAX) return 2;
        d[k++] = (char)lower((unsigned char)s[i]);
    }
    d[k] = 0;
    if (k > 0) p->ntok++;
    return 0;
}

/* Ends a record: word w (n bytes) with the tokens from ph on. */
static int add_rec(parser *p, const char *w, long n, long ph)
{
    if (n == 0 || p->ntok == ph) return 2; /* a word with no phones */
    if (n > G2P_MAX_LEN || p->ntok - ph > G2P_MAX_LEN) {
        p->ntok = ph;
        p->skipped++;
        return 0;
    }
    if (grow((void **)&p->wbuf, &p->wcap, p->wlen + n + 1, 1) || grow((void **)&p->recs, &p->rcap, p->nrec + 1, sizeof(rec)))
        return 1;
    p->recs[p->nrec++] = (rec){p->wlen, ph, p->ntok - ph};
    for (long i = 0; i < n; i++) p->wbuf[p->wlen++] = (char)lower((unsigned char)w[i]);
    p->wbuf[p->wlen++] = 0;
    return 0;
}

/* ("word" pos (((ph ph) 1) ((ph) 0))): phones are the alphabetic tokens after pos, stress
 * the digits that close each syllable. Returns 0, 1 (memory), 2 (not this format), 3 (a phone too long). */
static int parse_festival(parser *p, const char *s, const char *end, const g2p_read_opts *o)
{
    if (end - s < 2 || s[0] != '(' || s[1] != '"') return 2;
    const char *w = s + 2, *q = memchr(w, '"', (size_t)(end - w));
    if (!q) return 2;
    const char *c = q + 1;
    while (c < end && is_space(*c)) c++;
    while (c < end && !is_space(*c) && *c != '(') c++; /* the part of speech */
    long ph = p->ntok, syl = ph;
    int depth = 1, nsyl = 0;
    while (c < end) {
        if (*c == '(') {
            if (++depth == 3) { /* a syllable opens */
                if (nsyl++ > 0 && o->syllables) {
                    int r = add_phone(p, ".", 1, 1);
                    if (r) return r == 2 ? 3 : 1;
                }
                syl = p->ntok;
            }
            c++;
        } else if (*c == ')') depth--, c++;
        else if (is_space(*c)) c++;
        else {
            const char *t = c;
            while (c < end && !is_space(*c) && *c != '(' && *c != ')') c++;
            if (is_digit(*t)) { /* the syllable's stress, onto its vowels */
                for (long k = syl; o->stress && k < p->ntok; k++) {
                    size_t l = strlen(p->tok[k].s);
                    if (is_vowel_phone(p->tok[k].s) && l + 1 < PHONE_MAX) p->tok[k].s[l] = *t, p->tok[k].s[l + 1] = 0;
                }
            } else {
                int r = add_phone(p, t, c - t, o->stress);
                if (r) return r == 2 ? 3 : 1;
            }
        }
    }
    if (depth != 0) return 2;
    int r = add_rec(p, w, q - w, ph);
    return r == 2 ? 2 : r;
}

/* WORD  PH1 PH2 ... (a "(N)" after the word marks a variant; "#" starts a comment). */
static int parse_plain(parser *p, const char *s, const char *end, const g2p_read_opts *o)
{
    const char *c = s;
    while (c < end && !is_space(*c)) c++;
    long wn = c - s;
    if (wn > 3 && s[wn - 1] == ')') { /* WORD(2) */
        long k = wn - 2;
        while (k > 0 && is_digit(s[k])) k--;
        if (k > 0 && k < wn - 2 && s[k] == '(') wn = k;
    }
    long ph = p->ntok;
    while (c < end && *c != '#') {
        while (c < end && is_space(*c)) c++;
        const char *t = c;
        while (c < end && !is_space(*c)) c++;
        if (c > t && *t != '#') {
            int r = add_phone(p, t, c - t, o->stress);
            if (r) return r == 2 ? 3 : 1;
        } else if (c > t) break;
    }
    return add_rec(p, s, wn, ph);
}

static int cmp_pname(const void *a, const void *b) { return strcmp(((const pname *)a)->s, ((const pname *)b)->s); }

static const char *g_words; /* qsort has no context argument: the words buffer while sorting records */
static const int *g_ids;

static int cmp_rec(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    int c = strcmp(g_words + x->word, g_words + y->word);
    if (c) return c;
    for (long i = 0; i < x->n && i < y->n; i++)
        if (g_ids[x->ph + i] != g_ids[y->ph + i]) return g_ids[x->ph + i] < g_ids[y->ph + i] ? -1 : 1;
    return (x->n > y->n) - (x->n < y->n);
}

static int same_rec(const rec *x, const rec *y) { return cmp_rec(x, y) == 0; }

/* Builds the dictionary from the parsed records. Returns 0 or 1 (memory). */
static int build(parser *p, g2p_dict *d)
{
    pname *set = malloc(sizeof(pname) * (size_t)p->ntok);
    int *ids = malloc(sizeof(int) * (size_t)p->ntok);
    if (!set || !ids) return free(set), free(ids), 1;
    memcpy(set, p->tok, sizeof(pname) * (size_t)p->ntok);
    qsort(set, (size_t)p->ntok, sizeof(pname), cmp_pname);
    long np = 0;
    for (long i = 0; i < p->ntok; i++)
        if (np == 0 || strcmp(set[np - 1].s, set[i].s) != 0) set[np++] = set[i];
    for (long i = 0; i < p->ntok; i++)
        ids[i] = (int)((pname *)bsearch(&p->tok[i], set, (size_t)np, sizeof(pname), cmp_pname) - set);
    g_words = p->wbuf;
    g_ids = ids;
    qsort(p->recs, (size_t)p->nrec, sizeof(rec), cmp_rec);
    long nr = 0, nw = 0, nph = 0;
    for (long i = 0; i < p->nrec; i++) /* distinct (word, pronunciation) pairs */
        if (nr == 0 || !same_rec(&p->recs[nr - 1], &p->recs[i])) p->recs[nr++] = p->recs[i];
    for (long i = 0; i < nr; i++) {
        nw += i == 0 || strcmp(p->wbuf + p->recs[i - 1].word, p->wbuf + p->recs[i].word) != 0;
        nph += p->recs[i].n;
    }
    size_t bytes = (size_t)p->wlen + (size_t)np * PHONE_MAX + 257;
    d->nwords = (int)nw;
    d->nprons = (int)nr;
    d->nphones = (int)np;
    d->skipped = p->skipped;
    d->words = malloc(sizeof(char *) * (size_t)nw);
    d->first = malloc(sizeof(int) * (size_t)(nw + 1));
    d->pron_at = malloc(sizeof(int) * (size_t)(nr + 1));
    d->ph = malloc(sizeof(int) * (size_t)(nph ? nph : 1));
    d->phones = malloc(sizeof(char *) * (size_t)np);
    d->buf = malloc(bytes);
    if (!d->words || !d->first || !d->pron_at || !d->ph || !d->phones || !d->buf) return free(set), free(ids), 1;
    char *b = d->buf;
    for (long i = 0; i < np; i++) {
        d->phones[i] = strcpy(b, set[i].s);
        b += strlen(b) + 1;
    }
    unsigned char seen[256] = {0};
    long w = -1, at = 0;
    for (long i = 0; i < nr; i++) {
        const char *word = p->wbuf + p->recs[i].word;
        if (w < 0 || strcmp(d->words[w], word) != 0) {
            d->words[++w] = strcpy(b, word);
            b += strlen(b) + 1;
            d->first[w] = (int)i;
            for (const unsigned char *c = (const unsigned char *)word; *c; c++) seen[*c] = 1;
        }
        d->pron_at[i] = (int)at;
        for (long k = 0; k < p->recs[i].n; k++) d->ph[at++] = ids[p->recs[i].ph + k];
    }
    d->first[nw] = (int)nr;
    d->pron_at[nr] = (int)at;
    d->letters = b;
    for (int c = 1; c < 256; c++)
        if (seen[c]) *b++ = (char)c;
    *b = 0;
    free(set);
    free(ids);
    return 0;
}

int g2p_parse(const char *text, size_t len, const char *name, const g2p_read_opts *opts, g2p_dict *d, char *err,
              size_t errn)
{
    static const g2p_read_opts none = {0, 0};
    const g2p_read_opts *o = opts ? opts : &none;
    memset(d, 0, sizeof *d);
    parser p = {0};
    int rc = 0;
    long line = 0;
    for (const char *s = text, *end = text + len; s < end && !rc;) {
        const char *e = memchr(s, '\n', (size_t)(end - s));
        if (!e) e = end;
        line++;
        const char *a = s, *z = e;
        s = e + 1;
        while (a < z && is_space(*a)) a++;
        while (z > a && is_space(z[-1])) z--;
        if (a == z || (z - a >= 3 && memcmp(a, ";;;", 3) == 0) || (z - a == 4 && memcmp(a, "MNCL", 4) == 0)) continue;
        if (memchr(a, 0, (size_t)(z - a)))
            rc = fail(err, errn, "%s: line %ld: a NUL byte: this is not a text dictionary", name, line);
        int r = rc ? 0 : *a == '(' ? parse_festival(&p, a, z, o) : parse_plain(&p, a, z, o);
        if (r == 1) rc = fail(err, errn, "%s: out of memory at line %ld", name, line);
        else if (r == 2)
            rc = fail(err, errn, "%s: line %ld: '%.*s' is neither a Festival entry (\"word\" pos (((ph ...) 1) ...)) "
                      "nor a plain one (WORD PH1 PH2 ...)", name, line, (int)(z - a < 40 ? z - a : 40), a);
        else if (r == 3) rc = fail(err, errn, "%s: line %ld: a phone longer than %d bytes", name, line, PHONE_MAX - 1);
    }
    if (!rc && p.nrec == 0)
        rc = fail(err, errn, "%s: no entries in it (%zu bytes%s)", name, len,
                  p.skipped ? ", every entry longer than the limit" : "");
    if (!rc && build(&p, d)) rc = fail(err, errn, "%s: out of memory building the dictionary", name);
    free(p.wbuf);
    free(p.tok);
    free(p.recs);
    if (rc) g2p_dict_free(d);
    return rc;
}

int g2p_read(const char *path, const g2p_read_opts *opts, g2p_dict *d, char *err, size_t errn)
{
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, errn, "%s: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    int rc = 0;
    do {
        if (len + 65536 > cap) {
            char *t = realloc(text, cap = 2 * cap + 65536);
            if (!t) {
                rc = fail(err, errn, "%s: out of memory reading it", path);
                break;
            }
            text = t;
        }
        n = fread(text + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (!rc && ferror(f)) rc = fail(err, errn, "%s: %s", path, strerror(errno));
    fclose(f);
    if (!rc) rc = g2p_parse(text, len, path, opts, d, err, errn);
    free(text);
    return rc;
}

void g2p_dict_free(g2p_dict *d)
{
    if (!d) return;
    free(d->words);
    free(d->first);
    free(d->pron_at);
    free(d->ph);
    free(d->phones);
    free(d->buf);
    memset(d, 0, sizeof *d);
}

int g2p_phone_id(const g2p_dict *d, const char *name)
{
    int lo = 0, hi = d->nphones - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2, c = strcmp(d->phones[m], name);
        if (!c) return m;
        if (c < 0) lo = m + 1;
        else hi = m - 1;
    }
    return -1;
}

int g2p_word_id(const g2p_dict *d, const char *word)
{
    int lo = 0, hi = d->nwords - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2, c = strcmp(d->words[m], word);
        if (!c) return m;
        if (c < 0) lo = m + 1;
        else hi = m - 1;
    }
    return -1;
}

void g2p_split(int nwords, uint64_t seed, double test_pct, double dev_pct, unsigned char *split)
{
    int *perm = malloc(sizeof(int) * (size_t)(nwords > 0 ? nwords : 1));
    memset(split, 0, (size_t)(nwords > 0 ? nwords : 0));
    if (!perm || nwords <= 0) {
        free(perm);
        return;
    }
    loom_rng r = loom_rng_init(seed);
    for (int i = 0; i < nwords; i++) perm[i] = i;
    for (int i = nwords - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)loom_rng_below(&r, (uint32_t)i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int nt = (int)(nwords * test_pct / 100.0), nd = (int)(nwords * dev_pct / 100.0);
    if (nwords >= 3 && test_pct > 0 && nt < 1) nt = 1;
    if (nwords >= 3 && dev_pct > 0 && nd < 1) nd = 1;
    for (int i = 0; i < nt + nd && i < nwords; i++) split[perm[i]] = i < nt ? 2 : 1;
    free(perm);
}

/* Levenshtein over one row r of nb + 1 ints. */
static int edit_rows(const int *a, int na, const int *b, int nb, int *r)
{
    for (int j = 0; j <= nb; j++) r[j] = j;
    for (int i = 1; i <= na; i++) {
        int diag = r[0];
        r[0] = i;
        for (int j = 1; j <= nb; j++) {
            int up = r[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (r[j - 1] + 1 < best) best = r[j - 1] + 1;
            diag = up;
            r[j] = best;
        }
    }
    return r[nb];
}

int g2p_edit_distance(const int *a, int na, const int *b, int nb)
{
    int row[G2P_MAX_LEN * 4 + 1];
    if (nb < (int)(sizeof row / sizeof row[0])) return edit_rows(a, na, b, nb, row);
    int *r = malloc(sizeof(int) * (size_t)(nb + 1)), d = na > nb ? na : nb; /* without memory: an upper bound */
    if (r) d = edit_rows(a, na, b, nb, r);
    free(r);
    return d;
}

void g2p_score(const g2p_dict *d, int w, const int *pred, int n, int *edits, int *ref_len, int *exact)
{
    *edits = -1, *ref_len = 0, *exact = 0;
    for (int p = d->first[w]; p < d->first[w + 1]; p++) {
        const int *ref = d->ph + d->pron_at[p];
        int len = d->pron_at[p + 1] - d->pron_at[p], e = g2p_edit_distance(pred, n, ref, len);
        if (*edits < 0 || e < *edits || (e == *edits && len < *ref_len)) *edits = e, *ref_len = len;
    }
    *exact = *edits == 0;
}
