/* walk(tree, dec, pairs_hook, shared, buffers, shells, declared, known, static) -> object
 *
 * static = (decoders, error, limits, arrays, objects): decoder.WALK_STATIC, the same
 * for every load; the rest is this load's Decoder, its map builder, shared objects,
 * buffer list (each taken once, set to None, and counted into dec.taken), pending
 * instances, declared names and - trusting only the defaults - trust.DEFAULT_USES
 * (else None; see default_plan).
 *
 * The object tree's parse and node dispatch in one pass, without a Python frame or a
 * msgpack.unpackb call per typed node. The twin is codec/decoder.py's Decoder.unpack
 * and Decoder._ext_hook (msgpack with an ext hook that unpacks each node's payload in
 * turn); this walks the same bytes with the same rules and calls the same handlers in
 * the same order, so a jar loads to the same objects, and fails, with or without it:
 *
 *   - msgpack as unpackb(raw=False, strict_map_key=False, use_list=True) reads it:
 *     strict UTF-8 strings, bytes, lists, maps, ints up to uint64, float32/64. No
 *     count is trusted: a list of n items needs n bytes left, a map 2n, a string or
 *     extension its length. Containers nest at most 1024 deep within one node's
 *     payload (msgpack's own stack), and each payload must be one value exactly.
 *   - a map whose keys are all str is built here (keys interned, as msgpack does,
 *     a repeated key refused); any other goes to `pairs_hook` as a list of (key,
 *     value) tuples: Decoder.safe_dict, which charges its hashing and checks spread.
 *   - every extension is a typed node: counted against limits[0], nested at most
 *     limits[1] deep; the ROOT code (limits[2]) only outermost; a code with no
 *     handler is refused before its payload is read (so msgpack's timestamp, -1, is
 *     just an unknown code). Once its payload is built, SHARED_DEF (limits[3]) /
 *     SHARED_REF (limits[4]) are resolved in `shared` when well formed (else
 *     dec.shared_node raises the precise error) and every other code calls
 *     decoders[code](dec, payload) with dec.depth set to the node's depth - except
 *     that an NDARRAY node (arrays[0]) of the common form is built here (fast_array:
 *     arrays = (code, max_ndim, inline_max, numpy.ndarray, numpy.empty, validated
 *     dtypes), taking from `buffers`).
 *
 * Errors the twin raises as `error` (CorruptFileError) are raised with its message;
 * malformed msgpack raises ValueError, which the caller reports as a malformed tree,
 * as it does msgpack's own errors. The walk keeps its own stack on the heap: a
 * crafted tree cannot overflow the C stack however deep it nests.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_hot.h"
#include <stdint.h>
#include <string.h>

#define CONTAINER_DEPTH 1024 /* msgpack's MSGPACK_EMBED_STACK_SIZE: deeper is a StackError */

enum { F_ARRAY, F_MAP, F_EXT };

typedef struct {
    int kind;
    PyObject *obj;          /* F_ARRAY: the list; F_MAP: a dict, or a list of pairs */
    PyObject *key;          /* F_MAP: the key awaiting its value */
    Py_ssize_t count, done; /* F_ARRAY / F_MAP: items (pairs) expected and read */
    int pairs;              /* F_MAP: obj is a list of (key, value) tuples */
    int code;               /* F_EXT: the node code */
    Py_ssize_t outer_end;   /* F_EXT: the enclosing payload's end */
    int outer_cdepth;       /* F_EXT: the enclosing payload's container depth */
} Frame;

typedef struct {
    const unsigned char *p;
    Py_ssize_t pos, end; /* end: where the innermost payload ends */
    Frame *stack;
    Py_ssize_t sp, cap;
    int cdepth, tdepth;  /* containers open in this payload; typed nodes open */
    long long nodes;
    PyObject *dec, *decoders, *pairs_hook, *shared, *error;
    long long max_nodes;
    int max_nesting, root, shared_def, shared_ref, in_root;
    /* The NDARRAY fast path (see fast_array); array_code is -1 without it. */
    int array_code, max_ndim, inline_max, scalar_code; /* (and NPSCALAR: see fast_scalar) */
    PyObject *ndarray, *empty, *dtypes, *buffers;
    /* The INSTANCE / RECONSTRUCT fast path (see fast_object); instance_code is -1
     * without it. */
    int instance_code, reconstruct_code, state_default, state_cython, items_none, zipdict_code;
    PyObject *plans, *setters, *plan_fn, *setter_fn, *validate_fn, *finish_fn, *skjar_error,
        *shells;
    Py_ssize_t taken; /* buffers taken from `buffers` (set to None) */
    /* default_plan and class_setter (NULL/None: ask plan_fn and setter_fn): the header's
     * declared names, trust.DEFAULT_USES for a load trusting only the defaults, and the
     * registry tables objects._plan and objects._setter read. */
    PyObject *declared, *known, *encoders, *validators, *owned, *not_stateful;
    /* The TUPLE fast path (see fast_tuple). */
    int tuple_code;
    Py_ssize_t untracked_work;
} Walk;

static PyObject *str_depth, *str_in_root, *str_shared_node, *str_expanded, *str_expand_budget,
    *str_name, *str_taken, *str_object, *str_call, *str_new, *str_setstate, *str_setstate_cython,
    *str_module, *str_qualname, *str_sklearn_base, *str_base_setstate, *str_costly,
    *str_owned_indexes;

static PyObject *
incomplete(void)
{
    PyErr_SetString(PyExc_ValueError, "Unpack failed: incomplete input");
    return NULL;
}

SKJAR_HOT static uint64_t
be(const unsigned char *q, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        v = (v << 8) | q[i];
    }
    return v;
}

/* The next n bytes of the payload, or NULL (ValueError) past its end. */
SKJAR_HOT static const unsigned char *
take(Walk *w, Py_ssize_t n)
{
    if (n < 0 || n > w->end - w->pos) {
        incomplete();
        return NULL;
    }
    const unsigned char *q = w->p + w->pos;
    w->pos += n;
    return q;
}

SKJAR_HOT static int
push(Walk *w, Frame f)
{
    if (w->sp == w->cap) {
        Py_ssize_t cap = w->cap ? 2 * w->cap : 32;
        Frame *grown = PyMem_Realloc(w->stack, (size_t)cap * sizeof(Frame));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        w->stack = grown;
        w->cap = cap;
    }
    w->stack[w->sp++] = f;
    return 0;
}

/* Open a list or map of n items (pairs); *value is set instead when n is 0. */
SKJAR_HOT static int
open_container(Walk *w, int kind, uint64_t n, PyObject **value)
{
    uint64_t need = kind == F_MAP ? 2 * n : n; /* each item takes a byte at least */
    if (n > (uint64_t)(w->end - w->pos) || need > (uint64_t)(w->end - w->pos)) {
        PyErr_Format(PyExc_ValueError, "%llu exceeds max_%s_len(%zd)", (unsigned long long)n,
                     kind == F_MAP ? "map" : "array", w->end - w->pos);
        return -1;
    }
    if (n == 0) {
        *value = kind == F_MAP ? PyDict_New() : PyList_New(0);
        return *value == NULL ? -1 : 0;
    }
    if (w->cdepth >= CONTAINER_DEPTH) {
        PyErr_SetString(PyExc_ValueError,
                        "Unpack failed: the object tree is nested too deeply (StackError)");
        return -1;
    }
    PyObject *obj = kind == F_MAP ? PyDict_New() : PyList_New((Py_ssize_t)n);
    if (obj == NULL) {
        return -1;
    }
    Frame f = {kind, obj, NULL, (Py_ssize_t)n, 0, 0, 0, 0, 0};
    if (push(w, f) < 0) {
        Py_DECREF(obj);
        return -1;
    }
    w->cdepth++;
    return 0;
}

