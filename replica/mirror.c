/* vdlvm: mirrored volumes — fan-out writes, leg failure, the write-intent
 * bitmap, resync, verify and leg replacement.
 *
 * ---- The write-intent bitmap: state machine of one region -------------
 *
 * A mirror volume is cut into regions of 2^region_shift bytes (default
 * 1 MiB).  Each region has one bit in the bitmap, kept in memory and on
 * every leg (logical extent 0 of each leg), plus in memory an in-flight
 * write count, a busy flag (a copy of the region is running) and a write
 * generation.
 *
 *   CLEAN  --first write starts-->  SETTING --bitmap block durable on every
 *   (bit 0)                                   non-failed leg--> DIRTY (bit 1)
 *   DIRTY  --writes start/end-->  DIRTY (inflight counts them)
 *   DIRTY  --cleaner: no write in flight or started for one pass, all legs
 *            in sync, every leg's device flushed--> CLEAN (bit written 0)
 *   DIRTY  --resync/repair copies it (busy: writes to it wait)--> CLEAN
 *            (when every non-failed leg now has it and no leg is failed)
 *
 * When a bit is set: before the first write to a clean region is sent to
 * any leg, the bitmap block holding the bit is written with FUA to every
 * leg that is not failed.  So after any crash, every region that may have
 * been written — and may therefore differ between legs — has its bit set on
 * every surviving leg's bitmap; open takes the union of the legs' bitmaps.
 *
 * When a bit is cleared: lazily, by the background thread, only while all
 * legs are in sync, only for a region with no write in flight and none
 * started since the previous pass, and only after every leg's device has
 * been flushed, so the data the bit protected is durable everywhere first.
 * A failed or stale leg keeps every bit set that a write touched while it
 * was away: that is exactly what resync copies.
 *
 * Why a stale set bit is safe: a set bit only means "may differ".  Its cost
 * is one region copied by resync that was already equal; reads of a region
 * with its bit set go to the resync source leg so they stay consistent.
 *
 * Locks (in this order; never the pool's admin_lock while holding either):
 *   vol->map_lock (shared for I/O) -> mirror->lock.
 * The admin_lock is taken with neither held (leg failure commits, resync
 * progress commits).
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../pool/pool_int.h"
#include "vdreplica.h"

#define BM_BLOCK 4096u
#define BITS_PER_BLOCK (BM_BLOCK * 8u)

struct vd_mirror {
    struct vd_vol *v;
    uint32_t region_shift;
    /* lock protects every field below; cond signals busy/inflight changes */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t nregions, cap_regions;
    uint64_t *bits;          /* the bitmap as it is (or is being made) durable */
    uint8_t *blk_dirty;      /* per bitmap block: cleared bits not yet on disk */
    uint16_t *inflight;
    uint8_t *busy;
    uint32_t *gen, *seen_gen;
    uint64_t dirty;          /* set bits */
    uint32_t read_rr;
    /* resync */
    int rs_requested;        /* start/resume wanted */
    int rs_active;           /* the background thread is copying */
    uint64_t rate_limit;     /* bytes/s, 0 = unlimited */
    uint64_t rate_bps;       /* measured */
    uint32_t rs_targets;     /* legs being written by the running resync */
    time_t last_probe;
};

struct vd_replica {
    vd_pool *pool;
    pthread_t thread;
    pthread_mutex_t lock; /* protects stop and the condition */
    pthread_cond_t cond;
    int stop;
};

static const char *leg_names[] = { "in-sync", "stale", "failed" };

const char *vd_leg_state_name(enum vd_leg_state s, int resyncing)
{
    if (resyncing && s == VD_LEG_STALE)
        return "resyncing";
    return (unsigned)s < 3 ? leg_names[s] : "unknown";
}

static uint32_t leg_state(struct vd_vol *v, uint32_t leg)
{
    return __atomic_load_n(&v->leg_state[leg], __ATOMIC_ACQUIRE);
}

static bool bit_get(const struct vd_mirror *m, uint64_t r)
{
    return m->bits[r / 64] >> (r % 64) & 1;
}

static void bit_set(struct vd_mirror *m, uint64_t r, bool on)
{
    if (on == bit_get(m, r))
        return;
    if (on) {
        m->bits[r / 64] |= 1ull << (r % 64);
        m->dirty++;
    } else {
        m->bits[r / 64] &= ~(1ull << (r % 64));
        m->dirty--;
    }
}

static uint64_t region_size(const struct vd_mirror *m)
{
    return 1ull << m->region_shift;
}

/* ---- per-leg I/O -------------------------------------------------------- */
/* Read or write [off, off+len) of one leg, split at extent boundaries.
 * map_lock held shared.  0 or -EIO. */
