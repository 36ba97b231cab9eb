"""Where memory is dirtied: totals per kind of region, and per ELF section and symbol.

Per-page work is done with bincount over region indices; Python loops run once per region or per
ELF file, never per page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calm.analyzer.elf_attr import (ElfImage, ElfPages, SectionStat, SymbolStat, attribute_sections,
                               attribute_symbols, in_image, load_bias, load_elf)
from calm.analyzer.mapped import ProcessMaps
from calm.analyzer.model import PageTable, RegionStat
from calm.analyzer.regions import KIND_FILE, UNMAPPED, Region


@dataclass
class Attribution:
    regions: list[RegionStat]
    sections: list[SectionStat]
    symbols: list[SymbolStat]
    skipped: dict[str, str] = field(default_factory=dict)


def attribute(pages: PageTable, regions: list[Region], pmaps: dict[int, ProcessMaps],
              page_size: int) -> Attribution:
    out = Attribution(_region_stats(pages, regions), [], [])
    images: dict[str, ElfImage | None] = {}
    sections: dict[tuple[str, str], SectionStat] = {}
    symbols: dict[tuple[str, str, int], SymbolStat] = {}
    p = pages.p
    for row in np.unique(pages.process).tolist():
        lo, hi = np.searchsorted(pages.process, [row, row + 1])
        region_ids = pages.region[lo:hi]
        for path, ids in _elf_regions(regions, np.unique(region_ids[region_ids >= 0])).items():
            if path not in images:
                image, why = load_elf(path, _inode_of(regions, ids, path))
                images[path] = image
                if image is None:
                    out.skipped[path] = why
            image = images[path]
            if image is None:
                continue
            bias = _bias(image, pmaps[row], path, page_size)
            if bias is None:
                out.skipped.setdefault(path, "no PT_LOAD segment matches its mapped offsets")
                continue
            sel = np.flatnonzero(np.isin(region_ids, ids)) + lo
            elf_addr = pages.vpn[sel].astype(np.int64) * page_size - bias
            sel = sel[in_image(image, elf_addr, page_size)]
            elf_pages = ElfPages(pages.vpn[sel], pages.dirty[sel], p[sel], bias)
            attribute_sections(image, elf_pages, page_size, sections)
            attribute_symbols(image, elf_pages, page_size, row, symbols)
            if image.symbol_source == "":
                out.skipped.setdefault(path, "stripped: no symbol table (sections only)")
    out.sections = sorted(sections.values(), key=lambda s: -s.dirty_page_samples)
    out.symbols = sorted(symbols.values(), key=lambda s: (-s.weighted_page_samples, -s.dirty_page_samples, s.name))
    return out


def _region_stats(pages: PageTable, regions: list[Region]) -> list[RegionStat]:
    """Totals per (kind, label): pages, dirty page-samples, max p."""
    n = len(regions) + 1  # last slot: pages in no recorded region
    idx = np.where(pages.region >= 0, pages.region, len(regions))
    n_pages = np.bincount(idx, minlength=n)
    events = np.bincount(idx, weights=pages.dirty, minlength=n)
    max_p = np.zeros(n)
    np.maximum.at(max_p, idx, pages.p)
    stats: dict[tuple[str, str], RegionStat] = {}
    for i in np.flatnonzero(n_pages).tolist():
        region = regions[i] if i < len(regions) else UNMAPPED
        st = stats.setdefault((region.kind, region.label), RegionStat(region.kind, region.label))
        st.processes.add(region.process)
        st.pages += int(n_pages[i])
        st.dirty_page_samples += int(events[i])
        st.max_p = max(st.max_p, float(max_p[i]))
    return sorted(stats.values(), key=lambda s: -s.dirty_page_samples)


def _elf_regions(regions: list[Region], used: np.ndarray) -> dict[str, list[int]]:
    """ELF path -> indices of used regions that belong to it (file-backed or its .bss tail)."""
    out: dict[str, list[int]] = {}
    for i in used.tolist():
        r = regions[i]
        path = r.path if r.kind == KIND_FILE and r.path.startswith("/") else r.bss_of
        if path:
            out.setdefault(path, []).append(i)
    return out


def _inode_of(regions: list[Region], ids: list[int], path: str) -> int:
    for i in ids:
        if regions[i].path == path:
            return regions[i].inode
    return 0  # only the .bss tail was dirtied: no inode to compare


def _bias(image: ElfImage, pm: ProcessMaps, path: str, page_size: int) -> int | None:
    """Load bias of `path` in this process, from the newest snapshot that maps it."""
    for span in reversed(pm.spans):
        maps = span.maps
        for i, region_path in enumerate(maps.path):
            if region_path == path:
                bias = load_bias(image, int(maps.start[i]), int(maps.offset[i]), page_size)
                if bias is not None:
                    return bias
    return None