/* Open a typed node whose payload is the next n bytes. */
SKJAR_HOT static int
open_node(Walk *w, int code, Py_ssize_t n)
{
    if (n > w->end - w->pos) {
        incomplete();
        return -1;
    }
    if (++w->nodes > w->max_nodes) {
        PyErr_Format(w->error, "the object tree has more than %lld typed nodes", w->max_nodes);
        return -1;
    }
    if (w->tdepth + 1 > w->max_nesting) {
        PyErr_Format(w->error, "typed nodes nest more than %d levels deep", w->max_nesting);
        return -1;
    }
    if (code == w->root) {
        /* Deferred states (STATE nodes) are only valid directly inside the outermost node. */
        if (w->tdepth != 0 || w->in_root) {
            PyErr_SetString(w->error, "a root node may only be the outermost node");
            return -1;
        }
        w->in_root = 1;
        if (PyObject_SetAttr(w->dec, str_in_root, Py_True) < 0) {
            return -1;
        }
    }
    /* The handler, looked up before the payload is read: a payload that is not msgpack
     * (a msgpack timestamp's) is reported as the unknown node it is. */
    PyObject *fn = NULL;
    if (code != w->shared_def && code != w->shared_ref) {
        PyObject *code_obj = PyLong_FromLong(code);
        if (code_obj == NULL) {
            return -1;
        }
        fn = PyDict_GetItemWithError(w->decoders, code_obj);
        Py_DECREF(code_obj);
        if (fn == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_Format(w->error, "unknown node code %d", code);
            }
            return -1;
        }
    }
    if (n == 0) {
        incomplete(); /* an empty payload: unpackb(b"") */
        return -1;
    }
    Frame f = {F_EXT, Py_XNewRef(fn), NULL, 0, 0, 0, code, w->end, w->cdepth};
    if (push(w, f) < 0) {
        Py_XDECREF(f.obj);
        return -1;
    }
    w->tdepth++;
    w->end = w->pos + n;
    w->cdepth = 0;
    return 0;
}

/* The validated (dtype, itemsize) for an array's descr, borrowed, or NULL (no error).
 * The key is descr_dtype's cache key: the descr string, or for a structured descr its
 * fields as tuples (a field holding a list - a sub-array's shape - is unhashable there,
 * and here). */
SKJAR_HOT static PyObject *
known_dtype(Walk *w, PyObject *descr)
{
    PyObject *key, *known;
    if (PyUnicode_CheckExact(descr)) {
        known = PyDict_GetItemWithError(w->dtypes, descr);
    } else {
        Py_ssize_t n = PyList_CheckExact(descr) ? PyList_GET_SIZE(descr) : 0;
        if (n == 0 || (key = PyTuple_New(n)) == NULL) {
            PyErr_Clear();
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *field = PyList_GET_ITEM(descr, i);
            PyObject *item = PyList_CheckExact(field) ? PyList_AsTuple(field) : NULL;
            if (item == NULL) {
                Py_DECREF(key);
                PyErr_Clear();
                return NULL;
            }
            PyTuple_SET_ITEM(key, i, item);
        }
        known = PyDict_GetItemWithError(w->dtypes, key);
        Py_DECREF(key);
    }
    if (known == NULL || !PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 2) {
        PyErr_Clear(); /* an unhashable key: not one the handler validated either */
        return NULL;
    }
    return known;
}

/* An NDARRAY node [descr, shape, fortran, data] in its common form, built as
 * numpy.ndarray(shape, dtype, buffer, 0, None, order) - what the handler
 * (codec/numpy.py: _dec_ndarray) builds: `data` is a buffer index, whose buffer is
 * taken, or inline bytes (at most inline_max), copied into a bytearray the array
 * owns; an empty array is numpy.empty(shape, dtype, order), as the handler makes it.
 * Anything else - a descr the handler has not validated, a zero-size dtype, a size
 * that does not fit - returns NULL with no error set, before a buffer is taken, and
 * the handler decides (and names the fault). */
SKJAR_HOT static PyObject *
fast_array(Walk *w, PyObject *payload)
{
    if (!PyList_CheckExact(payload) || PyList_GET_SIZE(payload) != 4) {
        return NULL;
    }
    PyObject *shape = PyList_GET_ITEM(payload, 1), *fortran = PyList_GET_ITEM(payload, 2);
    PyObject *data = PyList_GET_ITEM(payload, 3);
    if (!PyList_CheckExact(shape) || PyList_GET_SIZE(shape) > w->max_ndim ||
        (fortran != Py_True && fortran != Py_False)) {
        return NULL;
    }
    PyObject *known = known_dtype(w, PyList_GET_ITEM(payload, 0));
    if (known == NULL) {
        return NULL;
    }
    Py_ssize_t itemsize = PyLong_AsSsize_t(PyTuple_GET_ITEM(known, 1));
    if (itemsize <= 0) {
        PyErr_Clear();
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(shape), nbytes = itemsize;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *dim = PyList_GET_ITEM(shape, i);
        Py_ssize_t d = PyLong_CheckExact(dim) ? PyLong_AsSsize_t(dim) : -1;
        if (d < 0 || (d > 0 && nbytes > PY_SSIZE_T_MAX / d)) {
            PyErr_Clear();
            return NULL;
        }
        nbytes *= d;
    }
    PyObject *buf = NULL; /* a new reference once the data is taken */
    if (PyBytes_CheckExact(data)) {
        if (PyBytes_GET_SIZE(data) > w->inline_max || PyBytes_GET_SIZE(data) != nbytes) {
            return NULL;
        }
        buf = nbytes ? PyByteArray_FromStringAndSize(PyBytes_AS_STRING(data), nbytes)
                     : Py_NewRef(Py_None);
        if (buf == NULL) {
            return NULL;
        }
    } else {
        Py_ssize_t at = PyLong_CheckExact(data) ? PyLong_AsSsize_t(data) : -1;
        if (at < 0 || at >= PyList_GET_SIZE(w->buffers)) {
            PyErr_Clear();
            return NULL;
        }
        PyObject *stored = PyList_GET_ITEM(w->buffers, at);
        Py_buffer view;
        if (stored == Py_None || PyObject_GetBuffer(stored, &view, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            return NULL;
        }
        Py_ssize_t size = view.len;
        PyBuffer_Release(&view);
        if (size != nbytes) {
            return NULL;
        }
        buf = Py_NewRef(stored);
        if (PyList_SetItem(w->buffers, at, Py_NewRef(Py_None)) < 0) { /* taken: used once */
            Py_DECREF(buf);
            return NULL;
        }
        w->taken++;
    }
    PyObject *dims = PyList_AsTuple(shape);
    PyObject *order = PyUnicode_FromString(fortran == Py_True ? "F" : "C");
    PyObject *zero = PyLong_FromLong(0);
    PyObject *out = NULL;
    if (dims != NULL && order != NULL && zero != NULL) {
        if (nbytes == 0) { /* as the handler: an array of its own, no buffer */
            PyObject *args[3] = {dims, PyTuple_GET_ITEM(known, 0), order};
            out = PyObject_Vectorcall(w->empty, args, 3, NULL);
        } else {
            PyObject *args[6] = {dims, PyTuple_GET_ITEM(known, 0), buf, zero, Py_None, order};
            out = PyObject_Vectorcall(w->ndarray, args, 6, NULL);
        }
    }
    Py_XDECREF(dims);
    Py_XDECREF(order);
    Py_XDECREF(zero);
    Py_DECREF(buf);
    if (out == NULL && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_SystemError, "fast_array: no array and no error");
    }
    return out;
}

