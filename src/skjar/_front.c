/* read_small(source, admit, spec, known, mapper, full, check_signature)
 *     -> (tree, buffers, declared) | (tree, buffers, declared, coded) | None
 *
 * The common case of format/reader.py's open_source in one compiled pass: a jar read
 * from a path or a plain file object's region (reader.FileRegion: its descriptor, read
 * with pread from its position) - or copied from bytes, a bytearray or a memoryview, as
 * loads() gives it - under the page-in helpers' size (spec[11]: at most this many
 * bytes), fully verified. Sections of spec[10] bytes or more get an allocation of
 * their own, as read_body gives them; spec[12] is the prefault threshold. The twin is
 * open_source itself; this checks what it checks, in the same order:
 *
 *   - the preamble (magic, format version, no flag but the signed one, header length
 *     bounds), the header's JSON (through _json.c) and the shape parse_header requires;
 *   - the layout as plan_layout computes it - sections "none"-coded with size = length,
 *     or zstd/lz4-coded within the codec's ratio (spec[13:16]), packs from format 1.2
 *     (spec[16]) - and a file of exactly the size the layout describes;
 *   - the trailer's end magic, both XXH3-128 digests (_digest.c; the first over the
 *     bytes up to the tree's end, the second over all of them, a signature block
 *     included: spec[17:19]);
 *   - with `check_signature` (a load that requires a signature: only a signed jar is
 *     taken), check_signature(message, block) - the bytes before the block as
 *     memoryviews, the block as bytes - whose SignatureError propagates; without it a
 *     signature is not checked, as open_source does not check it;
 *   - zero padding between sections;
 *   - then admit(header) - trust and versions, in Python - whose errors propagate;
 *     when `known` is not None (a load trusting only the defaults), its common answer
 *     is first sought in C (fast_admit).
 *
 * A jar with compressed sections comes back with `coded`: per section, None or (codec,
 * size, pack members), and its sections as stored; read_small decompresses them as
 * open_source does, after admit as there (the codecs' own checks are theirs).
 *
 * With `mapper` (mmap.mmap with ACCESS_COPY, called on the descriptor) the jar at a
 * path (bytes are left to open_source, which refuses them), uncompressed, of any size,
 * is mapped instead of read, as open_source(mmap=True) maps it, and unless `full`
 * only its structure is verified (the first digest, the padding before the tree).
 *
 * The preamble and header are read first; a jar the front takes is then read with
 * one pread() per piece - each large section, and the runs of bytes between them
 * packed into one bytearray - every piece at an address equal to its file offset mod
 * 64, and the tree and buffers are memoryviews of them (open_source's are uint8 numpy
 * views of its body: the decoder takes either). Anything else - a chunked section, a
 * signed jar mapped, a file of the helpers' size, any check that fails, a file that
 * cannot be opened - returns None before admit, and open_source reads the file again
 * and accepts it or says precisely what is wrong.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_hot.h"
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif
#ifndef O_NONBLOCK
#define O_NONBLOCK 0
#endif

PyObject *skjar_json_parse(const unsigned char *p, Py_ssize_t n);
PyObject *skjar_json_parse_unread(const unsigned char *p, Py_ssize_t n, PyObject *const *unread,
                                  int n_unread);
int skjar_populate(void *p, Py_ssize_t n);
void *skjar_xxh3_new(void);
void skjar_xxh3_update(void *state, const void *data, size_t n);
void skjar_xxh3_digest(void *state, unsigned char out[16]);
void skjar_xxh3_free(void *state);

typedef struct {
    const char *magic, *end_magic;
    Py_ssize_t magic_len, end_magic_len;
    int major, minor;
    long long max_header, max_buffers, alignment, preamble, trailer, digest, own, max_file;
    long long prefault; /* buffers this large have their pages mapped in at once */
    /* header.plan_layout's bounds on compressed sections (spec.MAX_RATIO, RATIO_SLACK)
     * and the first minor version with packs (spec.PACKS_SINCE) */
    long long zstd_ratio, lz4_ratio, ratio_slack;
    int packs_minor;
    /* the preamble's signed flag and the signature block before the trailer (spec.py) */
    long long signed_flag, signature_size;
} Spec;

SKJAR_HOT static uint64_t
le(const unsigned char *q, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) {
        v = (v << 8) | q[i];
    }
    return v;
}

SKJAR_HOT static Py_ssize_t
align_up(Py_ssize_t n, long long alignment)
{
    return (Py_ssize_t)((n + alignment - 1) / alignment * alignment);
}

/* An open descriptor of the regular file at `path`, if it is small enough, and its size;
 * -1 otherwise (cannot open, not a regular file, too small or too large). */
SKJAR_HOT static int
open_small(const char *path, Py_ssize_t path_len, const Spec *s, Py_ssize_t *size)
{
    if (memchr(path, 0, (size_t)path_len) != NULL) {
        return -1; /* no file has such a name: the Python reader says so */
    }
    /* A named pipe must not be opened here: even without blocking, an open reader lets
     * its writer start, and closing it loses what was written. It is not a regular file,
     * so it is left to the Python reader, which streams it. (O_NONBLOCK: should the path
     * become a pipe between the two calls, the open still does not wait for a writer.) */
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < s->preamble ||
        st.st_size > s->max_file) {
        close(fd);
        return -1;
    }
    *size = (Py_ssize_t)st.st_size;
    return fd;
}

/* open_small for a path given as str or os.PathLike (encoded as os.fsencode
 * does, without its Python). -1 for anything open_small refuses and for a path that
 * cannot be encoded (an embedded NUL, undecodable text): the Python reader then
 * decides and names the fault. -2 with the exception set for any other failure (a
 * KeyboardInterrupt in a PathLike's __fspath__ is not swallowed). */
SKJAR_HOT static int
open_path(PyObject *path_arg, const Spec *s, Py_ssize_t *size)
{
    PyObject *encoded = NULL;
    if (!PyUnicode_FSConverter(path_arg, &encoded)) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError) && !PyErr_ExceptionMatches(PyExc_TypeError)) {
            return -2;
        }
        PyErr_Clear(); /* (UnicodeError is a ValueError) */
        return -1;
    }
    int fd = open_small(PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded), s, size);
    Py_DECREF(encoded);
    return fd;
}

/* Where a jar's bytes come from: an open regular file, or a bytes-like object held for
 * the call (`mem.obj` set; loads() and inspect of bytes). A file object's file is read
 * through its descriptor (`borrowed`: never closed here) from `base` on. */
typedef struct {
    int fd, borrowed;
    Py_buffer mem;
    Py_ssize_t size, base;
} Source;

/* A plain file object's region, reader.FileRegion: (fd, offset, size, stream), the jar
 * being `size` bytes from `offset` on in the regular file open at `fd`. 1: taken; 0: left
 * to the Python reader (not a regular file, a size out of bounds); -1: an error. */
static int
open_region(PyObject *arg, const Spec *s, Source *src)
{
    const long fd = PyLong_AsLong(PyTuple_GET_ITEM(arg, 0));
    const Py_ssize_t offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(arg, 1));
    const Py_ssize_t size = PyLong_AsSsize_t(PyTuple_GET_ITEM(arg, 2));
    if (PyErr_Occurred()) {
        return -1;
    }
    struct stat st;
    if (fd < 0 || fd > INT_MAX || offset < 0 || size < s->preamble || size > s->max_file ||
        fstat((int)fd, &st) != 0 || !S_ISREG(st.st_mode) || offset > st.st_size - size) {
        return 0;
    }
    src->fd = (int)fd;
    src->borrowed = 1;
    src->base = offset;
    src->size = size;
    return 1;
}

