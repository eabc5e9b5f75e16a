/* seq2seq's data and model pieces (examples/g2p_data.c, g2p_baseline.c, s2s_model.c):
 * the dictionary reader in both formats, the split, edit distance and scoring, the
 * baseline against values worked out by hand, a gradcheck of the whole attention model,
 * and beam search with one beam against greedy decoding. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "g2p_data.h"
#include "s2s_model.h"

static char err[512];

/* The phones of pronunciation k of word, as one string "k ae t". */
static const char *phones_of(const g2p_dict *d, const char *word, int k)
{
    static char buf[256];
    int w = g2p_word_id(d, word);
    cr_assert_geq(w, 0, "'%s' is not in the dictionary", word);
    cr_assert_lt(k, d->first[w + 1] - d->first[w], "'%s' has no pronunciation %d", word, k);
    int p = d->first[w] + k;
    buf[0] = 0;
    for (int i = d->pron_at[p]; i < d->pron_at[p + 1]; i++)
        strcat(strcat(buf, i > d->pron_at[p] ? " " : ""), d->phones[d->ph[i]]);
    return buf;
}

static int nprons(const g2p_dict *d, const char *word)
{
    int w = g2p_word_id(d, word);
    return w < 0 ? 0 : d->first[w + 1] - d->first[w];
}

static const char FESTIVAL[] = "MNCL\n"
                               "(\"a\" dt (((ax) 0)))\n"
                               "(\"a\" n (((ey) 1)))\n"
                               "(\"aardvark\" nil (((aa r d) 1) ((v aa r k) 2)))\n"
                               "(\"read\" v (((r iy d) 1)))\n"
                               "(\"read\" n (((r iy d) 1)))\n" /* the same phones: one pronunciation */
                               "(\"AWOL\" n (((ey) 1) ((w ao l) 0)))\n";

