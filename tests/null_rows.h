/* Rows of the NULL tables shared by test_null.c and test_null_autograd.c: one Criterion
 * test per row, so a crash names its row. The including file defines
 * expect_names(fn, word), which checks the message names the call and the argument. */
#ifndef LOOM_TESTS_NULL_ROWS_H
#define LOOM_TESTS_NULL_ROWS_H

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

/* Rows of the NULL tables: the call, with NULL for `arg`, gives the error of its return type. */
#define ST(suite, fn, arg, ...)                                                                                   \
    Test(suite, fn##__##arg)                                                                                      \
    {                                                                                                             \
        loom_status st_ = (__VA_ARGS__);                                                                          \
        cr_expect_eq(st_, LOOM_EARG, #fn " with " #arg " NULL gave %d, not LOOM_EARG", (int)st_);                 \
        expect_names(#fn, #arg);                                                                                  \
    }
#define PT(suite, fn, arg, ...)                                                                                   \
    Test(suite, fn##__##arg)                                                                                      \
    {                                                                                                             \
        cr_expect_null((__VA_ARGS__), #fn " with " #arg " NULL gave a pointer");                                 \
        expect_names(#fn, #arg);                                                                                  \
    }
#define IN(suite, fn, arg, want, ...)                                                                             \
    Test(suite, fn##__##arg)                                                                                      \
    {                                                                                                             \
        cr_expect_eq((__VA_ARGS__), want, #fn " with " #arg " NULL did not give " #want);                         \
        expect_names(#fn, #arg);                                                                                  \
    }
#define FL(suite, fn, arg, ...)                                                                                   \
    Test(suite, fn##__##arg)                                                                                      \
    {                                                                                                             \
        cr_expect(isnan(__VA_ARGS__), #fn " with " #arg " NULL did not give NAN");                                \
        expect_names(#fn, #arg);                                                                                  \
    }
/* void: nothing done, the message left. */
#define VD(suite, fn, arg, ...)                                                                                   \
    Test(suite, fn##__##arg)                                                                                      \
    {                                                                                                             \
        __VA_ARGS__;                                                                                              \
        expect_names(#fn, #arg);                                                                                  \
    }
/* free/close/abort/finish: NULL is fine, silently. */
#define FR(suite, fn, ...)                                                                                        \
    Test(suite, fn##__null)                                                                                       \
    {                                                                                                             \
        __VA_ARGS__;                                                                                              \
        cr_expect_str_empty(loom_error_message(), #fn "(NULL) left a message");                                   \
    }
/* Misuse and optional arguments: the condition holds and, unless word is "", the message has word. */
#define IS(suite, name, word, ...)                                                                                \
    Test(suite, name)                                                                                             \
    {                                                                                                             \
        cr_expect((__VA_ARGS__), #name ": %s", loom_error_message());                                             \
        if ((word)[0])                                                                                            \
            cr_expect(strstr(loom_error_message(), word), #name ": '%s' lacks '%s'", loom_error_message(), word); \
    }

#endif