/* Open `arg` as a Source: bytes, bytearray and memoryview are the jar itself (as
 * open_source takes them; their bytes are copied, never kept), a 4-tuple a file
 * object's region (open_region), anything else a path (open_path). 1: opened; 0: left
 * to the Python reader (nothing held, no error); -1: an error to raise. */
SKJAR_HOT static int
open_source_arg(PyObject *arg, const Spec *s, Source *src)
{
    src->fd = -1;
    src->borrowed = 0;
    src->base = 0;
    src->mem.obj = NULL;
    if (PyTuple_Check(arg) && PyTuple_GET_SIZE(arg) == 4) {
        return open_region(arg, s, src);
    }
    if (PyBytes_Check(arg) || PyByteArray_Check(arg) || PyMemoryView_Check(arg)) {
        if (PyObject_GetBuffer(arg, &src->mem, PyBUF_SIMPLE) < 0) {
            PyErr_Clear(); /* not contiguous, released...: the Python reader says so */
            src->mem.obj = NULL;
            return 0;
        }
        src->size = src->mem.len;
        if (src->size < s->preamble || src->size > s->max_file) {
            PyBuffer_Release(&src->mem);
            src->mem.obj = NULL;
            return 0;
        }
        return 1;
    }
    src->fd = open_path(arg, s, &src->size);
    return src->fd >= 0 ? 1 : src->fd == -2 ? -1 : 0;
}

SKJAR_HOT static void
close_source(Source *src)
{
    if (src->fd >= 0 && !src->borrowed) {
        close(src->fd);
    }
    src->fd = -1;
    if (src->mem.obj != NULL) {
        PyBuffer_Release(&src->mem);
        src->mem.obj = NULL;
    }
}

/* Read n bytes at `offset` into `out`: 0, or -1 (an error, or the source is shorter). */
SKJAR_HOT static int
read_at(const Source *src, char *out, Py_ssize_t n, Py_ssize_t offset)
{
    if (offset < 0 || n < 0 || offset > src->size || n > src->size - offset) {
        return -1; /* (a file region's file may go on past the jar) */
    }
    if (src->mem.obj != NULL) {
        memcpy(out, (const char *)src->mem.buf + offset, (size_t)n);
        return 0;
    }
    Py_ssize_t got = 0;
    while (got < n) {
        ssize_t k;
        Py_BEGIN_ALLOW_THREADS
        k = pread(src->fd, out + got, (size_t)(n - got), (off_t)(src->base + offset + got));
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

/* A layout section as header._section checks it: [length, size, codec] with exact
 * non-negative ints, `length` at most `limit`; "none" with size = length, or - when
 * `coded` (read_small's read jars) - "zstd" or "lz4" with a size the codec can produce
 * from `length` bytes (compression.check_ratio). 1 with *n = length, *size and *kind (0
 * none, else compressed); 0 for anything else. Any argument may be NULL (a key missing
 * from the header). */
SKJAR_HOT static int
stored_section(PyObject *length, PyObject *size, PyObject *codec, Py_ssize_t limit,
               const Spec *s, int coded, Py_ssize_t *n, Py_ssize_t *decoded, int *kind)
{
    if (length == NULL || size == NULL || codec == NULL || !PyLong_CheckExact(length) ||
        !PyLong_CheckExact(size) || !PyUnicode_CheckExact(codec)) {
        return 0;
    }
    Py_ssize_t a = PyLong_AsSsize_t(length), b = PyLong_AsSsize_t(size);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (a < 0 || b < 0 || a > limit) {
        return 0;
    }
    long long ratio = 0;
    if (PyUnicode_CompareWithASCIIString(codec, "none") == 0) {
        if (a != b) {
            return 0;
        }
        *kind = 0;
    } else if (!coded) {
        return 0;
    } else if (PyUnicode_CompareWithASCIIString(codec, "zstd") == 0) {
        ratio = s->zstd_ratio;
        *kind = 1;
    } else if (PyUnicode_CompareWithASCIIString(codec, "lz4") == 0) {
        ratio = s->lz4_ratio;
        *kind = 2;
    } else {
        return 0;
    }
    /* size <= length * ratio + slack, without overflow (both bounded by parse_spec) */
    if (ratio && a <= (PY_SSIZE_T_MAX - s->ratio_slack) / ratio &&
        b > a * ratio + s->ratio_slack) {
        return 0;
    }
    *n = a;
    *decoded = b;
    return 1;
}

/* A pack's member list (format 1.2: header._pack), for a compressed section of `decoded`
 * bytes: 2 to max_buffers exact non-negative ints whose aligned layout fills it exactly.
 * The members as a new tuple, or NULL (no error set) for anything else. */
static PyObject *
pack_members(PyObject *members, Py_ssize_t decoded, const Spec *s)
{
    if (!PyList_CheckExact(members) || PyList_GET_SIZE(members) < 2 ||
        PyList_GET_SIZE(members) > s->max_buffers) {
        return NULL;
    }
    Py_ssize_t end = 0;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(members); k++) {
        PyObject *m = PyList_GET_ITEM(members, k);
        Py_ssize_t v = PyLong_CheckExact(m) ? PyLong_AsSsize_t(m) : -1;
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
        }
        end = align_up(end, s->alignment);
        if (v < 0 || v > decoded || end > decoded - v) { /* past the section: refused */
            return NULL;
        }
        end += v;
    }
    return end == decoded ? PyList_AsTuple(members) : NULL;
}

SKJAR_HOT static int
all_zero(const unsigned char *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i]) {
            return 0;
        }
    }
    return 1;
}

/* A run of the file's bytes in memory: file offset, length, address, and the bytearray
 * holding it (NULL: the shared one; `start`: where in its owner it begins). */
typedef struct {
    Py_ssize_t off, len;
    unsigned char *mem;
    PyObject *owner;
    Py_ssize_t start;
} Piece;

/* The piece holding file offset `off` (pieces are in file order and contiguous). */
SKJAR_HOT static Piece *
holder(Piece *pieces, Py_ssize_t n, Py_ssize_t off)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        if (off < pieces[k].off + pieces[k].len) {
            return &pieces[k];
        }
    }
    return &pieces[n - 1];
}

/* The address of file bytes [off, off + len), which must lie within one piece, or NULL. */
SKJAR_HOT static const unsigned char *
at(Piece *pieces, Py_ssize_t n, Py_ssize_t off, Py_ssize_t len)
{
    Piece *q = holder(pieces, n, off);
    if (off < q->off || off + len > q->off + q->len) {
        return len == 0 ? q->mem : NULL;
    }
    return q->mem + (off - q->off);
}

/* A piece is read and hashed this many bytes at a time, so that the digest reads what the
 * read has just written from the CPU's nearer caches (reader.FEED_STEP). */
#define READ_STEP (1 << 20)

/* The digests of a read jar, taken as its bytes are read, in file order: at each mark
 * (the tree's end, then the end of the bytes the full digest covers), the digest of
 * the file's bytes before it. */
typedef struct {
    void *hasher;
    Py_ssize_t hashed; /* bytes [0, hashed) of the file are fed */
    Py_ssize_t marks[2];
    int nmarks, taken;
    unsigned char got[2][16];
} Digests;

/* Feed file bytes [off, off + n), which follow those fed before (off == hashed). */
SKJAR_HOT static void
digests_feed(Digests *d, Py_ssize_t off, const unsigned char *p, Py_ssize_t n)
{
    if (off != d->hashed) {
        d->nmarks = -1; /* out of order: never happens, and refuses the read if it does */
        return;
    }
    while (d->taken < d->nmarks && n > 0) {
        const Py_ssize_t mark = d->marks[d->taken];
        const Py_ssize_t take = n < mark - d->hashed ? n : mark - d->hashed;
        skjar_xxh3_update(d->hasher, p, (size_t)take);
        d->hashed += take;
        p += take;
        n -= take;
        if (d->hashed == mark) {
            skjar_xxh3_digest(d->hasher, d->got[d->taken++]);
        }
    }
}

