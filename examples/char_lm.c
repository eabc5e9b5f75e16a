/* char_lm: a character-level language model (many-to-many) on any text, with
 * truncated BPTT over B parallel streams, held-out loss in nats and bits per
 * character, and sampling from a prompt (one-to-many). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"

typedef struct charlm {
    loom_app_flags *f;
    int vocab;
    unsigned char itos[256];
    int stoi[256];
    int *train, *valid; /* encoded text */
    long ntrain, nvalid;
    /* model */
    loom_params *ps;
    loom_embedding emb;
    loom_seq seq;
    loom_linear head;
    loom_state *carry;   /* this rank's streams' state, carried between windows */
    loom_seq_out out;    /* the training step's forward, committed into carry once it succeeds */
    loom_rng rng;        /* dropout */
    loom_rng sample_rng; /* sampling, apart so evaluation never changes training */
    /* data position: B streams over the training text, a cursor into each */
    long stream_len, cursor;
    int *idx, *tgt;      /* [T*rows] this window's inputs and targets, time-major */
    loom_trainer *tr;    /* for its epoch count */
} charlm;

static const char ABOUT[] =
    "Trains a character-level language model on a text file (default: Debian's English fortunes)\n"
    "and reports train and held-out loss in nats and bits per character, with samples.\n"
    "The last 5% of the text is held out.";

/* Embedding -> recurrent stack from state st -> linear head, on a [T*B] window of tokens. */
static loom_tensor *logits_of(charlm *m, loom_tape *t, const int *idx, int T, int B, int train, const loom_state *st,
                              loom_seq_out *o)
{
    loom_tensor *x = loom_op_embedding(t, m->emb.weight, idx, T * B);
    if (!x || loom_seq_forward(&m->seq, t, x, T, B, NULL, train, st, &m->rng, o) != LOOM_OK) return NULL;
    return loom_linear_apply(t, o->y, m->head.weight, m->head.bias);
}

/* Evaluation's windows follow each other at once: no update to wait for. */
static loom_tensor *logits_carried(void *ctx, loom_tape *t, const int *idx, int T, int B, loom_state *st)
{
    charlm *m = ctx;
    loom_seq_out o;
    loom_tensor *lg = logits_of(m, t, idx, T, B, 0, st, &o);
    return lg && loom_state_store(st, &o) == LOOM_OK ? lg : NULL;
}

/* This rank's streams of the global batch: stream g reads the text from g * stream_len. */
static loom_tensor *train_forward(void *ctx, loom_tape *t, loom_batch *bt)
{
    charlm *m = ctx;
    int T = m->f->seq, B = bt->rows;
    if (loom_app_stream_window(m->train, m->stream_len, &m->cursor, T, B, bt->row0, m->idx, m->tgt)) {
        m->tr->epoch++; /* wrapped around the text: the streams start afresh */
        loom_state_zero(m->carry);
    }
    bt->count = (double)T * B;
    bt->tokens = (long)T * B;
    return loom_op_softmax_ce(t, logits_of(m, t, m->idx, T, B, 1, m->carry, &m->out), m->tgt, NULL);
}

static loom_status commit(void *ctx)
{
    charlm *m = ctx;
    return loom_state_store(m->carry, &m->out);
}

/* Mean loss per character over up to max_chars of held-out text (no-grad, own state). */
static double heldout_loss(charlm *m, loom_tape *t, long max_chars)
{
    long pairs = m->nvalid - 1 < max_chars ? m->nvalid - 1 : max_chars;
    return loom_app_heldout_nll(t, &m->seq, m->valid, pairs, m->f->seq, m->f->batch, logits_carried, m);
}

/* Draws from softmax(logits / temperature). */
static int draw(const float *logits, int V, float temp, loom_rng *rng)
{
    double mx = logits[0], z = 0, p[256];
    for (int i = 1; i < V; i++) mx = fmax(mx, logits[i]);
    for (int i = 0; i < V; i++) z += (p[i] = exp((logits[i] - mx) / temp));
    double u = loom_rng_uniform(rng) * z;
    for (int i = 0; i < V; i++)
        if ((u -= p[i]) < 0) return i;
    return V - 1;
}

