/* Compiled twins of a few hot loops in skjar's loader.
 *
 * Every function here has a pure-Python twin that stays the reference: these
 * only say "fine" (or return the built object) or "not fine", and on "not
 * fine" the caller runs the Python twin, which raises the precise error. So a
 * damaged file gets the same message with or without this module, and
 * tests/test_speedups.py runs both twins on the same random inputs.
 *
 * Nothing here trusts its arguments: buffer lengths, field offsets and counts
 * are checked before a byte is read, and reads of record fields go through
 * memcpy (records need not be aligned).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include "_hot.h"
#include <limits.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; an older kernel answers EINVAL */
#endif
#endif

SKJAR_HOT static int64_t
read_i64(const char *p)
{
    int64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* An integer of 1, 2, 4 or 8 bytes, native order; a uint64 past INT64_MAX turns negative. */
SKJAR_HOT static inline int64_t
read_int(const char *q, Py_ssize_t itemsize, int is_signed)
{
    if (itemsize == 8) {
        return read_i64(q);
    }
    if (itemsize == 4) {
        if (is_signed) { int32_t x; memcpy(&x, q, 4); return x; }
        uint32_t x; memcpy(&x, q, 4); return x;
    }
    if (itemsize == 2) {
        if (is_signed) { int16_t x; memcpy(&x, q, 2); return x; }
        uint16_t x; memcpy(&x, q, 2); return x;
    }
    return is_signed ? (int64_t)(int8_t)*q : (int64_t)(uint8_t)*q;
}

SKJAR_HOT static int
valid_width(Py_ssize_t itemsize)
{
    return itemsize == 1 || itemsize == 2 || itemsize == 4 || itemsize == 8;
}

SKJAR_HOT static int
field_fits(Py_ssize_t offset, Py_ssize_t size, Py_ssize_t itemsize)
{
    return offset >= 0 && itemsize >= size && offset <= itemsize - size;
}

/* The node loop of tree_ok: 1 fine, 0 not fine, -1 no memory (nothing set). */
SKJAR_HOT static int
tree_nodes_ok(const char *base, Py_ssize_t n, Py_ssize_t itemsize, Py_ssize_t off_left,
              Py_ssize_t off_right, Py_ssize_t off_feature, Py_ssize_t n_features,
              Py_ssize_t max_depth)
{
    if (n > INT32_MAX || max_depth >= n) {
        return 0; /* the Python twin decides (a max_depth of n or more: see _max_depth_reachable) */
    }
    /* depth[i] > 0 exactly when node i already has a parent (a child is at least 1 deep). */
    int32_t *depth = PyMem_RawCalloc(n ? (size_t)n : 1, sizeof(int32_t));
    if (depth == NULL) {
        return -1;
    }
    int ok = 1;
    int32_t deepest = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *rec = base + i * itemsize;
        const int64_t lc = read_i64(rec + off_left);
        const int64_t rc = read_i64(rec + off_right);
        if (lc == -1 || rc == -1) {
            if (lc != rc) {
                ok = 0;
                break;
            }
            continue;
        }
        if (!(i < lc && lc < n && i < rc && rc < n)) {
            ok = 0;
            break;
        }
        const int64_t f = read_i64(rec + off_feature);
        if (f < 0 || f >= n_features || depth[lc] || depth[rc] || lc == rc) {
            ok = 0;
            break;
        }
        const int32_t d = depth[i] + 1;
        depth[lc] = depth[rc] = d;
        if (d > deepest) {
            deepest = d;
        }
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(depth);
    return ok && deepest <= max_depth;
}

/* tree_ok(nodes, itemsize, left, right, feature, n_features, max_depth) -> bool
 *
 * `nodes` is the bytes of a contiguous record array of `itemsize`-byte records
 * whose int64 fields left child / right child / feature sit at the given byte
 * offsets (sklearn's NODE_DTYPE). True when, in one forward pass: every node
 * has two children or none (-1, -1); a split's children lie in (i, n), so
 * depths are final when reached and there are no cycles; no node has two
 * parents; split features lie in [0, n_features); and no node is deeper than
 * max_depth, itself below n. The twin is sklearn._small_tree_ok.
 */
static PyObject *
tree_ok(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t itemsize, off_left, off_right, off_feature, n_features, max_depth;
    if (!PyArg_ParseTuple(args, "y*nnnnnn", &buf, &itemsize, &off_left, &off_right,
                          &off_feature, &n_features, &max_depth)) {
        return NULL;
    }
    if (itemsize <= 0 || buf.len % itemsize != 0 || !field_fits(off_left, 8, itemsize) ||
        !field_fits(off_right, 8, itemsize) || !field_fits(off_feature, 8, itemsize)) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "tree_ok: the buffer does not hold whole records "
                                          "with the given fields");
        return NULL;
    }
    int ok = tree_nodes_ok(buf.buf, buf.len / itemsize, itemsize, off_left, off_right,
                           off_feature, n_features, max_depth);
    PyBuffer_Release(&buf);
    return ok < 0 ? PyErr_NoMemory() : PyBool_FromLong(ok);
}

SKJAR_HOT static uint64_t
read_unsigned(const char *p, int size)
{
    if (size == 1) {
        return (uint8_t)*p;
    }
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The node loop of predictor_ok. */
SKJAR_HOT static int
predictor_nodes_ok(const char *base, Py_ssize_t n, Py_ssize_t itemsize, Py_ssize_t off_left,
                   Py_ssize_t off_right, Py_ssize_t off_feature, Py_ssize_t off_leaf,
                   Py_ssize_t off_cat, Py_ssize_t off_bitset, Py_ssize_t n_bitsets,
                   Py_ssize_t n_features, const unsigned char *cat_mask, Py_ssize_t n_cats)
{
    int ok = 1;
    for (Py_ssize_t i = 0; i < n && ok; i++) {
        const char *rec = base + i * itemsize;
        if (read_unsigned(rec + off_leaf, 1)) {
            continue;
        }
        const int64_t f = read_i64(rec + off_feature);
        const int categorical = read_unsigned(rec + off_cat, 1) != 0;
        if (n_features >= 0) { /* the estimator's check: features only */
            ok = f >= 0 && f < n_features && !(categorical && (n_cats == 0 || !cat_mask[f]));
            continue;
        }
        const uint64_t lc = read_unsigned(rec + off_left, 4);
        const uint64_t rc = read_unsigned(rec + off_right, 4);
        ok = (uint64_t)i < lc && lc < (uint64_t)n && (uint64_t)i < rc && rc < (uint64_t)n &&
             f >= 0 &&
             !(categorical && read_unsigned(rec + off_bitset, 4) >= (uint64_t)n_bitsets);
    }
    return ok;
}

/* PREDICTOR_RECORD_DTYPE's fields at these offsets fit an `itemsize`-byte record: left,
 * right and bitset_idx uint32, feature_idx int64, is_leaf and is_categorical uint8. */
SKJAR_HOT static int
predictor_fields_fit(Py_ssize_t itemsize, Py_ssize_t off_left, Py_ssize_t off_right,
                     Py_ssize_t off_feature, Py_ssize_t off_leaf, Py_ssize_t off_cat,
                     Py_ssize_t off_bitset)
{
    return itemsize > 0 && field_fits(off_left, 4, itemsize) &&
           field_fits(off_right, 4, itemsize) && field_fits(off_feature, 8, itemsize) &&
           field_fits(off_leaf, 1, itemsize) && field_fits(off_cat, 1, itemsize) &&
           field_fits(off_bitset, 4, itemsize);
}

/* predictor_ok(nodes, itemsize, left, right, feature, is_leaf, is_categorical,
 *              bitset_idx, n_bitsets, n_features, categorical_features) -> bool
 *
 * HistGradientBoosting's PREDICTOR_RECORD_DTYPE: left/right/bitset_idx uint32,
 * feature_idx int64, is_leaf/is_categorical uint8, at the given byte offsets.
 * With n_features < 0 (the predictor's check): true when every split's children lie
 * in (i, n), its feature is >= 0, and a categorical split's bitset_idx is below
 * n_bitsets. With n_features >= 0 (the estimator's check): true when every split's
 * feature lies in [0, n_features), and a categorical split is only on a feature
 * whose byte in categorical_features (n_features bytes, or empty for "none is") is
 * non-zero. Twins: sklearn._small_predictor_ok and check_hist_gradient_boosting.
 */
static PyObject *
predictor_ok(PyObject *self, PyObject *args)
{
    Py_buffer buf, cats;
    Py_ssize_t itemsize, off_left, off_right, off_feature, off_leaf, off_cat, off_bitset;
    Py_ssize_t n_bitsets, n_features;
    if (!PyArg_ParseTuple(args, "y*nnnnnnnnny*", &buf, &itemsize, &off_left, &off_right,
                          &off_feature, &off_leaf, &off_cat, &off_bitset, &n_bitsets,
                          &n_features, &cats)) {
        return NULL;
    }
    if (!predictor_fields_fit(itemsize, off_left, off_right, off_feature, off_leaf, off_cat,
                              off_bitset) ||
        buf.len % itemsize != 0 || (cats.len != 0 && cats.len != n_features)) {
        PyBuffer_Release(&buf);
        PyBuffer_Release(&cats);
        PyErr_SetString(PyExc_ValueError, "predictor_ok: the buffers do not hold whole records "
                                          "with the given fields");
        return NULL;
    }
    int ok = predictor_nodes_ok(buf.buf, buf.len / itemsize, itemsize, off_left, off_right,
                                off_feature, off_leaf, off_cat, off_bitset, n_bitsets,
                                n_features, cats.buf, cats.len);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&cats);
    return PyBool_FromLong(ok);
}

/* -- whole-state checks: a Tree's or a TreePredictor's state in one call ------------ */

/* An exact int >= low, in *out; 0 for anything else (the twin also takes numpy integers). */
SKJAR_HOT static int
exact_int(PyObject *value, long long low, long long *out)
{
    if (value == NULL || !PyLong_CheckExact(value)) {
        return 0;
    }
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return !overflow && *out >= low;
}

/* The state keys and attribute names the meaning checks read, made (interned) when the
 * module is imported (skjar_state_keys_init). Made at first use instead, each was a str
 * built and looked up in the interpreter's table of interned strings - cold memory - in
 * every forked process that had not run the check before: a few percent of a tiny
 * model's first load. */
enum {
    SK_DUAL_COEF_,
    SK_FIT_X,
    SK_INTERCEPT_,
    SK_N_SUPPORT,
    SK_PROBA,
    SK_PROBB,
    SK_BINNED_LEFT_CAT_BITSETS,
    SK_CLASSES_,
    SK_EFFECTIVE_METRIC_,
    SK_EFFECTIVE_METRIC_PARAMS_,
    SK_KERNEL,
    SK_MAX_DEPTH,
    SK_METRIC,
    SK_METRIC_PARAMS,
    SK_N_FEATURES_IN_,
    SK_N_SAMPLES_FIT_,
    SK_NODE_COUNT,
    SK_NODES,
    SK_RAW_LEFT_CAT_BITSETS,
    SK_SHAPE_FIT_,
    SK_SUPPORT_,
    SK_SUPPORT_VECTORS_,
    SK_VALUES,
    SK_ITEMSIZE, /* a dtype's attribute (descr_itemsize) */
    SK_NAME,     /* a type's __name__ (metric_fits) */
    SK_COUNT
};
static const char *STATE_KEY_TEXT[SK_COUNT] = {
    "_dual_coef_",
    "_fit_X",
    "_intercept_",
    "_n_support",
    "_probA",
    "_probB",
    "binned_left_cat_bitsets",
    "classes_",
    "effective_metric_",
    "effective_metric_params_",
    "kernel",
    "max_depth",
    "metric",
    "metric_params",
    "n_features_in_",
    "n_samples_fit_",
    "node_count",
    "nodes",
    "raw_left_cat_bitsets",
    "shape_fit_",
    "support_",
    "support_vectors_",
    "values",
    "itemsize",
    "__name__",
};
static PyObject *STATE_KEYS[SK_COUNT];

