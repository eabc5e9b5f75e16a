/* classify: the language of a word from its letters (many-to-one sequence
 * classification), on Debian's word lists. Character embedding -> recurrent
 * stack (optionally bidirectional) over each word's own length -> its last
 * state -> softmax over the languages. Beside it, in the same run, a
 * generator conditioned on the language (one-to-many): the language's
 * embedding joins every input of a character-level model, which --generate
 * samples and the classifier then judges. Baselines computed on the same
 * split: the majority class and a character-bigram naive Bayes. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "classify.h"

static const char ABOUT[] =
    "Classifies words by language from their letters, on Debian's word lists (--data, default /usr/share/dict;\n"
    "--langs, default all eight: en de fr es it nl pt sv). A word in two or more lists is dropped; the split is\n"
    "fixed by each word (1 in 10 test, 1 in 10 validation) and every language gets the same number of words.\n"
    "Reports test accuracy, per-language precision and recall and the confusion matrix, beside the majority\n"
    "class and a character-bigram naive Bayes. With --generator 1 (the default) it also trains a character\n"
    "model conditioned on the language. With --resume: --predict WORD... lists each word's 3 likeliest\n"
    "languages; --generate LANG --count N samples N words and reports how many the classifier assigns to LANG.";

/* ---------------------------------------------------------------- batches */

/* Time-major inputs for the words rows[0..B) of e: the classifier's characters (padded
 * with EOW past each length), the generator's inputs (BOW, then the characters) and
 * targets (the characters, then EOW) over one step more. Returns the classifier's T: the
 * longest word's length, at least T. */
static int fill(classify *m, const word_enc *e, const int *rows, int B, int T)
{
    for (int b = 0; b < B; b++) T = e->len[rows[b]] > T ? e->len[rows[b]] : T;
    for (int b = 0; b < B; b++) {
        const int *w = e->ids + (size_t)rows[b] * LANG_MAX_LEN;
        int n = e->len[rows[b]];
        m->len[b] = n;
        m->glen[b] = n + 1;
        m->lab[b] = e->label[rows[b]];
        for (int t = 0; t <= T; t++) {
            if (t < T) m->idx[t * B + b] = t < n ? w[t] : LANG_EOW;
            m->gin[t * B + b] = t == 0 ? LANG_BOW : t <= n ? w[t - 1] : LANG_EOW;
            m->gtgt[t * B + b] = t < n ? w[t] : LANG_EOW;
            m->glang[t * B + b] = m->lab[b];
        }
    }
    return T;
}

/* ---------------------------------------------------------------- model */

/* The classifier's logits [B x C] for the batch fill() laid out. */
static loom_tensor *class_logits(classify *m, loom_tape *t, int T, int B, int train)
{
    loom_seq_out o;
    loom_tensor *x = loom_op_embedding(t, m->emb, m->idx, T * B);
    if (!x || loom_seq_forward(&m->seq, t, x, T, B, m->len, train, NULL, &m->rng, &o) != LOOM_OK) return NULL;
    return loom_linear_apply(t, o.h_last, m->head.weight, m->head.bias);
}

/* The generator's logits [T*B x A]: each input character beside its word's language. */
loom_tensor *classify_gen_logits(classify *m, loom_tape *t, const int *in, const int *lang, int T, int B,
                                 const int *lengths, int train, const loom_state *st, loom_seq_out *o)
{
    loom_tensor *parts[2] = {loom_op_embedding(t, m->gemb, in, T * B), loom_op_embedding(t, m->lemb, lang, T * B)};
    loom_tensor *x = loom_op_concat(t, parts, 2);
    if (!x || loom_seq_forward(&m->gseq, t, x, T, B, lengths, train, st, &m->rng, o) != LOOM_OK) return NULL;
    return loom_linear_apply(t, o->y, m->ghead.weight, m->ghead.bias);
}

