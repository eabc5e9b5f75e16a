/* A stack's recurrent state for B rows, in one flat buffer [layer][part][B x H_l];
 * a bidirectional layer's parts are the forward direction's, then the reverse one's. */
#include <string.h>

#include "internal.h"

struct loom_state {
    int batch, parts, layers, dirs;
    int *hidden;   /* [parts] H of each part */
    size_t *off;   /* [parts + 1] floats before each part */
    int *first;    /* [layers + 1] index of each layer's first part */
    float *data;
};

int loom_seq_state_count(const loom_seq *s)
{
    if (!s) return LOOM_NULL_ARG("seq_state_count", "stack"), 0;
    int n = 0;
    for (int l = 0; l < s->layers; l++) n += s->cells[l].n_state;
    return loom_seq_dirs(s) * n;
}

int loom_seq_state_index(const loom_seq *s, int layer, int k)
{
    if (!s) return LOOM_NULL_ARG("seq_state_index", "stack"), -1;
    int D = loom_seq_dirs(s);
    if (layer < 0 || layer >= s->layers || k < 0 || k >= D * s->cells[layer].n_state)
        return loom_error_set(LOOM_EARG, "seq_state_index: layer %d part %d does not exist (the stack has %d layers%s)",
                              layer, k, s->layers, D == 2 ? ", bidirectional" : ""), -1;
    int n = 0;
    for (int l = 0; l < layer; l++) n += D * s->cells[l].n_state;
    return n + k;
}

loom_state *loom_state_new(const loom_seq *s, int batch)
{
    if (!s) return LOOM_NULL_ARG("state_new", "stack"), NULL;
    if (!s->cells) return loom_error_set(LOOM_ESTATE, "state_new: the stack is not initialised (loom_seq_init)"), NULL;
    if (batch <= 0) return loom_error_set(LOOM_EARG, "state_new: batch %d is not positive", batch), NULL;
    int P = loom_seq_state_count(s);
    loom_state *st = loom_calloc(1, sizeof *st);
    if (st) {
        st->hidden = loom_calloc((size_t)P, sizeof *st->hidden);
        st->off = loom_calloc((size_t)P + 1, sizeof *st->off);
        st->first = loom_calloc((size_t)s->layers + 1, sizeof *st->first);
    }
    if (!st || !st->hidden || !st->off || !st->first) {
        loom_state_free(st);
        loom_error_set(LOOM_ENOMEM, "state: out of memory");
        return NULL;
    }
    st->batch = batch;
    st->parts = P;
    st->layers = s->layers;
    st->dirs = loom_seq_dirs(s);
    for (int l = 0, i = 0; l < s->layers; l++) {
        st->first[l] = i;
        for (int k = 0; k < st->dirs * s->cells[l].n_state; k++, i++) {
            st->hidden[i] = s->cells[l].hidden_size;
            st->off[i + 1] = st->off[i] + (size_t)batch * st->hidden[i];
        }
    }
    st->first[s->layers] = P;
    if (!(st->data = loom_calloc(st->off[P] ? st->off[P] : 1, sizeof(float)))) {
        loom_state_free(st);
        loom_error_set(LOOM_ENOMEM, "state: out of memory for %zu values", st->off[P]);
        return NULL;
    }
    return st;
}

void loom_state_free(loom_state *st)
{
    if (!st) return;
    loom_free(st->hidden);
    loom_free(st->off);
    loom_free(st->first);
    loom_free(st->data);
    loom_free(st);
}

void loom_state_zero(loom_state *st)
{
    if (!st) {
        LOOM_NULL_ARG("state_zero", "state");
        return;
    }
    memset(st->data, 0, st->off[st->parts] * sizeof(float));
}

int loom_state_batch(const loom_state *st) { return st ? st->batch : (LOOM_NULL_ARG("state_batch", "state"), 0); }

float *loom_state_part(loom_state *st, int layer, int k)
{
    if (!st) return LOOM_NULL_ARG("state_part", "state"), NULL;
    if (layer < 0 || layer >= st->layers || k < 0 || k >= st->first[layer + 1] - st->first[layer])
        return loom_error_set(LOOM_EARG, "state_part: layer %d part %d does not exist (the state has %d layers)",
                              layer, k, st->layers), NULL;
    return st->data + st->off[st->first[layer] + k];
}

float *loom_state_data(loom_state *st, size_t *n)
{
    if (n) *n = st ? st->off[st->parts] : 0;
    return st ? st->data : (LOOM_NULL_ARG("state_data", "state"), NULL);
}

loom_status loom_state_copy(loom_state *dst, const loom_state *src)
{
    if (!dst) return LOOM_NULL_ARG("state_copy", "destination");
    if (!src) return LOOM_NULL_ARG("state_copy", "source");
    if (dst->batch != src->batch || dst->parts != src->parts || dst->dirs != src->dirs ||
        dst->off[dst->parts] != src->off[src->parts])
        return loom_error_set(LOOM_ESTATE, "state copy: a state of batch %d and %d parts%s into one of batch %d and %d parts%s",
                              src->batch, src->parts, src->dirs == 2 ? " (bidirectional)" : "", dst->batch, dst->parts,
                              dst->dirs == 2 ? " (bidirectional)" : "");
    memcpy(dst->data, src->data, src->off[src->parts] * sizeof(float));
    return LOOM_OK;
}

loom_status loom_state_store(loom_state *st, const loom_seq_out *out)
{
    if (!st) return LOOM_NULL_ARG("state_store", "state");
    if (!out) return LOOM_NULL_ARG("state_store", "out");
    if (!out->last || out->n_last != st->parts)
        return loom_error_set(LOOM_ESTATE, "state store: the forward pass gave %d state parts, the state holds %d",
                              out->n_last, st->parts);
    for (int i = 0; i < st->parts; i++)
        if (!out->last[i] || out->last[i]->rows != st->batch || out->last[i]->cols != st->hidden[i])
            return loom_error_set(LOOM_ESTATE, "state store: part %d is not [%dx%d] (batch %d)", i, st->batch,
                                  st->hidden[i], st->batch);
    for (int i = 0; i < st->parts; i++)
        memcpy(st->data + st->off[i], out->last[i]->data, (size_t)st->batch * st->hidden[i] * sizeof(float));
    return LOOM_OK;
}

int loom_state_fits(const loom_state *st, const loom_seq *s)
{
    if (st->parts != loom_seq_state_count(s) || st->layers != s->layers || st->dirs != loom_seq_dirs(s)) return 0;
    for (int l = 0, i = 0; l < s->layers; l++)
        for (int k = 0; k < st->dirs * s->cells[l].n_state; k++, i++)
            if (st->hidden[i] != s->cells[l].hidden_size) return 0;
    return 1;
}
