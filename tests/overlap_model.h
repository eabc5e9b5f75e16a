/* The model of the overlap tests: embedding -> 2 LSTM layers -> linear head, softmax CE,
 * declared as bench's C is (layers, embedding, head), so that backward finishes the head
 * first, the top layer next, and the embedding last. Data are keyed by the global row. */
#ifndef LOOM_TESTS_OVERLAP_MODEL_H
#define LOOM_TESTS_OVERLAP_MODEL_H

#include <stdlib.h>

#include "loom_layers.h"

typedef struct om_model {
    loom_params *ps;
    loom_seq seq;
    loom_embedding emb;
    loom_linear head;
    int T, B; /* B: this process's rows */
    int *idx, *tgt;
} om_model;

enum { OM_V = 13, OM_E = 8, OM_H = 24 };

static inline uint32_t om_hash(uint32_t x)
{
    x ^= x >> 16, x *= 0x7feb352dU, x ^= x >> 15, x *= 0x846ca68bU, x ^= x >> 16;
    return x;
}

/* fused 0 unrolls the layers into many small nodes. LOOM_OK or the failing call's status. */
static inline loom_status om_init(om_model *m, int fused, int T, int B, int row0)
{
    loom_cell c[2];
    loom_lstm_init(&c[0], OM_E, OM_H, 0.0f);
    loom_lstm_init(&c[1], OM_H, OM_H, 0.0f);
    m->T = T, m->B = B;
    m->ps = loom_params_new();
    loom_status st = loom_seq_init(&m->seq, c, 2, 0.0f);
    if (st != LOOM_OK) return st;
    m->seq.fused = fused;
    loom_rng rng = loom_rng_init(7);
    if ((st = loom_seq_declare(&m->seq, m->ps, "lstm")) != LOOM_OK ||
        (st = loom_embedding_declare(&m->emb, m->ps, "embedding", OM_V, OM_E)) != LOOM_OK ||
        (st = loom_linear_declare(&m->head, m->ps, "head", OM_H, OM_V)) != LOOM_OK || (st = loom_params_alloc(m->ps, &rng)) != LOOM_OK)
        return st;
    m->idx = malloc(sizeof(int) * (size_t)T * B), m->tgt = malloc(sizeof(int) * (size_t)T * B);
    if (!m->idx || !m->tgt) return LOOM_ENOMEM;
    for (int t = 0; t < T; t++)
        for (int r = 0; r < B; r++) {
            uint32_t g = (uint32_t)(t * 1000 + row0 + r);
            m->idx[t * B + r] = (int)(om_hash(2 * g) % OM_V), m->tgt[t * B + r] = (int)(om_hash(2 * g + 1) % OM_V);
        }
    return LOOM_OK;
}

static inline loom_tensor *om_forward(om_model *m, loom_tape *t)
{
    loom_seq_out o;
    loom_tensor *x = loom_op_embedding(t, m->emb.weight, m->idx, m->T * m->B);
    if (!x || loom_seq_forward(&m->seq, t, x, m->T, m->B, NULL, 1, NULL, NULL, &o) != LOOM_OK) return NULL;
    return loom_op_softmax_ce(t, loom_linear_apply(t, o.y, m->head.weight, m->head.bias), m->tgt, NULL);
}

static inline void om_free(om_model *m)
{
    loom_seq_free(&m->seq);
    loom_params_free(m->ps);
    free(m->idx), free(m->tgt);
}

#endif