/* The generator's loss as nats per word: the characters' mean CE times characters per word. */
static loom_tensor *gen_loss(classify *m, loom_tape *t, int T, int B, int train, double *chars)
{
    loom_seq_out o;
    loom_seq_length_weights(m->glen, T + 1, B, m->gw);
    long n = 0;
    for (int b = 0; b < B; b++) n += m->glen[b];
    *chars = (double)n;
    loom_tensor *lg = classify_gen_logits(m, t, m->gin, m->glang, T + 1, B, m->glen, train, NULL, &o);
    return loom_op_scale(t, loom_op_softmax_ce(t, lg, m->gtgt, m->gw), (float)n / (float)B);
}

/* Rows [cursor, cursor + batch) of epoch's order are the step's words; the order is a
 * shuffle seeded by --seed and the epoch, so a resumed run rebuilds it. */
static void order(classify *m, long epoch)
{
    if (m->order_epoch == epoch) return;
    loom_rng r = loom_rng_init(m->f->seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch);
    long n = m->enc[LANG_SPLIT_TRAIN].n;
    for (long i = 0; i < n; i++) m->perm[i] = (int)i;
    for (long i = n - 1; i > 0; i--) {
        long j = (long)loom_rng_below(&r, (uint32_t)(i + 1));
        int x = m->perm[i];
        m->perm[i] = m->perm[j];
        m->perm[j] = x;
    }
    m->order_epoch = epoch;
}

static loom_tensor *train_forward(void *ctx, loom_tape *t, loom_batch *bt)
{
    classify *m = ctx;
    long cursor = m->cursor, epoch = m->epoch;
    if (cursor + bt->batch > m->enc[LANG_SPLIT_TRAIN].n) cursor = 0, epoch++;
    order(m, epoch);
    m->next_cursor = cursor + bt->batch;
    m->next_epoch = epoch;
    /* the global batch's longest word sets T on every rank: dropout masks are drawn per global row */
    const int *words = m->perm + cursor, *len = m->enc[LANG_SPLIT_TRAIN].len;
    int B = bt->rows, T = 1;
    for (int b = 0; b < bt->batch; b++) T = len[words[b]] > T ? len[words[b]] : T;
    fill(m, &m->enc[LANG_SPLIT_TRAIN], words + bt->row0, B, T);
    double chars = 0;
    loom_tensor *loss = loom_op_softmax_ce(t, class_logits(m, t, T, B, 1), m->lab, NULL);
    if (m->generator) loss = loom_op_add(t, loss, gen_loss(m, t, T, B, 1, &chars));
    bt->count = B; /* both terms are means per word */
    bt->tokens = 0;
    for (int b = 0; b < B; b++) bt->tokens += m->len[b];
    return loss;
}

static loom_status commit(void *ctx)
{
    classify *m = ctx;
    m->cursor = m->next_cursor;
    m->epoch = m->next_epoch;
    m->tr->epoch = m->epoch;
    return LOOM_OK;
}

/* ---------------------------------------------------------------- evaluation */

/* Classifies the words of e (no-grad): the confusion counts into conf [C*C] (optional),
 * the class probabilities of each word into prob [n x C] (optional), the generator's
 * nats per character into *gen_nats (optional). Returns 0, or -1 (message set). */
int classify_run(classify *m, loom_tape *t, const word_enc *e, long *conf, float *prob, double *gen_nats)
{
    int C = m->C, was = loom_tape_set_nograd(t, 1), rc = 0;
    double nats = 0, chars = 0;
    if (conf) memset(conf, 0, sizeof(long) * (size_t)(C * C));
    for (long i0 = 0; i0 < e->n && !rc; i0 += m->max_rows) {
        int B = (int)(e->n - i0 < m->max_rows ? e->n - i0 : m->max_rows);
        for (int b = 0; b < B; b++) m->rows[b] = (int)(i0 + b);
        int T = fill(m, e, m->rows, B, 1);
        loom_tape_reset(t);
        loom_tensor *lg = class_logits(m, t, T, B, 0);
        if (!lg) rc = -1;
        for (int b = 0; b < B && lg; b++) {
            const float *r = lg->data + (size_t)b * C;
            int best = 0;
            for (int c = 1; c < C; c++) best = r[c] > r[best] ? c : best;
            if (conf) conf[m->lab[b] * C + best]++;
            if (prob) {
                double z = 0;
                for (int c = 0; c < C; c++) z += exp(r[c] - r[best]);
                for (int c = 0; c < C; c++) prob[(i0 + b) * C + c] = (float)(exp(r[c] - r[best]) / z);
            }
        }
        if (lg && gen_nats && m->generator) {
            double n;
            loom_tensor *l = gen_loss(m, t, T, B, 0, &n);
            if (!l) rc = -1;
            else nats += (double)l->data[0] * B, chars += n;
        }
    }
    loom_tape_set_nograd(t, was);
    if (gen_nats) *gen_nats = chars > 0 ? nats / chars : NAN;
    return rc;
}

