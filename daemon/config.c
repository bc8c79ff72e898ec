/* config.c — loading triaged.conf with the option table (config_table.c).
 *
 * The design is simple: td_options[] has one row per key (section, name, type,
 * default, bounds, where the value lands in struct td_config, reloadable or
 * not, help text). td_config_load() runs four passes over one list of entries:
 *
 *   1. parse the INI file into entries (section, key, value, "FILE:LINE"),
 *      rejecting syntax errors, duplicate keys and unknown sections;
 *   2. apply TRIAGED_<SECTION>_<KEY> environment overrides: an entry whose
 *      variable is set takes its value in place (origin "env:NAME"), a table
 *      key the file lacks is appended, and so are TRIAGED_KAFKA_RDKAFKA_* keys;
 *   3. set every typed field to its default, then convert each entry with its
 *      row (unknown keys and bad values are errors);
 *   4. check required keys.
 *
 * Every problem is collected, not only the first, sorted by line (environment
 * problems last), and handed back as "ORIGIN: message". A missing required key
 * is reported at its section's header line, or at FILE:1 when the section is
 * not in the file at all. A config with any problem is never returned.
 *
 * [plugin.NAME] sections are kept as entries without validation: the plugin
 * owns its keys and checks them through td_config_get()/td_config_each().
 *
 * The table itself is config_table.c's; config_doc.c prints --help-config
 * and writes the example file that ships as config/triaged.conf from it.
 *
 * Memory: allocation failures abort (util.h). Lines come from getline() with
 * their length, so a line may be of any length and is never read past.
 */
#include "internal/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/config_table.h"
#include "internal/util.h"

#define OFF(field) offsetof(td_config, field)

#define PLUGIN_SECTION_PREFIX "plugin."
#define ENV_PREFIX "TRIAGED_"
/* Environment problems sort after every file line. */
#define ENV_RANK (LONG_MAX / 2)

/* ------------------------------------------------------------------------ */
/* Value parsers */

/* Reads the unsigned decimal at *s into *n, advancing *s. Overflow: TD_ERR. */
static int
parse_digits(const char **s, int64_t *n)
{
    const char *p = *s;
    int64_t v = 0;
    if (!isdigit((unsigned char)*p))
        return TD_ERR;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return TD_ERR;
        v = v * 10 + d;
    }
    *s = p;
    *n = v;
    return TD_OK;
}

static int
scale(int64_t n, int64_t unit, int64_t *out)
{
    if (n > INT64_MAX / unit)
        return TD_ERR;
    *out = n * unit;
    return TD_OK;
}

int
td_parse_duration(const char *s, int64_t *ms)
{
    static const struct { const char *unit; int64_t ms; } units[] = {
        { "ms", 1 }, { "s", SEC(1) }, { "m", MINUTE(1) }, { "h", HOUR(1) },
        { "d", DAY(1) },
    };
    int64_t n;
    if (!s || parse_digits(&s, &n) != TD_OK)
        return TD_ERR;
    if (n == 0 && *s == '\0') {
        *ms = 0; /* nothing is nothing in any unit */
        return TD_OK;
    }
    for (size_t i = 0; i < TD_ARRAY_LEN(units); i++)
        if (strcmp(s, units[i].unit) == 0)
            return scale(n, units[i].ms, ms);
    return TD_ERR; /* no unit, or an unknown one */
}

int
td_parse_size(const char *s, int64_t *bytes)
{
    static const struct { const char *unit; int64_t bytes; } units[] = {
        { "", 1 },
        { "k", KIB(1) }, { "K", KIB(1) }, { "KiB", KIB(1) },
        { "M", MIB(1) }, { "MiB", MIB(1) },
        { "G", MIB(1024) }, { "GiB", MIB(1024) },
    };
    int64_t n;
    if (!s || parse_digits(&s, &n) != TD_OK)
        return TD_ERR;
    for (size_t i = 0; i < TD_ARRAY_LEN(units); i++)
        if (strcmp(s, units[i].unit) == 0)
            return scale(n, units[i].bytes, bytes);
    return TD_ERR;
}

int
td_parse_bool(const char *s, bool *b)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };
    if (!s)
        return TD_ERR;
    for (size_t i = 0; i < TD_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *b = true;
            return TD_OK;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *b = false;
            return TD_OK;
        }
    }
    return TD_ERR;
}

