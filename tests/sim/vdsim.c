/* vdsim: the fault simulator's driver, oracle, invariants and runner.
 *
 *   vdsim [--count N] [--start S] [-j J] [--regress FILE] [SCHEDULE OPTIONS]
 *   vdsim --seed S [--verbose] [SCHEDULE OPTIONS]
 *
 * Each schedule (one seed) runs in a forked child: it creates a pool on
 * four simulated devices (sim.h), one volume (linear, 2- or 3-leg mirror),
 * and then a seeded random sequence of steps: writes (overlapping, from
 * several threads), reads, flushes, COMPARE AND WRITE, device failures and
 * returns, latent read errors, resync (rate-limited), verify --repair, leg
 * replacement, extend, sleeps, crash and reopen.  After every device write
 * and at every quiet point it checks the invariants (see check_* below);
 * the first violation ends the schedule with its seed.
 *
 * The oracle.  Every write gets an id (wid) and writes a pattern that
 * names (wid, volume sector) in each 512-byte sector, so any sector read
 * back says which write it came from.  A read of sector s during [rs, re]
 * may return write v's data iff v touched s, v started before re, and no
 * acknowledged write w of s started after v returned and returned before
 * rs (zeroes count as a write that returned at time 0).  A write that
 * failed may or may not be there.  At a crash, acknowledged writes that
 * were not made durable (FUA, or a successful flush started after they
 * returned) lose their acknowledgement.
 */

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../pool/move_batch.h"
#include "../../pool/pool_int.h"
#include "../../replica/vdreplica.h"
#include "../../replica/mirror_int.h"
#include "sim.h"

#define EXT (1ull << 20)
#define NDEV 4
#define DEV_PE 5
#define DEV_SIZE (5 * EXT + DEV_PE * EXT)
#define SECT 512u
#define MAX_SECT (8 * EXT / SECT)
#define MAX_REG 1024
#define INF UINT64_MAX
#define MAX_INFLIGHT 4

uint64_t g_seed;
int g_verbose;

/* ---- options ---- */
enum {
    O_WRITE, O_READ, O_FLUSH, O_CAW, O_SLEEP, O_QUIESCE, O_DOWN, O_UP, O_BAD,
    O_ERR, O_RESYNC, O_VERIFY, O_REPLACE, O_EXTEND, O_CRASH, O_NWRITE,
    O_NREAD, O_DISCARD, O_UNFILL, O_MOVE, O_NOPS
};
static const char *op_names[O_NOPS] = {
    "write", "read", "flush", "caw", "sleep", "quiesce", "down", "up", "bad",
    "err", "resync", "verify", "replace", "extend", "crash", "nwrite",
    "nread", "discard", "unfill", "move",
};
static const unsigned op_weight[O_NOPS] = {
    30, 12, 8, 4, 8, 5, 3, 5, 3, 2, 3, 1, 1, 1, 1, 6, 4, 8, 1,
    0, /* move: drawn from its own stream (g_mrng), see move_step */
};

struct opts {
    int layout;          /* -1 random, 0 linear, 2 / 3 mirror legs */
    uint32_t ops_mask;   /* allowed step kinds */
    int steps;           /* 0: random 40..120 */
    int stick;           /* -1: random */
    int one_writer;      /* at most one write in flight */
    int no_i2;           /* skip the durable-bitmap check (I2) */
    uint32_t down_mask;  /* devices that may fail */
    int thin;            /* -1 random (30%), 0 thick, 1 thin volume */
};

static struct opts g_opts = { -1, (1u << O_NOPS) - 1, 0, -1, 0, 0, 0xf, -1 };

/* ---- the oracle ---- */
/* W_NONE: a write that failed with nothing written (a thin volume's
 * -ENOSPC): its data must never be read. */
enum { W_INFLIGHT = 0, W_ACK, W_FAIL, W_NONE };
struct wrec {
    uint64_t start, end;
    uint64_t off;
    uint32_t len;
    uint8_t state, fua, durable;
    uint8_t zero; /* a discard of whole chunks: its sectors read zeroes */
    int step;
};
static struct wrec *W;
static size_t nW, capW;
static uint32_t *hist[MAX_SECT];
static uint16_t hn[MAX_SECT], hcap[MAX_SECT];
static uint64_t g_evt;

static uint32_t wrec_new(uint64_t off, uint32_t len, int step, bool fua)
{
    if (nW == capW) {
        capW = capW ? capW * 2 : 256;
        W = realloc(W, capW * sizeof(*W));
    }
    struct wrec *w = &W[nW];
    memset(w, 0, sizeof(*w));
    w->off = off;
    w->len = len;
    w->step = step;
    w->fua = fua;
    w->start = ++g_evt;
    w->end = INF;
    for (uint64_t s = off / SECT; s < (off + len) / SECT; s++) {
        if (hn[s] == hcap[s]) {
            hcap[s] = hcap[s] ? hcap[s] * 2 : 4;
            hist[s] = realloc(hist[s], hcap[s] * sizeof(uint32_t));
        }
        hist[s][hn[s]++] = (uint32_t)nW;
    }
    return (uint32_t)nW++;
}

static void wrec_end(uint32_t wid, int r)
{
    W[wid].end = ++g_evt;
    W[wid].state = r == 0 ? W_ACK : W_FAIL;
    if (r == 0 && W[wid].fua)
        W[wid].durable = 1;
}

static inline uint64_t pat_word(uint32_t wid, uint64_t s, unsigned i)
{
    return ((uint64_t)wid * 0x9e3779b97f4a7c15ull) ^ (s << 20) ^ i;
}

static void fill_sector(uint8_t *p, uint32_t wid, uint64_t s)
{
    uint64_t *q = (uint64_t *)p;
    if (wid == 0 || W[wid].zero) {
        memset(p, 0, SECT);
        return;
    }
    q[0] = wid;
    q[1] = s;
    for (unsigned i = 2; i < SECT / 8; i++)
        q[i] = pat_word(wid, s, i);
}

static void fill(uint8_t *buf, uint32_t wid, uint64_t off, uint32_t len)
{
    for (uint32_t k = 0; k < len / SECT; k++)
        fill_sector(buf + k * SECT, wid, off / SECT + k);
}

/* wid of a sector's contents, or -1 when it is no write's data for s. */
static int64_t decode(const uint8_t *p, uint64_t s)
{
    const uint64_t *q = (const uint64_t *)p;
    uint8_t want[SECT];
    if (q[0] == 0 && q[1] == 0) {
        static const uint8_t z[SECT];
        return memcmp(p, z, SECT) ? -1 : 0;
    }
    if (q[1] != s || q[0] >= nW)
        return -1;
    fill_sector(want, (uint32_t)q[0], s);
    return memcmp(p, want, SECT) ? -1 : (int64_t)q[0];
}

static bool in_hist(uint64_t s, uint32_t v)
{
    for (unsigned i = 0; i < hn[s]; i++)
        if (hist[s][i] == v)
            return true;
    return false;
}

static bool allowed(uint64_t s, uint32_t v, uint64_t rs, uint64_t re)
{
    uint64_t vend = 0;
    if (v) {
        if (!in_hist(s, v) || W[v].start > re || W[v].state == W_NONE)
            return false;
        vend = W[v].end;
    }
    for (unsigned i = 0; i < hn[s]; i++) {
        struct wrec *w = &W[hist[s][i]];
        if (w->state == W_ACK && w->start > vend && w->end < rs)
            return false;
    }
    return true;
}

/* Latest acknowledged write of s (what CAW compares with). */
static uint32_t latest(uint64_t s)
{
    uint32_t best = 0;
    uint64_t be = 0;
    for (unsigned i = 0; i < hn[s]; i++) {
        struct wrec *w = &W[hist[s][i]];
        if (w->state == W_ACK && w->end > be) {
            be = w->end;
            best = hist[s][i];
        }
    }
    return best;
}