static void evaluate(void *ctx, loom_tape *t, long step)
{
    classify *m = ctx;
    const word_enc *v = &m->enc[LANG_SPLIT_VALID];
    double nats;
    if (classify_run(m, t, v, m->conf, NULL, &nats)) {
        fprintf(stderr, PROG ": evaluation: %s\n", loom_error_message());
        return;
    }
    printf("step %ld: validation accuracy %.2f%% over %ld words", step, 100 * lang_accuracy(m->conf, m->C), v->n);
    if (m->generator) printf("; generator %.3f bits/char", nats / log(2.0));
    printf("\n");
    fflush(stdout);
}

/* The test split's report: the model against the majority class and naive Bayes. */
static int test_report(classify *m, loom_tape *t)
{
    const word_enc *e = &m->enc[LANG_SPLIT_TEST];
    const lang_split *sp = &m->set.split[LANG_SPLIT_TEST];
    lang_nb nb = {0};
    long *nbconf = calloc((size_t)(m->C * m->C), sizeof(long));
    double *score = malloc(sizeof(double) * (size_t)m->C);
    if (!nbconf || !score || lang_nb_fit(&nb, &m->set, &m->set.split[LANG_SPLIT_TRAIN], &m->alpha, m->C))
        return free(nbconf), free(score), fprintf(stderr, PROG ": out of memory for the baseline\n"), 1;
    for (long i = 0; i < sp->n; i++) nbconf[sp->label[i] * m->C + lang_nb_scores(&nb, &m->alpha, lang_word(&m->set, sp, i), score)]++;
    lang_nb_free(&nb);
    free(score);
    if (classify_run(m, t, e, m->conf, NULL, NULL)) return free(nbconf), fprintf(stderr, PROG ": %s\n", loom_error_message()), 1;
    /* majority: the most frequent training class, the first on a tie (balanced: chance) */
    long count[LANG_MAX] = {0};
    const lang_split *tr = &m->set.split[LANG_SPLIT_TRAIN];
    for (long i = 0; i < tr->n; i++) count[tr->label[i]]++;
    int major = 0;
    for (int c = 1; c < m->C; c++) major = count[c] > count[major] ? c : major;
    long right = 0;
    for (long i = 0; i < sp->n; i++) right += sp->label[i] == major;
    printf("test: %ld words, %d languages x %ld\n", e->n, m->C, e->n / m->C);
    char label[80];
    snprintf(label, sizeof label, "majority class (%s)", m->names[major]);
    printf("  accuracy  %-36s %6.2f%%\n", label, 100.0 * (double)right / (double)e->n);
    printf("  accuracy  %-36s %6.2f%%\n", "character-bigram naive Bayes", 100 * lang_accuracy(nbconf, m->C));
    snprintf(label, sizeof label, "%s%s x%d, hidden %d", m->bidir ? "bidirectional " : "", m->f->cell, m->f->layers,
             m->f->hidden);
    printf("  accuracy  %-36s %6.2f%%\n", label, 100 * lang_accuracy(m->conf, m->C));
    lang_report(stdout, m->conf, m->C, m->names, m->codes);
    free(nbconf);
    return 0;
}

/* ---------------------------------------------------------------- checkpoints */

