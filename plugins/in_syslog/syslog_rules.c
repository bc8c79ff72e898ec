/* syslog_rules.c — the rules file: which syslog messages become alerts,
 * and which resolve them.
 *
 * The design is simple: the file is a list of sections, one rule each, tried
 * in file order; the first rule whose conditions all hold wins. Conditions
 * are cheap ones first (facility bit mask, severity threshold), then PCRE2
 * regular expressions (JIT-compiled) on hostname, app-name, msgid,
 * structured-data parameters and the message. The alert's fields are
 * templates compiled at load time into literal and reference parts, so a
 * match costs the regex runs plus one pass copying bytes into the result
 * buffer; nothing is parsed or looked up by name per message.
 *
 *   [link-down]
 *   message = %LINK-3-UPDOWN: Interface (?<ifname>[^,]+), changed state to down
 *   check = link_down
 *   dedup_key = link/${host}/${ifname}
 *
 *   [link-up]
 *   message = %LINK-3-UPDOWN: Interface (?<ifname>[^,]+), changed state to up
 *   resolves = link-down
 *
 * A rule with `resolves = NAME` sends `status: resolved` and takes the
 * identity templates it does not set itself (source, resource, check,
 * dedup_key, ci, labels) from rule NAME, filled with its own captures, so it
 * names the very alert NAME raised. Every mistake (unknown key, bad regex,
 * a template naming a capture the rule does not have) is an error with
 * FILE:LINE when the file is loaded, never a surprise per message.
 *
 * Memory: allocation failures abort, as everywhere in triaged (util.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "syslog_parse.h"

/* ---- allocation --------------------------------------------------------- */

static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fputs("in_syslog: out of memory\n", stderr);
        abort();
    }
    return q;
}

static void *
xcalloc(size_t n, size_t size)
{
    void *q = calloc(n ? n : 1, size);
    if (!q) {
        fputs("in_syslog: out of memory\n", stderr);
        abort();
    }
    return q;
}

static char *xstrndup(const char *s, size_t n);

static char *
xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

