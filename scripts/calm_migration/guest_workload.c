/*
 * The guest workload of the migration validation harness (scripts/validate-migration).
 *
 * It runs as PID 1's child inside a busybox initramfs guest, so the guest carries it in its own
 * RAM (QEMU refuses to migrate while a virtio-9p export is mounted). It maps a working set of
 * anonymous memory, fills every page with non-zero data (so the pages are "normal", not zero
 * pages, for QEMU), says "calm-guest-workload: ready" on the console, then writes one 8-byte word
 * into pages chosen by a pattern at a paced rate:
 *
 *   uniform            every page of the working set equally likely
 *   hotcold:F:P        a hot set of the first F of the pages takes a share P of the writes
 *   phases:S:Q         alternating phases of S seconds: a busy one writing the whole set at the
 *                      rate, a quiet one writing the first Q of the pages at a tenth of it
 *
 * Pacing: every 5 ms it catches up with rate * elapsed, so the rate holds on average even when a
 * slice is late (TCG emulation, a busy host). Every 2 s it prints a heartbeat with its counters,
 * which the harness reads to see that a migrated guest runs on at the destination.
 *
 * Built static (cc -static -O2) so the initramfs needs no libc. Only libc is used.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096UL

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng_state;

static uint64_t next_random(void) /* xorshift64*: fast, and enough for choosing pages */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static double unit_random(void)
{
    return (next_random() >> 11) * (1.0 / 9007199254740992.0);
}

enum kind { UNIFORM, HOTCOLD, PHASES };

struct pattern {
    enum kind kind;
    double a, b; /* hotcold: hot fraction, hot share; phases: phase seconds, quiet fraction */
};

static int parse_pattern(const char *text, struct pattern *p)
{
    if (strcmp(text, "uniform") == 0) {
        p->kind = UNIFORM;
        return 0;
    }
    if (sscanf(text, "hotcold:%lf:%lf", &p->a, &p->b) == 2 && p->a > 0 && p->a < 1 && p->b >= 0 && p->b <= 1) {
        p->kind = HOTCOLD;
        return 0;
    }
    if (sscanf(text, "phases:%lf:%lf", &p->a, &p->b) == 2 && p->a > 0 && p->b > 0 && p->b <= 1) {
        p->kind = PHASES;
        return 0;
    }
    return -1;
}

/* The page to write next, and the rate factor of the current phase (1, or 0.1 when quiet). */
static uint64_t choose(const struct pattern *p, uint64_t pages, double t, double *factor)
{
    *factor = 1.0;
    switch (p->kind) {
    case HOTCOLD: {
        uint64_t hot = (uint64_t)(p->a * pages);
        if (hot < 1)
            hot = 1;
        if (unit_random() < p->b)
            return next_random() % hot;
        return hot + next_random() % (pages - hot);
    }
    case PHASES:
        if ((uint64_t)(t / p->a) % 2 == 1) {
            uint64_t quiet = (uint64_t)(p->b * pages);
            *factor = 0.1;
            return next_random() % (quiet ? quiet : 1);
        }
        return next_random() % pages;
    default:
        return next_random() % pages;
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s MIB PAGES_PER_SECOND PATTERN SEED\n", argv[0]);
        return 2;
    }
    uint64_t pages = strtoull(argv[1], NULL, 10) * (1 << 20) / PAGE;
    double rate = strtod(argv[2], NULL);
    struct pattern pattern = {UNIFORM, 0, 0};
    rng_state = strtoull(argv[4], NULL, 10) * 0x9E3779B97F4A7C15ULL + 1;
    if (pages < 16 || rate < 0 || parse_pattern(argv[3], &pattern) != 0) {
        fprintf(stderr, "calm-guest-workload: bad arguments\n");
        return 2;
    }
    uint8_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        perror("calm-guest-workload: mmap");
        return 1;
    }
    /* THP would make the kernel's own page handling coarse; QEMU tracks 4 KiB pages either way */
    madvise(mem, pages * PAGE, MADV_NOHUGEPAGE);
    for (uint64_t i = 0; i < pages * PAGE / 8; i++)
        ((uint64_t *)mem)[i] = next_random() | 1;
    printf("calm-guest-workload: ready pages=%llu rate=%g pattern=%s\n",
           (unsigned long long)pages, rate, argv[3]);
    fflush(stdout);

    double start = now(), last_beat = start, owed = 0, last = start;
    uint64_t writes = 0, counter = 1;
    struct timespec slice = {0, 5 * 1000 * 1000};
    for (;;) {
        double t = now();
        double factor;
        choose(&pattern, pages, t - start, &factor); /* phase factor for this slice */
        owed += rate * factor * (t - last);
        /* after a stall (a paused guest, a starved vCPU) catch up at most 100 ms of writes */
        if (owed > rate * factor * 0.1 + 1.0)
            owed = rate * factor * 0.1 + 1.0;
        last = t;
        while (owed >= 1.0) {
            double unused;
            uint64_t page = choose(&pattern, pages, t - start, &unused);
            /* a word that changes every write: the page is dirty and never all-zero */
            ((uint64_t *)(mem + page * PAGE))[(counter * 7) % (PAGE / 8)] = counter;
            counter++;
            writes++;
            owed -= 1.0;
        }
        if (t - last_beat >= 2.0) {
            printf("calm-guest-workload: beat t=%.1f writes=%llu\n", t - start, (unsigned long long)writes);
            fflush(stdout);
            last_beat = t;
        }
        nanosleep(&slice, NULL);
    }
}
