/* read_small(path, admit, digest, frombuffer, spec) -> (tree, buffers, declared) | None
 *
 * The common case of format/reader.py's open_source in one compiled pass: a jar read
 * from a path, unsigned, uncompressed, small (spec[10]: no section that would get an
 * allocation of its own, spec[11]: at most this many bytes; spec[12]: the prefault
 * threshold), fully verified. The twin is
 * open_source itself; this checks what it checks, in the same order:
 *
 *   - the preamble (magic, format version, no flags, header length bounds), the
 *     header's JSON (through _json.c) and the shape parse_header requires;
 *   - the layout as plan_layout computes it, every section "none"-coded with size =
 *     length, and a file of exactly the size the layout describes;
 *   - the trailer's end magic, both XXH3-128 digests (`digest`: xxhash's one-shot
 *     xxh3_128_digest; the first over the bytes up to the tree's end, the second over
 *     all of them), and zero padding between sections;
 *   - then admit(header) - trust and versions, in Python - whose errors propagate.
 *
 * The preamble and header are read first; a jar the front takes is then read whole,
 * with one pread(), into a 64-byte-aligned bytearray viewed by numpy (`frombuffer`:
 * numpy.frombuffer with dtype uint8), and the tree and buffers are views of it, as
 * open_source's are of its body. Anything else - a signed or
 * compressed jar, a pack, a large section, any check that fails, a file that cannot be
 * opened - returns None before admit, and open_source reads the file again and
 * accepts it or says precisely what is wrong.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

PyObject *skjar_json_parse(const unsigned char *p, Py_ssize_t n);
int skjar_populate(void *p, Py_ssize_t n);

typedef struct {
    const char *magic, *end_magic;
    Py_ssize_t magic_len, end_magic_len;
    int major, minor;
    long long max_header, max_buffers, alignment, preamble, trailer, digest, own, max_file;
    long long prefault; /* buffers this large have their pages mapped in at once */
} Spec;

static uint64_t
le(const unsigned char *q, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) {
        v = (v << 8) | q[i];
    }
    return v;
}

static Py_ssize_t
align_up(Py_ssize_t n, long long alignment)
{
    return (Py_ssize_t)((n + alignment - 1) / alignment * alignment);
}

/* An open descriptor of the regular file at `path`, if it is small enough, and its size;
 * -1 otherwise (cannot open, not a regular file, too small or too large). */
static int
open_small(const char *path, const Spec *s, Py_ssize_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < s->preamble ||
        st.st_size > s->max_file) {
        close(fd);
        return -1;
    }
    *size = (Py_ssize_t)st.st_size;
    return fd;
}

/* Read n bytes at `offset` into `out`: 0, or -1 (an error, or the file is shorter). */
static int
read_at(int fd, char *out, Py_ssize_t n, Py_ssize_t offset)
{
    Py_ssize_t got = 0;
    while (got < n) {
        ssize_t k;
        Py_BEGIN_ALLOW_THREADS
        k = pread(fd, out + got, (size_t)(n - got), (off_t)(offset + got));
        Py_END_ALLOW_THREADS
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return -1;
        }
        got += k;
    }
    return 0;
}

/* A fresh bytearray of n + 64 bytes whose byte `*start` is 64-aligned, its pages mapped
 * in at once from `prefault` bytes (as aligned_empty does); NULL with an error set. */
static PyObject *
aligned_bytes(Py_ssize_t n, long long prefault, Py_ssize_t *start)
{
    PyObject *buf = PyByteArray_FromStringAndSize(NULL, n + 64);
    if (buf == NULL) {
        return NULL;
    }
    char *base = PyByteArray_AS_STRING(buf);
    *start = (Py_ssize_t)((64 - ((uintptr_t)base & 63)) & 63);
    if (n >= prefault) {
        (void)skjar_populate(base + *start, n);
    }
    return buf;
}

/* A layout section: [length, size, "none"] with size = length, at most `limit`. Any
 * argument may be NULL (a key missing from the header). */
static int
plain_section(PyObject *length, PyObject *size, PyObject *codec, Py_ssize_t limit, Py_ssize_t *n)
{
    if (length == NULL || size == NULL || codec == NULL || !PyLong_CheckExact(length) ||
        !PyLong_CheckExact(size) ||
        !PyUnicode_CheckExact(codec) || PyUnicode_CompareWithASCIIString(codec, "none") != 0) {
        return 0;
    }
    Py_ssize_t a = PyLong_AsSsize_t(length), b = PyLong_AsSsize_t(size);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (a < 0 || a != b || a > limit) {
        return 0;
    }
    *n = a;
    return 1;
}