static char *
xstrndup(const char *s, size_t n)
{
    char *d = xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* ---- model ------------------------------------------------------------ */

/* Alert fields a rule sets by template. */
enum { F_SOURCE, F_RESOURCE, F_CHECK, F_SEVERITY, F_SUMMARY, F_DEDUP, F_CI, F_N };
static const char *const field_keys[F_N] = {
    "source", "resource", "check", "severity", "summary", "dedup_key", "ci",
};
/* Fields a resolve rule inherits from the rule it resolves: the identity. */
static const bool inherited[F_N] = {true, true, true, false, false, true, true};

/* What a template part refers to. */
enum {
    P_LIT, P_HOST, P_FROMHOST, P_APP, P_PROCID, P_MSGID, P_MESSAGE, P_FACILITY,
    P_SEVERITY, P_SD, P_GROUP,
};
static const struct { const char *name; int kind; } builtins[] = {
    {"host", P_HOST},         {"fromhost", P_FROMHOST}, {"app", P_APP},
    {"procid", P_PROCID},     {"msgid", P_MSGID},       {"message", P_MESSAGE},
    {"facility", P_FACILITY}, {"severity", P_SEVERITY},
};

typedef struct part {
    int kind;
    char *lit;     /* P_LIT text; P_SD "ID\0PARAM" */
    size_t n;      /* P_LIT length; P_SD length of ID */
    int rx, group; /* P_GROUP */
} part;

typedef struct tmpl {
    part *parts;
    size_t n;
    bool set;
} tmpl;

#define MAX_RX_PER_RULE 64

/* What a regex is matched against. */
enum { T_HOST, T_APP, T_MSGID, T_SD, T_MESSAGE };

typedef struct rx {
    int target;
    char *sd_id, *sd_param; /* T_SD */
    pcre2_code *code;
    pcre2_match_data *md;
} rx;

typedef struct rule {
    char *name;
    int line;
    uint32_t facilities; /* bit mask; 0: any */
    int min_sev;         /* match when severity <= min_sev; -1: any */
    rx *rxs;
    size_t n_rx;
    int msg_rx; /* index of the message regex, -1: none */
    int status; /* 0 unset, 1 firing, 2 resolved */
    char *resolves;
    int resolves_line;
    char *src[F_N]; /* template texts as written; NULL: unset */
    int src_line[F_N];
    char *label_name[TDS_MAX_LABELS], *label_src[TDS_MAX_LABELS];
    int label_line[TDS_MAX_LABELS];
    size_t n_labels;
    /* compiled */
    tmpl t[F_N];
    const char *out_label_name[TDS_MAX_LABELS];
    tmpl out_label[TDS_MAX_LABELS];
    size_t n_out_labels;
} rule;

struct tds_rules {
    rule *rules;
    size_t n;
};

/* ---- errors ----------------------------------------------------------- */

typedef struct loader {
    const char *origin;
    char *err;
    size_t errlen;
} loader;

static int
fail(loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(loader *ld, int line, const char *fmt, ...)
{
    int n = snprintf(ld->err, ld->errlen, "%s:%d: ", ld->origin, line);
    if (n >= 0 && (size_t)n < ld->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- freeing ------------------------------------------------------------ */

static void
tmpl_free(tmpl *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->parts[i].lit);
    free(t->parts);
    memset(t, 0, sizeof(*t));
}

static void
rule_free(rule *r)
{
    free(r->name);
    for (size_t i = 0; i < r->n_rx; i++) {
        free(r->rxs[i].sd_id);
        free(r->rxs[i].sd_param);
        pcre2_match_data_free(r->rxs[i].md);
        pcre2_code_free(r->rxs[i].code);
    }
    free(r->rxs);
    free(r->resolves);
    for (int f = 0; f < F_N; f++) {
        free(r->src[f]);
        tmpl_free(&r->t[f]);
    }
    for (size_t i = 0; i < r->n_labels; i++) {
        free(r->label_name[i]);
        free(r->label_src[i]);
    }
    for (size_t i = 0; i < r->n_out_labels; i++)
        tmpl_free(&r->out_label[i]);
}

void
tds_rules_free(tds_rules *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->n; i++)
        rule_free(&rs->rules[i]);
    free(rs->rules);
    free(rs);
}

size_t
tds_rules_count(const tds_rules *rs)
{
    return rs ? rs->n : 0;
}

const char *
tds_rules_name(const tds_rules *rs, size_t i)
{
    return i < rs->n ? rs->rules[i].name : NULL;
}

/* ---- reading the file ------------------------------------------------- */

static char *
trim(char *s, char *end)
{
    while (s < end && isspace((unsigned char)*s))
        s++;
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    *end = '\0';
    return s;
}

static bool
valid_rule_name(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return false;
    return true;
}

static int
add_regex(loader *ld, int line, rule *r, int target, const char *sd_id,
          const char *sd_param, const char *pattern)
{
    int code;
    PCRE2_SIZE off;
    for (size_t i = 0; i < r->n_rx; i++)
        if (r->rxs[i].target == target && target != T_SD)
            return fail(ld, line, "rule %s: condition given twice", r->name);
    if (r->n_rx == MAX_RX_PER_RULE)
        return fail(ld, line, "rule %s: more than %d conditions", r->name,
                    MAX_RX_PER_RULE);
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                  PCRE2_UTF, &code, &off, NULL);
    if (!c) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof(msg));
        return fail(ld, line, "rule %s: bad regular expression at offset %zu: %s",
                    r->name, (size_t)off, (const char *)msg);
    }
    pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* the interpreter if JIT fails */
    r->rxs = xrealloc(r->rxs, (r->n_rx + 1) * sizeof(*r->rxs));
    rx *x = &r->rxs[r->n_rx++];
    memset(x, 0, sizeof(*x));
    x->target = target;
    x->code = c;
    x->md = pcre2_match_data_create_from_pattern(c, NULL);
    if (!x->md) {
        fputs("in_syslog: out of memory\n", stderr);
        abort();
    }
    if (sd_id) {
        x->sd_id = xstrdup(sd_id);
        x->sd_param = xstrdup(sd_param);
    }
    return 0;
}

