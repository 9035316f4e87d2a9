/* json(text[, unread]) -> object | None
 *
 * The header's JSON, parsed in one C pass from its UTF-8 bytes. The twin is
 * format/header.py's parse_header (the json module's decoder with a hook refusing
 * duplicate keys and NaN/Infinity); this accepts a subset of what it accepts and
 * builds the same values:
 *
 *   - RFC 8259 JSON: objects, arrays, strings (escapes included; a \u escape may
 *     name a lone surrogate, as in Python), numbers (an int when there is no
 *     fraction or exponent, else a float), true, false, null; whitespace is
 *     space, tab, CR and LF;
 *   - strict UTF-8 throughout, no control characters in strings, no repeated key
 *     in an object, nothing after the value but whitespace.
 *
 * Anything else - and anything unusual that the twin may still accept, such as
 * nesting deeper than MAX_DEPTH or an int longer than 18 digits - returns None, and
 * the caller runs the twin, which accepts it or says precisely what is wrong.
 *
 * With `unread`, a tuple of top-level keys, their values are checked but not built when
 * they are plain objects, and read as empty dicts (skjar_json_parse_unread, below).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_hot.h"
#include <float.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    const unsigned char *p;
    Py_ssize_t pos, end;
    int depth;
} Json;

/* A value, a new reference; NULL with no error set means "not fine" (the twin
 * decides), NULL with an error set is a real failure (out of memory). */
static PyObject *value(Json *j);

SKJAR_HOT static void
skip_space(Json *j)
{
    while (j->pos < j->end) {
        unsigned char c = j->p[j->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return;
        }
        j->pos++;
    }
}

static int
hex4(const unsigned char *q, Py_UCS4 *out)
{
    Py_UCS4 v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = q[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (Py_UCS4)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (Py_UCS4)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (Py_UCS4)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* Short ASCII strings already made, by a hash of their bytes: a header repeats its
 * keys and codec names ("none" once per section), and every header repeats the same
 * keys. Reusing them spares an allocation each (and, in a forked process, the page
 * faults of fresh allocations). Strings are immutable, so sharing one is invisible. */
#define SHORT_MAX 32
#define SHORT_SLOTS 256 /* the hash's top 8 bits */
static PyObject *short_strings[SHORT_SLOTS];

SKJAR_HOT static PyObject *
short_ascii(const unsigned char *q, Py_ssize_t n)
{
    /* The slot: a multiplicative hash of the length and the first and last bytes (two
     * loads, not a step per byte). Strings alike at both ends share a slot, and the
     * comparison below tells them apart. */
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        memcpy(&a, q, 8);
        memcpy(&b, q + n - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, q, 4);
        memcpy(&y, q + n - 4, 4);
        a = x;
        b = y;
    } else if (n > 0) {
        a = (uint64_t)q[0] | (uint64_t)q[n / 2] << 8 | (uint64_t)q[n - 1] << 16;
    }
    uint64_t h = (a * 0x9E3779B97F4A7C15ull) ^ (b * 0xC2B2AE3D27D4EB4Full) ^ (uint64_t)n;
    PyObject **slot = &short_strings[(h * 0x9E3779B97F4A7C15ull) >> 56];
    PyObject *s = *slot;
    if (s != NULL && PyUnicode_GET_LENGTH(s) == n && memcmp(PyUnicode_1BYTE_DATA(s), q, (size_t)n) == 0) {
        return Py_NewRef(s);
    }
    s = PyUnicode_New(n, 127);
    if (s == NULL) {
        return NULL;
    }
    memcpy(PyUnicode_1BYTE_DATA(s), q, (size_t)n);
    Py_XSETREF(*slot, Py_NewRef(s));
    return s;
}

/* A string; j->pos is just past its opening quote. */
SKJAR_HOT static PyObject *
string(Json *j)
{
    const Py_ssize_t start = j->pos, end = j->end;
    const unsigned char *text = j->p;
    Py_ssize_t at = start; /* a local, not j->pos: no store to memory per byte */
    int escaped = 0;
    unsigned char high = 0; /* any byte >= 0x80 */
    for (;;) {
        if (at >= end) {
            return NULL;
        }
        unsigned char c = text[at];
        if (c == '"') {
            break;
        }
        if (c < 0x20) {
            return NULL;
        }
        high |= c;
        if (c == '\\') {
            escaped = 1;
            at++; /* the escaped character is checked below */
        }
        at++;
    }
    Py_ssize_t stop = at;
    j->pos = at + 1;
    if (!escaped && !(high & 0x80) && stop - start <= SHORT_MAX) {
        return short_ascii(j->p + start, stop - start);
    }
    if (!escaped) {
        PyObject *s = PyUnicode_DecodeUTF8((const char *)j->p + start, stop - start, NULL);
        if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
        }
        return s;
    }
    /* With escapes: build it piece by piece (raw runs are decoded as UTF-8). */
    PyObject *parts = PyList_New(0);
    if (parts == NULL) {
        return NULL;
    }
    PyObject *out = NULL;
    Py_ssize_t i = start;
    while (i < stop) {
        Py_ssize_t run = i;
        while (run < stop && j->p[run] != '\\') {
            run++;
        }
        if (run > i) {
            PyObject *piece = PyUnicode_DecodeUTF8((const char *)j->p + i, run - i, NULL);
            if (piece == NULL || PyList_Append(parts, piece) < 0) {
                Py_XDECREF(piece);
                goto fail;
            }
            Py_DECREF(piece);
            i = run;
            continue;
        }
        /* j->p[i] == '\\' and i + 1 < stop (the scan above stepped over the pair) */
        unsigned char e = j->p[i + 1];
        Py_UCS4 ch;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u':
            if (i + 6 > stop || hex4(j->p + i + 2, &ch) < 0) {
                goto refuse;
            }
            /* A surrogate pair written as two escapes is one character, as in Python. */
            if (ch >= 0xd800 && ch <= 0xdbff && i + 12 <= stop && j->p[i + 6] == '\\' &&
                j->p[i + 7] == 'u') {
                Py_UCS4 low;
                if (hex4(j->p + i + 8, &low) == 0 && low >= 0xdc00 && low <= 0xdfff) {
                    ch = 0x10000 + (((ch - 0xd800) << 10) | (low - 0xdc00));
                    i += 6;
                }
            }
            i += 4;
            break;
        default:
            goto refuse;
        }
        i += 2;
        PyObject *piece = PyUnicode_FromOrdinal((int)ch);
        if (piece == NULL || PyList_Append(parts, piece) < 0) {
            Py_XDECREF(piece);
            goto fail;
        }
        Py_DECREF(piece);
    }
    {
        PyObject *empty = PyUnicode_FromStringAndSize(NULL, 0);
        if (empty != NULL) {
            out = PyUnicode_Join(empty, parts);
            Py_DECREF(empty);
        }
    }
    Py_DECREF(parts);
    return out;
