"""Names and layout of a calm trace (HDF5), shared by the writer and the reader.

The layout is documented for users in FORMAT.md; this module is its single source of truth in
code. Version 1.1 (major 1 in `format_version`, minor 1 in `format_minor`):

    /                      attributes (see ROOT_ATTRS)
    /samples/t_start       float64[S]  interval start, seconds since `start_monotonic`
    /samples/t_end         float64[S]  interval end (the moment the dirty state was read)
    /samples/segment_end   uint64[S]   cumulative segment count after this sample
    /segments/process      uint32[G]   row in /processes
    /segments/n_dirty      uint32[G]   dirty pages of that process in that sample
    /segments/n_resident   uint64[G]   resident (present or swapped) pages of that process then
    /segments/event_end    uint64[G]   cumulative event count after this segment
    /events/vpn_delta      uint64[E]   dirty virtual page numbers, delta-coded per segment
    /processes/<column>    one row per process ever followed
    /maps/<column>         memory-map snapshots, one row per region, appended when a map changes

A *segment* is one (sample, process) pair; every process alive at a sample gets one, even with no
dirty page, so resident counts exist for every sample. Within a segment the dirty page numbers are
sorted ascending and stored as differences: the first value is the page number itself, each later
one is the gap to the previous page. `np.cumsum` of a segment's slice gives the page numbers back.
Delta coding keeps runs of neighbouring pages at one byte or less after shuffle+deflate.

Version 1.1 adds the *service* part (issue 13), all optional for readers (a 1.0 file lacks it):
`maps/dev` (with inode and offset it names the object behind a MAP_SHARED page, so readers can
count a page shared by several processes once), `processes/title` (the role a process gives itself
in its cmdline), `segments/pss` (proportional resident pages, each page counted once over the
processes that map it), the observer's cost per round (`samples/round_*`), and the root attributes
`shared_writes`, `notes` and `nice`. See FORMAT.md.

Appends happen in dependency order (events, then segments, then samples), so a file cut short by
SIGKILL is always readable up to its last complete sample: the reader trims to the longest prefix
whose offsets are consistent.
"""

from __future__ import annotations

FORMAT_NAME = "calm-trace"
FORMAT_VERSION = 1  # major: readers refuse a newer one
# Minor versions add groups or attributes that older readers may ignore; readers accept any.
# 1: /residency (which pages were resident, and which held only zeros, when each process's
#    recording began) and the service part (maps/dev, segments, processes/title, ... see FORMAT.md);
#    the root attribute `format_minor`. Files without it are minor 0.
FORMAT_MINOR = 1

ROOT_ATTRS = (
    "format",  # always FORMAT_NAME
    "format_version",  # integer, FORMAT_VERSION
    "format_minor",  # integer, FORMAT_MINOR (absent: 0)
    "page_size",  # bytes
    "backend",  # "soft-dirty" or "hash"
    "backend_method",  # "pagemap-scan", "pagemap-read" or "page-hash"
    "interval",  # requested sampling interval, seconds
    "kernel_release",  # uname -r
    "hostname",
    "start_time",  # ISO 8601 UTC wall-clock time of the first clear
    "start_time_unix",  # same, seconds since the epoch
    "start_monotonic",  # CLOCK_MONOTONIC seconds that t_start/t_end are relative to
    "tool_version",  # calm version
    "command",  # JSON list: the command calm launched ([name] with --no-cmdline), or [] for pids
    "cmdline_recorded",  # 1, or 0 with --no-cmdline (optional: absent in older files means 1)
    "status",  # "recording" while open, "complete" when closed cleanly, "failed" (error, full disk)
    "end_reason",  # why the recording ended, free text
    # -- 1.1, service part --
    "format_minor",  # integer, FORMAT_MINOR (absent: 0)
    "shared_writes",  # SHARED_WRITER or SHARED_READER: what a dirty page of a MAP_SHARED region means
    "notes",  # JSON list of sentences a reader of the trace should see (e.g. the hash backend's blind spot)
    "nice",  # the nice level calm recorded at (0: not lowered)
)

# `shared_writes`: soft-dirty is per page-table entry, so a process's segment holds the shared pages
# *it* wrote (two writers of one page: the page is in both segments). The hash backend compares each
# shared page's bytes once per round, read through one process that maps it, and cannot tell who
# wrote it: a changed shared page is in exactly one segment per sample, that of the process it was
# read through, which is not a claim that this process wrote it.
SHARED_WRITER = "writer"
SHARED_READER = "reader"

