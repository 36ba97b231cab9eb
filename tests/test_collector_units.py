"""Pieces of the collector checked on their own: maps parsing, pagemap batching, hashing, profiles."""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest

from calm.collector import page_hash, procfs
from calm.collector.procfs import Pagemap, iter_batches, parse_maps
from calm.trace.writer import TraceWriter
from calm.workloads.groundtruth import ProfileError, parse_profile

MAPS_TEXT = b"""55d0c0a00000-55d0c0a02000 r--p 00000000 fd:01 1234   /usr/bin/my prog (deleted)
55d0c0a02000-55d0c0a05000 rw-p 00002000 fd:01 1234   /usr/bin/my prog (deleted)
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000001000 rw-s 00000000 00:05 99     /SYSV00000000 (deleted)
7f0000001000-7f0000003000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""


def test_parse_maps_keeps_paths_with_spaces_and_anonymous_regions():
    maps = parse_maps(MAPS_TEXT)
    assert len(maps) == 7
    assert maps.path[0] == "/usr/bin/my prog (deleted)"
    assert maps.path[4] == "" and maps.path[2] == "[heap]"
    assert maps.start[1] == 0x55D0C0A02000 and maps.end[1] == 0x55D0C0A05000
    assert maps.offset[1] == 0x2000 and maps.inode[3] == 99
    assert maps.perms[3] == "rw-s"
    assert list(maps.writable()) == [False, True, True, True, True, True, False]
    assert list(maps.scannable()) == [True] * 6 + [False]


def test_batches_cover_every_page_once_and_map_back_to_vpns():
    """Real pagemap of our own process, with a tiny budget so regions are split and grouped."""
    maps = procfs.read_maps(os.getpid())
    scan = maps.select(maps.scannable())
    expected = np.concatenate([np.arange(s // procfs.PAGE_SIZE, e // procfs.PAGE_SIZE)
                               for s, e in zip(scan.start.tolist(), scan.end.tolist())])
    rng = np.random.default_rng(7)
    with Pagemap(os.getpid()) as pagemap:
        seen = []
        for batch in iter_batches(pagemap, scan, budget=37):
            assert batch.entries.size <= 37
            idx = np.arange(batch.entries.size)
            seen.append(batch.vpns(idx))
            starts = scan.start[batch.regions_of(idx)] // procfs.PAGE_SIZE
            ends = scan.end[batch.regions_of(idx)] // procfs.PAGE_SIZE
            assert np.all((batch.vpns(idx) >= starts) & (batch.vpns(idx) < ends))
            for subset in (idx[::3], idx[rng.random(idx.size) < 0.2], idx[:0], idx[-1:]):
                vpns, regions = batch.locate(subset)  # the linear form agrees with the searches
                np.testing.assert_array_equal(vpns, batch.vpns(subset))
                np.testing.assert_array_equal(regions, batch.regions_of(subset))
    np.testing.assert_array_equal(np.concatenate(seen), expected.astype(np.uint64))


def test_flag_bytes_decode_present_and_file_bits_of_real_pages():
    anon = mmap.mmap(-1, 4 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    anon[0] = 1  # page 0 resident, pages 1..3 never touched
    import ctypes

    vpn = ctypes.addressof(ctypes.c_char.from_buffer(anon)) // mmap.PAGESIZE
    with Pagemap(os.getpid()) as pagemap:
        entries = pagemap.read(vpn, vpn + 4).copy()
    b6, b7 = procfs.flag_bytes(entries)
    assert list(b7 >= procfs.B7_PRESENT) == [True, False, False, False]
    assert (b7[0] & procfs.B7_FILE) == 0  # anonymous
    assert (entries[0] >> np.uint64(63)) == 1
    anon.close()


def test_hash_sees_any_single_word_change_and_only_changes():
    keys = page_hash.page_keys(4096)
    pages = np.random.default_rng(0).integers(0, 2**64 - 1, size=(64, 512), dtype=np.uint64)
    base = page_hash.hash_pages(pages.ravel(), keys)
    assert np.unique(base).size == 64
    for word, bit in [(0, 0), (511, 63), (100, 31)]:
        changed = pages.copy()
        changed[7, word] ^= np.uint64(1 << bit)
        after = page_hash.hash_pages(changed.ravel(), keys)
        assert np.flatnonzero(after != base).tolist() == [7]
    assert page_hash.hash_pages(np.zeros(512, np.uint64), keys)[0] == page_hash.ZERO_PAGE_HASH


@pytest.mark.parametrize("spec,message", [
    ("uniform:2", "between 0 and 1"), ("zipf:x", "must be a number"), ("nope", "unknown profile"),
    ("phases:0:uniform:0.1", "SECONDS > 0"), ("hotcold:0.1:0.5", "unknown profile"),
])
def test_bad_profiles_are_refused(spec, message):
    with pytest.raises(ProfileError, match=message):
        parse_profile(spec, 100, np.random.default_rng(0))


def test_profiles_have_the_promised_probabilities():
    rng = np.random.default_rng(0)
    assert np.all(parse_profile("uniform:0.25", 10, rng).p == 0.25)
    hot = parse_profile("hotcold:0.1:0.9:0.01", 1000, rng).p[0]
    assert np.count_nonzero(hot == 0.9) == 100 and np.count_nonzero(hot == 0.01) == 900
    zipf = np.sort(parse_profile("zipf:1:0.8", 100, rng).p[0])[::-1]
    np.testing.assert_allclose(zipf, 0.8 / np.arange(1, 101))
    phased = parse_profile("phases:2:uniform:0.1/uniform:0.3", 10, rng)
    assert phased.at(1.0)[0] == 0.1 and phased.at(3.0)[0] == 0.3 and phased.at(5.0)[0] == 0.1


def test_close_compacts_space_left_by_frequent_flushes(tmp_path):
    attrs = dict(page_size=4096, backend="hash", interval=0.1)
    sizes = {}
    for flush_every in (1, 10**9):
        path = tmp_path / f"f{flush_every}.h5"
        writer = TraceWriter(path, force=True, attrs=attrs)
        row = writer.open_process(pid=1, ppid=0, start_time_unix=0.0, name="a", cmdline=[], exe="")
        rng = np.random.default_rng(0)
        for s in range(300):
            vpns = np.unique(rng.integers(0, 10**5, 300)).astype(np.uint64)
            writer.add_sample(s, s + 1, {row: (vpns, 1)})
            if s % flush_every == 0:
                writer.flush()
        writer.close(status="complete", end_reason="")
        sizes[flush_every] = path.stat().st_size
    # 300 flushes rewrite the growing last chunk 300 times; after close it is as if flushed once
    assert sizes[1] < 1.2 * sizes[10**9], sizes


def test_read_hash_of_another_process_equals_the_reference_hash_both_ways():
    """PageReader copies with process_vm_readv and hashes in the same pass (numba-compiled, or the
    numpy loop where numba is missing): both give exactly page_hash.hash_pages of the contents, and
    a page unmapped since the pagemap read is reported unreadable, not hashed."""
    import mmap

    from calm.collector import page_reader

    region = mmap.mmap(-1, 200 * procfs.PAGE_SIZE)
    words = np.frombuffer(region, dtype=np.uint64)
    words[:] = np.random.default_rng(5).integers(0, 2**64, words.size, dtype=np.uint64)
    first = np.frombuffer(region, dtype=np.uint8).ctypes.data // procfs.PAGE_SIZE
    vpns = np.concatenate([np.arange(first, first + 70), np.arange(first + 90, first + 200)]).astype(np.uint64)
    reader = page_reader.PageReader(os.getpid())
    want = page_hash.hash_pages(words.reshape(200, -1)[(vpns - first).astype(np.int64)].ravel(), reader.keys)
    hashes, readable = reader.read_hash(vpns)
    assert readable.all() and page_reader.hash_implementation() != ""
    np.testing.assert_array_equal(hashes, want)
    compiled = page_reader._loop
    try:
        page_reader._loop = page_reader._read_hash_numpy
        hashes, _ = reader.read_hash(vpns)
    finally:
        page_reader._loop = compiled
    np.testing.assert_array_equal(hashes, want)
    gone = np.array([first + 10, 2**35, first + 11], dtype=np.uint64)  # 2**35: no mapping there
    hashes, readable = reader.read_hash(gone)
    assert readable.tolist() == [True, False, True] and hashes[0] == want[10] and hashes[2] == want[11]
    assert reader.unreadable_pages == 1
    # a page that cannot be read in the middle of a later run: the rest of that run is still read
    # (PROT_NONE rather than munmap, so no other mapping can land in the hole meanwhile)
    import ctypes

    hole = mmap.mmap(-1, 3 * procfs.PAGE_SIZE)
    hole_words = np.frombuffer(hole, dtype=np.uint64)
    hole_words[:] = np.random.default_rng(6).integers(0, 2**64, hole_words.size, dtype=np.uint64)
    hole_want = page_hash.hash_pages(hole_words, reader.keys)
    base = hole_words.ctypes.data // procfs.PAGE_SIZE
    assert ctypes.CDLL(None).mprotect(ctypes.c_void_p((base + 1) * procfs.PAGE_SIZE), procfs.PAGE_SIZE, 0) == 0
    for loop in (compiled, page_reader._read_hash_numpy):
        page_reader._loop = loop
        try:
            before = reader.unreadable_pages
            hashes, readable = reader.read_hash_runs(np.array([first + 3, base], dtype=np.uint64), np.array([2, 3]))
        finally:
            page_reader._loop = compiled
        assert readable.tolist() == [True, True, True, False, True]
        assert hashes[:2].tolist() == want[3:5].tolist()
        assert hashes[2] == hole_want[0] and hashes[4] == hole_want[2]
        assert reader.unreadable_pages == before + 1
    ctypes.CDLL(None).mprotect(ctypes.c_void_p((base + 1) * procfs.PAGE_SIZE), procfs.PAGE_SIZE, 3)


def test_pages_are_sorted_alike_by_the_compiled_loop_and_by_numpy():
    """present_pages.classify splits a pagemap batch into private present pages (with runs and the
    not-yet-copied file flag), shared present pages, swapped private pages and resident pages; the
    numba loop and the numpy fallback must agree, on a real process's pagemap and on entries with
    swapped pages (no swap on this machine: those are built by hand)."""
    import tempfile

    from calm.collector import present_pages

    private = mmap.mmap(-1, 8 * procfs.PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    shared = mmap.mmap(-1, 4 * procfs.PAGE_SIZE, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    private.madvise(mmap.MADV_NOHUGEPAGE)  # one page per fault, even where the kernel has mTHP
    for page in (0, 1, 2, 5):
        private[page * procfs.PAGE_SIZE] = 1
    shared[procfs.PAGE_SIZE] = 1
    with tempfile.TemporaryFile() as f:
        f.write(b"f" * 4 * procfs.PAGE_SIZE)
        f.flush()
        mapped = mmap.mmap(f.fileno(), 4 * procfs.PAGE_SIZE, flags=mmap.MAP_PRIVATE)
        assert mapped[0] == mapped[procfs.PAGE_SIZE] == ord("f")  # resident, still the file's
        mapped[procfs.PAGE_SIZE] = 2  # copied on write: no longer a file page
        maps = procfs.read_maps(os.getpid())
        scan = maps.select(maps.scannable() & maps.writable())
        is_shared = scan.shared()
        assert present_pages.implementation().startswith("numba")
        found = []
        with Pagemap(os.getpid()) as pm:  # a batch is a view of the reader's buffer: use it at once
            for batch in iter_batches(pm, scan, budget=4096):
                found.append(present_pages.classify(batch, is_shared, want_resident=True))
                _assert_same_pages(found[-1], present_pages._classify_numpy(batch, is_shared, True))
        assert len(found) > 1  # several batches, pieces of several regions in each
        address = {name: np.frombuffer(m, dtype=np.uint8).ctypes.data // procfs.PAGE_SIZE
                   for name, m in (("private", private), ("shared", shared), ("file", mapped))}
        mine = np.concatenate([p.private for p in found])
        fresh = np.concatenate([p.fresh for p in found])
        seen = {int(v): bool(f) for v, f in zip(mine, fresh)}
        assert [page in seen for page in range(address["private"], address["private"] + 8)] == \
            [True, True, True, False, False, True, False, False]
        assert seen[address["file"]] is True and seen[address["file"] + 1] is False
        assert address["shared"] + 1 in np.concatenate([p.shared for p in found]).tolist()
        assert address["shared"] + 1 not in seen
        runs = [(int(v), int(n)) for p in found for v, n in zip(p.run_vpn, p.run_pages)]
        # a run may begin in a neighbouring region, but it ends at the first absent page
        assert any(v <= address["private"] and v + n == address["private"] + 3 for v, n in runs)
        assert (address["private"] + 5, 1) in runs
        mapped.close()
    # three pieces (private region 0, an empty piece, shared region 1): present, swapped, absent and
    # file pages, and present|swapped (never set together by the kernel: counted present)
    P, S, F = 1 << 63, 1 << 62, 1 << 61
    entries = np.array([P, P, 0, S, P | F, S, P | S, P, 0, S, P], dtype=np.uint64)
    batch = procfs.PagemapBatch(entries, np.array([100, 300, 500], np.int64), np.array([0, 7, 7], np.int64),
                                np.array([0, 0, 1], np.int64))
    compiled = present_pages.classify(batch, np.array([False, True]), want_resident=True)
    _assert_same_pages(compiled, present_pages._classify_numpy(batch, np.array([False, True]), True))
    assert compiled.private.tolist() == [100, 101, 104, 106]
    assert compiled.fresh.tolist() == [False, False, True, False]
    assert compiled.run_vpn.tolist() == [100, 104, 106] and compiled.run_pages.tolist() == [2, 1, 1]
    assert compiled.swapped.tolist() == [103, 105] and compiled.shared.tolist() == [500, 503]
    assert compiled.n_resident == 9
    assert compiled.resident.tolist() == [100, 101, 103, 104, 105, 106, 500, 502, 503]
    empty = procfs.PagemapBatch(np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.int64),
                                np.empty(0, np.int64))
    for pages in (present_pages.classify(empty, np.array([False]), True),
                  present_pages._classify_numpy(empty, np.array([False]), True)):
        assert pages.n_resident == 0 and pages.private.size == pages.run_vpn.size == pages.resident.size == 0


def _assert_same_pages(a, b) -> None:
    for field in ("private", "fresh", "run_vpn", "run_pages", "shared", "swapped", "resident"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.n_resident == b.n_resident
