/* seq2seq: grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary with an
 * attention encoder-decoder (s2s_model.c). Phoneme and word error rates on a fixed test
 * split, greedy and beam search, beside a letter-aligned majority-phoneme baseline;
 * --predict WORD... from a checkpoint alone. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "g2p_data.h"
#include "s2s_model.h"

#define PROG "seq2seq"
#define DEFAULT_DICT "/usr/share/festival/dicts/cmu/cmudict-0.4.out"
#define TEST_PCT 10.0 /* of the words, by --split-seed */
#define DEV_PCT 2.0
#define EVAL_BATCH 256

typedef struct s2s {
    loom_app_flags *f;
    int beam, bidir, stress, syllables;
    long test_limit;
    uint64_t split_seed;
    const char *predict;
    g2p_dict dict;
    unsigned char *split;
    int *train, ntrain; /* (word, pronunciation) pairs of the training words, by word length */
    char letters[257];
    int letter_id[256];
    char **phones, *phone_buf;
    s2s_model m;
    s2s_batch batch, eval;
    loom_rng rng;
    loom_trainer *tr;
    const char **bw;     /* a batch's words, phones and lengths */
    const int **bp;
    int *bl;
    s2s_hyp *hyps;
} s2s;

static const char ABOUT[] =
    "Grapheme-to-phoneme conversion: a (bidirectional) LSTM encoder over a word's letters, an LSTM decoder over\n"
    "its phones attending to the encoder's states, trained with teacher forcing on the CMU Pronouncing\n"
    "Dictionary (default: Debian's festlex-cmu, " DEFAULT_DICT "; the plain CMUdict format\n"
    "'WORD  PH1 PH2 ...' is read too). Stress and syllables are stripped unless --stress 1 / --syllables 1. The\n"
    "words are split by --split-seed: 10% test, 2% dev, the rest train. Reports phoneme and word error rates on\n"
    "the test words, greedy and with --beam K, beside a letter-aligned majority-phoneme baseline; a word with\n"
    "several pronunciations is right if it matches any. With --resume: --predict WORD... prints each word's\n"
    "phones with the beam's candidates and their scores (mean log-probability per phone).";

/* The phone sequence of pronunciation p. */
static const int *pron(const g2p_dict *d, int p, int *len)
{
    *len = d->pron_at[p + 1] - d->pron_at[p];
    return d->ph + d->pron_at[p];
}

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static const s2s *g_sort; /* qsort has no context: the run whose training pairs are sorted */

static int word_of(const g2p_dict *d, int p)
{
    int lo = 0, hi = d->nwords - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->first[mid] <= p) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Training pairs by word length, then in a fixed pseudo-random order: a step's batch is a
 * run of them, so its words have about one length and little padding. */
static int cmp_train(const void *a, const void *b)
{
    int p = *(const int *)a, q = *(const int *)b;
    const g2p_dict *d = &g_sort->dict;
    size_t lp = strlen(d->words[word_of(d, p)]), lq = strlen(d->words[word_of(d, q)]);
    if (lp != lq) return lp < lq ? -1 : 1;
    uint64_t hp = mix((uint64_t)p ^ g_sort->split_seed), hq = mix((uint64_t)q ^ g_sort->split_seed);
    return hp < hq ? -1 : hp > hq;
}

/* Fills the batch with global rows [row0, row0 + rows) of step's batch of `batch` pairs,
 * padded to the whole global batch's longest word and pronunciation. */
static loom_status train_batch(s2s *s, long step, int row0, int rows, int batch)
{
    loom_rng r = loom_rng_init(s->f->seed ^ 0xBA7C4ull);
    r.counter = (uint64_t)step; /* a pure function of the step: nothing to save for resume */
    long start = loom_rng_below(&r, (uint32_t)s->ntrain);
    int Tx = 1, Ty = 1;
    for (int g = 0; g < batch; g++) {
        int p = s->train[(start + g) % s->ntrain], len, L = (int)strlen(s->dict.words[word_of(&s->dict, p)]);
        pron(&s->dict, p, &len);
        Tx = L > Tx ? L : Tx;
        Ty = len + 1 > Ty ? len + 1 : Ty;
        if (g >= row0 && g < row0 + rows) {
            s->bw[g - row0] = s->dict.words[word_of(&s->dict, p)];
            s->bp[g - row0] = pron(&s->dict, p, &s->bl[g - row0]);
        }
    }
    return s2s_batch_fill(&s->batch, rows, s->bw, s->bp, s->bl, s->letter_id, s->dict.nphones, Tx, Ty);
}

