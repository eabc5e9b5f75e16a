/* A peephole LSTM (Gers & Schmidhuber): an LSTM whose input and forget gates
 * also see the previous cell state, and whose output gate sees the new one,
 * through per-unit weights. A user cell written on loom's public cell API
 * (examples/peephole.c), with a fused kernel pair and a primitive-op step. */
#ifndef LOOM_EXAMPLES_PEEPHOLE_H
#define LOOM_EXAMPLES_PEEPHOLE_H

#include "loom_layers.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills c with the peephole LSTM cell: gate order i, f, g, o (PyTorch's), state
 * (h, c), parameters weight_ih, weight_hh, bias_ih, bias_hh like loom's LSTM plus
 * the rows peep_i, peep_f, peep_o [1 x hidden]:
 *     i = sigmoid(P_i + peep_i * c_prev)    f = sigmoid(P_f + peep_f * c_prev)
 *     g = tanh(P_g)                         c = f * c_prev + i * g
 *     o = sigmoid(P_o + peep_o * c)         h = o * tanh(c)
 * where P = x W_ih^T + b_ih + h_prev W_hh^T + b_hh. */
void peephole_lstm_init(loom_cell *c, int input, int hidden);

#ifdef __cplusplus
}
#endif
#endif