static int
skjar_state_keys_init(void)
{
    for (int i = 0; i < SK_COUNT; i++) {
        if (STATE_KEYS[i] == NULL &&
            (STATE_KEYS[i] = PyUnicode_InternFromString(STATE_KEY_TEXT[i])) == NULL) {
            return -1;
        }
    }
    return 0;
}

/* state[STATE_KEYS[k]], borrowed, or NULL (nothing set). */
SKJAR_HOT static PyObject *
state_item(PyObject *state, int k)
{
    PyObject *value = PyDict_GetItemWithError(state, STATE_KEYS[k]);
    if (value == NULL) {
        PyErr_Clear();
    }
    return value;
}

/* numpy's array and dtype objects as its C API lays them out (numpy/ndarraytypes.h:
 * PyArrayObject_fields, and the first fields of PyArray_Descr), which numpy keeps for
 * compiled extensions: the same from numpy 1.7 through 2.x. */
typedef struct {
    PyObject_HEAD
    char *data;
    int nd;
    Py_ssize_t *dimensions; /* npy_intp: pointer-sized, as Py_ssize_t */
    Py_ssize_t *strides;
    PyObject *base;
    PyObject *descr;
    int flags;
} ArrayFields;

typedef struct {
    PyObject_HEAD
    PyTypeObject *typeobj;
    char kind, type, byteorder;
} DescrFields;

#define ARRAY_C_CONTIGUOUS 0x0001 /* NPY_ARRAY_C_CONTIGUOUS */

/* The buffer format numpy exports for a dtype of kind i, u or f in native byte order -
 * its type character - in *format, and that type's size; 0 for any other dtype. */
SKJAR_HOT static Py_ssize_t
simple_type(PyObject *descr, const char **format)
{
    const DescrFields *d = (const DescrFields *)descr;
    if ((d->kind != 'i' && d->kind != 'u' && d->kind != 'f') ||
        (d->byteorder != '=' && d->byteorder != '|')) {
        return 0;
    }
    static const struct {
        const char *format;
        Py_ssize_t size;
    } types[] = {{"b", 1}, {"B", 1}, {"h", sizeof(short)}, {"H", sizeof(short)},
                 {"i", sizeof(int)}, {"I", sizeof(int)}, {"l", sizeof(long)},
                 {"L", sizeof(long)}, {"q", sizeof(long long)}, {"Q", sizeof(long long)},
                 {"e", 2}, {"f", sizeof(float)}, {"d", sizeof(double)},
                 {"g", sizeof(long double)}};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        if (types[k].format[0] == d->type) {
            *format = types[k].format;
            return types[k].size;
        }
    }
    return 0;
}

/* A dtype's itemsize, read as Python reads it (where numpy's C struct keeps it differs
 * between numpy 1 and 2); 0 on any failure. */
SKJAR_HOT static Py_ssize_t
descr_itemsize(PyObject *descr)
{
    PyObject *value = PyObject_GetAttr(descr, STATE_KEYS[SK_ITEMSIZE]);
    Py_ssize_t n = value != NULL && PyLong_CheckExact(value) ? PyLong_AsSsize_t(value) : 0;
    Py_XDECREF(value);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        n = 0;
    }
    return n > 0 ? n : 0;
}

/* A view's `internal` when array_view filled it from the array's fields (view_release
 * then only drops its reference), not through the buffer protocol. */
static char FIELDS_VIEW;

/* `obj`'s buffer, if `obj` is an instance of `ndarray` (the twin's isinstance) that gives
 * one with these flags (PyBUF_RECORDS_RO, PyBUF_C_CONTIGUOUS, or with PyBUF_FORMAT): 1,
 * else 0 with nothing set (the twin then looks). Release it with view_release.
 *
 * An array of a plain integer or float dtype in native order - or, with `record`, of the
 * record dtype its caller has already matched - is described from its own fields, as its
 * export would describe it. numpy's export builds, compares and caches a description per
 * array (a malloc, and a format string each time), which was about half of the time a
 * 100-predictor HistGradientBoosting's checks took in a fresh process. Anything else is
 * exported. */
