/* word_lm: a word-level language model (next-word prediction): embedding ->
 * stacked LSTM/GRU -> softmax over the vocabulary, optionally with the output
 * layer tied to the embedding. Truncated BPTT over B parallel streams like
 * char_lm; held-out perplexity beside an interpolated Kneser-Ney bigram's on
 * the same words; --predict and --sample from a checkpoint alone. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "word_text.h"

#define PROG "word_lm"

typedef struct wordlm {
    loom_app_flags *f;
    int tie, top;
    long min_count;
    const char *predict;
    word_vocab vocab;
    int V;
    int *ids, *valid; /* the encoded text: training tokens, then the held-out ones */
    long ntrain, nvalid;
    word_bigram bigram;
    double bigram_nll; /* on the held-out pairs the model is scored on */
    /* model */
    loom_params *ps;
    loom_tensor *emb, *head_w, *head_b; /* head_w is emb itself with --tie */
    loom_seq seq;
    loom_state *carry;
    loom_seq_out out;
    loom_rng rng, sample_rng;
    long stream_len, cursor;
    int *idx, *tgt;
    loom_trainer *tr;
    /* the output layer's time: this step's, and sums over the timed steps */
    double head_fwd, bwd_start, head_bwd_end;
    double sum_head, sum_fb, sum_step;
    long calls, timed;
} wordlm;

static const char ABOUT[] =
    "Trains a word-level language model on English text (default: Debian's fortunes): lower-case words and\n"
    "punctuation, a vocabulary of the words seen --min-count times in the training split plus <unk> and </s>\n"
    "(end of sentence). Reports held-out perplexity (the last 5% of the tokens) beside an interpolated\n"
    "Kneser-Ney bigram's on the same words. With --resume: --predict \"this is an\" lists the likeliest next\n"
    "words, --sample N generates N words. --tie shares the embedding with the output layer.";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* An identity op whose backward notes when it ran: around the output layer, it times
 * that layer's share of backward inside the real training step. */
static void stamp_backward(loom_node *nd)
{
    loom_tensor *x = nd->in[0];
    float *g = x->requires_grad ? loom_tape_grad(nd->tape, x) : NULL;
    size_t n = loom_tensor_size(x);
    if (g)
        for (size_t i = 0; i < n; i++) g[i] += nd->out->grad[i];
    *(double *)nd->ctx = now();
}

static loom_tensor *stamp(loom_tape *t, loom_tensor *x, double *when)
{
    if (loom_tape_check(t, "stamp", &x, 1) != LOOM_OK) return NULL;
    loom_tensor *y = loom_tape_tensor(t, x->rows, x->cols);
    if (!y) return NULL;
    memcpy(y->data, x->data, loom_tensor_size(x) * sizeof(float));
    loom_node *nd = loom_tape_record(t, "stamp", stamp_backward, y, &x, 1);
    if (nd) nd->ctx = when;
    return y;
}

/* Embedding -> recurrent stack from state st -> (dropout) -> the top layer's output [T*B x H].
 * In training, dropout on the embedding and the top output too (Zaremba et al.'s
 * non-recurrent connections), drawn per global row like the stack's own. */
static loom_tensor *hidden_of(wordlm *m, loom_tape *t, const int *idx, int T, int B, int train, const loom_state *st,
                              loom_seq_out *o)
{
    float p = train ? m->f->dropout : 0.0f;
    int row0 = train ? m->tr->row0 : 0, total = train ? m->f->batch : B;
    loom_tensor *x = loom_op_embedding(t, m->emb, idx, T * B);
    if (p > 0) x = loom_op_dropout_shard(t, x, p, &m->rng, B, total, row0);
    if (!x || loom_seq_forward(&m->seq, t, x, T, B, NULL, train, st, &m->rng, o) != LOOM_OK) return NULL;
    return p > 0 ? loom_op_dropout_shard(t, o->y, p, &m->rng, B, total, row0) : o->y;
}

/* The output layer: one GEMM [T*B x H] @ [H x V] (plus the bias). */
static loom_tensor *head(wordlm *m, loom_tape *t, loom_tensor *h) { return loom_linear_apply(t, h, m->head_w, m->head_b); }

