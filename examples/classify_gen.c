/* classify's questions to a trained model: --predict (the language of given words)
 * and --generate (words sampled for a language, judged by the classifier). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"

void classify_word_text(const classify *m, const word_enc *e, long i, char *out)
{
    size_t k = 0;
    for (int j = 0; j < e->len[i]; j++) {
        int id = e->ids[i * LANG_MAX_LEN + j];
        if (id >= LANG_FIRST_CHAR) k += (size_t)lang_utf8_encode(m->alpha.cp[id - LANG_FIRST_CHAR], out + k);
        else out[k++] = '?';
    }
    out[k] = 0;
}

/* Draws an id from softmax(row / temp) over ids that may come next: never UNK or BOW,
 * EOW not first (a word has a letter) and nothing else at the last step. */
static int draw(classify *m, const float *row, double temp, int step, double *p)
{
    if (step == LANG_MAX_LEN) return LANG_EOW;
    double mx = -INFINITY, z = 0;
    for (int i = LANG_EOW; i < m->A; i++) mx = fmax(mx, row[i]);
    for (int i = 0; i < m->A; i++) {
        int allowed = i >= LANG_FIRST_CHAR || (i == LANG_EOW && step > 0);
        z += (p[i] = allowed ? exp((row[i] - mx) / temp) : 0);
    }
    double u = loom_rng_uniform(&m->sample_rng) * z;
    for (int i = 0; i < m->A; i++)
        if (p[i] > 0 && (u -= p[i]) < 0) return i;
    return LANG_EOW;
}

int classify_sample(classify *m, loom_tape *t, int c, int n, double temp, word_enc *e)
{
    loom_state *st = loom_state_new(&m->gseq, n);
    double *p = malloc(sizeof(double) * (size_t)m->A);
    int was = loom_tape_set_nograd(t, 1), rc = st && p ? 0 : -1, alive = n;
    if (rc) loom_error_set(LOOM_ENOMEM, "out of memory for sampling %d words", n);
    for (int b = 0; b < n; b++) m->gin[b] = LANG_BOW, m->glang[b] = c, e->len[b] = -1, e->label[b] = c;
    for (int step = 0; !rc && alive > 0 && step <= LANG_MAX_LEN; step++) {
        loom_seq_out o;
        loom_tape_reset(t);
        loom_tensor *lg = classify_gen_logits(m, t, m->gin, m->glang, 1, n, NULL, 0, st, &o);
        if (!lg || loom_state_store(st, &o) != LOOM_OK) rc = -1;
        for (int b = 0; b < n && !rc; b++) {
            if (e->len[b] >= 0) continue; /* finished: its input no longer matters */
            int id = draw(m, lg->data + (size_t)b * m->A, temp, step, p);
            if (id == LANG_EOW) e->len[b] = step, alive--;
            else e->ids[(size_t)b * LANG_MAX_LEN + step] = id;
            m->gin[b] = id;
        }
    }
    loom_tape_set_nograd(t, was);
    loom_state_free(st);
    free(p);
    return rc;
}

/* 1 if the word is in class c's list (words of its own only). */
static int in_list(const classify *m, int c, const char *w)
{
    for (long i = 0; i < m->set.n; i++)
        if (m->set.label[i] == c && strcmp(m->set.pool + m->set.off[i], w) == 0) return 1;
    return 0;
}