SKJAR_HOT static int
array_view_of(PyObject *obj, PyObject *ndarray, Py_buffer *view, int flags, int record)
{
    if (obj == NULL || !PyObject_TypeCheck(obj, (PyTypeObject *)ndarray)) {
        return 0;
    }
    const ArrayFields *a = (const ArrayFields *)obj;
    const char *format = NULL;
    Py_ssize_t itemsize = simple_type(a->descr, &format);
    if (itemsize == 0 && record && ((const DescrFields *)a->descr)->kind == 'V') {
        itemsize = descr_itemsize(a->descr); /* (format stays NULL: no PyBUF_FORMAT) */
    }
    const int c_order = (flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS;
    if (itemsize > 0 && a->nd >= 0 && a->nd <= PyBUF_MAX_NDIM &&
        (flags & ~(PyBUF_C_CONTIGUOUS | PyBUF_RECORDS_RO)) == 0 &&
        (flags & PyBUF_STRIDES) == PyBUF_STRIDES &&
        (!c_order || (a->flags & ARRAY_C_CONTIGUOUS))) {
        Py_ssize_t len = itemsize;
        for (int k = 0; k < a->nd; k++) {
            len *= a->dimensions[k];
        }
        *view = (Py_buffer){0};
        view->buf = a->data;
        view->obj = Py_NewRef(obj); /* also keeps shape and strides, the array's own */
        view->len = len;
        view->itemsize = itemsize;
        view->readonly = 1;
        view->ndim = a->nd;
        view->format = (char *)format;
        view->shape = a->dimensions;
        view->strides = a->strides;
        view->internal = &FIELDS_VIEW;
        return 1;
    }
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

SKJAR_HOT static int
array_view(PyObject *obj, PyObject *ndarray, Py_buffer *view, int flags)
{
    return array_view_of(obj, ndarray, view, flags, 0);
}

SKJAR_HOT static void
view_release(Py_buffer *view)
{
    if (view->internal == &FIELDS_VIEW) {
        Py_CLEAR(view->obj);
    } else {
        PyBuffer_Release(view);
    }
}

/* The numpy kind of a scalar buffer format in native byte order: 'i', 'u', 'f', or 0. */
SKJAR_HOT static char
format_kind(const char *format)
{
    if (format == NULL) {
        return 0;
    }
    if (format[0] == '@' || format[0] == '=') {
        format++;
    }
    if (format[0] == '\0' || format[1] != '\0') {
        return 0;
    }
    if (strchr("bhilqn", format[0]) != NULL) {
        return 'i';
    }
    if (strchr("BHILQN", format[0]) != NULL) {
        return 'u';
    }
    return strchr("efdg", format[0]) != NULL ? 'f' : 0;
}

/* Whether arr.dtype == expected, for an ndarray `arr` (whose dtype is its descr). A record
 * dtype compares field by field (~0.6 us); a decoded array's dtype is one of a few cached
 * objects, so pairs found equal are kept. */
#define KNOWN_SAME 4
static PyObject *known_same[KNOWN_SAME][2]; /* (expected, dtype), strong references */
static int known_next;

SKJAR_HOT static int
dtype_matches(PyObject *arr, PyObject *expected)
{
    PyObject *dtype = Py_NewRef(((const ArrayFields *)arr)->descr);
    int same = dtype == expected;
    for (int k = 0; k < KNOWN_SAME && !same; k++) {
        same = known_same[k][0] == expected && known_same[k][1] == dtype;
    }
    if (!same) {
        same = PyObject_RichCompareBool(dtype, expected, Py_EQ);
        if (same < 0) {
            PyErr_Clear();
            same = 0;
        }
        if (same) { /* dtypes are immutable: equal once, equal for good */
            Py_XSETREF(known_same[known_next][0], Py_NewRef(expected));
            Py_XSETREF(known_same[known_next][1], Py_NewRef(dtype));
            known_next = (known_next + 1) % KNOWN_SAME;
        }
    }
    Py_DECREF(dtype);
    return same;
}

/* A 1-d C-contiguous array of `expected`'s dtype with `itemsize`-byte records: 1 and its
 * buffer in *view (release it), else 0. */
SKJAR_HOT static int
records_view(PyObject *obj, PyObject *ndarray, PyObject *expected, Py_ssize_t itemsize,
             Py_buffer *view)
{
    if (obj == NULL || !PyObject_TypeCheck(obj, (PyTypeObject *)ndarray) ||
        !dtype_matches(obj, expected) || !array_view_of(obj, ndarray, view, PyBUF_C_CONTIGUOUS, 1)) {
        return 0;
    }
    if (view->ndim != 1 || view->itemsize != itemsize || view->len != view->shape[0] * itemsize) {
        view_release(view);
        return 0;
    }
    return 1;
}

/* tree_state_ok(args, state, ndarray, node_dtype, itemsize, left, right, feature) -> bool
 *
 * Every check of sklearn.check_tree on a Tree's reduce arguments (n_features,
 * n_classes, n_outputs) and state, in one call: ints where ints belong, n_classes a 1-d
 * integer array of n_outputs counts >= 1, values a float array of (node_count,
 * n_outputs, max n_classes), nodes a 1-d C-contiguous array of node_dtype with
 * node_count records that pass tree_ok. True only where check_tree passes; False for
 * anything else, unusual or wrong (a numpy integer for an int, a non-native byte
 * order), and check_tree's Python then decides and names the fault. A 100-tree
 * gradient boosting spent ~0.7 ms of a 5.3 ms first load in these checks' Python.
 */
SKJAR_HOT static PyObject *
tree_state_ok(PyObject *self, PyObject *args)
{
    PyObject *targs, *state, *ndarray, *expected;
    Py_ssize_t itemsize, off_left, off_right, off_feature;
    if (!PyArg_ParseTuple(args, "OOO!Onnnn", &targs, &state, &PyType_Type, &ndarray, &expected,
                          &itemsize, &off_left, &off_right, &off_feature)) {
        return NULL;
    }
    if (itemsize <= 0 || !field_fits(off_left, 8, itemsize) ||
        !field_fits(off_right, 8, itemsize) || !field_fits(off_feature, 8, itemsize)) {
        PyErr_SetString(PyExc_ValueError, "tree_state_ok: the fields do not fit the record");
        return NULL;
    }
    long long n_features, n_outputs, count, max_depth;
    if (!PyList_CheckExact(targs) || PyList_GET_SIZE(targs) != 3 || !PyDict_CheckExact(state) ||
        !exact_int(PyList_GET_ITEM(targs, 0), 1, &n_features) ||
        !exact_int(PyList_GET_ITEM(targs, 2), 1, &n_outputs) ||
        !exact_int(state_item(state, SK_NODE_COUNT), 1, &count) ||
        !exact_int(state_item(state, SK_MAX_DEPTH), 0, &max_depth)) {
        Py_RETURN_FALSE;
    }
    Py_buffer view;
    if (!array_view(PyList_GET_ITEM(targs, 1), ndarray, &view, PyBUF_RECORDS_RO)) {
        Py_RETURN_FALSE;
    }
    const char kind = format_kind(view.format);
    int ok = view.ndim == 1 && (kind == 'i' || kind == 'u') && valid_width(view.itemsize) &&
             view.shape[0] == n_outputs;
    int64_t max_classes = 0;
    for (Py_ssize_t i = 0; ok && i < view.shape[0]; i++) {
        const int64_t c = read_int((const char *)view.buf + i * view.strides[0], view.itemsize,
                                   kind == 'i');
        ok = c >= 1; /* (a uint64 past INT64_MAX reads negative: not fine) */
        max_classes = c > max_classes ? c : max_classes;
    }
    view_release(&view);
    if (!ok || !array_view(state_item(state, SK_VALUES), ndarray, &view, PyBUF_RECORDS_RO)) {
        Py_RETURN_FALSE;
    }
    ok = view.ndim == 3 && format_kind(view.format) == 'f' && view.shape[0] == count &&
         view.shape[1] == n_outputs && view.shape[2] == max_classes;
    view_release(&view);
    if (!ok || !records_view(state_item(state, SK_NODES), ndarray, expected, itemsize, &view)) {
        Py_RETURN_FALSE;
    }
    ok = view.shape[0] != count
             ? 0
             : tree_nodes_ok(view.buf, view.shape[0], itemsize, off_left, off_right, off_feature,
                             (Py_ssize_t)n_features, (Py_ssize_t)max_depth); /* -1: no memory */
    view_release(&view);
    return ok < 0 ? PyErr_NoMemory() : PyBool_FromLong(ok);
}

/* predictor_state_ok(state, ndarray, record_dtype, itemsize, left, right, feature, is_leaf,
 *                    is_categorical, bitset_idx) -> bool
 *
 * Every check of sklearn.check_predictor on a TreePredictor's state: nodes a non-empty
 * 1-d C-contiguous array of record_dtype passing predictor_ok, the two category bitset
 * arrays unsigned, 2-d, of one shape, 8 words wide. True only where check_predictor
 * passes; False sends the caller to its Python, as for tree_state_ok.
 */
SKJAR_HOT static PyObject *
predictor_state_ok(PyObject *self, PyObject *args)
{
    PyObject *state, *ndarray, *expected;
    Py_ssize_t itemsize, off_left, off_right, off_feature, off_leaf, off_cat, off_bitset;
    if (!PyArg_ParseTuple(args, "OO!Onnnnnnn", &state, &PyType_Type, &ndarray, &expected,
                          &itemsize, &off_left, &off_right, &off_feature, &off_leaf, &off_cat,
                          &off_bitset)) {
        return NULL;
    }
    if (!predictor_fields_fit(itemsize, off_left, off_right, off_feature, off_leaf, off_cat,
                              off_bitset)) {
        PyErr_SetString(PyExc_ValueError, "predictor_state_ok: the fields do not fit the record");
        return NULL;
    }
    if (!PyDict_CheckExact(state)) {
        Py_RETURN_FALSE;
    }
    Py_ssize_t shape[2] = {0, 0};
    Py_buffer view;
    const int names[2] = {SK_RAW_LEFT_CAT_BITSETS, SK_BINNED_LEFT_CAT_BITSETS};
    for (int k = 0; k < 2; k++) {
        if (!array_view(state_item(state, names[k]), ndarray, &view, PyBUF_RECORDS_RO)) {
            Py_RETURN_FALSE;
        }
        int ok = view.ndim == 2 && format_kind(view.format) == 'u' && view.shape[1] == 8 &&
                 (k == 0 || (view.shape[0] == shape[0] && view.shape[1] == shape[1]));
        if (ok) { /* (a shape of another length is not read past its end) */
            shape[0] = view.shape[0];
            shape[1] = view.shape[1];
        }
        view_release(&view);
        if (!ok) {
            Py_RETURN_FALSE;
        }
    }
    if (!records_view(state_item(state, SK_NODES), ndarray, expected, itemsize, &view)) {
        Py_RETURN_FALSE;
    }
    int ok = view.shape[0] > 0 &&
             predictor_nodes_ok(view.buf, view.shape[0], itemsize, off_left, off_right,
                                off_feature, off_leaf, off_cat, off_bitset, shape[0], -1, NULL, 0);
    view_release(&view);
    return PyBool_FromLong(ok);
}

/* predictors_ok(arrays, ndarray, record_dtype, itemsize, left, right, feature, is_leaf,
 *               is_categorical, bitset_idx, n_features, categorical_features) -> bool | None
 *
 * check_hist_gradient_boosting's feature checks on all its predictors' node arrays in one
 * call: predictor_ok's estimator check (n_features >= 0) on each. None where it does not
 * apply - `arrays` not a list, or one not a 1-d C-contiguous array of record_dtype - and
 * the caller then runs its numpy twin. A 100-tree model made 100 calls, each exporting a
 * buffer, where this makes one.
 */
SKJAR_HOT static PyObject *
predictors_ok(PyObject *self, PyObject *args)
{
    PyObject *arrays, *ndarray, *expected;
    Py_ssize_t itemsize, off_left, off_right, off_feature, off_leaf, off_cat, off_bitset;
    Py_ssize_t n_features;
    Py_buffer cats;
    if (!PyArg_ParseTuple(args, "OO!Onnnnnnnny*", &arrays, &PyType_Type, &ndarray, &expected,
                          &itemsize, &off_left, &off_right, &off_feature, &off_leaf, &off_cat,
                          &off_bitset, &n_features, &cats)) {
        return NULL;
    }
    if (!predictor_fields_fit(itemsize, off_left, off_right, off_feature, off_leaf, off_cat,
                              off_bitset) ||
        n_features < 0 || (cats.len != 0 && cats.len != n_features)) {
        PyBuffer_Release(&cats);
        PyErr_SetString(PyExc_ValueError, "predictors_ok: the fields do not fit the record, "
                                          "or the categorical features not n_features");
        return NULL;
    }
    if (!PyList_CheckExact(arrays)) {
        PyBuffer_Release(&cats);
        Py_RETURN_NONE;
    }
    int ok = 1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(arrays); i++) {
        Py_buffer view;
        if (!records_view(PyList_GET_ITEM(arrays, i), ndarray, expected, itemsize, &view)) {
            PyBuffer_Release(&cats);
            Py_RETURN_NONE; /* (checked again by the caller's twin: all or none) */
        }
        ok = ok && predictor_nodes_ok(view.buf, view.shape[0], itemsize, off_left, off_right,
                                      off_feature, off_leaf, off_cat, off_bitset,
                                      PY_SSIZE_T_MAX, n_features, cats.buf, cats.len);
        view_release(&view);
    }
    PyBuffer_Release(&cats);
    return PyBool_FromLong(ok);
}

/* The whole pages inside [from, to): [*a, *b), empty (*a >= *b) if there are none. */
SKJAR_HOT static inline void
whole_pages(const void *from, const void *to, uintptr_t *a, uintptr_t *b)
{
    const long size = sysconf(_SC_PAGESIZE);
    const uintptr_t mask = size > 0 ? (uintptr_t)size - 1 : 0;
    *a = ((uintptr_t)from + mask) & ~mask;
    *b = size > 0 ? (uintptr_t)to & ~mask : *a;
}

/* Give back to the kernel the whole pages of [from, to): their bytes are not needed again.
 * Private memory (anonymous, or a copy-on-write file mapping) reads back as zeros or as
 * the file; either way nobody reads it: a buffer is used by exactly one node. */
static void
release_pages(const char *from, const char *to)
{
#if defined(__linux__) && defined(MADV_DONTNEED)
    uintptr_t a, b;
    whole_pages(from, to, &a, &b);
    if (b > a) {
        (void)madvise((void *)a, b - a, MADV_DONTNEED);
    }
#else
    (void)from;
    (void)to;
#endif
}

/* Keys are released in steps of this much text, once a step is consumed. */
#define RELEASE_STEP (1 << 20)
/* From this many keys on, the keys' and values' memory is mapped in on a helper thread
 * as it is handed out (_objpool.c): a 1.1M-term vocabulary's build 458 -> ~400 ms in
 * forked children. */
#define OBJPOOL_MIN_KEYS (1 << 16)

void skjar_objpool_init(void);
int skjar_objpool_begin(size_t expected);
void skjar_objpool_end(void);
PyObject *skjar_objpool_last(PyObject *self, PyObject *unused);

/* A large vocabulary's build is mostly waiting on memory: each new key's slot in the
 * dict's hash table, and on a collision the entry there (and in a str-only table that
 * entry's key, for its hash), are far apart in tables of tens of MB, and CPython's
 * insertion reads them one after the other. strdict therefore makes its keys
 * STRDICT_BATCH at a time and asks for those cache lines for the whole batch before
 * inserting any (dict_prefetch), so that the waits overlap. That needs the table's
 * layout, which CPython keeps private (Include/internal/pycore_dict.h): the same in
 * 3.11, 3.12 and 3.13 (a later version is read once its headers are checked), and
 * checked once more on real dicts (dict_layout_check) by the first build large enough to
 * prefetch for - not at import, where it took ~1 ms of every process's start. Anywhere
 * else nothing is prefetched: the inserts, and so the dict, are the same either way. */
#define STRDICT_BATCH 32
/* From this many keys on the table outgrows the CPU's nearer caches (16,384 keys: ~0.4 MB
 * of entries and ~1 MB of keys) and the prefetch pays; below, a build does not wait. */
#define PREFETCH_MIN_KEYS (1 << 14)
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
#define DICT_LAYOUT 1
struct dict_keys_head {
    Py_ssize_t refcnt;
    uint8_t log2_size;
    uint8_t log2_index_bytes;
    uint8_t kind; /* 0: any keys, entries (hash, key, value); 1: str keys, (key, value) */
    uint32_t version;
    Py_ssize_t usable;
    Py_ssize_t nentries;
    char indices[];
};
#endif
static int dict_layout_ok = -1; /* -1: not checked yet (dict_prefetch_ready) */

#ifdef DICT_LAYOUT
/* The dict's table, or NULL for a split one (an instance's attributes). */
static const struct dict_keys_head *
dict_table(PyObject *dict)
{
    const struct dict_keys_head *head = (const void *)((PyDictObject *)dict)->ma_keys;
    return head->kind <= 1 ? head : NULL;
}

static Py_ssize_t
table_index(const struct dict_keys_head *head, size_t slot)
{
    const char *p = head->indices;
    switch (head->log2_index_bytes - head->log2_size) {
    case 0: return ((const int8_t *)p)[slot];
    case 1: return ((const int16_t *)p)[slot];
    case 2: return ((const int32_t *)p)[slot];
    default: return (Py_ssize_t)((const int64_t *)p)[slot];
    }
}

/* The key of entry `ix`, its address: NULL for an empty slot or a deleted one's. */
static PyObject *const *
table_key(const struct dict_keys_head *head, Py_ssize_t ix)
{
    if (ix < 0 || ix >= head->nentries) {
        return NULL;
    }
    const char *entries = head->indices + ((size_t)1 << head->log2_index_bytes);
    return head->kind == 1 ? (PyObject *const *)entries + 2 * ix
                           : (PyObject *const *)entries + 3 * ix + 1;
}
#endif

/* Prefetch what inserting `keys` (fresh str) will read - for each, its first two probes'
 * slots and the entries they hold, and in a str-keyed table those entries' keys' hashes
 * (CPython's probe order: i = hash & mask, then (5i + perturb + 1) & mask, perturb
 * = hash >> 5). Only once dict_prefetch_ready() has said the layout is known. */
static void
dict_prefetch(PyObject *dict, PyObject *const *keys, int n)
{
#ifdef DICT_LAYOUT
    const struct dict_keys_head *head = dict_table(dict);
    if (head == NULL) {
        return;
    }
    const size_t mask = ((size_t)1 << head->log2_size) - 1;
    const int width = head->log2_index_bytes - head->log2_size;
    const int unicode = head->kind == 1;
    size_t slot[STRDICT_BATCH];
    for (int i = 0; i < n; i++) {
        slot[i] = (size_t)PyObject_Hash(keys[i]) & mask; /* a str's: never fails */
        __builtin_prefetch(head->indices + (slot[i] << width));
    }
    PyObject *const *hit[STRDICT_BATCH];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < n; i++) {
            hit[i] = round == 0 || hit[i] != NULL ? table_key(head, table_index(head, slot[i]))
                                                  : NULL;
            if (hit[i] != NULL) {
                __builtin_prefetch(hit[i]);
                const size_t hash = (size_t)((PyASCIIObject *)keys[i])->hash;
                slot[i] = (slot[i] * 5 + (hash >> (5 * (round + 1))) + 1) & mask;
                __builtin_prefetch(head->indices + (slot[i] << width));
            }
        }
        for (int i = 0; unicode && i < n; i++) {
            if (hit[i] != NULL && *hit[i] != NULL) {
                __builtin_prefetch(&((PyASCIIObject *)*hit[i])->hash);
            }
        }
    }
