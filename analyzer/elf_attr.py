"""Names the ELF sections and global variables behind dirtied pages of file-backed regions.

How: a region of /proc/PID/maps maps file offset `offset` at address `start`. The PT_LOAD segment
holding that offset gives the link-time address of `start` (offset - p_offset + p_vaddr), so the
load bias is `start - (offset - p_offset + p_vaddr)` (0 for a non-PIE executable, the base address
for PIE executables and shared libraries). A dirtied page's link-time address is then
`page address - bias`, which is compared with section headers (sh_addr/sh_size) and with the
symbol table (st_value/st_size of data objects). The .bss tail that lies beyond the file is an
anonymous region right after the file-backed one; it shares the file's bias.

Per symbol, the pages it overlaps are a contiguous vpn range, so its dirty count is a difference of
prefix sums over the sorted dirtied pages: no loop over pages. A page shared by several symbols is
credited to each of them (the trace cannot tell which bytes were written); tables say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.constants import P_FLAGS, SH_FLAGS
from elftools.elf.elffile import ELFFile


@dataclass
class ElfImage:
    """What the analyzer needs from one ELF file, read once."""

    path: str
    segments: np.ndarray  # int64 [n, 5]: p_offset, p_vaddr, p_filesz, p_memsz, writable
    section_names: list[str]
    section_bounds: np.ndarray  # int64 [n, 2]: sh_addr, sh_addr + sh_size (SHF_ALLOC only)
    symbol_names: list[str]
    symbol_bounds: np.ndarray  # int64 [n, 2]: st_value, st_value + st_size (data objects)
    symbol_source: str  # ".symtab", ".dynsym" or "" when stripped


@dataclass
class ElfPages:
    """Dirtied pages of one process that fall inside one ELF image."""

    vpns: np.ndarray  # sorted uint64
    dirty: np.ndarray  # int64 samples dirty
    p: np.ndarray  # float64
    bias: int


@dataclass
class SymbolStat:
    path: str
    name: str
    section: str
    address: int  # link-time st_value
    size: int
    pages: int = 0  # distinct dirtied pages it overlaps (each process's private copy is its own page)
    dirty_page_samples: int = 0  # sum of those pages' dirty counts
    # the same, each page weighted by the share of its bytes the symbol covers: a big array that
    # shares its edge page with a small variable gets the page, the variable only its bytes' share
    weighted_page_samples: float = 0.0
    max_p: float = 0.0
    processes: set[int] = field(default_factory=set)  # rows in which its pages were dirtied
    mapped_by: set[int] = field(default_factory=set)  # rows that map its file


@dataclass
class SectionStat:
    path: str
    name: str
    pages: int = 0
    dirty_page_samples: int = 0
    max_p: float = 0.0


def load_elf(path: str, inode: int) -> tuple[ElfImage | None, str]:
    """Reads an ELF file's layout; returns (None, reason) when it cannot be used honestly."""
    if path.endswith(" (deleted)"):
        return None, "file was deleted after it was mapped"
    try:
        st = os.stat(path)
    except OSError as exc:
        return None, f"cannot open: {exc.strerror}"
    if inode and st.st_ino != inode:
        return None, "file changed since the recording (inode differs)"
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return None, "not an ELF file"
            f.seek(0)
            return _read_elf(path, ELFFile(f)), ""
    except (ELFError, OSError, ValueError) as exc:
        return None, f"unreadable ELF: {exc}"


def _read_elf(path: str, elf: ELFFile) -> ElfImage:
    segments = [
        (s["p_offset"], s["p_vaddr"], s["p_filesz"], s["p_memsz"], int(bool(s["p_flags"] & P_FLAGS.PF_W)))
        for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"
    ]
    sections = [(s.name, s["sh_addr"], s["sh_addr"] + s["sh_size"], s["sh_flags"])
                for s in elf.iter_sections() if s["sh_flags"] & SH_FLAGS.SHF_ALLOC and s["sh_size"]]
    writable_sections = {i for i, s in enumerate(elf.iter_sections()) if s["sh_flags"] & SH_FLAGS.SHF_WRITE}
    names, bounds, source = [], [], ""
    for table_name in (".symtab", ".dynsym"):
        table = elf.get_section_by_name(table_name)
        if table is None:
            continue
        source = table_name
        seen = set()
        for sym in table.iter_symbols():
            shndx = sym["st_shndx"]
            if (sym["st_info"]["type"] != "STT_OBJECT" or sym["st_size"] == 0
                    or not isinstance(shndx, int) or shndx not in writable_sections):
                continue
            key = (sym.name, sym["st_value"])
            if key in seen:
                continue
            seen.add(key)
            names.append(sym.name)
            bounds.append((sym["st_value"], sym["st_value"] + sym["st_size"]))
        break  # .symtab is a superset of .dynsym when both exist
    return ElfImage(
        path=path,
        segments=np.array(segments, dtype=np.int64).reshape(-1, 5),
        section_names=[s[0] for s in sections],
        section_bounds=np.array([s[1:3] for s in sections], dtype=np.int64).reshape(-1, 2),
        symbol_names=names,
        symbol_bounds=np.array(bounds, dtype=np.int64).reshape(-1, 2),
        symbol_source=source,
    )


