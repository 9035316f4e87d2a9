/* pack_tree: the object tree (codec/encoder.py's Node, Shared, SharedRef and native
 * values) packed to msgpack bytes in one compiled pass.
 *
 * The twin of Encoder.encode_root's msgpack.packb(tree, default=_pack_default,
 * use_bin_type=True, strict_types=True): the same bytes, byte for byte
 * (tests/test_pack.py holds the two to each other). The Python packer calls back into
 * Python for every typed node - its default hook, a nested Packer for the node's payload,
 * an ExtType - which was a fifth of a model's encoding time (hgb: 1.5 of 8.5 ms).
 *
 * Anything unusual - a type msgpack's strict mode would hand to the default hook and the
 * hook refuses, text that is not valid Unicode, nesting deeper than the limits, a node
 * code out of range - makes pack_tree return None with no exception set: the caller
 * then runs the Python packer, which raises the precise error. Only MemoryError is
 * raised from here.
 *
 * A typed node's payload is packed in place: six bytes are reserved for the largest
 * extension header (ext 32), the payload is written after them, and once its length is
 * known the header is written and the payload moved down over the unused bytes. Trees
 * are small (their arrays are out of line), so the moves cost little.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_bytes.h"
#include <stdint.h>
#include <string.h>

/* msgpack's own nesting limit per pack() call (DEFAULT_RECURSE_LIMIT): deeper than this,
 * the Python packer raises, so the compiled one leaves it to it. */
#define CONTAINER_LIMIT 511
#define EXT_HEAD_MAX 6

typedef struct {
    SkjarBytes out;                /* what is packed so far */
    PyObject *node, *shared, *ref; /* the three classes (borrowed) */
    int max_nesting;               /* typed-node nesting allowed (spec.MAX_NESTING) */
    int bail;                      /* 1: not fine, leave it to the Python packer */
} Packer;

static PyObject *s_code, *s_payload, *s_share_id, *s_value, *s_target;

static int
reserve(Packer *p, Py_ssize_t n)
{
    return skjar_bytes_reserve(&p->out, n);
}

static int
put(Packer *p, const void *data, Py_ssize_t n)
{
    return skjar_bytes_put(&p->out, data, n);
}

/* A marker byte then `n` bytes of `v`, big-endian. */
static int
put_be(Packer *p, unsigned char marker, uint64_t v, int n)
{
    unsigned char out[9];
    out[0] = marker;
    for (int i = 0; i < n; i++)
        out[1 + i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    return put(p, out, 1 + n);
}

/* A length-prefixed header: `fix` | n below `fix_limit`, else the 8/16/32-bit forms
 * (`m8` 0 where there is no 8-bit form). */
static int
put_length(Packer *p, Py_ssize_t n, int fix, Py_ssize_t fix_limit, int m8, int m16, int m32)
{
    if (n > (Py_ssize_t)0xffffffffLL) {
        p->bail = 1;
        return -1;
    }
    if (n < fix_limit)
        return put_be(p, (unsigned char)(fix | n), 0, 0);
    if (m8 && n < 0x100)
        return put_be(p, (unsigned char)m8, (uint64_t)n, 1);
    if (n < 0x10000)
        return put_be(p, (unsigned char)m16, (uint64_t)n, 2);
    return put_be(p, (unsigned char)m32, (uint64_t)n, 4);
}

/* msgpack-c's integer forms, as msgpack's packer picks them (positive: unsigned forms;
 * zero and below: signed ones). */
static int
put_int(Packer *p, PyObject *o)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow < 0) {
        p->bail = 1; /* below int64: msgpack raises */
        return -1;
    }
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(o);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            p->bail = 1;
            return -1;
        }
        return put_be(p, 0xcf, u, 8);
    }
    if (v < -32) {
        if (v < -32768)
            return v < -2147483648LL ? put_be(p, 0xd3, (uint64_t)v, 8)
                                     : put_be(p, 0xd2, (uint64_t)v, 4);
        return v < -128 ? put_be(p, 0xd1, (uint64_t)v, 2) : put_be(p, 0xd0, (uint64_t)v, 1);
    }
    if (v < 128)
        return put_be(p, (unsigned char)(v & 0xff), 0, 0);
    if (v < 0x10000)
        return v < 0x100 ? put_be(p, 0xcc, (uint64_t)v, 1) : put_be(p, 0xcd, (uint64_t)v, 2);
    return v < 0x100000000LL ? put_be(p, 0xce, (uint64_t)v, 4) : put_be(p, 0xcf, (uint64_t)v, 8);
}

static int pack_value(Packer *p, PyObject *o, int nest, int ext_depth);

/* Start an extension value: room for its header; returns where the payload starts. */
static Py_ssize_t
ext_open(Packer *p)
{
    if (reserve(p, EXT_HEAD_MAX) < 0)
        return -1;
    p->out.len += EXT_HEAD_MAX;
    return p->out.len;
}