static int leg_io(struct vd_vol *v, uint32_t leg, void *buf, size_t len,
                  uint64_t off, bool write, unsigned flags)
{
    uint64_t es = v->pool->extent_size;
    char *b = buf;

    while (len) {
        uint64_t doff;
        size_t n = len < es - off % es ? len : es - off % es;
        struct vd_dev *d = vd_leg_locate(v, leg, off, &doff);
        int r;
        if (!d || !d->bdev || d->state != VD_DEV_OK)
            return (flags & VD_IO_NOWAIT) ? -EAGAIN : -EIO;
        if (flags & VD_IO_NOWAIT) {
            r = vd_dev_io_nowait(d, b, n, doff, write, flags);
        } else {
            r = write ? vd_dev_pwrite(d, b, n, doff, flags)
                      : vd_dev_pread(d, b, n, doff);
        }
        if (r < 0)
            return r;
        b += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* Flush every device a leg's extents live on. */
static int leg_flush(struct vd_vol *v, uint32_t leg)
{
    vd_pool *p = v->pool;
    bool seen[VD_MAX_DEVS] = { false };
    int r = 0;

    for (uint64_t le = 0; le < v->le_count; le++) {
        uint32_t dv = v->map[le * v->copies + leg].dev;
        if (dv == VD_NO_DEV || seen[dv])
            continue;
        seen[dv] = true;
        struct vd_dev *d = &p->devs[dv];
        if (!d->bdev || d->state != VD_DEV_OK || vd_dev_flush(d) < 0)
            r = -EIO;
    }
    return r;
}

/* Durably write bitmap block blk to every non-failed leg.  mirror->lock
 * held (serialises bitmap writes).  Returns the mask of legs that failed. */
static uint32_t bitmap_write_block_locked(struct vd_mirror *m, uint64_t blk)
{
    struct vd_vol *v = m->v;
    uint8_t buf[BM_BLOCK];
    uint64_t words = BM_BLOCK / 8, first = blk * words, have = (m->cap_regions + 63) / 64;
    uint32_t failed = 0;

    memset(buf, 0, sizeof(buf));
    if (first < have)
        memcpy(buf, m->bits + first,
               (have - first < words ? have - first : words) * 8);
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        uint64_t doff;
        struct vd_dev *d;
        if (leg_state(v, leg) == VD_LEG_FAILED)
            continue;
        d = vd_leg_bitmap_locate(v, leg, &doff);
        if (!d || !d->bdev || d->state != VD_DEV_OK ||
            vd_dev_pwrite(d, buf, BM_BLOCK, doff + blk * BM_BLOCK, VD_IO_FUA) < 0)
            failed |= 1u << leg;
    }
    m->blk_dirty[blk] = 0;
    return failed;
}

/* Mark legs failed, durably, before the caller acknowledges anything.
 * Called with no lock held.  0, or -EIO when the failure could not be
 * recorded (then nothing may be acknowledged).
 *
 * The last in-sync leg is never marked failed (as md never fails the last
 * working disk of a RAID1): with no in-sync leg left nothing could serve
 * reads or be a resync source, even once every leg answers again.  Its
 * I/O error goes to the initiator instead (-EIO: not acknowledged). */
static int fail_legs(struct vd_vol *v, uint32_t mask)
{
    vd_pool *p = v->pool;
    struct vd_opbuf ops = { 0 };
    int r = 0, kept = -1;

    vd_admin_lock(p);
    bool insync_left = false;
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (!(mask & (1u << leg)) && leg_state(v, leg) == VD_LEG_INSYNC)
            insync_left = true;
    for (uint32_t leg = 0; !insync_left && leg < v->copies; leg++)
        if ((mask & (1u << leg)) && leg_state(v, leg) == VD_LEG_INSYNC) {
            mask &= ~(1u << leg);
            kept = (int)leg;
            break;
        }
    if (kept >= 0)
        vd_log(VD_LOG_ERR, "volume '%s/%s': I/O error on leg %d, the last "
               "in-sync leg: it stays in use and the error goes to the "
               "initiator", p->name, v->name, kept);
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        struct vd_op_leg ol = { .h.type = VD_OP_LEG_STATE };
        if (!(mask & (1u << leg)) || leg_state(v, leg) == VD_LEG_FAILED)
            continue;
        ol.vol = v->id;
        ol.leg = leg;
        ol.state = VD_LEG_FAILED;
        if ((r = vd_opbuf_add(&ops, &ol, sizeof(ol))) < 0)
            break;
        vd_log(VD_LOG_ERR, "volume '%s/%s': leg %u failed; writes continue on "
               "the other legs and the bitmap records what it misses",
               p->name, v->name, leg);
    }
    if (r == 0 && ops.nops)
        r = vd_md_commit(p, &ops);
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    return r < 0 || kept >= 0 ? -EIO : 0;
}

static uint32_t nonfailed_legs(struct vd_vol *v)
{
    uint32_t mask = 0;
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (leg_state(v, leg) != VD_LEG_FAILED)
            mask |= 1u << leg;
    return mask;
}

static int source_leg(struct vd_vol *v)
{
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (leg_state(v, leg) == VD_LEG_INSYNC)
            return (int)leg;
    return -1;
}

/* ---- I/O ---------------------------------------------------------------- */
/* VD_IO_NOWAIT write: only into regions whose bit is already set (setting
 * one means a durable bitmap write) and not being copied; every
 * non-failed leg from the page cache, or -EAGAIN.  A write that reached
 * some legs and not others is redone in full by the caller's blocking
 * path; until then the legs may differ only inside regions whose bits are
 * set, which is what the bits are for. */
static int mirror_pwrite_nowait(struct vd_vol *v, const void *buf, size_t len,
                                uint64_t off, unsigned flags)
{
    struct vd_mirror *m = v->mirror;
    uint64_t r0, r1;
    int r = 0;

    if (pthread_rwlock_tryrdlock(&v->map_lock))
        return -EAGAIN;
    if (off > v->size || len > v->size - off) {
        pthread_rwlock_unlock(&v->map_lock);
        return -ERANGE;
    }
    r0 = off >> m->region_shift;
    r1 = (off + len - 1) >> m->region_shift;
    pthread_mutex_lock(&m->lock);
    for (uint64_t i = r0; i <= r1 && r == 0; i++)
        if (m->busy[i] || !bit_get(m, i))
            r = -EAGAIN;
    if (r == 0)
        for (uint64_t i = r0; i <= r1; i++) {
            m->inflight[i]++;
            m->gen[i]++;
        }
    pthread_mutex_unlock(&m->lock);
    if (r < 0) {
        pthread_rwlock_unlock(&v->map_lock);
        return r;
    }
    for (uint32_t leg = 0; leg < v->copies && r == 0; leg++)
        if (leg_state(v, leg) != VD_LEG_FAILED)
            r = leg_io(v, leg, (void *)buf, len, off, true, flags);
    pthread_mutex_lock(&m->lock);
    for (uint64_t i = r0; i <= r1; i++)
        m->inflight[i]--;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    pthread_rwlock_unlock(&v->map_lock);
    return r < 0 ? -EAGAIN : 0;
}

/* VD_IO_NOWAIT read: one in-sync leg from the page cache, or -EAGAIN. */
static int mirror_pread_nowait(struct vd_vol *v, void *buf, size_t len,
                               uint64_t off)
{
    struct vd_mirror *m = v->mirror;
    bool dirty = false;
    uint32_t n = 0, legs[3], rr;
    int leg, r;

    if (pthread_rwlock_tryrdlock(&v->map_lock))
        return -EAGAIN;
    if (off > v->size || len > v->size - off) {
        pthread_rwlock_unlock(&v->map_lock);
        return -ERANGE;
    }
    uint64_t r0 = off >> m->region_shift, r1 = (off + len - 1) >> m->region_shift;
    pthread_mutex_lock(&m->lock);
    for (uint64_t i = r0; i <= r1 && !dirty; i++)
        dirty = bit_get(m, i);
    rr = m->read_rr++;
    pthread_mutex_unlock(&m->lock);
    for (uint32_t k = 0; k < v->copies; k++)
        if (leg_state(v, k) == VD_LEG_INSYNC)
            legs[n++] = k;
    leg = dirty ? source_leg(v) : n ? (int)legs[rr % n] : -1;
    r = leg < 0 ? -EAGAIN
                : leg_io(v, (uint32_t)leg, buf, len, off, false, VD_IO_NOWAIT);
    pthread_rwlock_unlock(&v->map_lock);
    return r < 0 ? -EAGAIN : 0;
}