#else
    (void)dict;
    (void)keys;
    (void)n;
#endif
}

#ifdef DICT_LAYOUT
/* Whether `dict`, `n` entries inserted and none deleted, is laid out as dict_prefetch
 * reads it: each key found where CPython's probing puts it. The table's header is
 * checked first, so that a different layout is refused before its slots are read. */
static int
table_finds_its_keys(PyObject *dict, Py_ssize_t n)
{
    const struct dict_keys_head *head = dict_table(dict);
    int ok = head != NULL && head->log2_size >= 3 && head->log2_size < 32 &&
             head->log2_index_bytes >= head->log2_size &&
             head->log2_index_bytes - head->log2_size <= 3 && head->nentries == n &&
             head->usable >= 0 && head->usable < ((Py_ssize_t)1 << head->log2_size);
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (ok && PyDict_Next(dict, &pos, &key, &value)) {
        const size_t mask = ((size_t)1 << head->log2_size) - 1;
        size_t perturb = (size_t)PyObject_Hash(key);
        size_t slot = perturb & mask;
        int found = 0;
        for (size_t probes = 0; !found && probes <= mask; probes++) {
            PyObject *const *at = table_key(head, table_index(head, slot));
            found = at != NULL && *at == key;
            perturb >>= 5;
            slot = (slot * 5 + perturb + 1) & mask;
        }
        ok = found;
    }
    return ok;
}
#endif

/* Whether this CPython's dicts are laid out as dict_prefetch reads them: two dicts of
 * 200 str keys (tables of 16-bit indices), one of them with an int key first (a table for
 * any keys), are read back through that layout. */
static int
dict_layout_check(void)
{
    int ok = 1;
#ifdef DICT_LAYOUT
    for (int kind = 0; ok && kind < 2; kind++) {
        PyObject *dict = PyDict_New();
        ok = dict != NULL && (kind == 1 || PyDict_SetItem(dict, Py_False, Py_None) == 0);
        for (int i = 0; ok && i < 200; i++) {
            PyObject *key = PyUnicode_FromFormat("k%d", i);
            ok = key != NULL && PyDict_SetItem(dict, key, Py_None) == 0;
            Py_XDECREF(key);
        }
        ok = ok && table_finds_its_keys(dict, kind == 1 ? 200 : 201) &&
             dict_table(dict)->kind == kind;
        Py_XDECREF(dict);
    }
    PyErr_Clear();
#else
    ok = 0;
#endif
    return ok;
}

static int
dict_prefetch_ready(void)
{
    if (dict_layout_ok < 0) {
        dict_layout_ok = dict_layout_check();
    }
    return dict_layout_ok;
}

/* The end of the key at `s` (its NUL, or `end`), and in *ascii whether its bytes are all
 * under 0x80: one pass, eight bytes a step. A vocabulary's keys are short (spam-tfidf's
 * 1.1M: ~14 bytes), and a memchr per key (~5% of its load) and the UTF-8 decoder's own
 * scan (~4%) each paid a call's setup for a few bytes. */
static inline const char *
key_end(const char *s, const char *end, int *ascii)
{
    const char *p = s;
    uint64_t seen = 0; /* the bytes before the NUL, OR-ed */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        /* The lowest flagged byte is the first zero byte (flags above it may be false). */
        const uint64_t zero = (w - ones) & ~w & highs;
        if (zero) {
            const int k = __builtin_ctzll(zero) >> 3;
            seen |= k ? w & (~0ULL >> (64 - 8 * k)) : 0;
            *ascii = (seen & highs) == 0;
            return p + k;
        }
        seen |= w;
        p += 8;
    }
    *ascii = (seen & highs) == 0;
#else
    *ascii = 1;
#endif
    for (; p < end && *p != '\0'; p++) {
        *ascii &= (unsigned char)*p < 0x80;
    }
    return p;
}

/* dict_prefetching() -> bool: whether a large strdict build prefetches (the layout
 * checked, on the first call if no build has checked it yet). */
static PyObject *
dict_prefetching(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(dict_prefetch_ready());
}

/* strdict(text, count, values, itemsize, is_signed, release) -> dict | None | str
 *
 * `text` holds `count` UTF-8 keys (surrogates allowed) separated by NUL bytes;
 * `values` holds `count` native integers of `itemsize` bytes (read as they are: no
 * widened copy of a vocabulary's int32 column). Returns {key_i: values[i]} built straight
 * from the buffers, or None when they do not make exactly `count` distinct valid
 * keys. The twin is builtins._dec_strdict's Python path. A NUL byte is never part
 * of a multi-byte UTF-8 sequence, so splitting the bytes at NULs and decoding each
 * piece accepts and yields exactly what decoding the whole and splitting at "\0" does.
 *
 * With `release` (and a writable `text`), the pages of keys already built are given
 * back as the build goes on (a 1.1M-term vocabulary's 18 MB of keys no longer sit beside
 * the finished dict). The Python twin can then no longer read them, so a rejection
 * after the first release returns the reason as a str instead of None.
 */
static PyObject *
strdict(PyObject *self, PyObject *args)
{
    PyObject *text_obj;
    Py_buffer text, values;
    Py_ssize_t count, itemsize;
    int is_signed, release;
    if (!PyArg_ParseTuple(args, "Ony*npp", &text_obj, &count, &values, &itemsize, &is_signed,
                          &release)) {
        return NULL;
    }
    if (!release || PyObject_GetBuffer(text_obj, &text, PyBUF_SIMPLE | PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        release = 0; /* read-only memory (a bytes object) is never released */
        if (PyObject_GetBuffer(text_obj, &text, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&values);
            return NULL;
        }
    }
    PyObject *out = NULL;
    const char *reason = NULL;
    int pooled = 0;
    if (count < 0 || !valid_width(itemsize) || values.len / itemsize != count ||
        values.len % itemsize != 0 || (itemsize == 8 && !is_signed)) {
        PyErr_SetString(PyExc_ValueError, "strdict: values must hold count integers of 1, 2, "
                                          "4 or 8 bytes (no uint64)");
        goto done;
    }
    if (count == 0) {
        out = text.len == 0 ? PyDict_New() : Py_NewRef(Py_None);
        goto done;
    }
    /* A str of n ASCII characters takes 48 + n + 1 bytes rounded to 16, an int 32; any
     * more (wider characters) comes from CPython's own arenas as before. */
    pooled = count >= OBJPOOL_MIN_KEYS &&
             skjar_objpool_begin((size_t)count * (48 + 16 + 32) + (size_t)text.len);
#if PY_VERSION_HEX < 0x030E0000
    /* Sized once (up to CPython's cap of 2**17 slots): growing by doubling re-hashes and
     * re-faults the table ~20 times. Private, but declared in cpython/dictobject.h up to
     * 3.13 (3.13's alphas removed it, its release restored it: gh-112026). */
    out = _PyDict_NewPresized(count);
#else
    out = PyDict_New();
#endif
    if (out == NULL) {
        goto done;
    }
    const char *s = text.buf;
    const char *end = s + text.len;
    const char *released = s; /* keys before this are built (and maybe released) */
    const char *vals = values.buf;
    Py_ssize_t k = 0;
    PyObject *batch[STRDICT_BATCH];
    const int prefetch = count >= PREFETCH_MIN_KEYS && dict_prefetch_ready();
    int last = 0; /* the final key is in the batch */
    while (!last) {
        /* Make the next keys, hash them, and have their slots in the dict's table on
         * their way into the cache before the first of them is inserted. */
        int n = 0;
        while (n < STRDICT_BATCH && !last) {
            int ascii;
            const char *stop = key_end(s, end, &ascii);
            if (k + n == count) {
                reason = "the buffer holds more keys than declared";
                break;
            }
            /* ASCII is its own UTF-8: the str the decoder would make, made directly (one
             * character or none: the decoder's shared singletons). */
            PyObject *key;
            if (ascii && stop - s > 1) {
                key = PyUnicode_New(stop - s, 127);
                if (key != NULL) {
                    memcpy(PyUnicode_1BYTE_DATA(key), s, (size_t)(stop - s));
                }
            }
            else {
                key = PyUnicode_DecodeUTF8(s, stop - s, "surrogatepass");
            }
            if (key == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                    while (n > 0) {
                        Py_DECREF(batch[--n]);
                    }
                    Py_CLEAR(out);
                    goto done;
                }
                PyErr_Clear();
                reason = "keys are not valid UTF-8";
                break;
            }
            batch[n++] = key;
            if (stop == end) {
                last = 1;
            }
            else {
                s = stop + 1;
            }
        }
        if (prefetch) {
            dict_prefetch(out, batch, n);
        }
        int i = 0;
        for (; i < n; i++, k++) {
            const int64_t number = read_int(vals + k * itemsize, itemsize, is_signed);
            PyObject *value = PyLong_FromLongLong(number);
            const Py_ssize_t before = PyDict_GET_SIZE(out);
            int failed = value == NULL || PyDict_SetItem(out, batch[i], value) < 0;
            Py_XDECREF(value);
            Py_CLEAR(batch[i]);
            if (failed) {
                Py_CLEAR(out);
                break;
            }
            if (PyDict_GET_SIZE(out) == before) {
                reason = "duplicate keys";
                break;
            }
        }
        while (++i < n) { /* the keys after a failed insert */
            Py_DECREF(batch[i]);
        }
        if (out == NULL) {
            goto done;
        }
        if (reason != NULL) {
            goto reject;
        }
        if (release && s - released >= RELEASE_STEP) {
            release_pages(released, s);
            released = s;
        }
    }
    if (k == count) {
        goto done;
    }
    reason = "the buffer holds fewer keys than declared";
reject:
    if (released != (const char *)text.buf) {
        Py_SETREF(out, PyUnicode_FromString(reason));
    }
    else {
        Py_SETREF(out, Py_NewRef(Py_None));
    }
done:
    if (pooled) {
        skjar_objpool_end();
    }
    PyBuffer_Release(&text);
    PyBuffer_Release(&values);
    return out;
}

