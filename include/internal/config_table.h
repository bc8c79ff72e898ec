/* config_table.h — what config.c, config_table.c and config_doc.c share:
 * the option table's sections and examples, and the bounds' formatting.
 * Private to those three files; everyone else uses config.h. */
#ifndef TRIAGED_CONFIG_TABLE_H
#define TRIAGED_CONFIG_TABLE_H

#include <stddef.h>

#include "internal/config.h"

/* A row without a td_config field (plugin-read keys, prefixes). */
#define NO_OFFSET ((size_t)-1)

/* Units, so that bounds in the table read as what they mean. */
#define MSEC(n) ((int64_t)(n))
#define SEC(n) ((int64_t)(n) * 1000)
#define MINUTE(n) ((int64_t)(n) * 60 * 1000)
#define HOUR(n) ((int64_t)(n) * 60 * 60 * 1000)
#define DAY(n) ((int64_t)(n) * 24 * 60 * 60 * 1000)
#define KIB(n) ((int64_t)(n) * 1024)
#define MIB(n) ((int64_t)(n) * 1024 * 1024)

/* [triaged] instance defaults to the host name, known only at run time. The
 * row's default points at this marker; it is compared by address. */
extern const char td_config_default_hostname[];

/* The sections of the table, in the order they are documented. has_offset
 * points at the td_config flag telling whether the section is present. */
typedef struct section_info {
    const char *name;
    size_t has_offset;
    const char *help;
} section_info;

#define N_SECTIONS 12
extern const section_info td_config_sections[N_SECTIONS];

/* Values for the example file where a key has no default worth showing.
 * key is the key written (a full key for the rdkafka. prefix). */
typedef struct config_example {
    const char *section, *name, *key, *value;
} config_example;

extern const config_example td_config_examples[];
extern const size_t td_config_n_examples;

/* "1..100000", "1ms..10s", "1KiB..64MiB" (config.c) */
void td_config_format_bounds(const td_option *o, char *buf, size_t len);

#endif