int vd_mirror_pwrite(struct vd_vol *v, const void *buf, size_t len,
                     uint64_t off, unsigned flags)
{
    struct vd_mirror *m = v->mirror;
    uint32_t failed = 0, ok = 0;
    uint64_t r0, r1;
    int r = 0;

    if (!len)
        return 0;
    if (flags & VD_IO_NOWAIT)
        return mirror_pwrite_nowait(v, buf, len, off, flags);
    pthread_rwlock_rdlock(&v->map_lock);
    if (off > v->size || len > v->size - off) {
        pthread_rwlock_unlock(&v->map_lock);
        return -ERANGE;
    }
    r0 = off >> m->region_shift;
    r1 = (off + len - 1) >> m->region_shift;

    pthread_mutex_lock(&m->lock);
    for (uint64_t i = r0; i <= r1; i++)
        while (m->busy[i])
            pthread_cond_wait(&m->cond, &m->lock);
    uint64_t last_blk = UINT64_MAX;
    for (uint64_t i = r0; i <= r1; i++) {
        m->inflight[i]++;
        m->gen[i]++;
        if (!bit_get(m, i)) {
            bit_set(m, i, true);
            m->blk_dirty[i / BITS_PER_BLOCK] = 1;
        }
    }
    /* SETTING -> DIRTY: the bits are durable before any data moves. */
    for (uint64_t i = r0; i <= r1; i++) {
        uint64_t blk = i / BITS_PER_BLOCK;
        if (blk != last_blk && m->blk_dirty[blk])
            failed |= bitmap_write_block_locked(m, blk);
        last_blk = blk;
    }
    pthread_mutex_unlock(&m->lock);

    for (uint32_t leg = 0; leg < v->copies; leg++) {
        if (leg_state(v, leg) == VD_LEG_FAILED || (failed & (1u << leg)))
            continue;
        if (leg_io(v, leg, (void *)buf, len, off, true, flags) < 0)
            failed |= 1u << leg;
        else
            ok |= 1u << leg;
    }

    pthread_mutex_lock(&m->lock);
    for (uint64_t i = r0; i <= r1; i++)
        m->inflight[i]--;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    pthread_rwlock_unlock(&v->map_lock);

    if (failed && fail_legs(v, failed) < 0)
        r = -EIO;
    if (!ok)
        r = -EIO;
    return r;
}

int vd_mirror_pread_flags(struct vd_vol *v, void *buf, size_t len,
                          uint64_t off, unsigned flags)
{
    if (!len)
        return 0;
    if (flags & VD_IO_NOWAIT)
        return mirror_pread_nowait(v, buf, len, off);
    return vd_mirror_pread(v, buf, len, off);
}

int vd_mirror_pread(struct vd_vol *v, void *buf, size_t len, uint64_t off)
{
    struct vd_mirror *m = v->mirror;
    uint32_t tried = 0, bad = 0;
    int leg = -1, r = -EIO;
    bool dirty = false;

    if (!len)
        return 0;
    pthread_rwlock_rdlock(&v->map_lock);
    if (off > v->size || len > v->size - off) {
        pthread_rwlock_unlock(&v->map_lock);
        return -ERANGE;
    }
    uint64_t r0 = off >> m->region_shift, r1 = (off + len - 1) >> m->region_shift;
    pthread_mutex_lock(&m->lock);
    for (uint64_t i = r0; i <= r1 && !dirty; i++)
        dirty = bit_get(m, i);
    uint32_t rr = m->read_rr++;
    pthread_mutex_unlock(&m->lock);

    /* Regions that may differ are read from the resync source so that
     * every read agrees with what resync will make of the other legs;
     * clean regions are spread over the in-sync legs. */
    if (dirty) {
        leg = source_leg(v);
    } else {
        uint32_t n = 0, legs[3];
        for (uint32_t k = 0; k < v->copies; k++)
            if (leg_state(v, k) == VD_LEG_INSYNC)
                legs[n++] = k;
        if (n)
            leg = (int)legs[rr % n];
    }
    while (leg >= 0) {
        tried |= 1u << leg;
        r = leg_io(v, (uint32_t)leg, buf, len, off, false, 0);
        if (r == 0)
            break;
        bad |= 1u << leg;
        leg = -1;
        for (uint32_t k = 0; k < v->copies; k++)
            if (!(tried & (1u << k)) && leg_state(v, k) == VD_LEG_INSYNC) {
                leg = (int)k;
                break;
            }
    }
    if (r == 0 && bad) {
        /* Rewrite the good data onto the legs that failed to read it. */
        pthread_rwlock_unlock(&v->map_lock);
        pthread_rwlock_rdlock(&v->write_lock);
        pthread_rwlock_rdlock(&v->map_lock);
        uint32_t still_bad = 0;
        for (uint32_t k = 0; k < v->copies; k++)
            if ((bad & (1u << k)) &&
                leg_io(v, k, buf, len, off, true, VD_IO_FUA) < 0)
                still_bad |= 1u << k;
        pthread_rwlock_unlock(&v->map_lock);
        pthread_rwlock_unlock(&v->write_lock);
        if (still_bad)
            fail_legs(v, still_bad);
        else
            vd_log(VD_LOG_WARN, "volume '%s/%s': read error at %" PRIu64
                   " repaired from another leg", v->pool->name, v->name, off);
        return 0;
    }
    pthread_rwlock_unlock(&v->map_lock);
    return r;
}

int vd_mirror_flush(struct vd_vol *v)
{
    vd_pool *p = v->pool;
    int r = 0;

    /* Interim: the pool-wide behaviour vd_vol_flush had (defect 7 of the
     * data-safety issue narrows it to the legs). */
    for (uint32_t i = 0; i < p->ndevs; i++) {
        struct vd_dev *d = &p->devs[i];
        if (d->bdev && d->state == VD_DEV_OK && vd_dev_flush(d) < 0)
            r = -EIO;
    }
    return r;
}