static loom_tensor *logits_carried(void *ctx, loom_tape *t, const int *idx, int T, int B, loom_state *st)
{
    wordlm *m = ctx;
    loom_seq_out o;
    loom_tensor *lg = head(m, t, hidden_of(m, t, idx, T, B, 0, st, &o));
    return lg && loom_state_store(st, &o) == LOOM_OK ? lg : NULL;
}

/* Adds the last step's times to the sums; the process's first step (warm-up) is not counted. */
static void account(wordlm *m)
{
    if (m->calls < 2) return;
    const double *ph = m->tr->phase;
    m->sum_head += m->head_fwd + (m->head_bwd_end - m->bwd_start);
    m->sum_fb += ph[LOOM_PHASE_FORWARD] + ph[LOOM_PHASE_BACKWARD];
    m->sum_step += ph[LOOM_PHASE_FORWARD] + ph[LOOM_PHASE_BACKWARD] + ph[LOOM_PHASE_WAIT] + ph[LOOM_PHASE_ALLREDUCE] +
                   ph[LOOM_PHASE_UPDATE];
    m->timed++;
}

/* This rank's streams of the global batch: stream g reads the training words from g * stream_len. */
static loom_tensor *train_forward(void *ctx, loom_tape *t, loom_batch *bt)
{
    wordlm *m = ctx;
    account(m);
    m->calls++;
    int T = m->f->seq, B = bt->rows;
    if (loom_app_stream_window(m->ids, m->stream_len, &m->cursor, T, B, bt->row0, m->idx, m->tgt)) {
        m->tr->epoch++; /* wrapped around the text: the streams start afresh */
        loom_state_zero(m->carry);
    }
    bt->count = (double)T * B;
    bt->tokens = (long)T * B;
    loom_tensor *h = stamp(t, hidden_of(m, t, m->idx, T, B, 1, m->carry, &m->out), &m->head_bwd_end);
    double t0 = now();
    loom_tensor *loss = loom_op_softmax_ce(t, head(m, t, h), m->tgt, NULL);
    m->head_fwd = now() - t0;
    return stamp(t, loss, &m->bwd_start);
}

static loom_status commit(void *ctx)
{
    wordlm *m = ctx;
    return loom_state_store(m->carry, &m->out);
}

/* The held-out words as B streams of len: the pairs (valid[p], valid[p+1]) for p < B * len. */
static void heldout_layout(const wordlm *m, int *B, long *len)
{
    loom_app_heldout_layout(m->nvalid - 1, m->f->seq, m->f->batch, B, len);
}

/* Mean -ln p per word over the held-out pairs. */
static double heldout_nll(wordlm *m, loom_tape *t)
{
    return loom_app_heldout_nll(t, &m->seq, m->valid, m->nvalid - 1, m->f->seq, m->f->batch, logits_carried, m);
}

/* Prints a word the way text reads: </s> ends the line, no space before closing punctuation. */
static void put_word(FILE *out, const char *w, int *fresh)
{
    if (strcmp(w, WORD_EOS_STR) == 0) {
        fputc('\n', out);
        *fresh = 1;
        return;
    }
    if (!*fresh && !strchr(".,;:!?)]", w[0])) fputc(' ', out);
    fputs(w, out);
    *fresh = w[0] == '(' || w[0] == '[';
}

/* p = softmax(x / temp) over V logits. */
static void softmax_row(const float *x, int V, double temp, double *p)
{
    double mx = x[0], z = 0;
    for (int i = 1; i < V; i++) mx = fmax(mx, x[i]);
    for (int i = 0; i < V; i++) z += (p[i] = exp((x[i] - mx) / temp));
    for (int i = 0; i < V; i++) p[i] /= z;
}

/* The model's distribution after </s> and the words of text, as probabilities into p[V]
 * (at temperature temp). Returns the number of words, -1 on an error (message printed);
 * with notes, names each word read as <unk>. st (B 1) carries on from there. */