static loom_tensor *train_forward(void *ctx, loom_tape *t, loom_batch *bt)
{
    s2s *s = ctx;
    if (train_batch(s, bt->step, bt->row0, bt->rows, bt->batch) != LOOM_OK) return loom_tape_fail(t, LOOM_EARG, "%s", loom_error_message());
    double n = 0;
    for (int i = 0; i < s->batch.B * s->batch.Ty; i++) n += s->batch.w[i];
    bt->count = n;
    bt->tokens = (long)n;
    return s2s_loss(&s->m, t, &s->batch, 1, &s->rng);
}

static int cmp_len(const void *a, const void *b)
{
    const g2p_dict *d = &g_sort->dict;
    int x = *(const int *)a, y = *(const int *)b;
    size_t lx = strlen(d->words[x]), ly = strlen(d->words[y]);
    return lx != ly ? (lx < ly ? -1 : 1) : (x > y) - (x < y);
}

/* Phoneme and word error rates (percent) over the words of split `which` (at most limit,
 * 0: all), decoded greedily (K 0) or with K beams. Returns 0, or 1 after a message. */
static int error_rates(s2s *s, loom_tape *t, int which, long limit, int K, double *per, double *wer, long *nwords,
                       long *ncut)
{
    int n = 0, *ids = malloc(sizeof(int) * (size_t)s->dict.nwords);
    if (!ids) return fprintf(stderr, PROG ": out of memory\n"), 1;
    for (int w = 0; w < s->dict.nwords && (!limit || n < limit); w++)
        if (s->split[w] == which) ids[n++] = w;
    g_sort = s;
    qsort(ids, (size_t)n, sizeof(int), cmp_len); /* words of a length together: little padding */
    long edits = 0, ref = 0, wrong = 0, cut = 0;
    int rc = 0, k = K > 0 ? K : 1;
    for (int i = 0; i < n && !rc; i += EVAL_BATCH) {
        int B = n - i < EVAL_BATCH ? n - i : EVAL_BATCH;
        for (int j = 0; j < B; j++) s->bw[j] = s->dict.words[ids[i + j]];
        loom_status st = s2s_batch_fill(&s->eval, B, s->bw, NULL, NULL, s->letter_id, s->dict.nphones, 0, 0);
        if (st == LOOM_OK) st = K > 0 ? s2s_beam(&s->m, t, &s->eval, K, S2S_MAX_LEN, s->hyps) : s2s_greedy(&s->m, t, &s->eval, S2S_MAX_LEN, s->hyps);
        if (st != LOOM_OK) rc = 1, fprintf(stderr, PROG ": decoding: %s\n", loom_error_message());
        for (int j = 0; j < B && !rc; j++) {
            const s2s_hyp *h = &s->hyps[j * k];
            int e, r, exact;
            g2p_score(&s->dict, ids[i + j], h->ph, h->len > 0 ? h->len : 0, &e, &r, &exact);
            edits += e, ref += r, wrong += !exact, cut += !h->ended;
        }
    }
    free(ids);
    *ncut = cut;
    *per = ref ? 100.0 * (double)edits / (double)ref : 0;
    *wer = n ? 100.0 * (double)wrong / n : 0;
    *nwords = n;
    return rc;
}

static void evaluate(void *ctx, loom_tape *t, long step)
{
    s2s *s = ctx;
    double per, wer;
    long n, cut;
    if (!error_rates(s, t, 1, 0, 0, &per, &wer, &n, &cut))
        printf("step %ld: dev PER %.2f%% WER %.2f%% (greedy, %ld words, %ld cut at the length limit)\n", step, per, wer, n, cut);
    if (step >= s->f->steps || (s->f->stop_at > 0 && step >= s->f->stop_at)) { /* the end of the run: the test words */
        if (!error_rates(s, t, 2, s->test_limit, 0, &per, &wer, &n, &cut))
            printf("test PER %.2f%% WER %.2f%% (greedy, %ld words, %ld cut at the length limit)\n", per, wer, n, cut);
        fflush(stdout);
        if (!error_rates(s, t, 1, 0, s->beam, &per, &wer, &n, &cut))
            printf("dev PER %.2f%% WER %.2f%% (beam %d, %ld words, %ld cut at the length limit)\n", per, wer, s->beam, n, cut);
        if (!error_rates(s, t, 2, s->test_limit, s->beam, &per, &wer, &n, &cut))
            printf("test PER %.2f%% WER %.2f%% (beam %d, %ld words, %ld cut at the length limit)\n", per, wer, s->beam, n, cut);
    }
    fflush(stdout);
}

