/* The integrity digest, XXH3-128, compiled in (format/digest.py says why XXH3).
 *
 * `Hasher` is a drop-in for xxhash's `xxh3_128` as skjar uses it - update(buffer),
 * digest() (16 bytes, xxHash's canonical big-endian form), copy() - and the reader's
 * front (_front.c) hashes through the skjar_xxh3_* functions below without a Python
 * call per piece. The hash is xxHash's own code (_vendor/xxhash.h, BSD 2-clause,
 * the version python-xxhash 4.1 builds), so digests equal python-xxhash's, which
 * stays the pure-Python fallback: tests/test_digest.py compares the two.
 *
 * Why not keep calling python-xxhash: its first use in a fresh process maps in ~120
 * KiB of its extension's code (30 page faults, ~57 us in a forked child: a tenth of a
 * tiny model's extra peak RSS over pickle's), and the front paid a method call per
 * piece hashed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_hot.h"

#define XXH_INLINE_ALL
#include "_vendor/xxhash.h"

#ifdef SKJAR_XXH_DISPATCH
/* x86: the update picks SSE2, AVX2 or AVX-512 at run time (_vendor/xxh_x86dispatch.c,
 * as python-xxhash builds it): 31 against 25 GiB/s for SSE2 alone here. Declared
 * by hand: its header would clash with the inlined names above. The state is the
 * same struct either way. */
int XXH3_128bits_update_dispatch(void *state, const void *input, size_t len);
#define HASH_UPDATE(state, data, n) XXH3_128bits_update_dispatch((state), (data), (n))
#else
#define HASH_UPDATE(state, data, n) XXH3_128bits_update((XXH3_state_t *)(state), (data), (n))
#endif

/* Updates of at least this many bytes run without the GIL (so the page-in helper
 * threads can take it meanwhile); below, releasing it costs more than the hash. */
#define NOGIL_MIN (64 << 10)

typedef struct {
    PyObject_HEAD
    XXH3_state_t *state;
    int busy; /* an update runs without the GIL: the state is not to be touched */
} Hasher;

SKJAR_HOT void *
skjar_xxh3_new(void)
{
    XXH3_state_t *state = XXH3_createState();
    if (state != NULL) {
        XXH3_128bits_reset(state);
    }
    return state;
}

static int
hasher_free_to_use(Hasher *self)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this Hasher is being updated in another thread");
        return 0;
    }
    return 1;
}

SKJAR_HOT void
skjar_xxh3_update(void *state, const void *data, size_t n)
{
    if (n >= NOGIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        HASH_UPDATE(state, data, n);
        Py_END_ALLOW_THREADS
    }
    else {
        /* The inlined baseline update, not the dispatched one: same state, same digest,
         * and for these sizes as fast, but its code sits with this hot function rather
         * than at the far end of the library (_hot.h). */
        XXH3_128bits_update((XXH3_state_t *)state, data, n);
    }
}

SKJAR_HOT void
skjar_xxh3_digest(void *state, unsigned char out[16])
{
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest((XXH3_state_t *)state));
    memcpy(out, canonical.digest, 16);
}

SKJAR_HOT void
skjar_xxh3_free(void *state)
{
    XXH3_freeState((XXH3_state_t *)state);
}

static PyTypeObject HasherType;

/* An update that never touches the GIL: for a thread that does not hold it. */
void
skjar_xxh3_update_unlocked(void *state, const void *data, size_t n)
{
    HASH_UPDATE(state, data, n);
}

static PyObject *
hasher_alloc(PyTypeObject *type)
{
    Hasher *self = (Hasher *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->state = skjar_xxh3_new();
    if (self->state == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static PyObject *
hasher_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) || PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "Hasher() takes no arguments");
        return NULL;
    }
    return hasher_alloc(type);
}

static void
hasher_dealloc(Hasher *self)
{
    if (self->state != NULL) {
        skjar_xxh3_free(self->state);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
hasher_update(Hasher *self, PyObject *data)
{
    Py_buffer view;
    if (!hasher_free_to_use(self) || PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    self->busy = 1; /* set and cleared with the GIL held: another thread sees it */
    skjar_xxh3_update(self->state, view.buf, (size_t)view.len);
    self->busy = 0;
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyObject *
hasher_digest(Hasher *self, PyObject *unused)
{
    unsigned char out[16];
    if (!hasher_free_to_use(self)) {
        return NULL;
    }
    skjar_xxh3_digest(self->state, out);
    return PyBytes_FromStringAndSize((const char *)out, 16);
}

static PyObject *
hasher_copy(Hasher *self, PyObject *unused)
{
    if (!hasher_free_to_use(self)) {
        return NULL;
    }
    Hasher *copy = (Hasher *)hasher_alloc(Py_TYPE(self));
    if (copy != NULL) {
        XXH3_copyState(copy->state, self->state);
    }
    return (PyObject *)copy;
}

static PyMethodDef hasher_methods[] = {
    {"update", (PyCFunction)hasher_update, METH_O, "update(buffer): hash these bytes next"},
    {"digest", (PyCFunction)hasher_digest, METH_NOARGS,
     "digest() -> bytes: the XXH3-128 of everything so far, 16 bytes (canonical form)"},
    {"copy", (PyCFunction)hasher_copy, METH_NOARGS, "copy() -> Hasher: the same state, apart"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HasherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "skjar._speedups.Hasher",
    .tp_basicsize = sizeof(Hasher),
    .tp_dealloc = (destructor)hasher_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Hasher() -> XXH3-128 hasher; update(buffer), digest(), copy(). One thread at a "
              "time: a call during another thread's update raises RuntimeError.",
    .tp_methods = hasher_methods,
    .tp_new = hasher_new,
};

int
skjar_add_hasher(PyObject *module)
{
    return PyModule_AddType(module, &HasherType); /* readied, added as "Hasher" */
}