/* Finish the extension value whose payload started at `start`: write its header just
 * before the payload and move the payload down over the reserved bytes left unused. */
static int
ext_close(Packer *p, Py_ssize_t start, long code)
{
    Py_ssize_t n = p->out.len - start;
    unsigned char head[EXT_HEAD_MAX];
    int h;
    if (n > (Py_ssize_t)0xffffffffLL) {
        p->bail = 1;
        return -1;
    }
    if (n == 1 || n == 2 || n == 4 || n == 8 || n == 16) {
        static const unsigned char fixext[17] = {
            [1] = 0xd4, [2] = 0xd5, [4] = 0xd6, [8] = 0xd7, [16] = 0xd8};
        head[0] = fixext[n];
        h = 1;
    }
    else if (n < 0x100) {
        head[0] = 0xc7;
        head[1] = (unsigned char)n;
        h = 2;
    }
    else if (n < 0x10000) {
        head[0] = 0xc8;
        head[1] = (unsigned char)(n >> 8);
        head[2] = (unsigned char)n;
        h = 3;
    }
    else {
        head[0] = 0xc9;
        for (int i = 0; i < 4; i++)
            head[1 + i] = (unsigned char)(n >> (8 * (3 - i)));
        h = 5;
    }
    head[h++] = (unsigned char)(signed char)code;
    char *at = p->out.buf + start - EXT_HEAD_MAX;
    memcpy(at, head, (size_t)h);
    if (h < EXT_HEAD_MAX)
        memmove(at + h, p->out.buf + start, (size_t)n);
    p->out.len -= EXT_HEAD_MAX - h;
    return 0;
}

/* An attribute of a node (a slot: always set by its constructor). */
static PyObject *
slot(PyObject *o, PyObject *name)
{
    return PyObject_GetAttr(o, name);
}

/* A typed value: `code` with `payload` packed inside, `ext_depth` typed values deep
 * (Encoder._ext: the limit counts the node itself). */
static int
pack_ext(Packer *p, long code, PyObject *payload, int ext_depth)
{
    if (ext_depth > p->max_nesting || code < 0 || code > 127) {
        p->bail = 1;
        return -1;
    }
    Py_ssize_t start = ext_open(p);
    if (start < 0 || pack_value(p, payload, CONTAINER_LIMIT, ext_depth) < 0)
        return -1;
    return ext_close(p, start, code);
}

/* Encoder._pack_default's cases: a Node, a Shared container, a SharedRef. */
static int
pack_typed(Packer *p, PyObject *o, int nest, int ext_depth)
{
    PyTypeObject *t = Py_TYPE(o);
    int rc = -1;
    if ((PyObject *)t == p->node) {
        PyObject *code = slot(o, s_code), *payload = NULL, *share = NULL;
        long c = -1;
        if (code == NULL)
            goto node_done;
        if (!PyLong_CheckExact(code)) {
            p->bail = 1;
            goto node_done;
        }
        c = PyLong_AsLong(code);
        if (c == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            p->bail = 1;
            goto node_done;
        }
        if ((payload = slot(o, s_payload)) == NULL || (share = slot(o, s_share_id)) == NULL)
            goto node_done;
        if (share == Py_None) {
            rc = pack_ext(p, c, payload, ext_depth + 1);
            goto node_done;
        }
        /* SHARED_DEF [share_id, node]: the wrapper counts one level, the node another. */
        if (ext_depth + 1 > p->max_nesting) {
            p->bail = 1;
            goto node_done;
        }
        Py_ssize_t start = ext_open(p);
        if (start < 0 || put_be(p, 0x92, 0, 0) < 0 || pack_value(p, share, CONTAINER_LIMIT - 1, 0) < 0 ||
            pack_ext(p, c, payload, ext_depth + 2) < 0 || ext_close(p, start, 1) < 0)
            goto node_done;
        rc = 0;
node_done:
        Py_XDECREF(code);
        Py_XDECREF(payload);
        Py_XDECREF(share);
        return rc;
    }
    if ((PyObject *)t == p->shared) {
        PyObject *share = slot(o, s_share_id), *value = NULL;
        if (share == NULL || (value = slot(o, s_value)) == NULL)
            goto shared_done;
        if (share == Py_None) {
            /* Packed where it stands, at the same level (msgpack packs the default hook's
             * result without calling the hook again: a second typed value is refused). */
            PyTypeObject *vt = Py_TYPE(value);
            if ((PyObject *)vt == p->node || (PyObject *)vt == p->shared ||
                (PyObject *)vt == p->ref) {
                p->bail = 1;
                goto shared_done;
            }
            rc = pack_value(p, value, nest, ext_depth);
            goto shared_done;
        }
        if (ext_depth + 1 > p->max_nesting) {
            p->bail = 1;
            goto shared_done;
        }
        Py_ssize_t start = ext_open(p);
        if (start < 0 || put_be(p, 0x92, 0, 0) < 0 ||
            pack_value(p, share, CONTAINER_LIMIT - 1, ext_depth + 1) < 0 ||
            pack_value(p, value, CONTAINER_LIMIT - 1, ext_depth + 1) < 0 || ext_close(p, start, 1) < 0)
            goto shared_done;
        rc = 0;
shared_done:
        Py_XDECREF(share);
        Py_XDECREF(value);
        return rc;
    }
    if ((PyObject *)t == p->ref) {
        PyObject *target = slot(o, s_target), *share = NULL;
        if (target == NULL)
            return -1;
        PyTypeObject *tt = Py_TYPE(target);
        if ((PyObject *)tt != p->node && (PyObject *)tt != p->shared) {
            p->bail = 1;
        }
        else if ((share = slot(target, s_share_id)) != NULL) {
            rc = pack_ext(p, 2, share, ext_depth + 1);
        }
        Py_DECREF(target);
        Py_XDECREF(share);
        return rc;
    }
    p->bail = 1; /* the hook raises TypeError for anything else */
    return -1;
}