/* The last spec tuple parse_spec took (a strong reference: the tuple and the ints and
 * bytes in it cannot change or be freed while it is held) and what it read from it. */
static PyObject *spec_seen;
static Spec spec_read;

/* The format constants (format/reader.py's _SMALL_SPEC), checked to fit together. The
 * same tuple every call but in tests: read once (its 21 conversions touched 21 objects,
 * ~5 us of a cold inspect). */
SKJAR_HOT static int
parse_spec(PyObject *spec, Spec *s, const char *who)
{
    if (spec == spec_seen) {
        *s = spec_read;
        return 1;
    }
    if (!PyArg_ParseTuple(spec, "y#y#iiLLLLLLLLLLLLiLL", &s->magic, &s->magic_len,
                          &s->end_magic, &s->end_magic_len, &s->major, &s->minor,
                          &s->max_header, &s->max_buffers, &s->alignment, &s->preamble,
                          &s->trailer, &s->digest, &s->own, &s->max_file, &s->prefault,
                          &s->zstd_ratio, &s->lz4_ratio, &s->ratio_slack, &s->packs_minor,
                          &s->signed_flag, &s->signature_size)) {
        return 0;
    }
    if (s->magic_len + 16 != s->preamble || s->alignment <= 0 || s->alignment > 64 ||
        64 % s->alignment != 0 || s->trailer != 2 * s->digest + s->end_magic_len ||
        s->zstd_ratio < 1 || s->lz4_ratio < 1 || s->zstd_ratio > (1LL << 30) ||
        s->lz4_ratio > (1LL << 30) || s->ratio_slack < 0 || s->ratio_slack > (1LL << 30) ||
        s->signed_flag <= 0 || s->signed_flag > 0xFFFFFFFFLL || s->signature_size < 0 ||
        s->signature_size > 4096) {
        PyErr_Format(PyExc_ValueError, "%s: the format constants do not fit", who);
        return 0;
    }
    Py_XSETREF(spec_seen, Py_NewRef(spec));
    spec_read = *s;
    return 1;
}

/* The keys the front looks up, as interned str made once when the module is imported
 * (skjar_front_init): a lookup by C string makes and hashes a new str each time, and in
 * a freshly forked process every such allocation, and every reference count written on
 * an object shared with the parent, can be a copy-on-write page fault. */
enum {
    K_PRODUCER, K_ENVIRONMENT, K_OBJECT, K_METADATA, K_NAMES, K_LAYOUT, /* the header's keys */
    K_TREE, K_BUFFERS, K_LENGTH, K_SIZE, K_CODEC, K_PACKAGES, K_NAME, K_MODULE, K_USES,
    K_VERSION, K_NONE, K_COMPRESSION,
    /* inspect's Info fields (read_info) and its sizes */
    K_FORMAT_VERSION, K_VERSION_SKEW, K_SIGNED, K_SIZES, K_FILE, K_HEADER, K_TREE_STORED,
    K_DATA_STORED, K_DATA, K_COUNT
};
static const char *KEY_TEXT[K_COUNT] = {"producer", "environment", "object", "metadata",
                                        "names", "layout", "tree", "buffers", "length", "size",
                                        "codec", "packages", "name", "module", "uses",
                                        "__version__", "none", "compression",
                                        "format_version", "version_skew", "signed", "sizes",
                                        "file", "header", "tree_stored", "data_stored",
                                        "data"};
static PyObject *KEYS[K_COUNT];

int
skjar_front_init(void)
{
    for (int i = 0; i < K_COUNT; i++) {
        if (KEYS[i] == NULL && (KEYS[i] = PyUnicode_InternFromString(KEY_TEXT[i])) == NULL) {
            return -1;
        }
    }
    return 0;
}

/* d[KEYS[k]], borrowed, or NULL (no error set: a lookup of a str key in an exact dict
 * cannot fail but for memory, which the caller's next allocation will meet). */
SKJAR_HOT static PyObject *
item(PyObject *d, int k)
{
    PyObject *v = PyDict_GetItemWithError(d, KEYS[k]);
    if (v == NULL && PyErr_Occurred()) {
        PyErr_Clear();
    }
    return v;
}

/* The preamble, the header and its layout, read from `src` - what read_small and
 * read_head share. 1: taken, with *header (a new reference), *head (the header's bytes,
 * PyMem), *spans ((offset, stored length) per section, the tree first; PyMem), *count
 * sections and *data_end; 0: not taken (any error cleared, nothing to free).
 * With `is_signed` non-NULL a signed jar is taken too, and *is_signed says whether it is.
 * With `coded` non-NULL, compressed sections and packs are taken too (no chunked one:
 * those are the page-in helpers' size), and *coded is NULL when none is compressed,
 * else a new list holding, per section, None or (codec, size, members) - members a
 * pack's buffer sizes, or () - which format/reader.py's read_small decompresses.
 * Without `describe`, *header's "producer", "object" and "metadata" are empty dicts:
 * checked, not built (skjar_json_parse_unread). */