/* ---- attach / detach ---------------------------------------------------- */
static int mirror_alloc_arrays(struct vd_mirror *m, uint64_t nregions)
{
    uint64_t words = (nregions + 63) / 64;
    uint64_t blocks = (nregions + BITS_PER_BLOCK - 1) / BITS_PER_BLOCK;
    uint64_t *bits = calloc(words ? words : 1, 8);
    uint8_t *blk = calloc(blocks ? blocks : 1, 1);
    uint16_t *inflight = calloc(nregions ? nregions : 1, sizeof(uint16_t));
    uint8_t *busy = calloc(nregions ? nregions : 1, 1);
    uint32_t *gen = calloc(nregions ? nregions : 1, sizeof(uint32_t));
    uint32_t *seen = calloc(nregions ? nregions : 1, sizeof(uint32_t));

    if (!bits || !blk || !inflight || !busy || !gen || !seen) {
        free(bits), free(blk), free(inflight), free(busy), free(gen), free(seen);
        return -ENOMEM;
    }
    if (m->bits) {
        uint64_t ow = (m->cap_regions + 63) / 64;
        uint64_t ob = (m->cap_regions + BITS_PER_BLOCK - 1) / BITS_PER_BLOCK;
        memcpy(bits, m->bits, ow * 8);
        memcpy(blk, m->blk_dirty, ob);
        memcpy(inflight, m->inflight, m->cap_regions * sizeof(uint16_t));
        memcpy(busy, m->busy, m->cap_regions);
        memcpy(gen, m->gen, m->cap_regions * sizeof(uint32_t));
        memcpy(seen, m->seen_gen, m->cap_regions * sizeof(uint32_t));
        free(m->bits), free(m->blk_dirty), free(m->inflight), free(m->busy);
        free(m->gen), free(m->seen_gen);
    }
    m->bits = bits;
    m->blk_dirty = blk;
    m->inflight = inflight;
    m->busy = busy;
    m->gen = gen;
    m->seen_gen = seen;
    m->cap_regions = nregions;
    m->nregions = nregions;
    return 0;
}

int vd_mirror_attach(struct vd_vol *v)
{
    struct vd_mirror *m;
    uint64_t nregions, bytes;
    uint8_t *buf;
    int r, legs_read = 0;

    if (v->mirror)
        return 0;
    m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->v = v;
    m->region_shift = v->flags & VD_VOLF_REGION_SHIFT_MASK;
    nregions = vd_div_up(v->size, 1ull << m->region_shift);
    if (nregions > (uint64_t)v->pool->extent_size * 8) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': %" PRIu64 " regions do not fit the "
               "bitmap extent", v->pool->name, v->name, nregions);
        free(m);
        return -EINVAL;
    }
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    if ((r = mirror_alloc_arrays(m, nregions)) < 0) {
        free(m);
        return r;
    }
    /* The union of the legs' bitmaps: a bit set on any leg may differ. */
    bytes = vd_div_up(vd_div_up(nregions, 8), BM_BLOCK) * BM_BLOCK;
    buf = malloc(bytes);
    if (!buf) {
        v->mirror = m;
        vd_mirror_detach(v);
        return -ENOMEM;
    }
    pthread_rwlock_rdlock(&v->map_lock);
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        uint64_t doff;
        struct vd_dev *d;
        if (leg_state(v, leg) == VD_LEG_FAILED)
            continue;
        d = vd_leg_bitmap_locate(v, leg, &doff);
        if (!d || !d->bdev || d->state != VD_DEV_OK ||
            vd_dev_pread(d, buf, bytes, doff) < 0) {
            vd_log(VD_LOG_WARN, "volume '%s/%s': bitmap of leg %u unreadable",
                   v->pool->name, v->name, leg);
            continue;
        }
        legs_read++;
        for (uint64_t w = 0; w < (nregions + 63) / 64; w++) {
            uint64_t word;
            memcpy(&word, buf + w * 8, 8);
            m->bits[w] |= word;
        }
    }
    pthread_rwlock_unlock(&v->map_lock);
    free(buf);
    if (nregions % 64) /* bits past the end are not regions */
        m->bits[nregions / 64] &= (1ull << (nregions % 64)) - 1;
    for (uint64_t i = 0; i < nregions; i++)
        m->dirty += bit_get(m, i);
    if (!legs_read && v->copies) {
        /* Nothing known: every region may differ. */
        for (uint64_t i = 0; i < nregions; i++)
            bit_set(m, i, true);
    }
    if (m->dirty || v->rs_running)
        m->rs_requested = 1;
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (leg_state(v, leg) == VD_LEG_STALE)
            m->rs_requested = 1;
    if (m->dirty)
        vd_log(VD_LOG_WARN, "volume '%s/%s': %" PRIu64 " regions may differ "
               "between legs; resync starts", v->pool->name, v->name, m->dirty);
    v->mirror = m;
    return 0;
}

int vd_mirror_grow(struct vd_vol *v)
{
    struct vd_mirror *m = v->mirror;
    uint64_t n;
    int r = 0;

    if (!m)
        return 0;
    n = vd_div_up(vd_vol_size(v), region_size(m));
    pthread_mutex_lock(&m->lock);
    if (n > m->cap_regions)
        r = mirror_alloc_arrays(m, n);
    else
        m->nregions = n;
    pthread_mutex_unlock(&m->lock);
    return r;
}

void vd_mirror_detach(struct vd_vol *v)
{
    struct vd_mirror *m = v->mirror;

    if (!m)
        return;
    v->mirror = NULL;
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    free(m->bits), free(m->blk_dirty), free(m->inflight), free(m->busy);
    free(m->gen), free(m->seen_gen);
    free(m);
}

/* ---- copying regions (resync and repair) -------------------------------- */
/* Wait until no write is in flight in region r and block new ones. */
static void region_lock(struct vd_mirror *m, uint64_t r)
{
    pthread_mutex_lock(&m->lock);
    while (m->busy[r] || m->inflight[r])
        pthread_cond_wait(&m->cond, &m->lock);
    m->busy[r] = 1;
    pthread_mutex_unlock(&m->lock);
}

