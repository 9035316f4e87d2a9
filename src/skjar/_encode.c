/* encode, encode_items, encode_dict: the generic part of the encoder's walk, compiled.
 *
 * Twins of Encoder._encode_value, Encoder._encode_items_py and Encoder._encode_dict_py
 * (codec/encoder.py), which stay the reference: the same tree, node for node, and the
 * same shared-object numbering (tests/test_encode.py holds the two to each other). A
 * model's walk is mostly this glue - atoms, lists, dicts, tuples, the memo that keeps
 * shared objects shared - around a few handlers per object; in Python each value cost a
 * frame or three (hgb: ~900 calls of `encode` per save, ~45% of its encoding time).
 *
 * What stays in Python: every type handler but those of list, dict and tuple (they are
 * called from here), and every unusual case, which is handed to the Python twin whole
 * before anything is changed - a memo hit that must be refused, a cycle, nesting past
 * the limit, an integer beyond 64 bits, a list or dict subclass, the column-wise
 * containers. Errors are therefore always the Python twin's, with its paths.
 *
 * Instances without a handler (objects.encode_object) are written here in their two
 * common shapes: `cls.__new__(cls)` with a dict state or none (INSTANCE), and a call to
 * a reconstructor the dump has already declared (RECONSTRUCT: a forest's Tree). The
 * first instance of a class, a deferred one and every other reduction go to Python
 * (encode_object, encode_reduced): a boosting model's 100 trees cost ~20 Python calls
 * each before (column-pipeline: encoding 2.8 -> ~2 ms).
 *
 * Arrays of a fixed-size dtype laid out in C or Fortran order are written here too (the
 * twin of numpy.array_node): the NDARRAY node, its bytes inline or its buffer registered.
 * Object arrays, strided ones and a dtype's first description go to Python.
 *
 * `enc._fast` holds what the walk reads: (memo, in_progress, keepalive, interned,
 * pending, buffers, static, object_classes, reconstructors, shells), static being
 * (ENCODERS, MEMOIZED, encode_object, list handler, dict handler, tuple handler, Node,
 * Shared, SharedRef, TUPLE, ZIPDICT, COLUMNAR_MIN, ZIPDICT_MIN, MAX_NESTING, ndarray,
 * ndarray handler, dtype_descr, NDARRAY, uint8 dtype, INLINE_MAX, descriptions,
 * NUMBER_SCALARS, NPSCALAR, encode_reduced, _PLAIN_CLASSES, NEWOBJ_FUNC, VALIDATORS,
 * DEFER_DEPTH, INSTANCE, RECONSTRUCT, NEWOBJ, STATE_NONE, STATE_DEFAULT, ITEMS_NONE),
 * built once per process (Encoder._static).
 * `descriptions` maps a plain dtype object (by identity) to its description, a str.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <structmember.h> /* T_OBJECT_EX: the slots of Node, Shared and SharedRef */

typedef struct {
    PyObject *enc;
    PyObject *memo, *in_progress, *keepalive, *interned, *pending, *buffers;
    PyObject *encoders, *memoized, *encode_object, *list_fn, *dict_fn, *tuple_fn;
    PyObject *node, *shared, *ref;
    PyObject *tuple_code, *zipdict_code;
    Py_ssize_t columnar_min, zipdict_min;
    long max_nesting;
    PyObject *ndarray, *ndarray_fn, *dtype_descr, *ndarray_code, *uint8, *descrs;
    Py_ssize_t inline_max;
    PyObject *numbers, *scalar_code;
    /* encode_object's common shapes (objects.py) */
    PyObject *object_classes, *reconstructors, *shells;
    PyObject *encode_reduced, *plain_classes, *newobj_func, *validators;
    long defer_depth;
    PyObject *instance_code, *reconstruct_code, *newobj_code, *state_none, *state_default,
        *items_none;
} Enc;

static PyObject *s_dtype, *s_hasobject, *s_T, *s_reshape, *s_view, *minus_one;
static PyObject *s_fast, *s_depth, *s_under_check, *s_share_id, *s_next_share, *s_key,
    *s_encode_value, *s_encode_items_py, *s_encode_dict_py, *s_strlist, *s_strdict,
    *s_reduce_ex, *four;

static int
interned_names(void)
{
    if (s_fast != NULL)
        return 0;
#define NAME(var, text)                                                                       \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                     \
        return -1;
    NAME(s_depth, "depth");
    NAME(s_under_check, "under_check");
    NAME(s_share_id, "share_id");
    NAME(s_next_share, "_next_share");
    NAME(s_key, "<key>");
    NAME(s_encode_value, "_encode_value");
    NAME(s_encode_items_py, "_encode_items_py");
    NAME(s_encode_dict_py, "_encode_dict_py");
    NAME(s_strlist, "strlist");
    NAME(s_strdict, "strdict");
    NAME(s_dtype, "dtype");
    NAME(s_hasobject, "hasobject");
    NAME(s_T, "T");
    NAME(s_reshape, "reshape");
    NAME(s_view, "view");
    NAME(s_reduce_ex, "__reduce_ex__");
    if ((four = PyLong_FromLong(4)) == NULL)
        return -1;
    NAME(s_fast, "_fast");
#undef NAME
    if ((minus_one = PyLong_FromLong(-1)) == NULL)
        return -1;
    return 0;
}