static int
set_key(loader *ld, int line, rule *r, const char *key, const char *value)
{
    if (strcmp(key, "facility") == 0) {
        if (r->facilities)
            return fail(ld, line, "rule %s: facility given twice", r->name);
        const char *p = value;
        while (*p) {
            size_t w = strcspn(p, ", \t");
            if (w) {
                int f = tds_facility_parse(p, w);
                if (f < 0)
                    return fail(ld, line, "rule %s: unknown facility '%.*s'",
                                r->name, (int)w, p);
                r->facilities |= 1u << f;
            }
            p += w;
            p += strspn(p, ", \t");
        }
        if (!r->facilities)
            return fail(ld, line, "rule %s: facility is empty", r->name);
        return 0;
    }
    if (strcmp(key, "min_severity") == 0) {
        int s = tds_severity_parse(value, strlen(value));
        if (s < 0)
            return fail(ld, line, "rule %s: unknown syslog severity '%s' (emerg "
                        "alert crit err warning notice info debug)", r->name, value);
        if (r->min_sev >= 0)
            return fail(ld, line, "rule %s: min_severity given twice", r->name);
        r->min_sev = s;
        return 0;
    }
    if (strcmp(key, "hostname") == 0)
        return add_regex(ld, line, r, T_HOST, NULL, NULL, value);
    if (strcmp(key, "app") == 0)
        return add_regex(ld, line, r, T_APP, NULL, NULL, value);
    if (strcmp(key, "msgid") == 0)
        return add_regex(ld, line, r, T_MSGID, NULL, NULL, value);
    if (strcmp(key, "message") == 0)
        return add_regex(ld, line, r, T_MESSAGE, NULL, NULL, value);
    if (strncmp(key, "sd ", 3) == 0) {
        char id[64], param[64], extra[2];
        if (sscanf(key + 3, "%63s %63s %1s", id, param, extra) != 2)
            return fail(ld, line, "rule %s: write a structured-data condition as "
                        "'sd SD-ID PARAM = REGEX'", r->name);
        return add_regex(ld, line, r, T_SD, id, param, value);
    }
    if (strcmp(key, "status") == 0) {
        if (r->status)
            return fail(ld, line, "rule %s: status given twice", r->name);
        if (strcmp(value, "firing") == 0)
            r->status = 1;
        else if (strcmp(value, "resolved") == 0)
            r->status = 2;
        else
            return fail(ld, line, "rule %s: status is firing or resolved, not '%s'",
                        r->name, value);
        return 0;
    }
    if (strcmp(key, "resolves") == 0) {
        if (r->resolves)
            return fail(ld, line, "rule %s: resolves given twice", r->name);
        r->resolves = xstrdup(value);
        r->resolves_line = line;
        return 0;
    }
    if (strncmp(key, "label.", 6) == 0) {
        const char *name = key + 6;
        if (!*name)
            return fail(ld, line, "rule %s: label without a name", r->name);
        for (size_t i = 0; i < r->n_labels; i++)
            if (strcmp(r->label_name[i], name) == 0)
                return fail(ld, line, "rule %s: label %s given twice", r->name, name);
        if (r->n_labels == TDS_MAX_LABELS)
            return fail(ld, line, "rule %s: more than %d labels", r->name,
                        TDS_MAX_LABELS);
        r->label_name[r->n_labels] = xstrdup(name);
        r->label_src[r->n_labels] = xstrdup(value);
        r->label_line[r->n_labels++] = line;
        return 0;
    }
    for (int f = 0; f < F_N; f++) {
        if (strcmp(key, field_keys[f]) != 0)
            continue;
        if (r->src[f])
            return fail(ld, line, "rule %s: %s given twice", r->name, key);
        r->src[f] = xstrdup(value);
        r->src_line[f] = line;
        return 0;
    }
    return fail(ld, line, "rule %s: unknown key '%s'", r->name, key);
}

/* ---- templates -------------------------------------------------------- */

static void
add_part(tmpl *t, part p)
{
    t->parts = xrealloc(t->parts, (t->n + 1) * sizeof(*t->parts));
    t->parts[t->n++] = p;
}

static void
add_lit(tmpl *t, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (t->n && t->parts[t->n - 1].kind == P_LIT) {
        part *p = &t->parts[t->n - 1];
        p->lit = xrealloc(p->lit, p->n + n + 1);
        memcpy(p->lit + p->n, s, n);
        p->n += n;
        p->lit[p->n] = '\0';
        return;
    }
    add_part(t, (part){.kind = P_LIT, .lit = xstrndup(s, n), .n = n});
}

