/* word_lm's text side (examples/word_text.c): the tokenizer, the vocabulary and its
 * round trip through a checkpoint, and the Kneser-Ney bigram against values computed
 * by hand on a tiny corpus. */
#define _DEFAULT_SOURCE
#include <math.h>
#include <unistd.h>

#include "helpers.h"
#include "loom_io.h"
#include "word_text.h"

static word_tokens tokenize(const char *text)
{
    word_tokens t = {0};
    cr_assert_eq(word_tokenize((const unsigned char *)text, strlen(text), &t), 0);
    return t;
}

/* Asserts that text gives exactly the tokens of want, separated by single spaces. */
static void expect_tokens(const char *text, const char *want)
{
    word_tokens t = tokenize(text);
    char got[1024] = "";
    for (long i = 0; i < t.n; i++) {
        if (i) strcat(got, " ");
        strcat(got, word_token(&t, i));
    }
    cr_expect_str_eq(got, want, "tokens of \"%s\"", text);
    word_tokens_free(&t);
}

Test(tokenizer, words_punctuation_and_sentence_ends)
{
    /* lower case; an apostrophe inside a word stays; a run of one punctuation mark is one
     * token; a sentence ends after . ! ? (and closing quotes) before a space or the end */
    expect_tokens("Don't PANIC!  It's 3.14, ok?\"  \n%\nNext line -- end",
                  "don't panic ! </s> it's 3 . 14 , ok ? \" </s> next line -- end");
    expect_tokens("'Quoted' words... and (brackets).", "' quoted ' words ... </s> and ( brackets ) . </s>");
    /* a fortune separator ends a sentence, never twice in a row and never first */
    expect_tokens("%\nOne.\n%\nTwo\n%\n", "one . </s> two </s>");
    /* control characters are spaces; bytes >= 0x80 belong to words, as they are */
    expect_tokens("caf\xc3\xa9\tna\x01ive", "caf\xc3\xa9 na ive");
    expect_tokens("", "");
    expect_tokens(" \n\t ", "");
    /* '<' is punctuation, so no word can be <unk> or </s> */
    expect_tokens("<unk> </s>", "< unk > < / s >");
}

/* "the cat sat . </s> the cat ran . </s> the dog sat . </s>": 15 tokens. */
static const char CORPUS[] = "The cat sat. The cat ran. The dog sat.";

Test(vocab, order_min_count_and_unknown_words)
{
    word_tokens t = tokenize(CORPUS);
    cr_assert_eq(t.n, 15);
    word_vocab v;
    cr_assert_eq(word_vocab_build(&t, t.n, 1, &v), 0);
    /* <unk>, </s>, then by count (3: "." and "the", in byte order; 2: cat, sat; 1: dog, ran) */
    const char *want[] = {"<unk>", "</s>", ".", "the", "cat", "sat", "dog", "ran"};
    cr_assert_eq(v.n, 8);
    for (int i = 0; i < 8; i++) cr_expect_str_eq(v.words[i], want[i], "word %d", i);
    cr_expect_eq(v.count[1], 3);
    cr_expect_eq(v.count[3], 3);
    cr_expect_eq(word_vocab_id(&v, "dog"), 6);
    cr_expect_eq(word_vocab_id(&v, "zebra"), WORD_UNK);
    word_vocab_free(&v);
    /* min_count 2 drops dog and ran; only the first 10 tokens counted drops dog alone */
    cr_assert_eq(word_vocab_build(&t, t.n, 2, &v), 0);
    cr_expect_eq(v.n, 6);
    int ids[15];
    cr_expect_eq(word_vocab_encode(&v, &t, ids), 2); /* ran and dog */
    cr_expect_eq(ids[7], WORD_UNK);
    cr_expect_eq(ids[11], WORD_UNK);
    word_vocab_free(&v);
    cr_assert_eq(word_vocab_build(&t, 10, 1, &v), 0);
    cr_expect_eq(v.n, 7);
    cr_expect_eq(word_vocab_id(&v, "dog"), WORD_UNK);
    word_vocab_free(&v);
    word_tokens_free(&t);
}