refuse:
    Py_DECREF(parts);
    return NULL;
fail:
    Py_DECREF(parts);
    if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
    }
    return NULL;
}

/* The n bytes at p - a JSON number with a fraction or an exponent - as the double
 * nearest to it, when that is one exact operation: at most 19 digits in all, making an
 * integer m of at most 2**53, and a decimal exponent e with |e| <= 22. m and 10**|e| are
 * then exact doubles, and m * 10**e (or m / 10**-e) rounds once, correctly (Clinger's
 * fast path: what strtod answers too). 1 with *out set; 0 for anything else, which
 * PyOS_string_to_double reads. (Most of a header's floats - 0.0001, 1e-08, 0.9 - are
 * such; the general routine, with its x87 control-word switch, was a tenth of a parse.) */
SKJAR_HOT static int
exact_decimal(const unsigned char *p, Py_ssize_t n, double *out)
{
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    static const double POW10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                                     1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
                                     1e20, 1e21, 1e22};
    Py_ssize_t k = 0;
    int negative = p[0] == '-';
    k += negative;
    uint64_t m = 0;
    int digits = 0, exponent = 0;
    for (; k < n && p[k] >= '0' && p[k] <= '9'; k++, digits++) {
        m = m * 10 + (uint64_t)(p[k] - '0');
        if (digits >= 19) {
            return 0;
        }
    }
    if (k < n && p[k] == '.') {
        for (k++; k < n && p[k] >= '0' && p[k] <= '9'; k++, digits++, exponent--) {
            if (digits >= 19) {
                return 0;
            }
            m = m * 10 + (uint64_t)(p[k] - '0');
        }
    }
    if (k < n && (p[k] == 'e' || p[k] == 'E')) {
        k++;
        int sign = 1, e = 0;
        if (k < n && (p[k] == '+' || p[k] == '-')) {
            sign = p[k++] == '-' ? -1 : 1;
        }
        for (; k < n; k++) {
            if (e > 1000) {
                return 0; /* (the digits are all read by number(): only their value is big) */
            }
            e = e * 10 + (p[k] - '0');
        }
        exponent += sign * e;
    }
    if (m > ((uint64_t)1 << 53) || exponent < -22 || exponent > 22) {
        return 0;
    }
    double d = (double)m;
    d = exponent >= 0 ? d * POW10[exponent] : d / POW10[-exponent];
    *out = negative ? -d : d;
    return 1;
