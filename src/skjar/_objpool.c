/* Fresh memory for a large build of small objects, mapped in on a helper thread.
 *
 * Building a 1.1M-term vocabulary makes 2.2M small objects (each key's str and each
 * value's int), ~115 MB of CPython's object arenas. Every 1 MiB arena is fresh memory
 * that the building thread then faults in one 4 KiB page at a time, at ~3.7 us a page
 * in a forked child on this machine; mapping the same pages in with one
 * MADV_POPULATE_WRITE call takes ~1.7 us a page, and a helper thread can do it while
 * the builder works.
 *
 * Between skjar_objpool_begin and skjar_objpool_end, new arenas are carved from one
 * reserved range of address space, in order, and a helper thread (no GIL, no Python)
 * maps each arena's pages in as soon as it is handed out, while the builder starts
 * filling it. So it maps only memory the builder is about to use - under
 * PYTHONMALLOC=malloc, where no arena is ever asked for, nothing - and a page it has
 * not reached yet is faulted in by the builder as before. What is built does not
 * change: an arena is an arena.
 *
 * Engaged only on Linux with the GIL (a free-threaded build has no such arenas) and
 * only while the arena allocator is the one the module found at import: CPython's
 * default there maps arenas with mmap and frees them with munmap, so an arena carved
 * from the range can be given back to it (munmap of part of a mapping) after
 * skjar_objpool_end has put it back, and arenas it made can be freed by ours.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__linux__) && !defined(Py_GIL_DISABLED)
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; an older kernel answers EINVAL */
#endif

/* The helper maps an arena in this much at a time, as soon as it is handed out, while the
 * builder starts filling it from its start: the builder fills 1 MiB in ~3 ms, the helper
 * maps it in ~0.5. Mapping further ahead would be faster still, but every page mapped
 * ahead counts in the load's peak memory (8 MiB ahead: spam-tfidf's peak 1.00x -> 1.06x
 * pickle's), and an arena's pages are used by the builder anyway. */
#define STEP ((size_t)1 << 20)

static PyObjectArenaAllocator at_import; /* CPython's own, seen when the module loaded */
static PyObjectArenaAllocator before;    /* the allocator skjar_objpool_begin replaced */
static char *base;                       /* the reserved range, NULL when not engaged */
static size_t total;
/* Bytes of the range given out as arenas. Arenas are only asked for with the GIL held,
 * so one thread at a time changes it; atomic because the helper reads it. */
static _Atomic size_t handed;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static size_t mapped; /* bytes of the range mapped in (under lock) */
static int stopping, failed; /* (under lock) */
static pthread_t helper;
static size_t last_handed, last_mapped; /* the last engagement's, for objpool_last() */

static void *
map_ahead(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&lock);
    for (;;) {
        /* Sleep while every arena handed out is mapped in. */
        while (!stopping && !failed && mapped >= atomic_load(&handed)) {
            pthread_cond_wait(&wake, &lock);
        }
        if (stopping || failed) {
            break;
        }
        const size_t from = mapped, left = atomic_load(&handed) - mapped;
        const size_t n = left < STEP ? left : STEP;
        pthread_mutex_unlock(&lock);
        /* (Arenas are whole pages: `from` and `n` are page-aligned.) */
        const int ok = madvise(base + from, n, MADV_POPULATE_WRITE) == 0;
        pthread_mutex_lock(&lock);
        mapped = from + n;
        failed = !ok; /* e.g. an old kernel: stop, the builder faults its pages in itself */
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void *
pool_alloc(void *ctx, size_t size)
{
    (void)ctx;
    const size_t got = atomic_load(&handed);
    if (size <= total - got) {
        atomic_store(&handed, got + size);
        pthread_mutex_lock(&lock);
        pthread_cond_signal(&wake);
        pthread_mutex_unlock(&lock);
        return base + got;
    }
    return before.alloc(before.ctx, size);
}

static void
pool_free(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if ((char *)ptr >= base && (char *)ptr < base + total) {
        munmap(ptr, size);
    }
    else {
        before.free(before.ctx, ptr, size);
    }
}

void
skjar_objpool_init(void)
{
    PyObject_GetArenaAllocator(&at_import);
}

/* Engage for a build expected to need about `expected` bytes of arenas: 1 if engaged
 * (skjar_objpool_end must follow), 0 if not (nothing changed). Never raises. */
int
skjar_objpool_begin(size_t expected)
{
    PyObjectArenaAllocator now;
    PyObject_GetArenaAllocator(&now);
    if (base != NULL || now.alloc != at_import.alloc || now.free != at_import.free ||
        now.ctx != at_import.ctx) {
        return 0;
    }
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    /* Address space only (MAP_NORESERVE): pages are taken as they are mapped in. */
    size_t want = (expected + expected / 4 + (8u << 20) + page - 1) & ~(page - 1);
    void *range = mmap(NULL, want, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (range == MAP_FAILED) {
        return 0;
    }
    base = range;
    total = want;
    atomic_store(&handed, 0);
    mapped = 0;
    stopping = 0;
    failed = 0;
    /* The helper takes no signal: they stay with the threads that run Python. */
    sigset_t all, kept;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &kept);
    const int started = pthread_create(&helper, NULL, map_ahead, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &kept, NULL);
    if (!started) {
        munmap(range, want);
        base = NULL;
        return 0;
    }
    before = now;
    PyObjectArenaAllocator pool = {NULL, pool_alloc, pool_free};
    PyObject_SetArenaAllocator(&pool);
    return 1;
}

/* Put the allocator back and give back the part of the range no arena took. */
void
skjar_objpool_end(void)
{
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    pthread_join(helper, NULL); /* at most one STEP's mapping away */
    PyObject_SetArenaAllocator(&before);
    last_handed = atomic_load(&handed);
    last_mapped = mapped;
    /* Arenas taken stay the arena allocator's to free. */
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t used = (atomic_load(&handed) + page - 1) & ~(page - 1);
    if (used < total) {
        munmap(base + used, total - used);
    }
    base = NULL;
}

/* objpool_last() -> (bytes of arenas handed out, bytes the helper mapped in), the last
 * engagement's: what the tests and probes read to see the pool at work. */
PyObject *
skjar_objpool_last(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("nn", (Py_ssize_t)last_handed, (Py_ssize_t)last_mapped);
}

#else /* not Linux, or free-threaded */

PyObject *
skjar_objpool_last(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("nn", (Py_ssize_t)0, (Py_ssize_t)0);
}

void
skjar_objpool_init(void)
{
}

int
skjar_objpool_begin(size_t expected)
{
    (void)expected;
    return 0;
}

void
skjar_objpool_end(void)
{
}

#endif
