/* A program with known hot globals for the analyzer's ELF attribution test.
 * hot_bss_array (.bss, 16 pages) and hot_data_array (.data, 4 pages) are written every 10 ms;
 * cold_data_array (.data) is never written after start. Runs for argv[1] seconds (default 5). */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define BSS_PAGES 16
#define DATA_PAGES 4

volatile char hot_bss_array[BSS_PAGES * PAGE];
volatile char hot_data_array[DATA_PAGES * PAGE] = {1};
volatile char cold_data_array[DATA_PAGES * PAGE] = {2};

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (unsigned long round = 1;; round++) {
        for (int i = 0; i < BSS_PAGES; i++) hot_bss_array[i * PAGE + 8] = (char)(round + i);
        for (int i = 0; i < DATA_PAGES; i++) hot_data_array[i * PAGE + 8] = (char)(round + i);
        usleep(10000);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 > seconds) break;
    }
    return cold_data_array[0] == 3;
}
