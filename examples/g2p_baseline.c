/* seq2seq's baseline: letters aligned to 0, 1 or 2 phones by hard EM, then each letter
 * predicts the chunk it most often took in its context (backing off to narrower ones). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "g2p_data.h"

#define EM_ROUNDS 5

/* Chunk codes for P phones: 0 nothing, 1 + p one phone, 1 + P + p1 * P + p2 two. */
static int nchunks(int P) { return 1 + P + P * P; }

static int chunk_phones(int c, int P, int *out)
{
    if (c == 0) return 0;
    if (c <= P) return out[0] = c - 1, 1;
    c -= 1 + P;
    out[0] = c / P, out[1] = c % P;
    return 2;
}

/* The cheapest alignment of a word's letters to its phones (each letter 0, 1 or 2 phones)
 * under cost[letter * NC + chunk]: each letter's chunk into chunks[]. Returns 0, or 1 if none fits. */
static int align(const unsigned char *w, int L, const int *ph, int M, const float *cost, int P, int *chunks)
{
    int NC = nchunks(P);
    float best[G2P_MAX_LEN + 1][G2P_MAX_LEN + 1];
    signed char back[G2P_MAX_LEN + 1][G2P_MAX_LEN + 1];
    if (M > 2 * L) return 1;
    for (int i = 0; i <= L; i++)
        for (int j = 0; j <= M; j++) best[i][j] = INFINITY, back[i][j] = -1;
    best[0][0] = 0;
    for (int i = 1; i <= L; i++) {
        const float *c = cost + (size_t)w[i - 1] * NC;
        for (int j = 0; j <= M; j++)
            for (int k = 0; k <= 2 && k <= j; k++) {
                int code = k == 0 ? 0 : k == 1 ? 1 + ph[j - 1] : 1 + P + ph[j - 2] * P + ph[j - 1];
                float v = best[i - 1][j - k] + c[code];
                if (v < best[i][j]) best[i][j] = v, back[i][j] = (signed char)k;
            }
    }
    if (!isfinite(best[L][M])) return 1;
    for (int i = L, j = M; i > 0; i--) {
        int k = back[i][j];
        chunks[i - 1] = k == 0 ? 0 : k == 1 ? 1 + ph[j - 1] : 1 + P + ph[j - 2] * P + ph[j - 1];
        j -= k;
    }
    return 0;
}

/* The context of letter i of w with h letters each side (0 beyond the word's ends), as a key. */
static uint64_t context_key(const unsigned char *w, int L, int i, int h)
{
    uint64_t k = 0;
    for (int j = i - h; j <= i + h; j++) k = (k << 8) | (j >= 0 && j < L ? w[j] : 0);
    return k;
}

typedef struct pair {
    uint64_t key;
    int chunk;
} pair;

static int cmp_pair(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->chunk > y->chunk) - (x->chunk < y->chunk);
}

/* Sorts the pairs and keeps each key's most frequent chunk (the smaller code on a tie). */
static int majority(pair *v, long n, uint64_t **keys, int **chunk, long *nkeys)
{
    qsort(v, (size_t)n, sizeof(pair), cmp_pair);
    *keys = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    *chunk = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (!*keys || !*chunk) return 1;
    long m = 0;
    for (long i = 0; i < n;) {
        long j = i, best_n = 0;
        int best = 0;
        while (j < n && v[j].key == v[i].key) {
            long k = j;
            while (k < n && v[k].key == v[j].key && v[k].chunk == v[j].chunk) k++;
            if (k - j > best_n) best_n = k - j, best = v[j].chunk;
            j = k;
        }
        (*keys)[m] = v[i].key, (*chunk)[m] = best, m++;
        i = j;
    }
    *nkeys = m;
    return 0;
}

