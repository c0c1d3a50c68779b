/* app/conv.h: a chat conversation as data: an optional system prompt and alternating turns, saved
 * and loaded as JSON ({"system": "...", "messages": [{"role": "user", "content": "..."}, ...]}), the
 * shape people already use for chat logs. Knows nothing about tokens or models. */
#ifndef ERNIE_APP_CONV_H
#define ERNIE_APP_CONV_H

#include <stddef.h>

#include "base/err.h"

typedef struct {
    char *role;    /* "user" or "assistant" */
    char *content;
} conv_msg;

typedef struct {
    char *system;  /* NULL when none */
    conv_msg *msg;
    int n, cap;
} conv;

void conv_init(conv *c);
void conv_free(conv *c);
/* Drops every turn; keeps the system prompt. */
void conv_clear(conv *c);
/* Replaces the system prompt (NULL or "" removes it). Returns 0, or -1 on out of memory. */
int conv_set_system(conv *c, const char *text);
/* Appends a turn (copied). Returns 0, or -1 on out of memory. */
int conv_add(conv *c, const char *role, const char *content);
/* Removes the last turn (no-op when empty). */
void conv_pop(conv *c);
/* Removes the oldest turn (for when the conversation outgrows the context). */
void conv_drop_oldest(conv *c);

/* Writes the conversation as JSON, atomically (temporary file + rename). */
int conv_save(const conv *c, const char *path, err_t *err);
/* Replaces c with the conversation in a JSON file; on error c is unchanged and err names the file and
 * what is wrong (not JSON, a message without role/content, an unknown role). */
int conv_load(conv *c, const char *path, err_t *err);

#endif
