"""The calm trace (HDF5): format constants, writer, streaming reader and crash recovery.

Below the collector (which writes traces) and the analyzer and replay (which read them), so
that every reader and writer agrees on one layout (FORMAT.md)."""