static void print_hist(uint64_t s)
{
    fprintf(stderr, "  writes of volume sector %llu (byte %llu):%s\n",
            (unsigned long long)s, (unsigned long long)s * SECT,
            hn[s] ? "" : " none (zeroes)");
    for (unsigned i = 0; i < hn[s]; i++) {
        struct wrec *w = &W[hist[s][i]];
        static const char *st[] = { "in flight", "acknowledged", "failed",
                                    "failed, nothing written" };
        fprintf(stderr, "    %s #%u (step %d) [%llu+%u]%s: started %llu, "
                "returned %llu, %s%s\n", w->zero ? "discard" : "write",
                hist[s][i], w->step,
                (unsigned long long)w->off, w->len, w->fua ? " FUA" : "",
                (unsigned long long)w->start,
                (unsigned long long)(w->end == INF ? 0 : w->end), st[w->state],
                w->durable ? ", durable" : "");
    }
}

/* Check that buf (volume bytes [off, off+len), read during [rs, re]) holds
 * allowed data in every sector. */
static void check_data(const uint8_t *buf, uint64_t off, uint64_t len,
                       uint64_t rs, uint64_t re, const char *what)
{
    for (uint64_t k = 0; k < len / SECT; k++) {
        uint64_t s = off / SECT + k;
        int64_t v = decode(buf + k * SECT, s);
        if (v < 0) {
            print_hist(s);
            sim_fail("%s: volume sector %llu holds bytes no write put there "
                     "(first words %016llx %016llx)", what,
                     (unsigned long long)s,
                     (unsigned long long)((const uint64_t *)(buf + k * SECT))[0],
                     (unsigned long long)((const uint64_t *)(buf + k * SECT))[1]);
        }
        bool ok = allowed(s, (uint32_t)v, rs, re);
        /* zeroes: the initial state or a discard */
        for (unsigned i = 0; !ok && v == 0 && i < hn[s]; i++)
            ok = W[hist[s][i]].zero && allowed(s, hist[s][i], rs, re);
        if (!ok) {
            print_hist(s);
            sim_fail("%s: volume sector %llu holds write #%lld, which a later "
                     "acknowledged write replaced (read during %llu..%llu): "
                     "an acknowledged write is lost", what,
                     (unsigned long long)s, (long long)v,
                     (unsigned long long)rs, (unsigned long long)re);
        }
    }
}

/* ---- the schedule's world ---- */
static struct rng g_rng;      /* steps */
static struct rng g_mrng;     /* extent moves: their own stream, so that a
                                 schedule draws the steps it drew before */
static struct rng g_brng;     /* batches of moves (move_step) */
static char g_dir[256];
static struct vd_conf_pool g_conf;
static struct vd_conf_dev g_cdev[NDEV];
static struct simdev *g_sd[NDEV];
static vd_pool *g_pool;
static vd_vol *g_vol;
static int g_legs;            /* 1 linear */
static bool g_thin;           /* the volume is thin (64 KiB chunks) */
static bool g_filler;         /* volume "f" fills the pool (thin) */
#define CHUNK (64u << 10)
static uint64_t g_rsize;      /* region size */
static uint64_t g_size;       /* volume bytes the driver uses */
static int g_step;
static const char *VOL = "v";

static void lib_log(int level, const char *msg)
{
    static char ring[32][240];
    static int n;
    if (level < 0) { /* dump */
        for (int i = n > 32 ? n - 32 : 0; i < n; i++)
            fprintf(stderr, "  lib: %s\n", ring[i % 32]);
        return;
    }
    snprintf(ring[n++ % 32], sizeof(ring[0]), "%s", msg);
    if (g_verbose)
        fprintf(stderr, "  [%8.3f] lib: %s\n", sched_now_ns() / 1e9, msg);
}

void sim_log(const char *fmt, ...)
{
    va_list ap;
    if (!g_verbose)
        return;
    fprintf(stderr, "  [%8.3f] ", sched_now_ns() / 1e9);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static const char *g_opt_str = "";

_Noreturn void sim_fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "vdsim: seed %llu: FAILED at step %d (virtual time %.3f s): ",
            (unsigned long long)g_seed, g_step, sched_now_ns() / 1e9);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (!g_verbose) {
        fprintf(stderr, "  last library messages:\n");
        lib_log(-1, NULL);
    }
    fprintf(stderr, "  replay: build/vdsim --seed %llu%s --verbose\n",
            (unsigned long long)g_seed, g_opt_str);
    fflush(stderr);
    _exit(1);
}

/* ---- invariants on the devices ---- */

static struct vd_vol *vol_int(void)
{
    return g_vol ? (struct vd_vol *)g_vol : NULL;
}

/* device and byte offset of leg `leg`, volume byte off (data), or NULL */
static struct simdev *leg_dev(struct vd_vol *v, uint32_t leg, uint64_t le,
                              uint64_t *doff)
{
    if (le >= v->le_count)
        return NULL;
    const struct vd_pe *e = &v->map[le * v->copies + leg];
    if (e->dev == VD_NO_DEV)
        return NULL;
    struct vd_dev *d = &v->pool->devs[e->dev];
    *doff = d->data_offset + e->pe * v->pool->extent_size;
    return g_sd[e->dev];
}

static uint32_t nonfailed(struct vd_vol *v)
{
    uint32_t m = 0;
    for (uint32_t k = 0; k < v->copies; k++)
        if (vd_mirror_leg_state(v, k) != VD_LEG_FAILED)
            m |= 1u << k;
    return m;
}

static uint32_t insync(struct vd_vol *v)
{
    uint32_t m = 0;
    for (uint32_t k = 0; k < v->copies; k++)
        if (vd_mirror_leg_state(v, k) == VD_LEG_INSYNC)
            m |= 1u << k;
    return m;
}

static uint64_t nregions(struct vd_vol *v)
{
    return (v->size + g_rsize - 1) / g_rsize;
}

/* Union over legs in mask of the on-disk bitmaps (cache or durable view). */
static void bm_union(struct vd_vol *v, uint32_t mask, bool durable,
                     uint8_t *out, uint64_t nreg)
{
    uint8_t tmp[MAX_REG / 8];
    memset(out, 0, (nreg + 7) / 8);
    for (uint32_t k = 0; k < v->copies; k++) {
        uint64_t doff;
        struct simdev *d;
        if (!(mask & (1u << k)) || !(d = leg_dev(v, k, 0, &doff)))
            continue;
        simdev_read(d, tmp, (nreg + 7) / 8, doff, durable);
        for (uint64_t i = 0; i < (nreg + 7) / 8; i++)
            out[i] |= tmp[i];
    }
}

static bool bit(const uint8_t *b, uint64_t r)
{
    return b[r / 8] >> (r % 8) & 1;
}

static uint8_t g_prev_union[2][MAX_REG / 8];
static uint32_t g_prev_mask, g_prev_insync, g_insync;
static bool g_prev_valid;

static void print_legs(struct vd_vol *v, uint64_t r)
{
    for (uint32_t k = 0; k < v->copies; k++) {
        uint64_t doff;
        uint8_t c = 0, dd = 0;
        struct simdev *d = leg_dev(v, k, 0, &doff);
        if (d) {
            simdev_read(d, &c, 1, doff + r / 8, false);
            simdev_read(d, &dd, 1, doff + r / 8, true);
        }
        fprintf(stderr, "  leg %u: %s, bitmap on %s: bit %llu is %d (durable "
                "%d)\n", k, vd_leg_state_name(vd_mirror_leg_state(v, k), 0),
                d ? simdev_name(d) : "?", (unsigned long long)r,
                c >> (r % 8) & 1, dd >> (r % 8) & 1);
    }
}

/* I1: a region clear in the union of the non-failed legs' bitmaps holds
 * the same bytes on every in-sync leg.  I2: with two in-sync legs or more,
 * a region clear in the durable bitmaps has nothing unflushed on any
 * in-sync leg (else a crash would leave them different under a clean bit).
 * Stale legs are left out: a design may rebuild a stale leg in full
 * rather than by its bits; once it is in-sync it is checked like the
 * others (a leg made in-sync without its data is caught then). */
