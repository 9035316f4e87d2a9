"""Mapping a large read's fresh memory in on helper threads, ahead of the read.

A process reading a large model into fresh memory spends most of the read having
the kernel map in (and zero) one 4 KiB page after another: for knn-big's 615 MB,
175 ms of a 245 ms read, against 49 ms of copying from the page cache and 23 ms
of hashing (forked children, one thread). The mapping runs without the GIL
(``prefault``: MADV_POPULATE_WRITE), so helper threads can map the chunks in, in
the order the reader fills them, while the reader copies the chunks already
mapped: two helpers bring knn-big's read down to ~140 ms on this 2-core machine.

A decompressor's output is mapped in the same way, ahead of the decompressor,
which does not wait: knn-big under zstd 812 -> 738 ms.

Nothing here decides what is read or trusted: a chunk the helpers have not
reached is simply read into unmapped pages, which the kernel then maps in itself,
as it does without the compiled helpers.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from .. import _compiled

# Chunks of this size are mapped in one call each: large enough that the
# handoffs between threads cost nothing measurable, small enough that the reader
# starts after the first one.
CHUNK = 8 << 20
# Below this the helper threads' start costs more than they save.
MIN_TOTAL = 32 << 20
MAX_HELPERS = 2


def helper_count() -> int:
    """How many helper threads to map pages in with: none on a single CPU."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return min(MAX_HELPERS, cpus) if cpus > 1 else 0


def _open_pagemap() -> int:
    """This process's page map (which pages are shared copy-on-write: fresh_pages), or -1.

    Memory a forked child's malloc hands out can still be its parent's, shared
    copy-on-write; mapping it in on one thread while another runs copies every page and
    interrupts the other core for each (forest: ~490 ms against ~95). The helpers and
    the reader drop such pages of a chunk before they fill it (PageIn's ``fresh``); for
    decompressors, which do not wait for the helpers, make_fresh does it beforehand.
    """
    try:
        return os.open("/proc/self/pagemap", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # not Linux, or no /proc
        return -1


def make_fresh(buffers: list[np.ndarray]) -> None:
    """Drop the shared pages of new buffers that threads will fill without waiting for
    the helpers (decompressors): before any of them starts, so nothing written is lost."""
    fast = _compiled.speedups
    pagemap = _open_pagemap() if fast is not None and buffers else -1
    if pagemap < 0:
        return
    try:
        for buffer in buffers:
            fast.fresh_pages(pagemap, buffer)  # type: ignore[union-attr]
    finally:
        os.close(pagemap)


def chunked(outs: list[np.ndarray]) -> list[np.ndarray]:
    """``outs`` as consecutive views of at most CHUNK bytes each, in order."""
    return [out[a : a + CHUNK] for out in outs for a in range(0, len(out), CHUNK)]


class PageIn:
    """Helper threads mapping in ``chunks`` in order; ``wait(i)`` before filling chunk i.

    Use as a context manager: leaving it stops the helpers and joins them, also
    when the read fails halfway.
    """

    def __init__(self, chunks: list[np.ndarray], helpers: int, fresh: bool = False) -> None:
        self._chunks = chunks
        self._next = 0  # the first chunk no thread has claimed
        self._done = [False] * len(chunks)
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []
        # fresh: the caller fills each chunk only once wait() has returned for it, so a
        # chunk's shared pages can be dropped first (never while someone writes into it).
        self._pagemap = _open_pagemap() if fresh and helpers and chunks else -1
        for _ in range(helpers):
            thread = threading.Thread(target=self._work, name="skjar-page-in", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no thread to be had (a limit, shutdown): fewer helpers
                break
            self._threads.append(thread)

    def _claim(self) -> int | None:
        with self._changed:
            i = self._next
            if i >= len(self._chunks):
                return None
            self._next = i + 1
            return i

    def _work(self) -> None:
        fast = _compiled.speedups
        while (i := self._claim()) is not None:
            try:
                if fast is not None:
                    if self._pagemap >= 0:
                        fast.fresh_pages(self._pagemap, self._chunks[i])
                    fast.prefault(self._chunks[i])
            finally:
                with self._changed:
                    self._done[i] = True
                    self._changed.notify_all()

    def wait(self, i: int) -> None:
        """Return once chunk ``i`` is mapped in - or at once if no helper has claimed
        it yet: the reader then maps it in itself as it writes, which is sooner."""
        with self._changed:
            if self._next <= i:
                self._next = i + 1
                mine = True
            else:
                mine = False
                while not self._done[i]:
                    self._changed.wait()
        fast = _compiled.speedups
        if mine and self._pagemap >= 0 and fast is not None:  # (the helpers are running)
            fast.fresh_pages(self._pagemap, self._chunks[i])

    def __enter__(self) -> PageIn:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            self._next = len(self._chunks)  # nothing more to claim: the helpers stop
        for thread in self._threads:
            thread.join()
        if self._pagemap >= 0:
            os.close(self._pagemap)
            self._pagemap = -1
