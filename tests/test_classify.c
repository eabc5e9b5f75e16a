/* classify's data side (examples/lang_words.c): languages, UTF-8 and Latin-1 lists,
 * words shared between lists, the split fixed by each word, balancing, the alphabet,
 * and the naive Bayes baseline and report against values computed by hand. */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "helpers.h"
#include "lang_words.h"

Test(languages, codes_names_and_lists)
{
    cr_expect_eq(lang_find("fr"), 2);
    cr_expect_eq(lang_find("FRENCH"), 2);
    cr_expect_eq(lang_find("sv"), 7);
    cr_expect_eq(lang_find("klingon"), -1);
    int l[LANG_MAX];
    char err[200];
    cr_expect_eq(lang_parse_list("en,German,fr", l, err, sizeof err), 3);
    cr_expect(l[0] == 0 && l[1] == 1 && l[2] == 2);
    cr_expect_eq(lang_parse_list("en,xx", l, err, sizeof err), -1);
    cr_expect(strstr(err, "unknown language 'xx'") != NULL, "%s", err);
    cr_expect_eq(lang_parse_list("en,de,en", l, err, sizeof err), -1);
    cr_expect(strstr(err, "listed twice") != NULL, "%s", err);
    cr_expect_eq(lang_parse_list("en", l, err, sizeof err), -1);
    cr_expect(strstr(err, "at least two") != NULL, "%s", err);
    cr_expect_eq(lang_parse_list("en,,de", l, err, sizeof err), -1);
}

Test(characters, utf8_round_trip_and_lower_case)
{
    uint32_t cps[] = {'a', 0xE9, 0x142, 0x20AC, 0x1F600};
    for (size_t i = 0; i < sizeof cps / sizeof cps[0]; i++) {
        char buf[4];
        uint32_t back = 0;
        int n = lang_utf8_encode(cps[i], buf);
        cr_expect_eq(lang_utf8_decode((const unsigned char *)buf, (size_t)n, &back), n);
        cr_expect_eq(back, cps[i]);
    }
    uint32_t cp;
    cr_expect_eq(lang_utf8_decode((const unsigned char *)"\xe9t", 2, &cp), 0, "Latin-1 is not UTF-8");
    cr_expect_eq(lang_utf8_decode((const unsigned char *)"\xc0\x80", 2, &cp), 0, "overlong");
    cr_expect_eq(lang_utf8_decode((const unsigned char *)"\xc3", 1, &cp), 0, "cut short");
    cr_expect_eq(lang_lower('Q'), 'q');
    cr_expect_eq(lang_lower(0xC9), 0xE9); /* É */
    cr_expect_eq(lang_lower(0xD7), 0xD7); /* the multiplication sign has no case */
    cr_expect_eq(lang_lower(0x141), 0x142); /* Ł */
    cr_expect_eq(lang_lower(0x17D), 0x17E); /* Ž */
    cr_expect_eq(lang_lower(0x153), 0x153); /* œ stays */
}

/* Writes a list file of the given lines plus n made-up words "<prefix><two letters>". */
static void write_list(const char *dir, const char *file, const char *lines, const char *prefix, int n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs(lines, f);
    for (int i = 0; i < n; i++) fprintf(f, "%s%c%c\n", prefix, 'a' + i / 26, 'a' + i % 26);
    fclose(f);
}