/* The languages as codes, comma-separated: what /config/langs holds. */
static void lang_codes(const classify *m, char *out, size_t cap)
{
    out[0] = 0;
    for (int c = 0; c < m->C; c++) {
        size_t k = strlen(out);
        snprintf(out + k, cap - k, "%s%s", c ? "," : "", lang_table[m->lang[c]].code);
    }
}

static loom_status save_state(void *ctx, loom_ckpt *c)
{
    classify *m = ctx;
    char langs[64];
    lang_codes(m, langs, sizeof langs);
    int64_t v[7] = {m->f->embed, m->bidir, m->generator, m->per_class, m->alpha.n, m->epoch, m->cursor};
    int64_t *cp = malloc(sizeof(int64_t) * (size_t)m->alpha.n);
    if (!cp) return loom_error_set(LOOM_ENOMEM, "out of memory for the alphabet");
    for (int i = 0; i < m->alpha.n; i++) cp[i] = m->alpha.cp[i];
    loom_status st = loom_app_config_write(c, m->f);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/embed", &v[0], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/bidirectional", &v[1], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/generator", &v[2], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/per_class", &v[3], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_str(c, "/config/langs", langs);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/alphabet_size", &v[4], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/config/alphabet", cp, (size_t)m->alpha.n); /* code points of ids 3.. */
    if (st == LOOM_OK) st = loom_ckpt_write_rng(c, "/rng/dropout", &m->rng);
    if (st == LOOM_OK) st = loom_ckpt_write_rng(c, "/rng/sample", &m->sample_rng);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/data/epoch", &v[5], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_i64(c, "/data/cursor", &v[6], 0);
    free(cp);
    return st;
}

static loom_status load_state(void *ctx, loom_ckpt *c)
{
    classify *m = ctx;
    int64_t epoch, cursor;
    loom_status st = loom_ckpt_read_rng(c, "/rng/dropout", &m->rng);
    if (st == LOOM_OK) st = loom_ckpt_read_rng(c, "/rng/sample", &m->sample_rng);
    if (st == LOOM_OK) st = loom_ckpt_read_i64(c, "/data/epoch", &epoch, 0);
    if (st == LOOM_OK) st = loom_ckpt_read_i64(c, "/data/cursor", &cursor, 0);
    if (st == LOOM_OK && (epoch < 0 || cursor < 0 || cursor > m->enc[LANG_SPLIT_TRAIN].n))
        st = loom_error_set(LOOM_EFORMAT, "checkpoint %s: /data/epoch %lld, /data/cursor %lld: not a position in %ld "
                            "training words", loom_ckpt_path(c), (long long)epoch, (long long)cursor,
                            m->enc[LANG_SPLIT_TRAIN].n);
    if (st == LOOM_OK) m->epoch = (long)epoch, m->cursor = (long)cursor;
    return st;
}

/* The model's configuration, languages and alphabet from a checkpoint. Returns 0, 1 or 2. */
static int read_model_config(classify *m, loom_ckpt *ck)
{
    loom_app_flags *f = m->f;
    long bidir = m->bidir, gen = m->generator, na = 0;
    char langs[64], err[160];
    int rc = loom_app_config_read(ck, f, PROG);
    if (!rc) rc = loom_app_config_int(ck, f, "embed", "embed", &f->embed, PROG);
    if (!rc) rc = loom_app_config_long(ck, f, "bidirectional", "bidirectional", &bidir, 0, 1, PROG);
    if (!rc) rc = loom_app_config_long(ck, f, "generator", "generator", &gen, 0, 1, PROG);
    if (!rc) rc = loom_app_config_long(ck, f, "per_class", "per-class", &m->per_class, 1, 1L << 30, PROG);
    if (!rc) rc = loom_app_config_long(ck, f, "alphabet_size", NULL, &na, 1, 1 << 20, PROG);
    if (rc) return rc;
    m->bidir = (int)bidir, m->generator = (int)gen;
    if (loom_ckpt_read_str(ck, "/config/langs", langs, sizeof langs) != LOOM_OK)
        return loom_app_fail_rank(PROG, "%s", loom_error_message()), 1;
    int lang[LANG_MAX], n = lang_parse_list(langs, lang, err, sizeof err);
    if (n < 0) return loom_app_fail_rank(PROG, "checkpoint %s: /config/langs: %s", loom_ckpt_path(ck), err), 1;
    if (m->langs && (n != m->C || memcmp(lang, m->lang, sizeof(int) * (size_t)n) != 0))
        return loom_app_fail_all(PROG, "--langs %s conflicts with checkpoint %s, which has langs %s", m->langs,
                                 loom_ckpt_path(ck), langs), 2;
    m->C = n;
    memcpy(m->lang, lang, sizeof lang);
    int64_t *cp = malloc(sizeof(int64_t) * (size_t)na);
    if (!cp) return loom_app_fail_rank(PROG, "out of memory for an alphabet of %ld", na), 1;
    if (loom_ckpt_read_i64(ck, "/config/alphabet", cp, (size_t)na) != LOOM_OK) rc = 1, loom_app_fail_rank(PROG, "%s", loom_error_message());
    else if (lang_alpha_from(cp, (int)na, &m->alpha, err, sizeof err))
        rc = 1, loom_app_fail_rank(PROG, "checkpoint %s: /config/alphabet %s", loom_ckpt_path(ck), err);
    free(cp);
    return rc;
}

