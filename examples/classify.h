/* classify's model and state, shared by its two files: classify.c (data, training,
 * evaluation, checkpoints) and classify_gen.c (--predict and --generate). */
#ifndef LOOM_CLASSIFY_H
#define LOOM_CLASSIFY_H

#include "app.h"
#include "lang_words.h"

#define PROG "classify"

/* A split's words as alphabet ids: word i is ids[i * LANG_MAX_LEN ..][0, len[i]), of class label[i]. */
typedef struct word_enc {
    long n;
    int *ids, *len, *label;
} word_enc;

typedef struct classify {
    loom_app_flags *f;
    const char *langs;  /* --langs as given (default: all) */
    const char *generate;
    long per_class, count;
    int bidir, generator;
    char **predict;     /* --predict's words */
    int npredict;
    /* data */
    int C, lang[LANG_MAX];
    const char *names[LANG_MAX], *codes[LANG_MAX];
    lang_set set;
    lang_alpha alpha;
    int A;
    word_enc enc[3];
    /* model: the classifier, then the generator */
    loom_params *ps;
    loom_tensor *emb;
    loom_seq seq;
    loom_linear head;
    loom_tensor *gemb, *lemb;
    loom_seq gseq;
    loom_linear ghead;
    loom_rng rng, sample_rng;
    loom_trainer *tr;
    /* training order and position */
    int *perm;
    long order_epoch, epoch, cursor, next_epoch, next_cursor;
    /* batch buffers, time-major, for up to max_rows words */
    int max_rows;
    int *rows, *idx, *len, *lab, *gin, *gtgt, *glang, *glen;
    float *gw;
    long *conf; /* [C*C] */
} classify;

/* The generator's logits [T*B x A] from input ids and language ids (both [T*B], time-major),
 * from state st (NULL: zeros); o gets the stack's outputs. */
loom_tensor *classify_gen_logits(classify *m, loom_tape *t, const int *in, const int *lang, int T, int B,
                                 const int *lengths, int train, const loom_state *st, loom_seq_out *o);
/* Classifies e's words (no-grad): confusion counts into conf, per-word class probabilities
 * into prob [n x C], the generator's nats per character into *gen_nats; each optional.
 * Returns 0, or -1 (message set). */
int classify_run(classify *m, loom_tape *t, const word_enc *e, long *conf, float *prob, double *gen_nats);
/* Samples n <= max_rows words of class c at temperature temp into e (allocated by the caller
 * for n words). Returns 0, or -1 (message set). */
int classify_sample(classify *m, loom_tape *t, int c, int n, double temp, word_enc *e);
/* Writes word i of e as UTF-8 into out (at least LANG_MAX_LEN * 4 + 1 bytes). */
void classify_word_text(const classify *m, const word_enc *e, long i, char *out);
/* --predict: each word's three likeliest languages. Returns 0, or 1/2 after a message. */
int classify_predict(classify *m, loom_tape *t);
/* --generate (and the end of training, for every language): samples count words of a
 * language and reports the classifier's agreement. Returns 0, or 1 after a message. */
int classify_generate(classify *m, loom_tape *t, int c, long count, int show);

#endif