/* The regex of rule r that defines the named group, or -1. */
static int
find_named(const rule *r, const char *name, int *group)
{
    for (size_t i = 0; i < r->n_rx; i++) {
        int g = pcre2_substring_number_from_name(r->rxs[i].code, (PCRE2_SPTR)name);
        if (g > 0) {
            *group = g;
            return (int)i;
        }
    }
    return -1;
}

/* Compiles SRC as a template of rule r (whose captures it may use). `what`
 * names the field in errors; `from` the rule it was inherited from, or NULL. */
static int
compile_tmpl(loader *ld, int line, const rule *r, const char *src, const char *what,
             const char *from, tmpl *t)
{
    const char *p = src;
    t->set = true;
    while (*p) {
        const char *d = strchr(p, '$');
        if (!d) {
            add_lit(t, p, strlen(p));
            break;
        }
        add_lit(t, p, (size_t)(d - p));
        if (d[1] == '$') {
            add_lit(t, "$", 1);
            p = d + 2;
            continue;
        }
        if (d[1] != '{')
            return fail(ld, line, "rule %s: %s: '$' starts ${NAME} (write $$ for "
                        "a dollar sign)", r->name, what);
        const char *close = strchr(d + 2, '}');
        if (!close)
            return fail(ld, line, "rule %s: %s: unterminated ${", r->name, what);
        char name[160];
        size_t n = (size_t)(close - d - 2);
        if (n == 0 || n >= sizeof(name))
            return fail(ld, line, "rule %s: %s: empty or overlong ${}", r->name, what);
        memcpy(name, d + 2, n);
        name[n] = '\0';
        p = close + 1;

        if (isdigit((unsigned char)name[0])) {
            char *end;
            long g = strtol(name, &end, 10);
            uint32_t count = 0;
            if (*end || r->msg_rx < 0)
                return fail(ld, line, "rule %s: %s: ${%s} needs a message regex%s%s",
                            r->name, what, name, from ? " in this rule; the template "
                            "comes from rule " : "", from ? from : "");
            pcre2_pattern_info(r->rxs[r->msg_rx].code, PCRE2_INFO_CAPTURECOUNT, &count);
            if (g > (long)count)
                return fail(ld, line, "rule %s: %s: ${%s}, but the message regex "
                            "has %u groups", r->name, what, name, count);
            add_part(t, (part){.kind = P_GROUP, .rx = r->msg_rx, .group = (int)g});
            continue;
        }
        if (strncmp(name, "sd ", 3) == 0) {
            char id[64], param[64], extra[2];
            if (sscanf(name + 3, "%63s %63s %1s", id, param, extra) != 2)
                return fail(ld, line, "rule %s: %s: write ${sd SD-ID PARAM}",
                            r->name, what);
            size_t il = strlen(id), pl = strlen(param);
            char *both = xrealloc(NULL, il + pl + 2);
            memcpy(both, id, il + 1);
            memcpy(both + il + 1, param, pl + 1);
            add_part(t, (part){.kind = P_SD, .lit = both, .n = il});
            continue;
        }
        int group, which = find_named(r, name, &group);
        int builtin = -1;
        for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
            if (strcmp(name, builtins[i].name) == 0)
                builtin = builtins[i].kind;
        if (builtin >= 0 && which >= 0)
            return fail(ld, line, "rule %s: a regex names a group '%s', which is "
                        "also a built-in value; rename the group", r->name, name);
        if (builtin >= 0) {
            add_part(t, (part){.kind = builtin});
            continue;
        }
        if (which < 0)
            return fail(ld, line, "rule %s: %s uses ${%s}, which is neither a "
                        "built-in value nor a named group of this rule's regexes%s%s",
                        r->name, what, name, from ? " (the template comes from "
                        "rule " : "", from ? from : "");
        add_part(t, (part){.kind = P_GROUP, .rx = which, .group = group});
    }
    return 0;
}

static bool
is_alert_severity(const char *s)
{
    static const char *const names[] = {"critical", "major", "minor", "warning", "info"};
    for (size_t i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0)
            return true;
    return false;
}