static void region_unlock(struct vd_mirror *m, uint64_t r)
{
    pthread_mutex_lock(&m->lock);
    m->busy[r] = 0;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

/* Copy region r from leg src to every leg in targets.  Region locked by the
 * caller.  Returns the mask of target legs that failed, or -1 if the
 * source could not be read. */
static int copy_region(struct vd_vol *v, uint64_t r, int src, uint32_t targets,
                       void *buf, unsigned flags)
{
    struct vd_mirror *m = v->mirror;
    uint64_t off = r << m->region_shift, len = region_size(m);
    int failed = 0;

    pthread_rwlock_rdlock(&v->map_lock);
    if (off >= v->size) {
        pthread_rwlock_unlock(&v->map_lock);
        return 0;
    }
    if (len > v->size - off)
        len = v->size - off;
    if (leg_io(v, (uint32_t)src, buf, len, off, false, 0) < 0) {
        pthread_rwlock_unlock(&v->map_lock);
        return -1;
    }
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if ((targets & (1u << leg)) && leg_state(v, leg) != VD_LEG_FAILED &&
            leg_io(v, leg, buf, len, off, true, flags) < 0)
            failed |= 1 << leg;
    pthread_rwlock_unlock(&v->map_lock);
    return failed;
}

static int commit_resync(struct vd_vol *v, uint32_t running, uint64_t total,
                         uint64_t done, uint32_t insync_legs)
{
    vd_pool *p = v->pool;
    struct vd_opbuf ops = { 0 };
    struct vd_op_resync o = { .h.type = VD_OP_RESYNC };
    int r;

    o.vol = v->id;
    o.running = running;
    o.total = total;
    o.done = done;
    vd_admin_lock(p);
    r = vd_opbuf_add(&ops, &o, sizeof(o));
    for (uint32_t leg = 0; r == 0 && leg < v->copies; leg++) {
        struct vd_op_leg ol = { .h.type = VD_OP_LEG_STATE };
        if (!(insync_legs & (1u << leg)) || leg_state(v, leg) != VD_LEG_STALE)
            continue;
        ol.vol = v->id;
        ol.leg = leg;
        ol.state = VD_LEG_INSYNC;
        r = vd_opbuf_add(&ops, &ol, sizeof(ol));
    }
    if (r == 0)
        r = vd_md_commit(p, &ops);
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    return r;
}

/* Write the bitmap blocks whose bits were cleared, after flushing the
 * target legs so the copied data is durable first. */
static uint32_t flush_cleared_bits(struct vd_vol *v, uint32_t legs)
{
    struct vd_mirror *m = v->mirror;
    uint32_t failed = 0;

    pthread_rwlock_rdlock(&v->map_lock);
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if ((legs & (1u << leg)) && leg_flush(v, leg) < 0)
            failed |= 1u << leg;
    if (!failed) {
        pthread_mutex_lock(&m->lock);
        uint64_t blocks = vd_div_up(m->nregions, BITS_PER_BLOCK);
        for (uint64_t b = 0; b < blocks; b++)
            if (m->blk_dirty[b])
                failed |= bitmap_write_block_locked(m, b);
        pthread_mutex_unlock(&m->lock);
    }
    pthread_rwlock_unlock(&v->map_lock);
    return failed;
}

static bool replica_stopping(vd_pool *p);

/* One resync pass over the set bits of v; returns 0 when done, -EAGAIN when
 * interrupted (stop), -EIO on a failure (legs marked failed). */
static int resync_volume(struct vd_vol *v)
{
    struct vd_mirror *m = v->mirror;
    vd_pool *p = v->pool;
    uint64_t rs = region_size(m), total, done;
    uint32_t targets = 0;
    int src = source_leg(v), r = 0;
    void *buf;

    if (src < 0) {
        /* Said once; 'vdlvm resync' asks again. */
        vd_log(VD_LOG_ERR, "volume '%s/%s': no in-sync leg to resync from",
               p->name, v->name);
        pthread_mutex_lock(&m->lock);
        m->rs_requested = 0;
        pthread_mutex_unlock(&m->lock);
        return -EIO;
    }
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if ((int)leg != src && leg_state(v, leg) != VD_LEG_FAILED)
            targets |= 1u << leg;
    if (!targets) {
        /* Every other leg is failed: nothing to copy to.  Reading the whole
         * source for nothing would also hold up the probe that notices a
         * leg coming back; that probe asks for the resync again. */
        pthread_mutex_lock(&m->lock);
        m->rs_requested = 0;
        pthread_mutex_unlock(&m->lock);
        return 0;
    }
    if (posix_memalign(&buf, 4096, rs))
        return -ENOMEM;

    vd_admin_lock(p);
    pthread_mutex_lock(&m->lock);
    uint64_t need = m->dirty * rs;
    pthread_mutex_unlock(&m->lock);
    if (v->rs_running && v->rs_total >= v->rs_done + need) {
        total = v->rs_total; /* resume: progress survives restarts */
        done = v->rs_total - need;
        if (done < v->rs_done)
            done = v->rs_done;
    } else {
        total = need + v->rs_done * !!v->rs_running;
        done = v->rs_running ? v->rs_done : 0;
    }
    vd_admin_unlock(p);
    if (commit_resync(v, 1, total, done, 0) < 0) {
        free(buf);
        return -EIO;
    }
    pthread_mutex_lock(&m->lock);
    m->rs_active = 1;
    m->rs_targets = targets;
    pthread_mutex_unlock(&m->lock);
    vd_log(VD_LOG_INFO, "volume '%s/%s': resync of %" PRIu64 " bytes from leg %d "
           "started (%" PRIu64 " done before)", p->name, v->name, total - done,
           src, done);

    struct timespec t0, last;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    last = t0;
    uint64_t done_at_start = done, since_commit = 0;
    bool any_failed_leg = targets != nonfailed_legs(v) - (1u << src) ||
                          nonfailed_legs(v) != (1u << v->copies) - 1;
    for (uint64_t i = 0; i < m->nregions; i++) {
        pthread_mutex_lock(&m->lock);
        bool set = i < m->nregions && bit_get(m, i);
        pthread_mutex_unlock(&m->lock);
        if (!set)
            continue;
        if (replica_stopping(p)) {
            r = -EAGAIN;
            break;
        }
        region_lock(m, i);
        int f = copy_region(v, i, src, targets, buf, 0);
        pthread_mutex_lock(&m->lock);
        if (f == 0 && !any_failed_leg) {
            bit_set(m, i, false);
            m->blk_dirty[i / BITS_PER_BLOCK] = 1;
        }
        m->busy[i] = 0;
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
        if (f != 0) {
            fail_legs(v, f < 0 ? 1u << src : (uint32_t)f);
            r = -EIO;
            break;
        }
        uint64_t n = (i << m->region_shift) + rs > v->size ? v->size - (i << m->region_shift) : rs;
        done += n;
        since_commit += n;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
        if (el > 0)
            m->rate_bps = (uint64_t)((done - done_at_start) / el);
        if (m->rate_limit) {
            double want = (double)(done - done_at_start) / m->rate_limit;
            if (want > el)
                usleep((useconds_t)((want - el) * 1e6));
        }
        if ((now.tv_sec - last.tv_sec) >= 1 || since_commit >= (64ull << 20)) {
            uint32_t lf = flush_cleared_bits(v, targets | (1u << src));
            if (lf) {
                fail_legs(v, lf);
                r = -EIO;
                break;
            }
            commit_resync(v, 1, total, done > total ? total : done, 0);
            last = now;
            since_commit = 0;
        }
    }
    uint32_t lf = flush_cleared_bits(v, targets | (1u << src));
    if (lf) {
        fail_legs(v, lf);
        r = -EIO;
    }
    if (r == 0) {
        commit_resync(v, 0, total, total, targets);
        vd_log(VD_LOG_INFO, "volume '%s/%s': resync done, %" PRIu64 " bytes",
               p->name, v->name, total - done_at_start);
    } else {
        commit_resync(v, 1, total, done > total ? total : done, 0);
    }
    pthread_mutex_lock(&m->lock);
    m->rs_active = 0;
    m->rs_targets = 0;
    if (r == 0)
        m->rs_requested = 0;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    free(buf);
    return r;
}

/* Lazy clearing of bits while all legs are in sync (see the top). */
static void clean_volume(struct vd_vol *v)
{
    struct vd_mirror *m = v->mirror;
    uint64_t *cand = NULL;
    size_t n = 0, cap = 0;

    if (nonfailed_legs(v) != (1u << v->copies) - 1 || source_leg(v) < 0)
        return;
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (leg_state(v, leg) != VD_LEG_INSYNC)
            return;
    pthread_mutex_lock(&m->lock);
    if (!m->dirty || m->rs_active || m->rs_requested) {
        pthread_mutex_unlock(&m->lock);
        return;
    }
    for (uint64_t i = 0; i < m->nregions; i++) {
        if (bit_get(m, i) && !m->inflight[i] && !m->busy[i] &&
            m->gen[i] == m->seen_gen[i]) {
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                uint64_t *c = realloc(cand, cap * sizeof(*c));
                if (!c)
                    break;
                cand = c;
            }
            cand[n++] = i;
        }
        m->seen_gen[i] = m->gen[i];
    }
    pthread_mutex_unlock(&m->lock);
    if (n) {
        uint32_t failed = 0;
        pthread_rwlock_rdlock(&v->map_lock);
        for (uint32_t leg = 0; leg < v->copies; leg++)
            if (leg_flush(v, leg) < 0)
                failed |= 1u << leg;
        if (!failed) {
            pthread_mutex_lock(&m->lock);
            for (size_t k = 0; k < n; k++) {
                uint64_t i = cand[k];
                if (i < m->nregions && bit_get(m, i) && !m->inflight[i] &&
                    !m->busy[i] && m->gen[i] == m->seen_gen[i]) {
                    bit_set(m, i, false);
                    m->blk_dirty[i / BITS_PER_BLOCK] = 1;
                }
            }
            uint64_t blocks = vd_div_up(m->nregions, BITS_PER_BLOCK);
            for (uint64_t b = 0; b < blocks; b++)
                if (m->blk_dirty[b])
                    failed |= bitmap_write_block_locked(m, b);
            pthread_mutex_unlock(&m->lock);
        }
        pthread_rwlock_unlock(&v->map_lock);
        if (failed)
            fail_legs(v, failed);
    }
    free(cand);
}