/* columns_ok(mapping) -> bool
 *
 * sklearn._check_columns' test in one pass: `mapping` (a dict) numbers its n keys 0 to
 * n - 1, each value an int in [0, n), none twice. True only then; anything else - a
 * numpy integer, a bool, a repeat, a value out of range - is left to the numpy twin,
 * which decides and says what is wrong. A 1.1M-term vocabulary: ~18 ms through
 * np.fromiter and a bincount-free mask, a few ms here.
 */
static PyObject *
columns_ok(PyObject *self, PyObject *mapping)
{
    if (!PyDict_CheckExact(mapping)) {
        Py_RETURN_FALSE;
    }
    const Py_ssize_t n = PyDict_GET_SIZE(mapping);
    unsigned char *seen = PyMem_RawCalloc(n ? (size_t)n : 1, 1);
    if (seen == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    int ok = 1;
    while (ok && PyDict_Next(mapping, &pos, &key, &value)) {
        if (!PyLong_CheckExact(value)) {
            ok = 0;
            break;
        }
        int overflow = 0;
        const long long column = PyLong_AsLongLongAndOverflow(value, &overflow);
        ok = !overflow && column >= 0 && column < n && !seen[column];
        if (ok) {
            seen[column] = 1;
        }
    }
    PyMem_RawFree(seen);
    return PyBool_FromLong(ok);
}

/* binary_tree_ok's loop over `n_nodes` records (fields checked by the caller). */
SKJAR_HOT static int
binary_nodes_ok(const char *base, Py_ssize_t n_nodes, Py_ssize_t itemsize, Py_ssize_t off_start,
                Py_ssize_t off_end, Py_ssize_t off_leaf, Py_ssize_t n)
{
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; ok && i < n_nodes; i++) {
        const char *rec = base + i * itemsize;
        const int64_t start = read_i64(rec + off_start);
        const int64_t end = read_i64(rec + off_end);
        ok = 0 <= start && start <= end && end <= n &&
             (i < (n_nodes - 1) / 2 || read_i64(rec + off_leaf) != 0);
    }
    Py_END_ALLOW_THREADS
    return ok;
}

/* binary_tree_ok(node_data, n, itemsize, start, end, is_leaf) -> bool
 *
 * A KDTree/BallTree's node records, which its query code follows unchecked:
 * `node_data` is the bytes of its NodeData records (int64 idx_start / idx_end
 * / is_leaf at the given byte offsets). True when every node's range
 * satisfies 0 <= start <= end <= n and the last half of the nodes (whose
 * children would fall outside the array) are leaves: one pass where the numpy
 * twin, sklearn._binary_tree_ranges_ok, takes four. (The idx_array itself is
 * checked by `below`.)
 */
static PyObject *
binary_tree_ok(PyObject *self, PyObject *args)
{
    Py_buffer nodes;
    Py_ssize_t n, itemsize, off_start, off_end, off_leaf;
    if (!PyArg_ParseTuple(args, "y*nnnnn", &nodes, &n, &itemsize, &off_start, &off_end,
                          &off_leaf)) {
        return NULL;
    }
    if (n < 0 || itemsize <= 0 || nodes.len % itemsize != 0 ||
        !field_fits(off_start, 8, itemsize) || !field_fits(off_end, 8, itemsize) ||
        !field_fits(off_leaf, 8, itemsize)) {
        PyBuffer_Release(&nodes);
        PyErr_SetString(PyExc_ValueError, "binary_tree_ok: the buffer does not hold whole "
                                          "records with the given fields");
        return NULL;
    }
    const int ok = binary_nodes_ok(nodes.buf, nodes.len / itemsize, itemsize, off_start,
                                   off_end, off_leaf, n);
    PyBuffer_Release(&nodes);
    return PyBool_FromLong(ok);
}

/* Whether all `count` native integers at `p` (`itemsize` 1, 2, 4 or 8, checked by the
 * caller) lie in [0, n), n >= 0: below's loop. */
SKJAR_HOT static int
values_below(const char *p, Py_ssize_t count, Py_ssize_t itemsize, int is_signed, Py_ssize_t n)
{
    const uint64_t limit = (uint64_t)n;
    uint64_t above = 0;
    Py_BEGIN_ALLOW_THREADS
    /* One loop per width, in blocks of 8 that the compiler vectorizes: 2.5x read_int's
     * speed per item (a KD tree's 16 MB index array: 1.2 -> 0.45 ms warm, most of a
     * memory-mapped knn-big load's check). Cast to int64 and then compared unsigned,
     * a negative value (or a uint64 past INT64_MAX) becomes huge. */
#define BELOW(T)                                                                       \
    do {                                                                               \
        const Py_ssize_t whole = count - count % 8;                                    \
        for (Py_ssize_t i = 0; i < whole; i += 8) {                                    \
            uint64_t block = 0;                                                        \
            for (int k = 0; k < 8; k++) {                                              \
                T x;                                                                   \
                memcpy(&x, p + (i + k) * (Py_ssize_t)sizeof(T), sizeof(T));            \
                block |= (uint64_t)((uint64_t)(int64_t)x >= limit);                    \
            }                                                                          \
            above |= block;                                                            \
        }                                                                              \
        for (Py_ssize_t i = whole; i < count; i++) {                                   \
            T x;                                                                       \
            memcpy(&x, p + i * (Py_ssize_t)sizeof(T), sizeof(T));                      \
            above |= (uint64_t)((uint64_t)(int64_t)x >= limit);                        \
        }                                                                              \
    } while (0)
    switch (itemsize * (is_signed ? -1 : 1)) {
    case -8: BELOW(int64_t); break;
    case 8: BELOW(uint64_t); break;
    case -4: BELOW(int32_t); break;
    case 4: BELOW(uint32_t); break;
    case -2: BELOW(int16_t); break;
    case 2: BELOW(uint16_t); break;
    case -1: BELOW(int8_t); break;
    default: BELOW(uint8_t); break;
    }
#undef BELOW
    Py_END_ALLOW_THREADS
    return !above;
}

/* below(values, itemsize, is_signed, n) -> bool
 *
 * Every value of a contiguous native-endian integer array (`itemsize` 1, 2, 4
 * or 8 bytes, signed or not) lies in [0, n). The twin is numpy.indices_below,
 * whose numpy reduction costs ~0.3 ms the first time a process runs it.
 */
static PyObject *
below(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t itemsize, n;
    int is_signed;
    if (!PyArg_ParseTuple(args, "y*npn", &buf, &itemsize, &is_signed, &n)) {
        return NULL;
    }
    if (!valid_width(itemsize) || buf.len % itemsize != 0 || n < 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "below: itemsize must be 1, 2, 4 or 8 and divide "
                                          "the buffer, n must be >= 0");
        return NULL;
    }
    const int ok = values_below(buf.buf, buf.len / itemsize, itemsize, is_signed, n);
    PyBuffer_Release(&buf);
    return PyBool_FromLong(ok);
}

/* -- whole-state checks of the nearest-neighbours family ---------------------------- */

/* A float array (any float width, native order) of `ndim` dimensions, its shape in
 * `shape` (at least `ndim` slots): 1, else 0 with nothing set. `obj` may be NULL. */
SKJAR_HOT static int
float_shape(PyObject *obj, PyObject *ndarray, int ndim, Py_ssize_t *shape)
{
    Py_buffer view;
    if (!array_view(obj, ndarray, &view, PyBUF_RECORDS_RO)) {
        return 0;
    }
    const int ok = view.ndim == ndim && format_kind(view.format) == 'f';
    for (int k = 0; ok && k < ndim; k++) {
        shape[k] = view.shape[k];
    }
    view_release(&view);
    return ok;
}

/* Whether the str `text` starts with the ASCII `prefix`. */
SKJAR_HOT static int
starts_with(PyObject *text, const char *prefix)
{
    const Py_ssize_t len = (Py_ssize_t)strlen(prefix);
    if (PyUnicode_GET_LENGTH(text) < len) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        if (PyUnicode_READ_CHAR(text, i) != (Py_UCS4)(unsigned char)prefix[i]) {
            return 0;
        }
    }
    return 1;
}

/* What a distance metric object's type name says of data `d` columns wide: 1 when
 * sklearn.check_binary_tree's metric checks pass without reading the metric's state,
 * 0 for anything that is not a `metric_class` (scikit-learn's DistanceMetric) and for a
 * metric whose own vector or matrix must be read (the twin decides). (Not "has a
 * __getstate__": from Python 3.11 None has one, and a tree given None as its metric
 * loaded and dereferenced NULL on its first query - a fuzz finding.) */
SKJAR_HOT static int
metric_fits(PyObject *metric, PyObject *metric_class, Py_ssize_t d)
{
    const int is_metric = PyObject_IsInstance(metric, metric_class);
    if (is_metric != 1) {
        PyErr_Clear();
        return 0;
    }
    PyObject *name = PyObject_GetAttr((PyObject *)Py_TYPE(metric), STATE_KEYS[SK_NAME]);
    if (name == NULL || !PyUnicode_Check(name)) {
        PyErr_Clear();
        Py_XDECREF(name);
        return 0;
    }
    const int ok = !starts_with(name, "SEuclidean") && !starts_with(name, "Minkowski") &&
                   !starts_with(name, "Mahalanobis") &&
                   (d == 2 || !starts_with(name, "Haversine"));
    Py_DECREF(name);
    return ok;
}

/* binary_tree_state_ok(state, planes, ndarray, metric_class, node_dtype, itemsize, start,
 *                      end, is_leaf) -> bool
 *
 * Every check of sklearn.check_binary_tree on a KDTree's or BallTree's 13-tuple state,
 * in one call: float64 data (n x d), an intp idx_array of n indices into it, node_data
 * of `node_dtype` with 2**n_levels - 1 records passing binary_tree_ok, node_bounds of
 * `planes` x n_nodes x d floats, a plausible leaf_size, sample weights (or None) per
 * row, and a metric whose state need not be read. True only where the twin passes;
 * False sends the caller to it. A 3-neighbours iris model spent about a sixth of its
 * first load in that Python.
 */