static int
compile_rule(loader *ld, tds_rules *rs, rule *r)
{
    const rule *base = NULL;
    if (r->resolves) {
        for (size_t i = 0; i < rs->n; i++)
            if (strcmp(rs->rules[i].name, r->resolves) == 0)
                base = &rs->rules[i];
        if (!base)
            return fail(ld, r->resolves_line, "rule %s: resolves '%s', which is "
                        "not a rule in this file", r->name, r->resolves);
        if (base == r || base->resolves || base->status == 2)
            return fail(ld, r->resolves_line, "rule %s: resolves '%s', which is "
                        "not a firing rule", r->name, r->resolves);
        if (r->status == 1)
            return fail(ld, r->resolves_line, "rule %s: resolves another rule, "
                        "so its status cannot be firing", r->name);
        r->status = 2;
    }
    for (int f = 0; f < F_N; f++) {
        const char *src = r->src[f];
        int line = r->src_line[f];
        const char *from = NULL;
        if (!src && base && inherited[f] && base->src[f]) {
            src = base->src[f];
            line = base->src_line[f];
            from = base->name;
        }
        if (!src) {
            /* Defaults; check defaults to the (resolved) rule's name. */
            static const char *const defaults[F_N] = {
                "syslog", "${host}", NULL, NULL, "${message}", NULL, NULL,
            };
            if (f == F_CHECK) {
                add_lit(&r->t[f], base ? base->name : r->name,
                        strlen(base ? base->name : r->name));
                r->t[f].set = true;
            } else if (defaults[f]) {
                if (compile_tmpl(ld, r->line, r, defaults[f], field_keys[f], NULL,
                                 &r->t[f]) != 0)
                    return -1;
            }
            continue;
        }
        if (compile_tmpl(ld, line, r, src, field_keys[f], from, &r->t[f]) != 0)
            return -1;
        if (f == F_SEVERITY && !strchr(src, '$') && !is_alert_severity(src))
            return fail(ld, line, "rule %s: severity is one of critical major "
                        "minor warning info, not '%s'", r->name, src);
    }
    /* Labels: the resolved rule's, then this rule's (which win). */
    const rule *sources[2] = {base, r};
    for (int s = 0; s < 2; s++) {
        const rule *from = sources[s];
        if (!from)
            continue;
        for (size_t i = 0; i < from->n_labels; i++) {
            size_t k = 0;
            while (k < r->n_out_labels && strcmp(r->out_label_name[k], from->label_name[i]) != 0)
                k++;
            if (k == r->n_out_labels) {
                r->n_out_labels++;
            } else {
                tmpl_free(&r->out_label[k]);
            }
            r->out_label_name[k] = from->label_name[i];
            if (compile_tmpl(ld, from->label_line[i], r, from->label_src[i],
                             from->label_name[i], from == r ? NULL : from->name,
                             &r->out_label[k]) != 0)
                return -1;
        }
    }
    return 0;
}

tds_rules *
tds_rules_parse(const char *text, size_t len, const char *origin, char *err,
                size_t errlen)
{
    loader ld = {origin, err, errlen};
    tds_rules *rs = xcalloc(1, sizeof(*rs));
    char *copy = xstrndup(text, len);
    char *p = copy, *end = copy + len;
    int line = 0;
    rule *cur = NULL;

    if (memchr(text, '\0', len)) {
        fail(&ld, 1, "NUL byte in the rules file");
        goto fail;
    }
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        line++;
        /* Not UTF-8 (a Latin-1 file): PCRE2 in UTF mode and the alerts'
         * JSON need UTF-8, so say where rather than fail later. */
        if (!tds_utf8_valid((const unsigned char *)p, (size_t)(eol - p))) {
            fail(&ld, line, "not valid UTF-8 (save the file as UTF-8)");
            goto fail;
        }
        char *s = trim(p, eol);
        p = nl ? nl + 1 : end;
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            size_t n = strlen(s);
            if (s[n - 1] != ']') {
                fail(&ld, line, "a section header is [NAME]");
                goto fail;
            }
            s[n - 1] = '\0';
            char *name = trim(s + 1, s + n - 1);
            if (!valid_rule_name(name)) {
                fail(&ld, line, "rule name '%s': letters, digits, '_', '-' and '.' "
                     "only, at most 64", name);
                goto fail;
            }
            for (size_t i = 0; i < rs->n; i++)
                if (strcmp(rs->rules[i].name, name) == 0) {
                    fail(&ld, line, "rule %s defined twice (first at line %d)", name,
                         rs->rules[i].line);
                    goto fail;
                }
            rs->rules = xrealloc(rs->rules, (rs->n + 1) * sizeof(*rs->rules));
            cur = &rs->rules[rs->n++];
            memset(cur, 0, sizeof(*cur));
            cur->name = xstrdup(name);
            cur->line = line;
            cur->min_sev = -1;
            cur->msg_rx = -1;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            fail(&ld, line, "expected KEY = VALUE or [RULE-NAME]");
            goto fail;
        }
        if (!cur) {
            fail(&ld, line, "a key before the first [RULE-NAME]");
            goto fail;
        }
        char *key = trim(s, eq);
        char *value = trim(eq + 1, eol);
        if (!*value && strncmp(key, "label.", 6) != 0 && strcmp(key, "summary") != 0) {
            fail(&ld, line, "rule %s: %s has no value", cur->name, key);
            goto fail;
        }
        if (set_key(&ld, line, cur, key, value) != 0)
            goto fail;
        if (strcmp(key, "message") == 0)
            cur->msg_rx = (int)cur->n_rx - 1;
    }
    for (size_t i = 0; i < rs->n; i++)
        if (compile_rule(&ld, rs, &rs->rules[i]) != 0)
            goto fail;
    free(copy);
    return rs;