static void check_region(struct vd_vol *v, uint64_t r, uint32_t mask,
                         bool i1, bool i2, const char *why)
{
    static uint8_t a[1 << 20], b[1 << 20];
    uint64_t off = r * g_rsize, len = g_rsize, es = v->pool->extent_size;
    int first = -1;

    if (off >= v->size)
        return;
    if (len > v->size - off)
        len = v->size - off;
    for (uint32_t k = 0; k < v->copies; k++) {
        if (!(mask & (1u << k)))
            continue;
        uint64_t doff;
        struct simdev *d = leg_dev(v, k, off / es + v->data_le0, &doff);
        if (!d)
            continue;
        doff += off % es;
        if (i2 && !g_opts.no_i2 && simdev_unflushed(d, doff, len)) {
            print_legs(v, r);
            sim_fail("region %llu (volume bytes %llu+%llu) is clean in the "
                     "durable bitmap but leg %u (device '%s') has unflushed "
                     "writes there: a crash now leaves the legs different "
                     "under a clean bit (%s)",
                     (unsigned long long)r, (unsigned long long)off,
                     (unsigned long long)len, k, simdev_name(d), why);
        }
        if (!i1)
            continue;
        simdev_read(d, first < 0 ? a : b, len, doff, false);
        if (first < 0) {
            first = (int)k;
            continue;
        }
        if (memcmp(a, b, len)) {
            uint64_t i = 0;
            while (a[i] == b[i])
                i++;
            uint64_t s = (off + i) / SECT;
            print_hist(s);
            print_legs(v, r);
            sim_fail("region %llu is clean in the bitmap but legs %d and %u "
                     "differ at volume byte %llu (sector %llu: leg %d has "
                     "write #%lld, leg %u write #%lld) (%s)",
                     (unsigned long long)r, first, k,
                     (unsigned long long)(off + i), (unsigned long long)s,
                     first, (long long)decode(a + (i / SECT) * SECT, s), k,
                     (long long)decode(b + (i / SECT) * SECT, s), why);
        }
    }
}

/* Check what changed: regions newly clean, regions a write touched, all
 * clean regions when the set of non-failed legs changed (full). */
static void check_mirror(struct simdev *sd, uint64_t off, uint64_t len,
                         bool full, const char *why)
{
    struct vd_vol *v = vol_int();
    if (!v || v->layout != VD_LAYOUT_MIRROR)
        return;
    uint64_t nreg = nregions(v);
    if (nreg > MAX_REG)
        sim_fail("simulator: too many regions");
    uint32_t mask = nonfailed(v);
    uint8_t u[2][MAX_REG / 8];
    g_insync = insync(v);
    bm_union(v, mask, false, u[0], nreg);
    bm_union(v, mask, true, u[1], nreg);
    if (!g_prev_valid || mask != g_prev_mask || g_insync != g_prev_insync)
        full = true;
    for (uint64_t r = 0; r < nreg; r++) {
        bool c0 = !bit(u[0], r), c1 = !bit(u[1], r);
        bool i1 = c0 && (full || bit(g_prev_union[0], r));
        bool i2 = c1 && (full || bit(g_prev_union[1], r));
        if (!i1 && !i2 && sd && (c0 || c1)) {
            /* did this device write touch region r on some leg? */
            uint64_t es = v->pool->extent_size, roff = r * g_rsize;
            for (uint32_t k = 0; k < v->copies; k++) {
                uint64_t doff;
                struct simdev *d =
                    leg_dev(v, k, roff / es + v->data_le0, &doff);
                if (d != sd)
                    continue;
                doff += roff % es;
                if (off < doff + g_rsize && doff < off + len) {
                    i1 = c0;
                    i2 = c1;
                }
            }
        }
        if (i1 || i2)
            check_region(v, r, g_insync, i1, i2 && __builtin_popcount(g_insync) > 1,
                         why);
    }
    memcpy(g_prev_union, u, sizeof(u));
    g_prev_mask = mask;
    g_prev_insync = g_insync;
    g_prev_valid = true;
}

static void dev_hook(struct simdev *d, uint64_t off, uint64_t len, int kind)
{
    /* a flush changes no cached data: only newly clean bits need a look */
    if (kind == 2)
        check_mirror(NULL, 0, 0, false, "after a flush");
    else
        check_mirror(d, off, len, false, "after a write");
}

/* I5 at quiet points: on every non-failed leg, every clean region holds
 * data the oracle allows now. */
/* Extent accounting (quiet points, the end): every PE marked used is
 * mapped by exactly one volume leg, or is a target of the running batch. */
static void check_extents(const char *what)
{
    vd_pool *p = g_pool;
    static uint8_t seen[NDEV][4096];
    if (!p)
        return;
    memset(seen, 0, sizeof(seen));
    vd_admin_lock(p);
    for (uint32_t i = 0; i < p->nvols; i++) {
        struct vd_vol *v = p->vols[i];
        for (uint64_t k = 0; k < v->le_count * v->copies; k++) {
            struct vd_pe *e = &v->map[k];
            if (e->dev == VD_NO_DEV)
                continue;
            if (e->dev >= NDEV || e->pe >= 4096 || seen[e->dev][e->pe])
                sim_fail("%s: extent %u/%llu mapped twice", what, e->dev,
                         (unsigned long long)e->pe);
            seen[e->dev][e->pe] = 1;
        }
    }
    for (uint32_t d = 0; d < p->ndevs && d < NDEV; d++) {
        uint64_t unmapped = 0;
        if (!p->devs[d].used)
            continue;
        for (uint64_t pe = 0; pe < p->devs[d].pe_count; pe++) {
            bool used = p->devs[d].used[pe / 8] & (1u << (pe % 8));
            if (!used && seen[d][pe])
                sim_fail("%s: extent %u/%llu mapped but free", what, d,
                         (unsigned long long)pe);
            unmapped += used && !seen[d][pe];
        }
        if (unmapped > vd_move_targets_on(p, d))
            sim_fail("%s: device %u has %llu used extents no volume maps",
                     what, d, (unsigned long long)unmapped);
    }
    vd_admin_unlock(p);
}

/* An extent move (pool/move.c) of a random extent of the volume (any leg,
 * a mirror's bitmap extent, a thin volume's data extents), at a random
 * rate; the pool's background thread copies while the steps go on. */
static void move_step(void)
{
    struct vd_vol *v = vol_int();
    static const uint64_t rates[] = { 0, 256 << 10, 1 << 20 };
    if (!v || !(g_opts.ops_mask & (1u << O_MOVE)) || !rng_pct(&g_mrng, 8))
        return;
    uint64_t n = v->le_count * v->copies, k = rng_below(&g_mrng, n);
    uint64_t rate = rates[rng_below(&g_mrng, 3)];
    if (v->map[k].dev == VD_NO_DEV)
        return;
    /* half the moves are batches: up to 3 more extents of the same
     * device (the batch's source), drawn from g_brng */
    uint32_t legs[8], nb = 1;
    uint64_t les[8];
    legs[0] = (uint32_t)(k % v->copies);
    les[0] = k / v->copies;
    uint32_t bmax = vd_move_batch_max() < 4 ? vd_move_batch_max() : 4;
    if (rng_pct(&g_brng, 50))
        for (uint64_t j = rng_below(&g_brng, n), c = 0; c < n && nb < bmax;
             c++, j = (j + 1) % n)
            if (j != k && v->map[j].dev == v->map[k].dev) {
                legs[nb] = (uint32_t)(j % v->copies);
                les[nb++] = j / v->copies;
            }
    int r = nb > 1 ? vd_move_extents(g_pool, VOL, legs, les, nb, rate)
                   : vd_move_extent(g_pool, VOL, legs[0], les[0], NULL, rate);
    sim_log("step %d: move extent %llu leg %llu (batch of %u), rate %llu B/s "
            "-> %d",
            g_step, (unsigned long long)les[0], (unsigned long long)legs[0],
            nb, (unsigned long long)rate, r);
}