/* One value, as msgpack's _pack with strict_types: `nest` is its nesting budget. */
static int
pack_value(Packer *p, PyObject *o, int nest, int ext_depth)
{
    if (nest < 0) {
        p->bail = 1;
        return -1;
    }
    nest -= 1;
    if (o == Py_None)
        return put_be(p, 0xc0, 0, 0);
    if (o == Py_True)
        return put_be(p, 0xc3, 0, 0);
    if (o == Py_False)
        return put_be(p, 0xc2, 0, 0);
    PyTypeObject *t = Py_TYPE(o);
    if (t == &PyLong_Type)
        return put_int(p, o);
    if (t == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(o);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        return put_be(p, 0xcb, bits, 8);
    }
    if (t == &PyUnicode_Type) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(o, &n);
        if (s == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
                return -1;
            PyErr_Clear(); /* a lone surrogate: the Python packer names where it is */
            p->bail = 1;
            return -1;
        }
        if (put_length(p, n, 0xa0, 32, 0xd9, 0xda, 0xdb) < 0)
            return -1;
        return put(p, s, n);
    }
    if (t == &PyBytes_Type || t == &PyByteArray_Type) {
        Py_ssize_t n = Py_SIZE(o);
        const char *s = t == &PyBytes_Type ? PyBytes_AS_STRING(o) : PyByteArray_AS_STRING(o);
        if (put_length(p, n, 0, 0, 0xc4, 0xc5, 0xc6) < 0)
            return -1;
        return put(p, s, n);
    }
    if (t == &PyDict_Type) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        if (put_length(p, PyDict_GET_SIZE(o), 0x80, 16, 0, 0xde, 0xdf) < 0)
            return -1;
        while (PyDict_Next(o, &pos, &k, &v)) {
            Py_INCREF(k);
            Py_INCREF(v);
            int rc = pack_value(p, k, nest, ext_depth);
            if (rc == 0)
                rc = pack_value(p, v, nest, ext_depth);
            Py_DECREF(k);
            Py_DECREF(v);
            if (rc < 0)
                return -1;
        }
        return 0;
    }
    if (t == &PyList_Type) {
        if (put_length(p, PyList_GET_SIZE(o), 0x90, 16, 0, 0xdc, 0xdd) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(o); i++) {
            PyObject *item = PyList_GET_ITEM(o, i);
            Py_INCREF(item);
            int rc = pack_value(p, item, nest, ext_depth);
            Py_DECREF(item);
            if (rc < 0)
                return -1;
        }
        return 0;
    }
    return pack_typed(p, o, nest, ext_depth);
}

/* pack_tree(tree, classes, max_nesting) -> bytes | None
 *
 * `classes` is (Node, Shared, SharedRef). None: not fine, run the Python packer. */
PyObject *
skjar_pack_tree(PyObject *self, PyObject *args)
{
    PyObject *tree;
    Packer p = {0};
    if (!PyArg_ParseTuple(args, "O(OOO)i", &tree, &p.node, &p.shared, &p.ref, &p.max_nesting))
        return NULL;
    if (s_code == NULL) {
        if ((s_code = PyUnicode_InternFromString("code")) == NULL ||
            (s_payload = PyUnicode_InternFromString("payload")) == NULL ||
            (s_share_id = PyUnicode_InternFromString("share_id")) == NULL ||
            (s_value = PyUnicode_InternFromString("value")) == NULL ||
            (s_target = PyUnicode_InternFromString("target")) == NULL)
            return NULL;
    }
    PyObject *out = NULL;
    if (pack_value(&p, tree, CONTAINER_LIMIT, 0) == 0)
        out = PyBytes_FromStringAndSize(p.out.buf ? p.out.buf : "", p.out.len);
    else if (!PyErr_Occurred() || !PyErr_ExceptionMatches(PyExc_MemoryError)) {
        PyErr_Clear(); /* whatever it was, the Python packer meets it too and says what */
        out = Py_NewRef(Py_None);
    }
    PyMem_Free(p.out.buf);
    return out;
}
