/* Data helpers: text corpora and the adding problem. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Appends a file's bytes to *buf. */
static int append_file(const char *path, unsigned char **buf, size_t *len, size_t *cap, const char *prog)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "%s: --data %s: cannot open: %s\n", prog, path, strerror(errno));
        return 1;
    }
    for (;;) {
        if (*len + 65536 > *cap) {
            size_t nc = (*cap + 65536) * 2;
            unsigned char *nb = realloc(*buf, nc);
            if (!nb) {
                fclose(fp);
                fprintf(stderr, "%s: --data %s: out of memory\n", prog, path);
                return 1;
            }
            *buf = nb, *cap = nc;
        }
        size_t got = fread(*buf + *len, 1, 65536, fp);
        *len += got;
        if (got < 65536) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) fprintf(stderr, "%s: --data %s: read error\n", prog, path);
    return err ? 1 : 0;
}

unsigned char *loom_app_read_text(const char *path, size_t *len, const char *prog)
{
    struct stat st;
    unsigned char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: --data %s: %s\n", prog, path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) {
            fprintf(stderr, "%s: --data %s: cannot list: %s\n", prog, path, strerror(errno));
            return NULL;
        }
        char *names[1024];
        int n = 0;
        struct dirent *e;
        int too_many = 0;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.' && !strchr(e->d_name, '.')) {
                if (n == 1024) {
                    too_many = 1;
                    break;
                }
                names[n++] = strdup(e->d_name);
            }
        closedir(d);
        if (too_many) { /* refuse rather than train on an arbitrary subset */
            for (int i = 0; i < n; i++) free(names[i]);
            fprintf(stderr, "%s: --data %s: more than 1024 files; concatenate them into one file\n", prog, path);
            return NULL;
        }
        qsort(names, (size_t)n, sizeof *names, cmp_str);
        int bad = 0;
        for (int i = 0; i < n; i++) {
            char full[4096];
            snprintf(full, sizeof full, "%s/%s", path, names[i]);
            struct stat fs;
            if (!bad && stat(full, &fs) == 0 && S_ISREG(fs.st_mode)) bad = append_file(full, &buf, len, &cap, prog);
            free(names[i]);
        }
        if (bad) {
            free(buf);
            return NULL;
        }
    } else if (append_file(path, &buf, len, &cap, prog)) {
        free(buf);
        return NULL;
    }
    if (*len == 0) {
        fprintf(stderr, "%s: --data %s: no text in it\n", prog, path);
        free(buf);
        return NULL;
    }
    return buf;
}

void loom_app_adding_batch(loom_rng *rng, int T, int B, int row0, int rows, float *x, float *y)
{
    uint64_t per_row = (uint64_t)T + 2; /* two markers and T values */
    for (int b = 0; b < rows; b++) {
        loom_rng r = {rng->seed, rng->counter + (uint64_t)(row0 + b) * per_row};
        /* One marker in each half, as in Hochreiter & Schmidhuber's setup. */
        int half = T / 2 > 0 ? T / 2 : 1;
        int m1 = (int)loom_rng_below(&r, (uint32_t)half);
        int m2 = T > 1 ? half + (int)loom_rng_below(&r, (uint32_t)(T - half)) : 0;
        double s = 0;
        for (int t = 0; t < T; t++) {
            float v = loom_rng_uniform(&r);
            int mark = t == m1 || t == m2;
            x[((size_t)t * rows + b) * 2] = v;
            x[((size_t)t * rows + b) * 2 + 1] = (float)mark;
            if (mark) s += v;
        }
        y[b] = (float)s;
    }
    rng->counter += (uint64_t)B * per_row;
}

void loom_app_heldout_layout(long pairs, int T, int batch, int *B, long *len)
{
    int b = batch;
    if (b > pairs / T) b = pairs / T > 0 ? (int)(pairs / T) : 1;
    *B = b;
    *len = pairs / b;
}

double loom_app_heldout_nll(loom_tape *t, const loom_seq *seq, const int *ids, long pairs, int T, int batch,
                            loom_app_logits_fn logits, void *ctx)
{
    int B;
    long len;
    loom_app_heldout_layout(pairs, T, batch, &B, &len);
    if (len < 1) return NAN;
    loom_state *s = loom_state_new(seq, B);
    int *idx = malloc(sizeof(int) * (size_t)T * (size_t)B), *tgt = malloc(sizeof(int) * (size_t)T * (size_t)B);
    double total = 0;
    long count = 0;
    int was = loom_tape_set_nograd(t, 1);
    for (long c = 0; c < len && s && idx && tgt; c += T) {
        int w = (int)(len - c < T ? len - c : T);
        for (int k = 0; k < w; k++)
            for (int b = 0; b < B; b++) {
                idx[k * B + b] = ids[(long)b * len + c + k];
                tgt[k * B + b] = ids[(long)b * len + c + k + 1];
            }
        loom_tape_reset(t);
        loom_tensor *l = loom_op_softmax_ce(t, logits(ctx, t, idx, w, B, s), tgt, NULL);
        if (!l) break;
        total += (double)l->data[0] * w * B;
        count += (long)w * B;
    }
    loom_tape_set_nograd(t, was);
    loom_state_free(s);
    free(idx);
    free(tgt);
    return count == (long)B * len ? total / (double)count : NAN;
}

int loom_app_stream_window(const int *ids, long stream_len, long *cursor, int T, int B, int row0, int *idx, int *tgt)
{
    int wrapped = *cursor + T + 1 > stream_len;
    if (wrapped) *cursor = 0;
    for (int s = 0; s < T; s++)
        for (int b = 0; b < B; b++) {
            long p = (long)(row0 + b) * stream_len + *cursor + s;
            idx[s * B + b] = ids[p];
            tgt[s * B + b] = ids[p + 1];
        }
    *cursor += T;
    return wrapped;
}