static void check_legs_quiet(void)
{
    struct vd_vol *v = vol_int();
    static uint8_t buf[1 << 20];
    if (!v || v->layout != VD_LAYOUT_MIRROR)
        return;
    check_mirror(NULL, 0, 0, true, "quiet point");
    if (v->upper)
        return; /* leg bytes are thin's data space, not volume bytes */
    uint64_t nreg = nregions(v), es = v->pool->extent_size;
    uint32_t mask = nonfailed(v), legs = insync(v);
    uint8_t u[MAX_REG / 8];
    bm_union(v, mask, false, u, nreg);
    for (uint64_t r = 0; r < nreg; r++) {
        if (bit(u, r))
            continue;
        uint64_t off = r * g_rsize, len = g_rsize;
        if (off >= g_size)
            continue;
        if (len > g_size - off)
            len = g_size - off;
        for (uint32_t k = 0; k < v->copies; k++) {
            uint64_t doff;
            struct simdev *d;
            if (!(legs & (1u << k)) ||
                !(d = leg_dev(v, k, off / es + v->data_le0, &doff)))
                continue;
            simdev_read(d, buf, len, doff + off % es, false);
            char what[96];
            snprintf(what, sizeof(what), "leg %u of a clean region %llu", k,
                     (unsigned long long)r);
            check_data(buf, off, len, g_evt, g_evt, what);
        }
    }
}

/* Read the whole volume through the library and check it. */
static void check_volume_read(const char *what)
{
    static uint8_t buf[64 << 10];
    for (uint64_t off = 0; off < g_size; off += sizeof(buf)) {
        uint64_t len = g_size - off < sizeof(buf) ? g_size - off : sizeof(buf);
        uint64_t rs = ++g_evt;
        int r = vd_vol_pread(g_vol, buf, len, off);
        uint64_t re = ++g_evt;
        if (r == 0)
            check_data(buf, off, len, rs, re, what);
    }
}

/* ---- operations run by worker threads ---- */
struct op {
    int kind;
    int step;
    uint64_t off;
    uint32_t len;
    unsigned flags;
    uint32_t wid;
    int tid;
    int rate;
    char dev_old[16], dev_new[16];
    uint8_t *buf, *cmp;
};

static struct op *g_inflight[MAX_INFLIGHT];
static int g_max_inflight;

static void *op_main(void *arg)
{
    struct op *o = arg;
    int r = 0;
    uint64_t rs, re, mo = 0;

    switch (o->kind) {
    case O_WRITE:
        r = vd_vol_pwrite(g_vol, o->buf, o->len, o->off, o->flags);
        wrec_end(o->wid, r);
        if (r == -ENOSPC)
            W[o->wid].state = W_NONE;
        sim_log("step %d: write #%u [%llu+%u]%s -> %d (event %llu)", o->step,
                o->wid, (unsigned long long)o->off, o->len,
                o->flags & VD_IO_FUA ? " FUA" : "", r,
                (unsigned long long)W[o->wid].end);
        break;
    case O_NWRITE:
        /* the module's inline path: NOWAIT, and on -EAGAIN the same write
         * again from a worker (blocking) */
        r = vd_vol_pwrite(g_vol, o->buf, o->len, o->off, o->flags | VD_IO_NOWAIT);
        if (r == -EAGAIN) {
            sched_sleep_ns(o->rate * 1000000ull); /* the worker queue */
            r = vd_vol_pwrite(g_vol, o->buf, o->len, o->off, o->flags);
        }
        wrec_end(o->wid, r);
        if (r == -ENOSPC)
            W[o->wid].state = W_NONE;
        sim_log("step %d: NOWAIT write #%u [%llu+%u]%s -> %d (event %llu)",
                o->step, o->wid, (unsigned long long)o->off, o->len,
                o->flags & VD_IO_FUA ? " FUA" : "", r,
                (unsigned long long)W[o->wid].end);
        break;
    case O_NREAD:
        rs = ++g_evt;
        r = vd_vol_pread_flags(g_vol, o->buf, o->len, o->off, VD_IO_NOWAIT);
        if (r == -EAGAIN)
            r = vd_vol_pread(g_vol, o->buf, o->len, o->off);
        re = ++g_evt;
        sim_log("step %d: NOWAIT read [%llu+%u] -> %d", o->step,
                (unsigned long long)o->off, o->len, r);
        if (r == 0)
            check_data(o->buf, o->off, o->len, rs, re, "NOWAIT read");
        break;
    case O_READ:
        rs = ++g_evt;
        r = vd_vol_pread(g_vol, o->buf, o->len, o->off);
        re = ++g_evt;
        sim_log("step %d: read [%llu+%u] -> %d", o->step,
                (unsigned long long)o->off, o->len, r);
        if (r == 0)
            check_data(o->buf, o->off, o->len, rs, re, "read");
        break;
    case O_FLUSH:
        rs = ++g_evt;
        r = vd_vol_flush(g_vol);
        sim_log("step %d: flush (called at event %llu) -> %d", o->step,
                (unsigned long long)rs, r);
        if (r == 0)
            for (size_t i = 1; i < nW; i++)
                if (W[i].state == W_ACK && W[i].end < rs)
                    W[i].durable = 1;
        break;
    case O_CAW:
        rs = W[o->wid].start;
        r = vd_vol_compare_and_write(g_vol, o->cmp, o->buf, o->len, o->off, &mo);
        wrec_end(o->wid, r == 0 ? 0 : -1);
        re = ++g_evt;
        sim_log("step %d: compare-and-write #%u [%llu+%u] -> %d (miscompare "
                "at %llu)", o->step, o->wid, (unsigned long long)o->off,
                o->len, r, (unsigned long long)mo);
        if (r == 0) {
            check_data(o->cmp, o->off, o->len, rs, re, "compare-and-write");
        } else if (r == 1) {
            uint64_t s = (o->off + mo) / SECT;
            bool other = false;
            uint32_t c = ((uint64_t *)(o->cmp + (s - o->off / SECT) * SECT))[0];
            if (c != 0 && allowed(s, 0, rs, re))
                other = true;
            for (unsigned i = 0; !other && i < hn[s]; i++)
                if (hist[s][i] != c && hist[s][i] != o->wid &&
                    allowed(s, hist[s][i], rs, re))
                    other = true;
            if (!other) {
                print_hist(s);
                sim_fail("compare-and-write #%u miscompared at sector %llu, "
                         "but only write #%u can be there",
                         o->wid, (unsigned long long)s, c);
            }
        }
        break;
    case O_DISCARD:
        /* the oracle's range is the whole chunks; the call's may also
         * cover parts of the chunks around (left as they are) */
        r = vd_vol_discard(g_vol, o->off - (uint64_t)o->rate * SECT,
                           o->len + (uint64_t)(o->rate + o->flags) * SECT);
        wrec_end(o->wid, r);
        sim_log("step %d: discard #%u [%llu+%u] (called with %u sectors "
                "before, %u after) -> %d (event %llu)", o->step, o->wid,
                (unsigned long long)o->off, o->len, o->rate, o->flags, r,
                (unsigned long long)W[o->wid].end);
        break;
    case O_UNFILL:
        r = vd_vol_remove(g_pool, "f");
        sim_log("step %d: remove the filler volume -> %d", o->step, r);
        break;
    case O_VERIFY: {
        struct vd_verify_result res;
        r = vd_mirror_verify(g_pool, VOL, o->flags, &res);
        sim_log("step %d: verify%s -> %d (%zu differ, %zu repaired)", o->step,
                o->flags ? " --repair" : "", r, res.ndiff, res.repaired);
        vd_verify_result_free(&res);
        break;
    }
    case O_REPLACE:
        r = vd_mirror_replace_leg(g_pool, VOL, o->dev_old, o->dev_new);
        sim_log("step %d: vol repair --replace %s -> %s: %d", o->step,
                o->dev_old, o->dev_new, r);
        break;
    case O_EXTEND:
        r = vd_vol_extend(g_pool, VOL, o->off);
        sim_log("step %d: extend to %llu -> %d", o->step,
                (unsigned long long)o->off, r);
        if (r == 0 && vd_vol_size(g_vol) > g_size)
            g_size = vd_vol_size(g_vol) < MAX_SECT * SECT ? vd_vol_size(g_vol)
                                                         : MAX_SECT * SECT;
        break;
    }
    return NULL;
}

static void op_free(struct op *o)
{
    free(o->buf);
    free(o->cmp);
    free(o);
}

