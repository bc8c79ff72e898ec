/* syslog_parse.c — one syslog message: RFC 5424, or RFC 3164 as seen in the
 * wild.
 *
 * The design is simple: a cursor walks the bytes once, left to right, and
 * every read is checked against the end, so no input can make it read past
 * the buffer; fields are views into the input (SD values with escapes are
 * copied, unescaped, into the caller's scratch buffer). A message is RFC
 * 5424 when its PRI is followed by "DIGITS SP" (the version; only 1 is
 * known); anything else is read as RFC 3164, leniently, because that is what
 * devices send:
 *
 *   [<PRI>] [SEQ: ] [TIMESTAMP[:] ] [HOSTNAME ] [TAG[PID]: ] MSG
 *
 * where TIMESTAMP is "Mmm dd hh:mm:ss" (optionally with a year, fractions,
 * a zone name and Cisco's leading '*' or '.') or RFC 3339, and a missing PRI
 * means user.notice (RFC 3164 §4.3.3). Without a timestamp there is no
 * hostname either (the RFC's rule for relays); a token that looks like a tag
 * ("su[12]:" or "sshd:") right after the timestamp means the sender left the
 * hostname out.
 *
 * Strict where it matters for what comes next: a message must be UTF-8 and
 * free of NUL bytes (alerts are JSON strings), PRI must be 0..191, RFC 5424
 * header fields printable ASCII of their RFC lengths, dates real dates.
 * Malformed input gets a reason, never a guess. */
#include "syslog_parse.h"

#include <string.h>

const char *const tds_parse_reasons[] = {
    "empty",        "nul_byte",  "not_utf8", "bad_pri",     "bad_version",
    "bad_timestamp", "bad_hostname", "bad_app_name", "bad_procid", "bad_msgid",
    "bad_sd",       "too_many_params",
};

typedef struct cur {
    const unsigned char *p, *end;
} cur;

static bool
is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool
is_print(int c) /* PRINTUSASCII: %d33-126 */
{
    return c >= 33 && c <= 126;
}

/* Reads exactly n digits into *v. */
static bool
digits(cur *c, int n, int *v)
{
    int x = 0;
    if (c->end - c->p < n)
        return false;
    for (int i = 0; i < n; i++) {
        if (!is_digit(c->p[i]))
            return false;
        x = x * 10 + (c->p[i] - '0');
    }
    c->p += n;
    *v = x;
    return true;
}

static bool
lit(cur *c, char ch)
{
    if (c->p < c->end && *c->p == (unsigned char)ch) {
        c->p++;
        return true;
    }
    return false;
}

/* ---- names ------------------------------------------------------------ */