/* The baseline on the test words (rank 0). */
static int baseline(s2s *s)
{
    g2p_baseline b;
    if (g2p_baseline_fit(&b, &s->dict, s->split)) return loom_app_fail_rank(PROG, "out of memory for the baseline"), 1;
    long edits = 0, ref = 0, wrong = 0, n = 0;
    int out[4 * S2S_MAX_LEN];
    for (int w = 0; w < s->dict.nwords && (!s->test_limit || n < s->test_limit); w++) {
        if (s->split[w] != 2) continue;
        int len = g2p_baseline_predict(&b, s->dict.words[w], out, 4 * S2S_MAX_LEN), e, r, exact;
        g2p_score(&s->dict, w, out, len, &e, &r, &exact);
        edits += e, ref += r, wrong += !exact, n++;
    }
    printf("baseline (letter-aligned majority phoneme, 2 letters of context each side): test PER %.2f%% WER %.2f%% "
           "(%ld words; %ld training pronunciations aligned, %ld not)\n",
           ref ? 100.0 * edits / ref : 0, n ? 100.0 * wrong / n : 0, n, b.aligned, b.unaligned);
    g2p_baseline_free(&b);
    return 0;
}

/* The phones as NUL-separated names, for the checkpoint. */
static unsigned char *phone_bytes(const s2s *s, size_t *len)
{
    size_t n = 0;
    for (int i = 0; i < s->m.nphones; i++) n += strlen(s->phones[i]) + 1;
    unsigned char *b = malloc(n ? n : 1), *q = b;
    for (int i = 0; b && i < s->m.nphones; i++) q = (unsigned char *)stpcpy((char *)q, s->phones[i]) + 1;
    *len = n;
    return b;
}

static loom_status save_state(void *ctx, loom_ckpt *c)
{
    s2s *s = ctx;
    size_t len;
    unsigned char *ph = phone_bytes(s, &len);
    if (!ph) return loom_error_set(LOOM_ENOMEM, "out of memory for the phone set");
    int64_t v[6] = {s->f->embed, s->bidir, s->stress, s->syllables, (int64_t)s->split_seed, s->m.nphones};
    const char *key[6] = {"/config/embed", "/config/bidir", "/config/stress", "/config/syllables", "/config/split_seed",
                          "/config/nphones"};
    loom_status st = loom_app_config_write(c, s->f);
    for (int i = 0; i < 6 && st == LOOM_OK; i++) st = loom_ckpt_write_i64(c, key[i], &v[i], 0);
    if (st == LOOM_OK) st = loom_ckpt_write_floats(c, "/config/label_smoothing", &s->m.label_smoothing, 0, 1);
    if (st == LOOM_OK) st = loom_ckpt_write_str(c, "/config/letters", s->letters);
    if (st == LOOM_OK) st = loom_ckpt_write_bytes(c, "/config/phones", ph, len); /* NUL-terminated names, by id */
    if (st == LOOM_OK) st = loom_ckpt_write_rng(c, "/rng/dropout", &s->rng);
    free(ph);
    return st;
}

static loom_status load_state(void *ctx, loom_ckpt *c)
{
    s2s *s = ctx;
    return loom_ckpt_read_rng(c, "/rng/dropout", &s->rng);
}

/* The letter ids of an alphabet (ids from 1; 0 for any other byte). */
static void set_letters(s2s *s, const char *letters)
{
    snprintf(s->letters, sizeof s->letters, "%s", letters);
    memset(s->letter_id, 0, sizeof s->letter_id);
    for (int i = 0; s->letters[i]; i++) s->letter_id[(unsigned char)s->letters[i]] = i + 1;
    s->m.nletters = (int)strlen(s->letters);
}