/* Wait for a worker, with a bound: nothing may wait forever. */
static void op_wait(int slot)
{
    struct op *o = g_inflight[slot];
    uint64_t t0 = sched_now_ns();
    while (!sched_done(o->tid)) {
        sched_sleep_ns(100 * 1000000ull);
        if (sched_now_ns() - t0 > 600ull * 1000000000ull) {
            fprintf(stderr, "vdsim: seed %llu: operation of step %d (%s) has "
                    "not returned after 600 s of virtual time\n",
                    (unsigned long long)g_seed, o->step, op_names[o->kind]);
            sched_dump();
            sim_fail("an operation waits forever");
        }
    }
    sched_join(o->tid);
    op_free(o);
    g_inflight[slot] = NULL;
}

static void quiesce(void)
{
    for (int i = 0; i < MAX_INFLIGHT; i++)
        if (g_inflight[i])
            op_wait(i);
}

static void op_start(struct op *o)
{
    int slot = -1;
    if (g_opts.one_writer &&
        (o->kind == O_WRITE || o->kind == O_CAW || o->kind == O_NWRITE))
        for (int i = 0; i < MAX_INFLIGHT; i++)
            if (g_inflight[i] && (g_inflight[i]->kind == O_WRITE ||
                                  g_inflight[i]->kind == O_NWRITE ||
                                  g_inflight[i]->kind == O_CAW))
                op_wait(i);
    for (int i = 0; i < g_max_inflight; i++)
        if (!g_inflight[i] || sched_done(g_inflight[i]->tid)) {
            if (g_inflight[i])
                op_wait(i);
            slot = i;
            break;
        }
    if (slot < 0) {
        slot = (int)rng_below(&g_rng, g_max_inflight);
        op_wait(slot);
    }
    g_inflight[slot] = o;
    o->tid = sched_spawn(op_names[o->kind], op_main, o);
    sim_log("step %d: %s runs in thread %d", o->step, op_names[o->kind], o->tid);
}

/* ---- steps ---- */
static void pick_range(uint64_t *off, uint32_t *len)
{
    uint64_t size = g_size;
    uint32_t l = (uint32_t)(1 + rng_below(&g_rng, rng_pct(&g_rng, 70) ? 8 : 64)) * SECT;
    uint64_t o;
    if (rng_pct(&g_rng, 80)) {
        /* hot spots: around a region (or extent) boundary */
        uint64_t b = rng_pct(&g_rng, 20) ? EXT : g_rsize;
        uint64_t nb = size / b;
        uint64_t c = (1 + rng_below(&g_rng, nb ? nb : 1)) * b;
        uint64_t d = rng_below(&g_rng, 32) * SECT;
        o = c > d ? c - d : 0;
    } else {
        o = rng_below(&g_rng, size / SECT) * SECT;
    }
    if (o >= size)
        o = size - SECT;
    if (l > size - o)
        l = (uint32_t)(size - o);
    *off = o;
    *len = l;
}

static int pick_kind(void)
{
    unsigned total = 0, w[O_NOPS];
    for (int k = 0; k < O_NOPS; k++) {
        w[k] = (g_opts.ops_mask & (1u << k)) ? op_weight[k] : 0;
        if (g_legs == 1 && (k == O_RESYNC || k == O_VERIFY || k == O_REPLACE))
            w[k] = 0;
        if ((k == O_DISCARD && !g_thin) || (k == O_UNFILL && !g_filler))
            w[k] = 0;
        total += w[k];
    }
    uint64_t x = rng_below(&g_rng, total);
    for (int k = 0; k < O_NOPS; k++) {
        if (x < w[k])
            return k;
        x -= w[k];
    }
    return O_SLEEP;
}

static int pool_dev_index(const char *name)
{
    for (int i = 0; i < NDEV; i++)
        if (!strcmp(g_cdev[i].name, name))
            return i;
    return -1;
}

static void open_pool(const char *why)
{
    int r = vd_pool_open(&g_conf, &g_pool);
    if (r < 0) {
        sim_log("open after %s failed (%d); every device returns", why, r);
        for (int i = 0; i < NDEV; i++)
            simdev_set_down(g_sd[i], 0);
        r = vd_pool_open(&g_conf, &g_pool);
        if (r < 0)
            sim_fail("pool cannot be opened after %s with every device "
                     "present: %s", why, strerror(-r));
    }
    g_vol = vd_vol_open(g_pool, VOL);
    if (!g_vol)
        sim_fail("volume cannot be opened after %s: %s", why, strerror(errno));
    uint64_t s = vd_vol_size(g_vol);
    if (s < g_size)
        sim_fail("volume is %llu bytes after %s, was %llu",
                 (unsigned long long)s, why, (unsigned long long)g_size);
    g_prev_valid = false;
}

static void crash(unsigned persist)
{
    uint64_t now = ++g_evt;
    sim_log("step %d: CRASH (%u%% of unflushed blocks reach the medium)",
            g_step, persist);
    sched_crash();
    for (int i = 0; i < MAX_INFLIGHT; i++)
        if (g_inflight[i]) {
            struct op *o = g_inflight[i];
            if ((o->kind == O_WRITE || o->kind == O_CAW ||
                 o->kind == O_NWRITE) &&
                W[o->wid].state == W_INFLIGHT) {
                W[o->wid].end = now;
                W[o->wid].state = W_FAIL;
            }
            op_free(o);
            g_inflight[i] = NULL;
        }
    for (size_t i = 1; i < nW; i++)
        if (W[i].state == W_ACK && !W[i].durable)
            W[i].state = W_FAIL;
    simdev_crash_all(&g_rng, persist);
    /* The dead process's pool lock goes with it. */
    struct vd_pool *p = (struct vd_pool *)g_pool;
    if (p->lock_fd >= 0)
        close(p->lock_fd);
    g_pool = NULL;
    g_vol = NULL;
    open_pool("a crash");
    check_mirror(NULL, 0, 0, true, "after reopen");
    check_volume_read("read after crash and reopen");
}

