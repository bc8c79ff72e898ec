/* config_doc.c — the documentation the option table prints: --help-config
 * (one line a key) and --print-example (the commented example file that
 * ships as config/triaged.conf; a unit test compares the two byte for
 * byte). The table is config_table.c's. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "internal/config_table.h"
#include "internal/util.h"

static const char *
type_name(td_opt_type t)
{
    switch (t) {
    case TD_OPT_STRING: return "string";
    case TD_OPT_INT: return "integer";
    case TD_OPT_BOOL: return "yes|no";
    case TD_OPT_DURATION: return "duration";
    case TD_OPT_SIZE: return "size";
    case TD_OPT_ENUM: return "enum";
    case TD_OPT_LIST: return "list";
    case TD_OPT_PATH: return "path";
    }
    return "?";
}

/* "integer 1..100000", "duration 1ms..10s", "debug|info|warn|error" */
static void
describe_type(const td_option *o, char *buf, size_t len)
{
    char range[80];
    switch (o->type) {
    case TD_OPT_INT:
    case TD_OPT_DURATION:
    case TD_OPT_SIZE:
        td_config_format_bounds(o, range, sizeof(range));
        snprintf(buf, len, "%s %s", type_name(o->type), range);
        break;
    case TD_OPT_ENUM:
        snprintf(buf, len, "%s", o->values);
        break;
    default:
        snprintf(buf, len, "%s", type_name(o->type));
        break;
    }
}

static const char *
default_text(const td_option *o)
{
    if (o->def)
        return o->def[0] ? o->def : "(empty)";
    if (o->flags & (TD_OPT_REQUIRED | TD_OPT_REQUIRED_IN_SECTION))
        return "(required)";
    return "-";
}

static void
full_key(const td_option *o, char *buf, size_t len)
{
    snprintf(buf, len, "%s.%s%s", o->section, o->name,
             (o->flags & TD_OPT_PREFIX) ? "*" : "");
}

void
td_config_print_help(FILE *f)
{
    int wkey = 0, wtype = 0, wdef = 0;
    char key[128], type[128];
    for (const td_option *o = td_options; o->name; o++) {
        full_key(o, key, sizeof(key));
        describe_type(o, type, sizeof(type));
        wkey = wkey > (int)strlen(key) ? wkey : (int)strlen(key);
        wtype = wtype > (int)strlen(type) ? wtype : (int)strlen(type);
        int d = (int)strlen(default_text(o));
        wdef = wdef > d ? wdef : d;
    }

    fprintf(f, "Options of the triaged config file, by section: key, type, "
               "default, whether\n"
               "SIGHUP applies a change, and what it does. Every key can be "
               "set in the\n"
               "environment too, as TRIAGED_<SECTION>_<KEY>.\n");
    for (size_t si = 0; si < N_SECTIONS; si++) {
        fprintf(f, "\n[%s]  %s\n", td_config_sections[si].name, td_config_sections[si].help);
        for (const td_option *o = td_options; o->name; o++) {
            if (strcmp(o->section, td_config_sections[si].name) != 0)
                continue;
            full_key(o, key, sizeof(key));
            describe_type(o, type, sizeof(type));
            fprintf(f, "  %-*s  %-*s  %-*s  %-10s  %s\n", wkey, key, wtype,
                    type, wdef, default_text(o),
                    (o->flags & TD_OPT_RELOAD) ? "reloadable" : "", o->help);
        }
    }
}

/* Writes TEXT as "; " comment lines wrapped at 78 columns. */
static void
write_comment(FILE *f, const char *text)
{
    const int width = 78 - 2;
    const char *p = text;
    while (*p) {
        int col = 0;
        fputs(";", f);
        while (*p && *p != '\n') {
            size_t w = strcspn(p, " \n");
            if (col > 0 && col + 1 + (int)w > width)
                break;
            fprintf(f, " %.*s", (int)w, p);
            col += 1 + (int)w;
            p += w;
            while (*p == ' ')
                p++;
        }
        fputs("\n", f);
        if (*p == '\n')
            p++;
    }
}

static const char *
example_for(const td_option *o, const char **key)
{
    *key = o->name;
    for (size_t i = 0; i < td_config_n_examples; i++) {
        if (strcmp(td_config_examples[i].section, o->section) == 0 &&
            strcmp(td_config_examples[i].name, o->name) == 0) {
            *key = td_config_examples[i].key;
            return td_config_examples[i].value;
        }
    }
    return NULL;
}

static void
write_key_line(FILE *f, bool commented, const char *key, const char *value)
{
    fprintf(f, "%s%s =%s%s\n", commented ? ";" : "", key,
            value && *value ? " " : "", value ? value : "");
}

/* A section that switches a feature on and needs no key is written with its
 * header commented out, so the example enables only what it configures. */
static bool
section_is_optional(const section_info *s)
{
    if (s->has_offset == NO_OFFSET)
        return false;
    for (const td_option *o = td_options; o->name; o++)
        if (strcmp(o->section, s->name) == 0 &&
            (o->flags & (TD_OPT_REQUIRED | TD_OPT_REQUIRED_IN_SECTION)))
            return false;
    return true;
}

void
td_config_write_example(FILE *f)
{
    write_comment(f,
        "triaged.conf: an example configuration of triaged, with every key "
        "the daemon knows.\n"
        "\n"
        "Written by 'triaged --print-example' from the option table in "
        "daemon/config_table.c. A key set below is required; a key commented out "
        "shows its default, or an example when it has none. Comments start "
        "with ';' or '#' at the start of a line or after whitespace; a value "
        "may be written in double quotes.\n"
        "\n"
        "Every key can be overridden in the environment as "
        "TRIAGED_<SECTION>_<KEY>, upper case with dots as underscores, e.g. "
        "TRIAGED_KAFKA_BROKERS or TRIAGED_KAFKA_RDKAFKA_SECURITY_PROTOCOL. "
        "Plugins read their own settings from [plugin.NAME] sections.\n"
        "\n"
        "'triaged -t -c FILE' checks a file and lists every problem.");

    for (size_t si = 0; si < N_SECTIONS; si++) {
        const section_info *s = &td_config_sections[si];
        bool optional = section_is_optional(s);
        fprintf(f, "\n%s[%s]\n", optional ? ";" : "", s->name);
        write_comment(f, s->help);
        if (optional)
            write_comment(f, "Remove the ';' before the section name to "
                             "enable it.");

        for (const td_option *o = td_options; o->name; o++) {
            if (strcmp(o->section, s->name) != 0)
                continue;
            char type[128], facts[256];
            describe_type(o, type, sizeof(type));
            snprintf(facts, sizeof(facts), "%s%s%s%s", type,
                     (o->flags & TD_OPT_REQUIRED) ? ", required" : "",
                     (o->flags & TD_OPT_REQUIRED_IN_SECTION)
                         ? ", required in this section" : "",
                     (o->flags & TD_OPT_RELOAD) ? ", applied on SIGHUP" : "");
            fputs("\n", f);
            write_comment(f, o->help);
            write_comment(f, facts);

            const char *key;
            const char *example = example_for(o, &key);
            if (o->flags & (TD_OPT_REQUIRED | TD_OPT_REQUIRED_IN_SECTION))
                write_key_line(f, false, key, example);
            else if (o->def && o->def != td_config_default_hostname)
                write_key_line(f, true, key, o->def);
            else
                write_key_line(f, true, key, example);
        }
    }
}