/* Fill `e` from enc._fast (borrowed references: enc holds them for the call). */
static int
setup(Enc *e, PyObject *enc)
{
    if (interned_names() < 0)
        return -1;
    PyObject *fast = PyObject_GetAttr(enc, s_fast);
    if (fast == NULL)
        return -1;
    PyObject *st = NULL;
    int ok = PyTuple_CheckExact(fast) && PyTuple_GET_SIZE(fast) == 10 &&
             PyTuple_CheckExact(st = PyTuple_GET_ITEM(fast, 6)) && PyTuple_GET_SIZE(st) == 34;
    /* enc keeps its _fast tuple for as long as it lives; the caller holds enc. */
    Py_DECREF(fast);
    if (!ok) {
        PyErr_SetString(PyExc_TypeError, "encode: enc._fast is not the walk's state");
        return -1;
    }
    e->enc = enc;
    e->memo = PyTuple_GET_ITEM(fast, 0);
    e->in_progress = PyTuple_GET_ITEM(fast, 1);
    e->keepalive = PyTuple_GET_ITEM(fast, 2);
    e->interned = PyTuple_GET_ITEM(fast, 3);
    e->pending = PyTuple_GET_ITEM(fast, 4);
    e->buffers = PyTuple_GET_ITEM(fast, 5);
    e->encoders = PyTuple_GET_ITEM(st, 0);
    e->memoized = PyTuple_GET_ITEM(st, 1);
    e->encode_object = PyTuple_GET_ITEM(st, 2);
    e->list_fn = PyTuple_GET_ITEM(st, 3);
    e->dict_fn = PyTuple_GET_ITEM(st, 4);
    e->tuple_fn = PyTuple_GET_ITEM(st, 5);
    e->node = PyTuple_GET_ITEM(st, 6);
    e->shared = PyTuple_GET_ITEM(st, 7);
    e->ref = PyTuple_GET_ITEM(st, 8);
    e->tuple_code = PyTuple_GET_ITEM(st, 9);
    e->zipdict_code = PyTuple_GET_ITEM(st, 10);
    e->columnar_min = PyLong_AsSsize_t(PyTuple_GET_ITEM(st, 11));
    e->zipdict_min = PyLong_AsSsize_t(PyTuple_GET_ITEM(st, 12));
    e->max_nesting = PyLong_AsLong(PyTuple_GET_ITEM(st, 13));
    e->ndarray = PyTuple_GET_ITEM(st, 14);
    e->ndarray_fn = PyTuple_GET_ITEM(st, 15);
    e->dtype_descr = PyTuple_GET_ITEM(st, 16);
    e->ndarray_code = PyTuple_GET_ITEM(st, 17);
    e->uint8 = PyTuple_GET_ITEM(st, 18);
    e->inline_max = PyLong_AsSsize_t(PyTuple_GET_ITEM(st, 19));
    e->descrs = PyTuple_GET_ITEM(st, 20);
    e->numbers = PyTuple_GET_ITEM(st, 21);
    e->scalar_code = PyTuple_GET_ITEM(st, 22);
    e->object_classes = PyTuple_GET_ITEM(fast, 7);
    e->reconstructors = PyTuple_GET_ITEM(fast, 8);
    e->shells = PyTuple_GET_ITEM(fast, 9);
    e->encode_reduced = PyTuple_GET_ITEM(st, 23);
    e->plain_classes = PyTuple_GET_ITEM(st, 24);
    e->newobj_func = PyTuple_GET_ITEM(st, 25);
    e->validators = PyTuple_GET_ITEM(st, 26);
    e->defer_depth = PyLong_AsLong(PyTuple_GET_ITEM(st, 27));
    e->instance_code = PyTuple_GET_ITEM(st, 28);
    e->reconstruct_code = PyTuple_GET_ITEM(st, 29);
    e->newobj_code = PyTuple_GET_ITEM(st, 30);
    e->state_none = PyTuple_GET_ITEM(st, 31);
    e->state_default = PyTuple_GET_ITEM(st, 32);
    e->items_none = PyTuple_GET_ITEM(st, 33);
    if (!PyDict_CheckExact(e->memo) || !PySet_CheckExact(e->in_progress) ||
        !PyList_CheckExact(e->buffers) || !PyDict_CheckExact(e->descrs) ||
        !PyList_CheckExact(e->keepalive) || !PyDict_CheckExact(e->interned) ||
        !PyDict_CheckExact(e->pending) || !PyDict_CheckExact(e->encoders) ||
        !PyAnySet_Check(e->memoized) || !PyAnySet_Check(e->numbers) ||
        !PyDict_CheckExact(e->object_classes) || !PyDict_CheckExact(e->reconstructors) ||
        !PyDict_CheckExact(e->shells) || !PyAnySet_Check(e->plain_classes) ||
        !PyDict_CheckExact(e->validators) || PyErr_Occurred()) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "encode: enc._fast is not the walk's state");
        return -1;
    }
    return 0;
}

static inline int
is_atom_type(PyTypeObject *t)
{
    return t == &PyUnicode_Type || t == &PyFloat_Type || t == &PyBool_Type ||
           t == Py_TYPE(Py_None) || t == &PyBytes_Type;
}

/* -1: not an int in [-2**63, 2**64 - 1] (or an error, set); 0: one. */
static int
int_in_range(PyObject *o)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow == 0)
        return 0;
    if (overflow < 0)
        return -1;
    unsigned long long u = PyLong_AsUnsignedLongLong(o);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

/* Encoder's _atoms_only: every value an atom msgpack writes natively and losslessly
 * (the same answer as the Python twin: all of str, float, bool, None, bytes, or all
 * ints, possibly with Nones, within 64 bits). 1 yes, 0 no, -1 error. */
static int
atoms_only(PyObject *const *items, Py_ssize_t n)
{
    int has_int = 0, has_other_atom = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTypeObject *t = Py_TYPE(items[i]);
        if (t == &PyLong_Type)
            has_int = 1;
        else if (t == Py_TYPE(Py_None))
            continue;
        else if (is_atom_type(t))
            has_other_atom = 1;
        else
            return 0;
        if (has_int && has_other_atom)
            return 0;
    }
    if (!has_int)
        return 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (Py_TYPE(items[i]) == &PyLong_Type && int_in_range(items[i]) < 0) {
            if (PyErr_Occurred())
                return -1;
            return 0;
        }
    }
    return 1;
}