static void step(void)
{
    int k = pick_kind();
    struct op *o;
    struct vd_vol *v = vol_int();

    switch (k) {
    case O_WRITE:
    case O_NWRITE:
    case O_CAW:
        o = calloc(1, sizeof(*o));
        o->kind = k;
        o->step = g_step;
        pick_range(&o->off, &o->len);
        o->flags = rng_pct(&g_rng, 20) && k != O_CAW ? VD_IO_FUA : 0;
        o->buf = malloc(o->len);
        if (k == O_CAW) {
            o->cmp = malloc(o->len);
            for (uint32_t s = 0; s < o->len / SECT; s++)
                fill_sector(o->cmp + s * SECT, latest(o->off / SECT + s),
                            o->off / SECT + s);
        }
        o->wid = wrec_new(o->off, o->len, g_step, o->flags & VD_IO_FUA);
        fill(o->buf, o->wid, o->off, o->len);
        if (k == O_NWRITE)
            o->rate = (int)rng_below(&g_rng, 700);
        sim_log("step %d: start %s #%u [%llu+%u]%s", g_step, op_names[k],
                o->wid, (unsigned long long)o->off, o->len,
                o->flags ? " FUA" : "");
        op_start(o);
        break;
    case O_READ:
    case O_NREAD:
    case O_FLUSH:
    case O_VERIFY:
    case O_EXTEND:
        o = calloc(1, sizeof(*o));
        o->kind = k;
        o->step = g_step;
        if (k == O_READ || k == O_NREAD) {
            pick_range(&o->off, &o->len);
            o->buf = malloc(o->len);
        }
        if (k == O_VERIFY)
            o->flags = rng_pct(&g_rng, 70);
        if (k == O_EXTEND) {
            if (g_size + EXT > 3 * EXT) {
                free(o);
                break;
            }
            o->off = g_size + EXT;
        }
        sim_log("step %d: start %s", g_step, op_names[k]);
        op_start(o);
        break;
    case O_REPLACE: {
        if (!v)
            break;
        uint32_t leg = (uint32_t)rng_below(&g_rng, v->copies);
        uint32_t dv = v->map[v->data_le0 * v->copies + leg].dev;
        bool used[NDEV] = { false };
        for (uint64_t le = 0; le < v->le_count; le++)
            for (uint32_t c = 0; c < v->copies; c++)
                if (v->map[le * v->copies + c].dev < NDEV)
                    used[v->map[le * v->copies + c].dev] = true;
        int nd = -1;
        for (int i = 0; i < NDEV; i++)
            if (!used[i])
                nd = i;
        if (dv >= NDEV || nd < 0)
            break;
        o = calloc(1, sizeof(*o));
        o->kind = k;
        o->step = g_step;
        snprintf(o->dev_old, sizeof(o->dev_old), "%s", g_cdev[dv].name);
        snprintf(o->dev_new, sizeof(o->dev_new), "%s", g_cdev[nd].name);
        sim_log("step %d: start replace leg %u: %s -> %s", g_step, leg,
                o->dev_old, o->dev_new);
        op_start(o);
        break;
    }
    case O_DISCARD: {
        uint64_t nch = g_size / CHUNK;
        uint64_t c = rng_below(&g_rng, nch), n = 1 + rng_below(&g_rng, 3);
        if (n > nch - c)
            n = nch - c;
        o = calloc(1, sizeof(*o));
        o->kind = k;
        o->step = g_step;
        o->off = c * CHUNK;
        o->len = (uint32_t)(n * CHUNK);
        o->rate = c ? (int)rng_below(&g_rng, CHUNK / SECT) : 0;
        o->flags = o->off + o->len < g_size
                       ? (unsigned)rng_below(&g_rng, CHUNK / SECT)
                       : 0;
        o->wid = wrec_new(o->off, o->len, g_step, true);
        W[o->wid].zero = 1;
        sim_log("step %d: start discard #%u [%llu+%u]", g_step, o->wid,
                (unsigned long long)o->off, o->len);
        op_start(o);
        break;
    }
    case O_UNFILL:
        if (!g_filler)
            break;
        g_filler = false;
        o = calloc(1, sizeof(*o));
        o->kind = k;
        o->step = g_step;
        sim_log("step %d: start unfill", g_step);
        op_start(o);
        break;
    case O_SLEEP: {
        uint64_t ms = 1 + rng_below(&g_rng, rng_pct(&g_rng, 30) ? 3000 : 300);
        sim_log("step %d: sleep %llu ms", g_step, (unsigned long long)ms);
        sched_sleep_ns(ms * 1000000ull);
        break;
    }
    case O_QUIESCE:
        sim_log("step %d: wait for every operation; check", g_step);
        quiesce();
        check_volume_read("read at a quiet point");
        check_legs_quiet();
        check_extents("quiet point");
        break;
    case O_DOWN: {
        int n = 0;
        for (int i = 0; i < NDEV; i++)
            n += simdev_is_down(g_sd[i]) != 0;
        if (n >= 2)
            break;
        int d = (int)rng_below(&g_rng, NDEV), mode = rng_pct(&g_rng, 30) ? 2 : 1;
        if (!(g_opts.down_mask & (1u << d)))
            break;
        sim_log("step %d: device %s goes away (%s)", g_step, g_cdev[d].name,
                mode == 2 ? "commands time out" : "commands fail");
        simdev_set_down(g_sd[d], mode);
        break;
    }
    case O_UP:
        for (int i = 0; i < NDEV; i++)
            if (simdev_is_down(g_sd[i]) && rng_pct(&g_rng, 60)) {
                sim_log("step %d: device %s returns", g_step, g_cdev[i].name);
                simdev_set_down(g_sd[i], 0);
            }
        break;
    case O_BAD: {
        if (!v)
            break;
        uint64_t off;
        uint32_t len, leg = (uint32_t)rng_below(&g_rng, v->copies);
        pick_range(&off, &len);
        uint64_t es = v->pool->extent_size, doff;
        struct simdev *d = leg_dev(v, leg, off / es + v->data_le0, &doff);
        if (!d)
            break;
        doff += off % es;
        sim_log("step %d: latent read error on %s at %llu+%u (leg %u, "
                "volume byte %llu)", g_step, simdev_name(d),
                (unsigned long long)doff, len, leg, (unsigned long long)off);
        simdev_set_bad(d, doff, len);
        if (rng_pct(&g_rng, 50)) {
            /* meet it: a read (repairs from another leg) racing a write */
            for (int n = 0; n < 2; n++) {
                o = calloc(1, sizeof(*o));
                o->kind = n ? O_WRITE : O_READ;
                o->step = g_step;
                o->off = off;
                o->len = len;
                o->buf = malloc(len);
                if (n) {
                    o->wid = wrec_new(off, len, g_step, false);
                    fill(o->buf, o->wid, off, len);
                }
                sim_log("step %d: start %s #%u [%llu+%u] over it", g_step,
                        op_names[o->kind], o->wid, (unsigned long long)off, len);
                op_start(o);
            }
        }
        break;
    }
    case O_ERR: {
        int d = (int)rng_below(&g_rng, NDEV);
        if (!(g_opts.down_mask & (1u << d)))
            break;
        unsigned pct = rng_pct(&g_rng, 50) ? 0 : 1 + (unsigned)rng_below(&g_rng, 10);
        sim_log("step %d: device %s fails %u%% of commands", g_step,
                g_cdev[d].name, pct);
        simdev_set_error_pct(g_sd[d], pct);
        break;
    }
    case O_RESYNC: {
        static const uint64_t rates[] = { 0, 256 << 10, 1 << 20, 4 << 20 };
        uint64_t rate = rates[rng_below(&g_rng, 4)];
        int r = vd_mirror_resync_start(g_pool, VOL, rate);
        sim_log("step %d: resync start, rate %llu B/s -> %d", g_step,
                (unsigned long long)rate, r);
        break;
    }
    case O_CRASH:
        crash(rng_pct(&g_rng, 50) ? 0 : (unsigned)rng_below(&g_rng, 100));
        break;
    }
}

static void run_schedule(void *arg)
{
    (void)arg;
    int r;
    struct vd_vol_opts vo;

    /* wid 0: the zeroes a new volume reads */
    capW = 256;
    nW = 1;
    W = calloc(capW, sizeof(*W));
    W[0].state = W_ACK;
    W[0].durable = 1;
    g_legs = g_opts.layout >= 0 ? (g_opts.layout ? g_opts.layout : 1)
                                : (int)(1 + rng_below(&g_rng, 3));
    g_rsize = rng_pct(&g_rng, 70) ? 64 << 10 : 256 << 10;
    g_size = 2 * EXT;
    g_max_inflight = 1 + (int)rng_below(&g_rng, MAX_INFLIGHT);
    /* thin from its own stream: thick schedules keep their seeds' draws */
    struct rng tr = { g_seed ^ 0x7417f00d5eedull };
    g_thin = g_opts.thin >= 0 ? g_opts.thin == 1 : rng_pct(&tr, 30);
    g_filler = g_thin && rng_pct(&tr, 50);
    g_dev_delay_pct = (unsigned)rng_below(&g_rng, 40);
    int steps = g_opts.steps ? g_opts.steps : 40 + (int)rng_below(&g_rng, 80);
    sim_log("schedule: %s%s%s, region %llu KiB, %d threads, %d steps",
            g_thin ? "thin on " : "",
            g_legs == 1 ? "linear" : g_legs == 2 ? "2-leg mirror" : "3-leg mirror",
            g_filler ? " (a filler volume leaves 2 extents per leg)" : "",
            (unsigned long long)g_rsize >> 10, g_max_inflight, steps);

    if ((r = vd_pool_create(&g_conf, 1)) < 0)
        sim_fail("pool create: %s", strerror(-r));
    if ((r = vd_pool_open(&g_conf, &g_pool)) < 0)
        sim_fail("pool open: %s", strerror(-r));
    vd_vol_opts_init(&vo);
    if (g_legs > 1) {
        vo.layout = VD_LAYOUT_MIRROR;
        vo.copies = (uint32_t)g_legs;
        vo.region_size = g_rsize;
    }
    if (g_thin) {
        /* twice the size used: the data space (15 of 16 chunks per
         * extent) of the bytes used stays below the volume's size */
        vo.thin = 1;
        vo.chunk_size = CHUNK;
    }
    if ((r = vd_vol_create(g_pool, VOL, g_thin ? 2 * g_size : g_size, &vo)) < 0)
        sim_fail("volume create: %s", strerror(-r));
    if (g_filler) {
        struct vd_pool_info pi;
        struct vd_vol_opts fo;
        vd_pool_get_info(g_pool, &pi);
        vd_vol_opts_init(&fo);
        uint64_t keep = 2 * (uint64_t)g_legs * EXT;
        if ((r = vd_vol_create(g_pool, "f", pi.free_bytes - keep, &fo)) < 0)
            sim_fail("filler volume create: %s", strerror(-r));
    }
    g_vol = vd_vol_open(g_pool, VOL);
    if (!g_vol)
        sim_fail("volume open: %s", strerror(errno));
    g_simdev_hook = dev_hook;
    check_mirror(NULL, 0, 0, true, "after create");
    check_volume_read("read after create");

    g_mrng.s = g_seed ^ 0x6d6f76655eedull;
    g_brng.s = g_seed ^ 0x62617463685eull;
    for (g_step = 1; g_step <= steps; g_step++) {
        move_step();
        step();
    }

    /* The end: every device returns, background work settles, a clean
     * close makes every acknowledged write durable. */
    g_step = steps + 1;
    sim_log("end: every device returns; wait; check; close; reopen; check");
    quiesce();
    for (int i = 0; i < NDEV; i++) {
        simdev_set_down(g_sd[i], 0);
        simdev_set_error_pct(g_sd[i], 0);
    }
    sched_sleep_ns(5000ull * 1000000ull);
    check_volume_read("read at the end");
    check_legs_quiet();
    check_extents("the end");
    vd_vol_close(g_vol);
    g_vol = NULL;
    vd_pool_close(g_pool);
    g_pool = NULL;
    if (rng_pct(&g_rng, 70))
        return; /* (an open reads 16 MiB of metadata areas: 30% of the time) */
    for (size_t i = 1; i < nW; i++)
        if (W[i].state == W_ACK)
            W[i].durable = 1;
    simdev_crash_all(&g_rng, 0);
    open_pool("a clean close");
    check_mirror(NULL, 0, 0, true, "after clean close and reopen");
    check_volume_read("read after a clean close and reopen");
    vd_vol_close(g_vol);
    g_vol = NULL;
    vd_pool_close(g_pool);
    g_pool = NULL;
}