/* ---------------------------------------------------------------- data */

static int encode_split(classify *m, int sp)
{
    const lang_split *s = &m->set.split[sp];
    word_enc *e = &m->enc[sp];
    e->n = s->n;
    e->ids = malloc(sizeof(int) * (size_t)(s->n * LANG_MAX_LEN + 1));
    e->len = malloc(sizeof(int) * (size_t)(s->n + 1));
    e->label = malloc(sizeof(int) * (size_t)(s->n + 1));
    if (!e->ids || !e->len || !e->label) return -1;
    for (long i = 0; i < s->n; i++) {
        e->len[i] = lang_encode(&m->alpha, lang_word(&m->set, s, i), e->ids + i * LANG_MAX_LEN, LANG_MAX_LEN, NULL, NULL);
        e->label[i] = s->label[i];
    }
    return 0;
}

/* Reads the word lists, builds the alphabet (unless a checkpoint gave it) and encodes the
 * splits. Returns 0, 1 (a file, the machine) or 2 (too few words for the batch). */
static int load_words(classify *m, int have_alpha)
{
    char err[512];
    if (lang_set_read(&m->set, m->f->data, m->lang, m->C, m->per_class, 0x5EED, err, sizeof err))
        return loom_app_fail_all(PROG, "--data %s", err), 1;
    if (!have_alpha && lang_alpha_build(&m->set, &m->set.split[LANG_SPLIT_TRAIN], &m->alpha))
        return loom_app_fail_rank(PROG, "out of memory for the alphabet"), 1;
    for (int sp = 0; sp < 3; sp++)
        if (encode_split(m, sp)) return loom_app_fail_rank(PROG, "out of memory for the words"), 1;
    if (m->enc[LANG_SPLIT_TRAIN].n < m->f->batch)
        return loom_app_fail_all(PROG, "--batch %d is more than the %ld training words", m->f->batch,
                                 m->enc[LANG_SPLIT_TRAIN].n), 2;
    printf("%-11s %8s %8s %8s %9s  %s\n", "language", "lines", "words", "shared", "dropped", "list");
    for (int c = 0; c < m->C; c++)
        printf("%-11s %8ld %8ld %8ld %9ld  %s/%s%s\n", m->names[c], m->set.lines[c], m->set.kept[c], m->set.shared[c],
               m->set.lines[c] - m->set.kept[c] - m->set.shared[c], m->f->data, lang_table[m->lang[c]].file,
               m->set.latin1[c] ? " (Latin-1)" : "");
    printf("balanced split: %ld train, %ld validation, %ld test words per language; alphabet %d characters\n",
           m->enc[0].n / m->C, m->enc[1].n / m->C, m->enc[2].n / m->C, m->alpha.n);
    return 0;
}

/* ---------------------------------------------------------------- main */