/* A failed leg whose devices answer again becomes stale and is resynced. */
static void probe_failed_legs(struct vd_vol *v)
{
    struct vd_mirror *m = v->mirror;
    time_t now = time(NULL);
    uint32_t back = 0;
    char buf[512];

    if (now == m->last_probe)
        return;
    m->last_probe = now;
    pthread_rwlock_rdlock(&v->map_lock);
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        uint64_t doff;
        struct vd_dev *d;
        if (leg_state(v, leg) != VD_LEG_FAILED)
            continue;
        d = vd_leg_bitmap_locate(v, leg, &doff);
        if (d && d->bdev && d->state == VD_DEV_OK &&
            d->bdev->ops->pread(d->bdev, buf, sizeof(buf), doff) == 0 &&
            leg_flush(v, leg) == 0)
            back |= 1u << leg;
    }
    pthread_rwlock_unlock(&v->map_lock);
    if (!back)
        return;
    /* The returning leg's bitmap copy missed every bit set while it was
     * away: write the whole bitmap to it before trusting it as stale. */
    pthread_mutex_lock(&m->lock);
    uint64_t blocks = vd_div_up(m->nregions, BITS_PER_BLOCK);
    for (uint64_t b = 0; b < blocks; b++)
        m->blk_dirty[b] = 1;
    pthread_mutex_unlock(&m->lock);

    vd_pool *p = v->pool;
    struct vd_opbuf ops = { 0 };
    vd_admin_lock(p);
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        struct vd_op_leg ol = { .h.type = VD_OP_LEG_STATE };
        if (!(back & (1u << leg)))
            continue;
        ol.vol = v->id;
        ol.leg = leg;
        ol.state = VD_LEG_STALE;
        vd_opbuf_add(&ops, &ol, sizeof(ol));
    }
    /* stale legs receive writes again from here on */
    int r = vd_md_commit(p, &ops);
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    if (r == 0) {
        uint32_t lf = flush_cleared_bits(v, nonfailed_legs(v));
        if (lf)
            fail_legs(v, lf);
        vd_log(VD_LOG_WARN, "volume '%s/%s': failed leg(s) answer again; resync "
               "starts", p->name, v->name);
        pthread_mutex_lock(&m->lock);
        m->rs_requested = 1;
        pthread_mutex_unlock(&m->lock);
    }
}

/* ---- background thread -------------------------------------------------- */
static bool replica_stopping(vd_pool *p)
{
    struct vd_replica *rp = p->replica;
    bool s;
    if (!rp)
        return false;
    pthread_mutex_lock(&rp->lock);
    s = rp->stop;
    pthread_mutex_unlock(&rp->lock);
    return s;
}

/* Take a reference so the volume is not removed while the thread uses it. */
static struct vd_vol *next_mirror(vd_pool *p, uint32_t *i)
{
    struct vd_vol *v = NULL;
    vd_admin_lock(p);
    while (*i < p->nvols) {
        struct vd_vol *c = p->vols[(*i)++];
        if (c->mirror) {
            c->open_count++;
            v = c;
            break;
        }
    }
    vd_admin_unlock(p);
    return v;
}

static void put_vol(struct vd_vol *v)
{
    vd_admin_lock(v->pool);
    v->open_count--;
    vd_admin_unlock(v->pool);
}

static void *replica_main(void *arg)
{
    vd_pool *p = arg;
    struct vd_replica *rp = p->replica;

    for (;;) {
        struct timespec ts;
        pthread_mutex_lock(&rp->lock);
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!rp->stop)
            pthread_cond_timedwait(&rp->cond, &rp->lock, &ts);
        int stop = rp->stop;
        pthread_mutex_unlock(&rp->lock);
        if (stop)
            break;
        vd_pool_retry_devices(p);
        uint32_t i = 0;
        struct vd_vol *v;
        while ((v = next_mirror(p, &i))) {
            struct vd_mirror *m = v->mirror;
            probe_failed_legs(v);
            pthread_mutex_lock(&m->lock);
            int want = m->rs_requested;
            pthread_mutex_unlock(&m->lock);
            if (want)
                resync_volume(v);
            else
                clean_volume(v);
            put_vol(v);
            if (replica_stopping(p))
                break;
        }
    }
    return NULL;
}