/* An integer /config entry in [lo, hi]; a given flag that differs is refused. Returns 0, 1 or 2. */
static int config_long(loom_ckpt *c, s2s *s, const char *key, const char *flag, long *v, long lo, long hi)
{
    char name[64];
    int64_t x;
    snprintf(name, sizeof name, "/config/%s", key);
    if (loom_ckpt_read_i64(c, name, &x, 0) != LOOM_OK) return loom_app_fail_rank(PROG, "%s", loom_error_message()), 1;
    if (x < lo || x > hi)
        return loom_app_fail_rank(PROG, "checkpoint %s: %s is %lld, expected %ld to %ld", loom_ckpt_path(c), name,
                                  (long long)x, lo, hi), 1;
    if (flag && loom_app_given(s->f, flag) && *v != (long)x)
        return loom_app_fail_rank(PROG, "--%s %ld conflicts with checkpoint %s, which has %s %lld", flag, *v,
                                  loom_ckpt_path(c), key, (long long)x), 2;
    *v = (long)x;
    return 0;
}

/* The model's configuration, alphabet and phone set from a checkpoint. Returns 0, 1 or 2. */
static int read_model_config(s2s *s, loom_ckpt *ck)
{
    loom_app_flags *f = s->f;
    long v[6] = {f->embed, s->bidir, s->stress, s->syllables, (long)s->split_seed, 0};
    const char *key[6] = {"embed", "bidir", "stress", "syllables", "split_seed", "nphones"};
    const char *flag[6] = {"embed", "bidir", "stress", "syllables", "split-seed", NULL};
    const long hi[6] = {1 << 20, 1, 1, 1, LONG_MAX, 1 << 16};
    int rc = loom_app_config_read(ck, f, PROG);
    if (!rc) rc = loom_app_config_float(ck, f, "label_smoothing", "label-smoothing", &s->m.label_smoothing, PROG);
    for (int i = 0; i < 6 && !rc; i++) rc = config_long(ck, s, key[i], flag[i], &v[i], i == 0 || i == 5 ? 1 : 0, hi[i]);
    if (rc) return rc;
    f->embed = (int)v[0], s->bidir = (int)v[1], s->stress = (int)v[2], s->syllables = (int)v[3];
    s->split_seed = (uint64_t)v[4], s->m.nphones = (int)v[5];
    char letters[257];
    size_t n = 0;
    unsigned char *ph = malloc((size_t)s->m.nphones * 17);
    s->phones = malloc(sizeof(char *) * (size_t)s->m.nphones);
    if (!ph || !s->phones) return free(ph), loom_app_fail_rank(PROG, "out of memory"), 1;
    if (loom_ckpt_read_str(ck, "/config/letters", letters, sizeof letters) != LOOM_OK ||
        loom_ckpt_read_bytes(ck, "/config/phones", ph, (size_t)s->m.nphones * 17, &n) != LOOM_OK)
        return free(ph), loom_app_fail_rank(PROG, "%s", loom_error_message()), 1;
    set_letters(s, letters);
    s->phone_buf = (char *)ph;
    int k = 0;
    for (size_t i = 0; i < n && k < s->m.nphones; i += strlen((char *)ph + i) + 1) s->phones[k++] = (char *)ph + i;
    if (k != s->m.nphones || n == 0 || ph[n - 1] != 0 || s->m.nletters == 0)
        return loom_app_fail_rank(PROG, "checkpoint %s: /config/phones holds %d names, /config/nphones says %d (or "
                                  "/config/letters is empty)", loom_ckpt_path(ck), k, s->m.nphones), 1;
    return 0;
}