static int read_context(wordlm *m, loom_tape *t, const char *text, int notes, loom_state *st, double *p, double temp)
{
    word_tokens toks = {0};
    if (word_tokenize((const unsigned char *)text, strlen(text), &toks)) return fprintf(stderr, PROG ": out of memory\n"), -1;
    int n = (int)toks.n, *idx = malloc(sizeof(int) * (size_t)(n + 1)), rc = n;
    if (!idx) return word_tokens_free(&toks), fprintf(stderr, PROG ": out of memory\n"), -1;
    idx[0] = WORD_EOS; /* the context starts like a sentence */
    for (int i = 0; i < n; i++) {
        idx[i + 1] = word_vocab_id(&m->vocab, word_token(&toks, i));
        if (notes && idx[i + 1] == WORD_UNK && strcmp(word_token(&toks, i), WORD_UNK_STR) != 0)
            loom_app_note(PROG, "'%s' is not in the model's vocabulary of %d words: it is read as %s",
                          word_token(&toks, i), m->V, WORD_UNK_STR);
    }
    loom_tape_reset(t);
    loom_tensor *lg = logits_carried(m, t, idx, n + 1, 1, st);
    if (!lg) {
        fprintf(stderr, PROG ": %s\n", loom_error_message());
        rc = -1;
    } else
        softmax_row(lg->data + (size_t)n * m->V, m->V, temp, p);
    free(idx);
    word_tokens_free(&toks);
    return rc;
}

/* --predict: the top likeliest next words with their probabilities; <unk> is not a word
 * (it stands for all the rare ones), so it is left out of the list and its share shown apart. */
static int predict(wordlm *m, loom_tape *t)
{
    loom_state *st = loom_state_new(&m->seq, 1);
    double *p = malloc(sizeof(double) * (size_t)m->V);
    int was = loom_tape_set_nograd(t, 1), rc = 0, n = -1;
    if (st && p) n = read_context(m, t, m->predict, 1, st, p, 1.0);
    if (n == 0) {
        loom_app_fail_all(PROG, "--predict '%s': no words in it", m->predict);
        rc = 2;
    } else if (n < 0) rc = 1;
    else {
        int k = m->top < m->V - 1 ? m->top : m->V - 1;
        double unk = p[WORD_UNK];
        p[WORD_UNK] = -1; /* not a word to offer: its share is printed apart */
        printf("next word after \"%s\":\n", m->predict);
        for (int r = 0; r < k; r++) {
            int best = 0;
            for (int i = 1; i < m->V; i++)
                if (p[i] > p[best]) best = i;
            printf("%3d. %-16s %.4f\n", r + 1, m->vocab.words[best], p[best]);
            p[best] = -1; /* taken */
        }
        printf("(words outside the vocabulary, %s, together: %.4f)\n", WORD_UNK_STR, unk);
    }
    loom_tape_set_nograd(t, was);
    loom_state_free(st);
    free(p);
    return rc;
}

/* Generates n words after --prompt (or after </s>), drawn at --temperature; never <unk>. */
static void sample(wordlm *m, loom_tape *t, long n, FILE *out)
{
    loom_state *st = loom_state_new(&m->seq, 1);
    double *p = malloc(sizeof(double) * (size_t)m->V);
    const char *prompt = m->f->prompt ? m->f->prompt : "";
    int was = loom_tape_set_nograd(t, 1), fresh = 1;
    if (st && p && read_context(m, t, prompt, 0, st, p, m->f->temperature) >= 0) {
        word_tokens toks = {0};
        if (word_tokenize((const unsigned char *)prompt, strlen(prompt), &toks) == 0)
            for (long i = 0; i < toks.n; i++) put_word(out, word_token(&toks, i), &fresh);
        word_tokens_free(&toks);
        for (long k = 0; k < n; k++) {
            double u = loom_rng_uniform(&m->sample_rng) * (1.0 - p[WORD_UNK]);
            int w = m->V - 1;
            for (int i = 1; i < m->V; i++)
                if ((u -= p[i]) < 0) {
                    w = i;
                    break;
                }
            put_word(out, m->vocab.words[w], &fresh);
            loom_tape_reset(t);
            loom_tensor *lg = logits_carried(m, t, &w, 1, 1, st);
            if (!lg) break;
            softmax_row(lg->data, m->V, m->f->temperature, p);
        }
    }
    if (!fresh) fputc('\n', out);
    fflush(out);
    loom_tape_set_nograd(t, was);
    loom_state_free(st);
    free(p);
}

