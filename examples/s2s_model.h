/* seq2seq's model: letters -> (bidirectional) recurrent encoder -> a recurrent decoder
 * over phones that attends to the encoder's states at every step (Luong's "general"
 * score h_dec W_a h_enc, the attentional state fed back as input), trained with teacher
 * forcing; greedy and beam-search decoding. Ids: letters 1..nletters (0 is padding);
 * phones 0..nphones-1, and nphones is the end token on the output side and the start
 * token on the input side. */
#ifndef LOOM_S2S_MODEL_H
#define LOOM_S2S_MODEL_H

#include "loom_layers.h"

/* Longest word and phone sequence a batch holds (the reader's limit). */
#define S2S_MAX_LEN 48
/* Most beams s2s_beam takes. */
#define S2S_MAX_BEAM 64

typedef struct s2s_model {
    int nletters, nphones;
    int embed, hidden, layers, bidir;
    float dropout;
    float label_smoothing; /* training loss: eps of each phone's target spread over every symbol */
    loom_params *ps;
    loom_tensor *letter_emb, *phone_emb, *attn_w, *comb_w, *comb_b, *out_w, *out_b;
    loom_seq enc, dec;
    int row0, global_batch; /* training: this rank's rows of the global batch, for dropout masks */
    float len_norm;         /* decoding: hypotheses scored log-probability / length^len_norm (1: the mean) */
} s2s_model;

/* A batch of words, padded, time-major (row t * B + b). Buffers sized at s2s_batch_new. */
typedef struct s2s_batch {
    int cap, B, Tx, Ty;   /* capacity in rows; rows; letters; decoder steps (phones + end) */
    int *x, *xlen;        /* [Tx*B] letter ids, 0 padding; [B] */
    unsigned char *mask;  /* [B*Tx] batch-major: 1 for t < xlen[b] (attention's mask) */
    int *yin, *yout;      /* [Ty*B] decoder inputs (start, ph0, ...) and targets (ph0, ..., end) */
    float *w;             /* [Ty*B] 1 for real targets, 0 for padding */
} s2s_batch;

/* A decoded phone sequence and its score: log-probability / n^len_norm over its n output
 * symbols, the end token included (len_norm 1: the mean, the length normalisation). */
typedef struct s2s_hyp {
    int len, ended; /* ended 0: cut at the length limit */
    float score;
    int ph[S2S_MAX_LEN + 1];
} s2s_hyp;

/* Declares the parameters (embedding.letters, encoder.*, embedding.phones, decoder.*,
 * attention.weight, combine.*, head.*) of a model whose sizes are set; cell is "lstm",
 * "gru", "rnn" or "rnn_relu". Call loom_params_alloc and then s2s_apply_init. */
loom_status s2s_declare(s2s_model *m, const char *cell, float forget_bias);
void s2s_apply_init(s2s_model *m);
void s2s_free(s2s_model *m);

loom_status s2s_batch_new(s2s_batch *b, int cap);
void s2s_batch_free(s2s_batch *b);
/* Fills b with n words (letter ids from letter_id[byte], which must all be nonzero) and,
 * when ph is not NULL, their phones for teacher forcing. Tx and Ty: the padded sizes
 * (0: this batch's longest). Returns LOOM_EARG naming a word that does not fit. */
loom_status s2s_batch_fill(s2s_batch *b, int n, const char *const *words, const int *const *ph, const int *phlen,
                           const int *letter_id, int nphones, int Tx, int Ty);

/* The training loss on the tape: mean cross-entropy per real target, teacher forcing. */
loom_tensor *s2s_loss(s2s_model *m, loom_tape *t, const s2s_batch *b, int train, loom_rng *rng);
/* Greedy decoding of b's words (no-grad): out[b] for each row. At most maxlen phones, and
 * at most 2 per letter plus 5. */
loom_status s2s_greedy(s2s_model *m, loom_tape *t, const s2s_batch *b, int maxlen, s2s_hyp *out);
/* Beam search with K beams per word (no-grad): out[b*K .. b*K+K-1] the K best finished
 * hypotheses of word b, best first (fewer set, len -1, when fewer were found). */
loom_status s2s_beam(s2s_model *m, loom_tape *t, const s2s_batch *b, int K, int maxlen, s2s_hyp *out);

#endif
