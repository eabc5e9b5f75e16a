/* bidir_export: a 2-layer bidirectional stack on a fixed input with variable
 * lengths, for tests/torch_interop.py. Writes a checkpoint with the parameters
 * (/model, PyTorch's state_dict names), the input and the outputs (/io).
 * Usage: bidir_export lstm|gru|rnn OUT.h5 [IN.h5]
 * With IN.h5 the parameters are read from its /model (weights torch made) instead
 * of drawn from a fixed seed. Datasets under /io, time-major like loom:
 *   x [T*B x I], lengths [B], h0 (and c0 for the LSTM) [2*layers*B x H] in PyTorch's
 *   h_n order (index 2l + direction), y [T*B x 2H], h_n (c_n) likewise, h_last [B x 2H]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom_io.h"

enum { I = 3, H = 5, T = 6, B = 4, L = 2 };

static int fail(const char *what)
{
    fprintf(stderr, "bidir_export: %s: %s\n", what, loom_error_message());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bidir_export lstm|gru|rnn OUT.h5 [IN.h5]\n");
        return 2;
    }
    const char *kind = argv[1];
    loom_cell cells[L];
    for (int l = 0; l < L; l++)
        if (loom_cell_init_kind(&cells[l], kind, l ? H : I, H) != LOOM_OK) return fail("cell");
    loom_seq s;
    loom_params *ps = loom_params_new();
    loom_rng rng = loom_rng_init(2024);
    if (!ps || loom_seq_init(&s, cells, L, 0.0f) != LOOM_OK || loom_seq_set_bidirectional(&s, 1) != LOOM_OK ||
        loom_seq_declare(&s, ps, kind) != LOOM_OK || loom_params_alloc(ps, &rng) != LOOM_OK)
        return fail("stack");
    if (argc > 3) {
        loom_ckpt *in = loom_ckpt_open(argv[3]);
        loom_status st = in ? loom_ckpt_read_params(in, "/model", ps) : LOOM_EIO;
        loom_ckpt_close(in);
        if (st != LOOM_OK) return fail(argv[3]);
    }
    int S = s.cells[0].n_state;
    static const int lengths[B] = {3, T, 1, 5}; /* unsorted */
    static float x[T * B * I];
    loom_rng_fill_uniform(&rng, x, T * B * I, -1, 1);
    loom_state *st = loom_state_new(&s, B);
    if (!st) return fail("state");
    size_t n;
    float *s0 = loom_state_data(st, &n);
    loom_rng_fill_uniform(&rng, s0, n, -0.5f, 0.5f);

    loom_tape *t = loom_tape_new(0);
    if (!t) return fail("tape");
    loom_tape_set_nograd(t, 1);
    loom_seq_out o;
    loom_tensor *xt = loom_tape_from(t, T * B, I, x);
    if (!xt || loom_seq_forward(&s, t, xt, T, B, lengths, 0, st, NULL, &o) != LOOM_OK) return fail("forward");

    /* States in PyTorch's order: part k of layer l, direction d at h_n[2l + d]. */
    float *init = malloc(sizeof(float) * 2 * L * B * H), *fin = malloc(sizeof(float) * 2 * L * B * H);
    int64_t lens64[B];
    for (int b = 0; b < B; b++) lens64[b] = lengths[b];
    loom_ckpt *c = loom_ckpt_create(argv[2]);
    loom_status r = c && init && fin ? LOOM_OK : LOOM_EIO;
    if (r == LOOM_OK) r = loom_ckpt_write_str(c, "/config/cell", kind);
    if (r == LOOM_OK) r = loom_ckpt_write_params(c, "/model", ps);
    if (r == LOOM_OK) r = loom_ckpt_write_floats(c, "/io/x", x, T * B, I);
    if (r == LOOM_OK) r = loom_ckpt_write_i64(c, "/io/lengths", lens64, B);
    if (r == LOOM_OK) r = loom_ckpt_write_floats(c, "/io/y", o.y->data, T * B, 2 * H);
    if (r == LOOM_OK) r = loom_ckpt_write_floats(c, "/io/h_last", o.h_last->data, B, 2 * H);
    static const char *const names[2][2] = {{"/io/h0", "/io/h_n"}, {"/io/c0", "/io/c_n"}};
    for (int k = 0; k < S && r == LOOM_OK; k++) {
        for (int l = 0; l < L; l++)
            for (int d = 0; d < 2; d++) {
                size_t at = (size_t)(2 * l + d) * B * H;
                memcpy(init + at, loom_state_part(st, l, d * S + k), sizeof(float) * B * H);
                memcpy(fin + at, o.last[loom_seq_state_index(&s, l, d * S + k)]->data, sizeof(float) * B * H);
            }
        r = loom_ckpt_write_floats(c, names[k][0], init, 2 * L * B, H);
        if (r == LOOM_OK) r = loom_ckpt_write_floats(c, names[k][1], fin, 2 * L * B, H);
    }
    if (r == LOOM_OK) r = loom_ckpt_commit(c);
    else loom_ckpt_abort(c);
    free(init), free(fin);
    loom_tape_free(t);
    loom_state_free(st);
    loom_seq_free(&s);
    loom_params_free(ps);
    return r == LOOM_OK ? 0 : fail(argv[2]);
}
