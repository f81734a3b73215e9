/* vdsim: simulated block devices behind the library's struct vd_bdev.
 *
 * Each device has a durable image (what survives a crash) and a volatile
 * cache (blocks written but not yet flushed), both sparse arrays of 4 KiB
 * blocks (NULL: zeroes / same as durable).  A write lands in the cache
 * (FUA: on the medium too); flush moves the cache to the medium; a crash
 * drops the cache, except a random share of it that "reached the medium
 * first" (real disks write back in any order).
 *
 * Every call is a scheduling point and may take virtual time, so calls of
 * different threads complete in any order.  Faults: the device goes away
 * (every call fails with EIO, or with ETIMEDOUT after a virtual timeout)
 * and returns; random EIO on a share of calls; bad ranges that fail reads
 * until rewritten (a latent sector error).
 *
 * __wrap_vd_bdev_open replaces the library's device opening (pool.c calls
 * vd_bdev_open, defined in dev.c: --wrap redirects that reference).
 * Single kernel thread (see sim.h): no locks.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../pool/pool_int.h"
#include "sim.h"

#define MAX_BAD 8
#define TIMEOUT_NS (2000ull * 1000000ull)

struct simdev {
    char name[64];
    uint64_t size, nblk;
    uint8_t **dur, **cache;
    int down;                 /* 0 up, 1 EIO, 2 timeout */
    unsigned err_pct;
    uint64_t bad_off[MAX_BAD], bad_len[MAX_BAD];
    int nbad;
};

struct sim_bdev {
    struct vd_bdev b;
    struct simdev *d;
};

static struct simdev *g_devs[SIM_MAX_DEVS];
static int g_ndevs;
static uint64_t g_ops;
void (*g_simdev_hook)(struct simdev *d, uint64_t off, uint64_t len, int kind);
struct rng g_dev_rng;
unsigned g_dev_delay_pct;

