/* Library-level first-write benchmark for thin volumes (issue 10), no tgtd
 * and no iSCSI in the way: what thin's group commit and data space growth
 * cost on the backing filesystem itself.
 *
 *   thin-lib DIR [THREADS [MIB]]
 *
 * Creates a pool of one sparse device file in DIR (ext4 to see the
 * fdatasync cost; tmpfs shows the CPU cost only), a thin volume and a
 * linear volume of MIB MiB (default 256), and runs, with THREADS threads
 * (default 16, as tgtd's I/O threads per pool):
 *   first-4k  one 4 KiB write per 64 KiB chunk, each chunk once, in a
 *             seeded shuffled order (every write allocates a chunk)
 *   over-4k   the same writes again
 * on the thin volume, and the same two passes on the linear volume.
 * Prints one line per pass (IOPS) and thin's profile (debug log: pipeline
 * steps, requests in them, time flushing, data space grows).  The pool is
 * removed at the end.  Build (after make):
 *   cc -std=gnu11 -D_GNU_SOURCE -O2 -I. -o build/thin-lib \
 *      tests/bench/thin-lib.c build/libvdlvm.a -liscsi -lrbd -lrados \
 *      -lyaml -lcrypto -lblkid -luring -lpthread
 * Numbers and how to compare two builds: docs/thin.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pool/pool_int.h"

static vd_vol *g_vol;
static uint64_t *g_order;
static uint64_t g_n, g_next;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_err;

static void logfn(int level, const char *msg)
{
    if (level <= VD_LOG_WARN || strstr(msg, "map commit steps"))
        fprintf(stderr, "  %s\n", msg);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
    char buf[4096];
    memset(buf, 0x5a, sizeof(buf));
    for (;;) {
        pthread_mutex_lock(&g_lock);
        uint64_t i = g_next++;
        pthread_mutex_unlock(&g_lock);
        if (i >= g_n)
            return NULL;
        int r = vd_vol_pwrite(g_vol, buf, sizeof(buf), g_order[i] << 16, 0);
        if (r < 0)
            __atomic_store_n(&g_err, r, __ATOMIC_RELAXED);
    }
}

static double pass(vd_vol *v, int threads)
{
    pthread_t th[64];
    g_vol = v;
    g_next = 0;
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&th[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    return (double)g_n / (now_s() - t0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [THREADS [MIB]]\n", argv[0]);
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 16;
    uint64_t mib = argc > 3 ? strtoull(argv[3], NULL, 10) : 256;
    if (threads < 1 || threads > 64 || mib < 8)
        return 2;
    char path[4096];
    snprintf(path, sizeof(path), "%s/thin-lib-%d.img", argv[1], getpid());
    setenv("VDLVM_RUNDIR", argv[1], 1);
    vd_log_set_fn(logfn);

    struct vd_conf_dev dev = { 0 };
    dev.name = (char *)"d0";
    dev.path = path;
    dev.size = (2 * mib + 64) << 20;
    dev.node = (char *)"n0";
    struct vd_conf_pool conf = { 0 };
    conf.file = (char *)"thin-lib.yaml";
    conf.name = (char *)"tl";
    conf.extent_size = 4ull << 20;
    conf.ndevs = 1;
    conf.devs = &dev;
    vd_pool *p = NULL;
    int r = vd_pool_create(&conf, 1);
    if (r == 0)
        r = vd_pool_open(&conf, &p);
    struct vd_vol_opts o;
    vd_vol_opts_init(&o);
    o.thin = 1;
    if (r == 0)
        r = vd_vol_create(p, "thin", mib << 20, &o);
    vd_vol_opts_init(&o);
    if (r == 0)
        r = vd_vol_create(p, "lin", mib << 20, &o);
    if (r < 0) {
        fprintf(stderr, "setup: %s\n", strerror(-r));
        unlink(path);
        return 1;
    }
    g_n = (mib << 20) >> 16;
    g_order = malloc(g_n * sizeof(*g_order));
    for (uint64_t i = 0; i < g_n; i++)
        g_order[i] = i;
    srand(42);
    for (uint64_t i = g_n - 1; i > 0; i--) {
        uint64_t j = (uint64_t)rand() % (i + 1), t = g_order[i];
        g_order[i] = g_order[j];
        g_order[j] = t;
    }
    const char *names[] = { "thin", "lin" };
    for (int k = 0; k < 2; k++) {
        vd_vol *v = vd_vol_open(p, names[k]);
        if (!v) {
            fprintf(stderr, "open %s failed\n", names[k]);
            return 1;
        }
        double f = pass(v, threads), w = pass(v, threads);
        printf("%s first-4k %.0f IOPS, over-4k %.0f IOPS, ratio %.3f "
               "(%" PRIu64 " writes, %d threads)\n",
               names[k], f, w, f / w, g_n, threads);
        fflush(stdout);
        vd_vol_close(v);
    }
    vd_pool_close(p);
    unlink(path);
    return g_err ? 1 : 0;
}