static PyObject *encode_value(Enc *e, PyObject *obj, PyObject *path);

static PyObject *
call2(PyObject *fn, PyObject *a, PyObject *b)
{
    PyObject *args[2] = {a, b};
    return PyObject_Vectorcall(fn, args, 2, NULL);
}

static PyObject *
call3(PyObject *fn, PyObject *a, PyObject *b, PyObject *c)
{
    PyObject *args[3] = {a, b, c};
    return PyObject_Vectorcall(fn, args, 3, NULL);
}

/* An Encoder method by name, with the given arguments (the Python twin's cases). */
static PyObject *
method(Enc *e, PyObject *name, PyObject *a, PyObject *b)
{
    PyObject *args[3] = {e->enc, a, b};
    return PyObject_VectorcallMethod(name, args, b == NULL ? 2 : 3, NULL);
}

/* Node, Shared and SharedRef are slotted classes whose constructors only fill their
 * slots (None for share_id): built here by filling the slots directly, without running
 * the Python __init__ (a frame per node, ~560 per hgb save). The slots' offsets come from
 * the classes' own member descriptors; anything unexpected (another layout, a class
 * changed) and the class is called instead. */
typedef struct {
    PyObject *type;   /* the class these offsets are for (borrowed: a module global) */
    Py_ssize_t at[3]; /* slot offsets, in the order of `names` */
    int n, ok;
} Slots;

static Slots node_slots, shared_slots, ref_slots;

static void
find_slots(Slots *s, PyObject *type, const char *const *names, int n)
{
    s->type = type;
    s->n = n;
    s->ok = PyType_Check(type) && ((PyTypeObject *)type)->tp_alloc == PyType_GenericAlloc &&
            ((PyTypeObject *)type)->tp_dictoffset == 0;
    for (int i = 0; i < n && s->ok; i++) {
        PyObject *d = PyObject_GetAttrString(type, names[i]);
        if (d == NULL) {
            PyErr_Clear();
            s->ok = 0;
            break;
        }
        s->ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX &&
                ((PyMemberDescrObject *)d)->d_common.d_type == (PyTypeObject *)type;
        if (s->ok)
            s->at[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
    }
}

/* An instance of `type` with its slots set to `values` (new references taken); the
 * first `nargs` of them are its constructor's arguments (the rest start as None). */
static PyObject *
make(Slots *s, PyObject *type, const char *const *names, int n, PyObject *const *values,
     Py_ssize_t nargs)
{
    if (s->type != type)
        find_slots(s, type, names, n);
    if (!s->ok)
        return PyObject_Vectorcall(type, values, nargs, NULL);
    PyObject *o = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, 0);
    if (o == NULL)
        return NULL;
    for (int i = 0; i < n; i++)
        *(PyObject **)((char *)o + s->at[i]) = Py_NewRef(values[i]);
    return o;
}

static const char *const NODE_SLOTS[] = {"code", "payload", "share_id"};
static const char *const SHARED_SLOTS[] = {"value", "share_id"};
static const char *const REF_SLOTS[] = {"target"};

static PyObject *
new_node(Enc *e, PyObject *code, PyObject *payload)
{
    PyObject *values[3] = {code, payload, Py_None};
    return make(&node_slots, e->node, NODE_SLOTS, 3, values, 2);
}

/* A node whose payload is the list [a, b]. */
static PyObject *
pair_node(Enc *e, PyObject *code, PyObject *a, PyObject *b)
{
    PyObject *payload = PyList_New(2);
    if (payload == NULL)
        return NULL;
    PyList_SET_ITEM(payload, 0, Py_NewRef(a));
    PyList_SET_ITEM(payload, 1, Py_NewRef(b));
    PyObject *node = new_node(e, code, payload);
    Py_DECREF(payload);
    return node;
}

static PyObject *
new_shared(Enc *e, PyObject *value)
{
    PyObject *values[2] = {value, Py_None};
    return make(&shared_slots, e->shared, SHARED_SLOTS, 2, values, 1);
}

static PyObject *
new_ref(Enc *e, PyObject *target)
{
    return make(&ref_slots, e->ref, REF_SLOTS, 1, &target, 1);
}

/* Give `target` a shared-object id if it has none (Encoder.share). */
static int
share(Enc *e, PyObject *target)
{
    PyObject *id = PyObject_GetAttr(target, s_share_id);
    if (id == NULL)
        return -1;
    int rc = 0;
    if (id == Py_None) {
        PyObject *next = PyObject_GetAttr(e->enc, s_next_share);
        long n = next == NULL ? -1 : PyLong_AsLong(next);
        PyObject *after = (n == -1 && PyErr_Occurred()) || next == NULL ? NULL : PyLong_FromLong(n + 1);
        rc = (after == NULL || PyObject_SetAttr(target, s_share_id, next) < 0 ||
              PyObject_SetAttr(e->enc, s_next_share, after) < 0)
                 ? -1
                 : 0;
        Py_XDECREF(next);
        Py_XDECREF(after);
    }
    Py_DECREF(id);
    return rc;
}

static PyObject *
path_step(PyObject *path, PyObject *step)
{
    return PyTuple_Pack(2, path, step);
}

/* Encoder.intern(value, key): the first occurrence Shared, later ones SharedRefs. */
static PyObject *
intern_value(Enc *e, PyObject *value, PyObject *key)
{
    PyObject *seen = PyDict_GetItemWithError(e->interned, key);
    if (seen == NULL) {
        if (PyErr_Occurred())
            return NULL;
        PyObject *fresh = new_shared(e, value);
        if (fresh == NULL || PyDict_SetItem(e->interned, key, fresh) < 0 ||
            PyList_Append(e->keepalive, value) < 0) {
            Py_XDECREF(fresh);
            return NULL;
        }
        return fresh;
    }
    Py_INCREF(seen);
    PyObject *out = share(e, seen) < 0 ? NULL : new_ref(e, seen);
    Py_DECREF(seen);
    return out;
}