SKJAR_HOT static PyObject *
binary_tree_state_ok(PyObject *self, PyObject *args)
{
    PyObject *state, *ndarray, *metric_class, *expected;
    Py_ssize_t planes, itemsize, off_start, off_end, off_leaf;
    if (!PyArg_ParseTuple(args, "OnO!O!Onnnn", &state, &planes, &PyType_Type, &ndarray,
                          &PyType_Type, &metric_class, &expected, &itemsize, &off_start,
                          &off_end, &off_leaf)) {
        return NULL;
    }
    if (itemsize <= 0 || !field_fits(off_start, 8, itemsize) || !field_fits(off_end, 8, itemsize) ||
        !field_fits(off_leaf, 8, itemsize)) {
        PyErr_SetString(PyExc_ValueError,
                        "binary_tree_state_ok: the fields do not fit the record");
        return NULL;
    }
    if (!PyTuple_CheckExact(state) || PyTuple_GET_SIZE(state) != 13) {
        Py_RETURN_FALSE;
    }
    PyObject **item = &PyTuple_GET_ITEM(state, 0);
    long long leaf_size, n_levels, n_nodes;
    Py_ssize_t shape[3];
    if (!exact_int(item[4], 1, &leaf_size) || !exact_int(item[5], 1, &n_levels) ||
        !exact_int(item[6], 1, &n_nodes) || n_levels > 62 ||
        n_nodes != ((long long)1 << n_levels) - 1) {
        Py_RETURN_FALSE;
    }
    Py_buffer view;
    /* data: float64, 2-d */
    if (!array_view(item[0], ndarray, &view, PyBUF_RECORDS_RO)) {
        Py_RETURN_FALSE;
    }
    const Py_ssize_t n = view.ndim == 2 ? view.shape[0] : -1;
    const Py_ssize_t d = view.ndim == 2 ? view.shape[1] : -1;
    int ok = n >= 0 && view.itemsize == 8 && format_kind(view.format) == 'f' &&
             strchr(view.format, 'd') != NULL;
    view_release(&view);
    if (!ok || leaf_size > (n > 1 ? n : 1) * 2 + 1000000 ||
        !float_shape(item[3], ndarray, 3, shape) || shape[0] != planes ||
        shape[1] != n_nodes || shape[2] != d) {
        Py_RETURN_FALSE;
    }
    if (item[12] != Py_None && (!float_shape(item[12], ndarray, 1, shape) || shape[0] != n)) {
        Py_RETURN_FALSE;
    }
    if (!metric_fits(item[11], metric_class, d)) {
        Py_RETURN_FALSE;
    }
    /* idx_array: n intp indices below n, read where they lie (C-contiguous) */
    if (!array_view(item[1], ndarray, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)) {
        Py_RETURN_FALSE;
    }
    ok = view.ndim == 1 && format_kind(view.format) == 'i' &&
         view.itemsize == (Py_ssize_t)sizeof(Py_ssize_t) && view.shape[0] == n &&
         values_below(view.buf, n, view.itemsize, 1, n);
    view_release(&view);
    if (!ok || !records_view(item[2], ndarray, expected, itemsize, &view)) {
        Py_RETURN_FALSE;
    }
    ok = view.shape[0] == n_nodes &&
         binary_nodes_ok(view.buf, view.shape[0], itemsize, off_start, off_end, off_leaf, n);
    view_release(&view);
    return PyBool_FromLong(ok);
}

/* distance_metric_state_ok(state, ndarray) -> bool
 *
 * sklearn.check_distance_metric's checks on a DistanceMetric's (p, vec, mat): a float
 * p, a 1-d float vec, a square 2-d float mat. False sends the caller to the twin.
 */
SKJAR_HOT static PyObject *
distance_metric_state_ok(PyObject *self, PyObject *args)
{
    PyObject *state, *ndarray;
    if (!PyArg_ParseTuple(args, "OO!", &state, &PyType_Type, &ndarray)) {
        return NULL;
    }
    Py_ssize_t shape[2];
    return PyBool_FromLong(
        PyTuple_CheckExact(state) && PyTuple_GET_SIZE(state) == 3 &&
        PyFloat_Check(PyTuple_GET_ITEM(state, 0)) &&
        float_shape(PyTuple_GET_ITEM(state, 1), ndarray, 1, shape) &&
        float_shape(PyTuple_GET_ITEM(state, 2), ndarray, 2, shape) && shape[0] == shape[1]);
}

/* Whether a (metric, metric_params) pair of a neighbours estimator fits data `d` columns
 * wide without the twin: a metric named by a str (or None; anything else, a
 * DistanceMetric included, goes to the twin), haversine only for d == 2, and every
 * array among the params d (or d x d) wide. */
SKJAR_HOT static int
metric_pair_fits(PyObject *metric, PyObject *params, PyObject *ndarray, Py_ssize_t d)
{
    if (metric != NULL && metric != Py_None &&
        (!PyUnicode_Check(metric) || (d != 2 && starts_with(metric, "haversine")))) {
        return 0;
    }
    if (params == NULL || !PyDict_Check(params)) {
        return 1; /* the twin reads a dict's values only */
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(params, &pos, &key, &value)) {
        if (!PyObject_TypeCheck(value, (PyTypeObject *)ndarray)) {
            continue;
        }
        Py_buffer view;
        if (!array_view(value, ndarray, &view, PyBUF_RECORDS_RO)) {
            return 0;
        }
        int ok = 1;
        for (int k = 0; k < view.ndim; k++) {
            ok &= view.shape[k] == d;
        }
        view_release(&view);
        if (!ok) {
            return 0;
        }
    }
    return 1;
}

/* neighbors_state_ok(state, ndarray) -> bool
 *
 * sklearn.check_neighbors on a fitted neighbours estimator's state dict: _fit_X a 2-d
 * array of n_features_in_ columns and n_samples_fit_ rows, and both metrics fitting
 * that width (metric_pair_fits). True for an unfitted dict too; False (a sparse _fit_X,
 * a DistanceMetric object, anything unusual) sends the caller to the twin.
 */
SKJAR_HOT static PyObject *
neighbors_state_ok(PyObject *self, PyObject *args)
{
    PyObject *state, *ndarray;
    if (!PyArg_ParseTuple(args, "OO!", &state, &PyType_Type, &ndarray)) {
        return NULL;
    }
    if (!PyDict_CheckExact(state)) {
        Py_RETURN_FALSE;
    }
    PyObject *fit_x = state_item(state, SK_FIT_X);
    if (fit_x == NULL) {
        Py_RETURN_TRUE; /* unfitted */
    }
    Py_buffer view;
    if (!array_view(fit_x, ndarray, &view, PyBUF_RECORDS_RO)) {
        Py_RETURN_FALSE;
    }
    const Py_ssize_t rows = view.ndim == 2 ? view.shape[0] : -1;
    const Py_ssize_t cols = view.ndim == 2 ? view.shape[1] : -1;
    view_release(&view);
    long long d, fitted;
    PyObject *n_fit = state_item(state, SK_N_SAMPLES_FIT_);
    return PyBool_FromLong(
        rows >= 0 && exact_int(state_item(state, SK_N_FEATURES_IN_), 1, &d) && cols == d &&
        (n_fit == NULL || (exact_int(n_fit, 0, &fitted) && fitted == rows)) &&
        metric_pair_fits(state_item(state, SK_EFFECTIVE_METRIC_),
                         state_item(state, SK_EFFECTIVE_METRIC_PARAMS_), ndarray, cols) &&
        metric_pair_fits(state_item(state, SK_METRIC), state_item(state, SK_METRIC_PARAMS),
                         ndarray, cols));
}

/* libsvm_state_ok(state, ndarray) -> bool
 *
 * sklearn.check_libsvm on an SVC/NuSVC/SVR/NuSVR/OneClassSVM state dict with dense
 * support vectors: support_ indexing the shape_fit_[0] training rows, as many support
 * vector rows (none for a precomputed kernel) and dual coefficient columns, per-class
 * counts that sum to them, and intercepts and Platt parameters for every class pair.
 * True for an unfitted dict too; False (sparse parts, a kernel that is not a str,
 * anything unusual) sends the caller to the twin.
 */
SKJAR_HOT static PyObject *
libsvm_state_ok(PyObject *self, PyObject *args)
{
    PyObject *state, *ndarray;
    if (!PyArg_ParseTuple(args, "OO!", &state, &PyType_Type, &ndarray)) {
        return NULL;
    }
    if (!PyDict_CheckExact(state)) {
        Py_RETURN_FALSE;
    }
    PyObject *support = state_item(state, SK_SUPPORT_);
    if (support == NULL) {
        Py_RETURN_TRUE; /* unfitted */
    }
    PyObject *shape_fit = state_item(state, SK_SHAPE_FIT_);
    PyObject *kernel = state_item(state, SK_KERNEL);
    PyObject *n_features = state_item(state, SK_N_FEATURES_IN_);
    long long n_train, width = -1;
    if (shape_fit == NULL || !PyTuple_CheckExact(shape_fit) || PyTuple_GET_SIZE(shape_fit) != 2 ||
        !exact_int(PyTuple_GET_ITEM(shape_fit, 0), 0, &n_train) ||
        (kernel != NULL && !PyUnicode_CheckExact(kernel)) ||
        (n_features != NULL && n_features != Py_None && !exact_int(n_features, LLONG_MIN, &width))) {
        Py_RETURN_FALSE;
    }
    const int precomputed = kernel != NULL && PyUnicode_CompareWithASCIIString(kernel,
                                                                               "precomputed") == 0;
    Py_buffer view;
    if (!array_view(support, ndarray, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)) {
        Py_RETURN_FALSE;
    }
    const Py_ssize_t n_sv = view.ndim == 1 ? view.shape[0] : -1;
    int ok = n_sv >= 0 && format_kind(view.format) == 'i' && valid_width(view.itemsize) &&
             (n_sv == 0 || values_below(view.buf, n_sv, view.itemsize, 1, n_train));
    view_release(&view);
    Py_ssize_t sv[2], dual[2], intercept[1], prob[1];
    if (!ok || !float_shape(state_item(state, SK_SUPPORT_VECTORS_), ndarray, 2, sv) ||
        !float_shape(state_item(state, SK_DUAL_COEF_), ndarray, 2, dual) ||
        !float_shape(state_item(state, SK_INTERCEPT_), ndarray, 1, intercept) ||
        !(sv[0] == n_sv || (precomputed && sv[0] == 0)) || dual[1] != n_sv ||
        (sv[0] != 0 && width >= 0 && sv[1] != width) ||
        (n_features != NULL && n_features != Py_None && width < 0 && sv[0] != 0)) {
        Py_RETURN_FALSE;
    }
    /* _n_support: one count >= 0 per class (any integer width, any strides) */
    if (!array_view(state_item(state, SK_N_SUPPORT), ndarray, &view, PyBUF_RECORDS_RO)) {
        Py_RETURN_FALSE;
    }
    const Py_ssize_t n_class = view.ndim == 1 ? view.shape[0] : -1;
    ok = n_class >= 0 && n_class < ((Py_ssize_t)1 << 31) && format_kind(view.format) == 'i' &&
         valid_width(view.itemsize);
    long long total = 0;
    for (Py_ssize_t i = 0; ok && i < n_class; i++) {
        const int64_t c = read_int((const char *)view.buf + i * view.strides[0], view.itemsize, 1);
        ok = c >= 0 && c <= n_sv; /* (a sum of such counts stays far from overflow) */
        total += c;
    }
    view_release(&view);
    long long pairs = 1;
    if (ok && state_item(state, SK_CLASSES_) != NULL) {
        ok = total == n_sv && dual[0] == n_class - 1;
        pairs = (long long)n_class * (n_class - 1) / 2;
    }
    else {
        ok = ok && dual[0] == 1;
    }
    const int probs[2] = {SK_PROBA, SK_PROBB};
    for (int k = 0; ok && k < 2; k++) {
        ok = float_shape(state_item(state, probs[k]), ndarray, 1, prob) &&
             (prob[0] == 0 || prob[0] == pairs);
    }
    return PyBool_FromLong(ok && intercept[0] == pairs);
}