static const char *const facility_names[24] = {
    "kern",   "user",   "mail",   "daemon", "auth",   "syslog",
    "lpr",    "news",   "uucp",   "cron",   "authpriv", "ftp",
    "ntp",    "security", "console", "solaris-cron", "local0", "local1",
    "local2", "local3", "local4", "local5", "local6", "local7",
};
static const char *const severity_names[8] = {
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

const char *
tds_facility_name(int f)
{
    return f >= 0 && f < 24 ? facility_names[f] : "?";
}

const char *
tds_severity_name(int s)
{
    return s >= 0 && s < 8 ? severity_names[s] : "?";
}

static int
small_number(const char *s, size_t n, int max)
{
    int v = 0;
    if (n == 0 || n > 3)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

static bool
name_eq(const char *s, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

int
tds_facility_parse(const char *s, size_t n)
{
    for (int i = 0; i < 24; i++)
        if (name_eq(s, n, facility_names[i]))
            return i;
    if (name_eq(s, n, "authpriv"))
        return 10;
    return small_number(s, n, 23);
}

int
tds_severity_parse(const char *s, size_t n)
{
    static const struct { const char *name; int v; } aliases[] = {
        {"panic", 0}, {"emergency", 0}, {"critical", 2}, {"error", 3},
        {"warn", 4},
    };
    for (int i = 0; i < 8; i++)
        if (name_eq(s, n, severity_names[i]))
            return i;
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (name_eq(s, n, aliases[i].name))
            return aliases[i].v;
    return small_number(s, n, 7);
}

/* ---- UTF-8 ------------------------------------------------------------ */

/* Length of the sequence starting with lead byte b, 0 when b cannot start one. */
static int
utf8_len(unsigned char b)
{
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        return 2;
    if (b >= 0xE0 && b <= 0xEF)
        return 3;
    if (b >= 0xF0 && b <= 0xF4)
        return 4;
    return 0;
}

bool
tds_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* ASCII runs, 8 bytes at a time. */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        unsigned char b = s[i];
        int n = utf8_len(b);
        if (n == 0 || len - i < (size_t)n)
            return false;
        if (n == 1) {
            i++;
            continue;
        }
        unsigned char b1 = s[i + 1];
        if ((b1 & 0xC0) != 0x80)
            return false;
        if ((b == 0xE0 && b1 < 0xA0) || (b == 0xED && b1 > 0x9F) ||
            (b == 0xF0 && b1 < 0x90) || (b == 0xF4 && b1 > 0x8F))
            return false; /* overlong, surrogate, above U+10FFFF */
        for (int k = 2; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += (size_t)n;
    }
    return true;
}

size_t
tds_utf8_cut(const char *buf, size_t len, size_t max)
{
    if (len <= max)
        return len;
    const unsigned char *s = (const unsigned char *)buf;
    /* Look back at most 3 bytes for the lead byte of the last sequence. */
    for (size_t k = 1; k <= 4 && k <= max; k++) {
        unsigned char b = s[max - k];
        if ((b & 0xC0) == 0x80)
            continue; /* continuation byte */
        int n = utf8_len(b);
        if (n > 1 && (size_t)n > k)
            return max - k; /* the sequence would be cut: drop it */
        return max;
    }
    return max;
}

/* ---- time ------------------------------------------------------------- */

static bool
leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : d[m - 1];
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t
days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
civil_year(int64_t days, int *year)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(yoe + era * 400 + (m <= 2));
}

static int64_t
epoch_us(int y, int mo, int d, int h, int mi, int s, int64_t frac_us)
{
    int64_t days = days_from_civil(y, mo, d);
    return ((days * 86400) + h * 3600 + mi * 60 + s) * 1000000 + frac_us;
}

/* Fractions of a second: '.' then 1..max digits, as microseconds. */
static bool
fraction(cur *c, int max, int64_t *us, bool *coarse)
{
    int64_t v = 0;
    int n = 0;
    *us = 0;
    *coarse = true;
    if (!lit(c, '.'))
        return true;
    *coarse = false;
    while (c->p < c->end && is_digit(*c->p)) {
        if (++n > max)
            return false;
        if (n <= 6)
            v = v * 10 + (*c->p - '0');
        c->p++;
    }
    if (n == 0)
        return false;
    for (int k = n < 6 ? n : 6; k < 6; k++)
        v *= 10;
    *us = v;
    return true;
}

/* hh:mm:ss with range checks. */
static bool
clock_time(cur *c, int *h, int *mi, int *s)
{
    return digits(c, 2, h) && lit(c, ':') && digits(c, 2, mi) && lit(c, ':') &&
           digits(c, 2, s) && *h <= 23 && *mi <= 59 && *s <= 59;
}

/* RFC 3339 as RFC 5424 restricts it: YYYY-MM-DDThh:mm:ss[.1-6 digits](Z|±hh:mm).
 * With lenient (RFC 3164 senders), 'T' may be ' ', more fraction digits are
 * cut and a missing offset means UTC. */
static bool
rfc3339(cur *c, bool lenient, int64_t *us, bool *coarse)
{
    int y, mo, d, h, mi, s, oh = 0, om = 0, sign = 0;
    int64_t frac;
    if (!digits(c, 4, &y) || !lit(c, '-') || !digits(c, 2, &mo) || !lit(c, '-') ||
        !digits(c, 2, &d) || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return false;
    if (!lit(c, 'T') && !(lenient && lit(c, 't')))
        return false;
    if (!clock_time(c, &h, &mi, &s) || !fraction(c, lenient ? 9 : 6, &frac, coarse))
        return false;
    if (lit(c, 'Z') || lit(c, 'z')) {
        sign = 0;
    } else if (c->p < c->end && (*c->p == '+' || *c->p == '-')) {
        sign = *c->p == '+' ? 1 : -1;
        c->p++;
        if (!digits(c, 2, &oh) || !lit(c, ':') || !digits(c, 2, &om) || oh > 23 ||
            om > 59)
            return false;
    } else if (!lenient) {
        return false;
    }
    *us = epoch_us(y, mo, d, h, mi, s, frac) -
          (int64_t)sign * (oh * 3600 + om * 60) * 1000000;
    return true;
}

/* ---- RFC 5424 --------------------------------------------------------- */

/* A header field: NILVALUE or 1..max PRINTUSASCII, then SP. */
static bool
header_field(cur *c, size_t max, tds_str *out)
{
    const unsigned char *s = c->p;
    while (c->p < c->end && is_print(*c->p))
        c->p++;
    size_t n = (size_t)(c->p - s);
    if (n == 0 || n > max || !lit(c, ' '))
        return false;
    if (n == 1 && *s == '-') {
        out->p = NULL;
        out->n = 0;
    } else {
        out->p = (const char *)s;
        out->n = n;
    }
    return true;
}

/* SD-NAME: 1..32 PRINTUSASCII except '=', SP, ']', '"'. */
static bool
sd_name(cur *c, tds_str *out)
{
    const unsigned char *s = c->p;
    while (c->p < c->end && is_print(*c->p) && *c->p != '=' && *c->p != ']' &&
           *c->p != '"')
        c->p++;
    size_t n = (size_t)(c->p - s);
    if (n == 0 || n > 32)
        return false;
    out->p = (const char *)s;
    out->n = n;
    return true;
}

static int
structured_data(cur *c, tds_msg *m, char **scratch, const char **reason)
{
    if (lit(c, '-'))
        return 0;
    if (c->p >= c->end || *c->p != '[') {
        *reason = "bad_sd";
        return -1;
    }
    while (lit(c, '[')) {
        tds_str id;
        if (!sd_name(c, &id)) {
            *reason = "bad_sd";
            return -1;
        }
        for (;;) {
            if (lit(c, ']'))
                break;
            if (!lit(c, ' ')) {
                *reason = "bad_sd"; /* also: the end, inside an element */
                return -1;
            }
            tds_param pr = {.id = id};
            if (!sd_name(c, &pr.name) || !lit(c, '=') || !lit(c, '"')) {
                *reason = "bad_sd";
                return -1;
            }
            /* PARAM-VALUE, unescaped into scratch: \" \\ \] lose the
             * backslash, any other backslash stays (RFC 5424 §6.3.3). */
            char *out = *scratch;
            size_t n = 0;
            bool closed = false;
            while (c->p < c->end) {
                unsigned char ch = *c->p++;
                if (ch == '"') {
                    closed = true;
                    break;
                }
                if (ch == '\\' && c->p < c->end &&
                    (*c->p == '"' || *c->p == '\\' || *c->p == ']'))
                    ch = *c->p++;
                out[n++] = (char)ch;
            }
            if (!closed) {
                *reason = "bad_sd";
                return -1;
            }
            if (!tds_utf8_valid((const unsigned char *)out, n)) {
                *reason = "not_utf8";
                return -1;
            }
            pr.value.p = out;
            pr.value.n = n;
            *scratch += n;
            if (m->n_params == TDS_MAX_PARAMS) {
                *reason = "too_many_params";
                return -1;
            }
            m->params[m->n_params++] = pr;
        }
    }
    return 0;
}

static int
parse_5424(cur *c, tds_msg *m, char *scratch, const char **reason)
{
    int64_t ts;
    m->format = TDS_RFC5424;
    /* VERSION: NONZERO-DIGIT 0*2DIGIT; the caller saw digits then SP. */
    if (!(c->end - c->p >= 2 && c->p[0] == '1' && c->p[1] == ' ')) {
        *reason = "bad_version";
        return -1;
    }
    c->p += 2;
    if (lit(c, '-')) {
        m->ts_us = 0;
    } else if (rfc3339(c, false, &ts, &m->ts_coarse)) {
        m->ts_us = ts;
    } else {
        *reason = "bad_timestamp";
        return -1;
    }
    if (!lit(c, ' ')) {
        *reason = "bad_timestamp";
        return -1;
    }
    if (!header_field(c, 255, &m->host)) {
        *reason = "bad_hostname";
        return -1;
    }
    if (!header_field(c, 48, &m->app)) {
        *reason = "bad_app_name";
        return -1;
    }
    if (!header_field(c, 128, &m->procid)) {
        *reason = "bad_procid";
        return -1;
    }
    /* MSGID is followed by SP and the structured data, which is required. */
    if (!header_field(c, 32, &m->msgid)) {
        *reason = "bad_msgid";
        return -1;
    }
    if (structured_data(c, m, &scratch, reason) != 0)
        return -1;
    if (c->p < c->end && !lit(c, ' ')) {
        *reason = "bad_sd";
        return -1;
    }
    if (c->end - c->p >= 3 && c->p[0] == 0xEF && c->p[1] == 0xBB && c->p[2] == 0xBF)
        c->p += 3; /* BOM */
    m->msg.p = (const char *)c->p;
    m->msg.n = (size_t)(c->end - c->p);
    return 0;
}

/* ---- RFC 3164 --------------------------------------------------------- */

static int
month(const unsigned char *p)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (p[0] == names[i * 3] && p[1] == names[i * 3 + 1] && p[2] == names[i * 3 + 2])
            return i + 1;
    return 0;
}

/* "Mmm dd hh:mm:ss" with Cisco's variants: a leading '*' or '.' (clock not
 * in sync), "Mmm dd yyyy hh:mm:ss", fractions, a zone name, a trailing ':'.
 * Without a year the year is the one that puts the time closest before now
 * (up to a day ahead for clocks that run fast). */
static bool
bsd_time(cur *c, const tds_parse_opts *o, int64_t *us, bool *coarse)
{
    cur t = *c;
    int mo, d, y = 0, h, mi, s;
    int64_t frac;
    if (t.p < t.end && (*t.p == '*' || *t.p == '.'))
        t.p++;
    if (t.end - t.p < 15 || !(mo = month(t.p)) || t.p[3] != ' ')
        return false;
    t.p += 4;
    if (*t.p == ' ')
        t.p++; /* "Feb  5" */
    if (t.p < t.end && t.end - t.p >= 2 && is_digit(t.p[0]) && is_digit(t.p[1]))
        digits(&t, 2, &d);
    else if (!digits(&t, 1, &d))
        return false;
    if (!lit(&t, ' ') || d < 1 || d > 31)
        return false;
    if (t.end - t.p >= 5 && is_digit(t.p[2]) && t.p[4] == ' ') {
        if (!digits(&t, 4, &y) || !lit(&t, ' '))
            return false;
    }
    if (!clock_time(&t, &h, &mi, &s) || !fraction(&t, 9, &frac, coarse))
        return false;
    /* A zone name before Cisco's ':' ("18:46:11.123 UTC:"): ignored. */
    if (t.end - t.p >= 3 && t.p[0] == ' ' && t.p[1] >= 'A' && t.p[1] <= 'Z') {
        const unsigned char *z = t.p + 1;
        while (z < t.end && z - t.p <= 6 && *z >= 'A' && *z <= 'Z')
            z++;
        if (z < t.end && *z == ':' && z - t.p >= 3)
            t.p = z;
    }
    lit(&t, ':');
    int64_t local_now = o->now_us + (int64_t)o->local_offset_s * 1000000;
    if (y == 0) {
        civil_year(local_now / 86400000000, &y);
        if (mo == 2 && d == 29 && !leap(y))
            y--; /* guessing on: the last leap year before */
    }
    if (d > days_in_month(y, mo))
        return false;
    int64_t v = epoch_us(y, mo, d, h, mi, s, frac);
    if (v > local_now + 86400ll * 1000000) /* December's logs read in January */
        v = epoch_us(y - 1, mo, d > days_in_month(y - 1, mo) ? 28 : d, h, mi, s, frac);
    *us = v - (int64_t)o->local_offset_s * 1000000;
    *c = t;
    return true;
}

/* The length of the token at p (up to SP or the end). */
static size_t
token(const cur *c)
{
    const unsigned char *q = c->p;
    while (q < c->end && *q != ' ')
        q++;
    return (size_t)(q - c->p);
}

static bool
tag_char(unsigned char ch)
{
    return is_print(ch) && ch != ':' && ch != '[' && ch != ']';
}

/* TAG[PID]: or TAG: followed by SP or the end. */
static bool
tag(cur *c, tds_msg *m)
{
    cur t = *c;
    const unsigned char *s = t.p;
    while (t.p < t.end && tag_char(*t.p) && t.p - s < 48)
        t.p++;
    size_t n = (size_t)(t.p - s);
    tds_str pid = {NULL, 0};
    if (n == 0 || *s == '%')
        return false; /* Cisco's %FAC-SEV-MNEMONIC stays in the message */
    if (lit(&t, '[')) {
        const unsigned char *ps = t.p;
        while (t.p < t.end && is_print(*t.p) && *t.p != ']' && t.p - ps < 128)
            t.p++;
        if (t.p == ps || !lit(&t, ']'))
            return false;
        pid.p = (const char *)ps;
        pid.n = (size_t)(t.p - 1 - ps);
    }
    if (!lit(&t, ':'))
        return false;
    if (t.p < t.end && !lit(&t, ' '))
        return false;
    m->app.p = (const char *)s;
    m->app.n = n;
    m->procid = pid;
    *c = t;
    return true;
}

static int
parse_3164(cur *c, const tds_parse_opts *o, tds_msg *m, const char **reason)
{
    int64_t ts;
    m->format = TDS_RFC3164;
    /* Cisco's sequence number: "123: ". */
    const unsigned char *q = c->p;
    long seq = 0;
    while (q < c->end && is_digit(*q) && q - c->p < 10)
        seq = seq * 10 + (*q++ - '0');
    if (q > c->p && c->end - q >= 2 && q[0] == ':' && q[1] == ' ') {
        m->seq = seq;
        c->p = q + 2;
    }
    bool have_ts = false;
    cur t = *c;
    if (t.end - t.p >= 19 && is_digit(t.p[0]) && rfc3339(&t, true, &ts, &m->ts_coarse)) {
        have_ts = true;
        lit(&t, ':');
    } else {
        t = *c;
        have_ts = bsd_time(&t, o, &ts, &m->ts_coarse);
    }
    if (have_ts) {
        if (t.p < t.end && !lit(&t, ' ')) {
            *reason = "bad_timestamp";
            return -1;
        }
        m->ts_us = ts;
        *c = t;
        /* HOSTNAME, unless what follows is already the tag (or Cisco's
         * %FACILITY-SEVERITY-MNEMONIC). */
        size_t n = token(c);
        bool is_tag = n > 0 && (c->p[n - 1] == ':' || memchr(c->p, '[', n) ||
                                c->p[0] == '%');
        if (n > 0 && !is_tag && c->p + n < c->end) {
            for (size_t i = 0; i < n; i++)
                if (!is_print(c->p[i])) {
                    *reason = "bad_hostname";
                    return -1;
                }
            if (n > 255) {
                *reason = "bad_hostname";
                return -1;
            }
            m->host.p = (const char *)c->p;
            m->host.n = n;
            c->p += n + 1;
        }
    }
    tag(c, m);
    m->msg.p = (const char *)c->p;
    m->msg.n = (size_t)(c->end - c->p);
    return 0;
}

/* ---- entry ------------------------------------------------------------ */

int
tds_parse(const char *buf, size_t len, const tds_parse_opts *o, tds_msg *m,
          char *scratch, const char **reason)
{
    memset(m, 0, sizeof(*m));
    m->seq = -1;
    m->facility = 1; /* user.notice when there is no PRI */
    m->severity = 5;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
                       buf[len - 1] == '\0'))
        len--;
    if (len == 0) {
        *reason = "empty";
        return -1;
    }
    if (memchr(buf, '\0', len)) {
        *reason = "nul_byte";
        return -1;
    }
    if (!tds_utf8_valid((const unsigned char *)buf, len)) {
        *reason = "not_utf8";
        return -1;
    }
    cur c = {(const unsigned char *)buf, (const unsigned char *)buf + len};
    if (lit(&c, '<')) {
        int pri = 0, n = 0;
        while (c.p < c.end && is_digit(*c.p) && n < 4) {
            pri = pri * 10 + (*c.p++ - '0');
            n++;
        }
        /* 1..3 digits, no leading zero except "<0>", at most 191. */
        if (n == 0 || n > 3 || pri > 191 || (n > 1 && buf[1] == '0') ||
            !lit(&c, '>')) {
            *reason = "bad_pri";
            return -1;
        }
        m->has_pri = true;
        m->facility = pri / 8;
        m->severity = pri % 8;
        /* VERSION SP: RFC 5424. */
        const unsigned char *q = c.p;
        while (q < c.end && is_digit(*q) && q - c.p < 3)
            q++;
        if (q > c.p && q < c.end && *q == ' ')
            return parse_5424(&c, m, scratch, reason);
    }
    return parse_3164(&c, o, m, reason);
}