fail:
    free(copy);
    tds_rules_free(rs);
    return NULL;
}

tds_rules *
tds_rules_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[8192];
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n > 16 * 1024 * 1024) {
            fclose(f);
            free(text);
            snprintf(err, errlen, "%s: larger than 16 MiB", path);
            return NULL;
        }
        if (len + n > cap) {
            cap = (len + n) * 2;
            text = xrealloc(text, cap);
        }
        memcpy(text + len, chunk, n);
        len += n;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(text);
        snprintf(err, errlen, "%s: read error", path);
        return NULL;
    }
    tds_rules *rs = tds_rules_parse(text ? text : "", len, path, err, errlen);
    free(text);
    return rs;
}

/* ---- matching --------------------------------------------------------- */

static const tds_str *
sd_value(const tds_msg *m, const char *id, size_t idn, const char *param)
{
    size_t pn = strlen(param);
    for (size_t i = 0; i < m->n_params; i++) {
        const tds_param *p = &m->params[i];
        if (p->id.n == idn && p->name.n == pn && memcmp(p->id.p, id, idn) == 0 &&
            memcmp(p->name.p, param, pn) == 0)
            return &p->value;
    }
    return NULL;
}

typedef struct outbuf {
    tds_result *res;
    size_t n;
} outbuf;

static void
put(outbuf *o, const char *s, size_t n)
{
    tds_result *r = o->res;
    if (o->n + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (o->n + n + 1 > cap)
            cap *= 2;
        r->buf = xrealloc(r->buf, cap);
        r->cap = cap;
    }
    if (n)
        memcpy(r->buf + o->n, s, n);
    o->n += n;
}

/* Appends the expansion of t, NUL-terminated; returns its offset. */
static size_t
expand(outbuf *o, const rule *r, const tmpl *t, const tds_msg *m, const char *fromhost,
       const tds_str subj[])
{
    size_t at = o->n;
    for (size_t i = 0; i < t->n; i++) {
        const part *p = &t->parts[i];
        const tds_str *v = NULL;
        switch (p->kind) {
        case P_LIT:
            put(o, p->lit, p->n);
            break;
        case P_HOST: v = &m->host; break;
        case P_APP: v = &m->app; break;
        case P_PROCID: v = &m->procid; break;
        case P_MSGID: v = &m->msgid; break;
        case P_MESSAGE: v = &m->msg; break;
        case P_FROMHOST:
            put(o, fromhost, strlen(fromhost));
            break;
        case P_FACILITY: {
            const char *s = tds_facility_name(m->facility);
            put(o, s, strlen(s));
            break;
        }
        case P_SEVERITY: {
            const char *s = tds_severity_name(m->severity);
            put(o, s, strlen(s));
            break;
        }
        case P_SD:
            v = sd_value(m, p->lit, p->n, p->lit + p->n + 1);
            break;
        case P_GROUP: {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->rxs[p->rx].md);
            uint32_t count = pcre2_get_ovector_count(r->rxs[p->rx].md);
            if ((uint32_t)p->group < count && ov[2 * p->group] != PCRE2_UNSET) {
                const tds_str *s = &subj[p->rx];
                size_t a = ov[2 * p->group], b = ov[2 * p->group + 1];
                if (a <= b && b <= s->n)
                    put(o, s->p + a, b - a);
            }
            break;
        }
        }
        if (v && v->p)
            put(o, v->p, v->n);
    }
    put(o, "", 1);
    return at;
}