/* An NPSCALAR node [descr, data] of a (non-structured) dtype the handler has validated,
 * built as codec/numpy.py's _dec_scalar builds it: numpy.ndarray((), dtype, data)[()],
 * the value np.frombuffer(data, dtype, count=1)[0] is. A size that does not fit, or
 * anything else, returns NULL with no error set: the handler's, which names the fault.
 * (Its first run, and descr_dtype's, cost a forked process's load of svc ~20 page
 * faults.) */
SKJAR_HOT static PyObject *
fast_scalar(Walk *w, PyObject *payload)
{
    if (!PyList_CheckExact(payload) || PyList_GET_SIZE(payload) != 2 ||
        !PyUnicode_CheckExact(PyList_GET_ITEM(payload, 0)) ||
        !PyBytes_CheckExact(PyList_GET_ITEM(payload, 1))) {
        return NULL;
    }
    PyObject *known = known_dtype(w, PyList_GET_ITEM(payload, 0));
    if (known == NULL) {
        return NULL;
    }
    PyObject *data = PyList_GET_ITEM(payload, 1);
    Py_ssize_t itemsize = PyLong_AsSsize_t(PyTuple_GET_ITEM(known, 1));
    if (itemsize <= 0 || PyBytes_GET_SIZE(data) != itemsize) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *dims = PyTuple_New(0);
    PyObject *args[3] = {dims, PyTuple_GET_ITEM(known, 0), data};
    PyObject *array = dims ? PyObject_Vectorcall(w->ndarray, args, 3, NULL) : NULL;
    PyObject *out = array ? PyObject_GetItem(array, dims) : NULL;
    Py_XDECREF(array);
    Py_XDECREF(dims);
    return out;
}

/* An exact int's value if it fits a long, else -1 (no error set): for node fields that
 * must be one of a few small codes. */
SKJAR_HOT static long
small_int(PyObject *value)
{
    if (!PyLong_CheckExact(value)) {
        return -1;
    }
    long v = PyLong_AsLong(value);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
    }
    return v;
}

/* A failed step of building `name`'s object, as objects._guarded reports it: a
 * SkjarError (or anything not an Exception) passes unchanged, anything else becomes
 * `error` "NAME: STEP failed: TYPE: MESSAGE". Returns NULL. */
static PyObject *
guarded_failure(Walk *w, PyObject *name, const char *step)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception) || PyErr_ExceptionMatches(w->skjar_error)) {
        return NULL;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *type_name = PyObject_GetAttr(type, str_name);
    PyObject *message = NULL;
    if (type_name != NULL) {
        message = PyUnicode_FromFormat("%U: %s failed: %S: %S", name, step, type_name, value);
    }
    if (message != NULL) {
        PyErr_SetObject(w->error, message);
    }
    Py_XDECREF(message);
    Py_XDECREF(type_name);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return NULL;
}

/* objects._plan(dec, code, name) for a name the defaults trust, made here: (cls.__new__,
 * cls, check) for INSTANCE, (fn, None, check) for RECONSTRUCT, as a new reference; or
 * Py_None (a new reference too) for "ask plan_fn", which then answers or raises as the
 * handler would. It answers only where Decoder.require and TrustPolicy.resolve would
 * pass without a word: a load trusting only the defaults (w->known), the name declared
 * for the use in the header and trusted for it under the same module, that module
 * already imported, the attribute path resolving to a class (INSTANCE, not one with a
 * node of its own) or a callable (RECONSTRUCT). The meaning check is the registered one,
 * or for a class that keeps index arrays by reference (objects._check_for's closure) the
 * pair (check, owned), which `validate` runs as that closure would. Anything else - an
 * import, an error to word - is Python's. A forked process's first load spent ~60 page faults
 * in that Python (require, resolve, lookup and _plan's first runs). The twin is
 * objects._plan: tests/test_walk.py compares them on every default name. */
SKJAR_HOT static PyObject *
default_plan(Walk *w, int code, PyObject *name)
{
    PyObject *use = code == w->instance_code ? str_object : str_call;
    if (w->known == NULL || w->known == Py_None || !PyUnicode_CheckExact(name)) {
        Py_RETURN_NONE;
    }
    PyObject *declared = PyDict_GetItemWithError(w->declared, name);
    PyObject *known = declared ? PyDict_GetItemWithError(w->known, name) : NULL;
    if (known == NULL || !PyTuple_CheckExact(declared) || PyTuple_GET_SIZE(declared) != 2 ||
        !PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 2) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *module = PyTuple_GET_ITEM(declared, 0);
    PyObject *uses = PyTuple_GET_ITEM(declared, 1), *trusted = PyTuple_GET_ITEM(known, 1);
    if (!PyUnicode_CheckExact(module) || !PyUnicode_CheckExact(PyTuple_GET_ITEM(known, 0)) ||
        PyUnicode_Compare(module, PyTuple_GET_ITEM(known, 0)) != 0 ||
        !PyFrozenSet_CheckExact(uses) || !PyFrozenSet_CheckExact(trusted) ||
        PySet_Contains(uses, use) != 1 || PySet_Contains(trusted, use) != 1) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    /* The defaults name "module.qualname" with the module apart: the rest is the path. */
    Py_ssize_t skip = PyUnicode_GET_LENGTH(module) + 1, end = PyUnicode_GET_LENGTH(name);
    PyObject *obj = PyDict_GetItemWithError(PyImport_GetModuleDict(), module);
    if (obj == NULL || skip >= end ||
        PyUnicode_Tailmatch(name, module, 0, skip - 1, -1) != 1 ||
        PyUnicode_READ_CHAR(name, skip - 1) != '.') {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    Py_INCREF(obj);
    while (skip < end) {
        Py_ssize_t dot = PyUnicode_FindChar(name, '.', skip, end, 1);
        if (dot == -2) {
            Py_DECREF(obj);
            return NULL;
        }
        Py_ssize_t stop = dot < 0 ? end : dot;
        PyObject *part = PyUnicode_Substring(name, skip, stop);
        PyObject *next = part ? PyObject_GetAttr(obj, part) : NULL;
        Py_XDECREF(part);
        Py_SETREF(obj, next);
        if (obj == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError) ||
                PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear(); /* resolve's getattr raises it again, and words it */
                Py_RETURN_NONE;
            }
            return NULL; /* (a KeyboardInterrupt, a MemoryError) */
        }
        skip = stop + 1;
    }
    int instance = code == w->instance_code;
    PyObject *check = PyDict_GetItemWithError(w->validators, name);
    PyObject *owned = check ? PyDict_GetItemWithError(w->owned, name) : NULL;
    int in_encoders = instance && PyType_Check(obj) ? PyDict_Contains(w->encoders, obj) : 0;
    if (PyErr_Occurred() || in_encoders != 0 || PyModule_Check(obj) ||
        (instance ? !PyType_Check(obj) : !PyCallable_Check(obj))) {
        Py_DECREF(obj);
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *make = instance ? PyObject_GetAttr(obj, str_new) : Py_NewRef(obj);
    PyObject *noted = make && owned ? PyTuple_Pack(2, check, owned) : NULL;
    PyObject *plan = make && (noted || !owned)
                         ? PyTuple_Pack(3, make, instance ? obj : Py_None,
                                        noted ? noted : check ? check : Py_None)
                         : NULL;
    Py_XDECREF(noted);
    Py_XDECREF(make);
    Py_DECREF(obj);
    return plan;
}

