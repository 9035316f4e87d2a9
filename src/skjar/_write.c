/* Writing an unsigned jar to a file: the twin of writer.py's `write_jar` loop.
 *
 * write_jar(fd, front, payloads, end_magic, alignment, position, started, write_chunk,
 *           writeback_chunk) -> (position, started)
 *
 * Writes `front` (the preamble and header), then each payload, each padded with zeros
 * to `alignment` as write_jar pads it (a payload may be a list of chunks, stored back
 * to back), then the trailer: the structure digest (XXH3-128 of everything up to the end
 * of the first payload, the tree), the digest of everything before the trailer, and
 * `end_magic`. Bytes are handed to the kernel in writev calls of about `write_chunk`,
 * and after every `writeback_chunk` past `started` their writeback is started
 * (sync_file_range), as _FileWriter does; the new position and writeback start are
 * returned.
 *
 * Why compiled: the Python loop took a few Python steps per piece (pad, hash, gather)
 * and the digest ran on the same core as the write. Here a jar of HASH_THREAD_MIN
 * bytes or more is hashed on a helper thread while this one writes the same bytes
 * (both only read them): the write, mostly the kernel's copy into the page cache, hides
 * the hash (mlp, 2.5 MB: 0.75 -> 0.69 ms and 0.78 -> 0.76 ms to write in two runs of 240
 * cold writes each). Nothing in the file depends on which thread hashed it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

void *skjar_xxh3_new(void);
void skjar_xxh3_update_unlocked(void *state, const void *data, size_t n);
void skjar_xxh3_digest(void *state, unsigned char out[16]);
void skjar_xxh3_free(void *state);
int skjar_start_writeback(int fd, long long offset, long long nbytes); /* _speedups.c */

#if !defined(_WIN32)
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

/* Below this a helper thread costs more than the hash it takes over: starting and
 * joining one took 25-60 us here with cold caches (median 56). Writes of two arrays,
 * threaded against inline, medians of 240 cold writes: 1.0 MB 0.35 against 0.30 ms,
 * 1.5 MB 0.47 against 0.46, 2 MB 0.50 against 0.54, 8 MB 2.02 against 2.43. */
#define HASH_THREAD_MIN ((size_t)3 << 19)
/* The format's alignment (spec.ALIGNMENT) at most: the pads' zeros are this many bytes of
 * the library's read-only data. */
#define MAX_ALIGNMENT 64
#ifndef IOV_MAX
#define IOV_MAX 16
#endif
#define GATHER_MAX (IOV_MAX < 1024 ? IOV_MAX : 1024)

static const char zeros[MAX_ALIGNMENT];

typedef struct {
    const char *data;
    size_t size;
} Segment;

typedef struct {
    const Segment *segments;
    Py_ssize_t count, tree_end; /* the structure digest covers segments [0, tree_end) */
    void *state;
    unsigned char digests[32]; /* the trailer's: structure, then everything */
} HashJob;

static void
hash_segments(HashJob *job)
{
    for (Py_ssize_t i = 0; i < job->count; i++) {
        if (i == job->tree_end) { /* (a digest leaves the state as it was) */
            skjar_xxh3_digest(job->state, job->digests);
        }
        skjar_xxh3_update_unlocked(job->state, job->segments[i].data, job->segments[i].size);
    }
    if (job->tree_end == job->count) {
        skjar_xxh3_digest(job->state, job->digests);
    }
    skjar_xxh3_digest(job->state, job->digests + 16);
}

static void *
hash_thread(void *arg)
{
    hash_segments((HashJob *)arg);
    return NULL;
}

#define NO_BYTES (-1)    /* the file took no bytes */
#define INTERRUPTED (-2) /* a signal handler raised: its exception is set */

/* Write every segment: 0, an errno, NO_BYTES or INTERRUPTED. Runs without the GIL, which
 * it takes back only to run signal handlers when a write is interrupted or cut short, as
 * a loop over os.writev would run them (PEP 475): Ctrl-C stops a long save to a pipe. */