/* no_timestamps(tree) -> bool
 *
 * True when none of msgpack's three timestamp encodings (fixext 4 / fixext 8 / ext 8 of
 * type -1: d6 ff, d7 ff, c7 0c ff) occurs in the bytes. The twin is decoder's regex,
 * which scans at ~120 MB/s (0.26 ms on a 32 KB tree); this jumps from 0xff to 0xff.
 */
static PyObject *
no_timestamps(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*", &buf)) {
        return NULL;
    }
    const unsigned char *p = buf.buf;
    const Py_ssize_t n = buf.len;
    int found = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *q = p + (n > 0 ? 1 : 0); /* a marker's 0xff is never its first byte */
    while (n > 1 && q < p + n) {
        q = memchr(q, 0xff, (size_t)(p + n - q));
        if (q == NULL) {
            break;
        }
        const unsigned char before = q[-1];
        if (before == 0xd6 || before == 0xd7 || (before == 0x0c && q - p >= 2 && q[-2] == 0xc7)) {
            found = 1;
            break;
        }
        q++;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    return PyBool_FromLong(!found);
}

/* address(buffer) -> int: where the buffer's first byte is (numpy's
 * __array_interface__ builds a dict, and its first use in a process costs ~0.1 ms). */
static PyObject *
address(PyObject *self, PyObject *args)
{
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view))
        return NULL;
    PyObject *out = PyLong_FromVoidPtr(view.buf);
    PyBuffer_Release(&view);
    return out;
}

/* prefault(buffer) -> bool
 *
 * Map in the whole pages of a writable buffer now, in one system call
 * (MADV_POPULATE_WRITE), instead of one page fault per 4 KiB while a read
 * fills it. The bytes are not changed. False where the platform or kernel
 * cannot: the pages then fault in as they are written, which is the
 * pure-Python behaviour (slower, same result).
 */
/* Map in the whole pages inside the n bytes at p for writing: 1 when done, 0 where the
 * platform or kernel cannot. Needs no GIL (the reader front calls it too: _front.c). */
SKJAR_HOT int
skjar_populate(void *p, Py_ssize_t n)
{
#if defined(__linux__)
    uintptr_t a, b;
    whole_pages(p, (const char *)p + n, &a, &b);
    return b > a && madvise((void *)a, (size_t)(b - a), MADV_POPULATE_WRITE) == 0;
#else
    return 0;
#endif
}

static PyObject *
prefault(PyObject *self, PyObject *args)
{
    Py_buffer view;
    int done;
    if (!PyArg_ParseTuple(args, "w*", &view))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    done = skjar_populate(view.buf, view.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyBool_FromLong(done);
}

/* discard(buffer) -> None
 *
 * Give the whole pages inside a buffer back to the kernel (release_pages): a chunk of a
 * compressed section once it is decompressed, whose stored bytes are read exactly once
 * (a 541 MB zstd section need not stay in memory beside the 587 MB it decompresses to).
 * The caller's memory is its own copy or a copy-on-write file mapping; a page handed
 * back reads as zeros or as the file again.
 */
static PyObject *
discard(PyObject *self, PyObject *args)
{
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    release_pages((const char *)view.buf, (const char *)view.buf + view.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* fresh_pages(pagemap_fd, buffer) -> bool
 *
 * Drop the whole pages inside a writable buffer if some of them are still shared
 * copy-on-write, so that filling it copies nothing: True when it did. The buffer is a
 * new allocation whose bytes nobody has written (aligned_empty's, from malloc), about to
 * be mapped in by a page-in helper or filled by the reader or the decompressors while
 * other threads run; nobody may write into it during the call (pagein.py).
 *
 * Why: a forked child's malloc hands out heap memory its parent had freed, still shared
 * with the parent. Mapping it in for writing then copies each page, and with another
 * thread of the process running on the other core, every copy also flushes that core's
 * TLB by interrupt: forest loaded in ~490 ms in the children of a process that had loaded
 * and dropped it, against ~95 ms in those of one that had not (pickle: ~160 and ~150 ms).
 * Pages dropped here (MADV_DONTNEED: one flush for the buffer) come back as fresh zero
 * pages, which need no copy.
 *
 * Which pages are shared is read from `pagemap_fd`, the process's /proc/self/pagemap
 * (present, and not mapped exclusively: bit 56, Linux 4.2), so memory that is fresh, or
 * already the process's own and reused, is left as it is. False, and nothing changed,
 * wherever that cannot be read. Runs without the GIL.
 */
static PyObject *
fresh_pages(PyObject *self, PyObject *args)
{
    int fd;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "iw*", &fd, &view))
        return NULL;
    int shared = 0;
#if defined(__linux__)
    const char *from = view.buf, *to = from + view.len;
    Py_BEGIN_ALLOW_THREADS
    uintptr_t a, b;
    whole_pages(from, to, &a, &b);
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uint64_t entries[512];
    for (uintptr_t at = a; fd >= 0 && at < b && !shared;) {
        size_t n = (size_t)((b - at) / page);
        n = n < 512 ? n : 512;
        ssize_t got = pread(fd, entries, n * 8, (off_t)(at / page * 8));
        if (got < 8)
            break;
        for (ssize_t k = 0; k < got / 8 && !shared; k++)
            shared = (entries[k] >> 63 & 1) && !(entries[k] >> 56 & 1);
        at += (uintptr_t)(got / 8) * page;
    }
    if (shared)
        release_pages(from, to);
    Py_END_ALLOW_THREADS
#else
    (void)fd;
#endif
    PyBuffer_Release(&view);
    return PyBool_FromLong(shared);
}

/* start_writeback(fd, offset, nbytes) -> bool
 *
 * Ask the kernel to start writing a just-written range of a file to disk now
 * (sync_file_range with SYNC_FILE_RANGE_WRITE: no wait, no durability promise).
 * A durable save ends with fsync, which waits for every dirty page; pages whose
 * writeback started while the rest of the file was being written are already on
 * their way. False where the platform or file system cannot: the final fsync
 * then does all of it, which is the pure-Python behaviour (slower, same result).
 * skjar_start_writeback is the call itself, without the GIL (write_jar's too).
 */
int
skjar_start_writeback(int fd, long long offset, long long nbytes)
{
#if defined(__linux__) && defined(SYNC_FILE_RANGE_WRITE)
    return offset >= 0 && nbytes > 0 &&
           sync_file_range(fd, (off_t)offset, (off_t)nbytes, SYNC_FILE_RANGE_WRITE) == 0;
#else
    (void)fd;
    (void)offset;
    (void)nbytes;
    return 0;
#endif
}

static PyObject *
start_writeback(PyObject *self, PyObject *args)
{
    int fd;
    long long offset, nbytes;
    int done;
    if (!PyArg_ParseTuple(args, "iLL", &fd, &offset, &nbytes))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    done = skjar_start_writeback(fd, offset, nbytes);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(done);
}

/* env_set(name) -> bool
 *
 * Whether the environment variable `name` holds anything but ASCII whitespace: load's
 * question "is SKJAR_VERIFY_KEYS set?" without os.environ's Python (encodekey, Mapping.get,
 * a KeyError): ~35 first-touch page faults, ~0.1 ms of a forked process's first load of a
 * small model. os.environ writes through to the C environment (putenv, unsetenv), so
 * the answers agree; True only means "look": signing.verify_keys then reads os.environ.
 */
SKJAR_HOT static PyObject *
env_set(PyObject *self, PyObject *arg)
{
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (name == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "env_set: the name must be a str");
        }
        return NULL;
    }
    const char *value = getenv(name);
    for (; value != NULL && *value; value++) {
        if (!strchr(" \t\n\v\f\r", *value)) {
            Py_RETURN_TRUE;
        }
    }
    Py_RETURN_FALSE;
}

/* CompiledCheck(compiled, name, extra, check, with_args)
 *
 * A meaning check as the registry calls it, check(args, state), whose compiled twin runs
 * with no Python step: getattr(compiled.speedups, name)(state, *extra) - or (args, state,
 * *extra) `with_args` - and `check`, the Python check, which decides and names the
 * fault, only when the twin does not answer True, or when compiled.speedups is None. The Python function around each compiled whole-state check was otherwise a Python
 * function's first call in every fresh process's load (~25 us and ~7 page faults in a
 * forked child), and a Python call per tree of a forest. The twin is looked up on each
 * call, so these checks follow _compiled.speedups as the Python ones do. `extra` is a
 * tuple, or a callable giving it (what only the model's own modules define: scikit-learn
 * is not imported until a model needs it), called on first use and kept. Not tracked by
 * the cyclic GC: the registry holds these for the life of the process.
 */
#define COMPILED_CHECK_MAX_EXTRA 12

typedef struct {
    PyObject_HEAD
    PyObject *compiled, *name, *extra, *check;
    int with_args;
    vectorcallfunc vectorcall;
} CompiledCheck;

/* The check's extra arguments, a new reference: resolved and kept on first use. */
static PyObject *
compiled_check_extra(CompiledCheck *self)
{
    if (PyTuple_CheckExact(self->extra)) {
        return Py_NewRef(self->extra);
    }
    PyObject *got = PyObject_CallNoArgs(self->extra);
    if (got != NULL &&
        (!PyTuple_CheckExact(got) || PyTuple_GET_SIZE(got) > COMPILED_CHECK_MAX_EXTRA)) {
        PyErr_Format(PyExc_TypeError, "CompiledCheck %R: its extra arguments must be a tuple "
                     "of at most %d", self->name, COMPILED_CHECK_MAX_EXTRA);
        Py_CLEAR(got);
    }
    if (got != NULL && !PyTuple_CheckExact(self->extra)) { /* (another thread may have) */
        Py_SETREF(self->extra, Py_NewRef(got));
    }
    return got;
}

static PyObject *str_speedups;