/* getattr(obj, name, None) as a new reference: NULL only with an error other than
 * AttributeError set. */
SKJAR_HOT static PyObject *
attr_or_none(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        value = Py_NewRef(Py_None);
    }
    return value;
}

/* objects._setter(cls), made here: None for a type that takes no state, else
 * (__setstate__, whether it is sklearn's BaseEstimator.__setstate__, __setstate_cython__)
 * with None for one it lacks; Ellipsis for "ask setter_fn" (a __module__ or __qualname__
 * that is not a plain str); a new reference, or NULL with an error set. Only its
 * first run's Python (~10 page faults in a forked process) is saved: the answer is the
 * same. The twin is objects._setter (tests/test_walk.py compares them on every default
 * class). */
SKJAR_HOT static PyObject *
class_setter(Walk *w, PyObject *cls)
{
    int stateless = PyObject_IsSubclass(cls, w->not_stateful);
    if (stateless != 0) {
        return stateless < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *setstate = attr_or_none(cls, str_setstate);
    PyObject *cython = setstate ? attr_or_none(cls, str_setstate_cython) : NULL;
    PyObject *module = cython && setstate != Py_None ? attr_or_none(setstate, str_module) : NULL;
    PyObject *qualname = module ? attr_or_none(setstate, str_qualname) : NULL;
    PyObject *out = NULL;
    if (cython != NULL && (setstate == Py_None || qualname != NULL)) {
        if (setstate != Py_None &&
            ((module != Py_None && !PyUnicode_CheckExact(module)) ||
             (qualname != Py_None && !PyUnicode_CheckExact(qualname)))) {
            out = Py_NewRef(Py_Ellipsis); /* not plain str: _updates_dict's == decides */
        } else {
            int base = setstate != Py_None && module != Py_None && qualname != Py_None &&
                       PyUnicode_Compare(module, str_sklearn_base) == 0 &&
                       PyUnicode_Compare(qualname, str_base_setstate) == 0;
            out = PyTuple_Pack(3, setstate, base ? Py_True : Py_False, cython);
        }
    }
    Py_XDECREF(setstate);
    Py_XDECREF(cython);
    Py_XDECREF(module);
    Py_XDECREF(qualname);
    return out;
}

/* `plan_fn(dec, code, name)` or `setter_fn(type)` once per key, cached in `cache`:
 * borrowed, Py_None where the fast path does not apply, NULL with an error set. */
SKJAR_HOT static PyObject *
cached_plan(Walk *w, PyObject *cache, PyObject *key, PyObject *fn, int code)
{
    PyObject *plan = PyDict_GetItemWithError(cache, key);
    if (plan != NULL || PyErr_Occurred()) {
        return plan;
    }
    if (code >= 0) {
        plan = default_plan(w, code, key);
        if (plan == Py_None) {
            Py_DECREF(plan);
            PyObject *code_obj = PyLong_FromLong(code);
            plan = code_obj ? PyObject_CallFunctionObjArgs(fn, w->dec, code_obj, key, NULL)
                            : NULL;
            Py_XDECREF(code_obj);
        }
    } else {
        plan = class_setter(w, key);
        if (plan == Py_Ellipsis) {
            Py_SETREF(plan, PyObject_CallOneArg(fn, key));
        }
    }
    if (plan == NULL) {
        return NULL;
    }
    int failed = PyDict_SetItem(cache, key, plan);
    Py_DECREF(plan); /* the cache holds it */
    return failed ? NULL : plan;
}

/* Charge building a container of `count` items from `items` to the load, as
 * Decoder.expand(items, what) does; past the budget expand itself raises its error.
 * 0, or -1 with an error set. */
SKJAR_HOT static int
expand(Walk *w, PyObject *items, Py_ssize_t count, PyObject *what)
{
    PyObject *used = PyObject_GetAttr(w->dec, str_expanded);
    PyObject *budget = used ? PyObject_GetAttr(w->dec, str_expand_budget) : NULL;
    long long u = used ? PyLong_AsLongLong(used) : -1, b = budget ? PyLong_AsLongLong(budget) : -1;
    Py_XDECREF(used);
    Py_XDECREF(budget);
    if (PyErr_Occurred()) {
        return -1;
    }
    u += count;
    if (u > b) {
        PyObject *out = PyObject_CallMethod(w->dec, "expand", "OO", items, what);
        Py_XDECREF(out);
        return -1;
    }
    PyObject *now = PyLong_FromLongLong(u);
    int failed = now == NULL || PyObject_SetAttr(w->dec, str_expanded, now) < 0;
    Py_XDECREF(now);
    return failed ? -1 : 0;
}

/* objects._validate(dec, name, args, state) for a dict, tuple or None state, with no
 * object awaiting its state (else the Python function itself runs); `check` as the plan
 * gives it (see default_plan). 0, or -1 with an error. */
SKJAR_HOT static int
validate(Walk *w, PyObject *name, PyObject *args, PyObject *state, PyObject *check)
{
    if ((state != Py_None && !PyDict_CheckExact(state) && !PyTuple_CheckExact(state)) ||
        (check != Py_None && PyDict_GET_SIZE(w->shells) != 0)) {
        PyObject *out = PyObject_CallFunctionObjArgs(w->validate_fn, w->dec, name, args, state,
                                                     NULL);
        Py_XDECREF(out);
        return out == NULL ? -1 : 0;
    }
    if (PyDict_CheckExact(state) && expand(w, state, PyDict_GET_SIZE(state), name) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; PyTuple_CheckExact(state) && i < PyTuple_GET_SIZE(state); i++) {
        PyObject *part = PyTuple_GET_ITEM(state, i);
        if (PyDict_CheckExact(part) && expand(w, part, PyDict_GET_SIZE(part), name) < 0) {
            return -1;
        }
    }
    if (check == Py_None) {
        return 0;
    }
    /* (check, owned): objects._check_for's check_and_note, which then notes the index
     * arrays the object keeps, for the end of the load to prove them its own. */
    int noting = PyTuple_CheckExact(check) && PyTuple_GET_SIZE(check) == 2;
    PyObject *out = PyObject_CallFunctionObjArgs(noting ? PyTuple_GET_ITEM(check, 0) : check,
                                                 args, state, NULL);
    if (out == NULL || !noting) {
        Py_XDECREF(out);
        return out == NULL ? -1 : 0;
    }
    Py_DECREF(out);
    PyObject *arrays = PyObject_CallFunctionObjArgs(PyTuple_GET_ITEM(check, 1), args, state,
                                                    NULL);
    PyObject *note = arrays ? PyTuple_Pack(2, name, arrays) : NULL;
    PyObject *notes = note ? PyObject_GetAttr(w->dec, str_owned_indexes) : NULL;
    int failed = notes == NULL || PyList_Append(notes, note) < 0;
    Py_XDECREF(notes);
    Py_XDECREF(note);
    Py_XDECREF(arrays);
    return failed ? -1 : 0;
}

/* An INSTANCE node [name, mode, state, kind, items] or a RECONSTRUCT node [name, args,
 * mode, state, kind, items] whose name is a str (and args a list), built as
 * codec/objects.py's handlers build it, in their order: the object made (cls.__new__(cls)
 * or fn(*args)), its meaning check, then its state - BaseEstimator-style or any other
 * __setstate__ given a dict. `plan_fn` decides, once per name and load, whether a name
 * may take this path (and resolves it through the header and the trust policy, raising
 * as the handler would); `setter_fn`, once per class, how its state is set. Anything
 * unusual after the object exists - another state mode, items, a class without
 * __setstate__ - goes to objects.finish, the handlers' own last steps. Returns NULL
 * with no error set for a node the handler must build from the start. */
SKJAR_HOT static PyObject *
fast_object(Walk *w, int code, PyObject *payload)
{
    int instance = code == w->instance_code;
    Py_ssize_t n = instance ? 5 : 6;
    if (!PyList_CheckExact(payload) || PyList_GET_SIZE(payload) != n ||
        !PyUnicode_CheckExact(PyList_GET_ITEM(payload, 0)) ||
        (!instance && !PyList_CheckExact(PyList_GET_ITEM(payload, 1)))) {
        return NULL;
    }
    PyObject *name = PyList_GET_ITEM(payload, 0);
    PyObject *mode = PyList_GET_ITEM(payload, n - 4), *state = PyList_GET_ITEM(payload, n - 3);
    PyObject *kind = PyList_GET_ITEM(payload, n - 2), *items = PyList_GET_ITEM(payload, n - 1);
    PyObject *plan = cached_plan(w, w->plans, name, w->plan_fn, code);
    if (plan == NULL || plan == Py_None) {
        return NULL; /* an error (raised as the handler would), or the handler's node */
    }
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != 3) {
        PyErr_SetString(PyExc_SystemError, "fast_object: malformed plan");
        return NULL;
    }
    PyObject *make = PyTuple_GET_ITEM(plan, 0), *cls = PyTuple_GET_ITEM(plan, 1);
    PyObject *check = PyTuple_GET_ITEM(plan, 2);
    PyObject *args = NULL, *obj = NULL, *out = NULL;
    if (instance) {
        args = PyTuple_New(0);
        obj = args ? PyObject_CallOneArg(make, cls) : NULL;
        if (obj == NULL) {
            guarded_failure(w, name, "creating the instance");
            goto done;
        }
        if ((PyObject *)Py_TYPE(obj) != cls) {
            PyObject *type_name = PyObject_GetAttr((PyObject *)Py_TYPE(obj), str_name);
            if (type_name != NULL) {
                PyErr_Format(w->error, "%U.__new__ returned a %S", name, type_name);
                Py_DECREF(type_name);
            }
            goto done;
        }
        if (validate(w, name, args, state, check) < 0) {
            goto done;
        }
    } else {
        args = Py_NewRef(PyList_GET_ITEM(payload, 1));
        if (validate(w, name, args, state, check) < 0) {
            goto done;
        }
        PyObject *call_args = PyList_AsTuple(args);
        obj = call_args ? PyObject_Call(make, call_args, NULL) : NULL;
        Py_XDECREF(call_args);
        if (obj == NULL) {
            guarded_failure(w, name, "the call");
            goto done;
        }
    }
    /* The state setter: a class's __setstate__ (default mode; BaseEstimator's only for
     * a dict) or __setstate_cython__ (Cython mode), given the state, per setter_fn's
     * answer for the class: (__setstate__, whether BaseEstimator's,
     * __setstate_cython__), None where absent. */
    PyObject *set_fn = NULL;
    int names = 0;
    long m = small_int(mode);
    if ((m == w->state_default || m == w->state_cython) && small_int(kind) == w->items_none &&
        items == Py_None) {
        PyObject *setter = cached_plan(w, w->setters, (PyObject *)Py_TYPE(obj), w->setter_fn, -1);
        if (setter == NULL) {
            goto done;
        }
        if (PyTuple_CheckExact(setter) && PyTuple_GET_SIZE(setter) == 3) {
            set_fn = PyTuple_GET_ITEM(setter, m == w->state_default ? 0 : 2);
            names = m == w->state_default && PyTuple_GET_ITEM(setter, 1) == Py_True;
            if (names && !PyDict_CheckExact(state)) {
                set_fn = NULL; /* _check_attribute_map decides, in _finish */
            }
        }
    }
    if (set_fn == NULL || set_fn == Py_None) {
        out = PyObject_CallFunctionObjArgs(w->finish_fn, w->dec, obj, name, mode, state, kind,
                                           items, NULL);
        goto done;
    }
    if (names) { /* BaseEstimator's __setstate__ updates __dict__: keys must be names */
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(state, &pos, &key, &value)) {
            if (!PyUnicode_CheckExact(key)) {
                PyErr_Format(w->error, "%U: state must map attribute names to values", name);
                goto done;
            }
        }
    }
    /* A setter may change the container it is given (BaseEstimator's pops
     * "_sklearn_version"), and the file may have placed that container elsewhere too,
     * already checked there: a dict or list state goes as a copy (objects._apart). */
    PyObject *given = PyDict_CheckExact(state)   ? PyDict_Copy(state)
                      : PyList_CheckExact(state) ? PyList_GetSlice(state, 0, PY_SSIZE_T_MAX)
                                                 : Py_NewRef(state);
    if (given == NULL) {
        goto done;
    }
    PyObject *set = PyObject_CallFunctionObjArgs(set_fn, obj, given, NULL);
    Py_DECREF(given);
    if (set == NULL) {
        guarded_failure(w, name, "setting its state");
        goto done;
    }
    Py_DECREF(set);
    out = Py_NewRef(obj);