static int
write_segments(int fd, const Segment *segments, Py_ssize_t count, size_t write_chunk,
               size_t writeback_chunk, long long *position, long long *started,
               PyThreadState **saved)
{
    struct iovec iov[GATHER_MAX];
    Py_ssize_t next = 0;
    size_t taken = 0; /* of segments[next] */
    while (next < count) {
        int n = 0;
        size_t gathered = 0;
        while (next < count && n < GATHER_MAX && gathered < write_chunk) {
            size_t left = segments[next].size - taken;
            size_t piece = left < write_chunk ? left : write_chunk;
            if (piece > 0) {
                iov[n].iov_base = (void *)(segments[next].data + taken);
                iov[n].iov_len = piece;
                n++;
                gathered += piece;
            }
            taken += piece;
            if (taken == segments[next].size) {
                next++;
                taken = 0;
            }
        }
        struct iovec *at = iov;
        while (n > 0) {
            ssize_t done = writev(fd, at, n);
            if (done < 0 && errno != EINTR) {
                return errno;
            }
            if (done == 0) {
                return NO_BYTES;
            }
            if (done > 0) {
                *position += done;
                while (n > 0 && (size_t)done >= at->iov_len) {
                    done -= (ssize_t)at->iov_len;
                    at++;
                    n--;
                }
                if (n > 0) {
                    at->iov_base = (char *)at->iov_base + done;
                    at->iov_len -= (size_t)done;
                }
            }
            if (n > 0) { /* interrupted, or short (maybe by a signal): run the handlers */
                PyEval_RestoreThread(*saved);
                const int raised = PyErr_CheckSignals() < 0;
                *saved = PyEval_SaveThread();
                if (raised) {
                    return INTERRUPTED;
                }
            }
        }
        if (*position - *started >= (long long)writeback_chunk &&
            skjar_start_writeback(fd, *started, *position - *started)) {
            *started = *position;
        }
    }
    return 0;
}

/* A jar laid out: the buffers it holds, and the segments to hash and write (the trailer's
 * two after them, left for skjar_write_jar to fill). */
typedef struct {
    Py_buffer *views;
    Py_ssize_t views_taken, views_room;
    Segment *segments; /* job.segments */
    long long end;     /* the file position after the last payload */
} Layout;

static void
layout_release(Layout *l)
{
    while (l->views_taken > 0) {
        PyBuffer_Release(&l->views[--l->views_taken]);
    }
    PyMem_Free(l->views);
    PyMem_Free(l->segments);
}

static int
add_piece(Layout *l, HashJob *job, PyObject *piece)
{
    /* A buffer's export that ran code and grew a list finds no room: the segments have
     * 2 * views_room places before the trailer's two, a piece and a pad per view. */
    if (l->views_taken == l->views_room || job->count == 2 * l->views_room) {
        PyErr_SetString(PyExc_RuntimeError, "write_jar: the payloads changed");
        return -1;
    }
    Py_buffer *view = &l->views[l->views_taken];
    if (PyObject_GetBuffer(piece, view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    l->views_taken++;
    l->segments[job->count++] = (Segment){view->buf, (size_t)view->len};
    l->end += view->len;
    return 0;
}

/* Take `front`'s and every payload's buffers (a list's items one by one) and lay them
 * out from `position`, each payload after zeros to `alignment`, in one pass: 0, or -1
 * with an exception set (`l` then released). */
static int
lay_out(Layout *l, HashJob *job, PyObject *front, PyObject *payloads, Py_ssize_t alignment,
        long long position)
{
    Py_ssize_t room = 1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(payloads); i++) {
        PyObject *p = PyList_GET_ITEM(payloads, i);
        room += PyList_Check(p) ? PyList_GET_SIZE(p) : 1;
    }
    *l = (Layout){PyMem_Calloc((size_t)room, sizeof(Py_buffer)), 0, room,
                  /* every piece, a pad before each payload, the trailer's two */
                  PyMem_Malloc((size_t)(2 * room + 2) * sizeof(Segment)), position};
    job->segments = l->segments;
    if (l->views == NULL || l->segments == NULL) {
        layout_release(l);
        PyErr_NoMemory();
        return -1;
    }
    if (add_piece(l, job, front) < 0) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(payloads); i++) {
        const long long pad = (alignment - l->end % alignment) % alignment;
        if (pad && job->count == 2 * l->views_room) { /* (see add_piece) */
            PyErr_SetString(PyExc_RuntimeError, "write_jar: the payloads changed");
            goto fail;
        }
        if (pad) {
            l->segments[job->count++] = (Segment){zeros, (size_t)pad};
            l->end += pad;
        }
        /* (held, and its size read at each step: an export that dropped it from the list
         * or shrank it must not free it under us or be read past) */
        PyObject *p = Py_NewRef(PyList_GET_ITEM(payloads, i));
        int failed = 0;
        for (Py_ssize_t j = 0; !failed && j < (PyList_Check(p) ? PyList_GET_SIZE(p) : 1); j++) {
            failed = add_piece(l, job, PyList_Check(p) ? PyList_GET_ITEM(p, j) : p) < 0;
        }
        Py_DECREF(p);
        if (failed) {
            goto fail;
        }
        if (i == 0) {
            job->tree_end = job->count;
        }
    }
    return 0;
fail:
    layout_release(l);
    return -1;
}