Test(vocab, round_trip_through_a_checkpoint)
{
    word_tokens t = tokenize("Hello, world! Hello again -- the world's end... caf\xc3\xa9 3.14");
    word_vocab v, back;
    cr_assert_eq(word_vocab_build(&t, t.n, 1, &v), 0);
    size_t len;
    unsigned char *bytes = word_vocab_bytes(&v, &len);
    cr_assert_not_null(bytes);
    char path[] = "/tmp/test_word_lm_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    loom_ckpt *c = loom_ckpt_create(path);
    cr_assert_not_null(c, "%s", loom_error_message());
    cr_assert_eq(loom_ckpt_write_bytes(c, "/config/vocab", bytes, len), LOOM_OK);
    cr_assert_eq(loom_ckpt_commit(c), LOOM_OK, "%s", loom_error_message());
    unsigned char buf[4096];
    size_t n = 0;
    c = loom_ckpt_open(path);
    cr_assert_not_null(c, "%s", loom_error_message());
    cr_assert_eq(loom_ckpt_read_bytes(c, "/config/vocab", buf, sizeof buf, &n), LOOM_OK, "%s", loom_error_message());
    loom_ckpt_close(c);
    unlink(path);
    cr_assert_eq(n, len);
    char err[128];
    cr_assert_eq(word_vocab_from_bytes(buf, n, &back, err, sizeof err), 0, "%s", err);
    cr_assert_eq(back.n, v.n);
    for (int i = 0; i < v.n; i++) {
        cr_expect_str_eq(back.words[i], v.words[i]);
        cr_expect_eq(word_vocab_id(&back, v.words[i]), i);
    }
    /* every token encodes to the same id through either vocabulary */
    int a[64], b[64];
    cr_assert_lt(t.n, 64);
    word_vocab_encode(&v, &t, a);
    word_vocab_encode(&back, &t, b);
    for (long i = 0; i < t.n; i++) cr_expect_eq(a[i], b[i], "token %ld (%s)", i, word_token(&t, i));
    word_vocab_free(&v);
    word_vocab_free(&back);
    free(bytes);
    word_tokens_free(&t);
}