int classify_generate(classify *m, loom_tape *t, int c, long count, int show)
{
    word_enc e = {count, malloc(sizeof(int) * (size_t)count * LANG_MAX_LEN), malloc(sizeof(int) * (size_t)count),
                  malloc(sizeof(int) * (size_t)count)};
    long *conf = calloc((size_t)(m->C * m->C), sizeof(long));
    int rc = e.ids && e.len && e.label && conf ? 0 : -1;
    if (rc) loom_error_set(LOOM_ENOMEM, "out of memory for %ld words", count);
    for (long i = 0; i < count && !rc; i += m->max_rows) {
        word_enc part = {0, e.ids + i * LANG_MAX_LEN, e.len + i, e.label + i};
        part.n = count - i < m->max_rows ? count - i : m->max_rows;
        rc = classify_sample(m, t, c, (int)part.n, m->f->temperature, &part);
    }
    if (!rc) rc = classify_run(m, t, &e, conf, NULL, NULL);
    if (rc) {
        fprintf(stderr, PROG ": generating %s words: %s\n", m->names[c], loom_error_message());
        free(e.ids), free(e.len), free(e.label), free(conf);
        return -1;
    }
    long agree = conf[c * m->C + c], known = 0;
    char w[LANG_MAX_LEN * 4 + 1];
    for (long i = 0; i < count && m->set.n > 0; i++) classify_word_text(m, &e, i, w), known += in_list(m, c, w);
    printf("  %-11s %3ld of %ld classified %s (%.0f%%)", m->names[c], agree, count, m->names[c],
           100.0 * (double)agree / (double)count);
    if (m->set.n > 0) printf(", %ld in its list", known);
    printf(":");
    for (long i = 0; i < count && i < show; i++) classify_word_text(m, &e, i, w), printf(" %s", w);
    printf("\n");
    fflush(stdout);
    free(e.ids), free(e.len), free(e.label), free(conf);
    return (int)agree;
}

int classify_predict(classify *m, loom_tape *t)
{
    int n = m->npredict, C = m->C;
    word_enc e = {n, malloc(sizeof(int) * (size_t)n * LANG_MAX_LEN), malloc(sizeof(int) * (size_t)n),
                  calloc((size_t)n, sizeof(int))};
    float *prob = malloc(sizeof(float) * (size_t)(n * C));
    int rc = e.ids && e.len && e.label && prob ? 0 : 1;
    if (rc) fprintf(stderr, PROG ": out of memory\n");
    for (int i = 0; i < n && !rc; i++) {
        const char *w = m->predict[i];
        int unknown = 0;
        uint32_t first = 0;
        e.len[i] = lang_encode(&m->alpha, w, e.ids + (size_t)i * LANG_MAX_LEN, LANG_MAX_LEN, &unknown, &first);
        char ch[5] = {0};
        lang_utf8_encode(first, ch);
        if (e.len[i] == 0) rc = 2, loom_app_fail_all(PROG, "--predict: an empty word");
        else if (e.len[i] > LANG_MAX_LEN)
            rc = 2, loom_app_fail_all(PROG, "--predict '%s': %d characters; the model reads words of at most %d", w,
                                      e.len[i], LANG_MAX_LEN);
        else if (unknown == e.len[i])
            rc = 2, loom_app_fail_all(PROG, "--predict '%s': none of its characters is among the %d letters the model "
                                      "was trained on", w, m->alpha.n);
        else if (unknown > 0)
            loom_app_note(PROG, "--predict '%s': %d character%s ('%s'%s) not in the model's alphabet of %d, read as "
                          "unknown", w, unknown, unknown > 1 ? "s" : "", ch, unknown > 1 ? ", ..." : "", m->alpha.n);
    }
    if (!rc && classify_run(m, t, &e, NULL, prob, NULL)) rc = 1, fprintf(stderr, PROG ": %s\n", loom_error_message());
    for (int i = 0; i < n && !rc; i++) {
        int cps = 0; /* pad by characters, not bytes */
        for (const char *c = m->predict[i]; *c; c++) cps += ((unsigned char)*c & 0xC0) != 0x80;
        printf("%s%*s", m->predict[i], cps < 16 ? 16 - cps : 0, "");
        for (int r = 0; r < 3 && r < C; r++) {
            int best = 0;
            for (int c = 1; c < C; c++) best = prob[i * C + c] > prob[i * C + best] ? c : best;
            printf("  %-10s %.3f", m->names[best], prob[i * C + best]);
            prob[i * C + best] = -1; /* taken */
        }
        printf("\n");
    }
    free(e.ids), free(e.len), free(e.label), free(prob);
    return rc;
}