/* Encoder.encode_items for an exact list (anything else: the Python twin). */
static PyObject *
encode_items(Enc *e, PyObject *items, PyObject *path)
{
    if (!PyList_CheckExact(items))
        return method(e, s_encode_items_py, items, path);
    Py_ssize_t n = PyList_GET_SIZE(items);
    int atoms = atoms_only(((PyListObject *)items)->ob_item, n);
    if (atoms < 0)
        return NULL;
    if (atoms) {
        if (n >= e->columnar_min) {
            int all_str = 1;
            for (Py_ssize_t i = 0; i < n && all_str; i++)
                all_str = PyUnicode_CheckExact(PyList_GET_ITEM(items, i));
            if (all_str) {
                PyObject *column = method(e, s_strlist, items, NULL);
                if (column != Py_None)
                    return column; /* a STRLIST node, or NULL on error */
                Py_DECREF(column);
            }
        }
        return Py_NewRef(items);
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    /* By index, re-reading the length: a handler met on the way may change the list (the
     * Python twin's enumerate reads it the same way). */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = Py_NewRef(PyList_GET_ITEM(items, i));
        PyObject *index = PyLong_FromSsize_t(i);
        PyObject *sub = index == NULL ? NULL : path_step(path, index);
        PyObject *value = sub == NULL ? NULL : encode_value(e, item, sub);
        Py_DECREF(item);
        Py_XDECREF(index);
        Py_XDECREF(sub);
        if (value == NULL || PyList_Append(out, value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(value);
    }
    return out;
}

/* [encode(v, (path, k)) for k, v in d.items()] - or, with `keys`, {encode(k, (path,
 * "<key>")): encode(v, (path, k))}. A dict changed by a handler met on the way raises
 * RuntimeError, as the Python twin's iteration does. */
static PyObject *
encode_entries(Enc *e, PyObject *d, PyObject *path, int keys)
{
    PyObject *out = keys ? PyDict_New() : PyList_New(0);
    if (out == NULL)
        return NULL;
    Py_ssize_t pos = 0, size = PyDict_GET_SIZE(d);
    PyObject *k, *v;
    while (PyDict_Next(d, &pos, &k, &v)) {
        Py_INCREF(k);
        Py_INCREF(v);
        PyObject *ek = NULL, *ev = NULL, *sub = NULL;
        int ok = 0;
        if (keys) {
            sub = path_step(path, s_key);
            ek = sub == NULL ? NULL : encode_value(e, k, sub);
            Py_XDECREF(sub);
            sub = NULL;
        }
        if (!keys || ek != NULL) {
            sub = path_step(path, k);
            ev = sub == NULL ? NULL : encode_value(e, v, sub);
        }
        if (ev != NULL) {
            ok = keys ? PyDict_SetItem(out, ek, ev) == 0 : PyList_Append(out, ev) == 0;
        }
        Py_DECREF(k);
        Py_DECREF(v);
        Py_XDECREF(sub);
        Py_XDECREF(ek);
        Py_XDECREF(ev);
        if (ok && PyDict_GET_SIZE(d) != size) {
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            ok = 0;
        }
        if (!ok) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

/* Encoder.encode_dict for an exact dict (anything else: the Python twin). */
static PyObject *
encode_dict(Enc *e, PyObject *d, PyObject *path)
{
    if (!PyDict_CheckExact(d))
        return method(e, s_encode_dict_py, d, path);
    Py_ssize_t n = PyDict_GET_SIZE(d);
    if (n >= e->columnar_min) {
        PyObject *column = method(e, s_strdict, d, NULL);
        if (column != Py_None)
            return column; /* a STRDICT node, or NULL on error */
        Py_DECREF(column);
    }
    int str_keys = 1;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (str_keys && PyDict_Next(d, &pos, &k, &v))
        str_keys = PyUnicode_CheckExact(k);
    if (!str_keys)
        return encode_entries(e, d, path, 1);
    PyObject *values = PyDict_Values(d);
    if (values == NULL)
        return NULL;
    int atoms = atoms_only(((PyListObject *)values)->ob_item, PyList_GET_SIZE(values));
    if (atoms < 0 || (atoms && n < e->zipdict_min)) {
        Py_DECREF(values);
        return atoms < 0 ? NULL : Py_NewRef(d);
    }
    if (n < e->zipdict_min) {
        Py_DECREF(values);
        return encode_entries(e, d, path, 1);
    }
    /* ZIPDICT [keys, values]: the key list written once per distinct list. */
    PyObject *key_list = PyDict_Keys(d), *key_tuple = NULL, *keys = NULL, *out = NULL;
    if (key_list == NULL || (key_tuple = PyList_AsTuple(key_list)) == NULL ||
        (keys = intern_value(e, key_list, key_tuple)) == NULL)
        goto done;
    if (!atoms) {
        Py_SETREF(values, encode_entries(e, d, path, 0));
        if (values == NULL)
            goto done;
    }
    out = pair_node(e, e->zipdict_code, keys, values);
done:
    Py_XDECREF(values);
    Py_XDECREF(key_list);
    Py_XDECREF(key_tuple);
    Py_XDECREF(keys);
    return out;
}

/* Node(TUPLE, [encode(v, (path, i)) for i, v in enumerate(obj)]) */
static PyObject *
encode_tuple(Enc *e, PyObject *obj, PyObject *path)
{
    Py_ssize_t n = PyTuple_GET_SIZE(obj);
    PyObject *items = PyList_New(n);
    if (items == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *index = PyLong_FromSsize_t(i);
        PyObject *sub = index == NULL ? NULL : path_step(path, index);
        PyObject *value = sub == NULL ? NULL : encode_value(e, PyTuple_GET_ITEM(obj, i), sub);
        Py_XDECREF(index);
        Py_XDECREF(sub);
        if (value == NULL) {
            Py_DECREF(items);
            return NULL;
        }
        PyList_SET_ITEM(items, i, value);
    }
    PyObject *out = new_node(e, e->tuple_code, items);
    Py_DECREF(items);
    return out;
}

/* Returned by encode_array for an array it leaves to the Python handler. */
#define DECLINED Py_NotImplemented

/* Whether a dtype holds objects (the handler writes those arrays): 1, 0, -1 error.
 * Plain dtypes already described answer from `descrs` without asking numpy. */
static int
holds_objects(Enc *e, PyObject *dtype, PyObject *key)
{
    PyObject *entry = PyDict_GetItemWithError(e->descrs, key);
    if (entry != NULL && PyTuple_GET_ITEM(entry, 0) == dtype)
        return 0;
    if (PyErr_Occurred())
        return -1;
    PyObject *has = PyObject_GetAttr(dtype, s_hasobject);
    int objects = has == NULL ? -1 : PyObject_IsTrue(has);
    Py_XDECREF(has);
    return objects;
}

/* A dtype's description (numpy.dtype_descr): plain ones from `descrs`, keyed by the
 * dtype object itself (identity: its description is a str, so which equal object it came
 * from never shows); a structured one from dtype_descr each time, then interned by its
 * identity, as the twin does. Called once the array is known to be written here: the
 * interning is not undone. */
static PyObject *
array_descr(Enc *e, PyObject *dtype, PyObject *key, PyObject *path)
{
    PyObject *entry = PyDict_GetItemWithError(e->descrs, key);
    if (entry != NULL && PyTuple_GET_ITEM(entry, 0) == dtype)
        return Py_NewRef(PyTuple_GET_ITEM(entry, 1));
    if (PyErr_Occurred())
        return NULL;
    PyObject *descr = call2(e->dtype_descr, dtype, path);
    if (descr != NULL && PyUnicode_CheckExact(descr)) {
        if (PyDict_GET_SIZE(e->descrs) < 4096) {
            PyObject *pair = PyTuple_Pack(2, dtype, descr); /* holds dtype: its id stays its */
            if (pair == NULL || PyDict_SetItem(e->descrs, key, pair) < 0)
                Py_CLEAR(descr);
            Py_XDECREF(pair);
        }
    }
    else if (descr != NULL) {
        PyObject *id = PyLong_FromVoidPtr(descr);
        Py_SETREF(descr, id == NULL ? NULL : intern_value(e, descr, id));
        Py_XDECREF(id);
    }
    return descr;
}

/* numpy's C- and Fortran-contiguity of a strided layout (its _UpdateContiguousFlags:
 * dimensions of length 1 may have any stride; an empty array is both). */
static void
contiguity(const Py_buffer *v, int *c, int *f)
{
    Py_ssize_t sd = v->itemsize;
    *c = *f = 1;
    for (int i = 0; i < v->ndim; i++)
        if (v->shape[i] == 0)
            return;
    for (int i = v->ndim - 1; i >= 0; i--)
        if (v->shape[i] != 1) {
            if (v->strides[i] != sd)
                *c = 0;
            sd *= v->shape[i];
        }
    sd = v->itemsize;
    for (int i = 0; i < v->ndim; i++)
        if (v->shape[i] != 1) {
            if (v->strides[i] != sd)
                *f = 0;
            sd *= v->shape[i];
        }
}

/* numpy.array_node for an exact ndarray laid out in C or Fortran order; DECLINED for
 * the rest (object arrays, strided ones, zero-size dtypes), which the handler takes. */
static PyObject *
encode_array(Enc *e, PyObject *arr, PyObject *path)
{
    Py_buffer view;
    PyObject *dtype = PyObject_GetAttr(arr, s_dtype), *key = NULL, *descr = NULL,
             *shape = NULL, *data = NULL, *payload = NULL, *out = NULL;
    if (dtype == NULL || (key = PyLong_FromVoidPtr(dtype)) == NULL) {
        Py_XDECREF(dtype);
        return NULL;
    }
    /* Every reason to decline is found before anything is changed (a description
     * interned here and again by the handler would come out a reference to nothing). */
    int objects = holds_objects(e, dtype, key);
    if (objects != 0) {
        Py_DECREF(dtype);
        Py_DECREF(key);
        return objects < 0 ? NULL : Py_NewRef(DECLINED);
    }
    if (PyObject_GetBuffer(arr, &view, PyBUF_STRIDES) < 0) { /* the handler says why */
        PyErr_Clear();
        Py_DECREF(dtype);
        Py_DECREF(key);
        return Py_NewRef(DECLINED);
    }
    int c, f;
    contiguity(&view, &c, &f);
    int fortran = view.ndim > 1 && f && !c;
    if ((!c && !fortran) || view.itemsize == 0) {
        out = Py_NewRef(DECLINED);
        goto done;
    }
    if ((descr = array_descr(e, dtype, key, path)) == NULL)
        goto done;
    if ((shape = PyList_New(view.ndim)) == NULL)
        goto done;
    for (int i = 0; i < view.ndim; i++) {
        PyObject *n = PyLong_FromSsize_t(view.shape[i]);
        if (n == NULL)
            goto done;
        PyList_SET_ITEM(shape, i, n);
    }
    if (view.len <= e->inline_max) {
        data = PyBytes_FromStringAndSize(view.buf, view.len);
    }
    else { /* Encoder.add_buffer(the array's bytes as a flat uint8 view) */
        PyObject *base = fortran ? PyObject_GetAttr(arr, s_T) : Py_NewRef(arr);
        PyObject *flat = base == NULL ? NULL : PyObject_CallMethodOneArg(base, s_reshape, minus_one);
        PyObject *raw = flat == NULL ? NULL : PyObject_CallMethodOneArg(flat, s_view, e->uint8);
        Py_XDECREF(base);
        Py_XDECREF(flat);
        if (raw != NULL && PyList_Append(e->buffers, raw) == 0 &&
            PyList_Append(e->keepalive, raw) == 0)
            data = PyLong_FromSsize_t(PyList_GET_SIZE(e->buffers) - 1);
        Py_XDECREF(raw);
    }
    if (data == NULL || (payload = PyList_New(4)) == NULL)
        goto done;
    PyList_SET_ITEM(payload, 0, Py_NewRef(descr));
    PyList_SET_ITEM(payload, 1, Py_NewRef(shape));
    PyList_SET_ITEM(payload, 2, Py_NewRef(fortran ? Py_True : Py_False));
    PyList_SET_ITEM(payload, 3, Py_NewRef(data));
    out = new_node(e, e->ndarray_code, payload);
done:
    PyBuffer_Release(&view);
    Py_DECREF(dtype);
    Py_DECREF(key);
    Py_XDECREF(descr);
    Py_XDECREF(shape);
    Py_XDECREF(data);
    Py_XDECREF(payload);
    return out;
}

/* numpy._enc_scalar for a number, a scalar of a type in `numbers` (bool, integer, float,
 * complex): NPSCALAR [description, its bytes]. A numpy scalar's buffer is its value's
 * bytes in native order, as np.asarray(scalar).tobytes() gives them. */
static PyObject *
encode_scalar(Enc *e, PyObject *obj, PyObject *path)
{
    PyObject *dtype = PyObject_GetAttr(obj, s_dtype), *key = NULL, *descr = NULL,
             *raw = NULL, *out = NULL;
    if (dtype == NULL || (key = PyLong_FromVoidPtr(dtype)) == NULL) {
        Py_XDECREF(dtype);
        return NULL;
    }
    Py_buffer view;
    if ((descr = array_descr(e, dtype, key, path)) == NULL ||
        PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
        goto done;
    }
    raw = PyBytes_FromStringAndSize(view.buf, view.len);
    PyBuffer_Release(&view);
    if (raw != NULL)
        out = pair_node(e, e->scalar_code, descr, raw);
done:
    Py_DECREF(dtype);
    Py_DECREF(key);
    Py_XDECREF(descr);
    Py_XDECREF(raw);
    return out;
}

/* enc.depth, read once per value and restored when its handler returns (the handlers that
 * change it themselves put it back before returning, as the twin relies on too). */
static int
get_depth(Enc *e, long *depth)
{
    PyObject *value = PyObject_GetAttr(e->enc, s_depth);
    if (value == NULL)
        return -1;
    *depth = PyLong_AsLong(value);
    Py_DECREF(value);
    return *depth == -1 && PyErr_Occurred() ? -1 : 0;
}

static int
set_depth(Enc *e, long depth)
{
    PyObject *value = PyLong_FromLong(depth);
    int rc = value == NULL ? -1 : PyObject_SetAttr(e->enc, s_depth, value);
    Py_XDECREF(value);
    return rc;
}

/* The class name a meaning check is registered for, or None (objects._checked). */
static PyObject *
checked(Enc *e, PyObject *name)
{
    int has = PyDict_Contains(e->validators, name);
    return has < 0 ? NULL : Py_NewRef(has ? name : Py_None);
}

/* enc.under_check = checked(plain), its value until now in *saved (a new reference, or
 * NULL): 0, or -1 with an exception set. */
static int
begin_check(Enc *e, PyObject *plain, PyObject **saved)
{
    PyObject *check = NULL;
    *saved = PyObject_GetAttr(e->enc, s_under_check);
    int rc = (*saved == NULL || (check = checked(e, plain)) == NULL ||
              PyObject_SetAttr(e->enc, s_under_check, check) < 0)
                 ? -1
                 : 0;
    Py_XDECREF(check);
    return rc;
}

/* enc.under_check = value, keeping an exception already set (a finally clause). */
static int
restore_check(Enc *e, PyObject *value)
{
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    int rc = PyObject_SetAttr(e->enc, s_under_check, value);
    if (exc_type != NULL) {
        if (rc < 0)
            PyErr_Clear();
        PyErr_Restore(exc_type, exc_value, exc_tb);
    }
    return rc;
}

/* Node(code, [*parts, ITEMS_NONE, None]): an object with no list or dict items. */
static PyObject *
object_node(Enc *e, PyObject *code, PyObject *const *parts, Py_ssize_t n)
{
    PyObject *payload = PyList_New(n + 2);
    if (payload == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        PyList_SET_ITEM(payload, i, Py_NewRef(parts[i]));
    PyList_SET_ITEM(payload, n, Py_NewRef(e->items_none));
    PyList_SET_ITEM(payload, n + 1, Py_NewRef(Py_None));
    PyObject *node = new_node(e, code, payload);
    Py_DECREF(payload);
    return node;
}

/* INSTANCE: `cls.__new__(cls)`, then `state` (None or an exact dict) - encode_reduced's
 * in-place branch, for a class already named in this dump (Encoder.object_classes). */
static PyObject *
encode_instance(Enc *e, PyObject *obj, PyObject *plain, PyObject *state, PyObject *path)
{
    PyObject *name = intern_value(e, plain, plain);
    if (name == NULL)
        return NULL;
    PyObject *shell = new_node(e, e->newobj_code, name);
    PyObject *oid = shell == NULL ? NULL : PyLong_FromVoidPtr(obj);
    if (oid == NULL || PyDict_SetItem(e->shells, oid, shell) < 0) {
        Py_XDECREF(oid);
        Py_XDECREF(shell);
        Py_DECREF(name);
        return NULL;
    }
    PyObject *out = NULL, *enc_state = NULL, *saved = NULL;
    if (begin_check(e, plain, &saved) == 0) {
        enc_state = state == Py_None ? Py_NewRef(Py_None) : encode_dict(e, state, path);
        if (restore_check(e, saved) < 0)
            Py_CLEAR(enc_state);
    }
    /* finally: the shell is only for the instance's own state to refer back to */
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    int gone = PyDict_DelItem(e->shells, oid);
    if (exc_type != NULL) {
        if (gone < 0)
            PyErr_Clear();
        PyErr_Restore(exc_type, exc_value, exc_tb);
    }
    else if (gone < 0)
        Py_CLEAR(enc_state);
    if (enc_state != NULL) {
        /* Only an object its own state refers back to needs the two-step form. */
        PyObject *id = PyObject_GetAttr(shell, s_share_id);
        PyObject *parts[3] = {id == Py_None ? name : shell,
                              state == Py_None ? e->state_none : e->state_default, enc_state};
        if (id != NULL)
            out = object_node(e, e->instance_code, parts, 3);
        Py_XDECREF(id);
    }
    Py_XDECREF(saved);
    Py_XDECREF(enc_state);
    Py_DECREF(oid);
    Py_DECREF(shell);
    Py_DECREF(name);
    return out;
}

/* RECONSTRUCT: a call of a reconstructor this dump has already declared
 * (Encoder.reconstructors), with `args` (an exact tuple), then `state` (None or an exact
 * dict) - objects._reconstruct_node. */
static PyObject *
encode_reconstruct(Enc *e, PyObject *plain, PyObject *args, PyObject *state, PyObject *path)
{
    PyObject *name = intern_value(e, plain, plain);
    if (name == NULL)
        return NULL;
    PyObject *out = NULL, *enc_args = NULL, *enc_state = NULL, *saved = NULL;
    if (begin_check(e, plain, &saved) < 0)
        goto done;
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    enc_args = PyList_New(n);
    for (Py_ssize_t i = 0; enc_args != NULL && i < n; i++) {
        PyObject *label = PyUnicode_FromFormat("<arg %zd>", i);
        PyObject *sub = label == NULL ? NULL : path_step(path, label);
        PyObject *value = sub == NULL ? NULL : encode_value(e, PyTuple_GET_ITEM(args, i), sub);
        Py_XDECREF(label);
        Py_XDECREF(sub);
        if (value == NULL)
            Py_CLEAR(enc_args);
        else
            PyList_SET_ITEM(enc_args, i, value);
    }
    if (enc_args != NULL)
        enc_state = state == Py_None ? Py_NewRef(Py_None) : encode_dict(e, state, path);
    if (restore_check(e, saved) < 0)
        Py_CLEAR(enc_state);
    if (enc_state != NULL) {
        PyObject *parts[4] = {name, enc_args,
                              state == Py_None ? e->state_none : e->state_default, enc_state};
        out = object_node(e, e->reconstruct_code, parts, 4);
    }
done:
    Py_XDECREF(saved);
    Py_XDECREF(enc_args);
    Py_XDECREF(enc_state);
    Py_DECREF(name);
    return out;
}

/* objects.encode_object: the object's __reduce_ex__(4) written here in its two common
 * shapes (a forest's or a boosting model's every estimator and tree), all else handed to
 * the Python twin before anything is changed - a class not yet checked this process
 * (_PLAIN_CLASSES) to encode_object, any other reduction to encode_reduced. `depth` is
 * enc.depth, already counting this object. */
static PyObject *
encode_object(Enc *e, PyObject *obj, PyObject *path, long depth)
{
    PyObject *cls = (PyObject *)Py_TYPE(obj);
    int plain_class = PySet_Contains(e->plain_classes, cls);
    if (plain_class <= 0)
        return plain_class < 0 ? NULL : call3(e->encode_object, e->enc, obj, path);
    PyObject *rv = PyObject_CallMethodOneArg(obj, s_reduce_ex, four);
    if (rv == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return NULL;
        PyErr_Clear(); /* the twin calls it again, and words the refusal */
        return call3(e->encode_object, e->enc, obj, path);
    }
    Py_ssize_t n = PyTuple_CheckExact(rv) ? PyTuple_GET_SIZE(rv) : 0;
    PyObject *func = n >= 2 ? PyTuple_GET_ITEM(rv, 0) : NULL;
    PyObject *args = n >= 2 ? PyTuple_GET_ITEM(rv, 1) : NULL;
    PyObject *state = n >= 3 ? PyTuple_GET_ITEM(rv, 2) : Py_None;
    int common = n >= 2 && n <= 6 && PyTuple_CheckExact(args) &&
                 (state == Py_None || PyDict_CheckExact(state));
    for (Py_ssize_t i = 3; common && i < n; i++) /* no list or dict items, no setter */
        common = PyTuple_GET_ITEM(rv, i) == Py_None;
    PyObject *out = NULL, *plain = NULL;
    if (common && func == e->newobj_func && PyTuple_GET_SIZE(args) == 1 &&
        PyTuple_GET_ITEM(args, 0) == cls) {
        /* Written in place unless deeper than DEFER_DEPTH and not under a check: a
         * deferred instance goes to the twin. */
        PyObject *check = depth > e->defer_depth ? PyObject_GetAttr(e->enc, s_under_check) : NULL;
        int in_place = check == NULL ? (PyErr_Occurred() ? -1 : 1) : PyObject_IsTrue(check);
        Py_XDECREF(check);
        if (in_place < 0)
            goto done;
        plain = in_place ? PyDict_GetItemWithError(e->object_classes, cls) : NULL;
        if (plain != NULL) {
            Py_INCREF(plain); /* (handlers run Python while it is in use) */
            out = encode_instance(e, obj, plain, state, path);
            Py_DECREF(plain);
            goto done;
        }
    }
    else if (common) {
        PyObject *fid = PyLong_FromVoidPtr(func);
        if (fid == NULL)
            goto done;
        PyObject *known = PyDict_GetItemWithError(e->reconstructors, fid);
        Py_DECREF(fid);
        if (known != NULL && PyTuple_CheckExact(known) && PyTuple_GET_SIZE(known) == 2 &&
            PyTuple_GET_ITEM(known, 0) == func) {
            plain = Py_NewRef(PyTuple_GET_ITEM(known, 1));
            out = encode_reconstruct(e, plain, args, state, path);
            Py_DECREF(plain);
            goto done;
        }
    }
    if (!PyErr_Occurred()) {
        PyObject *call[4] = {e->enc, obj, rv, path};
        out = PyObject_Vectorcall(e->encode_reduced, call, 4, NULL);
    }
done:
    Py_DECREF(rv);
    return out;
}

/* Encoder._encode_value: one value. */
static PyObject *
encode_value(Enc *e, PyObject *obj, PyObject *path)
{
    PyTypeObject *t = Py_TYPE(obj);
    if (is_atom_type(t))
        return Py_NewRef(obj);
    if (t == &PyLong_Type) {
        if (int_in_range(obj) == 0)
            return Py_NewRef(obj);
        if (PyErr_Occurred())
            return NULL;
        return method(e, s_encode_value, obj, path); /* a BIGINT node */
    }
    PyObject *oid = PyLong_FromVoidPtr(obj);
    if (oid == NULL)
        return NULL;
    PyObject *out = NULL, *seen = PyDict_GetItemWithError(e->memo, oid);
    if (seen != NULL) {
        Py_INCREF(seen);
        PyObject *checking = PyObject_GetAttr(e->enc, s_under_check);
        int refuse = checking == NULL ? -1 : PyObject_IsTrue(checking);
        Py_XDECREF(checking);
        if (refuse == 1)
            refuse = PyDict_Contains(e->pending, oid);
        if (refuse == 1)
            out = method(e, s_encode_value, obj, path); /* raises */
        else if (refuse == 0 && share(e, seen) == 0)
            out = new_ref(e, seen);
        Py_DECREF(seen);
        Py_DECREF(oid);
        return out;
    }
    if (PyErr_Occurred())
        goto done;
    int busy = PySet_Contains(e->in_progress, oid);
    long depth = 0;
    if (busy < 0 || get_depth(e, &depth) < 0)
        goto done;
    if (busy || depth + 1 > e->max_nesting) { /* a cycle, or too deep: the twin's cases */
        out = method(e, s_encode_value, obj, path);
        goto done;
    }
    PyObject *fn = PyDict_GetItemWithError(e->encoders, (PyObject *)t);
    if (fn == NULL && PyErr_Occurred())
        goto done;
    Py_XINCREF(fn); /* the registry is only borrowed from, and handlers run Python */
    int memoize = fn == NULL ? 1 : PySet_Contains(e->memoized, (PyObject *)t);
    if (memoize < 0 || set_depth(e, depth + 1) < 0) {
        Py_XDECREF(fn);
        goto done;
    }
    if (PySet_Add(e->in_progress, oid) < 0) {
        set_depth(e, depth);
        Py_XDECREF(fn);
        goto done;
    }
    int number;
    if (fn == NULL)
        out = encode_object(e, obj, path, depth + 1);
    else if (fn == e->list_fn && t == &PyList_Type)
        out = encode_items(e, obj, path);
    else if (fn == e->dict_fn && t == &PyDict_Type)
        out = encode_dict(e, obj, path);
    else if (fn == e->tuple_fn && t == &PyTuple_Type)
        out = encode_tuple(e, obj, path);
    else if (fn == e->ndarray_fn && (PyObject *)t == e->ndarray) {
        out = encode_array(e, obj, path);
        if (out == DECLINED) {
            Py_DECREF(out);
            out = call3(fn, e->enc, obj, path);
        }
    }
    else if (fn != NULL && (number = PySet_Contains(e->numbers, (PyObject *)t)) != 0)
        out = number < 0 ? NULL : encode_scalar(e, obj, path);
    else
        out = call3(fn, e->enc, obj, path);
    Py_XDECREF(fn);
    /* finally: whatever happened, as the twin's try/finally */
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    int undone = PySet_Discard(e->in_progress, oid) < 0 || set_depth(e, depth) < 0;
    if (exc_type != NULL) {
        if (undone)
            PyErr_Clear();
        PyErr_Restore(exc_type, exc_value, exc_tb);
    }
    if (out == NULL || undone) {
        Py_CLEAR(out);
        goto done;
    }
    if (memoize) {
        if (Py_TYPE(out) != (PyTypeObject *)e->node) {
            Py_SETREF(out, new_shared(e, out));
            if (out == NULL)
                goto done;
        }
        if (PyDict_SetItem(e->memo, oid, out) < 0 || PyList_Append(e->keepalive, obj) < 0)
            Py_CLEAR(out);
    }
done:
    Py_DECREF(oid);
    return out;
}

static int
parse(PyObject *const *args, Py_ssize_t nargs, const char *name, Enc *e)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s(enc, value, path) takes 3 arguments", name);
        return -1;
    }
    return setup(e, args[0]);
}

/* encode(enc, obj, path) -> tree value */
PyObject *
skjar_encode(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Enc e;
    return parse(args, nargs, "encode", &e) < 0 ? NULL : encode_value(&e, args[1], args[2]);
}

/* encode_items(enc, items, path) -> list | Node */
PyObject *
skjar_encode_items(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Enc e;
    return parse(args, nargs, "encode_items", &e) < 0 ? NULL : encode_items(&e, args[1], args[2]);
}

/* encode_dict(enc, d, path) -> dict | Node */
PyObject *
skjar_encode_dict(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Enc e;
    return parse(args, nargs, "encode_dict", &e) < 0 ? NULL : encode_dict(&e, args[1], args[2]);
}