/* Generates n characters after the prompt and prints them. */
static void sample(charlm *m, loom_tape *t, long n, FILE *out)
{
    loom_state *s = loom_state_new(&m->seq, 1);
    if (!s) return;
    const char *prompt = m->f->prompt && *m->f->prompt ? m->f->prompt : "\n";
    int P = (int)strlen(prompt);
    int *idx = malloc(sizeof(int) * (P > 1 ? P : 1));
    for (int i = 0; i < P; i++) {
        int id = m->stoi[(unsigned char)prompt[i]];
        idx[i] = id >= 0 ? id : 0; /* characters never seen in training map to the first symbol */
    }
    int was = loom_tape_set_nograd(t, 1);
    loom_tape_reset(t);
    loom_tensor *lg = logits_carried(m, t, idx, P, 1, s);
    fputs(prompt, out);
    for (long k = 0; k < n && lg; k++) {
        int c = draw(lg->data + (size_t)(lg->rows - 1) * m->vocab, m->vocab, m->f->temperature, &m->sample_rng);
        fputc(m->itos[c], out);
        idx[0] = c;
        loom_tape_reset(t);
        lg = logits_carried(m, t, idx, 1, 1, s);
    }
    fputc('\n', out);
    fflush(out);
    loom_tape_set_nograd(t, was);
    loom_state_free(s);
    free(idx);
}

static void evaluate(void *ctx, loom_tape *t, long step)
{
    charlm *m = ctx;
    /* The whole held-out text every time, so the numbers are comparable along the run. */
    double l = heldout_loss(m, t, m->nvalid);
    printf("step %ld: held-out loss %.4f nats/char, %.4f bits/char\n", step, l, l / log(2.0));
    if (m->f->sample > 0) {
        printf("--- sample ---\n");
        sample(m, t, m->f->sample, stdout);
        printf("--------------\n");
    }
    fflush(stdout);
}

static loom_status save_state(void *ctx, loom_ckpt *c)
{
    charlm *m = ctx;
    int64_t embed = m->f->embed;
    loom_status st = loom_app_config_write(c, m->f);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/embed", &embed, 0);
    if (st == LOOM_OK) st = loom_ckpt_write_bytes(c, "/config/vocab", m->itos, (size_t)m->vocab);
    if (st == LOOM_OK) st = loom_app_stream_state_write(c, &m->rng, &m->sample_rng, m->cursor);
    return st; /* the trainer saves /state/carry, every rank's streams */
}

static loom_status load_state(void *ctx, loom_ckpt *c)
{
    charlm *m = ctx;
    return loom_app_stream_state_read(c, &m->rng, &m->sample_rng, m->stream_len, &m->cursor);
}

/* Encodes text with the model's vocabulary; a byte it lacks is an error naming the file. */
static int *encode(charlm *m, const unsigned char *text, size_t len, const char *what)
{
    int *ids = malloc(sizeof(int) * (len ? len : 1));
    for (size_t i = 0; ids && i < len; i++) {
        ids[i] = m->stoi[text[i]];
        if (ids[i] < 0) {
            fprintf(stderr, "char_lm: %s: byte 0x%02x at offset %zu is not in the model's vocabulary of %d symbols\n", what,
                    text[i], i, m->vocab);
            free(ids);
            return NULL;
        }
    }
    return ids;
}

/* Frees what run() has made so far (any part may be missing) and returns rc. */
static int finish(charlm *m, loom_trainer *run, loom_ckpt *ck, int rc)
{
    if (run) loom_trainer_free(run);
    loom_ckpt_close(ck);
    loom_state_free(m->carry);
    loom_seq_free(&m->seq);
    loom_params_free(m->ps);
    free(m->train);
    free(m->idx);
    free(m->tgt);
    return rc;
}