SKJAR_HOT static int
front_head(const Source *src, const Spec *s, int describe, unsigned char *pre,
           unsigned char **head_out, Py_ssize_t *header_length_out, PyObject **header_out,
           Py_ssize_t **spans_out, Py_ssize_t *count_out, Py_ssize_t *data_end_out,
           PyObject **coded, int *is_signed)
{
    PyObject *header = NULL, *codings = NULL;
    unsigned char *head = NULL;
    Py_ssize_t *spans = NULL;
    const Py_ssize_t size = src->size;
    if (coded != NULL) {
        *coded = NULL;
    }
    /* One read for the preamble and, in the usual case, the whole header too. */
    unsigned char first[4096];
    Py_ssize_t got = size < (Py_ssize_t)sizeof first ? size : (Py_ssize_t)sizeof first;
    if (s->preamble > 64 || got < s->preamble || read_at(src, (char *)first, got, 0)) {
        goto not_taken;
    }
    memcpy(pre, first, (size_t)s->preamble);
    if (memcmp(pre, s->magic, (size_t)s->magic_len) != 0) {
        goto not_taken;
    }
    int major = (int)le(pre + s->magic_len, 2), minor = (int)le(pre + s->magic_len + 2, 2);
    uint64_t flags = le(pre + s->magic_len + 4, 4), header_length = le(pre + s->magic_len + 8, 8);
    /* The signed flag only where the caller takes signed jars (is_signed non-NULL). */
    if (flags != 0 && (is_signed == NULL || flags != (uint64_t)s->signed_flag)) {
        goto not_taken;
    }
    if (is_signed != NULL) {
        *is_signed = flags != 0;
    }
    if (major != s->major || minor > s->minor || header_length < 2 ||
        header_length > (uint64_t)s->max_header ||
        header_length > (uint64_t)(size - s->preamble)) {
        goto not_taken;
    }
    Py_ssize_t base = (Py_ssize_t)(s->preamble + (long long)header_length);
    head = PyMem_Malloc((size_t)header_length);
    if (head == NULL) {
        goto not_taken;
    }
    if (base <= got) {
        memcpy(head, first + s->preamble, (size_t)header_length);
    } else if (read_at(src, (char *)head, (Py_ssize_t)header_length, (Py_ssize_t)s->preamble)) {
        goto not_taken;
    }

    /* The header: JSON, and the shape parse_header requires. Unless the caller describes
     * the jar (inspect), the object summary, the producer and the metadata are only
     * checked, not built (_json.c); anything unusual there, and the builder decides. */
    if (!describe) {
        PyObject *const unread[3] = {KEYS[K_PRODUCER], KEYS[K_OBJECT], KEYS[K_METADATA]};
        header = skjar_json_parse_unread(head, (Py_ssize_t)header_length, unread, 3);
    }
    if (header == NULL && !PyErr_Occurred()) {
        header = skjar_json_parse(head, (Py_ssize_t)header_length);
    }
    if (header == NULL || !PyDict_CheckExact(header)) {
        goto not_taken;
    }
    for (int k = K_PRODUCER; k <= K_LAYOUT; k++) {
        PyObject *v = item(header, k);
        int want_list = k == K_NAMES;
        if (v == NULL || (want_list ? !PyList_CheckExact(v) : !PyDict_CheckExact(v))) {
            goto not_taken;
        }
    }

    /* The layout, as plan_layout computes it. */
    PyObject *layout = item(header, K_LAYOUT);
    PyObject *tree = item(layout, K_TREE);
    PyObject *buffers = item(layout, K_BUFFERS);
    if (tree == NULL || !PyDict_CheckExact(tree) || buffers == NULL ||
        !PyList_CheckExact(buffers) || PyList_GET_SIZE(buffers) > s->max_buffers) {
        goto not_taken;
    }
    Py_ssize_t count = PyList_GET_SIZE(buffers) + 1, buffer_count = 0;
    spans = PyMem_Malloc((size_t)count * 2 * sizeof(Py_ssize_t));
    if (spans == NULL) {
        goto not_taken;
    }
    const int packs = coded != NULL && minor >= s->packs_minor;
    Py_ssize_t pos = align_up(base, s->alignment);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *entry = i ? PyList_GET_ITEM(buffers, i - 1) : NULL, *codec, *members = NULL;
        Py_ssize_t n, decoded;
        int kind, ok;
        if (i == 0) {
            codec = item(tree, K_CODEC);
            ok = stored_section(item(tree, K_LENGTH), item(tree, K_SIZE), codec,
                                pos > size ? -1 : size - pos, s, coded != NULL, &n, &decoded,
                                &kind);
        } else {
            Py_ssize_t items = PyList_CheckExact(entry) ? PyList_GET_SIZE(entry) : 0;
            if (items != 3 && !(packs && items == 4)) {
                goto not_taken; /* a pack in a 1.1 jar, or malformed */
            }
            pos = align_up(pos, s->alignment);
            codec = PyList_GET_ITEM(entry, 2);
            ok = stored_section(PyList_GET_ITEM(entry, 0), PyList_GET_ITEM(entry, 1), codec,
                                pos > size ? -1 : size - pos, s, coded != NULL, &n, &decoded,
                                &kind);
            /* A fourth item: a pack of a compressed section (a chunk table is not taken) */
            if (ok && items == 4 &&
                (kind == 0 ||
                 (members = pack_members(PyList_GET_ITEM(entry, 3), decoded, s)) == NULL)) {
                goto not_taken;
            }
        }
        buffer_count += i == 0 ? 0 : members != NULL ? PyTuple_GET_SIZE(members) : 1;
        if (!ok || buffer_count > s->max_buffers) {
            Py_XDECREF(members);
            goto not_taken;
        }
        if (kind != 0) {
            if (codings == NULL && (codings = PyList_New(count)) == NULL) {
                Py_XDECREF(members);
                goto not_taken;
            }
            if (members == NULL) {
                members = PyTuple_New(0);
            }
            PyObject *one = members ? Py_BuildValue("(OnN)", codec, decoded, members) : NULL;
            if (one == NULL) {
                goto not_taken;
            }
            PyList_SET_ITEM(codings, i, one);
        }
        spans[2 * i] = pos;
        spans[2 * i + 1] = n;
        pos += n;
    }
    if (codings != NULL) {
        for (Py_ssize_t i = 0; i < count; i++) { /* the plain sections' slots */
            if (PyList_GET_ITEM(codings, i) == NULL) {
                PyList_SET_ITEM(codings, i, Py_NewRef(Py_None));
            }
        }
        *coded = codings;
    }
    *head_out = head;
    *header_length_out = (Py_ssize_t)header_length;
    *header_out = header;
    *spans_out = spans;
    *count_out = count;
    *data_end_out = pos;
    return 1;

not_taken:
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    Py_XDECREF(codings);
    Py_XDECREF(header);
    PyMem_Free(head);
    PyMem_Free(spans);
    return 0;
}

/* metadata.version_skew's "no skew" for `theirs`, a header's environment's packages (or
 * NULL): every package of `packages` (metadata.SKEW_MODULES: (module, package) pairs)
 * imported here, as a plain module whose own __version__ is the same str. 0 for anything
 * else (no error set), which the Python judges. */
SKJAR_HOT static int
same_versions(PyObject *theirs, PyObject *packages)
{
    PyObject *modules = PySys_GetObject("modules"); /* borrowed */
    if (theirs == NULL || !PyDict_CheckExact(theirs) || !PyTuple_CheckExact(packages) ||
        modules == NULL || !PyDict_Check(modules)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(packages); i++) {
        PyObject *pair = PyTuple_GET_ITEM(packages, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
            return 0;
        }
        PyObject *module = PyDict_GetItemWithError(modules, PyTuple_GET_ITEM(pair, 0));
        /* A plain module's own __version__, read from its dict: borrowed, so no reference
         * count is written (getattr would find the same; anything else is left to Python). */
        PyObject *version =
            module && PyModule_CheckExact(module) ? item(PyModule_GetDict(module), K_VERSION) : NULL;
        PyObject *theirs_version = PyDict_GetItemWithError(theirs, PyTuple_GET_ITEM(pair, 1));
        int same = version != NULL && PyUnicode_CheckExact(version) && theirs_version != NULL &&
                   PyUnicode_CheckExact(theirs_version) &&
                   PyUnicode_Compare(theirs_version, version) == 0;
        if (!same) {
            PyErr_Clear(); /* (a lookup's error: the Python meets it again) */
            return 0;
        }
    }
    return 1;
}

/* What admit(header) returns - declared_names(header) - when the load trusts only the
 * defaults and the header shows no version skew, compiled: a new dict, or NULL with no
 * error set for anything else (an untrusted or malformed name, other versions, an odd
 * type anywhere), which admit then judges in Python and names precisely.
 * `known` is (trust, packages): trust.DEFAULT_USES (name -> (module, uses), every pair of
 * which declared_names accepts: tests/test_front.py) and metadata.SKEW_MODULES ((module,
 * package) pairs). A name the defaults trust under its module for all its uses is
 * well-formed by that alone, so only declared_names' type checks are repeated here; the
 * versions here are read as metadata.here_packages reads an imported module's (its
 * __version__, a str), and a package not imported is left to Python. */