/* ---- one schedule in this process ---- */
/* Forget the previous schedule of this process (a child runs a batch). */
static void reset_world(void)
{
    for (uint64_t i = 0; i < MAX_SECT; i++)
        hn[i] = 0;
    free(W);
    W = NULL;
    nW = capW = 0;
    g_evt = 0;
    memset(g_inflight, 0, sizeof(g_inflight));
    g_prev_valid = false;
    g_pool = NULL;
    g_vol = NULL;
    g_simdev_hook = NULL;
    g_step = 0;
    simdev_reset_all();
    for (int i = 0; i < NDEV; i++) {
        free(g_cdev[i].name);
        free(g_cdev[i].path);
        free(g_cdev[i].node);
    }
    memset(g_cdev, 0, sizeof(g_cdev));
}

static void one(uint64_t seed)
{
    reset_world();
    g_seed = seed;
    g_rng.s = seed * 0x2545f4914f6cdd1dull + 1;
    g_dev_rng.s = seed ^ 0xdeadbeefcafef00dull;
    vd_log_set_fn(lib_log);
    g_conf.name = "simpool";
    g_conf.extent_size = EXT;
    g_conf.ndevs = NDEV;
    g_conf.devs = g_cdev;
    g_conf.file = "vdsim";
    for (int i = 0; i < NDEV; i++) {
        char name[16], path[512], node[16];
        snprintf(name, sizeof(name), "d%d", i);
        snprintf(path, sizeof(path), "%s/%s", g_dir, name);
        snprintf(node, sizeof(node), "n%d", i);
        g_cdev[i].name = strdup(name);
        g_cdev[i].path = strdup(path);
        g_cdev[i].node = strdup(node);
        g_cdev[i].size = DEV_SIZE;
        g_cdev[i].timeout_ms = 2000;
        g_sd[i] = simdev_new(name, DEV_SIZE);
    }
    (void)pool_dev_index;
    unsigned stick = g_opts.stick >= 0 ? (unsigned)g_opts.stick
                                       : (unsigned)(rng_below(&g_rng, 4) * 30);
    sched_run(seed, stick, run_schedule, NULL);
}

/* ---- the runner ---- */
static volatile sig_atomic_t g_alarm_seed;

static void on_alarm(int sig)
{
    (void)sig;
    char m[160];
    int n = snprintf(m, sizeof(m), "vdsim: seed %llu: FAILED: no progress in "
                     "60 s of real time (a thread spins without a scheduling "
                     "point?)\n  replay: build/vdsim --seed %llu --verbose\n",
                     (unsigned long long)g_seed, (unsigned long long)g_seed);
    if (write(2, m, n) < 0) {
    }
    _exit(3);
}

struct job {
    uint64_t seed;
    struct opts o;
    char optstr[128];
    const char *note;
};

struct slot {
    pid_t pid;
    FILE *out;
    struct job *job;      /* the failing one, after finish */
    size_t first, n;      /* the batch */
};
static struct slot g_slots[64];

static int g_shown, g_failed, g_summary;
static volatile int *g_cur_job; /* shared with the children: per slot, the
                                   job index running now */
static uint64_t *g_failed_seeds;
static char **g_failed_opts;

static void finish(struct slot *s, int status, struct job *jobs)
{
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        s->job = &jobs[g_cur_job[s - g_slots]];
        g_failed_seeds = realloc(g_failed_seeds, (g_failed + 1) * 8);
        g_failed_opts = realloc(g_failed_opts, (g_failed + 1) * sizeof(char *));
        g_failed_seeds[g_failed] = s->job->seed;
        g_failed_opts[g_failed++] = strdup(s->job->optstr);
        if (g_summary) {
            char line[1024];
            fflush(s->out);
            rewind(s->out);
            while (fgets(line, sizeof(line), s->out))
                if (strstr(line, "FAILED"))
                    fputs(line, stderr);
            if (WIFSIGNALED(status))
                fprintf(stderr, "vdsim: seed %llu: FAILED: signal %d\n",
                        (unsigned long long)s->job->seed, WTERMSIG(status));
        } else if (g_shown++ < 5) {
            char line[1024];
            fflush(s->out);
            rewind(s->out);
            while (fgets(line, sizeof(line), s->out))
                fputs(line, stderr);
            if (WIFSIGNALED(status))
                fprintf(stderr, "vdsim: seed %llu: FAILED: killed by signal "
                        "%d (%s)\n  replay: build/vdsim --seed %llu%s "
                        "--verbose\n",
                        (unsigned long long)s->job->seed, WTERMSIG(status),
                        strsignal(WTERMSIG(status)),
                        (unsigned long long)s->job->seed, s->job->optstr);
            if (s->job->note)
                fprintf(stderr, "  (regression seed: %s)\n", s->job->note);
        }
    }
    fclose(s->out);
    s->pid = 0;
}

#define BATCH 32

static pid_t launch(struct slot *s, struct job *jobs, size_t first, size_t n)
{
    s->out = tmpfile();
    s->job = &jobs[first];
    s->first = first;
    s->n = n;
    g_cur_job[s - g_slots] = (int)first;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (!g_verbose)
            dup2(fileno(s->out), 2);
        int nul = open("/dev/null", O_WRONLY);
        dup2(nul, 1);
        /* one run directory (pool lock) per slot */
        size_t l = strlen(g_dir);
        snprintf(g_dir + l, sizeof(g_dir) - l, "/s%d", (int)(s - g_slots));
        mkdir(g_dir, 0700);
        setenv("VDLVM_RUNDIR", g_dir, 1);
        signal(SIGALRM, on_alarm);
        /* the pool's 4 MiB metadata buffers: reuse heap memory instead of
         * fresh pages from mmap (page faults were half the run time) */
        mallopt(M_MMAP_THRESHOLD, 32 << 20); /* the most glibc takes */
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
        for (size_t k = first; k < first + n; k++) {
            g_cur_job[s - g_slots] = (int)k;
            g_opts = jobs[k].o;
            g_opt_str = jobs[k].optstr;
            g_seed = jobs[k].seed;
            alarm(60);
            one(jobs[k].seed);
        }
        _exit(0);
    }
    s->pid = pid;
    return pid;
}