static void evaluate(void *ctx, loom_tape *t, long step)
{
    wordlm *m = ctx;
    double l = heldout_nll(m, t);
    int B;
    long len;
    heldout_layout(m, &B, &len);
    printf("step %ld: held-out perplexity %.2f (%.4f nats/word) over %ld words; bigram %.2f\n", step, exp(l), l,
           (long)B * len, exp(m->bigram_nll));
    if (m->f->sample > 0) {
        printf("--- sample ---\n");
        sample(m, t, m->f->sample, stdout);
        printf("--------------\n");
    }
    fflush(stdout);
}

static loom_status save_state(void *ctx, loom_ckpt *c)
{
    wordlm *m = ctx;
    size_t len;
    unsigned char *bytes = word_vocab_bytes(&m->vocab, &len);
    if (!bytes) return loom_error_set(LOOM_ENOMEM, "out of memory for the vocabulary");
    int64_t v[5] = {m->f->embed, m->tie, m->min_count, m->V, (int64_t)len};
    loom_status st = loom_app_config_write(c, m->f);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/embed", &v[0], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/tie", &v[1], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/min_count", &v[2], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/vocab_size", &v[3], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/vocab_bytes", &v[4], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_bytes(c, "/config/vocab", bytes, len); /* NUL-separated words, by id */
    if (st == LOOM_OK) st = loom_app_stream_state_write(c, &m->rng, &m->sample_rng, m->cursor);
    free(bytes);
    return st; /* the trainer saves /state/carry, every rank's streams */
}

static loom_status load_state(void *ctx, loom_ckpt *c)
{
    wordlm *m = ctx;
    return loom_app_stream_state_read(c, &m->rng, &m->sample_rng, m->stream_len, &m->cursor);
}

/* The model's configuration and vocabulary from a checkpoint. Returns 0, 1 or 2. */
static int read_model_config(wordlm *m, loom_ckpt *ck)
{
    loom_app_flags *f = m->f;
    long tie = m->tie, vsize = 0, vbytes = 0;
    int rc = loom_app_config_read(ck, f, PROG);
    if (!rc) rc = loom_app_config_int(ck, f, "embed", "embed", &f->embed, PROG);
    if (!rc) rc = loom_app_config_long(ck, f, "tie", "tie", &tie, 0, 1, PROG);
    if (!rc) rc = loom_app_config_long(ck, f, "min_count", "min-count", &m->min_count, 1, LONG_MAX, PROG);
    if (!rc) rc = loom_app_config_long(ck, f, "vocab_size", NULL, &vsize, 2, 1 << 26, PROG);
    if (!rc) rc = loom_app_config_long(ck, f, "vocab_bytes", NULL, &vbytes, 1, 1L << 30, PROG);
    if (rc) return rc;
    m->tie = (int)tie;
    unsigned char *bytes = malloc((size_t)vbytes);
    size_t n = 0;
    char err[160];
    if (!bytes) return loom_app_fail_rank(PROG, "out of memory for a vocabulary of %ld bytes", vbytes), 1;
    if (loom_ckpt_read_bytes(ck, "/config/vocab", bytes, (size_t)vbytes, &n) != LOOM_OK)
        rc = 1, loom_app_fail_rank(PROG, "%s", loom_error_message());
    else if (word_vocab_from_bytes(bytes, n, &m->vocab, err, sizeof err))
        rc = 1, loom_app_fail_rank(PROG, "checkpoint %s: /config/vocab %s", loom_ckpt_path(ck), err);
    else if (m->vocab.n != vsize)
        rc = 1, loom_app_fail_rank(PROG, "checkpoint %s: /config/vocab holds %d words, /config/vocab_size says %ld",
                                   loom_ckpt_path(ck), m->vocab.n, vsize);
    free(bytes);
    m->V = m->vocab.n;
    return rc;
}

/* Reads, tokenizes and encodes the text: the vocabulary from the training split unless a
 * checkpoint gave one. Returns 0, 1 (the file, the machine) or 2 (too little for the batch). */