static int run(loom_dist *d, int argc, char **argv)
{
    int binary = 0;
    loom_app_flags f = {.data = "/usr/share/games/fortunes", .steps = 600, .batch = 32, .seq = 64, .hidden = 256,
                        .layers = 2, .embed = 64, .cell = "lstm", .optim = "adam", .sched = "constant", .lr = 2e-3f,
                        .clip = 5.0f, .seed = 1, .log_every = 10, .eval_every = 200, .sample = 200, .prompt = "The ",
                        .temperature = 0.8f, .keep = 1};
    loom_flag extra[] = {{"embed", LOOM_FLAG_INT, &f.embed, "embedding size"},
                         {"sample", LOOM_FLAG_LONG, &f.sample, "characters to sample at each evaluation (0: none)"},
                         {"prompt", LOOM_FLAG_STR, &f.prompt, "text the samples start from"},
                         {"temperature", LOOM_FLAG_FLOAT, &f.temperature, "sampling temperature"},
                         {"eval", LOOM_FLAG_STR, &f.eval, "with --resume: print the loss per character on this file, no training"},
                         {"binary", LOOM_FLAG_INT, &binary, "1: train on data with NUL bytes (a binary file) too"},
                         {NULL, 0, NULL, NULL}};
    int rc = loom_app_parse(&f, argc, argv, ABOUT, extra);
    if (rc) return rc == 1 ? 0 : rc;
    if (loom_app_check(&f, "char_lm")) return 2;
    if (f.embed <= 0 || !(f.temperature > 0) || f.sample < 0) {
        loom_app_fail_all("char_lm", "--embed and --temperature must be positive, --sample >= 0");
        return 2;
    }
    if (f.eval && !f.resume) {
        loom_app_fail_all("char_lm", "--eval needs --resume PATH (the model to evaluate)");
        return 2;
    }
    if (f.threads > 0) loom_threads_set(f.threads);

    charlm m = {.f = &f};
    for (int c = 0; c < 256; c++) m.stoi[c] = -1;
    loom_ckpt *ck = NULL;
    /* Without training: --resume with --eval, or with --sample and no --steps. */
    int no_train = f.resume && (f.eval || (loom_app_given(&f, "sample") && !loom_app_given(&f, "steps")));
    if (f.resume) {
        /* The checkpoint's configuration rebuilds the model; conflicting flags are errors. */
        size_t nv = 0;
        ck = loom_ckpt_open(f.resume);
        if (!ck) {
            fprintf(stderr, "char_lm: --resume: %s\n", loom_error_message());
            return 1;
        }
        if (loom_app_config_read(ck, &f, "char_lm") || loom_app_config_int(ck, &f, "embed", "embed", &f.embed, "char_lm"))
            return loom_ckpt_close(ck), 2;
        loom_status vs = loom_ckpt_read_bytes(ck, "/config/vocab", m.itos, sizeof m.itos, &nv);
        if (vs != LOOM_OK || nv == 0) {
            if (vs != LOOM_OK) fprintf(stderr, "char_lm: %s\n", loom_error_message());
            else fprintf(stderr, "char_lm: checkpoint %s: dataset /config/vocab is empty\n", f.resume);
            return loom_ckpt_close(ck), 1;
        }
        m.vocab = (int)nv;
        for (int i = 0; i < m.vocab; i++) {
            if (m.stoi[m.itos[i]] >= 0) {
                fprintf(stderr, "char_lm: checkpoint %s: /config/vocab repeats byte 0x%02x\n", f.resume, m.itos[i]);
                return loom_ckpt_close(ck), 1;
            }
            m.stoi[m.itos[i]] = i;
        }
    }
    size_t len = 0;
    unsigned char *text = NULL;
    if (!no_train) {
        text = loom_app_read_text(f.data, &len, "char_lm");
        if (!text) return finish(&m, NULL, ck, 1);
        const unsigned char *nul = binary ? NULL : memchr(text, 0, len);
        if (nul) { /* text has no NUL bytes: this is a binary file, or UTF-16 */
            loom_app_fail_all("char_lm", "--data %s: a NUL byte at offset %zu: this is not text (a binary file, or "
                              "UTF-16); pass --binary 1 to train on its bytes anyway", f.data, (size_t)(nul - text));
            free(text);
            return finish(&m, NULL, ck, 1);
        }
        if (!f.resume) { /* vocabulary: the bytes that occur, in byte order */
            int seen[256] = {0};
            for (size_t i = 0; i < len; i++) seen[text[i]] = 1;
            for (int c = 0; c < 256; c++)
                if (seen[c]) m.stoi[c] = m.vocab, m.itos[m.vocab++] = (unsigned char)c;
        }
        m.nvalid = (long)(len / 20);
        m.ntrain = (long)len - m.nvalid;
        m.stream_len = (m.ntrain - 1) / f.batch;
        if (m.stream_len < f.seq + 1 || m.nvalid < 2) {
            fprintf(stderr, "char_lm: --data %s: %zu bytes is too little text for --batch %d x --seq %d\n", f.data, len,
                    f.batch, f.seq);
            free(text);
            return finish(&m, NULL, ck, 2);
        }
        m.train = encode(&m, text, len, f.data);
        free(text);
        if (!m.train) return finish(&m, NULL, ck, 1);
        m.valid = m.train + m.ntrain;
    }
    m.idx = malloc(sizeof(int) * (size_t)f.seq * (size_t)f.batch);
    m.tgt = malloc(sizeof(int) * (size_t)f.seq * (size_t)f.batch);

    /* Model: embedding.weight, <cell>.weight_ih_l0 ..., head.weight, head.bias (PyTorch names). */
    m.ps = loom_params_new();
    m.rng = loom_rng_init(f.seed);
    m.sample_rng = loom_rng_init(f.seed ^ 0x5EEDu);
    if (loom_embedding_declare(&m.emb, m.ps, "embedding", m.vocab, f.embed) != LOOM_OK ||
        loom_app_seq_declare(&f, f.cell, f.embed, &m.seq, m.ps) != LOOM_OK ||
        loom_linear_declare(&m.head, m.ps, "head", f.hidden, m.vocab) != LOOM_OK ||
        loom_params_alloc(m.ps, &m.rng) != LOOM_OK) {
        fprintf(stderr, "char_lm: %s\n", loom_error_message());
        return finish(&m, NULL, ck, 1);
    }
    loom_seq_apply_init(&m.seq);

    loom_trainer run;
    loom_task task = {&m, train_forward, evaluate, save_state, load_state, commit};
    if ((rc = loom_app_trainer_init(&run, &f, d, m.ps, "char_lm"))) return finish(&m, NULL, ck, rc);
    m.tr = &run;
    /* this rank's streams: their carried state is saved and restored with the run */
    loom_seq_set_shard(&m.seq, run.row0, f.batch);
    if (!(m.carry = loom_state_new(&m.seq, run.rows)) ||
        loom_trainer_track_rows(&run, "/state/carry", loom_state_data(m.carry, NULL),
                                (size_t)loom_seq_state_count(&m.seq), (size_t)f.hidden) != LOOM_OK) {
        fprintf(stderr, "char_lm: %s\n", loom_error_message());
        return finish(&m, &run, ck, 1);
    }
    if (ck && no_train) {
        rc = loom_ckpt_read_params(ck, "/model", m.ps) != LOOM_OK;
        if (rc) fprintf(stderr, "char_lm: %s\n", loom_error_message());
        loom_ckpt_close(ck);
        if (rc) return finish(&m, &run, NULL, 1);
    } else if (loom_app_resume_finish(&run, &task, ck)) return finish(&m, &run, NULL, 1); /* it closes ck */
    if (no_train) {
        if (f.eval) {
            size_t n;
            unsigned char *et = loom_app_read_text(f.eval, &n, "char_lm");
            int *ids = et ? encode(&m, et, n, f.eval) : NULL;
            free(et);
            if (!ids) return finish(&m, &run, NULL, 1);
            if (n < 2) {
                fprintf(stderr, "char_lm: --eval %s: needs at least 2 characters\n", f.eval);
                free(ids);
                return finish(&m, &run, NULL, 2);
            }
            m.valid = ids, m.nvalid = (long)n, f.batch = 1;
            double l = heldout_loss(&m, run.tape, (long)n);
            printf("%s: %zu characters, loss %.6f nats/char, %.6f bits/char\n", f.eval, n, l, l / log(2.0));
            free(ids);
        }
        if (f.sample > 0 && loom_app_given(&f, "sample")) sample(&m, run.tape, f.sample, stdout);
    } else {
        printf("char_lm: %ld train / %ld held-out characters, vocabulary %d, %s x%d hidden %d, %zu parameters, %d rank%s x "
               "%d threads%s\n",
               m.ntrain, m.nvalid, m.vocab, f.cell, f.layers, f.hidden, loom_params_size(m.ps), d->size,
               d->size > 1 ? "s" : "", loom_threads_get(), run.step ? ", resumed" : "");
        rc = loom_app_train(&run, &task);
        if (rc == 0)
            printf("done: %ld steps, last train loss %.4f nats/char (%.4f bits/char), %.0f tokens/s\n", run.step,
                   run.last_loss, run.last_loss / log(2.0), run.tokens_per_sec);
    }
    return finish(&m, &run, NULL, rc);
}

int main(int argc, char **argv) { return loom_app_main(argc, argv, "char_lm", run); }