static int parse_opt(struct opts *o, char *optstr, size_t optlen, int argc,
                     char **argv, int *i)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "--layout") && v) {
        o->layout = !strcmp(v, "linear") ? 0 : !strcmp(v, "mirror2") ? 2
                    : !strcmp(v, "mirror3") ? 3 : -1;
    } else if (!strcmp(a, "--ops") && v) {
        char *dup = strdup(v), *save, *t;
        o->ops_mask = 0;
        for (t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int k;
            for (k = 0; k < O_NOPS && strcmp(op_names[k], t); k++)
                ;
            if (k == O_NOPS) {
                fprintf(stderr, "vdsim: unknown op '%s'\n", t);
                exit(2);
            }
            o->ops_mask |= 1u << k;
        }
        free(dup);
    } else if (!strcmp(a, "--steps") && v) {
        o->steps = atoi(v);
    } else if (!strcmp(a, "--stick") && v) {
        o->stick = atoi(v);
    } else if (!strcmp(a, "--no-durable-check") && v) {
        o->no_i2 = atoi(v);
    } else if (!strcmp(a, "--down-devs") && v) {
        o->down_mask = 0;
        for (const char *c = v; *c; c++)
            if (*c >= '0' && *c < '0' + NDEV)
                o->down_mask |= 1u << (*c - '0');
    } else if (!strcmp(a, "--writers") && v) {
        o->one_writer = atoi(v) == 1;
    } else if (!strcmp(a, "--thin") && v) {
        o->thin = atoi(v);
    } else {
        return 0;
    }
    size_t l = strlen(optstr);
    snprintf(optstr + l, optlen - l, " %s %s", a, v);
    (*i)++;
    return 1;
}

int main(int argc, char **argv)
{
    uint64_t start = 1, count = 100, single = 0;
    bool have_single = false;
    int jobs = 2;
    const char *regress = NULL;
    struct opts o = g_opts;
    char optstr[128] = "";

    setvbuf(stderr, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (parse_opt(&o, optstr, sizeof(optstr), argc, argv, &i))
            continue;
        if (!strcmp(a, "--seed") && v) {
            single = strtoull(v, NULL, 0);
            have_single = true;
            i++;
        } else if (!strcmp(a, "--count") && v) {
            count = strtoull(v, NULL, 0);
            i++;
        } else if (!strcmp(a, "--start") && v) {
            start = strtoull(v, NULL, 0);
            i++;
        } else if (!strcmp(a, "-j") && v) {
            jobs = atoi(v);
            i++;
        } else if (!strcmp(a, "--regress") && v) {
            regress = v;
            i++;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            g_verbose++;
        } else if (!strcmp(a, "--summary")) {
            g_summary = 1;
        } else {
            fprintf(stderr,
                    "usage: vdsim [--count N] [--start S] [-j J] [--regress FILE]"
                    " [--layout linear|mirror2|mirror3] [--ops a,b,..]"
                    " [--steps N] [--stick PCT] [--writers 1] [--no-durable-check 1] [--down-devs 0123]"
                    " [--thin 0|1]\n"
                    "       vdsim --seed S [--verbose] [same schedule options]\n"
                    "ops: write read flush caw sleep quiesce down up bad err "
                    "resync verify replace extend crash nwrite nread discard "
                    "unfill\n");
            return 2;
        }
    }
    snprintf(g_dir, sizeof(g_dir), "%s/vdsim.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("vdsim: mkdtemp");
        return 1;
    }
    setenv("VDLVM_RUNDIR", g_dir, 1);

    struct job *jl = NULL;
    size_t nj = 0, capj = 0;
#define ADDJOB(S, O, STR, NOTE)                                               \
    do {                                                                      \
        if (nj == capj) {                                                     \
            capj = capj ? capj * 2 : 1024;                                    \
            jl = realloc(jl, capj * sizeof(*jl));                             \
        }                                                                     \
        jl[nj].seed = (S);                                                    \
        jl[nj].o = (O);                                                       \
        snprintf(jl[nj].optstr, sizeof(jl[nj].optstr), "%s", (STR));         \
        jl[nj].note = (NOTE);                                                 \
        nj++;                                                                 \
    } while (0)

    if (have_single) {
        ADDJOB(single, o, optstr, NULL);
        jobs = 1;
    } else {
        if (regress) {
            FILE *f = fopen(regress, "r");
            char line[512];
            if (!f) {
                perror(regress);
                return 2;
            }
            while (fgets(line, sizeof(line), f)) {
                char *hash = strchr(line, '#'), *note = NULL;
                if (hash) {
                    note = strdup(hash + 1);
                    note[strcspn(note, "\n")] = 0;
                    *hash = 0;
                }
                char *argv2[32];
                int n = 0;
                for (char *t = strtok(line, " \t\n"); t && n < 31;
                     t = strtok(NULL, " \t\n"))
                    argv2[n++] = t;
                if (!n) {
                    free(note);
                    continue;
                }
                struct opts ro = g_opts;
                char rs[128] = "";
                for (int i = 1; i < n; i++)
                    if (!parse_opt(&ro, rs, sizeof(rs), n, argv2, &i)) {
                        fprintf(stderr, "%s: bad option %s\n", regress, argv2[i]);
                        return 2;
                    }
                ADDJOB(strtoull(argv2[0], NULL, 0), ro, rs, note);
            }
            fclose(f);
        }
        for (uint64_t s = start; s < start + count; s++)
            ADDJOB(s, o, optstr, NULL);
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct slot *slots = g_slots;
    if (jobs < 1)
        jobs = 1;
    if (jobs > 64)
        jobs = 64;
    g_cur_job = mmap(NULL, 64 * sizeof(int), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    /* batches of BATCH jobs per child; after a failure the rest of its
     * batch goes to the redo list */
    size_t next = 0, done = 0, redo[64][2], nredo = 0;
    size_t batch = nj / (size_t)jobs / 4;
    if (batch > BATCH)
        batch = BATCH;
    if (batch < 1)
        batch = 1;
    while (done < nj) {
        for (int i = 0; i < jobs; i++) {
            if (slots[i].pid)
                continue;
            if (nredo) {
                nredo--;
                launch(&slots[i], jl, redo[nredo][0], redo[nredo][1]);
            } else if (next < nj) {
                size_t n = nj - next < batch ? nj - next : batch;
                launch(&slots[i], jl, next, n);
                next += n;
            }
        }
        int status;
        pid_t pid = wait(&status);
        if (pid < 0)
            break;
        for (int i = 0; i < jobs; i++)
            if (slots[i].pid == pid) {
                struct slot *sl = &slots[i];
                size_t first = sl->first, n = sl->n;
                bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                size_t k = ok ? first + n - 1 : (size_t)g_cur_job[i];
                finish(sl, status, jl);
                done += k - first + 1;
                if (k + 1 < first + n && nredo < 64) {
                    redo[nredo][0] = k + 1;
                    redo[nredo++][1] = first + n - k - 1;
                } else if (k + 1 < first + n) {
                    done += first + n - k - 1; /* cannot happen with 64 */
                }
            }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    if (system(cmd)) {
    }
    if (have_single && !g_failed)
        fprintf(stderr, "vdsim: seed %llu%s: passed\n", (unsigned long long)single,
                optstr);
    if (!have_single || g_failed)
        fprintf(stderr, "vdsim: %zu schedules, %d failed, %.1f s (%.0f "
                "schedules/s, %d jobs)\n", nj, g_failed, el, nj / el, jobs);
    if (g_failed) {
        fprintf(stderr, "vdsim: failing seeds:");
        for (int i = 0; i < g_failed && i < 50; i++)
            fprintf(stderr, " %llu%s%s%s", (unsigned long long)g_failed_seeds[i],
                    *g_failed_opts[i] ? " (" : "",
                    *g_failed_opts[i] ? g_failed_opts[i] + 1 : "",
                    *g_failed_opts[i] ? ")" : "");
        fprintf(stderr, "%s\n", g_failed > 50 ? " ..." : "");
    }
    return g_failed ? 1 : 0;
}