static int
all_zero(const unsigned char *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i]) {
            return 0;
        }
    }
    return 1;
}

/* Whether digest(bytes [0, n) of the file) equals the 16 bytes at `expect`. */
static int
digest_ok(PyObject *digest, const unsigned char *file, Py_ssize_t n, const unsigned char *expect,
          long long size)
{
    PyObject *view = PyMemoryView_FromMemory((char *)file, n, PyBUF_READ);
    if (view == NULL) {
        return -1;
    }
    PyObject *got = PyObject_CallOneArg(digest, view);
    Py_DECREF(view);
    if (got == NULL) {
        return -1;
    }
    int ok = PyBytes_Check(got) && PyBytes_GET_SIZE(got) == size &&
             memcmp(PyBytes_AS_STRING(got), expect, (size_t)size) == 0;
    Py_DECREF(got);
    return ok;
}

static const char *HEADER_KEYS[] = {"producer", "environment", "object", "metadata", "names",
                                    "layout"};

PyObject *
skjar_read_small(PyObject *self, PyObject *args)
{
    const char *path;
    PyObject *admit, *digest, *frombuffer;
    Spec s;
    if (!PyArg_ParseTuple(args, "yOOO(y#y#iiLLLLLLLLL):read_small", &path, &admit, &digest,
                          &frombuffer, &s.magic, &s.magic_len, &s.end_magic, &s.end_magic_len,
                          &s.major, &s.minor, &s.max_header, &s.max_buffers, &s.alignment,
                          &s.preamble, &s.trailer, &s.digest, &s.own, &s.max_file,
                          &s.prefault)) {
        return NULL;
    }
    if (s.magic_len + 16 != s.preamble || s.alignment <= 0 || s.alignment > 64 ||
        64 % s.alignment != 0 || s.trailer != 2 * s.digest + s.end_magic_len) {
        PyErr_SetString(PyExc_ValueError, "read_small: the format constants do not fit");
        return NULL;
    }
    Py_ssize_t size = 0, start = 0;
    int fd = open_small(path, &s, &size);
    if (fd < 0) {
        Py_RETURN_NONE;
    }
    PyObject *buf = NULL, *header = NULL, *array = NULL, *parts = NULL, *out = NULL;
    Py_ssize_t *spans = NULL; /* (offset, length) per section, the tree first */
    unsigned char pre[64];
    unsigned char *head = NULL; /* the header's bytes, as first read */
    const unsigned char *file = NULL;

    /* The preamble and the header first: a jar the front does not take is not read. */
    if (s.preamble > (long long)sizeof pre || read_at(fd, (char *)pre, (Py_ssize_t)s.preamble, 0)) {
        goto not_fine;
    }
    if (memcmp(pre, s.magic, (size_t)s.magic_len) != 0) {
        goto not_fine;
    }
    int major = (int)le(pre + s.magic_len, 2), minor = (int)le(pre + s.magic_len + 2, 2);
    uint64_t flags = le(pre + s.magic_len + 4, 4), header_length = le(pre + s.magic_len + 8, 8);
    if (major != s.major || minor > s.minor || flags != 0 || header_length < 2 ||
        header_length > (uint64_t)s.max_header ||
        header_length > (uint64_t)(size - s.preamble)) {
        goto not_fine;
    }
    Py_ssize_t base = (Py_ssize_t)(s.preamble + (long long)header_length);
    head = PyMem_Malloc((size_t)header_length);
    if (head == NULL ||
        read_at(fd, (char *)head, (Py_ssize_t)header_length, (Py_ssize_t)s.preamble)) {
        goto not_fine;
    }

    /* The header: JSON, and the shape parse_header requires. */
    header = skjar_json_parse(head, (Py_ssize_t)header_length);
    if (header == NULL || !PyDict_CheckExact(header)) {
        goto not_fine;
    }
    for (size_t i = 0; i < sizeof HEADER_KEYS / sizeof *HEADER_KEYS; i++) {
        PyObject *v = PyDict_GetItemString(header, HEADER_KEYS[i]);
        int want_list = i == 4;
        if (v == NULL || (want_list ? !PyList_CheckExact(v) : !PyDict_CheckExact(v))) {
            goto not_fine;
        }
    }

    /* The layout, as plan_layout computes it. */
    PyObject *layout = PyDict_GetItemString(header, "layout");
    PyObject *tree = PyDict_GetItemString(layout, "tree");
    PyObject *buffers = PyDict_GetItemString(layout, "buffers");
    if (tree == NULL || !PyDict_CheckExact(tree) || buffers == NULL ||
        !PyList_CheckExact(buffers) || PyList_GET_SIZE(buffers) > s.max_buffers) {
        goto not_fine;
    }
    Py_ssize_t count = PyList_GET_SIZE(buffers) + 1;
    spans = PyMem_Malloc((size_t)count * 2 * sizeof(Py_ssize_t));
    if (spans == NULL) {
        goto not_fine;
    }
    Py_ssize_t pos = align_up(base, s.alignment), n;
    Py_ssize_t largest = (Py_ssize_t)s.own - 1; /* a section's length, at most */
    if (pos > size || !plain_section(PyDict_GetItemString(tree, "length"),
                                     PyDict_GetItemString(tree, "size"),
                                     PyDict_GetItemString(tree, "codec"),
                                     largest < size - pos ? largest : size - pos, &n)) {
        goto not_fine;
    }
    spans[0] = pos;
    spans[1] = n;
    pos += n;
    for (Py_ssize_t i = 1; i < count; i++) {
        PyObject *entry = PyList_GET_ITEM(buffers, i - 1);
        if (!PyList_CheckExact(entry) || PyList_GET_SIZE(entry) != 3) {
            goto not_fine; /* a pack, or malformed */
        }
        pos = align_up(pos, s.alignment);
        if (pos > size || !plain_section(PyList_GET_ITEM(entry, 0), PyList_GET_ITEM(entry, 1),
                                         PyList_GET_ITEM(entry, 2),
                                         largest < size - pos ? largest : size - pos, &n)) {
            goto not_fine;
        }
        spans[2 * i] = pos;
        spans[2 * i + 1] = n;
        pos += n;
    }
    Py_ssize_t data_end = pos;
    if (data_end + s.trailer != size) {
        goto not_fine;
    }

    /* The whole file, in one read; its preamble and header must be those just judged
     * (the file may have changed between the reads). */
    buf = aligned_bytes(size, s.prefault, &start);
    if (buf == NULL) {
        goto not_fine;
    }
    file = (const unsigned char *)PyByteArray_AS_STRING(buf) + start;
    if (read_at(fd, (char *)file, size, 0) || memcmp(file, pre, (size_t)s.preamble) != 0 ||
        memcmp(file + s.preamble, head, (size_t)header_length) != 0) {
        goto not_fine;
    }
    close(fd);
    fd = -1;

    /* The trailer, the digests, the padding. */
    const unsigned char *trailer = file + data_end;
    if (memcmp(trailer + 2 * s.digest, s.end_magic, (size_t)s.end_magic_len) != 0) {
        goto not_fine;
    }
    for (int stage = 0; stage < 2; stage++) {
        Py_ssize_t upto = stage == 0 ? spans[0] + spans[1] : data_end;
        int ok = digest_ok(digest, file, upto, trailer + stage * s.digest, s.digest);
        if (ok < 0) {
            goto fail;
        }
        if (!ok) {
            goto not_fine;
        }
    }
    pos = base;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!all_zero(file + pos, spans[2 * i] - pos)) {
            goto not_fine;
        }
        pos = spans[2 * i] + spans[2 * i + 1];
    }

    /* The sections, as views of one array over the file's bytes. */
    array = PyObject_CallOneArg(frombuffer, buf);
    parts = array == NULL ? NULL : PyList_New(count);
    if (parts == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *from = PyLong_FromSsize_t(start + spans[2 * i]);
        PyObject *to = PyLong_FromSsize_t(start + spans[2 * i] + spans[2 * i + 1]);
        PyObject *cut = from && to ? PySlice_New(from, to, NULL) : NULL;
        PyObject *part = cut ? PyObject_GetItem(array, cut) : NULL;
        Py_XDECREF(from);
        Py_XDECREF(to);
        Py_XDECREF(cut);
        if (part == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(parts, i, part);
    }
    PyObject *tree_view = PyMemoryView_FromObject(PyList_GET_ITEM(parts, 0));
    PyObject *rest = tree_view ? PyList_GetSlice(parts, 1, count) : NULL;
    /* Trust and versions are judged on a verified header only, as in open_source. */
    PyObject *declared = rest ? PyObject_CallOneArg(admit, header) : NULL;
    if (declared != NULL) {
        out = PyTuple_Pack(3, tree_view, rest, declared);
    }
    Py_XDECREF(tree_view);
    Py_XDECREF(rest);
    Py_XDECREF(declared);
    goto done;

not_fine:
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    out = Py_NewRef(Py_None);
    goto done;
fail:
    out = NULL;
done:
    if (fd >= 0) {
        close(fd);
    }
    PyMem_Free(spans);
    PyMem_Free(head);
    Py_XDECREF(header);
    Py_XDECREF(array);
    Py_XDECREF(parts);
    Py_XDECREF(buf);
    return out;
}