done:
    Py_XDECREF(args);
    Py_XDECREF(obj);
    return out;
}

/* A TUPLE node [items...] of at most w->untracked_work items, none of them a tuple,
 * while no value's hashing cost is on record (dec._costly empty), built as
 * builtins._dec_tuple builds it: charged to the load, then tuple(payload), which
 * Decoder.track_tuple would leave unrecorded (depth 1, work <= _UNTRACKED_WORK). A KD
 * tree's state is one: the handler's first run cost a forked process ~15 page faults.
 * Anything else returns NULL with no error set: the handler's. */
SKJAR_HOT static PyObject *
fast_tuple(Walk *w, PyObject *payload)
{
    if (!PyList_CheckExact(payload) || PyList_GET_SIZE(payload) > w->untracked_work) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(payload);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyTuple_Check(PyList_GET_ITEM(payload, i))) {
            return NULL;
        }
    }
    PyObject *costly = PyObject_GetAttr(w->dec, str_costly);
    if (costly == NULL) {
        return NULL;
    }
    int untracked = PyDict_CheckExact(costly) && PyDict_GET_SIZE(costly) == 0;
    Py_DECREF(costly);
    if (!untracked) {
        return NULL;
    }
    PyObject *what = PyUnicode_FromString("a tuple");
    int charged = what != NULL && expand(w, payload, n, what) == 0;
    Py_XDECREF(what);
    return charged ? PyList_AsTuple(payload) : NULL;
}

/* A ZIPDICT node [keys, values] of str keys, built as builtins._dec_zipdict builds it:
 * charged to the load, then dict(zip(keys, values)), a repeated key refused with the
 * handler's message. Anything else returns NULL with no error set: the handler's. */
SKJAR_HOT static PyObject *
fast_zipdict(Walk *w, PyObject *payload)
{
    if (!PyList_CheckExact(payload) || PyList_GET_SIZE(payload) != 2) {
        return NULL;
    }
    PyObject *keys = PyList_GET_ITEM(payload, 0), *values = PyList_GET_ITEM(payload, 1);
    if (!PyList_CheckExact(keys) || !PyList_CheckExact(values) ||
        PyList_GET_SIZE(keys) != PyList_GET_SIZE(values)) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(keys, i))) {
            return NULL;
        }
    }
    PyObject *what = PyUnicode_FromString("a keyed dict");
    if (what == NULL || expand(w, keys, n, what) < 0) {
        Py_XDECREF(what);
        return NULL;
    }
    Py_DECREF(what);