#else
    (void)p;
    (void)n;
    (void)out;
    return 0;
#endif
}

SKJAR_HOT static PyObject *
number(Json *j)
{
    Py_ssize_t start = j->pos;
    const unsigned char *p = j->p;
    Py_ssize_t i = start;
    if (i < j->end && p[i] == '-') {
        i++;
    }
    if (i >= j->end || p[i] < '0' || p[i] > '9') {
        return NULL;
    }
    if (p[i] == '0') {
        i++;
    } else {
        while (i < j->end && p[i] >= '0' && p[i] <= '9') i++;
    }
    int is_float = 0;
    if (i + 1 < j->end && p[i] == '.' && p[i + 1] >= '0' && p[i + 1] <= '9') {
        is_float = 1;
        i += 2;
        while (i < j->end && p[i] >= '0' && p[i] <= '9') i++;
    }
    if (i < j->end && (p[i] == 'e' || p[i] == 'E')) {
        Py_ssize_t k = i + 1;
        if (k < j->end && (p[k] == '+' || p[k] == '-')) k++;
        if (k < j->end && p[k] >= '0' && p[k] <= '9') {
            is_float = 1;
            while (k < j->end && p[k] >= '0' && p[k] <= '9') k++;
            i = k;
        }
    }
    Py_ssize_t n = i - start;
    if (n >= 64) {
        return NULL; /* long numbers: the twin */
    }
    j->pos = i;
    if (!is_float) {
        if (n > 18) {
            return NULL; /* beyond int64 maybe: the twin */
        }
        long long v = 0;
        for (Py_ssize_t k = p[start] == '-' ? start + 1 : start; k < i; k++) {
            v = v * 10 + (p[k] - '0');
        }
        return PyLong_FromLongLong(p[start] == '-' ? -v : v);
    }
    double d;
    if (exact_decimal(p + start, n, &d)) {
        return PyFloat_FromDouble(d);
    }
    char buf[64];
    memcpy(buf, p + start, (size_t)n);
    buf[n] = '\0';
    d = PyOS_string_to_double(buf, NULL, NULL);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    return PyFloat_FromDouble(d);
}

SKJAR_HOT static int
literal(Json *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->pos) < n || memcmp(j->p + j->pos, word, n) != 0) {
        return 0;
    }
    j->pos += (Py_ssize_t)n;
    return 1;
}

/* Skip white space, then take the next byte if it is `c`: 1 if taken, else 0. */
SKJAR_HOT static int
take_byte(Json *j, unsigned char c)
{
    skip_space(j);
    if (j->pos < j->end && j->p[j->pos] == c) {
        j->pos++;
        return 1;
    }
    return 0;
}

/* After a container's item: 1 at its closing `close`, 0 at a comma (either taken), -1
 * at anything else. */
SKJAR_HOT static int
next_item(Json *j, unsigned char close)
{
    skip_space(j);
    if (j->pos >= j->end) {
        return -1;
    }
    unsigned char c = j->p[j->pos++];
    return c == close ? 1 : c == ',' ? 0 : -1;
}

SKJAR_HOT static PyObject *
array(Json *j)
{
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    if (take_byte(j, ']')) {
        return list;
    }
    for (;;) {
        PyObject *item = value(j);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
        int next = next_item(j, ']');
        if (next == 1) {
            return list;
        }
        if (next < 0) {
            break;
        }
    }
    Py_DECREF(list);
    return NULL;
}