/* Reads the dictionary and splits it; on resume its symbols must be the checkpoint's. Returns 0, 1 or 2. */
static int load_dict(s2s *s, int resumed)
{
    char err[512];
    g2p_read_opts o = {s->stress, s->syllables};
    if (g2p_read(s->f->data, &o, &s->dict, err, sizeof err)) {
        int missing = strstr(err, "No such file") != NULL;
        loom_app_fail_all(PROG, "--data %s%s", err,
                          missing ? " (the CMU Pronouncing Dictionary comes with Debian's festlex-cmu: "
                                    "apt-get install festlex-cmu, which installs " DEFAULT_DICT ")" : "");
        return 1;
    }
    if (resumed) {
        int same = strcmp(s->letters, s->dict.letters) == 0 && s->m.nphones == s->dict.nphones;
        for (int i = 0; same && i < s->m.nphones; i++) same = strcmp(s->phones[i], s->dict.phones[i]) == 0;
        if (!same) {
            loom_app_fail_all(PROG, "--data %s: its letters (%s) or its %d phones are not the checkpoint's (%s, %d phones)",
                              s->f->data, s->dict.letters, s->dict.nphones, s->letters, s->m.nphones);
            return 2;
        }
    } else {
        set_letters(s, s->dict.letters);
        s->phones = s->dict.phones;
        s->m.nphones = s->dict.nphones;
    }
    if (!(s->split = malloc((size_t)s->dict.nwords))) return loom_app_fail_rank(PROG, "out of memory"), 1;
    g2p_split(s->dict.nwords, s->split_seed, TEST_PCT, DEV_PCT, s->split);
    if (!(s->train = malloc(sizeof(int) * (size_t)s->dict.nprons))) return loom_app_fail_rank(PROG, "out of memory"), 1;
    for (int w = 0; w < s->dict.nwords; w++)
        for (int p = s->dict.first[w]; p < s->dict.first[w + 1] && s->split[w] == 0; p++) s->train[s->ntrain++] = p;
    if (s->ntrain < s->f->batch) {
        loom_app_fail_all(PROG, "--data %s: %d training pronunciations are too few for --batch %d", s->f->data, s->ntrain,
                          s->f->batch);
        return 2;
    }
    g_sort = s;
    qsort(s->train, (size_t)s->ntrain, sizeof(int), cmp_train);
    return 0;
}

