"""Constants of the skjar file format, version 1.3 (see docs/format.md)."""

from __future__ import annotations

MAGIC = b"\x89SKJAR\r\n"
END_MAGIC = b"SKJAREND"
FORMAT_MAJOR = 1
FORMAT_MINOR = 3
# A writer stamps the oldest version that can hold the file (as numpy's .npy writer
# does): packs of buffers (1.2) appear only in compressed files, so an uncompressed
# jar stays readable by 1.1 readers.
PACKS_SINCE = (1, 2)
WITHOUT_PACKS = (1, 1)  # the version stamped on a jar with no pack
# Large compressed sections stored as chunks compressed apart (1.3), so that a load
# decompresses them on every core; also only in compressed files.
CHUNKS_SINCE = (1, 3)
# The smallest chunk a reader accepts: it bounds a section's chunk count by its size.
MIN_CHUNK = 64 << 10
ALIGNMENT = 64

PREAMBLE_SIZE = 24  # magic(8) + major(2) + minor(2) + flags(4) + header_length(8)
# Trailer: structure digest (16) + full digest (16) + END_MAGIC (8). Both are
# XXH3-128. The structure digest covers bytes [0, end of the object tree): what
# a load must read to build anything. The full digest covers every byte before
# the trailer. An mmap load checks the structure digest (O(header + tree)) and
# leaves array pages untouched until used; other loads check both.
TRAILER_SIZE = 40
DIGEST_SIZE = 16

FLAG_SIGNED = 1  # preamble flag: a signature block precedes the trailer
KNOWN_FLAGS = FLAG_SIGNED
SIGNATURE_SIZE = 96  # Ed25519 public key (32) + signature (64)
SIGNATURE_DOMAIN = (
    b"skjar-signature-v1\x00"  # signed message: DOMAIN + BLAKE3-256(bytes[0:data_end])
)

MAX_HEADER_SIZE = 16 * 1024 * 1024
MAX_BUFFERS = 10_000_000
MAX_NESTING = 100  # typed-node nesting depth in the object tree
MAX_NODES = 50_000_000  # typed nodes in one tree
MAX_NDIM = 64  # dimensions of an array
# Arrays this small are stored inline in the tree: an out-of-line buffer would
# cost more in alignment padding and layout entries than the data itself.
INLINE_MAX = 128
# Container items a load may build from values it already has (a shared list fed to
# many tuples, a memoized one to many frozensets): 1,000,000 + 4 per input byte, which
# an honest file never comes near (each item it stores costs it at least a byte).
EXPAND_SLACK = 1_000_000
EXPAND_PER_BYTE = 4
# Decompression may only produce what the codec could legitimately produce from
# the stored bytes; anything claiming more is a bomb, refused before allocating.
MAX_RATIO = {"zstd": 1 << 16, "lz4": 256}
RATIO_SLACK = 1 << 16

CODECS = ("none", "zstd", "lz4")


def align(n: int) -> int:
    """Round ``n`` up to the next multiple of ``ALIGNMENT``."""
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