SKJAR_HOT static PyObject *
compiled_check_call(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    CompiledCheck *self = (CompiledCheck *)op;
    if (PyVectorcall_NARGS(nargsf) != 2 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "a meaning check takes two arguments: (args, state)");
        return NULL;
    }
    PyObject *fast = PyObject_GetAttr(self->compiled, str_speedups);
    if (fast == NULL) {
        return NULL;
    }
    if (fast != Py_None) {
        PyObject *twin = PyObject_GetAttr(fast, self->name);
        Py_DECREF(fast);
        if (twin == NULL) {
            return NULL;
        }
        PyObject *extra = compiled_check_extra(self);
        if (extra == NULL) {
            Py_DECREF(twin);
            return NULL;
        }
        PyObject *stack[2 + COMPILED_CHECK_MAX_EXTRA];
        const Py_ssize_t lead = self->with_args ? 2 : 1, n = PyTuple_GET_SIZE(extra);
        stack[0] = args[2 - lead]; /* args, then state; or state alone */
        stack[1] = args[1];
        for (Py_ssize_t i = 0; i < n; i++) {
            stack[lead + i] = PyTuple_GET_ITEM(extra, i);
        }
        PyObject *answer = PyObject_Vectorcall(twin, stack, (size_t)(lead + n), NULL);
        Py_DECREF(extra);
        Py_DECREF(twin);
        if (answer == NULL) {
            return NULL;
        }
        const int passed = answer == Py_True;
        Py_DECREF(answer);
        if (passed) {
            Py_RETURN_NONE;
        }
    }
    else {
        Py_DECREF(fast);
    }
    return PyObject_Vectorcall(self->check, args, 2, NULL);
}

static PyObject *
compiled_check_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *compiled, *name, *extra, *check;
    int with_args;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) ||
        !PyArg_ParseTuple(args, "OUOOp:CompiledCheck", &compiled, &name, &extra, &check,
                          &with_args)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "CompiledCheck takes no keyword arguments");
        }
        return NULL;
    }
    if (!(PyTuple_CheckExact(extra) ? PyTuple_GET_SIZE(extra) <= COMPILED_CHECK_MAX_EXTRA
                                    : PyCallable_Check(extra)) ||
        !PyCallable_Check(check)) {
        PyErr_SetString(PyExc_TypeError, "CompiledCheck: extra must be a tuple of at most 12 "
                        "items or a callable giving one, and check a callable");
        return NULL;
    }
    CompiledCheck *self = (CompiledCheck *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->compiled = Py_NewRef(compiled);
    self->name = Py_NewRef(name);
    PyUnicode_InternInPlace(&self->name);
    self->extra = Py_NewRef(extra);
    self->check = Py_NewRef(check);
    self->with_args = with_args;
    self->vectorcall = compiled_check_call;
    return (PyObject *)self;
}

static void
compiled_check_dealloc(PyObject *op)
{
    CompiledCheck *self = (CompiledCheck *)op;
    Py_XDECREF(self->compiled);
    Py_XDECREF(self->name);
    Py_XDECREF(self->extra);
    Py_XDECREF(self->check);
    Py_TYPE(op)->tp_free(op);
}

static PyObject *
compiled_check_repr(PyObject *op)
{
    CompiledCheck *self = (CompiledCheck *)op;
    return PyUnicode_FromFormat("CompiledCheck(%R, %R)", self->name, self->check);
}

static PyMemberDef compiled_check_members[] = {
    {"name", T_OBJECT, offsetof(CompiledCheck, name), READONLY, "the compiled twin's name"},
    {"check", T_OBJECT, offsetof(CompiledCheck, check), READONLY, "the Python check"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject CompiledCheckType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "skjar._speedups.CompiledCheck",
    .tp_basicsize = sizeof(CompiledCheck),
    .tp_dealloc = compiled_check_dealloc,
    .tp_vectorcall_offset = offsetof(CompiledCheck, vectorcall),
    .tp_repr = compiled_check_repr,
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "CompiledCheck(compiled, name, extra, check): a meaning check whose compiled "
              "twin runs first, with no Python step",
    .tp_members = compiled_check_members,
    .tp_new = compiled_check_new,
};

static int
add_compiled_check(PyObject *module)
{
    str_speedups = PyUnicode_InternFromString("speedups");
    /* (PyModule_AddType readies the type and adds it under its tp_name's last part) */
    return str_speedups == NULL ? -1 : PyModule_AddType(module, &CompiledCheckType);
}

/* The object tree's walker, the header's JSON parser, the reader's front for small
 * jars and the digest have files of their own. */
PyObject *skjar_walk(PyObject *self, PyObject *args);
PyObject *skjar_pack_tree(PyObject *self, PyObject *args);
PyObject *skjar_encode(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *skjar_encode_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *skjar_encode_dict(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *skjar_walk_plan(PyObject *self, PyObject *args);
PyObject *skjar_walk_setter(PyObject *self, PyObject *args);
PyObject *skjar_json(PyObject *self, PyObject *args);
PyObject *skjar_read_small(PyObject *self, PyObject *args);
PyObject *skjar_read_head(PyObject *self, PyObject *args);
PyObject *skjar_default_infos(PyObject *self, PyObject *args);
PyObject *skjar_read_info(PyObject *self, PyObject *args);
PyObject *skjar_section_totals(PyObject *self, PyObject *sections);
PyObject *skjar_write_jar(PyObject *self, PyObject *args);
PyObject *skjar_json_dump(PyObject *self, PyObject *value);
int skjar_add_hasher(PyObject *module);
int skjar_front_init(void);
int skjar_walk_init(void);

static PyMethodDef methods[] = {
    {"json", skjar_json, METH_VARARGS, "json(text[, unread]) -> object | None"},
    {"read_small", skjar_read_small, METH_VARARGS,
     "read_small(source, admit, spec, known, mapper, full, check_signature)\n"
     "-> (tree, buffers, declared[, coded]) | None"},
    {"read_head", skjar_read_head, METH_VARARGS,
     "read_head(source, section, spec[, describe])\n"
     "-> (version, header, tree, buffers, data_end, size, flags) | None"},
    {"read_info", skjar_read_info, METH_VARARGS,
     "read_info(source, spec, known, memo, describe) -> (header, names, fields) | None"},
    {"default_infos", skjar_default_infos, METH_VARARGS,
     "default_infos(header, known, memo) -> tuple of NameInfo | None"},
    {"section_totals", skjar_section_totals, METH_O,
     "section_totals(sections) -> (pieces, stored, decoded) | None"},
    {"walk", skjar_walk, METH_VARARGS,
     "walk(tree, dec, pairs_hook, shared, buffers, shells, declared, known, static) -> object"},
    {"pack_tree", skjar_pack_tree, METH_VARARGS,
     "pack_tree(tree, (Node, Shared, SharedRef), max_nesting) -> bytes | None"},
    {"encode", (PyCFunction)(void (*)(void))skjar_encode, METH_FASTCALL,
     "encode(enc, value, path) -> tree value"},
    {"encode_items", (PyCFunction)(void (*)(void))skjar_encode_items, METH_FASTCALL,
     "encode_items(enc, items, path) -> list | Node"},
    {"encode_dict", (PyCFunction)(void (*)(void))skjar_encode_dict, METH_FASTCALL,
     "encode_dict(enc, d, path) -> dict | Node"},
    {"walk_plan", skjar_walk_plan, METH_VARARGS,
     "walk_plan(declared, known, static, code, name) -> plan | None"},
    {"walk_setter", skjar_walk_setter, METH_VARARGS, "walk_setter(static, cls) -> setter"},
    {"tree_ok", tree_ok, METH_VARARGS,
     "tree_ok(nodes, itemsize, left, right, feature, n_features, max_depth) -> bool"},
    {"tree_state_ok", tree_state_ok, METH_VARARGS,
     "tree_state_ok(args, state, ndarray, node_dtype, itemsize, left, right, feature) -> bool"},
    {"predictor_state_ok", predictor_state_ok, METH_VARARGS,
     "predictor_state_ok(state, ndarray, record_dtype, itemsize, left, right, feature, "
     "is_leaf, is_categorical, bitset_idx) -> bool"},
    {"predictors_ok", predictors_ok, METH_VARARGS,
     "predictors_ok(arrays, ndarray, record_dtype, itemsize, left, right, feature, is_leaf, "
     "is_categorical, bitset_idx, n_features, categorical_features) -> bool | None"},
    {"predictor_ok", predictor_ok, METH_VARARGS,
     "predictor_ok(nodes, itemsize, left, right, feature, is_leaf, is_categorical, "
     "bitset_idx, n_bitsets, n_features, categorical_features) -> bool"},
    {"strdict", strdict, METH_VARARGS,
     "strdict(text, count, values, itemsize, is_signed, release) -> dict | None | str"},
    {"prefault", prefault, METH_VARARGS, "prefault(buffer) -> bool"},
    {"fresh_pages", fresh_pages, METH_VARARGS, "fresh_pages(pagemap_fd, buffer) -> bool"},
    {"discard", discard, METH_VARARGS, "discard(buffer) -> None"},
    {"start_writeback", start_writeback, METH_VARARGS,
     "start_writeback(fd, offset, nbytes) -> bool"},
    {"address", address, METH_VARARGS, "address(buffer) -> int"},
    {"no_timestamps", no_timestamps, METH_VARARGS, "no_timestamps(tree) -> bool"},
    {"below", below, METH_VARARGS, "below(values, itemsize, is_signed, n) -> bool"},
    {"columns_ok", columns_ok, METH_O, "columns_ok(mapping) -> bool"},
    {"dict_prefetching", dict_prefetching, METH_NOARGS,
     "dict_prefetching() -> bool: whether a large strdict build prefetches its table"},
    {"env_set", env_set, METH_O, "env_set(name) -> bool"},
    {"binary_tree_ok", binary_tree_ok, METH_VARARGS,
     "binary_tree_ok(node_data, n, itemsize, start, end, is_leaf) -> bool"},
    {"binary_tree_state_ok", binary_tree_state_ok, METH_VARARGS,
     "binary_tree_state_ok(state, planes, ndarray, metric_class, node_dtype, itemsize, start, "
     "end, is_leaf) -> bool"},
    {"distance_metric_state_ok", distance_metric_state_ok, METH_VARARGS,
     "distance_metric_state_ok(state, ndarray) -> bool"},
    {"neighbors_state_ok", neighbors_state_ok, METH_VARARGS,
     "neighbors_state_ok(state, ndarray) -> bool"},
    {"libsvm_state_ok", libsvm_state_ok, METH_VARARGS, "libsvm_state_ok(state, ndarray) -> bool"},
    {"json_dump", skjar_json_dump, METH_O, "json_dump(value) -> bytes | None"},
    {"write_jar", skjar_write_jar, METH_VARARGS,
     "write_jar(fd, front, payloads, end_magic, alignment, position, started, write_chunk, "
     "writeback_chunk) -> (position, started)"},
    {"objpool_last", skjar_objpool_last, METH_NOARGS,
     "objpool_last() -> (arena bytes handed out, bytes the helper mapped in) of strdict's last pool"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "skjar._speedups",
    "Compiled twins of skjar's hot loader loops (see _speedups.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

/* Bumped whenever a helper's arguments or meaning change: _compiled.API must match, so a
 * build left over from an older checkout is not called with arguments it reads otherwise. */
#define SKJAR_SPEEDUPS_API 38

PyMODINIT_FUNC
PyInit__speedups(void)
{
    skjar_objpool_init();
    PyObject *m = PyModule_Create(&module);
    if (m != NULL &&
        (PyModule_AddIntConstant(m, "API", SKJAR_SPEEDUPS_API) < 0 || skjar_add_hasher(m) < 0 ||
         add_compiled_check(m) < 0 || skjar_state_keys_init() < 0 ||
         skjar_front_init() < 0 || skjar_walk_init() < 0)) {
        Py_CLEAR(m);
    }
    return m;
}