/* --predict: each word's best phones, then the beam's candidates with their scores. */
static int predict(s2s *s, loom_tape *t)
{
    char *words = strdup(s->predict), *save = NULL, **list = calloc(strlen(s->predict) / 2 + 1, sizeof(char *));
    int n = 0, K = s->beam, rc = 0;
    if (!words || !list) return free(words), free(list), fprintf(stderr, PROG ": out of memory\n"), 1;
    for (char *w = strtok_r(words, " \t,", &save); w && !rc; w = strtok_r(NULL, " \t,", &save)) {
        for (char *c = w; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        for (const unsigned char *c = (const unsigned char *)w; *c && !rc; c++)
            if (!s->letter_id[*c])
                rc = 2, loom_app_fail_all(PROG, "--predict '%s': letter '%c' (byte 0x%02x) is not in the model's alphabet (%s)",
                                          w, *c >= 0x20 && *c < 0x7f ? *c : '?', *c, s->letters);
        if (!rc && (int)strlen(w) > S2S_MAX_LEN)
            rc = 2, loom_app_fail_all(PROG, "--predict '%.20s...': longer than %d letters", w, S2S_MAX_LEN);
        list[n++] = w;
    }
    if (!rc && n == 0) rc = 2, loom_app_fail_all(PROG, "--predict '%s': no words in it", s->predict);
    for (int i0 = 0; i0 < n && !rc; i0 += EVAL_BATCH) {
        int B = n - i0 < EVAL_BATCH ? n - i0 : EVAL_BATCH;
        if (s2s_batch_fill(&s->eval, B, (const char *const *)list + i0, NULL, NULL, s->letter_id, s->m.nphones, 0, 0) != LOOM_OK ||
            s2s_beam(&s->m, t, &s->eval, K, S2S_MAX_LEN, s->hyps) != LOOM_OK) {
            rc = 1, fprintf(stderr, PROG ": %s\n", loom_error_message());
            break;
        }
        for (int i = 0; i < B; i++) {
            printf("%s:", list[i0 + i]);
            for (int j = 0; j < s->hyps[i * K].len; j++) printf(" %s", s->phones[s->hyps[i * K].ph[j]]);
            printf("\n");
            for (int k = 0; k < K && s->hyps[i * K + k].len >= 0; k++) {
                const s2s_hyp *h = &s->hyps[i * K + k];
                printf("  %2d. %8.4f ", k + 1, h->score);
                for (int j = 0; j < h->len; j++) printf(" %s", s->phones[h->ph[j]]);
                printf("%s\n", h->ended ? "" : " (cut at the length limit)");
            }
        }
    }
    free(words);
    free(list);
    return rc;
}

static int finish(s2s *s, loom_trainer *run, loom_ckpt *ck, int rc)
{
    if (run) loom_trainer_free(run);
    loom_ckpt_close(ck);
    s2s_free(&s->m);
    s2s_batch_free(&s->batch);
    s2s_batch_free(&s->eval);
    if (s->phones != s->dict.phones) free(s->phones);
    free(s->phone_buf);
    g2p_dict_free(&s->dict);
    free(s->split), free(s->train), free(s->bw), free(s->bp), free(s->bl), free(s->hyps);
    return rc;
}

/* --predict WORD WORD ...: the words after --predict, up to the next flag, as one value (*joined, the
 * caller's to free). */
static char **join_predict(int *argc, char **argv, char **joined)
{
    char **out = malloc(sizeof(char *) * (size_t)(*argc + 1));
    int n = 0;
    if (!out) return NULL;
    for (int i = 0; i < *argc; i++) {
        out[n++] = argv[i];
        if (strcmp(argv[i], "--predict") != 0 || i + 1 >= *argc || *joined) continue; /* the first --predict */
        size_t len = 1;
        int j = i + 1;
        for (; j < *argc && strncmp(argv[j], "--", 2) != 0; j++) len += strlen(argv[j]) + 1;
        if (j == i + 1) continue;
        char *v = malloc(len);
        if (!v) return free(out), NULL;
        v[0] = 0;
        for (int k = i + 1; k < j; k++) strcat(strcat(v, k > i + 1 ? " " : ""), argv[k]);
        out[n++] = *joined = v;
        i = j - 1;
    }
    out[n] = NULL;
    *argc = n;
    return out;
}

static int run(loom_dist *d, int argc, char **argv)
{
    loom_app_flags f = {.data = DEFAULT_DICT, .steps = 6000, .batch = 64, .seq = 1, .hidden = 256, .layers = 1,
                        .embed = 64, .cell = "lstm", .optim = "adam", .sched = "constant", .lr = 2e-3f, .clip = 5.0f,
                        .seed = 1, .log_every = 50, .eval_every = 1000, .keep = 1};
    s2s s = {.f = &f, .beam = 5, .bidir = 1, .split_seed = 1, .m.len_norm = 1.0f};
    loom_flag extra[] = {{"embed", LOOM_FLAG_INT, &f.embed, "letter and phone embedding size"},
                         {"bidir", LOOM_FLAG_INT, &s.bidir, "1: bidirectional encoder (each direction --hidden / 2)"},
                         {"beam", LOOM_FLAG_INT, &s.beam, "beam width for the test and --predict (1: greedy)"},
                         {"predict", LOOM_FLAG_STR, &s.predict, "with --resume: WORD... to transcribe"},
                         {"stress", LOOM_FLAG_INT, &s.stress, "1: keep stress marks on the vowels"},
                         {"syllables", LOOM_FLAG_INT, &s.syllables, "1: a '.' phone between Festival's syllables"},
                         {"split-seed", LOOM_FLAG_U64, &s.split_seed, "seed of the train/dev/test split by word"},
                         {"test-limit", LOOM_FLAG_LONG, &s.test_limit, "score at most this many test words (0: all)"},
                         {"len-norm", LOOM_FLAG_FLOAT, &s.m.len_norm, "beam hypotheses ranked by log-probability / length^this"},
                         {"label-smoothing", LOOM_FLAG_FLOAT, &s.m.label_smoothing, "training targets: this share spread over every phone"},
                         {NULL, 0, NULL, NULL}};
    int rc = loom_app_parse(&f, argc, argv, ABOUT, extra);
    if (rc) return rc == 1 ? 0 : rc;
    if (loom_app_check(&f, PROG)) return 2;
    const char *bad = NULL;
    if (s.beam < 1 || s.beam > S2S_MAX_BEAM) bad = "--beam must be 1 to 64 (1: greedy)";
    else if (f.embed < 1) bad = "--embed must be positive";
    else if ((s.bidir | s.stress | s.syllables) & ~1) bad = "--bidir, --stress and --syllables are 0 or 1";
    else if (s.test_limit < 0) bad = "--test-limit must be >= 0 (0: every test word)";
    else if (!(s.m.label_smoothing >= 0 && s.m.label_smoothing < 1)) bad = "--label-smoothing must be in [0, 1)";
    else if (!(s.m.len_norm >= 0 && s.m.len_norm <= 4)) bad = "--len-norm must be 0 to 4 (0: none, 1: the mean per phone)";
    else if (s.predict && !f.resume) bad = "--predict needs --resume PATH (the model to ask)";
    if (bad) return loom_app_fail_all(PROG, "%s", bad), 2;
    if (f.threads > 0) loom_threads_set(f.threads);

    loom_ckpt *ck = NULL;
    if (f.resume) {
        if (!(ck = loom_ckpt_open(f.resume))) return loom_app_fail_rank(PROG, "--resume: %s", loom_error_message()), 1;
        if ((rc = read_model_config(&s, ck))) return finish(&s, NULL, ck, rc);
    }
    if (s.bidir && f.hidden % 2) {
        loom_app_fail_all(PROG, "--hidden %d: a bidirectional encoder needs it even (each direction has half)", f.hidden);
        return finish(&s, NULL, ck, 2);
    }
    if (!s.predict && (rc = load_dict(&s, f.resume != NULL))) return finish(&s, NULL, ck, rc);
    int cap = f.batch > EVAL_BATCH ? f.batch : EVAL_BATCH;
    s.bw = malloc(sizeof(char *) * (size_t)cap);
    s.bp = malloc(sizeof(int *) * (size_t)cap);
    s.bl = malloc(sizeof(int) * (size_t)cap);
    s.hyps = malloc(sizeof(s2s_hyp) * (size_t)EVAL_BATCH * (size_t)s.beam);
    s.m.embed = f.embed, s.m.hidden = f.hidden, s.m.layers = f.layers, s.m.bidir = s.bidir, s.m.dropout = f.dropout;
    s.rng = loom_rng_init(f.seed);
    loom_status st = s.bw && s.bp && s.bl && s.hyps ? s2s_batch_new(&s.batch, f.batch) : loom_error_set(LOOM_ENOMEM, "out of memory");
    if (st == LOOM_OK) st = s2s_batch_new(&s.eval, EVAL_BATCH);
    if (st == LOOM_OK) st = s2s_declare(&s.m, f.cell, f.forget_bias);
    if (st == LOOM_OK) st = loom_params_alloc(s.m.ps, &s.rng);
    if (st != LOOM_OK) return loom_app_fail_rank(PROG, "%s", loom_error_message()), finish(&s, NULL, ck, 1);
    s2s_apply_init(&s.m);

    loom_trainer run;
    loom_task task = {&s, train_forward, evaluate, save_state, load_state, NULL};
    if ((rc = loom_app_trainer_init(&run, &f, d, s.m.ps, PROG))) return finish(&s, NULL, ck, rc);
    s.tr = &run;
    s.m.row0 = run.row0, s.m.global_batch = f.batch;
    loom_seq_set_shard(&s.m.enc, run.row0, f.batch); /* dropout masks by global row */
    loom_seq_set_shard(&s.m.dec, run.row0, f.batch);
    if (s.predict) {
        rc = loom_ckpt_read_params(ck, "/model", s.m.ps) != LOOM_OK;
        if (rc) loom_app_fail_rank(PROG, "%s", loom_error_message());
        else rc = predict(&s, run.tape);
        return finish(&s, &run, ck, rc);
    }
    if (loom_app_resume_finish(&run, &task, ck)) return finish(&s, &run, NULL, 1); /* it closes ck */
    printf(PROG ": %s: %d words (%d pronunciations, %ld entries over %d letters skipped), %d letters, %d phones; split "
           "(seed %llu): %d train pronunciations, dev %.0f%%, test %.0f%% of the words; %s%s x%d hidden %d, embed %d, "
           "%zu parameters, %d rank%s x %d threads%s\n",
           f.data, s.dict.nwords, s.dict.nprons, s.dict.skipped, G2P_MAX_LEN, s.m.nletters, s.m.nphones,
           (unsigned long long)s.split_seed, s.ntrain, DEV_PCT, TEST_PCT, s.bidir ? "bidirectional " : "", f.cell,
           f.layers, f.hidden, f.embed, loom_params_size(s.m.ps), d->size, d->size > 1 ? "s" : "", loom_threads_get(),
           run.step ? ", resumed" : "");
    if (d->rank == 0 && baseline(&s)) return finish(&s, &run, NULL, 1);
    fflush(stdout);
    long first = run.step;
    rc = loom_app_train(&run, &task);
    if (rc == 0 && run.step > first) printf("done: %ld steps, last train loss %.4f nats/phone, %.0f phones/s\n", run.step, run.last_loss, run.tokens_per_sec);
    return finish(&s, &run, NULL, rc);
}

int main(int argc, char **argv)
{
    char *joined = NULL, **args = join_predict(&argc, argv, &joined);
    if (!args) return fprintf(stderr, PROG ": out of memory\n"), 1;
    int rc = loom_app_main(argc, args, PROG, run);
    free(joined);
    free(args);
    return rc;
}