struct simdev *simdev_new(const char *name, uint64_t size)
{
    struct simdev *d = calloc(1, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->size = size;
    d->nblk = (size + SIM_BLK - 1) / SIM_BLK;
    d->dur = calloc(d->nblk, sizeof(*d->dur));
    d->cache = calloc(d->nblk, sizeof(*d->cache));
    g_devs[g_ndevs++] = d;
    return d;
}

struct simdev *simdev_find(const char *name)
{
    for (int i = 0; i < g_ndevs; i++)
        if (!strcmp(g_devs[i]->name, name))
            return g_devs[i];
    return NULL;
}

const char *simdev_name(const struct simdev *d)
{
    return d->name;
}

uint64_t simdev_ops(void)
{
    return g_ops;
}

void simdev_set_down(struct simdev *d, int down)
{
    d->down = down;
}

int simdev_is_down(const struct simdev *d)
{
    return d->down;
}

void simdev_set_error_pct(struct simdev *d, unsigned pct)
{
    d->err_pct = pct;
}

void simdev_set_bad(struct simdev *d, uint64_t off, uint64_t len)
{
    if (d->nbad < MAX_BAD) {
        d->bad_off[d->nbad] = off;
        d->bad_len[d->nbad++] = len;
    }
}

static const uint8_t g_zero[SIM_BLK];

static const uint8_t *view(struct simdev *d, uint64_t blk, bool durable)
{
    if (!durable && d->cache[blk])
        return d->cache[blk];
    return d->dur[blk] ? d->dur[blk] : g_zero;
}

void simdev_read(struct simdev *d, void *buf, uint64_t len, uint64_t off,
                 bool durable)
{
    uint8_t *p = buf;
    while (len) {
        uint64_t blk = off / SIM_BLK, in = off % SIM_BLK;
        uint64_t n = SIM_BLK - in < len ? SIM_BLK - in : len;
        const uint8_t *src = view(d, blk, durable);
        if (src == g_zero) {
            /* a run of never-written blocks: one memset */
            while (n < len && view(d, (off + n) / SIM_BLK, durable) == g_zero)
                n += SIM_BLK - (off + n) % SIM_BLK < len - n
                         ? SIM_BLK - (off + n) % SIM_BLK
                         : len - n;
            memset(p, 0, n);
        } else {
            memcpy(p, src + in, n);
        }
        p += n;
        off += n;
        len -= n;
    }
}

bool simdev_unflushed(struct simdev *d, uint64_t off, uint64_t len)
{
    for (uint64_t blk = off / SIM_BLK; blk * SIM_BLK < off + len; blk++)
        if (d->cache[blk] && memcmp(d->cache[blk], view(d, blk, true), SIM_BLK))
            return true;
    return false;
}

static uint8_t **slot_for_write(struct simdev *d, uint64_t blk, bool durable)
{
    uint8_t **s = durable ? &d->dur[blk] : &d->cache[blk];
    if (!*s) {
        *s = malloc(SIM_BLK);
        memcpy(*s, durable ? g_zero : view(d, blk, true), SIM_BLK);
    }
    return s;
}

static void apply_write(struct simdev *d, const void *buf, uint64_t len,
                        uint64_t off, bool fua)
{
    const uint8_t *p = buf;
    while (len) {
        uint64_t blk = off / SIM_BLK, in = off % SIM_BLK;
        uint64_t n = SIM_BLK - in < len ? SIM_BLK - in : len;
        memcpy(*slot_for_write(d, blk, false) + in, p ? p : g_zero, n);
        if (fua)
            memcpy(*slot_for_write(d, blk, true) + in, p ? p : g_zero, n);
        if (p)
            p += n;
        off += n;
        len -= n;
    }
}

static void flush_all(struct simdev *d)
{
    for (uint64_t b = 0; b < d->nblk; b++)
        if (d->cache[b]) {
            memcpy(*slot_for_write(d, b, true), d->cache[b], SIM_BLK);
            free(d->cache[b]);
            d->cache[b] = NULL;
        }
}

void simdev_crash_all(struct rng *r, unsigned persist_pct)
{
    for (int i = 0; i < g_ndevs; i++) {
        struct simdev *d = g_devs[i];
        for (uint64_t b = 0; b < d->nblk; b++)
            if (d->cache[b]) {
                if (rng_pct(r, persist_pct))
                    memcpy(*slot_for_write(d, b, true), d->cache[b], SIM_BLK);
                free(d->cache[b]);
                d->cache[b] = NULL;
            }
    }
}

void simdev_reset_all(void)
{
    for (int i = 0; i < g_ndevs; i++) {
        struct simdev *d = g_devs[i];
        for (uint64_t b = 0; b < d->nblk; b++) {
            free(d->dur[b]);
            free(d->cache[b]);
        }
        free(d->dur);
        free(d->cache);
        free(d);
    }
    g_ndevs = 0;
    g_ops = 0;
}

/* The common start of every call: a scheduling point, maybe virtual time,
 * then the faults.  0 or a negative errno. */
static int op_enter(struct simdev *d, const char *what, uint64_t off,
                    uint64_t len)
{
    g_ops++;
    sched_point();
    if (rng_pct(&g_dev_rng, g_dev_delay_pct))
        sched_sleep_ns(rng_below(&g_dev_rng, 3000000));
    if (off > d->size || len > d->size - off)
        sim_fail("device '%s': %s of %llu bytes at %llu beyond its %llu bytes",
                 d->name, what, (unsigned long long)len,
                 (unsigned long long)off, (unsigned long long)d->size);
    if (d->down == 2) {
        sched_sleep_ns(TIMEOUT_NS);
        return -ETIMEDOUT;
    }
    if (d->down)
        return -EIO;
    if (d->err_pct && rng_pct(&g_dev_rng, d->err_pct))
        return -EIO;
    return 0;
}

static int sim_pread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    struct simdev *d = ((struct sim_bdev *)b)->d;
    int r = op_enter(d, "read", off, len);
    for (int i = 0; r == 0 && i < d->nbad; i++)
        if (off < d->bad_off[i] + d->bad_len[i] && d->bad_off[i] < off + len)
            r = -EIO;
    if (r == 0)
        simdev_read(d, buf, len, off, false);
    if (g_verbose > 1 || (g_verbose && r))
        sim_log("    %s: read %llu+%zu by thread %d -> %d", d->name,
                (unsigned long long)off, len, sched_self(), r);
    return r;
}

/* VD_IO_NOWAIT: served from "the page cache" (no virtual time) or -EAGAIN
 * (a miss, or the device is away). */