Test(vocab, bad_bytes_are_refused)
{
    word_vocab v;
    char err[128];
    struct {
        const char *bytes;
        size_t len;
        const char *msg;
    } bad[] = {
        {"", 0, "is empty"},
        {"<unk>\0</s>\0a", 12, "does not end in a NUL byte"},
        {"a\0<unk>\0</s>\0", 13, "does not start with <unk> and </s>"},
        {"<unk>\0</s>\0a\0\0", 14, "word 3 is empty"},
        {"<unk>\0</s>\0a\0b\0a\0", 17, "repeats the word 'a'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(word_vocab_from_bytes((const unsigned char *)bad[i].bytes, bad[i].len, &v, err, sizeof err), -1);
        cr_expect(strstr(err, bad[i].msg) != NULL, "case %zu: '%s' lacks '%s'", i, err, bad[i].msg);
    }
}

/* The bigram on CORPUS, by hand. Ids: <unk> 0, </s> 1, . 2, the 3, cat 4, sat 5, dog 6, ran 7 (V = 8).
 *
 * The 14 pairs give 9 distinct bigrams, N1+(. .) = 9:
 *   the cat 2, the dog 1, cat sat 1, cat ran 1, sat . 2, . </s> 3, </s> the 2, ran . 1, dog sat 1
 * Counts of counts: n1 = 5, n2 = 3, so D2 = 5 / (5 + 2*3) = 5/11.
 * Continuation counts N1+(. w): sat 2 (cat, dog), . 2 (sat, ran); cat, dog, ran, </s>, the 1; <unk> 0.
 * So 7 words continue something, c1 = 5, c2 = 2, and D1 = 5 / (5 + 2*2) = 5/9.
 *   P1(w) = max(N1+(. w) - 5/9, 0) / 9 + (5/9) * 7/9 / 8 = max(...) / 9 + 35/648
 *   P1(<unk>) = 35/648;  P1(N1+ = 1) = 4/81 + 35/648 = 67/648;  P1(N1+ = 2) = 13/81 + 35/648 = 139/648
 *   (35 + 5*67 + 2*139 = 648: they sum to 1)
 * Context "the": c = 3, two distinct followers, so the back-off weight is (5/11) * 2/3 = 10/33:
 *   P(cat | the) = (2 - 5/11)/3 + 10/33 * 67/648 = 17/33 + 670/21384 = 11686/21384
 *   P(dog | the) = (1 - 5/11)/3 + 670/21384 = 3888/21384 + 670/21384 = 4558/21384
 *   P(sat | the) = 10/33 * 139/648 = 1390/21384,   P(<unk> | the) = 10/33 * 35/648 = 350/21384
 * Context "dog": c = 1, one follower (sat), weight 5/11:
 *   P(ran | dog) = 0 + 5/11 * 67/648 = 335/7128
 * Context "ran": c = 1, one follower (.):
 *   P(. | ran) = (1 - 5/11) + 5/11 * 139/648 = 3888/7128 + 695/7128 = 4583/7128
 * An unseen context (<unk>) backs off to P1. "the dog ran ." scores
 *   -(ln(4558/21384) + ln(335/7128) + ln(4583/7128)) / 3 nats per word. */
Test(bigram, kneser_ney_by_hand)
{
    word_tokens t = tokenize(CORPUS);
    word_vocab v;
    cr_assert_eq(word_vocab_build(&t, t.n, 1, &v), 0);
    int ids[15];
    word_vocab_encode(&v, &t, ids);
    word_bigram b;
    cr_assert_eq(word_bigram_fit(ids, t.n, v.n, &b), 0);
    cr_expect_eq(b.types, 9);
    cr_expect_eq(b.cont_types, 7);
    cr_expect_float_eq(b.d2, 5.0 / 11, 1e-12);
    cr_expect_float_eq(b.d1, 5.0 / 9, 1e-12);
    cr_expect_float_eq(word_bigram_unigram(&b, 0), 35.0 / 648, 1e-12);
    cr_expect_float_eq(word_bigram_unigram(&b, 4), 67.0 / 648, 1e-12);
    cr_expect_float_eq(word_bigram_unigram(&b, 5), 139.0 / 648, 1e-12);
    cr_expect_float_eq(word_bigram_prob(&b, 3, 4), 11686.0 / 21384, 1e-12);
    cr_expect_float_eq(word_bigram_prob(&b, 3, 6), 4558.0 / 21384, 1e-12);
    cr_expect_float_eq(word_bigram_prob(&b, 3, 5), 1390.0 / 21384, 1e-12);
    cr_expect_float_eq(word_bigram_prob(&b, 3, 0), 350.0 / 21384, 1e-12);
    cr_expect_float_eq(word_bigram_prob(&b, 6, 7), 335.0 / 7128, 1e-12);
    cr_expect_float_eq(word_bigram_prob(&b, 7, 2), 4583.0 / 7128, 1e-12);
    cr_expect_float_eq(word_bigram_prob(&b, 0, 5), 139.0 / 648, 1e-12);
    /* every context's distribution sums to 1 */
    for (int c = 0; c < v.n; c++) {
        double s = 0;
        for (int w = 0; w < v.n; w++) s += word_bigram_prob(&b, c, w);
        cr_expect_float_eq(s, 1.0, 1e-12, "context %s", v.words[c]);
    }
    int held[] = {3, 6, 7, 2};
    double want = -(log(4558.0 / 21384) + log(335.0 / 7128) + log(4583.0 / 7128)) / 3;
    cr_expect_float_eq(word_bigram_nll(&b, held, 4), want, 1e-12);
    word_bigram_free(&b);
    word_vocab_free(&v);
    word_tokens_free(&t);
}