static int load_text(wordlm *m, int have_vocab)
{
    loom_app_flags *f = m->f;
    size_t len;
    unsigned char *text = loom_app_read_text(f->data, &len, PROG);
    if (!text) return 1;
    const unsigned char *nul = memchr(text, 0, len);
    if (nul) {
        loom_app_fail_all(PROG, "--data %s: a NUL byte at offset %zu: this is not text (a binary file, or UTF-16)",
                          f->data, (size_t)(nul - text));
        return free(text), 1;
    }
    word_tokens toks = {0};
    int rc = 0;
    if (word_tokenize(text, len, &toks)) rc = 1, loom_app_fail_rank(PROG, "out of memory tokenizing %s", f->data);
    free(text);
    long words = 0;
    for (long i = 0; i < toks.n; i++) {
        unsigned char c = (unsigned char)word_token(&toks, i)[0];
        words += (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80;
    }
    m->nvalid = toks.n / 20;
    m->ntrain = toks.n - m->nvalid;
    m->stream_len = (m->ntrain - 1) / f->batch;
    if (!rc && words == 0) {
        loom_app_fail_all(PROG, "--data %s: no words in it (%zu bytes of spaces and punctuation)", f->data, len);
        rc = 1;
    } else if (!rc && (m->stream_len < f->seq + 1 || m->nvalid < 2)) {
        loom_app_fail_all(PROG, "--data %s: %ld tokens are too few for --batch %d x --seq %d (and 5%% held out)", f->data,
                          toks.n, f->batch, f->seq);
        rc = 2;
    }
    if (!rc && !have_vocab && word_vocab_build(&toks, m->ntrain, m->min_count, &m->vocab))
        rc = 1, loom_app_fail_rank(PROG, "out of memory for the vocabulary of %s", f->data);
    if (!rc && !(m->ids = malloc(sizeof(int) * (size_t)toks.n)))
        rc = 1, loom_app_fail_rank(PROG, "out of memory for the %ld tokens of %s", toks.n, f->data);
    if (!rc) {
        m->V = m->vocab.n;
        word_vocab_encode(&m->vocab, &toks, m->ids);
        m->valid = m->ids + m->ntrain;
    }
    word_tokens_free(&toks);
    return rc;
}

/* The baseline, on rank 0: a bigram of the training words, scored on the held-out pairs. */
static int fit_bigram(wordlm *m)
{
    int B;
    long len;
    heldout_layout(m, &B, &len);
    if (word_bigram_fit(m->ids, m->ntrain, m->V, &m->bigram)) return loom_app_fail_rank(PROG, "out of memory for the bigram"), 1;
    m->bigram_nll = word_bigram_nll(&m->bigram, m->valid, (long)B * len + 1);
    long unk = 0;
    for (long i = 0; i < m->nvalid; i++) unk += m->valid[i] == WORD_UNK;
    printf("bigram baseline (interpolated Kneser-Ney, discounts %.3f and %.3f, %ld distinct bigrams): held-out "
           "perplexity %.2f; %ld of %ld held-out tokens are %s\n",
           m->bigram.d1, m->bigram.d2, m->bigram.types, exp(m->bigram_nll), unk, m->nvalid, WORD_UNK_STR);
    return 0;
}

static int finish(wordlm *m, loom_trainer *run, loom_ckpt *ck, int rc)
{
    if (run) loom_trainer_free(run);
    loom_ckpt_close(ck);
    loom_state_free(m->carry);
    loom_seq_free(&m->seq);
    loom_params_free(m->ps);
    word_vocab_free(&m->vocab);
    word_bigram_free(&m->bigram);
    free(m->ids);
    free(m->idx);
    free(m->tgt);
    return rc;
}

static int run(loom_dist *d, int argc, char **argv)
{
    loom_app_flags f = {.data = "/usr/share/games/fortunes", .steps = 1000, .batch = 32, .seq = 35, .hidden = 256,
                        .layers = 2, .embed = 0, .cell = "lstm", .optim = "adam", .sched = "constant", .lr = 2e-3f,
                        .clip = 5.0f, .seed = 1, .log_every = 10, .eval_every = 200, .sample = 20, .temperature = 0.8f,
                        .keep = 1};
    wordlm m = {.f = &f, .min_count = 3, .top = 10};
    loom_flag extra[] = {{"embed", LOOM_FLAG_INT, &f.embed, "embedding size (0: --hidden)"},
                         {"min-count", LOOM_FLAG_LONG, &m.min_count, "a word is in the vocabulary if seen this often in training"},
                         {"tie", LOOM_FLAG_INT, &m.tie, "1 (or bare --tie): the output layer is the embedding matrix"},
                         {"predict", LOOM_FLAG_STR, &m.predict, "with --resume: the likeliest next words after this text"},
                         {"top", LOOM_FLAG_INT, &m.top, "--predict lists this many words"},
                         {"sample", LOOM_FLAG_LONG, &f.sample, "words to sample at each evaluation (0: none)"},
                         {"prompt", LOOM_FLAG_STR, &f.prompt, "text the samples start from (default: a new sentence)"},
                         {"temperature", LOOM_FLAG_FLOAT, &f.temperature, "sampling temperature"},
                         {NULL, 0, NULL, NULL}};
    loom_app_bare_flag(argc, argv, "tie");
    int rc = loom_app_parse(&f, argc, argv, ABOUT, extra);
    if (rc) return rc == 1 ? 0 : rc;
    if (loom_app_check(&f, PROG)) return 2;
    const char *bad = NULL;
    if (m.min_count < 1) bad = "--min-count must be >= 1 (a word seen at least once)";
    else if (f.embed < 0) bad = "--embed must be positive (0: the same as --hidden)";
    else if (m.tie != 0 && m.tie != 1) bad = "--tie must be 0 or 1";
    else if (!(f.temperature > 0) || f.sample < 0 || m.top < 1) bad = "--temperature and --top must be positive, --sample >= 0";
    else if (m.predict && !f.resume) bad = "--predict needs --resume PATH (the model to ask)";
    if (bad) return loom_app_fail_all(PROG, "%s", bad), 2;
    if (f.threads > 0) loom_threads_set(f.threads);

    loom_ckpt *ck = NULL;
    /* Without training: --resume with --predict, or with --sample and no --steps. */
    int no_train = f.resume && (m.predict || (loom_app_given(&f, "sample") && !loom_app_given(&f, "steps")));
    if (f.resume) {
        if (!(ck = loom_ckpt_open(f.resume))) return loom_app_fail_rank(PROG, "--resume: %s", loom_error_message()), 1;
        if ((rc = read_model_config(&m, ck))) return finish(&m, NULL, ck, rc);
    }
    if (f.embed == 0) f.embed = f.hidden;
    if (m.tie && f.embed != f.hidden) {
        loom_app_fail_all(PROG, "--tie needs --embed equal to --hidden (the output layer is the [vocab x embed] "
                          "embedding matrix, applied to hidden states of %d), not --embed %d", f.hidden, f.embed);
        return finish(&m, NULL, ck, 2);
    }
    if (!no_train && (rc = load_text(&m, f.resume != NULL))) return finish(&m, NULL, ck, rc);
    m.idx = malloc(sizeof(int) * (size_t)f.seq * (size_t)f.batch);
    m.tgt = malloc(sizeof(int) * (size_t)f.seq * (size_t)f.batch);

    /* Model: embedding.weight, <cell>.weight_ih_l0 ..., head.weight (unless tied), head.bias (PyTorch names).
     * The embedding starts uniform in +-0.1 (PyTorch's word_language_model), which suits it as an output layer too. */
    m.ps = loom_params_new();
    m.rng = loom_rng_init(f.seed);
    m.sample_rng = loom_rng_init(f.seed ^ 0x5EEDu);
    loom_linear lin = {0};
    loom_status st = (m.emb = loom_params_add(m.ps, "embedding.weight", m.V, f.embed, (loom_init){LOOM_INIT_UNIFORM, -0.1f, 0.1f}))
                         ? loom_app_seq_declare(&f, f.cell, f.embed, &m.seq, m.ps) : LOOM_EARG;
    if (st == LOOM_OK && m.tie)
        st = (m.head_b = loom_params_add(m.ps, "head.bias", 1, m.V, (loom_init){LOOM_INIT_ZERO, 0, 0})) ? LOOM_OK : LOOM_EARG;
    else if (st == LOOM_OK) st = loom_linear_declare(&lin, m.ps, "head", f.hidden, m.V);
    m.head_w = m.tie ? m.emb : lin.weight;
    if (!m.tie) m.head_b = lin.bias;
    if (st == LOOM_OK) st = loom_params_alloc(m.ps, &m.rng);
    if (st != LOOM_OK) return loom_app_fail_rank(PROG, "%s", loom_error_message()), finish(&m, NULL, ck, 1);
    loom_seq_apply_init(&m.seq);

    loom_trainer run;
    loom_task task = {&m, train_forward, evaluate, save_state, load_state, commit};
    if ((rc = loom_app_trainer_init(&run, &f, d, m.ps, PROG))) return finish(&m, NULL, ck, rc);
    m.tr = &run;
    loom_seq_set_shard(&m.seq, run.row0, f.batch); /* this rank's streams, their state saved with the run */
    if (!(m.carry = loom_state_new(&m.seq, run.rows)) ||
        loom_trainer_track_rows(&run, "/state/carry", loom_state_data(m.carry, NULL),
                                (size_t)loom_seq_state_count(&m.seq), (size_t)f.hidden) != LOOM_OK) {
        loom_app_fail_rank(PROG, "%s", loom_error_message());
        return finish(&m, &run, ck, 1);
    }
    if (ck && no_train) {
        rc = loom_ckpt_read_params(ck, "/model", m.ps) != LOOM_OK;
        if (rc) loom_app_fail_rank(PROG, "%s", loom_error_message());
        loom_ckpt_close(ck);
        if (rc) return finish(&m, &run, NULL, 1);
        if (m.predict) rc = predict(&m, run.tape);
        else if (f.sample > 0) sample(&m, run.tape, f.sample, stdout);
        return finish(&m, &run, NULL, rc);
    }
    if (loom_app_resume_finish(&run, &task, ck)) return finish(&m, &run, NULL, 1); /* it closes ck */
    printf(PROG ": %ld train / %ld held-out tokens, vocabulary %d (--min-count %ld), %s x%d hidden %d, embed %d%s, %zu "
           "parameters, %d rank%s x %d threads%s\n", m.ntrain, m.nvalid, m.V, m.min_count, f.cell, f.layers, f.hidden,
           f.embed, m.tie ? " (tied to the output layer)" : "", loom_params_size(m.ps), d->size, d->size > 1 ? "s" : "",
           loom_threads_get(), run.step ? ", resumed" : "");
    if (d->rank == 0 && fit_bigram(&m)) return finish(&m, &run, NULL, 1);
    rc = loom_app_train(&run, &task);
    if (rc == 0) {
        account(&m);
        printf("done: %ld steps, last train loss %.4f nats/word (perplexity %.1f), %.0f tokens/s\n", run.step,
               run.last_loss, exp(run.last_loss), run.tokens_per_sec);
        if (m.timed > 0) {
            size_t out_params = (size_t)m.V * ((size_t)f.hidden + 1);
            printf("output layer (one GEMM [%d x %d] @ [%d x %d], softmax-CE, and their backward): %.1f ms of %.1f ms "
                   "forward+backward per step (%.1f%%), %.1f%% of the whole step (%.1f ms with the update); "
                   "its weight and bias are %.1f%% of the parameters%s\n",
                   f.seq * run.rows, f.hidden, f.hidden, m.V, 1e3 * m.sum_head / m.timed, 1e3 * m.sum_fb / m.timed,
                   100 * m.sum_head / m.sum_fb, 100 * m.sum_head / m.sum_step, 1e3 * m.sum_step / m.timed,
                   100.0 * (double)out_params / (double)loom_params_size(m.ps), m.tie ? " (the weight is the embedding's)" : "");
        }
    }
    return finish(&m, &run, NULL, rc);
}

int main(int argc, char **argv) { return loom_app_main(argc, argv, PROG, run); }