#if PY_VERSION_HEX < 0x030D0000
    PyObject *out = _PyDict_NewPresized(n);
#else
    PyObject *out = PyDict_New();
#endif
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        if (PyDict_SetItem(out, PyList_GET_ITEM(keys, i), PyList_GET_ITEM(values, i)) < 0) {
            Py_CLEAR(out);
        }
    }
    if (out != NULL && PyDict_GET_SIZE(out) != n) {
        Py_CLEAR(out);
        PyErr_SetString(w->error, "keyed dict: keys must be distinct (duplicate keys)");
    }
    return out;
}

SKJAR_HOT static PyObject *
call_node(Walk *w, int code, PyObject *fn, PyObject *payload)
{
    if (code == w->tuple_code) {
        PyObject *out = fast_tuple(w, payload);
        if (out != NULL || PyErr_Occurred()) {
            return out;
        }
    }
    if (code == w->zipdict_code) {
        PyObject *out = fast_zipdict(w, payload);
        if (out != NULL || PyErr_Occurred()) {
            return out;
        }
    }
    if (code == w->scalar_code) {
        PyObject *out = fast_scalar(w, payload);
        if (out != NULL || PyErr_Occurred()) {
            return out;
        }
    }
    if (code == w->array_code) {
        PyObject *out = fast_array(w, payload);
        if (out != NULL || PyErr_Occurred()) {
            return out;
        }
    }
    if (code == w->instance_code || code == w->reconstruct_code) {
        PyObject *out = fast_object(w, code, payload);
        if (out != NULL || PyErr_Occurred()) {
            return out;
        }
    }
    if (fn != NULL) {
        PyObject *out = NULL;
        PyObject *depth = PyLong_FromLong(w->tdepth); /* the node's own depth */
        if (depth != NULL && PyObject_SetAttr(w->dec, str_depth, depth) == 0) {
            PyObject *args[2] = {w->dec, payload};
            out = PyObject_Vectorcall(fn, args, 2, NULL);
        }
        Py_XDECREF(depth);
        return out;
    }
    if (code == w->shared_ref && PyLong_CheckExact(payload)) {
        PyObject *out = PyDict_GetItemWithError(w->shared, payload);
        if (out != NULL || PyErr_Occurred()) {
            return Py_XNewRef(out);
        }
    }
    if (code == w->shared_def && PyList_CheckExact(payload) && PyList_GET_SIZE(payload) == 2 &&
        PyLong_CheckExact(PyList_GET_ITEM(payload, 0))) {
        PyObject *ident = PyList_GET_ITEM(payload, 0), *value = PyList_GET_ITEM(payload, 1);
        int known = PyDict_Contains(w->shared, ident);
        if (known < 0 || (known == 0 && PyDict_SetItem(w->shared, ident, value) < 0)) {
            return NULL;
        }
        if (known == 0) {
            return Py_NewRef(value);
        }
    }
    /* A malformed shared node: the twin raises the precise error. */
    PyObject *code_obj = PyLong_FromLong(code);
    if (code_obj == NULL) {
        return NULL;
    }
    PyObject *out = PyObject_CallMethodObjArgs(w->dec, str_shared_node, code_obj, payload, NULL);
    Py_DECREF(code_obj);
    return out;
}

/* Build the node with its handler `fn` (NULL for shared nodes): the payload and fn (new
 * references) are consumed. */
SKJAR_HOT static PyObject *
build_node(Walk *w, int code, PyObject *fn, PyObject *payload)
{
    PyObject *out = call_node(w, code, fn, payload);
    Py_XDECREF(fn);
    Py_DECREF(payload);
    return out;
}

/* Add a finished value to the map on top of the stack. */
SKJAR_HOT static int
map_add(Walk *w, Frame *f, PyObject *value)
{
    if (f->key == NULL) {
        if (PyUnicode_CheckExact(value)) {
            PyUnicode_InternInPlace(&value);
        }
        f->key = value;
        return 0;
    }
    PyObject *key = f->key;
    f->key = NULL;
    if (!f->pairs && !PyUnicode_CheckExact(key)) {
        /* A key that is not a str: the rest goes to pairs_hook, which judges its hashing. */
        PyObject *items = PyDict_Items(f->obj);
        if (items == NULL) {
            goto fail;
        }
        Py_SETREF(f->obj, items);
        f->pairs = 1;
    }
    if (f->pairs) {
        PyObject *pair = PyTuple_Pack(2, key, value);
        int bad = pair == NULL || PyList_Append(f->obj, pair) < 0;
        Py_XDECREF(pair);
        if (bad) {
            goto fail;
        }
    } else {
        Py_ssize_t before = PyDict_GET_SIZE(f->obj);
        if (PyDict_SetItem(f->obj, key, value) < 0) {
            goto fail;
        }
        if (PyDict_GET_SIZE(f->obj) == before) {
            PyErr_SetString(w->error, "a map has duplicate keys");
            goto fail;
        }
    }
    Py_DECREF(key);
    Py_DECREF(value);
    f->done++;
    return 0;
fail:
    Py_DECREF(key);
    Py_DECREF(value);
    return -1;
}

/* Parse one value at w->pos: a scalar into *value, or open a container or node. */
SKJAR_HOT static int
read_value(Walk *w, PyObject **value)
{
    const unsigned char *q = take(w, 1);
    if (q == NULL) {
        return -1;
    }
    const unsigned char b = *q;
    uint64_t n;
    if (b <= 0x7f) {
        *value = PyLong_FromLong(b);
    } else if (b >= 0xe0) {
        *value = PyLong_FromLong((long)(int8_t)b);
    } else if (b <= 0x8f) {
        return open_container(w, F_MAP, b & 0x0f, value);
    } else if (b <= 0x9f) {
        return open_container(w, F_ARRAY, b & 0x0f, value);
    } else if (b <= 0xbf) {
        n = b & 0x1f;
        goto str;
    } else {
        switch (b) {
        case 0xc0: *value = Py_NewRef(Py_None); break;
        case 0xc2: *value = Py_NewRef(Py_False); break;
        case 0xc3: *value = Py_NewRef(Py_True); break;
        case 0xc4: case 0xc5: case 0xc6: {
            int width = 1 << (b - 0xc4);
            if ((q = take(w, width)) == NULL) return -1;
            n = be(q, width);
            if (n > (uint64_t)(w->end - w->pos)) return (incomplete(), -1);
            q = take(w, (Py_ssize_t)n);
            *value = PyBytes_FromStringAndSize((const char *)q, (Py_ssize_t)n);
            break;
        }
        case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: {
            if (b >= 0xd4) {
                n = (uint64_t)1 << (b - 0xd4);
            } else {
                int width = 1 << (b - 0xc7);
                if ((q = take(w, width)) == NULL) return -1;
                n = be(q, width);
            }
            if ((q = take(w, 1)) == NULL) return -1;
            if (n > (uint64_t)(w->end - w->pos)) return (incomplete(), -1);
            return open_node(w, (int)(int8_t)*q, (Py_ssize_t)n);
        }
        case 0xca: {
            if ((q = take(w, 4)) == NULL) return -1;
            uint32_t bits = (uint32_t)be(q, 4);
            float f;
            memcpy(&f, &bits, 4);
            *value = PyFloat_FromDouble((double)f);
            break;
        }
        case 0xcb: {
            if ((q = take(w, 8)) == NULL) return -1;
            uint64_t bits = be(q, 8);
            double d;
            memcpy(&d, &bits, 8);
            *value = PyFloat_FromDouble(d);
            break;
        }
        case 0xcc: case 0xcd: case 0xce: case 0xcf: {
            int width = 1 << (b - 0xcc);
            if ((q = take(w, width)) == NULL) return -1;
            *value = PyLong_FromUnsignedLongLong(be(q, width));
            break;
        }
        case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
            int width = 1 << (b - 0xd0);
            if ((q = take(w, width)) == NULL) return -1;
            uint64_t raw = be(q, width);
            int64_t v = width == 1 ? (int8_t)raw : width == 2 ? (int16_t)raw
                      : width == 4 ? (int32_t)raw : (int64_t)raw;
            *value = PyLong_FromLongLong(v);
            break;
        }
        case 0xd9: case 0xda: case 0xdb: {
            int width = 1 << (b - 0xd9);
            if ((q = take(w, width)) == NULL) return -1;
            n = be(q, width);
            goto str;
        }
        case 0xdc: case 0xdd: {
            int width = b == 0xdc ? 2 : 4;
            if ((q = take(w, width)) == NULL) return -1;
            return open_container(w, F_ARRAY, be(q, width), value);
        }
        case 0xde: case 0xdf: {
            int width = b == 0xde ? 2 : 4;
            if ((q = take(w, width)) == NULL) return -1;
            return open_container(w, F_MAP, be(q, width), value);
        }
        default: /* 0xc1, never used */
            PyErr_SetString(PyExc_ValueError, "Unpack failed: 0xc1 is not a msgpack type (FormatError)");
            return -1;
        }
    }
    return *value == NULL ? -1 : 0;