SKJAR_HOT static PyObject *
object(Json *j)
{
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    if (take_byte(j, '}')) {
        return dict;
    }
    for (;;) {
        if (!take_byte(j, '"')) {
            break;
        }
        PyObject *key = string(j);
        if (key == NULL) {
            break;
        }
        if (!take_byte(j, ':')) {
            Py_DECREF(key);
            break;
        }
        PyObject *item = value(j);
        if (item == NULL) {
            Py_DECREF(key);
            break;
        }
        Py_ssize_t before = PyDict_GET_SIZE(dict);
        int bad = PyDict_SetItem(dict, key, item) < 0 || PyDict_GET_SIZE(dict) == before;
        Py_DECREF(key);
        Py_DECREF(item);
        if (bad) {
            break; /* a repeated key: the twin names it */
        }
        int next = next_item(j, '}');
        if (next == 1) {
            return dict;
        }
        if (next < 0) {
            break;
        }
    }
    Py_DECREF(dict);
    return NULL;
}

SKJAR_HOT static PyObject *
value(Json *j)
{
    skip_space(j);
    if (j->pos >= j->end) {
        return NULL;
    }
    unsigned char c = j->p[j->pos];
    if (c == '"') {
        j->pos++;
        return string(j);
    }
    if (c == '{' || c == '[') {
        if (j->depth >= MAX_DEPTH) {
            return NULL;
        }
        j->pos++;
        j->depth++;
        PyObject *out = c == '{' ? object(j) : array(j);
        j->depth--;
        return out;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        return number(j);
    }
    if (literal(j, "true")) return Py_NewRef(Py_True);
    if (literal(j, "false")) return Py_NewRef(Py_False);
    if (literal(j, "null")) return Py_NewRef(Py_None);
    return NULL;
}

/* -- scanning a value without building it ------------------------------------------
 *
 * A load reads a header's names, versions and layout, not the object summary, the
 * producer or the user's metadata: building those made ~40% of a header's objects, each
 * in fresh memory in a forked process (iris-knn's header 111 -> 94 us cold, mlp's 157 ->
 * 115 us). scan_value checks such a value without building it. It is stricter than the
 * builder, never looser: it takes only plain ASCII strings (no escape, no control
 * character, no byte >= 0x80), refuses repeated keys by their bytes, and numbers and
 * nesting as `number` and `value` take them. Anything else answers 0, and the caller
 * parses the whole header with the builder, which decides as ever. */

/* A plain ASCII string's bytes (j->pos just past its opening quote): 1 with *at, *n. */
SKJAR_HOT static int
scan_string(Json *j, const unsigned char **at, Py_ssize_t *n)
{
    const Py_ssize_t start = j->pos;
    for (Py_ssize_t i = start; i < j->end; i++) {
        const unsigned char c = j->p[i];
        if (c == '"') {
            *at = j->p + start;
            *n = i - start;
            j->pos = i + 1;
            return 1;
        }
        if (c < 0x20 || c >= 0x80 || c == '\\') {
            return 0;
        }
    }
    return 0;
}

SKJAR_HOT static int
scan_number(Json *j)
{
    PyObject *out = number(j); /* (a number is one small object: not worth a twin) */
    Py_XDECREF(out);
    return out != NULL;
}

static int scan_value(Json *j);

/* An object with more keys is left to the builder. (The keys' places are on the C stack:
 * 768 bytes a level, 48 KiB at MAX_DEPTH.) */
#define SCAN_KEYS 64

SKJAR_HOT static int
scan_object(Json *j)
{
    const unsigned char *keys[SCAN_KEYS];
    uint32_t lengths[SCAN_KEYS];
    int count = 0;
    if (take_byte(j, '}')) {
        return 1;
    }
    for (;;) {
        const unsigned char *key;
        Py_ssize_t n;
        if (count == SCAN_KEYS || !take_byte(j, '"') || !scan_string(j, &key, &n) ||
            n > (Py_ssize_t)UINT32_MAX) {
            return 0;
        }
        for (int k = 0; k < count; k++) {
            if (lengths[k] == (uint32_t)n && memcmp(keys[k], key, (size_t)n) == 0) {
                return 0; /* a repeated key */
            }
        }
        keys[count] = key;
        lengths[count++] = (uint32_t)n;
        if (!take_byte(j, ':') || !scan_value(j)) {
            return 0;
        }
        const int next = next_item(j, '}');
        if (next != 0) {
            return next == 1;
        }
    }
}

SKJAR_HOT static int
scan_array(Json *j)
{
    if (take_byte(j, ']')) {
        return 1;
    }
    for (;;) {
        if (!scan_value(j)) {
            return 0;
        }
        const int next = next_item(j, ']');
        if (next != 0) {
            return next == 1;
        }
    }
}

