/* The log line format's one promise: a line is one line, and a quoted
 * field holds the text it was given (escaped, trailing newlines dropped),
 * whatever a peer put in it. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <string.h>

#include "internal/log.h"

Test(log_value, quotes_backslashes_and_newlines_are_escaped)
{
    char q[128];
    cr_assert_str_eq(td_log_value("say \"hi\" \\ bye", q, sizeof(q)), "say \\\"hi\\\" \\\\ bye");
    cr_assert_str_eq(td_log_value("a\nb\tc\r", q, sizeof(q)), "a\\nb c");
    cr_assert_str_eq(td_log_value(NULL, q, sizeof(q)), "");
}

Test(log_value, libpq_trailing_newlines_are_dropped)
{
    char q[128];
    cr_assert_str_eq(td_log_value("ERROR:  relation \"x\" does not exist\n", q, sizeof(q)),
                     "ERROR:  relation \\\"x\\\" does not exist");
}

Test(log_value, a_long_value_is_cut_within_its_buffer)
{
    char q[16];
    memset(q, 'Z', sizeof(q));
    const char *v = td_log_value("\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"", q, sizeof(q));
    cr_assert_lt(strlen(v), sizeof(q));
    /* never half an escape: an even number of backslashes before each quote */
    cr_assert_eq(strlen(v) % 2, 0, "%s", v);
}

Test(log_value, a_cut_never_splits_a_utf8_character)
{
    char q[16];
    /* room for 12 bytes: 9 'a' and two 2-byte characters keep one of them,
     * 11 'a' none (its first byte would fit, not its second) */
    cr_assert_str_eq(td_log_value("aaaaaaaaa\xc3\xa9\xc3\xa9", q, sizeof(q)), "aaaaaaaaa\xc3\xa9");
    cr_assert_str_eq(td_log_value("aaaaaaaaaaa\xc3\xa9\xc3\xa9", q, sizeof(q)), "aaaaaaaaaaa");
}

static void
redirect(void)
{
    cr_redirect_stderr();
}

Test(log_line, a_hostile_value_cannot_forge_fields_or_lines, .init = redirect)
{
    char q[128];
    td_log_init("unit", TD_LOG_INFO);
    td_warn("invalid message", "detail=\"%s\" n=%d",
            td_log_value("x\" admin=\"yes\nlevel=error", q, sizeof(q)), 7);
    fflush(stderr);
    char line[512] = "";
    FILE *f = cr_get_redirected_stderr();
    cr_assert_not_null(fgets(line, sizeof(line), f));
    cr_assert_not_null(strstr(line, " detail=\"x\\\" admin=\\\"yes\\nlevel=error\" n=7\n"), "%s",
                       line);
    cr_assert_null(fgets(line, sizeof(line), f), "a second line: %s", line);
}
