/* A growable byte buffer, for the compiled writers of bytes: the tree's msgpack
 * (_pack.c) and the header's JSON (_json_dump.c). */
#ifndef SKJAR_BYTES_H
#define SKJAR_BYTES_H
#include <Python.h>
#include <string.h>

typedef struct {
    char *buf; /* PyMem memory, or NULL while empty */
    Py_ssize_t len, cap;
} SkjarBytes;

/* Room for n more bytes: 0, or -1 with MemoryError set. */
static inline int
skjar_bytes_reserve(SkjarBytes *b, Py_ssize_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *grown = PyMem_Realloc(b->buf, (size_t)cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->buf = grown;
    b->cap = cap;
    return 0;
}

static inline int
skjar_bytes_put(SkjarBytes *b, const void *data, Py_ssize_t n)
{
    if (skjar_bytes_reserve(b, n) < 0)
        return -1;
    memcpy(b->buf + b->len, data, (size_t)n);
    b->len += n;
    return 0;
}

#endif
