/*
 * migrations.h - the schema migrations of sql/, compiled in at build time
 * (sql/embed.cmake writes migrations.c). Applied in order by the store.
 */
#ifndef LLMQ_MIGRATIONS_H
#define LLMQ_MIGRATIONS_H

#include <stddef.h>

struct migration {
	int version;
	const char *name;
	const char *sql;
};

extern const struct migration migrations[];
extern const size_t migrations_count;

#endif