static char *make_dir(void)
{
    static char dir[64];
    strcpy(dir, "/tmp/loom_langXXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    return dir;
}

Test(word_lists, filtered_shared_dropped_latin1_and_balanced_splits)
{
    char *dir = make_dir(), err[512];
    write_list(dir, "american-english", "Apple\napple\nthe\nit's\nx\nHouse\r\nwell-known\n", "en", 300);
    write_list(dir, "french", "\xe9t\xe9\nthe\nMaison\nMAISON\n", "fr", 200); /* Latin-1, as Debian's Swedish list */
    int lang[2] = {0, 2};
    lang_set s;
    cr_assert_eq(lang_set_read(&s, dir, lang, 2, 1000, 7, err, sizeof err), 0, "%s", err);
    cr_expect_eq(s.lines[0], 307);
    cr_expect_eq(s.lines[1], 204);
    cr_expect_eq(s.kept[0], 302, "apple once, house, 300 made up: %ld", s.kept[0]);
    cr_expect_eq(s.kept[1], 202, "ete, maison once, 200 made up: %ld", s.kept[1]);
    cr_expect(s.shared[0] == 1 && s.shared[1] == 1, "'the' is in both lists and dropped from both");
    cr_expect_eq(s.filtered, 3, "it's, x, well-known");
    cr_expect(!s.latin1[0] && s.latin1[1]);
    int found_ete = 0;
    for (long i = 0; i < s.n; i++) {
        const char *w = s.pool + s.off[i];
        found_ete |= strcmp(w, "\xc3\xa9t\xc3\xa9") == 0;
        cr_expect_str_neq(w, "the");
        cr_expect_str_neq(w, "Apple");
    }
    cr_expect(found_ete, "the Latin-1 word reads as UTF-8 ete");
    long total = 0;
    for (int sp = 0; sp < 3; sp++) {
        const lang_split *p = &s.split[sp];
        long per[2] = {0, 0}, want = s.avail[sp][0] < s.avail[sp][1] ? s.avail[sp][0] : s.avail[sp][1];
        for (long i = 0; i < p->n; i++) {
            per[p->label[i]]++;
            cr_expect_eq(lang_split_of(lang_word(&s, p, i)), sp, "a word of split %d hashes to another", sp);
        }
        cr_expect(per[0] == per[1] && per[0] == want, "split %d: %ld and %ld words, want %ld each", sp, per[0], per[1], want);
        cr_expect(want > 0);
        total += s.avail[sp][0] + s.avail[sp][1];
    }
    cr_expect_eq(total, s.n, "every kept word is in exactly one split");
    lang_set_free(&s);
    /* a cap below what the lists hold: per_class for training, an eighth for the others */
    cr_assert_eq(lang_set_read(&s, dir, lang, 2, 16, 7, err, sizeof err), 0, "%s", err);
    cr_expect_eq(s.split[LANG_SPLIT_TRAIN].n, 32);
    cr_expect_eq(s.split[LANG_SPLIT_TEST].n, 4);
    lang_set_free(&s);
}

Test(word_lists, missing_and_empty_lists_are_named)
{
    char *dir = make_dir(), err[512];
    write_list(dir, "american-english", "", "en", 100);
    write_list(dir, "ngerman", "1984\n-\n\n", "", 0);
    int lang[2] = {0, 2};
    lang_set s;
    cr_expect_eq(lang_set_read(&s, dir, lang, 2, 100, 1, err, sizeof err), -1);
    cr_expect(strstr(err, "/french (the French word list): No such file or directory; install it with: apt-get "
                          "install wfrench") != NULL, "%s", err);
    lang_set_free(&s);
    lang[1] = 1;
    cr_expect_eq(lang_set_read(&s, dir, lang, 2, 100, 1, err, sizeof err), -1);
    cr_expect(strstr(err, "/ngerman (the German word list): no words in it (3 lines") != NULL, "%s", err);
    lang_set_free(&s);
}

/* A set built by hand: class 0 has "ab" and "aab", class 1 has "ba". */
static void tiny_set(lang_set *s, lang_alpha *a)
{
    static char pool[] = "ab\0aab\0ba";
    static size_t off[] = {0, 3, 7};
    static int label[] = {0, 0, 1};
    memset(s, 0, sizeof *s);
    s->pool = pool;
    s->nclass = 2;
    s->split[0] = (lang_split){3, off, label};
    cr_assert_eq(lang_alpha_build(s, &s->split[0], a), 0);
}

Test(naive_bayes, scores_by_hand)
{
    lang_set s;
    lang_alpha a;
    lang_nb nb;
    tiny_set(&s, &a);
    cr_assert_eq(a.n, 2);
    cr_expect(a.cp[0] == 'a' && a.cp[1] == 'b');
    int A = lang_alpha_size(&a), ida = lang_alpha_id(&a, 'a'), idb = lang_alpha_id(&a, 'b');
    cr_expect(A == 5 && ida == 3 && idb == 4 && lang_alpha_id(&a, 'z') == LANG_UNK);
    cr_assert_eq(lang_nb_fit(&nb, &s, &s.split[0], &a, 2), 0);
    /* class 0: bigrams (^a) (ab) (b$) and (^a) (aa) (ab) (b$): N = 7, n(^a) = 2, n(ab) = 2, n(b$) = 2, n(aa) = 1.
     * class 1: (^b) (ba) (a$): N = 3. F = 25, priors 2/3 and 1/3. */
    double score[2];
    int best = lang_nb_scores(&nb, &a, "ab", score);
    double s0 = log(2.0 / 3) + 3 * log(3.0 / 32), s1 = log(1.0 / 3) + 3 * log(1.0 / 28);
    cr_expect_float_eq(score[0], s0, 1e-12);
    cr_expect_float_eq(score[1], s1, 1e-12);
    cr_expect_eq(best, 0);
    best = lang_nb_scores(&nb, &a, "ba", score);
    cr_expect_float_eq(score[0], log(2.0 / 3) + 3 * log(1.0 / 32), 1e-12);
    cr_expect_float_eq(score[1], log(1.0 / 3) + 3 * log(2.0 / 28), 1e-12);
    cr_expect_eq(best, 1);
    /* an unknown letter is the UNK id: (^?) (?$) unseen in both */
    lang_nb_scores(&nb, &a, "z", score);
    cr_expect_float_eq(score[1], log(1.0 / 3) + 2 * log(1.0 / 28), 1e-12);
    lang_nb_free(&nb);
    lang_alpha_free(&a);
}

Test(alphabet, encode_and_checkpoint_form)
{
    lang_set s;
    lang_alpha a, b;
    tiny_set(&s, &a);
    int ids[8], unknown = 0;
    uint32_t first = 0;
    cr_expect_eq(lang_encode(&a, "B\xc3\xa9" "a", ids, 8, &unknown, &first), 3);
    cr_expect(ids[0] == 4 && ids[1] == LANG_UNK && ids[2] == 3);
    cr_expect(unknown == 1 && first == 0xE9);
    cr_expect_eq(lang_encode(&a, "ababab", ids, 2, NULL, NULL), 6, "the length, past what fits");
    int64_t cp[2] = {'a', 'b'}, bad[2] = {'b', 'a'};
    char err[100];
    cr_assert_eq(lang_alpha_from(cp, 2, &b, err, sizeof err), 0);
    cr_expect(b.n == a.n && memcmp(b.cp, a.cp, sizeof(uint32_t) * 2) == 0);
    lang_alpha_free(&b);
    cr_expect_eq(lang_alpha_from(bad, 2, &b, err, sizeof err), -1);
    cr_expect(strstr(err, "entry 1") != NULL, "%s", err);
    lang_alpha_free(&a);
}

Test(report, accuracy_precision_recall_confusion)
{
    long conf[4] = {3, 1, 2, 4}; /* true 0: 3 right, 1 as class 1; true 1: 2 as class 0, 4 right */
    cr_expect_float_eq(lang_accuracy(conf, 2), 0.7, 1e-12);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    const char *names[2] = {"English", "French"}, *codes[2] = {"en", "fr"};
    lang_report(f, conf, 2, names, codes);
    fclose(f);
    /* English: precision 3/5, recall 3/4; French: precision 4/5, recall 4/6 */
    cr_expect(strstr(buf, "English          60.0%     75.0%       4") != NULL, "%s", buf);
    cr_expect(strstr(buf, "French           80.0%     66.7%       6") != NULL, "%s", buf);
    cr_expect(strstr(buf, "                   en     fr\n  English           3      1\n  French            2      4\n") != NULL,
              "%s", buf);
    free(buf);
}
