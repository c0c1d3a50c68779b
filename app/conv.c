/* app/conv.c: conversation storage. Files are written atomically so a crash never leaves half a
 * conversation where a good one was. */
#include "conv.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void conv_init(conv *c) { memset(c, 0, sizeof *c); }

void conv_clear(conv *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->msg[i].role);
        free(c->msg[i].content);
    }
    c->n = 0;
}

void conv_free(conv *c) {
    conv_clear(c);
    free(c->msg);
    free(c->system);
    conv_init(c);
}

int conv_set_system(conv *c, const char *text) {
    char *s = NULL;
    if (text && *text && !(s = strdup(text))) return -1;
    free(c->system);
    c->system = s;
    return 0;
}

int conv_add(conv *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        conv_msg *m = realloc(c->msg, (size_t)cap * sizeof *m);
        if (!m) return -1;
        c->msg = m;
        c->cap = cap;
    }
    char *r = strdup(role), *t = strdup(content);
    if (!r || !t) {
        free(r);
        free(t);
        return -1;
    }
    c->msg[c->n++] = (conv_msg){r, t};
    return 0;
}

void conv_pop(conv *c) {
    if (c->n == 0) return;
    c->n--;
    free(c->msg[c->n].role);
    free(c->msg[c->n].content);
}

void conv_drop_oldest(conv *c) {
    if (c->n == 0) return;
    free(c->msg[0].role);
    free(c->msg[0].content);
    memmove(c->msg, c->msg + 1, (size_t)(c->n - 1) * sizeof *c->msg);
    c->n--;
}

int conv_save(const conv *c, const char *path, err_t *err) {
    json_t *root = json_object(), *arr = json_array();
    if (!root || !arr) return err_set(err, ERR_NOMEM, "out of memory");
    if (c->system) json_object_set_new(root, "system", json_string(c->system));
    for (int i = 0; i < c->n; i++) {
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string(c->msg[i].role));
        json_object_set_new(m, "content", json_string(c->msg[i].content));
        json_array_append_new(arr, m);
    }
    json_object_set_new(root, "messages", arr);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    int rc = json_dump_file(root, tmp, JSON_INDENT(2) | JSON_ENSURE_ASCII * 0);
    json_decref(root);
    if (rc != 0) {
        unlink(tmp);
        return err_set(err, ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set(err, ERR_IO, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

int conv_load(conv *c, const char *path, err_t *err) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        if (je.line < 0 || !strncmp(je.text, "unable to open", 14))
            return err_set(err, ERR_IO, "%s: cannot read: %s", path, strerror(errno ? errno : ENOENT));
        return err_set(err, ERR_FORMAT, "%s: not JSON: %s (line %d)", path, je.text, je.line);
    }
    conv n;
    conv_init(&n);
    int rc = 0;
    json_t *sys = json_object_get(root, "system"), *msgs = json_object_get(root, "messages");
    if (!json_is_object(root) || (sys && !json_is_string(sys) && !json_is_null(sys)) || !json_is_array(msgs)) {
        rc = err_set(err, ERR_FORMAT, "%s: expected {\"system\": \"...\", \"messages\": [...]}", path);
        goto out;
    }
    if (json_is_string(sys) && conv_set_system(&n, json_string_value(sys))) goto oom;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *r = json_object_get(m, "role"), *t = json_object_get(m, "content");
        if (!json_is_string(r) || !json_is_string(t)) {
            rc = err_set(err, ERR_FORMAT, "%s: message %zu needs string \"role\" and \"content\"", path, i + 1);
            goto out;
        }
        const char *role = json_string_value(r);
        if (!strcmp(role, "system")) {
            if (conv_set_system(&n, json_string_value(t))) goto oom;
            continue;
        }
        if (strcmp(role, "user") && strcmp(role, "assistant")) {
            rc = err_set(err, ERR_FORMAT, "%s: message %zu has unknown role '%s'", path, i + 1, role);
            goto out;
        }
        if (conv_add(&n, role, json_string_value(t))) goto oom;
    }
    conv_free(c);
    *c = n;
    json_decref(root);
    return 0;
oom:
    rc = err_set(err, ERR_NOMEM, "out of memory");
out:
    conv_free(&n);
    json_decref(root);
    return rc;
}
