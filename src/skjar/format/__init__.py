"""The skjar file: preamble, JSON header, object tree, aligned buffers, trailer."""