SKJAR_HOT static PyObject *
fast_admit(PyObject *header, PyObject *known)
{
    PyObject *trust, *packages, *out = NULL;
    if (!PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 2) {
        return NULL;
    }
    trust = PyTuple_GET_ITEM(known, 0);
    packages = PyTuple_GET_ITEM(known, 1);
    PyObject *env = item(header, K_ENVIRONMENT);
    PyObject *theirs = env && PyDict_CheckExact(env) ? item(env, K_PACKAGES) : NULL;
    PyObject *names = item(header, K_NAMES);
    if (!PyDict_CheckExact(trust) || names == NULL || !PyList_CheckExact(names) ||
        !same_versions(theirs, packages)) {
        goto not_fast;
    }
    out = PyDict_New();
    for (Py_ssize_t i = 0; out != NULL && i < PyList_GET_SIZE(names); i++) {
        PyObject *entry = PyList_GET_ITEM(names, i);
        if (!PyDict_CheckExact(entry)) {
            goto not_fast;
        }
        PyObject *name = item(entry, K_NAME);
        PyObject *module = item(entry, K_MODULE);
        PyObject *uses = item(entry, K_USES);
        if (name == NULL || !PyUnicode_CheckExact(name) || module == NULL ||
            !PyUnicode_CheckExact(module) || uses == NULL || !PyList_CheckExact(uses) ||
            PyList_GET_SIZE(uses) == 0 || PyDict_GetItemWithError(out, name) != NULL) {
            goto not_fast;
        }
        PyObject *trusted = PyDict_GetItemWithError(trust, name);
        if (trusted == NULL || !PyTuple_CheckExact(trusted) || PyTuple_GET_SIZE(trusted) != 2 ||
            !PyUnicode_CheckExact(PyTuple_GET_ITEM(trusted, 0)) ||
            PyUnicode_Compare(PyTuple_GET_ITEM(trusted, 0), module) != 0 ||
            !PyFrozenSet_CheckExact(PyTuple_GET_ITEM(trusted, 1))) {
            goto not_fast;
        }
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(uses); k++) {
            PyObject *use = PyList_GET_ITEM(uses, k);
            /* every default use is one of trust.USES */
            if (!PyUnicode_CheckExact(use) ||
                PySet_Contains(PyTuple_GET_ITEM(trusted, 1), use) != 1) {
                goto not_fast;
            }
        }
        PyObject *kinds = PyFrozenSet_New(uses);
        PyObject *value = kinds ? PyTuple_Pack(2, module, kinds) : NULL;
        Py_XDECREF(kinds);
        if (value == NULL || PyDict_SetItem(out, name, value) < 0) {
            Py_XDECREF(value);
            goto not_fast;
        }
        Py_DECREF(value);
    }
    return out;

not_fast:
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    Py_XDECREF(out);
    return NULL;
}

/* A memoryview of the file's bytes [off, off + len), which lie in the piece `q`: of its
 * own allocation, or of `array`, the memoryview of the shared one. */
SKJAR_HOT static PyObject *
piece_view(const Piece *q, PyObject *array, Py_ssize_t off, Py_ssize_t len)
{
    PyObject *whole = q->owner ? PyMemoryView_FromObject(q->owner) : Py_NewRef(array);
    Py_ssize_t at_ = q->start + off - q->off;
    PyObject *part = whole ? PySequence_GetSlice(whole, at_, at_ + len) : NULL;
    Py_XDECREF(whole);
    return part;
}

/* The file's bytes [0, end) as memoryviews, one per piece they lie in, in file order. */
static PyObject *
views_of(Piece *pieces, Py_ssize_t npieces, PyObject *array, Py_ssize_t end)
{
    PyObject *out = PyList_New(0);
    for (Py_ssize_t k = 0; out != NULL && k < npieces && pieces[k].off < end; k++) {
        Piece *q = &pieces[k];
        Py_ssize_t upto = q->off + q->len < end ? q->off + q->len : end;
        PyObject *part = piece_view(q, array, q->off, upto - q->off);
        if (part == NULL || PyList_Append(out, part) < 0) {
            Py_CLEAR(out);
        }
        Py_XDECREF(part);
    }
    return out;
}