static int finish(classify *m, loom_trainer *run, loom_ckpt *ck, int rc)
{
    if (run) loom_trainer_free(run);
    loom_ckpt_close(ck);
    loom_seq_free(&m->seq);
    loom_seq_free(&m->gseq);
    loom_params_free(m->ps);
    lang_set_free(&m->set);
    lang_alpha_free(&m->alpha);
    for (int sp = 0; sp < 3; sp++) free(m->enc[sp].ids), free(m->enc[sp].len), free(m->enc[sp].label);
    free(m->perm), free(m->rows), free(m->idx), free(m->len), free(m->lab);
    free(m->gin), free(m->gtgt), free(m->glang), free(m->glen), free(m->gw), free(m->conf);
    free(m->predict);
    return rc;
}

/* Takes "--predict WORD..." out of argv (the words run to the next --flag). Returns 0, or 2
 * after a message when no word follows. */
static int take_predict(classify *m, int *argc, char **argv)
{
    int j = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--predict") != 0) {
            argv[j++] = argv[i];
            continue;
        }
        int k = i + 1;
        while (k < *argc && strncmp(argv[k], "--", 2) != 0) k++;
        if (k == i + 1) return loom_app_fail_all(PROG, "--predict needs one or more words after it"), 2;
        char **w = realloc(m->predict, sizeof(char *) * (size_t)(m->npredict + k - i - 1));
        if (!w) return loom_app_fail_rank(PROG, "out of memory"), 1;
        m->predict = w;
        while (++i < k) m->predict[m->npredict++] = argv[i];
        i--;
    }
    *argc = j;
    argv[j] = NULL;
    return 0;
}

static int alloc_buffers(classify *m, int rows)
{
    size_t R = (size_t)rows, S = LANG_MAX_LEN + 1;
    m->max_rows = rows;
    m->rows = malloc(sizeof(int) * R), m->len = malloc(sizeof(int) * R), m->lab = malloc(sizeof(int) * R);
    m->glen = malloc(sizeof(int) * R), m->idx = malloc(sizeof(int) * R * S), m->gin = malloc(sizeof(int) * R * S);
    m->gtgt = malloc(sizeof(int) * R * S), m->glang = malloc(sizeof(int) * R * S), m->gw = malloc(sizeof(float) * R * S);
    m->conf = malloc(sizeof(long) * (size_t)(m->C * m->C));
    m->perm = malloc(sizeof(int) * (size_t)(m->enc[LANG_SPLIT_TRAIN].n + 1));
    m->order_epoch = -1;
    return m->rows && m->len && m->lab && m->glen && m->idx && m->gin && m->gtgt && m->glang && m->gw && m->conf && m->perm
               ? 0 : -1;
}

/* Declares and allocates the classifier and, with --generator 1, the generator (PyTorch names). */
static loom_status build_model(classify *m)
{
    loom_app_flags *f = m->f;
    int E = f->embed, D = m->bidir ? 2 : 1;
    m->A = lang_alpha_size(&m->alpha);
    m->ps = loom_params_new();
    m->rng = loom_rng_init(f->seed);
    m->sample_rng = loom_rng_init(f->seed ^ 0x5EEDu);
    loom_init normal = {LOOM_INIT_NORMAL, 0.0f, 1.0f}; /* nn.Embedding's */
    loom_status st = (m->emb = loom_params_add(m->ps, "embedding.weight", m->A, E, normal)) ? LOOM_OK : LOOM_EARG;
    if (st == LOOM_OK) st = loom_app_seq_declare_as(f, f->cell, E, NULL, m->bidir, &m->seq, m->ps);
    if (st == LOOM_OK) st = loom_linear_declare(&m->head, m->ps, "head", D * f->hidden, m->C);
    if (st == LOOM_OK && m->generator) {
        m->gemb = loom_params_add(m->ps, "gen_embedding.weight", m->A, E, normal);
        m->lemb = loom_params_add(m->ps, "lang_embedding.weight", m->C, E, normal);
        st = m->gemb && m->lemb ? loom_app_seq_declare_as(f, f->cell, 2 * E, "gen_", 0, &m->gseq, m->ps) : LOOM_EARG;
        if (st == LOOM_OK) st = loom_linear_declare(&m->ghead, m->ps, "gen_head", f->hidden, m->A);
    }
    if (st == LOOM_OK) st = loom_params_alloc(m->ps, &m->rng);
    if (st == LOOM_OK) loom_seq_apply_init(&m->seq), loom_seq_apply_init(&m->gseq);
    return st;
}