int g2p_baseline_fit(g2p_baseline *b, const g2p_dict *d, const unsigned char *split)
{
    memset(b, 0, sizeof *b);
    int P = b->nphones = d->nphones, NC = nchunks(P);
    float *cost = malloc(sizeof(float) * 256 * (size_t)NC);
    double *count = malloc(sizeof(double) * 256 * (size_t)NC);
    int ch[G2P_MAX_LEN];
    long npairs = 0;
    for (int w = 0; w < d->nwords; w++)
        if (!split || split[w] == 0) npairs += (long)strlen(d->words[w]) * (d->first[w + 1] - d->first[w]);
    pair *v = malloc(sizeof(pair) * (size_t)(npairs ? npairs : 1));
    int rc = !cost || !count || !v;
    /* Start: one phone per letter is cheap, none or two dear; then hard EM. */
    for (int c = 0; !rc && c < 256 * NC; c++) {
        int k = c % NC;
        cost[c] = k == 0 ? 4.0f : k <= P ? 1.0f : 4.0f;
    }
    for (int round = 0; !rc && round < EM_ROUNDS; round++) {
        memset(count, 0, sizeof(double) * 256 * (size_t)NC);
        b->aligned = b->unaligned = 0;
        for (int w = 0; w < d->nwords; w++) {
            if (split && split[w] != 0) continue;
            const unsigned char *s = (const unsigned char *)d->words[w];
            int L = (int)strlen(d->words[w]);
            for (int p = d->first[w]; p < d->first[w + 1]; p++) {
                if (align(s, L, d->ph + d->pron_at[p], d->pron_at[p + 1] - d->pron_at[p], cost, P, ch)) {
                    b->unaligned++;
                    continue;
                }
                b->aligned++;
                for (int i = 0; i < L; i++) count[(size_t)s[i] * NC + ch[i]] += 1;
            }
        }
        for (int l = 0; l < 256; l++) {
            double tot = 0;
            for (int k = 0; k < NC; k++) tot += count[(size_t)l * NC + k];
            for (int k = 0; k < NC; k++)
                cost[(size_t)l * NC + k] = (float)-log((count[(size_t)l * NC + k] + 0.1) / (tot + 0.1 * NC));
        }
    }
    /* The final alignments' contexts, one table per half-width. */
    for (int h = 0; !rc && h < 3; h++) {
        long n = 0;
        for (int w = 0; w < d->nwords; w++) {
            if (split && split[w] != 0) continue;
            const unsigned char *s = (const unsigned char *)d->words[w];
            int L = (int)strlen(d->words[w]);
            for (int p = d->first[w]; p < d->first[w + 1]; p++) {
                if (align(s, L, d->ph + d->pron_at[p], d->pron_at[p + 1] - d->pron_at[p], cost, P, ch)) continue;
                for (int i = 0; i < L; i++) v[n++] = (pair){context_key(s, L, i, 2 - h), ch[i]};
            }
        }
        rc = majority(v, n, &b->keys[h], &b->chunk[h], &b->nkeys[h]);
    }
    free(cost);
    free(count);
    free(v);
    if (rc) g2p_baseline_free(b);
    return rc;
}

static int find(const uint64_t *keys, long n, uint64_t k)
{
    long lo = 0, hi = n - 1;
    while (lo <= hi) {
        long m = (lo + hi) / 2;
        if (keys[m] == k) return (int)m;
        if (keys[m] < k) lo = m + 1;
        else hi = m - 1;
    }
    return -1;
}

int g2p_baseline_predict(const g2p_baseline *b, const char *word, int *out, int cap)
{
    const unsigned char *s = (const unsigned char *)word;
    int L = (int)strlen(word), n = 0, ph[2];
    for (int i = 0; i < L; i++) {
        int c = 0;
        for (int h = 0; h < 3; h++) {
            int at = find(b->keys[h], b->nkeys[h], context_key(s, L, i, 2 - h));
            if (at >= 0) {
                c = b->chunk[h][at];
                break;
            }
        }
        int k = chunk_phones(c, b->nphones, ph);
        for (int j = 0; j < k && n < cap; j++) out[n++] = ph[j];
    }
    return n;
}

void g2p_baseline_free(g2p_baseline *b)
{
    if (!b) return;
    for (int h = 0; h < 3; h++) free(b->keys[h]), free(b->chunk[h]);
    memset(b, 0, sizeof *b);
}