SAMPLE_COLUMNS = {
    "t_start": "f8", "t_end": "f8", "segment_end": "u8",
    # 1.1: the observer's cost in the round that read this sample (it began at t_end)
    "round_read_s": "f8",  # wall-clock seconds spent reading the processes
    "round_cpu_s": "f8",  # calm's own CPU seconds (user + system, all threads) over the round
    "round_pages_read": "u8",  # pages whose contents (hash) or page-table entries (soft-dirty) were read
}
SEGMENT_COLUMNS = {
    "process": "u4", "n_dirty": "u4", "n_resident": "u8", "event_end": "u8",
    # 1.1: proportional set size in pages (/proc/PID/smaps_rollup Pss): each resident page counts
    # 1/n in each of the n processes that map it, so a sample's segments sum to the service's
    # resident memory with every page once. Read at most once a second (less often when reading it
    # is costly), carried forward between.
    "pss": "u8",
}
EVENT_COLUMNS = {"vpn_delta": "u8"}
# Processes: first_sample is the first sample that holds a segment for it; last_sample is the last
# one (-1 while it is still being recorded). exit_sample is the first sample without it, the one at
# (or just before) which calm noticed it had gone; the sample count when that was after the last
# sample; -1 if it was alive when the recording ended.
# A process that execs gets a new row (same pid and start_time_unix, its new name/exe/cmdline) and
# its old row's exit_sample is the exec's.
PROCESS_COLUMNS = {
    "pid": "i8",
    "ppid": "i8",
    "start_time_unix": "f8",  # process creation time (psutil create_time)
    "first_sample": "i8",
    "last_sample": "i8",
    "exit_sample": "i8",
    "name": "str",
    "cmdline": "str",  # JSON list of argv
    "exe": "str",  # the program as the user ran it (a symlink's name, not its target)
    "title": "str",  # 1.1: the role it gives itself in its cmdline ("postgres: checkpointer"), or ""
}
# Memory maps: every row is one region of /proc/PID/maps. A snapshot is all rows with the same
# (process, sample); it is valid from that sample until the next snapshot of that process.
MAP_COLUMNS = {
    "process": "u4",
    "sample": "u4",
    "start": "u8",  # byte address
    "end": "u8",
    "perms": "str",  # e.g. "rw-p"
    "offset": "u8",
    "inode": "u8",
    "path": "str",  # file path, [heap], [stack], [anon:...] or "" for anonymous
    "dev": "u8",  # 1.1: device of the mapped file (os.makedev(major, minor)); 0 for anonymous memory
}

# Columns a 1.0 trace does not have; readers treat them as absent there.
SINCE_1_1 = {
    "samples": ("round_read_s", "round_cpu_s", "round_pages_read"),
    "segments": ("pss",),
    "processes": ("title",),
    "maps": ("dev",),
}

# Residency (minor 1): runs of pages of the regions the backend reads, covering them whole, in
# one state each, as found when the process's recording began (its first sample's baseline read).
RESIDENCY_COLUMNS = {
    "process": "u4",
    "sample": "u4",  # the first sample whose writes the snapshot precedes
    "start_vpn": "u8",  # first page of the run
    "pages": "u8",  # pages in the run
    "state": "u1",  # RESIDENCY_ABSENT, RESIDENCY_RESIDENT or RESIDENCY_ZERO
}
RESIDENCY_ABSENT = 0  # neither present nor swapped: reads as zeros
RESIDENCY_RESIDENT = 1  # present or swapped; its content may or may not be all zeros
RESIDENCY_ZERO = 2  # present and holding only zeros (the hash backend reads every page; the
#                     soft-dirty backend can tell only pages mapping the shared zero page)

GROUPS = {
    "samples": SAMPLE_COLUMNS,
    "segments": SEGMENT_COLUMNS,
    "events": EVENT_COLUMNS,
    "processes": PROCESS_COLUMNS,
    "maps": MAP_COLUMNS,
    "residency": RESIDENCY_COLUMNS,
}

# Chunk sizes (rows). Events dominate the file; 64 Ki events is 512 KiB before compression.
CHUNK_ROWS = {"samples": 1024, "segments": 4096, "events": 65536, "processes": 256, "maps": 1024,
              "residency": 4096}
DEFLATE_LEVEL = 4