/* The end of a training run, on rank 0: the test report, then each language's generated words. */
static int final_report(classify *m, loom_tape *t)
{
    if (test_report(m, t)) return 1;
    if (!m->generator || m->count == 0) return 0;
    long agree = 0;
    printf("generated words (%ld per language at temperature %.2f) and the classifier's agreement:\n", m->count,
           m->f->temperature);
    for (int c = 0; c < m->C; c++) {
        int k = classify_generate(m, t, c, m->count, 8);
        if (k < 0) return 1;
        agree += k;
    }
    printf("agreement over all languages: %.1f%% (chance: %.1f%%)\n", 100.0 * (double)agree / (double)(m->count * m->C),
           100.0 / m->C);
    return 0;
}

static int run(loom_dist *d, int argc, char **argv)
{
    loom_app_flags f = {.data = "/usr/share/dict", .steps = 3000, .batch = 64, .seq = LANG_MAX_LEN + 1, .hidden = 128,
                        .layers = 1, .embed = 32, .cell = "lstm", .optim = "adam", .sched = "constant", .lr = 3e-3f,
                        .clip = 5.0f, .seed = 1, .log_every = 100, .eval_every = 1000, .temperature = 0.8f, .keep = 1};
    classify m = {.f = &f, .per_class = 8000, .count = 100, .generator = 1};
    const char *predict_help = NULL;
    loom_flag extra[] = {
        {"langs", LOOM_FLAG_STR, &m.langs, "languages, comma-separated codes or names (default: en,de,fr,es,it,nl,pt,sv)"},
        {"per-class", LOOM_FLAG_LONG, &m.per_class, "training words per language (validation and test: an eighth)"},
        {"embed", LOOM_FLAG_INT, &f.embed, "character (and language) embedding size"},
        {"bidirectional", LOOM_FLAG_INT, &m.bidir, "1 (or bare): read each word both ways"},
        {"generator", LOOM_FLAG_INT, &m.generator, "1: also train the generator conditioned on the language"},
        {"predict", LOOM_FLAG_STR, &predict_help, "WORD...: with --resume, each word's three likeliest languages"},
        {"generate", LOOM_FLAG_STR, &m.generate, "LANG: with --resume, sample --count words of that language"},
        {"count", LOOM_FLAG_LONG, &m.count, "words to generate (per language at the end of training; 0: none)"},
        {"temperature", LOOM_FLAG_FLOAT, &f.temperature, "sampling temperature"},
        {NULL, 0, NULL, NULL}};
    int rc = take_predict(&m, &argc, argv);
    if (rc) return finish(&m, NULL, NULL, rc);
    loom_app_bare_flag(argc, argv, "bidirectional");
    if ((rc = loom_app_parse(&f, argc, argv, ABOUT, extra))) return finish(&m, NULL, NULL, rc == 1 ? 0 : rc);
    if (loom_app_check(&f, PROG)) return finish(&m, NULL, NULL, 2);
    char err[200];
    const char *bad = NULL;
    if (m.per_class < 1) bad = "--per-class must be >= 1";
    else if (f.embed < 1) bad = "--embed must be positive";
    else if ((m.bidir | m.generator) & ~1) bad = "--bidirectional and --generator must be 0 or 1";
    else if (!(f.temperature > 0) || m.count < 0) bad = "--temperature must be positive and --count >= 0";
    else if ((m.npredict || m.generate) && !f.resume) bad = "--predict and --generate need --resume PATH (the model to ask)";
    if (bad) return loom_app_fail_all(PROG, "%s", bad), finish(&m, NULL, NULL, 2);
    if ((m.C = lang_parse_list(m.langs ? m.langs : "en,de,fr,es,it,nl,pt,sv", m.lang, err, sizeof err)) < 0)
        return loom_app_fail_all(PROG, "--langs: %s", err), finish(&m, NULL, NULL, 2);
    if (f.threads > 0) loom_threads_set(f.threads);

    loom_ckpt *ck = NULL;
    int no_train = f.resume && (m.npredict || m.generate) && !loom_app_given(&f, "steps");
    if (f.resume) {
        if (!(ck = loom_ckpt_open(f.resume))) return loom_app_fail_rank(PROG, "--resume: %s", loom_error_message()), finish(&m, NULL, NULL, 1);
        if ((rc = read_model_config(&m, ck))) return finish(&m, NULL, ck, rc);
    }
    for (int c = 0; c < m.C; c++) m.names[c] = lang_table[m.lang[c]].name, m.codes[c] = lang_table[m.lang[c]].code;
    int gen_class = -1;
    if (m.generate) {
        int l = lang_find(m.generate);
        for (int c = 0; c < m.C && l >= 0; c++) gen_class = m.lang[c] == l ? c : gen_class;
        char have[64];
        lang_codes(&m, have, sizeof have);
        if (gen_class < 0) {
            loom_app_fail_all(PROG, "--generate %s: %s (the model knows %s)", m.generate,
                              l < 0 ? "unknown language" : "not a language of this model", have);
            return finish(&m, NULL, ck, 2);
        }
        if (!m.generator) {
            loom_app_fail_all(PROG, "--generate: checkpoint %s has no generator (trained with --generator 0)", f.resume);
            return finish(&m, NULL, ck, 2);
        }
    }
    if (!no_train && (rc = load_words(&m, f.resume != NULL))) return finish(&m, NULL, ck, rc);
    if (alloc_buffers(&m, f.batch > 256 ? f.batch : 256)) return loom_app_fail_rank(PROG, "out of memory"), finish(&m, NULL, ck, 1);
    if (build_model(&m) != LOOM_OK) return loom_app_fail_rank(PROG, "%s", loom_error_message()), finish(&m, NULL, ck, 1);

    loom_trainer run;
    loom_task task = {&m, train_forward, evaluate, save_state, load_state, commit};
    if ((rc = loom_app_trainer_init(&run, &f, d, m.ps, PROG))) return finish(&m, NULL, ck, rc);
    m.tr = &run;
    loom_seq_set_shard(&m.seq, run.row0, f.batch);
    if (m.generator) loom_seq_set_shard(&m.gseq, run.row0, f.batch);
    if (ck && no_train) {
        rc = loom_ckpt_read_params(ck, "/model", m.ps) != LOOM_OK;
        if (rc) loom_app_fail_rank(PROG, "%s", loom_error_message());
        loom_ckpt_close(ck);
        if (!rc && m.npredict) rc = classify_predict(&m, run.tape);
        if (!rc && m.generate) rc = classify_generate(&m, run.tape, gen_class, m.count, (int)m.count) < 0;
        return finish(&m, &run, NULL, rc);
    }
    if (loom_app_resume_finish(&run, &task, ck)) return finish(&m, &run, NULL, 1); /* it closes ck */
    printf(PROG ": %s%s x%d hidden %d, embed %d, %d languages, %zu parameters%s, %d rank%s x %d threads%s\n",
           m.bidir ? "bidirectional " : "", f.cell, f.layers, f.hidden, f.embed, m.C, loom_params_size(m.ps),
           m.generator ? " (classifier and generator)" : "", d->size, d->size > 1 ? "s" : "", loom_threads_get(),
           run.step ? ", resumed" : "");
    rc = loom_app_train(&run, &task);
    if (rc == 0) {
        printf("done: %ld steps, %.0f characters/s\n", run.step, run.tokens_per_sec);
        if (d->rank == 0) rc = final_report(&m, run.tape);
    }
    return finish(&m, &run, NULL, rc);
}

int main(int argc, char **argv) { return loom_app_main(argc, argv, PROG, run); }