static int
parse_int(const char *s, int64_t *out)
{
    bool neg = *s == '-';
    int64_t n;
    if (*s == '-' || *s == '+')
        s++;
    if (parse_digits(&s, &n) != TD_OK || *s)
        return TD_ERR;
    *out = neg ? -n : n;
    return TD_OK;
}

/* Index of S in the '|' separated VALUES (case-insensitive), or -1. */
static int
enum_index(const char *values, const char *s)
{
    size_t len = strlen(s);
    int i = 0;
    for (const char *p = values;; i++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncasecmp(p, s, n) == 0)
            return i;
        if (!bar)
            return -1;
        p = bar + 1;
    }
}

/* "10s", "2m", "1ms": the largest unit that divides the value. */
static void
format_duration(int64_t ms, char *buf, size_t len)
{
    static const struct { const char *unit; int64_t ms; } units[] = {
        { "d", DAY(1) }, { "h", HOUR(1) }, { "m", MINUTE(1) }, { "s", SEC(1) },
    };
    for (size_t i = 0; i < TD_ARRAY_LEN(units); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%lld%s", (long long)(ms / units[i].ms),
                     units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%lldms", (long long)ms);
}

static void
format_size(int64_t bytes, char *buf, size_t len)
{
    static const struct { const char *unit; int64_t bytes; } units[] = {
        { "GiB", MIB(1024) }, { "MiB", MIB(1) }, { "KiB", KIB(1) },
    };
    for (size_t i = 0; i < TD_ARRAY_LEN(units); i++) {
        if (bytes != 0 && bytes % units[i].bytes == 0) {
            snprintf(buf, len, "%lld%s", (long long)(bytes / units[i].bytes),
                     units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%lld", (long long)bytes);
}

/* "1..100000", "1ms..10s", "1KiB..64MiB" */
void
td_config_format_bounds(const td_option *o, char *buf, size_t len)
{
    char lo[32], hi[32];
    switch (o->type) {
    case TD_OPT_DURATION:
        format_duration(o->min, lo, sizeof(lo));
        format_duration(o->max, hi, sizeof(hi));
        break;
    case TD_OPT_SIZE:
        format_size(o->min, lo, sizeof(lo));
        format_size(o->max, hi, sizeof(hi));
        break;
    default:
        snprintf(lo, sizeof(lo), "%lld", (long long)o->min);
        snprintf(hi, sizeof(hi), "%lld", (long long)o->max);
        break;
    }
    snprintf(buf, len, "%s..%s", lo, hi);
}

/* "a, b,c  d" -> "a b c d": list consumers split on single spaces. */
static char *
normalize_list(const char *s)
{
    char *out = td_malloc(strlen(s) + 1);
    size_t n = 0;
    while (*s) {
        size_t w = strcspn(s, ", \t\v\f");
        if (w > 0) {
            if (n > 0)
                out[n++] = ' ';
            memcpy(out + n, s, w);
            n += w;
            s += w;
        } else {
            s++;
        }
    }
    out[n] = '\0';
    return out;
}

static void *
field_of(td_config *cfg, const td_option *o)
{
    return (char *)cfg + o->offset;
}

static const void *
cfield_of(const td_config *cfg, const td_option *o)
{
    return (const char *)cfg + o->offset;
}

/* [incident] priority_matrix: exactly 9 numbers 1..5 (SQL reads the same). */
static int
check_matrix(const char *v)
{
    int n = 0;
    for (const char *p = v; *p;) {
        if (*p == ' ' || *p == ',' || *p == '\t') {
            p++;
            continue;
        }
        if (*p < '1' || *p > '5' || (p[1] && p[1] != ' ' && p[1] != ',' && p[1] != '\t'))
            return TD_ERR;
        n++;
        p++;
    }
    return n == 9 ? TD_OK : TD_ERR;
}

/* Converts VALUE for option O into its field of CFG. On failure returns TD_ERR
 * with *why set to a message (free() it) and leaves the field alone. */
static int
convert(const td_option *o, const char *value, td_config *cfg, char **why)
{
    int64_t n = 0;
    bool b;
    char range[80];

    switch (o->type) {
    case TD_OPT_STRING:
    case TD_OPT_PATH:
        if (!*value) {
            *why = td_asprintf("empty value for %s.%s", o->section, o->name);
            return TD_ERR;
        }
        /* fallthrough */
    case TD_OPT_LIST: {
        if (o->offset == OFF(priority_matrix) && check_matrix(value) != TD_OK) {
            *why = td_asprintf("invalid matrix '%s' for %s.%s (9 numbers 1..5: "
                               "impact 1..3 by urgency 1..3, row by row)",
                               value, o->section, o->name);
            return TD_ERR;
        }
        char **p = field_of(cfg, o);
        free(*p);
        *p = o->type == TD_OPT_LIST ? normalize_list(value) : td_strdup(value);
        return TD_OK;
    }
    case TD_OPT_BOOL:
        if (td_parse_bool(value, &b) != TD_OK) {
            *why = td_asprintf("invalid boolean '%s' for %s.%s (use yes or no)",
                               value, o->section, o->name);
            return TD_ERR;
        }
        *(bool *)field_of(cfg, o) = b;
        return TD_OK;
    case TD_OPT_ENUM: {
        int i = enum_index(o->values, value);
        if (i < 0) {
            *why = td_asprintf("invalid value '%s' for %s.%s (use one of %s)",
                               value, o->section, o->name, o->values);
            return TD_ERR;
        }
        *(int *)field_of(cfg, o) = i;
        return TD_OK;
    }
    case TD_OPT_INT:
        if (parse_int(value, &n) != TD_OK) {
            *why = td_asprintf("invalid integer '%s' for %s.%s", value,
                               o->section, o->name);
            return TD_ERR;
        }
        break;
    case TD_OPT_DURATION:
        if (td_parse_duration(value, &n) != TD_OK) {
            *why = td_asprintf("invalid duration '%s' for %s.%s "
                               "(use e.g. 500ms, 30s, 5m, 2h, 7d)",
                               value, o->section, o->name);
            return TD_ERR;
        }
        break;
    case TD_OPT_SIZE:
        if (td_parse_size(value, &n) != TD_OK) {
            *why = td_asprintf("invalid size '%s' for %s.%s "
                               "(use e.g. 512, 64k, 1MiB, 2G)",
                               value, o->section, o->name);
            return TD_ERR;
        }
        break;
    }

    /* INT, DURATION, SIZE: check the bounds, then store. */
    if (n < o->min || n > o->max) {
        td_config_format_bounds(o, range, sizeof(range));
        *why = td_asprintf("value '%s' out of range for %s.%s (%s)", value,
                           o->section, o->name, range);
        return TD_ERR;
    }
    if (o->type == TD_OPT_INT)
        *(int *)field_of(cfg, o) = (int)n; /* bounds fit an int */
    else
        *(int64_t *)field_of(cfg, o) = n;
    return TD_OK;
}

/* ------------------------------------------------------------------------ */
/* Table lookups */

static int
section_index(const char *name)
{
    for (size_t i = 0; i < N_SECTIONS; i++)
        if (strcmp(td_config_sections[i].name, name) == 0)
            return (int)i;
    return -1;
}

static bool
is_plugin_section(const char *name)
{
    size_t n = strlen(PLUGIN_SECTION_PREFIX);
    return strncmp(name, PLUGIN_SECTION_PREFIX, n) == 0 && name[n] != '\0';
}

/* The row for SECTION.KEY: an exact name, or a prefix row. NULL if none. */
static const td_option *
find_option(const char *section, const char *key)
{
    const td_option *prefix = NULL;
    for (const td_option *o = td_options; o->name; o++) {
        if (strcmp(o->section, section) != 0)
            continue;
        if (o->flags & TD_OPT_PREFIX) {
            size_t n = strlen(o->name);
            if (strncmp(key, o->name, n) == 0 && key[n] != '\0')
                prefix = o;
        } else if (strcmp(o->name, key) == 0) {
            return o;
        }
    }
    return prefix;
}

/* TRIAGED_<SECTION>_<KEY>: upper case, anything not a letter or digit (dots,
 * dashes) becomes '_'. Freed by the caller. */
static char *
env_name(const char *section, const char *key)
{
    char *s = td_asprintf(ENV_PREFIX "%s_%s", section, key);
    for (char *p = s + strlen(ENV_PREFIX); *p; p++)
        *p = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p)
                                         : '_';
    return s;
}

static ssize_t
find_entry(const td_config *cfg, const char *section, const char *key)
{
    for (size_t i = 0; i < cfg->n_entries; i++)
        if (strcmp(cfg->entries[i].section, section) == 0 &&
            strcmp(cfg->entries[i].key, key) == 0)
            return (ssize_t)i;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Loading */

typedef struct pending_err {
    long rank; /* file line; ENV_RANK and up for the environment */
    size_t seq;
    char *msg;
} pending_err;

typedef struct load_ctx {
    const char *path;
    td_config *cfg;
    size_t cap_entries;
    long *ranks; /* per entry: its file line, or ENV_RANK + n */
    long next_env_rank;
    pending_err *errs;
    size_t n_errs;
    bool present[N_SECTIONS];
    long header_line[N_SECTIONS]; /* first [section] line, 0 if none */
} load_ctx;

static void
add_err(load_ctx *c, long rank, const char *origin, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
add_err(load_ctx *c, long rank, const char *origin, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = td_vasprintf(fmt, ap);
    va_end(ap);
    c->errs = td_realloc(c->errs, (c->n_errs + 1) * sizeof(*c->errs));
    c->errs[c->n_errs] = (pending_err){ rank, c->n_errs,
                                        td_asprintf("%s: %s", origin, msg) };
    c->n_errs++;
    free(msg);
}

static void
file_err(load_ctx *c, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
file_err(load_ctx *c, long line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = td_vasprintf(fmt, ap);
    va_end(ap);
    char *origin = td_asprintf("%s:%ld", c->path, line);
    add_err(c, line, origin, "%s", msg);
    free(origin);
    free(msg);
}

static int
cmp_err(const void *a, const void *b)
{
    const pending_err *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Takes ownership of every string. */
static void
add_entry(load_ctx *c, char *section, char *key, char *value, char *origin,
          long rank)
{
    td_config *cfg = c->cfg;
    if (cfg->n_entries == c->cap_entries) {
        c->cap_entries = c->cap_entries ? c->cap_entries * 2 : 16;
        cfg->entries = td_realloc(cfg->entries,
                                  c->cap_entries * sizeof(*cfg->entries));
        c->ranks = td_realloc(c->ranks, c->cap_entries * sizeof(*c->ranks));
    }
    cfg->entries[cfg->n_entries] = (td_config_entry){ section, key, value,
                                                      origin };
    c->ranks[cfg->n_entries] = rank;
    cfg->n_entries++;
}

static bool
is_blank(int ch)
{
    return ch == ' ' || ch == '\t' || ch == '\v' || ch == '\f';
}

static char *
skip_blank(char *s)
{
    while (is_blank((unsigned char)*s))
        s++;
    return s;
}

/* Cuts trailing blanks off [s, end) and returns the new end. */
static char *
trim_end(char *s, char *end)
{
    while (end > s && is_blank((unsigned char)end[-1]))
        end--;
    *end = '\0';
    return end;
}

static bool
valid_section_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_-.", *s))
            return false;
    return true;
}

/* A section being read: a table section, a plugin section, or one that was
 * reported as unknown (its keys are skipped, one error is enough). */
typedef struct cur_section {
    enum { CUR_NONE, CUR_TABLE, CUR_PLUGIN, CUR_UNKNOWN } kind;
    char *name; /* owned */
} cur_section;

static void
parse_header(load_ctx *c, char *p, long line, cur_section *cur)
{
    char *close = strchr(p, ']');
    free(cur->name);
    cur->name = NULL;
    cur->kind = CUR_UNKNOWN; /* keys after a bad header are skipped */
    if (!close) {
        file_err(c, line, "syntax error: missing ']' after section name");
        return;
    }
    char *rest = skip_blank(close + 1);
    if (*rest && *rest != ';' && *rest != '#') {
        file_err(c, line, "syntax error: text after ']'");
        return;
    }
    char *name = skip_blank(p + 1);
    trim_end(name, close);
    if (!valid_section_name(name)) {
        file_err(c, line, "syntax error: invalid section name '%s'", name);
        return;
    }
    cur->name = td_strdup(name);
    int si = section_index(name);
    if (si >= 0) {
        cur->kind = CUR_TABLE;
        c->present[si] = true;
        if (!c->header_line[si])
            c->header_line[si] = line;
    } else if (is_plugin_section(name)) {
        cur->kind = CUR_PLUGIN;
    } else {
        file_err(c, line, "unknown section [%s]", name);
    }
}

/* VALUE after '=': optional double quotes; a ';' or '#' at the start or after
 * whitespace begins a comment. Returns NULL with *why set on a syntax error;
 * else the value, trimmed, in place. */
static char *
parse_value(char *p, const char **why)
{
    p = skip_blank(p);
    if (*p == '"') {
        char *close = strchr(p + 1, '"');
        if (!close) {
            *why = "syntax error: missing closing '\"'";
            return NULL;
        }
        char *rest = skip_blank(close + 1);
        if (*rest && *rest != ';' && *rest != '#') {
            *why = "syntax error: text after closing '\"'";
            return NULL;
        }
        *close = '\0';
        return p + 1;
    }
    char *end = p;
    for (; *end; end++)
        if ((*end == ';' || *end == '#') &&
            (end == p || is_blank((unsigned char)end[-1])))
            break;
    trim_end(p, end);
    return p;
}

static void
parse_line(load_ctx *c, char *s, long line, cur_section *cur)
{
    char *p = skip_blank(s);
    if (!*p || *p == ';' || *p == '#')
        return;
    if (*p == '[') {
        parse_header(c, p, line, cur);
        return;
    }

    char *eq = strchr(p, '=');
    if (!eq) {
        file_err(c, line, "syntax error: expected [section] or key = value");
        return;
    }
    char *key_end = trim_end(p, eq);
    if (key_end == p) {
        file_err(c, line, "syntax error: missing key before '='");
        return;
    }
    for (char *k = p; k < key_end; k++) {
        if (is_blank((unsigned char)*k) || *k == '"' || *k == '[' ||
            *k == ']') {
            file_err(c, line, "syntax error: invalid key '%s'", p);
            return;
        }
    }
    const char *why = NULL;
    char *value = parse_value(eq + 1, &why);
    if (!value) {
        file_err(c, line, "%s", why);
        return;
    }

    switch (cur->kind) {
    case CUR_NONE:
        file_err(c, line, "key '%s' before any [section]", p);
        return;
    case CUR_UNKNOWN:
        return; /* already reported at the header */
    case CUR_TABLE:
    case CUR_PLUGIN:
        break;
    }
    ssize_t dup = find_entry(c->cfg, cur->name, p);
    if (dup >= 0) {
        file_err(c, line, "duplicate key '%s' in [%s] (first set at line %ld)",
                 p, cur->name, c->ranks[dup]);
        return;
    }
    add_entry(c, td_strdup(cur->name), td_strdup(p), td_strdup(value),
              td_asprintf("%s:%ld", c->path, line), line);
}

/* Returns 0, or the errno of a read error (then the file is not used). */
static int
parse_file(load_ctx *c, FILE *f)
{
    cur_section cur = { CUR_NONE, NULL };
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    long line = 0;

    while ((len = getline(&buf, &cap, f)) >= 0) {
        line++;
        size_t n = (size_t)len;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            buf[--n] = '\0';
        if (memchr(buf, '\0', n)) {
            file_err(c, line, "syntax error: NUL byte in line");
            continue;
        }
        char *s = buf;
        if (line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
            s += 3; /* a UTF-8 byte order mark, as some editors write */
        parse_line(c, s, line, &cur);
    }
    int err = ferror(f) ? (errno ? errno : EIO) : 0;
    free(buf);
    free(cur.name);
    return err;
}

static void
mark_present(load_ctx *c, const char *section)
{
    int si = section_index(section);
    if (si >= 0)
        c->present[si] = true;
}

/* Splits an environ string "NAME=VALUE"; *name is freed by the caller. */
static const char *
split_env(const char *kv, char **name)
{
    const char *eq = strchr(kv, '=');
    if (!eq) {
        *name = td_strdup(kv);
        return "";
    }
    *name = td_strndup(kv, (size_t)(eq - kv));
    return eq + 1;
}

static bool
env_matches_entry(const td_config *cfg, const char *section, const char *name)
{
    bool found = false;
    for (size_t i = 0; i < cfg->n_entries && !found; i++) {
        if (strcmp(cfg->entries[i].section, section) != 0)
            continue;
        char *n = env_name(section, cfg->entries[i].key);
        found = strcmp(n, name) == 0;
        free(n);
    }
    return found;
}

/* Appends a pass-through key from an environment variable: the part after
 * the row's prefix, lower-cased with '_' as '.', e.g.
 * TRIAGED_KAFKA_RDKAFKA_SECURITY_PROTOCOL -> rdkafka.security.protocol. */
static void
add_prefixed_env(load_ctx *c, const td_option *o, const char *name,
                 const char *rest, const char *value)
{
    char *key = td_asprintf("%s%s", o->name, rest);
    for (char *k = key + strlen(o->name); *k; k++)
        *k = *k == '_' ? '.' : (char)tolower((unsigned char)*k);
    add_entry(c, td_strdup(o->section), key, td_strdup(value),
              td_asprintf("env:%s", name), c->next_env_rank++);
    mark_present(c, o->section);
}

/* Is NAME the variable of a key of table section SEC? *prefix_row is set
 * when it is a pass-through variable (TRIAGED_KAFKA_RDKAFKA_...). */
static bool
env_is_known(const char *sec, const char *name, const td_option **prefix_row)
{
    *prefix_row = NULL;
    for (const td_option *o = td_options; o->name; o++) {
        if (strcmp(o->section, sec) != 0)
            continue;
        char *n = env_name(o->section, o->name);
        bool hit;
        if (o->flags & TD_OPT_PREFIX) {
            hit = strncmp(name, n, strlen(n)) == 0 && name[strlen(n)] != '\0';
            if (hit)
                *prefix_row = o;
        } else {
            hit = strcmp(name, n) == 0;
        }
        free(n);
        if (hit)
            return true;
    }
    return false;
}

static void
apply_env(load_ctx *c)
{
    td_config *cfg = c->cfg;

    /* Keys in the file, table keys or not (rdkafka.*, plugin sections). */
    for (size_t i = 0; i < cfg->n_entries; i++) {
        td_config_entry *e = &cfg->entries[i];
        char *name = env_name(e->section, e->key);
        const char *v = getenv(name);
        if (v) {
            free(e->value);
            free(e->origin);
            e->value = td_strdup(v);
            e->origin = td_asprintf("env:%s", name);
            c->ranks[i] = c->next_env_rank++;
        }
        free(name);
    }

    /* Table keys the file lacks. */
    for (const td_option *o = td_options; o->name; o++) {
        if ((o->flags & TD_OPT_PREFIX) ||
            find_entry(cfg, o->section, o->name) >= 0)
            continue;
        char *name = env_name(o->section, o->name);
        const char *v = getenv(name);
        if (v) {
            add_entry(c, td_strdup(o->section), td_strdup(o->name),
                      td_strdup(v), td_asprintf("env:%s", name),
                      c->next_env_rank++);
            mark_present(c, o->section);
        }
        free(name);
    }

    /* Pass-through keys, and variables of a table section that name no key:
     * those are typos, reported rather than ignored. */
    for (char **ep = environ; ep && *ep; ep++) {
        if (strncmp(*ep, ENV_PREFIX, strlen(ENV_PREFIX)) != 0)
            continue;
        char *name;
        const char *value = split_env(*ep, &name);
        for (size_t si = 0; si < N_SECTIONS; si++) {
            char *sp = env_name(td_config_sections[si].name, "");
            size_t splen = strlen(sp);
            bool in_section = strncmp(name, sp, splen) == 0;
            free(sp);
            if (!in_section)
                continue;
            const td_option *prefix_row;
            if (!env_is_known(td_config_sections[si].name, name, &prefix_row)) {
                char *key = td_strdup(name + splen);
                for (char *k = key; *k; k++)
                    *k = (char)tolower((unsigned char)*k);
                char *origin = td_asprintf("env:%s", name);
                add_err(c, c->next_env_rank++, origin,
                        "unknown key '%s' in [%s]", key, td_config_sections[si].name);
                free(origin);
                free(key);
            } else if (prefix_row &&
                       !env_matches_entry(cfg, prefix_row->section, name)) {
                char *pn = env_name(prefix_row->section, prefix_row->name);
                add_prefixed_env(c, prefix_row, name, name + strlen(pn), value);
                free(pn);
            }
            break;
        }
        free(name);
    }
}

static void
set_defaults(td_config *cfg)
{
    for (const td_option *o = td_options; o->name; o++) {
        if (o->offset == NO_OFFSET || !o->def)
            continue;
        if (o->def == td_config_default_hostname) {
            char host[256] = "";
            if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
                strcpy(host, "triaged");
            host[sizeof(host) - 1] = '\0';
            *(char **)field_of(cfg, o) = td_strdup(host);
            continue;
        }
        char *why = NULL;
        if (convert(o, o->def, cfg, &why) != TD_OK) {
            /* A bad default is a bug in the table; the unit tests load the
             * example file, which exercises every default. */
            fprintf(stderr, "triaged: bad default: %s\n", why);
            abort();
        }
    }
}

static void
convert_entries(load_ctx *c)
{
    td_config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->n_entries; i++) {
        const td_config_entry *e = &cfg->entries[i];
        if (is_plugin_section(e->section))
            continue;
        const td_option *o = find_option(e->section, e->key);
        if (!o) {
            add_err(c, c->ranks[i], e->origin, "unknown key '%s' in [%s]",
                    e->key, e->section);
            continue;
        }
        if (o->offset == NO_OFFSET) {
            /* pass-through: only emptiness is ours to check */
            if (!*e->value)
                add_err(c, c->ranks[i], e->origin, "empty value for %s.%s",
                        e->section, e->key);
            continue;
        }
        char *why = NULL;
        if (convert(o, e->value, cfg, &why) != TD_OK) {
            add_err(c, c->ranks[i], e->origin, "%s", why);
            free(why);
        }
    }
}

static void
check_required(load_ctx *c)
{
    for (const td_option *o = td_options; o->name; o++) {
        int si = section_index(o->section);
        bool required = (o->flags & TD_OPT_REQUIRED) ||
                        ((o->flags & TD_OPT_REQUIRED_IN_SECTION) &&
                         c->present[si]);
        if (!required || find_entry(c->cfg, o->section, o->name) >= 0)
            continue;
        /* At the section's header when the file has one, else at line 1. */
        long line = c->header_line[si] ? c->header_line[si] : 1;
        file_err(c, line, "missing required key %s in [%s]", o->name,
                 o->section);
    }
}

int
td_config_load(const char *path, td_config **out, td_errors *errs)
{
    *out = NULL;
    struct stat st;
    FILE *f = fopen(path, "r");
    if (f && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f); /* Linux opens a directory for reading; reading fails */
        f = NULL;
        errno = EISDIR;
    }
    if (!f) {
        if (errs)
            td_errors_add(errs, "%s: cannot open: %s", path, strerror(errno));
        return TD_ERR;
    }

    load_ctx c = { .path = path, .next_env_rank = ENV_RANK };
    c.cfg = td_calloc(1, sizeof(*c.cfg));
    c.cfg->path = td_strdup(path);

    int read_err = parse_file(&c, f);
    fclose(f);
    if (read_err) {
        /* Half a file would only produce misleading errors: report one. */
        for (size_t i = 0; i < c.n_errs; i++)
            free(c.errs[i].msg);
        free(c.errs);
        free(c.ranks);
        td_config_free(c.cfg);
        if (errs)
            td_errors_add(errs, "%s: cannot read: %s", path,
                          strerror(read_err));
        return TD_ERR;
    }
    apply_env(&c);
    set_defaults(c.cfg);
    convert_entries(&c);
    check_required(&c);

    for (size_t si = 0; si < N_SECTIONS; si++)
        if (td_config_sections[si].has_offset != NO_OFFSET)
            *(bool *)((char *)c.cfg + td_config_sections[si].has_offset) = c.present[si];

    if (c.n_errs > 0) /* qsort(NULL, 0, ...) is undefined */
        qsort(c.errs, c.n_errs, sizeof(*c.errs), cmp_err);
    for (size_t i = 0; i < c.n_errs; i++) {
        if (errs)
            td_errors_add(errs, "%s", c.errs[i].msg);
        free(c.errs[i].msg);
    }
    free(c.errs);
    free(c.ranks);

    if (c.n_errs > 0) {
        td_config_free(c.cfg);
        return TD_ERR;
    }
    *out = c.cfg;
    return TD_OK;
}

void
td_config_free(td_config *cfg)
{
    if (!cfg)
        return;
    for (const td_option *o = td_options; o->name; o++) {
        if (o->offset == NO_OFFSET)
            continue;
        if (o->type == TD_OPT_STRING || o->type == TD_OPT_PATH ||
            o->type == TD_OPT_LIST)
            free(*(char **)field_of(cfg, o));
    }
    for (size_t i = 0; i < cfg->n_entries; i++) {
        free(cfg->entries[i].section);
        free(cfg->entries[i].key);
        free(cfg->entries[i].value);
        free(cfg->entries[i].origin);
    }
    free(cfg->entries);
    free(cfg->path);
    free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Queries */

const char *
td_config_get(const td_config *cfg, const char *section, const char *key)
{
    ssize_t i = find_entry(cfg, section, key);
    if (i >= 0)
        return cfg->entries[i].value;
    /* Defaults are not entries, but a table key left unset reads as its
     * default text, so a plugin asking for e.g. kafka.group gets "triaged".
     * The host name default reads as the name found at load time. */
    const td_option *o = find_option(section, key);
    if (!o || (o->flags & TD_OPT_PREFIX))
        return NULL;
    if (o->def == td_config_default_hostname)
        return cfg->instance;
    return o->def;
}

int
td_config_each(const td_config *cfg, const char *section, const char *prefix,
               int (*fn)(const td_config_entry *e, void *arg), void *arg)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    for (size_t i = 0; i < cfg->n_entries; i++) {
        const td_config_entry *e = &cfg->entries[i];
        if (strcmp(e->section, section) != 0 ||
            (plen && strncmp(e->key, prefix, plen) != 0))
            continue;
        int rc = fn(e, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static bool
same_string(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

void
td_config_diff(const td_config *old, const td_config *new_,
               void (*fn)(const td_option *opt, void *arg), void *arg)
{
    for (const td_option *o = td_options; o->name; o++) {
        if (o->offset == NO_OFFSET)
            continue;
        const void *a = cfield_of(old, o), *b = cfield_of(new_, o);
        bool same = true;
        switch (o->type) {
        case TD_OPT_STRING:
        case TD_OPT_PATH:
        case TD_OPT_LIST:
            same = same_string(*(char *const *)a, *(char *const *)b);
            break;
        case TD_OPT_INT:
        case TD_OPT_ENUM:
            same = *(const int *)a == *(const int *)b;
            break;
        case TD_OPT_BOOL:
            same = *(const bool *)a == *(const bool *)b;
            break;
        case TD_OPT_DURATION:
        case TD_OPT_SIZE:
            same = *(const int64_t *)a == *(const int64_t *)b;
            break;
        }
        if (!same)
            fn(o, arg);
    }
}

void
td_config_apply_reloadable(td_config *dst, const td_config *src)
{
    for (const td_option *o = td_options; o->name; o++) {
        if (o->offset == NO_OFFSET || !(o->flags & TD_OPT_RELOAD))
            continue;
        void *a = field_of(dst, o);
        const void *b = cfield_of(src, o);
        switch (o->type) {
        case TD_OPT_STRING:
        case TD_OPT_PATH:
        case TD_OPT_LIST: {
            char *const *from = b;
            free(*(char **)a);
            *(char **)a = *from ? td_strdup(*from) : NULL;
            break;
        }
        case TD_OPT_INT:
        case TD_OPT_ENUM:
            *(int *)a = *(const int *)b;
            break;
        case TD_OPT_BOOL:
            *(bool *)a = *(const bool *)b;
            break;
        case TD_OPT_DURATION:
        case TD_OPT_SIZE:
            *(int64_t *)a = *(const int64_t *)b;
            break;
        }
    }
}