def load_bias(image: ElfImage, start: int, offset: int, page_size: int) -> int | None:
    """Load bias of a file-backed region mapping `offset` at `start`; None if no segment holds it."""
    for p_offset, p_vaddr, p_filesz, _memsz, _w in image.segments.tolist():
        if p_offset - (p_offset % page_size) <= offset < max(p_offset + p_filesz, p_offset + 1):
            return start - (offset - p_offset + p_vaddr)
    return None


def in_image(image: ElfImage, elf_addresses: np.ndarray, page_size: int) -> np.ndarray:
    """Pages (by link-time address of their start) that overlap some PT_LOAD segment's memory."""
    ok = np.zeros(elf_addresses.shape, dtype=bool)
    for _off, vaddr, _fs, memsz, _w in image.segments.tolist():
        ok |= (elf_addresses + page_size > vaddr) & (elf_addresses < vaddr + memsz)
    return ok


def attribute_sections(image: ElfImage, pages: ElfPages, page_size: int,
                       stats: dict[tuple[str, str], SectionStat]) -> None:
    """Adds each page to the allocated section that covers most of it."""
    if pages.vpns.size == 0 or image.section_bounds.size == 0:
        return
    lo = pages.vpns.astype(np.int64) * page_size - pages.bias
    hi = lo + page_size
    b = image.section_bounds
    overlap = np.minimum(hi[:, None], b[None, :, 1]) - np.maximum(lo[:, None], b[None, :, 0])
    best = np.argmax(overlap, axis=1)
    has = overlap[np.arange(lo.size), best] > 0
    for s in np.unique(best[has]).tolist():
        sel = has & (best == s)
        st = stats.setdefault((image.path, image.section_names[s]),
                              SectionStat(image.path, image.section_names[s]))
        st.pages += int(sel.sum())
        st.dirty_page_samples += int(pages.dirty[sel].sum())
        st.max_p = max(st.max_p, float(pages.p[sel].max()))


def attribute_symbols(image: ElfImage, pages: ElfPages, page_size: int, process: int,
                      stats: dict[tuple[str, str, int], SymbolStat]) -> None:
    """Credits each data symbol with the dirtied pages its bytes overlap (prefix sums per range)."""
    if pages.vpns.size == 0 or image.symbol_bounds.size == 0:
        return
    vpns = pages.vpns.astype(np.int64)
    first_vpn = (image.symbol_bounds[:, 0] + pages.bias) // page_size
    last_vpn = (image.symbol_bounds[:, 1] - 1 + pages.bias) // page_size
    lo = np.searchsorted(vpns, first_vpn, side="left")
    hi = np.searchsorted(vpns, last_vpn, side="right")
    csum = np.concatenate(([0], np.cumsum(pages.dirty)))
    n_pages, events = hi - lo, csum[hi] - csum[lo]
    weighted = _overlap_weighted(image.symbol_bounds + pages.bias, first_vpn, last_vpn, lo, hi,
                                 vpns, pages.dirty, events, page_size)
    hit = np.flatnonzero(n_pages > 0)
    if hit.size == 0:
        return
    for sym in hit.tolist():  # one iteration per symbol that holds dirtied pages
        exact = float(pages.p[lo[sym]:hi[sym]].max())
        name = image.symbol_names[sym]
        address = int(image.symbol_bounds[sym, 0])
        st = stats.get((image.path, name, address))
        if st is None:
            st = SymbolStat(image.path, name, section_of(image, address), address,
                            int(image.symbol_bounds[sym, 1] - address))
            stats[(image.path, name, address)] = st
        st.pages += int(n_pages[sym])
        st.dirty_page_samples += int(events[sym])
        st.weighted_page_samples += float(weighted[sym])
        st.max_p = max(st.max_p, exact)
        st.processes.add(process)


def _overlap_weighted(bounds: np.ndarray, first_vpn: np.ndarray, last_vpn: np.ndarray,
                      lo: np.ndarray, hi: np.ndarray, vpns: np.ndarray, dirty: np.ndarray,
                      events: np.ndarray, page_size: int) -> np.ndarray:
    """Dirty page-samples of each symbol with its first and last page weighted by byte overlap."""
    start, end = bounds[:, 0], bounds[:, 1]  # run-time addresses
    first_share = (np.minimum(end, (first_vpn + 1) * page_size) - start) / page_size
    last_share = (end - np.maximum(start, last_vpn * page_size)) / page_size
    has_first = (hi > lo) & (vpns[np.minimum(lo, vpns.size - 1)] == first_vpn)
    has_last = (hi > lo) & (vpns[np.maximum(hi - 1, 0)] == last_vpn)
    out = events.astype(np.float64)
    out -= np.where(has_first, (1 - first_share) * dirty[np.minimum(lo, vpns.size - 1)], 0)
    # a symbol inside one page: its first page is its last page, already weighted above
    one_page = first_vpn == last_vpn
    out -= np.where(has_last & ~one_page, (1 - last_share) * dirty[np.maximum(hi - 1, 0)], 0)
    return out


def section_of(image: ElfImage, address: int) -> str:
    b = image.section_bounds
    inside = np.flatnonzero((b[:, 0] <= address) & (address < b[:, 1]))
    return image.section_names[int(inside[0])] if inside.size else ""