int vd_replica_start(vd_pool *p)
{
    struct vd_replica *rp;
    sigset_t all, old;
    int r;

    if (p->replica)
        return 0;
    rp = calloc(1, sizeof(*rp));
    if (!rp)
        return -ENOMEM;
    rp->pool = p;
    pthread_mutex_init(&rp->lock, NULL);
    pthread_cond_init(&rp->cond, NULL);
    p->replica = rp;
    /* tgtd's SIGUSR2 and every other signal stay with tgtd's threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    r = pthread_create(&rp->thread, NULL, replica_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r) {
        p->replica = NULL;
        free(rp);
        vd_log(VD_LOG_ERR, "pool '%s': cannot start the replica thread: %s",
               p->name, strerror(r));
        return -r;
    }
    return 0;
}

void vd_replica_stop(vd_pool *p)
{
    struct vd_replica *rp = p->replica;

    if (!rp)
        return;
    pthread_mutex_lock(&rp->lock);
    rp->stop = 1;
    pthread_cond_broadcast(&rp->cond);
    pthread_mutex_unlock(&rp->lock);
    pthread_join(rp->thread, NULL);
    /* Leave the on-disk bitmap with every cleared bit written. */
    for (uint32_t i = 0; i < p->nvols; i++) {
        struct vd_vol *v = p->vols[i];
        if (v->mirror) {
            uint32_t lf = flush_cleared_bits(v, nonfailed_legs(v));
            if (lf)
                fail_legs(v, lf);
        }
    }
    p->replica = NULL;
    pthread_mutex_destroy(&rp->lock);
    pthread_cond_destroy(&rp->cond);
    free(rp);
}

static void replica_kick(vd_pool *p)
{
    struct vd_replica *rp = p->replica;
    if (!rp)
        return;
    pthread_mutex_lock(&rp->lock);
    pthread_cond_broadcast(&rp->cond);
    pthread_mutex_unlock(&rp->lock);
}

/* ---- admin API ---------------------------------------------------------- */
static struct vd_vol *find_mirror(vd_pool *p, const char *name)
{
    struct vd_vol *v = vd_vol_find(p, name);
    if (!v) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': not found; list volumes with "
               "'vdlvm vol list %s'", p->name, name, p->name);
        errno = ENOENT;
        return NULL;
    }
    if (!v->mirror) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': not a mirror (layout linear)",
               p->name, name);
        errno = EINVAL;
        return NULL;
    }
    return v;
}

int vd_mirror_get_info(vd_pool *p, const char *name, struct vd_mirror_info *info)
{
    struct vd_vol *v;
    struct vd_mirror *m;

    vd_admin_lock(p);
    v = vd_vol_find(p, name);
    if (!v || !v->mirror) {
        vd_admin_unlock(p);
        return v ? -EINVAL : -ENOENT;
    }
    m = v->mirror;
    memset(info, 0, sizeof(*info));
    snprintf(info->volume, sizeof(info->volume), "%s/%s", p->name, v->name);
    info->size = v->size;
    info->region_size = region_size(m);
    info->copies = v->copies;
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        struct vd_leg_info *l = &info->legs[leg];
        uint32_t dv = v->map[leg].dev;
        l->leg = leg;
        if (v->le_count > v->data_le0 && v->map[v->data_le0 * v->copies + leg].dev != VD_NO_DEV)
            dv = v->map[v->data_le0 * v->copies + leg].dev;
        if (dv != VD_NO_DEV) {
            snprintf(l->device, sizeof(l->device), "%s", p->devs[dv].name);
            snprintf(l->node, sizeof(l->node), "%s", p->devs[dv].node);
        }
        l->state = leg_state(v, leg);
    }
    pthread_mutex_lock(&m->lock);
    info->dirty_regions = m->dirty;
    info->rate_limit = m->rate_limit;
    if (m->rs_active) {
        info->resync_state = VD_RESYNC_RUNNING;
        info->rate_bytes_per_s = m->rate_bps;
        for (uint32_t leg = 0; leg < v->copies; leg++)
            info->legs[leg].resyncing = !!(m->rs_targets & (1u << leg)) &&
                                        info->legs[leg].state == VD_LEG_STALE;
    } else if (v->rs_running || m->rs_requested) {
        info->resync_state = VD_RESYNC_PAUSED;
    }
    pthread_mutex_unlock(&m->lock);
    info->total_bytes = v->rs_total;
    info->done_bytes = v->rs_done;
    vd_admin_unlock(p);
    return 0;
}

int vd_mirror_resync_start(vd_pool *p, const char *name, uint64_t rate_limit)
{
    struct vd_vol *v;

    vd_admin_lock(p);
    v = find_mirror(p, name);
    if (!v) {
        vd_admin_unlock(p);
        return -errno;
    }
    pthread_mutex_lock(&v->mirror->lock);
    v->mirror->rate_limit = rate_limit;
    v->mirror->rs_requested = 1;
    pthread_mutex_unlock(&v->mirror->lock);
    vd_admin_unlock(p);
    replica_kick(p);
    return 0;
}

int vd_mirror_resync_wait(vd_pool *p, const char *name, uint64_t timeout_ms)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct vd_vol *v;
        int busy, failed_src;
        vd_admin_lock(p);
        v = find_mirror(p, name);
        if (!v) {
            vd_admin_unlock(p);
            return -errno;
        }
        pthread_mutex_lock(&v->mirror->lock);
        busy = v->mirror->rs_active || v->mirror->rs_requested;
        pthread_mutex_unlock(&v->mirror->lock);
        failed_src = source_leg(v) < 0;
        vd_admin_unlock(p);
        if (!busy)
            return 0;
        if (failed_src)
            return -EIO;
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t el = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (timeout_ms && el >= timeout_ms)
            return -ETIMEDOUT;
        usleep(50000);
    }
}

void vd_verify_result_free(struct vd_verify_result *res)
{
    if (res) {
        free(res->diff);
        res->diff = NULL;
    }
}

static int sha256(const void *buf, size_t len, unsigned char out[32])
{
    unsigned int n = 32;
    return EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
}

int vd_mirror_verify(vd_pool *p, const char *name, int repair,
                     struct vd_verify_result *res)
{
    struct vd_vol *v;
    struct vd_mirror *m;
    uint8_t *buf[3] = { NULL, NULL, NULL };
    int r = 0;