str:
    if (n > (uint64_t)(w->end - w->pos)) {
        incomplete();
        return -1;
    }
    q = take(w, (Py_ssize_t)n);
    *value = PyUnicode_DecodeUTF8((const char *)q, (Py_ssize_t)n, NULL);
    return *value == NULL ? -1 : 0;
}

SKJAR_HOT static PyObject *
run(Walk *w)
{
    for (;;) {
        PyObject *value = NULL;
        if (read_value(w, &value) < 0) {
            return NULL;
        }
        if (value == NULL) {
            continue; /* a container or node was opened: read its first item */
        }
        /* A value is complete: hand it to what is open, closing what it completes. */
        for (;;) {
            if (w->sp == 0) {
                if (w->pos != w->end) {
                    Py_DECREF(value);
                    PyErr_SetString(PyExc_ValueError, "unpack(b) received extra data.");
                    return NULL;
                }
                return value;
            }
            Frame *f = &w->stack[w->sp - 1];
            if (f->kind == F_ARRAY) {
                PyList_SET_ITEM(f->obj, f->done, value);
                if (++f->done < f->count) {
                    break;
                }
            } else if (f->kind == F_MAP) {
                if (map_add(w, f, value) < 0) {
                    return NULL;
                }
                if (f->key != NULL || f->done < f->count) {
                    break;
                }
                if (f->pairs) {
                    PyObject *built = PyObject_CallOneArg(w->pairs_hook, f->obj);
                    if (built == NULL) {
                        return NULL;
                    }
                    Py_SETREF(f->obj, built);
                }
            } else { /* F_EXT: the payload is complete */
                if (w->pos != w->end) {
                    Py_DECREF(value);
                    PyErr_SetString(PyExc_ValueError, "unpack(b) received extra data.");
                    return NULL;
                }
                int code = f->code;
                PyObject *fn = f->obj; /* the frame's reference moves */
                w->end = f->outer_end;
                w->cdepth = f->outer_cdepth;
                w->sp--;
                value = build_node(w, code, fn, value);
                w->tdepth--;
                if (value == NULL) {
                    return NULL;
                }
                continue;
            }
            value = f->obj; /* a finished list or map: the frame's reference moves */
            f->obj = NULL;
            w->sp--;
            w->cdepth--;
        }
    }
}

/* The attribute and text names the walker uses, interned once, when the module is
 * imported (as the front's keys are): interned on a process's first walk, they were
 * written into the interpreter's table of interned strings in the timed first load of a
 * process forked from one that never loaded, a copy-on-write page fault apiece.
 * 0, or -1 with an error. */
int
skjar_walk_init(void)
{
    if (str_base_setstate != NULL) {
        return 0;
    }
    str_depth = PyUnicode_InternFromString("depth");
    str_in_root = PyUnicode_InternFromString("in_root");
    str_shared_node = PyUnicode_InternFromString("shared_node");
    str_expanded = PyUnicode_InternFromString("_expanded");
    str_expand_budget = PyUnicode_InternFromString("_expand_budget");
    str_name = PyUnicode_InternFromString("__name__");
    str_taken = PyUnicode_InternFromString("taken");
    str_object = PyUnicode_InternFromString("object");
    str_call = PyUnicode_InternFromString("call");
    str_new = PyUnicode_InternFromString("__new__");
    str_setstate = PyUnicode_InternFromString("__setstate__");
    str_setstate_cython = PyUnicode_InternFromString("__setstate_cython__");
    str_module = PyUnicode_InternFromString("__module__");
    str_qualname = PyUnicode_InternFromString("__qualname__");
    str_sklearn_base = PyUnicode_InternFromString("sklearn.base");
    str_costly = PyUnicode_InternFromString("_costly");
    str_base_setstate = PyUnicode_InternFromString("BaseEstimator.__setstate__");
    str_owned_indexes = PyUnicode_InternFromString("owned_indexes");
    return str_owned_indexes && str_depth && str_in_root && str_shared_node && str_expanded && str_expand_budget &&
                   str_name && str_taken && str_object && str_call && str_new && str_setstate &&
                   str_setstate_cython && str_module && str_qualname && str_sklearn_base &&
                   str_costly && str_base_setstate
               ? 0
               : -1;
}

/* `tuple[i]`, borrowed, if it is exactly of `type`; else NULL (no error set). */
SKJAR_HOT static PyObject *
static_item(PyObject *tuple, Py_ssize_t i, PyTypeObject *type)
{
    PyObject *item = PyTuple_GET_ITEM(tuple, i);
    return Py_IS_TYPE(item, type) ? item : NULL;
}

SKJAR_HOT static int
static_ints(PyObject *tuple, Py_ssize_t from, int *const *out, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, from + i);
        int overflow = 0;
        long v = PyLong_CheckExact(item) ? PyLong_AsLongAndOverflow(item, &overflow) : -1;
        if (!PyLong_CheckExact(item) || overflow || v < INT_MIN || v > INT_MAX) {
            return -1;
        }
        *out[i] = (int)v;
    }
    return 0;
}