SKJAR_HOT PyObject *
skjar_read_small(PyObject *self, PyObject *args)
{
    PyObject *source_arg, *admit, *spec, *known, *mapper, *check_signature;
    int full;
    Spec s;
    if (!PyArg_ParseTuple(args, "OOO!OOpO:read_small", &source_arg, &admit, &PyTuple_Type,
                          &spec, &known, &mapper, &full, &check_signature) ||
        !parse_spec(spec, &s, "read_small")) {
        return NULL;
    }
    int mapped = mapper != Py_None;
    if (!mapped && !full) {
        PyErr_SetString(PyExc_ValueError, "read_small: a read jar is verified in full");
        return NULL;
    }
    if (mapped) {
        s.max_file = PY_SSIZE_T_MAX; /* mapped, a jar of any size costs the same */
    }
    Source src;
    int opened = open_source_arg(source_arg, &s, &src);
    if (opened <= 0) {
        return opened < 0 ? NULL : Py_NewRef(Py_None);
    }
    if (mapped && (src.fd < 0 || src.borrowed)) { /* only a path is mapped */
        close_source(&src);
        Py_RETURN_NONE;
    }
    const Py_ssize_t size = src.size;
    PyObject *shared = NULL, *header = NULL, *array = NULL, *parts = NULL, *out = NULL;
    PyObject *mapping = NULL, *coded = NULL; /* coded: front_head's, for a compressed jar */
    Py_buffer map_view = {0};
    void *hasher = NULL;
    Digests digests = {0};
    Py_ssize_t *spans = NULL; /* (offset, length) per section, the tree first */
    Piece *pieces = NULL;     /* the file's bytes in memory, in file order */
    Py_ssize_t npieces = 0;
    unsigned char pre[64];
    unsigned char *head = NULL; /* the header's bytes, as first read */

    /* The preamble and the header first: a jar the front does not take is not read. */
    Py_ssize_t header_length = 0, count = 0, data_end = 0;
    int is_signed = 0;
    if (!front_head(&src, &s, 0, pre, &head, &header_length, &header, &spans, &count,
                    &data_end, mapped ? NULL : &coded, mapped ? NULL : &is_signed)) {
        goto not_fine;
    }
    /* A load that requires a signature takes only a signed jar (open_source refuses the
     * others with its own message); one that does not reads past a signature unchecked. */
    if (check_signature != Py_None && !is_signed) {
        goto not_fine;
    }
    Py_ssize_t base = (Py_ssize_t)s.preamble + header_length, pos;
    /* The bytes the full digest covers: a signature block is among them. */
    const Py_ssize_t hashed_end = data_end + (is_signed ? (Py_ssize_t)s.signature_size : 0);
    if (hashed_end + s.trailer != size) {
        goto not_fine;
    }

    /* The digests: up to the tree's end, and (unless a mapped load checks the structure
     * only) up to the trailer; a read jar's taken as it is read. */
    hasher = skjar_xxh3_new();
    if (hasher == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    digests = (Digests){hasher, 0, {spans[0] + spans[1], hashed_end}, full ? 2 : 1, 0, {{0}}};

    if (mapped) { /* one piece: the whole file, mapped copy-on-write (mapper: mmap.mmap) */
        PyObject *fileno = PyLong_FromLong(src.fd);
        mapping = fileno ? PyObject_CallOneArg(mapper, fileno) : NULL;
        Py_XDECREF(fileno);
        if (mapping == NULL || PyObject_GetBuffer(mapping, &map_view, PyBUF_SIMPLE) < 0) {
            goto not_fine;
        }
        pieces = PyMem_Calloc(1, sizeof(Piece));
        if (pieces == NULL || map_view.len != size) {
            goto not_fine;
        }
        pieces[npieces++] = (Piece){0, size, map_view.buf, NULL, 0};
        goto in_memory;
    }

    /* The file in pieces, as read_body splits a body: each section of `own` bytes or
     * more in an allocation of its own (freed as soon as its consumer is done with
     * it), the runs between them packed into one; every piece at an address equal to
     * its file offset mod 64, so that aligned sections stay aligned. */
    pieces = PyMem_Calloc((size_t)(2 * count + 1), sizeof(Piece));
    if (pieces == NULL) {
        goto not_fine;
    }
    Py_ssize_t runs = 0, cursor = 0;
    for (Py_ssize_t i = 0; i <= count; i++) {
        int last = i == count;
        if (!last && spans[2 * i + 1] < s.own) {
            continue;
        }
        Py_ssize_t until = last ? size : spans[2 * i];
        if (until > cursor) {
            pieces[npieces++] = (Piece){cursor, until - cursor, NULL, NULL, 0};
            runs += until - cursor + 63;
        }
        if (!last) {
            pieces[npieces++] = (Piece){spans[2 * i], spans[2 * i + 1], NULL, NULL, -1};
            cursor = spans[2 * i] + spans[2 * i + 1];
        }
    }
    shared = PyByteArray_FromStringAndSize(NULL, runs + 64);
    if (shared == NULL) {
        goto fail;
    }
    Py_ssize_t used = 0; /* of the shared allocation */
    for (Py_ssize_t k = 0; k < npieces; k++) {
        Piece *q = &pieces[k];
        Py_ssize_t at_ = used;
        if (q->start < 0) { /* a section of its own */
            q->owner = PyByteArray_FromStringAndSize(NULL, q->len + 64);
            if (q->owner == NULL) {
                goto fail;
            }
            at_ = 0;
        }
        char *mem = PyByteArray_AS_STRING(q->owner ? q->owner : shared);
        at_ += (Py_ssize_t)(((uintptr_t)q->off - (uintptr_t)(mem + at_)) & 63);
        q->start = at_;
        q->mem = (unsigned char *)mem + at_;
        if (q->owner == NULL) {
            used = at_ + q->len;
        }
        if (q->len >= s.prefault) {
            (void)skjar_populate(q->mem, q->len);
        }
        for (Py_ssize_t at_ = 0; at_ < q->len; at_ += READ_STEP) {
            const Py_ssize_t n = q->len - at_ < READ_STEP ? q->len - at_ : READ_STEP;
            if (read_at(&src, (char *)q->mem + at_, n, q->off + at_)) {
                goto not_fine;
            }
            digests_feed(&digests, q->off + at_, q->mem + at_, n);
        }
    }
in_memory:
    /* Its preamble and header must be those just judged (the file may have changed
     * between the reads): the first piece starts at 0 and holds them, since the tree
     * starts after the header. */
    if (pieces[0].off != 0 || pieces[0].len < base || memcmp(pieces[0].mem, pre, (size_t)s.preamble) != 0 ||
        memcmp(pieces[0].mem + s.preamble, head, (size_t)header_length) != 0) {
        goto not_fine;
    }
    close_source(&src);

    /* The trailer, the digests, the padding. */
    const unsigned char *trailer = at(pieces, npieces, hashed_end, s.trailer);
    if (trailer == NULL ||
        memcmp(trailer + 2 * s.digest, s.end_magic, (size_t)s.end_magic_len) != 0) {
        goto not_fine;
    }
    /* A read jar was hashed as it was read; a mapped one is hashed now. A mapped load
     * checks the structure only unless asked for more (open_source's verify="structure"):
     * the data's pages are not read, nor the padding between them. */
    if (mapped) {
        for (Py_ssize_t k = 0; k < npieces; k++) {
            digests_feed(&digests, pieces[k].off, pieces[k].mem, pieces[k].len);
        }
    }
    if (digests.nmarks < 1 || digests.taken != digests.nmarks || s.digest != 16) {
        goto not_fine;
    }
    for (int stage = 0; stage < digests.nmarks; stage++) {
        if (memcmp(digests.got[stage], trailer + stage * s.digest, 16) != 0) {
            goto not_fine;
        }
    }
    array = PyMemoryView_FromObject(mapped ? mapping : shared);
    if (array == NULL) {
        goto fail;
    }
    /* The signature, by the caller's keys (open_source's check_signature, in Python),
     * over the bytes before its block: its SignatureError is the load's. */
    if (check_signature != Py_None) {
        const unsigned char *block = at(pieces, npieces, data_end, s.signature_size);
        if (block == NULL) {
            goto not_fine;
        }
        PyObject *message = views_of(pieces, npieces, array, data_end);
        PyObject *signature = message ? PyBytes_FromStringAndSize((const char *)block,
                                                                  s.signature_size) : NULL;
        PyObject *checked = signature ? PyObject_CallFunctionObjArgs(check_signature, message,
                                                                     signature, NULL) : NULL;
        Py_XDECREF(message);
        Py_XDECREF(signature);
        if (checked == NULL) {
            goto fail;
        }
        Py_DECREF(checked);
    }
    pos = base;
    for (Py_ssize_t i = 0; i < (full ? count : 1); i++) {
        const unsigned char *gap = at(pieces, npieces, pos, spans[2 * i] - pos);
        if (gap == NULL || !all_zero(gap, spans[2 * i] - pos)) {
            goto not_fine;
        }
        pos = spans[2 * i] + spans[2 * i + 1];
    }

    /* The sections, as memoryviews of the allocations holding them (a numpy view each
     * cost a small model's load ~2 us and a page fault or so per section, cold). */
    parts = PyList_New(count);
    if (parts == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *part = piece_view(holder(pieces, npieces, spans[2 * i]), array,
                                    spans[2 * i], spans[2 * i + 1]);
        if (part == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(parts, i, part);
    }
    PyObject *tree_view = Py_NewRef(PyList_GET_ITEM(parts, 0));
    PyObject *rest = PyList_GetSlice(parts, 1, count);
    /* Trust and versions are judged on a verified header only, as in open_source. */
    PyObject *declared = NULL;
    if (rest != NULL) {
        declared = known != Py_None ? fast_admit(header, known) : NULL;
        if (declared == NULL) {
            declared = PyObject_CallOneArg(admit, header);
        }
    }
    if (declared != NULL) {
        out = coded == NULL ? PyTuple_Pack(3, tree_view, rest, declared)
                            : PyTuple_Pack(4, tree_view, rest, declared, coded);
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
    close_source(&src);
    if (map_view.obj != NULL) {
        PyBuffer_Release(&map_view);
    }
    Py_XDECREF(mapping); /* the sections' views hold it */
    for (Py_ssize_t k = 0; pieces != NULL && k < npieces; k++) {
        Py_XDECREF(pieces[k].owner);
    }
    PyMem_Free(pieces);
    PyMem_Free(spans);
    PyMem_Free(head);
    Py_XDECREF(header);
    Py_XDECREF(coded);
    Py_XDECREF(array);
    Py_XDECREF(parts);
    if (hasher != NULL) {
        skjar_xxh3_free(hasher);
    }
    Py_XDECREF(shared);
    return out;
}

/* The format constants from `spec`, and `source_arg` opened for a header read, from a
 * jar of any size (read_head's and read_info's start): open_source_arg's answer, or -1
 * with the error set when `spec` does not fit. */
static int
open_for_head(PyObject *source_arg, PyObject *spec, const char *who, Spec *s, Source *src)
{
    if (!parse_spec(spec, s, who)) {
        return -1;
    }
    s->max_file = PY_SSIZE_T_MAX; /* a header is read from a jar of any size */
    return open_source_arg(source_arg, s, src);
}

/* read_head(path, section, spec[, describe])
 *     -> ((major, minor), header, tree, buffers, data_end, size, flags) | None
 *
 * format/reader.py's read_header for a path, in one compiled call: the preamble (no
 * flags but the signed one), the header's JSON and shape, and its layout, compressed sections and packs
 * included, as front_head takes them for read_small, with `section` (header.Section, a
 * tuple type) made for each. Nothing past the header is read or checked, as
 * read_header reads nothing more; a signed jar's flag is given back (its block is past
 * the layout, unread). Anything else - a chunked section, damage, a file that cannot be
 * opened - returns None, and read_header decides in Python. With `describe` false the
 * header's object summary, producer and metadata are empty dicts, checked but not built,
 * as read_info reads them for an audit and read_small for a load.
 */
PyObject *
skjar_read_head(PyObject *self, PyObject *args)
{
    PyObject *source_arg;
    PyTypeObject *section;
    PyObject *spec;
    Spec s;
    int describe = 1;
    if (!PyArg_ParseTuple(args, "OO!O!|p:read_head", &source_arg, &PyType_Type, &section,
                          &PyTuple_Type, &spec, &describe)) {
        return NULL;
    }
    if (!PyType_IsSubtype(section, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "read_head: the section type must be a tuple type");
        return NULL;
    }
    Source src;
    int opened = open_for_head(source_arg, spec, "read_head", &s, &src);
    if (opened <= 0) {
        return opened < 0 ? NULL : Py_NewRef(Py_None);
    }
    const Py_ssize_t size = src.size;
    unsigned char pre[64], *head = NULL;
    PyObject *header = NULL;
    Py_ssize_t *spans = NULL, header_length = 0, count = 0, data_end = 0;
    PyObject *coded = NULL; /* per section None or (codec, size, members), if any is coded */
    int is_signed = 0;
    int taken = front_head(&src, &s, describe, pre, &head, &header_length, &header, &spans,
                           &count, &data_end, &coded, &is_signed);
    close_source(&src);
    if (!taken) {
        Py_RETURN_NONE;
    }
    PyMem_Free(head);
    PyObject *none = Py_NewRef(KEYS[K_NONE]), *empty = PyTuple_New(0);
    PyObject *zero = PyLong_FromLong(0);
    PyObject *sections = PyTuple_New(count), *out = NULL;
    if (none == NULL || empty == NULL || zero == NULL || sections == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *offset = PyLong_FromSsize_t(spans[2 * i]);
        PyObject *length = PyLong_FromSsize_t(spans[2 * i + 1]);
        /* (codec, size, pack members) of a compressed section, else NULL: plain */
        PyObject *coding = coded != NULL && PyList_GET_ITEM(coded, i) != Py_None
                               ? PyList_GET_ITEM(coded, i) : NULL;
        /* As tuple.__new__(section, items) makes it: header.Section's seven fields (no
         * chunks: front_head does not take them). */
        PyObject *one = offset && length ? section->tp_alloc(section, 7) : NULL;
        if (one == NULL) {
            Py_XDECREF(offset);
            Py_XDECREF(length);
            goto done;
        }
        PyTuple_SET_ITEM(one, 0, offset);
        PyTuple_SET_ITEM(one, 1, coding ? length : Py_NewRef(length));
        PyTuple_SET_ITEM(one, 2, Py_NewRef(coding ? PyTuple_GET_ITEM(coding, 0) : none));
        PyTuple_SET_ITEM(one, 3, coding ? Py_NewRef(PyTuple_GET_ITEM(coding, 1)) : length);
        PyTuple_SET_ITEM(one, 4, Py_NewRef(coding ? PyTuple_GET_ITEM(coding, 2) : empty));
        PyTuple_SET_ITEM(one, 5, Py_NewRef(zero));
        PyTuple_SET_ITEM(one, 6, Py_NewRef(empty));
        PyTuple_SET_ITEM(sections, i, one);
    }
    PyObject *buffers = PyTuple_GetSlice(sections, 1, count);
    if (buffers != NULL) {
        out = Py_BuildValue("((ii)ONNnnL)", (int)le(pre + s.magic_len, 2),
                            (int)le(pre + s.magic_len + 2, 2), header,
                            Py_NewRef(PyTuple_GET_ITEM(sections, 0)), buffers, data_end, size,
                            is_signed ? s.signed_flag : 0LL);
    }
done:
    PyMem_Free(spans);
    Py_XDECREF(header);
    Py_XDECREF(coded);
    Py_XDECREF(none);
    Py_XDECREF(empty);
    Py_XDECREF(zero);
    Py_XDECREF(sections);
    return out;
}

/* default_infos' answer for `header`: a new tuple, a new reference to None (not
 * taken), or NULL with an error set.
 *
 * `memo` is api._DEFAULT_INFOS: name -> (module, uses, trusted, NameInfo), the default
 * trust's answer for that name under that module and those uses (a sorted tuple), as
 * api._name_infos_python made it. A header's names are taken when each is a plain entry
 * whose module and uses (in order) are the memo's, trusted for all of them, the names in
 * strictly increasing order - as skjar writes them, and as the answer lists them - and the
 * versions are this process's: then the memo's NameInfos are the answer, and nothing
 * else is looked up or made. */
static PyObject *
default_infos_of(PyObject *header, PyObject *known, PyObject *memo)
{
    PyObject *env = item(header, K_ENVIRONMENT);
    PyObject *names = item(header, K_NAMES);
    if (!PyDict_CheckExact(memo) || !PyTuple_CheckExact(known) ||
        PyTuple_GET_SIZE(known) != 2 || env == NULL || !PyDict_CheckExact(env) ||
        names == NULL || !PyList_CheckExact(names) ||
        !same_versions(item(env, K_PACKAGES), PyTuple_GET_ITEM(known, 1))) {
        Py_RETURN_NONE;
    }
    const Py_ssize_t n = PyList_GET_SIZE(names);
    PyObject *out = PyTuple_New(n), *previous = NULL;
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *entry = PyList_GET_ITEM(names, i);
        PyObject *name = PyDict_CheckExact(entry) ? item(entry, K_NAME) : NULL;
        PyObject *module = name != NULL ? item(entry, K_MODULE) : NULL;
        PyObject *uses = module != NULL ? item(entry, K_USES) : NULL;
        PyObject *known_one = uses != NULL && PyUnicode_CheckExact(name) &&
                                      PyUnicode_CheckExact(module) && PyList_CheckExact(uses) &&
                                      (previous == NULL || PyUnicode_Compare(previous, name) < 0)
                                  ? PyDict_GetItemWithError(memo, name)
                                  : NULL;
        PyObject *their_uses = known_one != NULL && PyTuple_CheckExact(known_one) &&
                                       PyTuple_GET_SIZE(known_one) == 4
                                   ? PyTuple_GET_ITEM(known_one, 1)
                                   : NULL;
        int same = their_uses != NULL && PyTuple_GET_ITEM(known_one, 2) == Py_True &&
                   PyUnicode_CheckExact(PyTuple_GET_ITEM(known_one, 0)) &&
                   PyUnicode_Compare(PyTuple_GET_ITEM(known_one, 0), module) == 0 &&
                   PyTuple_CheckExact(their_uses) &&
                   PyTuple_GET_SIZE(their_uses) == PyList_GET_SIZE(uses);
        for (Py_ssize_t k = 0; same && k < PyList_GET_SIZE(uses); k++) {
            PyObject *use = PyList_GET_ITEM(uses, k);
            same = PyUnicode_CheckExact(use) &&
                   PyUnicode_CheckExact(PyTuple_GET_ITEM(their_uses, k)) &&
                   PyUnicode_Compare(use, PyTuple_GET_ITEM(their_uses, k)) == 0;
        }
        if (!same) {
            Py_CLEAR(out);
            if (!PyErr_Occurred()) {
                return Py_NewRef(Py_None);
            }
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, Py_NewRef(PyTuple_GET_ITEM(known_one, 3)));
        previous = name;
    }
    return out;
}

/* default_infos(header, known, memo) -> tuple | None
 *
 * api._name_infos(header, the default policy)'s answer, compiled, for what a cold
 * inspect or audit of a common jar meets (default_infos_of, above; read_info gives the
 * same for the header it reads): the header's NameInfos in name order. None for
 * anything else (a name outside the defaults, a version skew, an odd header, an entry
 * the memo lacks): the Python answers, and fills the memo for the next call. */
PyObject *
skjar_default_infos(PyObject *self, PyObject *args)
{
    PyObject *header, *known, *memo;
    if (!PyArg_ParseTuple(args, "O!OO!:default_infos", &PyDict_Type, &header, &known,
                          &PyDict_Type, &memo)) {
        return NULL;
    }
    if (!PyDict_CheckExact(header)) {
        Py_RETURN_NONE;
    }
    return default_infos_of(header, known, memo);
}

/* read_info(source, spec, known, memo, describe) -> (header, names, fields) | None
 *
 * What api.inspect (`describe` true) and api.audit (false) read, in one compiled call:
 * read_head's header, taken as front_head takes it, and default_infos' answer for it
 * (`names`: a tuple of NameInfo, or None when the Python must answer). With `describe`,
 * `fields` is a new dict of inspect's Info fields - format_version, producer,
 * environment, object, metadata, compression, sizes, signed, and names and version_skew
 * ({}) when `names` answers, else None in both - with no Section made for the layout
 * (their count and sums are the sizes); without it, None and the header read unbuilt as
 * for an audit. None for anything read_head refuses, or sums beyond a long long: then
 * the Python reader decides. */
PyObject *
skjar_read_info(PyObject *self, PyObject *args)
{
    PyObject *source_arg, *spec, *known, *memo;
    int describe;
    Spec s;
    if (!PyArg_ParseTuple(args, "OO!OO!p:read_info", &source_arg, &PyTuple_Type, &spec,
                          &known, &PyDict_Type, &memo, &describe)) {
        return NULL;
    }
    Source src;
    int opened = open_for_head(source_arg, spec, "read_info", &s, &src);
    if (opened <= 0) {
        return opened < 0 ? NULL : Py_NewRef(Py_None);
    }
    unsigned char pre[64], *head = NULL;
    PyObject *header = NULL, *coded = NULL, *names = NULL, *fields = NULL, *out = NULL;
    Py_ssize_t *spans = NULL, header_length = 0, count = 0, data_end = 0;
    int is_signed = 0;
    int taken = front_head(&src, &s, describe, pre, &head, &header_length, &header, &spans,
                           &count, &data_end, &coded, &is_signed);
    const Py_ssize_t size = src.size;
    close_source(&src);
    if (!taken) {
        Py_RETURN_NONE;
    }
    PyMem_Free(head);
    if ((names = default_infos_of(header, known, memo)) == NULL) {
        goto done;
    }
    if (describe) {
        /* The sizes as section_totals sums them: a section's stored length, its decoded
         * size (a coded one's from `coded`), and the buffers it holds (a pack's members). */
        long long pieces = 0, stored = 0, decoded = 0, tree_size = spans[1];
        for (Py_ssize_t i = 0; i < count; i++) {
            PyObject *coding = coded != NULL && PyList_GET_ITEM(coded, i) != Py_None
                                   ? PyList_GET_ITEM(coded, i) : NULL;
            long long length = spans[2 * i + 1], one = length;
            Py_ssize_t members = 0;
            if (coding != NULL) {
                one = PyLong_AsLongLong(PyTuple_GET_ITEM(coding, 1));
                members = PyTuple_GET_SIZE(PyTuple_GET_ITEM(coding, 2));
                if (one == -1 && PyErr_Occurred()) {
                    goto done;
                }
            }
            if (i == 0) {
                tree_size = one;
                continue;
            }
            if (length > LLONG_MAX - stored || one > LLONG_MAX - decoded) {
                Py_CLEAR(names);
                out = Py_NewRef(Py_None); /* Python sums without limit */
                goto done;
            }
            stored += length;
            decoded += one;
            pieces += members ? members : 1;
        }
        PyObject *compression = item(header, K_COMPRESSION);
        PyObject *sizes = Py_BuildValue("{OnOnOnOLOLOLOL}", KEYS[K_FILE], size, KEYS[K_HEADER],
                                        spans[0], KEYS[K_TREE_STORED], spans[1], KEYS[K_TREE],
                                        tree_size, KEYS[K_BUFFERS], pieces,
                                        KEYS[K_DATA_STORED], stored, KEYS[K_DATA], decoded);
        PyObject *version = PyUnicode_FromFormat("%d.%d", (int)le(pre + s.magic_len, 2),
                                                 (int)le(pre + s.magic_len + 2, 2));
        PyObject *skew = names != Py_None ? PyDict_New() : Py_NewRef(Py_None);
        if (sizes != NULL && version != NULL && skew != NULL) {
            fields = Py_BuildValue(
                "{OOOOOOOOOOOOOOOOOOOO}", KEYS[K_FORMAT_VERSION], version, KEYS[K_PRODUCER],
                item(header, K_PRODUCER), KEYS[K_ENVIRONMENT], item(header, K_ENVIRONMENT),
                KEYS[K_OBJECT], item(header, K_OBJECT), KEYS[K_METADATA],
                item(header, K_METADATA), KEYS[K_NAMES], names, KEYS[K_COMPRESSION],
                compression != NULL ? compression : Py_None, KEYS[K_SIZES], sizes,
                KEYS[K_VERSION_SKEW], skew, KEYS[K_SIGNED], is_signed ? Py_True : Py_False);
        }
        Py_XDECREF(sizes);
        Py_XDECREF(version);
        Py_XDECREF(skew);
        if (fields == NULL) {
            goto done;
        }
    }
    out = PyTuple_Pack(3, header, names, fields != NULL ? fields : Py_None);
done:
    PyMem_Free(spans);
    Py_XDECREF(header);
    Py_XDECREF(coded);
    Py_XDECREF(names);
    Py_XDECREF(fields);
    return out;
}

/* section_totals(sections) -> (pieces, stored, decoded) | None
 *
 * format/header.py's section_totals, compiled: over header.Section tuples, the buffers
 * they hold (a pack's members, else 1), their stored lengths' sum and their decoded
 * sizes' sum - api.inspect's sizes, with no Python step per section. None for anything
 * but a tuple or list of such tuples with int fields that fit. */
PyObject *
skjar_section_totals(PyObject *self, PyObject *sections)
{
    if (!PyTuple_CheckExact(sections) && !PyList_CheckExact(sections)) {
        Py_RETURN_NONE;
    }
    PyObject *fast = PySequence_Fast(sections, "sections");
    if (fast == NULL) {
        return NULL;
    }
    long long pieces = 0, stored = 0, decoded = 0;
    int ok = 1;
    for (Py_ssize_t i = 0; ok && i < PySequence_Fast_GET_SIZE(fast); i++) {
        PyObject *one = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyTuple_Check(one) || PyTuple_GET_SIZE(one) < 5 ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(one, 1)) ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(one, 3)) ||
            !PyTuple_CheckExact(PyTuple_GET_ITEM(one, 4))) {
            ok = 0;
            break;
        }
        int overflow = 0;
        long long length = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(one, 1), &overflow);
        long long size = overflow ? 0 : PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(one, 3),
                                                                     &overflow);
        Py_ssize_t members = PyTuple_GET_SIZE(PyTuple_GET_ITEM(one, 4));
        ok = !overflow && length >= 0 && size >= 0 && length <= LLONG_MAX - stored &&
             size <= LLONG_MAX - decoded;
        stored += ok ? length : 0;
        decoded += ok ? size : 0;
        pieces += members ? members : 1;
    }
    Py_DECREF(fast);
    if (!ok) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(LLL)", pieces, stored, decoded);
}