    memset(res, 0, sizeof(*res));
    vd_admin_lock(p);
    v = find_mirror(p, name);
    if (v)
        v->open_count++; /* keeps it from being removed meanwhile */
    vd_admin_unlock(p);
    if (!v)
        return -errno;
    m = v->mirror;
    res->region_size = region_size(m);
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (posix_memalign((void **)&buf[leg], 4096, res->region_size)) {
            r = -ENOMEM;
            goto out;
        }
    pthread_mutex_lock(&m->lock);
    res->regions = m->nregions;
    pthread_mutex_unlock(&m->lock);
    for (uint64_t i = 0; i < res->regions; i++) {
        unsigned char dg[3][32];
        uint32_t legs = nonfailed_legs(v), differ = 0;
        int src = source_leg(v);
        region_lock(m, i);
        pthread_rwlock_rdlock(&v->map_lock);
        uint64_t off = i << m->region_shift, len = res->region_size;
        if (len > v->size - off)
            len = v->size - off;
        for (uint32_t leg = 0; leg < v->copies; leg++) {
            if (!(legs & (1u << leg)))
                continue;
            if (leg_io(v, leg, buf[leg], len, off, false, 0) < 0 ||
                sha256(buf[leg], len, dg[leg]) < 0) {
                r = -EIO;
                break;
            }
        }
        for (uint32_t leg = 0; r == 0 && src >= 0 && leg < v->copies; leg++)
            if ((legs & (1u << leg)) && memcmp(dg[leg], dg[src], 32))
                differ |= 1u << leg;
        if (r == 0 && differ && repair) {
            for (uint32_t leg = 0; leg < v->copies; leg++)
                if ((differ & (1u << leg)) &&
                    leg_io(v, leg, buf[src], len, off, true, VD_IO_FUA) < 0)
                    r = -EIO;
            if (r == 0)
                res->repaired++;
        }
        pthread_rwlock_unlock(&v->map_lock);
        region_unlock(m, i);
        if (r < 0) {
            vd_log(VD_LOG_ERR, "volume '%s/%s': verify stopped at region %" PRIu64
                   ": I/O error", p->name, v->name, i);
            break;
        }
        if (differ) {
            if (res->ndiff % 64 == 0) {
                uint64_t *d = realloc(res->diff, (res->ndiff + 64) * sizeof(*d));
                if (!d) {
                    r = -ENOMEM;
                    break;
                }
                res->diff = d;
            }
            res->diff[res->ndiff++] = i;
        }
    }
out:
    for (uint32_t leg = 0; leg < 3; leg++)
        free(buf[leg]);
    put_vol(v);
    return r;
}

int vd_mirror_replace_leg(vd_pool *p, const char *name, const char *old_dev,
                          const char *new_dev)
{
    struct vd_vol *v;
    struct vd_mirror *m;
    struct vd_opbuf ops = { 0 };
    int leg = -1, nd = -1, r = 0;
    uint32_t lf = 0;

    vd_admin_lock(p);
    v = find_mirror(p, name);
    if (!v) {
        r = -errno;
        goto out;
    }
    m = v->mirror;
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (p->devs[i].used && !strcmp(p->devs[i].name, new_dev))
            nd = (int)i;
    if (nd < 0 || p->devs[nd].state != VD_DEV_OK) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': device '%s' %s", p->name, name, new_dev,
               nd < 0 ? "is not in the pool" : "is not available");
        r = nd < 0 ? -ENOENT : -EIO;
        goto out;
    }
    for (uint64_t le = 0; le < v->le_count; le++)
        for (uint32_t k = 0; k < v->copies; k++) {
            uint32_t dv = v->map[le * v->copies + k].dev;
            if (dv == VD_NO_DEV)
                continue;
            if (!strcmp(p->devs[dv].name, old_dev))
                leg = (int)k;
        }
    if (leg < 0) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': no leg uses device '%s'; see 'vdlvm "
               "status %s/%s'", p->name, name, old_dev, p->name, name);
        r = -ENOENT;
        goto out;
    }
    for (uint64_t le = 0; le < v->le_count; le++)
        for (uint32_t k = 0; k < v->copies; k++)
            if ((int)k != leg && v->map[le * v->copies + k].dev == (uint32_t)nd) {
                vd_log(VD_LOG_ERR, "volume '%s/%s': device '%s' already holds "
                       "another leg; choose another device", p->name, name, new_dev);
                r = -EINVAL;
                goto out;
            }
    if (p->devs[nd].pe_count - p->devs[nd].used_count < v->le_count) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': device '%s' has %llu free extents, "
               "the leg needs %llu", p->name, name, new_dev,
               (unsigned long long)(p->devs[nd].pe_count - p->devs[nd].used_count),
               (unsigned long long)v->le_count);
        r = -ENOSPC;
        goto out;
    }
    /* 1. every region may differ: durable on the legs that stay */
    pthread_rwlock_rdlock(&v->map_lock);
    pthread_mutex_lock(&m->lock);
    for (uint64_t i = 0; i < m->nregions; i++)
        bit_set(m, i, true);
    for (uint64_t b = 0; b < vd_div_up(m->nregions, BITS_PER_BLOCK); b++)
        lf |= bitmap_write_block_locked(m, b) & ~(1u << leg);
    pthread_mutex_unlock(&m->lock);
    pthread_rwlock_unlock(&v->map_lock);
    if (lf) {
        r = -EIO;
        goto out;
    }
    /* 2. the leg moves to the new device, stale */
    uint64_t pe = 0, le = 0;
    const struct vd_dev *d = &p->devs[nd];
    while (le < v->le_count && r == 0) {
        while (pe < d->pe_count && (d->used[pe / 8] & (1u << (pe % 8))))
            pe++;
        uint64_t n = 0;
        while (pe + n < d->pe_count && le + n < v->le_count &&
               !(d->used[(pe + n) / 8] & (1u << ((pe + n) % 8))))
            n++;
        struct vd_op_map om = { .h.type = VD_OP_MAP };
        om.vol = v->id;
        om.leg = (uint32_t)leg;
        om.le_start = le;
        om.count = n;
        om.dev = (uint32_t)nd;
        om.pe_start = pe;
        r = vd_opbuf_add(&ops, &om, sizeof(om));
        le += n;
        pe += n;
    }
    struct vd_op_leg ol = { .h.type = VD_OP_LEG_STATE };
    ol.vol = v->id;
    ol.leg = (uint32_t)leg;
    ol.state = VD_LEG_STALE;
    if (r == 0)
        r = vd_opbuf_add(&ops, &ol, sizeof(ol));
    if (r == 0)
        r = vd_md_commit(p, &ops);
    if (r < 0)
        goto out;
    /* 3. the new leg's bitmap copy, then the full rebuild */
    pthread_rwlock_rdlock(&v->map_lock);
    pthread_mutex_lock(&m->lock);
    for (uint64_t b = 0; b < vd_div_up(m->nregions, BITS_PER_BLOCK); b++)
        lf |= bitmap_write_block_locked(m, b);
    m->rs_requested = 1;
    pthread_mutex_unlock(&m->lock);
    pthread_rwlock_unlock(&v->map_lock);
    vd_log(VD_LOG_INFO, "volume '%s/%s': leg %d moved from '%s' to '%s'; "
           "rebuilding", p->name, name, leg, old_dev, new_dev);
out:
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    if (r == 0) {
        if (lf)
            fail_legs(v, lf);
        replica_kick(p);
    }
    return r;
}
