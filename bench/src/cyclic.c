/*
 * A cyclictest-like probe of the machine's own floor under any latency at 1,000 events/s, with no
 * Node, no sockets, no allocation: wakes every `period_us` (default 1000) on an absolute schedule
 * (clock_nanosleep TIMER_ABSTIME, CLOCK_MONOTONIC) for `count` periods and prints the percentiles
 * of how late each wake-up was (us), and how many wake-ups were over 1, 5 and 10 ms late. With a
 * third argument `spin`, it does not sleep but spins for `count` ms reading the clock, and reports
 * the gaps between readings instead (a hiccup meter: any gap is time the vCPU did not run this
 * thread: another process, an interrupt, or the hypervisor). With `fault`: the cost of touching
 * `count` MB of fresh anonymous memory (a page fault per 4 KiB page; what a V8 heap pays each time
 * it grows or promotes into new pages), against touching it again. `hopProbe.ts` runs it.
 *   gcc -O2 -o /tmp/cyclic bench/src/cyclic.c && /tmp/cyclic 1000 10000
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return (x > y) - (x < y);
}

static void report(const char *what, long long *v, long n) {
  qsort(v, n, sizeof *v, cmp);
  long over1 = 0, over5 = 0, over10 = 0;
  for (long i = 0; i < n; i++) over1 += v[i] > 1000000, over5 += v[i] > 5000000, over10 += v[i] > 10000000;
#define P(p) (v[(long)((p) / 100.0 * (n - 1))] / 1000.0)
  printf("{\"what\":\"%s\",\"n\":%ld,\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,\"over1ms\":%ld,\"over5ms\":%ld,\"over10ms\":%ld}\n", what, n, P(50), P(99), P(99.9), v[n - 1] / 1000.0, over1, over5, over10);
}

int main(int argc, char **argv) {
  long period_us = argc > 1 ? atol(argv[1]) : 1000;
  long count = argc > 2 ? atol(argv[2]) : 10000;
  int spin = argc > 3 && strcmp(argv[3], "spin") == 0;
  if (argc > 3 && strcmp(argv[3], "fault") == 0) {
    size_t n = (size_t)count << 20;
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long long a = now_ns();
    memset(p, 1, n);
    long long b = now_ns();
    memset(p, 2, n);
    long long c = now_ns();
    printf("{\"what\":\"first touch\",\"mb\":%ld,\"ms\":%.1f,\"usPerPage\":%.2f,\"msPerMb\":%.2f,\"againMs\":%.1f}\n", count, (b - a) / 1e6, (b - a) / 1e3 / (n / 4096), (b - a) / 1e6 / count, (c - b) / 1e6);
    munmap(p, n);
    return 0;
  }
  if (spin) {
    // Gaps over 20 us between clock readings, over `count` ms of spinning (in us, as `late`).
    long cap = 1000000, n = 0;
    long long *gaps = calloc(cap, sizeof *gaps);
    long long end = now_ns() + count * 1000000LL, last = now_ns(), total = 0;
    while (last < end) {
      long long t = now_ns();
      if (t - last > 20000 && n < cap) gaps[n++] = t - last, total += t - last;
      last = t;
    }
    if (n == 0) gaps[n++] = 0;
    report("spin gaps > 20 us", gaps, n);
    printf("{\"what\":\"spin lost\",\"ms\":%.1f,\"of\":%ld}\n", total / 1e6, count);
    return 0;
  }
  long long *late = calloc(count, sizeof *late);
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  for (long i = 0; i < count; i++) {
    next.tv_nsec += period_us * 1000;
    while (next.tv_nsec >= 1000000000L) next.tv_nsec -= 1000000000L, next.tv_sec++;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    late[i] = now_ns() - ((long long)next.tv_sec * 1000000000LL + next.tv_nsec);
  }
  report("clock_nanosleep lateness", late, count);
  return 0;
}
