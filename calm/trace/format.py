"""Names and layout of a calm trace (HDF5), shared by the writer and the reader.

The layout is documented for users in FORMAT.md; this module is its single source of truth in
code. Version 1:

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

Appends happen in dependency order (events, then segments, then samples), so a file cut short by
SIGKILL is always readable up to its last complete sample: the reader trims to the longest prefix
whose offsets are consistent.
"""

from __future__ import annotations

FORMAT_NAME = "calm-trace"
FORMAT_VERSION = 1

ROOT_ATTRS = (
    "format",  # always FORMAT_NAME
    "format_version",  # integer, FORMAT_VERSION
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
    "command",  # JSON list: the command calm launched, or [] when attaching to pids
    "status",  # "recording" while open, "complete" or "interrupted" when closed cleanly
    "end_reason",  # why the recording ended, free text
)

SAMPLE_COLUMNS = {"t_start": "f8", "t_end": "f8", "segment_end": "u8"}
SEGMENT_COLUMNS = {"process": "u4", "n_dirty": "u4", "n_resident": "u8", "event_end": "u8"}
EVENT_COLUMNS = {"vpn_delta": "u8"}
# Processes: first_sample is the first sample that holds a segment for it; last_sample is the last
# one (-1 while it is still being recorded). exit_sample is the sample at which calm noticed it had
# gone (-1 if it was alive when the recording ended).
PROCESS_COLUMNS = {
    "pid": "i8",
    "ppid": "i8",
    "start_time_unix": "f8",  # process creation time (psutil create_time)
    "first_sample": "i8",
    "last_sample": "i8",
    "exit_sample": "i8",
    "name": "str",
    "cmdline": "str",  # JSON list of argv
    "exe": "str",
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
}

GROUPS = {
    "samples": SAMPLE_COLUMNS,
    "segments": SEGMENT_COLUMNS,
    "events": EVENT_COLUMNS,
    "processes": PROCESS_COLUMNS,
    "maps": MAP_COLUMNS,
}

# Chunk sizes (rows). Events dominate the file; 64 Ki events is 512 KiB before compression.
CHUNK_ROWS = {"samples": 1024, "segments": 4096, "events": 65536, "processes": 256, "maps": 1024}
DEFLATE_LEVEL = 4
