"""Checking the strings of a trace before HDF5 reads them: a damaged string heap must not hang it.

HDF5 keeps variable-length strings (process names, command lines, map paths) in "global heap
collections" and stores in the dataset only a 16-byte reference per string (length, collection
address, object index). To read a string it parses the whole collection, walking its objects by
their sizes; in a collection whose body never reached the disk (a writer killed or out of space
in the middle of a flush, or a damaged byte) an object of size 0 stops the walk from advancing,
and HDF5 loops forever (seen on the traces of a full disk: `calm analyze` hung in
`Trace.map_snapshots`). So the reader first walks every collection its string columns refer to,
as HDF5 would (format: HDF5 File Format Specification, "Global Heap"), and reads only the rows
before the first one that refers to a damaged collection. The root attributes (strings too) are
checked the same way before they are read: their references are taken from the root group's
object header (version 1, what calm's writer makes; other layouts are not checked).

Hand-written because neither HDF5 nor h5py can check a collection without parsing it the way that
loops. The references are read from the stored chunks (`read_direct_chunk`, inflated here), which
does not touch the heap.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import h5py
import numpy as np

_REFERENCE = np.dtype([("length", "<u4"), ("address", "<u8"), ("index", "<u4")])
_COLLECTION_HEADER = 16  # "GCOL", version, 3 reserved, collection size (8)
_OBJECT_HEADER = 16  # index (2), reference count (2), reserved (4), object size (8)
_DEFLATE = 1  # HDF5 filter id


class HeapCheck:
    """Validates global heap collections of one file, each once (see module doc)."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb")
        self._size = self._f.seek(0, 2)
        self._objects: dict[int, set[int] | None] = {}  # collection address -> object indexes (None: damaged)

    def close(self) -> None:
        self._f.close()

    def first_damaged_row(self, dataset: h5py.Dataset) -> int | None:
        """The first row of a string dataset whose string lies in a damaged collection, or None
        (also None when the dataset's storage is not one this check understands)."""
        if dataset.dtype.kind != "O" or dataset.chunks is None:
            return None
        plist = dataset.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        if any(f != _DEFLATE for f in filters):
            return None
        dsid, n_rows, worst = dataset.id, dataset.shape[0], None
        for i in range(dsid.get_num_chunks()):
            info = dsid.get_chunk_info(i)
            first = int(info.chunk_offset[0])
            try:
                mask, stored = dsid.read_direct_chunk(info.chunk_offset)
                body = zlib.decompress(stored) if filters and not mask & 1 else stored
            except (OSError, ValueError, zlib.error):
                bad = first  # the references themselves are damaged
            else:
                refs = np.frombuffer(body[: len(body) // 16 * 16], dtype=_REFERENCE)
                refs = refs[: max(0, n_rows - first)]
                bad = next((first + j for j, ref in enumerate(refs) if ref["length"] and
                            not self._holds(int(ref["address"]), int(ref["index"]))), None)
            if bad is not None and (worst is None or bad < worst):
                worst = bad
        return worst

    def attributes_sound(self, header_address: int) -> bool:
        """False if a string attribute of the object whose (version 1) header is at
        `header_address` lies in a damaged collection."""
        return all(self._holds(address, index) for address, index in self._attribute_references(header_address))

    def _attribute_references(self, address: int) -> list[tuple[int, int]]:
        """(collection address, object index) of every variable-length attribute value found in a
        version 1 object header and its continuation blocks; [] for another header version."""
        self._f.seek(address)
        prefix = self._f.read(16)
        if len(prefix) < 16 or prefix[0] != 1:
            return []
        n_messages, size = struct.unpack_from("<H", prefix, 2)[0], struct.unpack_from("<I", prefix, 8)[0]
        blocks, refs, seen = [(address + 16, size)], [], 0
        while blocks and seen < n_messages:
            start, length = blocks.pop(0)
            if start + length > self._size or length > 1 << 24:
                return refs
            self._f.seek(start)
            block, p = self._f.read(length), 0
            while p + 8 <= len(block) and seen < n_messages:
                kind, msg_size = struct.unpack_from("<HH", block, p)
                data = block[p + 8:p + 8 + msg_size]
                p += 8 + msg_size
                seen += 1
                if kind == 0x10 and len(data) >= 16:  # continuation: (offset, length)
                    blocks.append(struct.unpack_from("<QQ", data, 0))
                elif kind == 0x0C:
                    refs += _vlen_references(data)
        return refs

    def _holds(self, address: int, index: int) -> bool:
        if address not in self._objects:
            self._objects[address] = self._walk(address)
        objects = self._objects[address]
        return objects is not None and index in objects

    def _walk(self, address: int) -> set[int] | None:
        """The object indexes of the collection at `address`, or None if it is damaged."""
        if address + _COLLECTION_HEADER > self._size:
            return None
        self._f.seek(address)
        header = self._f.read(_COLLECTION_HEADER)
        if header[:4] != b"GCOL" or header[4] != 1:
            return None
        size = struct.unpack_from("<Q", header, 8)[0]
        if size < _COLLECTION_HEADER or address + size > self._size:
            return None
        self._f.seek(address)
        chunk = self._f.read(size)
        objects, p = set(), _COLLECTION_HEADER
        while p + _OBJECT_HEADER <= size:  # a smaller tail is free space, as HDF5 reads it
            index, _refs, _reserved, length = struct.unpack_from("<HHIQ", chunk, p)
            need = _OBJECT_HEADER + (length + 7) // 8 * 8 if index else length
            if need == 0 or (index and p + need > size):
                return None  # HDF5 would loop here, or read past the collection
            if index:
                objects.add(index)
            p += need
        return objects


def _vlen_references(message: bytes) -> list[tuple[int, int]]:
    """The heap references held by an attribute message whose type is variable-length."""
    if len(message) < 8 or message[0] not in (1, 2, 3):
        return []
    version = message[0]
    name, dtype, space = struct.unpack_from("<HHH", message, 2)
    if version == 1:
        pad = lambda n: (n + 7) // 8 * 8  # noqa: E731
        dt_at = 8 + pad(name)
        data_at = dt_at + pad(dtype) + pad(space)
    else:
        dt_at = (9 if version == 3 else 8) + name
        data_at = dt_at + dtype + space
    if dt_at >= len(message) or message[dt_at] & 0x0F != 9:  # datatype class 9: variable-length
        return []
    refs = np.frombuffer(message[data_at:data_at + (len(message) - data_at) // 16 * 16], dtype=_REFERENCE)
    return [(int(r["address"]), int(r["index"])) for r in refs if r["length"]]