static int nowait_enter(struct simdev *d, uint64_t off, uint64_t len)
{
    g_ops++;
    sched_point();
    if (off > d->size || len > d->size - off)
        sim_fail("device '%s': NOWAIT I/O of %llu bytes at %llu beyond its "
                 "%llu bytes", d->name, (unsigned long long)len,
                 (unsigned long long)off, (unsigned long long)d->size);
    if (d->down || rng_pct(&g_dev_rng, 30))
        return -EAGAIN;
    for (int i = 0; i < d->nbad; i++)
        if (off < d->bad_off[i] + d->bad_len[i] && d->bad_off[i] < off + len)
            return -EAGAIN;
    return 0;
}

static int sim_pread_nowait(struct vd_bdev *b, void *buf, size_t len,
                            uint64_t off)
{
    struct simdev *d = ((struct sim_bdev *)b)->d;
    int r = nowait_enter(d, off, len);
    if (r == 0)
        simdev_read(d, buf, len, off, false);
    if (g_verbose > 1)
        sim_log("    %s: read NOWAIT %llu+%zu by thread %d -> %d", d->name,
                (unsigned long long)off, len, sched_self(), r);
    return r;
}

static int sim_pwrite(struct vd_bdev *b, const void *buf, size_t len,
                      uint64_t off, unsigned flags)
{
    struct simdev *d = ((struct sim_bdev *)b)->d;
    int r = (flags & VD_IO_NOWAIT) ? nowait_enter(d, off, len)
                                   : op_enter(d, "write", off, len);
    if (g_verbose)
        sim_log("    %s: write%s%s %llu+%zu by thread %d -> %d", d->name,
                flags & VD_IO_FUA ? " FUA" : "",
                flags & VD_IO_NOWAIT ? " NOWAIT" : "", (unsigned long long)off, len,
                sched_self(), r);
    if (r < 0)
        return r;
    apply_write(d, buf, len, off, flags & VD_IO_FUA);
    /* a rewrite repairs a latent sector error */
    for (int i = 0; i < d->nbad; i++)
        if (off <= d->bad_off[i] && d->bad_off[i] + d->bad_len[i] <= off + len) {
            d->bad_off[i] = d->bad_off[--d->nbad];
            d->bad_len[i] = d->bad_len[d->nbad];
            i--;
        }
    if (g_simdev_hook)
        g_simdev_hook(d, off, len, 1);
    return 0;
}

static int sim_flush(struct vd_bdev *b)
{
    struct simdev *d = ((struct sim_bdev *)b)->d;
    int r = op_enter(d, "flush", 0, 0);
    if (g_verbose)
        sim_log("    %s: flush by thread %d -> %d", d->name, sched_self(), r);
    if (r < 0)
        return r;
    flush_all(d);
    if (g_simdev_hook)
        g_simdev_hook(d, 0, d->size, 2);
    return 0;
}

static int sim_zero(struct vd_bdev *b, uint64_t off, uint64_t len)
{
    struct simdev *d = ((struct sim_bdev *)b)->d;
    int r = op_enter(d, "zero", off, len);
    if (g_verbose)
        sim_log("    %s: zero %llu+%llu by thread %d -> %d", d->name,
                (unsigned long long)off, (unsigned long long)len, sched_self(), r);
    if (r < 0)
        return r;
    apply_write(d, NULL, len, off, false);
    if (g_simdev_hook)
        g_simdev_hook(d, off, len, 1);
    return 0;
}

static void sim_close(struct vd_bdev *b)
{
    free(b);
}

static const struct vd_bdev_ops sim_ops = {
    .kind = "sim",
    .pread = sim_pread,
    .pread_nowait = sim_pread_nowait,
    .pwrite = sim_pwrite,
    .flush = sim_flush,
    .close = sim_close,
    .zero = sim_zero,
};

int __wrap_vd_bdev_open(const struct vd_conf_dev *c, int create,
                        uint64_t create_size, struct vd_bdev **out, char *msg,
                        size_t msglen)
{
    struct simdev *d = simdev_find(c->name);

    sched_point();
    if (!d) {
        snprintf(msg, msglen, "no simulated device '%s'", c->name);
        return -ENOENT;
    }
    if (d->down) {
        if (d->down == 2)
            sched_sleep_ns(TIMEOUT_NS);
        snprintf(msg, msglen, "simulated device '%s' is away", c->name);
        return d->down == 2 ? -ETIMEDOUT : -EIO;
    }
    struct sim_bdev *sb = calloc(1, sizeof(*sb));
    sb->b.ops = &sim_ops;
    sb->b.size = d->size;
    sb->b.block_size = 512;
    sb->d = d;
    *out = &sb->b;
    return 0;
}