const char *
tds_alert_severity(int s)
{
    if (s <= 2)
        return "critical";
    if (s == 3)
        return "major";
    if (s == 4)
        return "warning";
    return "info";
}

int
tds_rules_match(const tds_rules *rs, const tds_msg *m, const char *fromhost,
                tds_result *res)
{
    res->rule = -1;
    if (!rs)
        return -1;
    for (size_t ri = 0; ri < rs->n; ri++) {
        const rule *r = &rs->rules[ri];
        if (r->facilities && !(r->facilities & (1u << m->facility)))
            continue;
        if (r->min_sev >= 0 && m->severity > r->min_sev)
            continue;
        tds_str subj[MAX_RX_PER_RULE];
        bool ok = true;
        for (size_t i = 0; i < r->n_rx && ok; i++) {
            const rx *x = &r->rxs[i];
            const tds_str *v = NULL;
            switch (x->target) {
            case T_HOST: v = &m->host; break;
            case T_APP: v = &m->app; break;
            case T_MSGID: v = &m->msgid; break;
            case T_MESSAGE: v = &m->msg; break;
            case T_SD: v = sd_value(m, x->sd_id, strlen(x->sd_id), x->sd_param); break;
            }
            if (!v) { /* no such SD parameter */
                ok = false;
                break;
            }
            subj[i].p = v->p ? v->p : "";
            subj[i].n = v->p ? v->n : 0;
            int rc = pcre2_match(x->code, (PCRE2_SPTR)subj[i].p, subj[i].n, 0,
                                 PCRE2_NO_UTF_CHECK, x->md, NULL);
            ok = rc >= 0;
        }
        if (!ok)
            continue;

        /* A match: expand the templates, then point at the strings. */
        outbuf o = {res, 0};
        size_t off[F_N], loff[TDS_MAX_LABELS][2];
        bool has[F_N];
        for (int f = 0; f < F_N; f++) {
            has[f] = r->t[f].set;
            if (has[f])
                off[f] = expand(&o, r, &r->t[f], m, fromhost, subj);
        }
        for (size_t i = 0; i < r->n_out_labels; i++) {
            loff[i][0] = o.n;
            put(&o, r->out_label_name[i], strlen(r->out_label_name[i]) + 1);
            loff[i][1] = expand(&o, r, &r->out_label[i], m, fromhost, subj);
        }
        memset(&res->f, 0, sizeof(res->f));
        const char **dst[F_N] = {
            &res->f.source, &res->f.resource, &res->f.check, &res->f.severity,
            &res->f.summary, &res->f.dedup_key, &res->f.ci,
        };
        for (int f = 0; f < F_N; f++)
            *dst[f] = has[f] ? res->buf + off[f] : NULL;
        /* An empty dedup_key or ci means none (identity from resource and
         * check, CI binding from the CMDB). */
        if (res->f.dedup_key && !*res->f.dedup_key)
            res->f.dedup_key = NULL;
        if (res->f.ci && !*res->f.ci)
            res->f.ci = NULL;
        if (!res->f.severity)
            res->f.severity = tds_alert_severity(m->severity);
        res->resolved = r->status == 2;
        res->f.status = res->resolved ? "resolved" : "firing";
        for (size_t i = 0; i < r->n_out_labels; i++) {
            res->label_names[i] = res->buf + loff[i][0];
            res->label_values[i] = res->buf + loff[i][1];
        }
        res->f.label_names = res->label_names;
        res->f.label_values = res->label_values;
        res->f.n_labels = r->n_out_labels;
        res->f.occurred_at_ms = m->ts_us > 0 ? m->ts_us / 1000 : 0;
        res->rule = (int)ri;
        return (int)ri;
    }
    return -1;
}

void
tds_result_free(tds_result *res)
{
    free(res->buf);
    res->buf = NULL;
    res->cap = 0;
}