/* The object steps, WALK_STATIC[4]: (iiiiiiOOOOOO!O!O!O!in). */
SKJAR_HOT static int
parse_steps(Walk *w, PyObject *steps)
{
    if (!PyTuple_CheckExact(steps) || PyTuple_GET_SIZE(steps) != 17) {
        return -1;
    }
    int *const ints[6] = {&w->instance_code, &w->reconstruct_code, &w->state_default,
                          &w->state_cython, &w->items_none, &w->zipdict_code};
    int *const tuple_code[1] = {&w->tuple_code};
    PyObject *work = PyTuple_GET_ITEM(steps, 16);
    if (static_ints(steps, 0, ints, 6) < 0 || static_ints(steps, 15, tuple_code, 1) < 0 ||
        !PyLong_CheckExact(work)) {
        return -1;
    }
    w->plan_fn = PyTuple_GET_ITEM(steps, 6);
    w->setter_fn = PyTuple_GET_ITEM(steps, 7);
    w->validate_fn = PyTuple_GET_ITEM(steps, 8);
    w->finish_fn = PyTuple_GET_ITEM(steps, 9);
    w->skjar_error = PyTuple_GET_ITEM(steps, 10);
    w->encoders = static_item(steps, 11, &PyDict_Type);
    w->validators = static_item(steps, 12, &PyDict_Type);
    w->owned = static_item(steps, 13, &PyDict_Type);
    w->not_stateful = static_item(steps, 14, &PyTuple_Type);
    w->untracked_work = PyLong_AsSsize_t(work);
    if (w->untracked_work == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return w->encoders && w->validators && w->owned && w->not_stateful ? 0 : -1;
}

/* decoder.WALK_STATIC read in place, as `(dict, error, (limits), (arrays), (steps))` -
 * or its steps alone, for walk_plan and walk_setter: PyArg_ParseTuple's nested formats
 * take a reference to each item of a nested tuple (PySequence_GetItem), and in a process
 * forked from one that never loaded, each item's reference count written was a page
 * copied (12 a load). This reads items and values only. 0, or -1 with a TypeError. */
SKJAR_HOT static int
parse_static(Walk *w, PyObject *static_, int steps_alone)
{
    PyObject *limits, *arrays;
    int ok = PyTuple_CheckExact(static_) && PyTuple_GET_SIZE(static_) == 5 &&
             parse_steps(w, PyTuple_GET_ITEM(static_, 4)) == 0;
    if (ok && !steps_alone) {
        limits = PyTuple_GET_ITEM(static_, 2);
        arrays = PyTuple_GET_ITEM(static_, 3);
        int *const limit_ints[4] = {&w->max_nesting, &w->root, &w->shared_def, &w->shared_ref};
        int *const array_ints[3] = {&w->array_code, &w->max_ndim, &w->inline_max};
        int *const scalar[1] = {&w->scalar_code};
        w->decoders = static_item(static_, 0, &PyDict_Type);
        w->error = PyTuple_GET_ITEM(static_, 1);
        ok = w->decoders != NULL && PyTuple_CheckExact(limits) &&
             PyTuple_GET_SIZE(limits) == 5 && PyLong_CheckExact(PyTuple_GET_ITEM(limits, 0)) &&
             static_ints(limits, 1, limit_ints, 4) == 0 && PyTuple_CheckExact(arrays) &&
             PyTuple_GET_SIZE(arrays) == 7 && static_ints(arrays, 0, array_ints, 3) == 0 &&
             static_ints(arrays, 6, scalar, 1) == 0 &&
             (w->dtypes = static_item(arrays, 5, &PyDict_Type)) != NULL;
        if (ok) {
            w->max_nodes = PyLong_AsLongLong(PyTuple_GET_ITEM(limits, 0));
            w->ndarray = PyTuple_GET_ITEM(arrays, 3);
            w->empty = PyTuple_GET_ITEM(arrays, 4);
            ok = !(w->max_nodes == -1 && PyErr_Occurred());
        }
    }
    if (!ok) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "walk: the static tuple is not decoder.walk_static()'s");
        return -1;
    }
    return 0;
}

/* walk_plan(declared, known, static, code, name) -> plan | None and walk_setter(static,
 * cls) -> setter: default_plan and class_setter alone, for their twin tests
 * (tests/test_walk.py), on a walk with only their inputs. */
PyObject *
skjar_walk_plan(PyObject *self, PyObject *args)
{
    Walk w;
    memset(&w, 0, sizeof w);
    PyObject *static_, *name;
    int code;
    if (!PyArg_ParseTuple(args, "O!OO!iO:walk_plan", &PyDict_Type, &w.declared, &w.known,
                          &PyTuple_Type, &static_, &code, &name) ||
        parse_static(&w, static_, 1) < 0) {
        return NULL;
    }
    if (code != w.instance_code && code != w.reconstruct_code) {
        PyErr_SetString(PyExc_ValueError, "walk_plan: code must be INSTANCE or RECONSTRUCT");
        return NULL;
    }
    return default_plan(&w, code, name);
}

PyObject *
skjar_walk_setter(PyObject *self, PyObject *args)
{
    Walk w;
    memset(&w, 0, sizeof w);
    PyObject *static_, *cls;
    if (!PyArg_ParseTuple(args, "O!O:walk_setter", &PyTuple_Type, &static_, &cls) ||
        parse_static(&w, static_, 1) < 0) {
        return NULL;
    }
    return class_setter(&w, cls);
}

SKJAR_HOT PyObject *
skjar_walk(PyObject *self, PyObject *args)
{
    Py_buffer tree;
    Walk w;
    memset(&w, 0, sizeof w);
    /* (The per-load objects first; `static` is decoder.WALK_STATIC, built once.) */
    PyObject *static_;
    if (!PyArg_ParseTuple(args, "y*OOO!O!O!O!OO:walk", &tree, &w.dec, &w.pairs_hook,
                          &PyDict_Type, &w.shared, &PyList_Type, &w.buffers, &PyDict_Type,
                          &w.shells, &PyDict_Type, &w.declared, &w.known, &static_)) {
        return NULL;
    }
    if (parse_static(&w, static_, 0) < 0) {
        PyBuffer_Release(&tree);
        return NULL;
    }
    if (w.known != Py_None && !PyDict_CheckExact(w.known)) {
        PyErr_SetString(PyExc_TypeError, "walk: known must be a dict or None");
        PyBuffer_Release(&tree);
        return NULL;
    }
    /* This load's plans per name and setters per class (the steps are asked once each). */
    w.plans = PyDict_New();
    w.setters = PyDict_New();
    if (w.plans == NULL || w.setters == NULL) {
        Py_XDECREF(w.plans);
        Py_XDECREF(w.setters);
        PyBuffer_Release(&tree);
        return NULL;
    }
    w.p = tree.buf;
    w.end = tree.len;
    /* The cyclic GC is paused while the model is built: building millions of small objects
     * (a vocabulary) would make it scan repeatedly for nothing, since nothing decoded is
     * garbage yet. Here rather than around the call, where gc's three Python calls cost a
     * fresh process's first load page faults. (Saving pauses it too, in _serialize.) */
    const int collecting = PyGC_Disable();
    PyObject *out = run(&w);
    if (collecting) {
        PyGC_Enable();
    }
    for (Py_ssize_t i = 0; i < w.sp; i++) {
        Py_XDECREF(w.stack[i].obj);
        Py_XDECREF(w.stack[i].key);
    }
    PyMem_Free(w.stack);
    Py_DECREF(w.plans);
    Py_DECREF(w.setters);
    PyBuffer_Release(&tree);
    PyObject *zero = PyLong_FromLong(0);
    if (out != NULL && (zero == NULL || PyObject_SetAttr(w.dec, str_depth, zero) < 0)) {
        Py_CLEAR(out);
    }
    Py_XDECREF(zero);
    if (out != NULL && w.taken) { /* dec.taken += the buffers taken here (see decode_root) */
        PyObject *before = PyObject_GetAttr(w.dec, str_taken);
        PyObject *sum = NULL, *add = PyLong_FromSsize_t(w.taken);
        if (before == NULL || add == NULL || (sum = PyNumber_Add(before, add)) == NULL ||
            PyObject_SetAttr(w.dec, str_taken, sum) < 0) {
            Py_CLEAR(out);
        }
        Py_XDECREF(before);
        Py_XDECREF(add);
        Py_XDECREF(sum);
    }
    return out;
}
