/* json_dump(value) -> bytes | None
 *
 * The header's JSON, written in one C pass as UTF-8 bytes. The twin is
 * format/header.py's encode_header (the json module's encoder: no spaces, non-ASCII
 * text as it is, NaN and Infinity refused), and this writes the same bytes for the
 * values a header holds: dicts with str keys, lists, tuples (as arrays), str, int,
 * float, True, False and None, each of exactly that type.
 *
 * Anything else - a subclass, a non-str key, a float that is not finite, a str that
 * UTF-8 cannot hold (a lone surrogate), nesting deeper than MAX_DEPTH - returns None,
 * and the caller runs the twin, which writes it or says what is wrong.
 *
 * Why: json.dumps joins a list of str pieces and the caller then encodes the whole to
 * UTF-8; with a save's cold caches that was ~60 us of a 2 KB header (mlp).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_bytes.h"
#include <math.h>
#include <stdio.h> /* snprintf */
#include <string.h>

#define MAX_DEPTH 64

typedef SkjarBytes Out;

static int
put(Out *out, const char *text, size_t n)
{
    return skjar_bytes_put(out, text, (Py_ssize_t)n);
}

#define NOT_FINE 1 /* (returned by dump: the twin decides; no error set) */
static const char HEX[] = "0123456789abcdef";

/* A str as a JSON string: as json's encoder escapes it with ensure_ascii=False. */
static int
dump_str(Out *out, PyObject *text)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            return -1;
        }
        PyErr_Clear(); /* a lone surrogate: the twin escapes it */
        return NOT_FINE;
    }
    if (skjar_bytes_reserve(out, n * 6 + 2) < 0) { /* (at most \u00XX a byte) */
        return -1;
    }
    char *w = out->buf + out->len;
    *w++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        default: /* \u00XX, lower-case as json's encoder writes it */
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = HEX[c >> 4];
            *w++ = HEX[c & 15];
        }
    }
    *w++ = '"';
    out->len = w - out->buf;
    return 0;
}

static int
dump(Out *out, PyObject *v, int depth)
{
    if (v == Py_None) {
        return put(out, "null", 4);
    }
    if (v == Py_True) {
        return put(out, "true", 4);
    }
    if (v == Py_False) {
        return put(out, "false", 5);
    }
    if (PyUnicode_CheckExact(v)) {
        return dump_str(out, v);
    }
    if (PyLong_CheckExact(v)) {
        int overflow;
        const long long small = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow) {
            char digits[24];
            return put(out, digits, (size_t)snprintf(digits, sizeof digits, "%lld", small));
        }
        PyObject *text = PyObject_Str(v);
        if (text == NULL) {
            return -1;
        }
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(text, &n);
        const int done = s == NULL ? -1 : put(out, s, (size_t)n);
        Py_DECREF(text);
        return done;
    }
    if (PyFloat_CheckExact(v)) {
        const double d = PyFloat_AS_DOUBLE(v);
        if (!isfinite(d)) {
            return NOT_FINE; /* the twin refuses it, saying so */
        }
        /* float.__repr__, which json's encoder writes */
        char *text = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (text == NULL) {
            return -1;
        }
        const int done = put(out, text, strlen(text));
        PyMem_Free(text);
        return done;
    }
    if (depth >= MAX_DEPTH) {
        return NOT_FINE;
    }
    if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
        if (put(out, "[", 1) < 0) {
            return -1;
        }
        /* (A list may change under a call that runs Python code: none here does.) */
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        for (Py_ssize_t i = 0; i < n; i++) {
            int done = (i ? put(out, ",", 1) : 0);
            if (done == 0) {
                done = dump(out, PySequence_Fast_GET_ITEM(v, i), depth + 1);
            }
            if (done) {
                return done;
            }
        }
        return put(out, "]", 1);
    }
    if (PyDict_CheckExact(v)) {
        if (put(out, "{", 1) < 0) {
            return -1;
        }
        Py_ssize_t at = 0;
        PyObject *key, *item;
        int first = 1;
        while (PyDict_Next(v, &at, &key, &item)) {
            if (!PyUnicode_CheckExact(key)) {
                return NOT_FINE; /* the twin writes a number's or a bool's key as text */
            }
            int done = first ? 0 : put(out, ",", 1);
            first = 0;
            if (done == 0) {
                done = dump_str(out, key);
            }
            if (done == 0) {
                done = put(out, ":", 1);
            }
            if (done == 0) {
                done = dump(out, item, depth + 1);
            }
            if (done) {
                return done;
            }
        }
        return put(out, "}", 1);
    }
    return NOT_FINE;
}

PyObject *
skjar_json_dump(PyObject *self, PyObject *value)
{
    Out out = {NULL, 0, 0};
    const int done = dump(&out, value, 0);
    PyObject *result = NULL;
    if (done == 0) {
        result = PyBytes_FromStringAndSize(out.buf, out.len);
    }
    else if (done == NOT_FINE) {
        result = Py_NewRef(Py_None);
    }
    PyMem_Free(out.buf);
    return result;
}