SKJAR_HOT static int
scan_value(Json *j)
{
    skip_space(j);
    if (j->pos >= j->end) {
        return 0;
    }
    const unsigned char c = j->p[j->pos];
    if (c == '"') {
        const unsigned char *at;
        Py_ssize_t n;
        j->pos++;
        return scan_string(j, &at, &n);
    }
    if (c == '{' || c == '[') {
        if (j->depth >= MAX_DEPTH) {
            return 0;
        }
        j->pos++;
        j->depth++;
        const int ok = c == '{' ? scan_object(j) : scan_array(j);
        j->depth--;
        return ok;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        return scan_number(j);
    }
    return literal(j, "true") || literal(j, "false") || literal(j, "null");
}

/* The header's JSON (the n bytes at p) as skjar_json_parse builds it, except that the
 * top-level entries named in `unread` whose values are objects are scanned, not built:
 * each is an empty dict. NULL with no error set when not fine: the caller then builds
 * it all with skjar_json_parse, which decides. */
SKJAR_HOT PyObject *
skjar_json_parse_unread(const unsigned char *p, Py_ssize_t n, PyObject *const *unread,
                        int n_unread)
{
    Json j = {p, 0, n, 0};
    if (!take_byte(&j, '{')) {
        return NULL;
    }
    PyObject *dict = PyDict_New();
    if (dict == NULL || take_byte(&j, '}')) {
        goto end;
    }
    j.depth = 1;
    for (;;) {
        PyObject *key = take_byte(&j, '"') ? string(&j) : NULL;
        if (key == NULL || !take_byte(&j, ':')) {
            Py_XDECREF(key);
            goto refuse;
        }
        int scan = 0;
        for (int k = 0; k < n_unread && !scan; k++) {
            scan = PyUnicode_GET_LENGTH(key) == PyUnicode_GET_LENGTH(unread[k]) &&
                   PyUnicode_Compare(key, unread[k]) == 0;
        }
        skip_space(&j);
        PyObject *item = NULL;
        if (scan && j.pos < j.end && j.p[j.pos] == '{') {
            item = scan_value(&j) ? PyDict_New() : NULL;
        } else {
            item = value(&j);
        }
        Py_ssize_t before = PyDict_GET_SIZE(dict);
        int bad = item == NULL || PyDict_SetItem(dict, key, item) < 0 ||
                  PyDict_GET_SIZE(dict) == before;
        Py_DECREF(key);
        Py_XDECREF(item);
        if (bad) {
            goto refuse;
        }
        int next = next_item(&j, '}');
        if (next == 1) {
            break;
        }
        if (next < 0) {
            goto refuse;
        }
    }
end:
    skip_space(&j);
    if (dict != NULL && j.pos == j.end) {
        return dict;
    }
refuse:
    Py_XDECREF(dict);
    return NULL;
}

/* The value of the n bytes at p; NULL with no error set when not fine (the reader
 * front, _front.c, calls this too). */
SKJAR_HOT PyObject *
skjar_json_parse(const unsigned char *p, Py_ssize_t n)
{
    Json j = {p, 0, n, 0};
    PyObject *out = value(&j);
    if (out != NULL) {
        skip_space(&j);
        if (j.pos != j.end) {
            Py_CLEAR(out);
        }
    }
    return out;
}

PyObject *
skjar_json(PyObject *self, PyObject *args)
{
    Py_buffer text;
    PyObject *unread = NULL;
    if (!PyArg_ParseTuple(args, "y*|O!:json", &text, &PyTuple_Type, &unread)) {
        return NULL;
    }
    const Py_ssize_t n_unread = unread == NULL ? 0 : PyTuple_GET_SIZE(unread);
    int bad = n_unread > 8;
    for (Py_ssize_t k = 0; k < n_unread && !bad; k++) {
        bad = !PyUnicode_Check(PyTuple_GET_ITEM(unread, k));
    }
    if (bad) {
        PyBuffer_Release(&text);
        PyErr_SetString(PyExc_TypeError, "json: unread must be a tuple of at most 8 str");
        return NULL;
    }
    PyObject *out = unread == NULL
                        ? skjar_json_parse(text.buf, text.len)
                        : skjar_json_parse_unread(text.buf, text.len,
                                                  &PyTuple_GET_ITEM(unread, 0), (int)n_unread);
    PyBuffer_Release(&text);
    if (out == NULL && !PyErr_Occurred()) {
        Py_RETURN_NONE;
    }
    return out;
}