PyObject *
skjar_write_jar(PyObject *self, PyObject *args)
{
    int fd;
    PyObject *front, *payloads;
    Py_buffer magic;
    Py_ssize_t alignment;
    long long position, started, write_chunk, writeback_chunk;
    if (!PyArg_ParseTuple(args, "iOO!y*nLLLL", &fd, &front, &PyList_Type, &payloads, &magic,
                          &alignment, &position, &started, &write_chunk, &writeback_chunk)) {
        return NULL;
    }
    if (alignment < 1 || alignment > MAX_ALIGNMENT || (alignment & (alignment - 1)) ||
        position < 0 || started < 0 || started > position || write_chunk < 1 ||
        writeback_chunk < 1) {
        PyErr_SetString(PyExc_ValueError, "write_jar: a size or position out of range");
        PyBuffer_Release(&magic);
        return NULL;
    }
    if (PyList_GET_SIZE(payloads) == 0) {
        PyErr_SetString(PyExc_ValueError, "write_jar: a jar has a tree, the first payload");
        PyBuffer_Release(&magic);
        return NULL;
    }
    HashJob job = {NULL, 0, 0, NULL, {0}};
    Layout layout;
    if (lay_out(&layout, &job, front, payloads, alignment, position) < 0) {
        PyBuffer_Release(&magic);
        return NULL;
    }
    if ((job.state = skjar_xxh3_new()) == NULL) {
        layout_release(&layout);
        PyBuffer_Release(&magic);
        return PyErr_NoMemory();
    }
    Segment *segments = layout.segments;
    const Segment trailer[2] = {{(const char *)job.digests, 32}, {magic.buf, (size_t)magic.len}};
    PyThreadState *saved = PyEval_SaveThread();
    pthread_t helper;
    int threaded = 0;
    if ((size_t)(layout.end - position) >= HASH_THREAD_MIN) {
        /* The helper takes no signal: they stay with the threads that run Python. */
        sigset_t all, kept;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &kept);
        threaded = pthread_create(&helper, NULL, hash_thread, &job) == 0;
        pthread_sigmask(SIG_SETMASK, &kept, NULL);
    }
    Py_ssize_t written = job.count;
    if (!threaded) {
        /* First, so the bytes are in the cache for the write, which then takes the
         * trailer along. */
        hash_segments(&job);
        segments[written++] = trailer[0];
        segments[written++] = trailer[1];
    }
    int error = write_segments(fd, segments, written, (size_t)write_chunk,
                               (size_t)writeback_chunk, &position, &started, &saved);
    if (threaded) {
        pthread_join(helper, NULL);
        if (!error) {
            error = write_segments(fd, trailer, 2, (size_t)write_chunk, (size_t)writeback_chunk,
                                   &position, &started, &saved);
        }
    }
    PyEval_RestoreThread(saved);
    skjar_xxh3_free(job.state);
    layout_release(&layout);
    PyBuffer_Release(&magic);
    if (error > 0) {
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (error == NO_BYTES) {
        PyErr_SetString(PyExc_OSError, "the file system accepted no bytes");
        return NULL;
    }
    if (error == INTERRUPTED) {
        return NULL;
    }
    return Py_BuildValue("LL", position, started);
}

#else /* Windows */

/* There is no writev here, so writer.py never calls this (_FileWriter.compiled_jar is
 * None where os.writev is missing) and writes jars with its Python loop; the name exists
 * so that the module offers every helper in _compiled.HELPERS. */
PyObject *
skjar_write_jar(PyObject *self, PyObject *args)
{
    PyErr_SetString(PyExc_NotImplementedError,
                    "write_jar needs writev, which this platform lacks: writer.py writes "
                    "jars in Python here");
    return NULL;
}

#endif
