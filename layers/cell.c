/* Shared cell plumbing: PyTorch-style parameter names and init, the fused
 * form's parameter checks, kinds by name. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

loom_init loom_cell_default_init(int hidden)
{
    float k = 1.0f / sqrtf((float)hidden);
    return (loom_init){LOOM_INIT_UNIFORM, -k, k};
}

loom_tensor *loom_cell_param(loom_cell *cell, loom_params *ps, const char *prefix, const char *name, int layer,
                             int rows, int cols, loom_init init)
{
    if (!cell) return LOOM_NULL_ARG("cell_param", "cell"), NULL;
    if (!ps) return LOOM_NULL_ARG("cell_param", "params"), NULL;
    if (!prefix) return LOOM_NULL_ARG("cell_param", "prefix"), NULL;
    if (!name) return LOOM_NULL_ARG("cell_param", "name"), NULL;
    if (cell->nw == cell->w_cap) {
        int cap = cell->w_cap ? 2 * cell->w_cap : 8;
        loom_tensor **w = loom_malloc((size_t)cap * sizeof *w);
        if (!w) {
            loom_error_set(LOOM_ENOMEM, "cell '%s': out of memory for %d parameters", cell->name, cap);
            return NULL;
        }
        if (cell->nw) memcpy(w, cell->w, (size_t)cell->nw * sizeof *w);
        loom_free(cell->w);
        cell->w = w;
        cell->w_cap = cap;
    }
    char full[160];
    const char *dir = cell->reverse ? "_reverse" : ""; /* a bidirectional layer's reverse direction */
    if (snprintf(full, sizeof full, "%s.%s_l%d%s", prefix, name, layer, dir) >= (int)sizeof full) {
        loom_error_set(LOOM_EARG, "cell '%s': parameter name '%s.%s_l%d%s' is too long", cell->name, prefix, name, layer,
                       dir);
        return NULL;
    }
    loom_tensor *w = loom_params_add(ps, full, rows, cols, init);
    if (w) cell->w[cell->nw++] = w;
    return w;
}

loom_tensor *loom_cell_find(const loom_cell *cell, const loom_params *ps, const char *name)
{
    if (!cell) return LOOM_NULL_ARG("cell_find", "cell"), NULL;
    if (!ps) return LOOM_NULL_ARG("cell_find", "params"), NULL;
    if (!name) return LOOM_NULL_ARG("cell_find", "name"), NULL;
    size_t n = strlen(name);
    for (int i = 0; i < loom_params_count(ps); i++) {
        const char *full = loom_params_name(ps, i), *dot = strrchr(full, '.');
        const char *base = dot ? dot + 1 : full, *suffix = strrchr(base, '_');
        if (suffix && suffix > base && strcmp(suffix, "_reverse") == 0) { /* "weight_ih_l0_reverse": the _l0 */
            const char *p = suffix - 1;
            while (p > base && *p != '_') p--;
            suffix = *p == '_' ? p : NULL;
        }
        if (!suffix || (size_t)(suffix - base) != n || strncmp(base, name, n) != 0) continue;
        loom_tensor *v = loom_params_view((loom_params *)ps, i);
        for (int k = 0; k < cell->nw; k++)
            if (cell->w[k] == v) return v;
    }
    return NULL;
}

loom_status loom_cell_declare_gates(loom_cell *c, loom_params *ps, const char *prefix, int layer, int G)
{
    if (!c) return LOOM_NULL_ARG("cell_declare_gates", "cell");
    if (!ps) return LOOM_NULL_ARG("cell_declare_gates", "params");
    if (!prefix) return LOOM_NULL_ARG("cell_declare_gates", "prefix");
    if (G < 1) return loom_error_set(LOOM_EARG, "cell '%s': %d gates (expected at least 1)", c->name, G);
    loom_init u = loom_cell_default_init(c->hidden_size);
    int H = c->hidden_size;
    c->nw = 0;
    c->gates = G;
    if (!loom_cell_param(c, ps, prefix, "weight_ih", layer, G * H, c->input_size, u) ||
        !loom_cell_param(c, ps, prefix, "weight_hh", layer, G * H, H, u) ||
        !loom_cell_param(c, ps, prefix, "bias_ih", layer, 1, G * H, u) ||
        !loom_cell_param(c, ps, prefix, "bias_hh", layer, 1, G * H, u))
        return LOOM_EARG;
    return LOOM_OK;
}

loom_status loom_cell_check_fused(const loom_cell *c, int layer)
{
    int GH = c->gates * c->hidden_size, H = c->hidden_size;
    const int want[4][2] = {{GH, c->input_size}, {GH, H}, {1, GH}, {1, GH}};
    static const char *const names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    if (c->nw < 4)
        return loom_error_set(LOOM_EARG, "layer %d cell '%s': a fused cell starts with weight_ih, weight_hh, bias_ih, bias_hh "
                              "(loom_cell_declare_gates), but it declared %d parameters", layer, c->name, c->nw);
    for (int i = 0; i < 4; i++)
        if (c->w[i]->rows != want[i][0] || c->w[i]->cols != want[i][1])
            return loom_error_set(LOOM_ESHAPE, "layer %d cell '%s': parameter %d (%s) is [%dx%d], the fused form needs [%dx%d]",
                                  layer, c->name, i, names[i], c->w[i]->rows, c->w[i]->cols, want[i][0], want[i][1]);
    for (int i = 4; i < c->nw; i++)
        if (c->w[i]->rows != 1)
            return loom_error_set(LOOM_ESHAPE, "layer %d cell '%s': extra parameter %d is [%dx%d]; a fused cell's extras are rows [1 x n]",
                                  layer, c->name, i, c->w[i]->rows, c->w[i]->cols);
    return LOOM_OK;
}

loom_status loom_cell_init_kind(loom_cell *c, const char *kind, int input, int hidden)
{
    if (!c) return LOOM_NULL_ARG("cell_init_kind", "cell");
    if (!kind) return LOOM_NULL_ARG("cell_init_kind", "kind");
    if (input <= 0 || hidden <= 0)
        return loom_error_set(LOOM_EARG, "cell '%s': input size %d and hidden size %d must be positive", kind, input, hidden);
    if (strcmp(kind, "lstm") == 0) loom_lstm_init(c, input, hidden, 0.0f);
    else if (strcmp(kind, "gru") == 0) loom_gru_init(c, input, hidden);
    else if (strcmp(kind, "rnn") == 0 || strcmp(kind, "rnn_tanh") == 0) loom_rnn_init(c, input, hidden, 0);
    else if (strcmp(kind, "rnn_relu") == 0) loom_rnn_init(c, input, hidden, 1);
    else return loom_error_set(LOOM_EARG, "unknown cell '%s' (expected lstm, gru, rnn or rnn_relu)", kind);
    return LOOM_OK;
}

void loom_cell_base(loom_cell *c, const char *name, int input, int hidden, int n_state, loom_cell_declare_fn declare,
                    loom_cell_step_fn step)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->input_size = input;
    c->hidden_size = hidden;
    c->n_state = n_state;
    c->declare = declare;
    c->step = step;
}