Test(g2p_read, festival_format_strips_stress_and_syllables)
{
    g2p_dict d;
    cr_assert_eq(g2p_parse(FESTIVAL, strlen(FESTIVAL), "fest", NULL, &d, err, sizeof err), 0, "%s", err);
    cr_expect_eq(d.nwords, 4);
    cr_expect_eq(nprons(&d, "a"), 2, "two parts of speech, two pronunciations");
    cr_expect_str_eq(phones_of(&d, "a", 0), "ax");
    cr_expect_str_eq(phones_of(&d, "a", 1), "ey");
    cr_expect_str_eq(phones_of(&d, "aardvark", 0), "aa r d v aa r k");
    cr_expect_eq(nprons(&d, "read"), 1, "identical pronunciations are one");
    cr_expect_str_eq(phones_of(&d, "awol", 0), "ey w ao l", "words are lower-cased");
    cr_expect_str_eq(d.letters, "adeklorvw");
    cr_expect_eq(d.nphones, 11); /* aa ao ax d ey iy k l r v w */
    g2p_dict_free(&d);
    /* Stress onto the syllable's vowels, and syllable marks, when asked. */
    g2p_read_opts o = {1, 1};
    cr_assert_eq(g2p_parse(FESTIVAL, strlen(FESTIVAL), "fest", &o, &d, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(phones_of(&d, "aardvark", 0), "aa1 r d . v aa2 r k");
    cr_expect_str_eq(phones_of(&d, "a", 0), "ax0");
    g2p_dict_free(&d);
}

static const char PLAIN[] = ";;; # CMUdict  --  Major Version: 0.07\n"
                            "READ  R EH1 D\n"
                            "READ(1)  R IY1 D\n"
                            "TOMATO  T AH0 M EY1 T OW2\n"
                            "TOMATO(2)  T AH0 M AA1 T OW2  # a comment\n"
                            "\n"
                            "X  EH1 K S\n";

Test(g2p_read, plain_format_with_variants_and_comments)
{
    g2p_dict d;
    cr_assert_eq(g2p_parse(PLAIN, strlen(PLAIN), "plain", NULL, &d, err, sizeof err), 0, "%s", err);
    cr_expect_eq(d.nwords, 3);
    cr_expect_eq(nprons(&d, "read"), 2);
    cr_expect_str_eq(phones_of(&d, "read", 0), "r eh d"); /* sorted by phone ids: eh < iy */
    cr_expect_str_eq(phones_of(&d, "read", 1), "r iy d");
    cr_expect_str_eq(phones_of(&d, "tomato", 0), "t ah m aa t ow");
    cr_expect_str_eq(phones_of(&d, "tomato", 1), "t ah m ey t ow");
    cr_expect_str_eq(phones_of(&d, "x", 0), "eh k s");
    g2p_dict_free(&d);
    g2p_read_opts o = {1, 0};
    cr_assert_eq(g2p_parse(PLAIN, strlen(PLAIN), "plain", &o, &d, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(phones_of(&d, "tomato", 0), "t ah0 m aa1 t ow2");
    g2p_dict_free(&d);
}

Test(g2p_read, bad_inputs_name_the_file_and_the_problem)
{
    g2p_dict d;
    cr_expect_eq(g2p_read("/nonexistent/cmudict", NULL, &d, err, sizeof err), 1);
    cr_expect(strstr(err, "/nonexistent/cmudict: No such file or directory"), "%s", err);
    const char *empty = ";;; only a comment\n\nMNCL\n";
    cr_expect_eq(g2p_parse(empty, strlen(empty), "empty.dict", NULL, &d, err, sizeof err), 1);
    cr_expect(strstr(err, "empty.dict: no entries in it"), "%s", err);
    const char *lonely = "HELLO  HH AH L OW\nWORLD\n";
    cr_expect_eq(g2p_parse(lonely, strlen(lonely), "x.dict", NULL, &d, err, sizeof err), 1);
    cr_expect(strstr(err, "x.dict: line 2: 'WORLD' is neither"), "%s", err);
    const char *broken = "(\"hello\" nil (((hh ax) 0) ((l ow) 1))\n";
    cr_expect_eq(g2p_parse(broken, strlen(broken), "f.dict", NULL, &d, err, sizeof err), 1);
    cr_expect(strstr(err, "line 1"), "%s", err);
}

Test(g2p_split, disjoint_complete_seeded)
{
    enum { N = 1000 };
    unsigned char a[N], b[N], c[N];
    g2p_split(N, 7, 10.0, 2.0, a);
    g2p_split(N, 7, 10.0, 2.0, b);
    g2p_split(N, 8, 10.0, 2.0, c);
    int count[3] = {0, 0, 0}, differ = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(a[i] <= 2);
        count[a[i]]++; /* each word in exactly one part */
        differ += a[i] != c[i];
    }
    cr_expect_eq(count[2], 100);
    cr_expect_eq(count[1], 20);
    cr_expect_eq(count[0], 880);
    cr_expect_arr_eq(a, b, N, "the same seed gives the same split");
    cr_expect_gt(differ, 0, "another seed gives another split");
    unsigned char tiny[3];
    g2p_split(3, 1, 10.0, 2.0, tiny); /* small dictionaries still get a test and a dev word */
    cr_expect_eq(tiny[0] + tiny[1] + tiny[2], 3);
}

Test(g2p_score, edit_distance_by_hand)
{
    const int kitten[] = {'k', 'i', 't', 't', 'e', 'n'}, sitting[] = {'s', 'i', 't', 't', 'i', 'n', 'g'};
    cr_expect_eq(g2p_edit_distance(kitten, 6, sitting, 7), 3); /* k->s, e->i, +g */
    cr_expect_eq(g2p_edit_distance(sitting, 7, kitten, 6), 3);
    cr_expect_eq(g2p_edit_distance(kitten, 0, sitting, 7), 7);
    cr_expect_eq(g2p_edit_distance(kitten, 6, kitten, 6), 0);
    cr_expect_eq(g2p_edit_distance(kitten + 1, 5, kitten, 6), 1);
}

Test(g2p_score, closest_of_several_pronunciations)
{
    g2p_dict d;
    cr_assert_eq(g2p_parse(PLAIN, strlen(PLAIN), "plain", NULL, &d, err, sizeof err), 0, "%s", err);
    int w = g2p_word_id(&d, "read"), r = g2p_phone_id(&d, "r"), eh = g2p_phone_id(&d, "eh"), iy = g2p_phone_id(&d, "iy");
    int ih = g2p_phone_id(&d, "ih"), dd = g2p_phone_id(&d, "d"), e, len, exact;
    cr_assert(r >= 0 && eh >= 0 && iy >= 0 && dd >= 0 && ih < 0);
    int red[] = {r, eh, dd}, reed[] = {r, iy, dd}, rd[] = {r, dd}, long_[] = {r, eh, eh, dd, dd};
    g2p_score(&d, w, red, 3, &e, &len, &exact);
    cr_expect(e == 0 && len == 3 && exact);
    g2p_score(&d, w, reed, 3, &e, &len, &exact);
    cr_expect(e == 0 && exact, "the second pronunciation counts as right too");
    g2p_score(&d, w, rd, 2, &e, &len, &exact);
    cr_expect(e == 1 && len == 3 && !exact);
    g2p_score(&d, w, long_, 5, &e, &len, &exact);
    cr_expect(e == 2 && len == 3 && !exact);
    g2p_dict_free(&d);
}

/* Four words that align one letter to one phone, and one that no alignment fits. */
static const char TOY[] = "CAT  K AE1 T\nBAT  B AE1 T\nTAB  T AE1 B\nCAB  K AE1 B\nX  EH1 K S\n";

static const char *baseline_says(const g2p_baseline *b, const g2p_dict *d, const char *word)
{
    static char buf[256];
    int out[64], n = g2p_baseline_predict(b, word, out, 64);
    buf[0] = 0;
    for (int i = 0; i < n; i++) strcat(strcat(buf, i ? " " : ""), d->phones[out[i]]);
    return buf;
}

Test(g2p_baseline, majority_chunks_by_hand)
{
    g2p_dict d;
    g2p_baseline b;
    cr_assert_eq(g2p_parse(TOY, strlen(TOY), "toy", NULL, &d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(g2p_baseline_fit(&b, &d, NULL), 0);
    cr_expect_eq(b.aligned, 4);
    cr_expect_eq(b.unaligned, 1, "x: one letter cannot take three phones");
    /* Seen words come back whole (their 5-letter contexts). */
    cr_expect_str_eq(baseline_says(&b, &d, "cat"), "k ae t");
    cr_expect_str_eq(baseline_says(&b, &d, "tab"), "t ae b");
    /* "bac": b from its context (#,b,a) in "bat"; a and c from the letter alone (a -> ae in
     * all four words; c -> k in "cat" and "cab"). */
    cr_expect_str_eq(baseline_says(&b, &d, "bac"), "b ae k");
    /* A letter never aligned (x) says nothing. */
    cr_expect_str_eq(baseline_says(&b, &d, "xa"), "ae");
    g2p_baseline_free(&b);
    g2p_dict_free(&d);
}

/* A small model over a 3-letter, 3-phone alphabet. */
static void small_model(s2s_model *m, int bidir, int layers, const char *cell)
{
    memset(m, 0, sizeof *m);
    m->nletters = 3, m->nphones = 3, m->embed = 3, m->hidden = 4, m->layers = layers, m->bidir = bidir;
    m->global_batch = 3, m->len_norm = 1.0f;
    cr_assert_eq(s2s_declare(m, cell, 0.0f), LOOM_OK, "%s", loom_error_message());
    loom_rng r = loom_rng_init(3);
    cr_assert_eq(loom_params_alloc(m->ps, &r), LOOM_OK, "%s", loom_error_message());
    s2s_apply_init(m);
    /* Larger weights than the default init, so the decoder's choices differ by row. */
    float *p = loom_params_data(m->ps);
    for (size_t i = 0; i < loom_params_size(m->ps); i++) p[i] *= 3.0f;
}

static const int LETTER_ID[256] = {['a'] = 1, ['b'] = 2, ['c'] = 3};
static const char *const WORDS[3] = {"abc", "ca", "bbac"};
static const int PH0[] = {0, 1, 2}, PH1[] = {2}, PH2[] = {1, 1, 0, 2};
static const int *const PH[3] = {PH0, PH1, PH2};
static const int PHLEN[3] = {3, 1, 4};

typedef struct lcase {
    s2s_model *m;
    s2s_batch *b;
} lcase;

static loom_tensor *loss_fn(loom_tape *t, void *ctx)
{
    lcase *k = ctx;
    return s2s_loss(k->m, t, k->b, 0, NULL);
}

Test(s2s_model, whole_model_gradcheck_with_variable_lengths)
{
    const char *cells[2] = {"lstm", "gru"};
    for (int c = 0; c < 2; c++) {
        s2s_model m;
        s2s_batch b;
        small_model(&m, 1, c + 1, cells[c]); /* bidirectional: LSTM 1 layer, GRU 2 layers */
        cr_assert_eq(s2s_batch_new(&b, 3), LOOM_OK);
        cr_assert_eq(s2s_batch_fill(&b, 3, WORDS, PH, PHLEN, LETTER_ID, 3, 0, 0), LOOM_OK, "%s", loom_error_message());
        cr_expect(b.Tx == 4 && b.Ty == 5);
        lcase k = {&m, &b};
        loom_gradcheck_result res;
        cr_assert_eq(loom_gradcheck_params(loss_fn, &k, m.ps, 0, 1e-2, &res), LOOM_OK, "%s", loom_error_message());
        char line[256];
        loom_gradcheck_format(&res, line, sizeof line);
        cr_expect_lt(res.worst_rel_err, 5e-3, "%s: %s", cells[c], line);
        s2s_batch_free(&b);
        s2s_free(&m);
    }
}

Test(s2s_model, padding_does_not_change_the_loss)
{
    s2s_model m;
    s2s_batch b;
    small_model(&m, 1, 1, "lstm");
    cr_assert_eq(s2s_batch_new(&b, 3), LOOM_OK);
    loom_tape *t = loom_tape_new(0);
    cr_assert_eq(s2s_batch_fill(&b, 3, WORDS, PH, PHLEN, LETTER_ID, 3, 0, 0), LOOM_OK);
    loom_tensor *l = s2s_loss(&m, t, &b, 0, NULL);
    cr_assert_not_null(l, "%s", loom_error_message());
    float tight = l->data[0];
    loom_tape_reset(t);
    cr_assert_eq(s2s_batch_fill(&b, 3, WORDS, PH, PHLEN, LETTER_ID, 3, 9, 11), LOOM_OK);
    cr_assert_not_null(l = s2s_loss(&m, t, &b, 0, NULL), "%s", loom_error_message());
    cr_expect_float_eq(l->data[0], tight, 1e-5 * fabsf(tight), "padded to 9 x 11: %g vs %g", l->data[0], tight);
    loom_tape_free(t);
    s2s_batch_free(&b);
    s2s_free(&m);
}

/* Enough for the untrained model to end some words and run others to the limit. */
#define END_BIAS 0.3f
Test(s2s_model, beam_of_one_is_greedy)
{
    s2s_model m;
    s2s_batch b;
    s2s_hyp g[3], h[3], top[3 * 4];
    small_model(&m, 1, 2, "lstm");
    cr_assert_eq(s2s_batch_new(&b, 3), LOOM_OK);
    cr_assert_eq(s2s_batch_fill(&b, 3, WORDS, NULL, NULL, LETTER_ID, 3, 0, 0), LOOM_OK);
    loom_tape *t = loom_tape_new(0);
    int ended = 0, cut = 0;
    loom_params_find(m.ps, "head.bias")->data[3] += END_BIAS; /* the end token competes */
    for (int maxlen = 1; maxlen <= 8; maxlen++) {
        cr_assert_eq(s2s_greedy(&m, t, &b, maxlen, g), LOOM_OK, "%s", loom_error_message());
        cr_assert_eq(s2s_beam(&m, t, &b, 1, maxlen, h), LOOM_OK, "%s", loom_error_message());
        for (int i = 0; i < 3; i++) {
            cr_expect_eq(h[i].len, g[i].len, "maxlen %d word %d", maxlen, i);
            cr_expect_eq(h[i].ended, g[i].ended, "maxlen %d word %d", maxlen, i);
            cr_expect_arr_eq(h[i].ph, g[i].ph, sizeof(int) * (size_t)g[i].len);
            cr_expect_float_eq(h[i].score, g[i].score, 1e-6, "maxlen %d word %d: %g vs %g", maxlen, i, h[i].score, g[i].score);
            ended += g[i].ended, cut += !g[i].ended;
        }
    }
    cr_expect(ended > 0 && cut > 0, "both endings were exercised (%d ended, %d cut)", ended, cut);
    /* Four beams: distinct hypotheses, best first. */
    cr_assert_eq(s2s_beam(&m, t, &b, 4, 8, top), LOOM_OK, "%s", loom_error_message());
    for (int i = 0; i < 3; i++)
        for (int k = 1; k < 4 && top[i * 4 + k].len >= 0; k++) {
            cr_expect_geq(top[i * 4 + k - 1].score, top[i * 4 + k].score);
            const s2s_hyp *x = &top[i * 4 + k - 1], *y = &top[i * 4 + k];
            cr_expect(x->len != y->len || x->ended != y->ended || memcmp(x->ph, y->ph, sizeof(int) * (size_t)x->len) != 0,
                      "word %d: beams %d and %d are the same", i, k - 1, k);
        }
    loom_tape_free(t);
    s2s_batch_free(&b);
    s2s_free(&m);
}

/* A training step (forward with dropout, backward) allocates from the tape's arena only:
 * after the first steps, loom makes no allocation at all. */
Test(s2s_model, steady_step_allocates_nothing)
{
    s2s_model m;
    s2s_batch b;
    small_model(&m, 1, 2, "lstm");
    m.dropout = 0.2f;
    cr_assert_eq(s2s_batch_new(&b, 3), LOOM_OK);
    cr_assert_eq(s2s_batch_fill(&b, 3, WORDS, PH, PHLEN, LETTER_ID, 3, 0, 0), LOOM_OK);
    loom_tape *t = loom_tape_new(0);
    loom_rng r = loom_rng_init(5);
    uint64_t before = 0;
    for (int step = 0; step < 6; step++) {
        if (step == 3) before = loom_alloc_count();
        loom_tape_reset(t);
        loom_params_zero_grad(m.ps);
        loom_tensor *l = s2s_loss(&m, t, &b, 1, &r);
        cr_assert_not_null(l, "%s", loom_error_message());
        cr_assert_eq(loom_tape_backward(t, l), LOOM_OK, "%s", loom_error_message());
    }
    cr_expect_eq(loom_alloc_count(), before, "%llu allocations in 3 steady steps",
                 (unsigned long long)(loom_alloc_count() - before));
    loom_tape_free(t);
    s2s_batch_free(&b);
    s2s_free(&m);
}
