/* vdlvm: mirror resync — copying the regions whose bits are set from an
 * in-sync leg to the others, in the pool's background thread; failed legs
 * that answer again; the resync API (replica/, see mirror.c for the
 * whole, bitmap.c for the bits and the clearing rule).
 *
 * ---- Interleavings ---------------------------------------------------------
 *
 * write vs resync copy: the copy owns the whole region, so a write lands
 *   entirely before it (copied) or after it (on every non-failed leg,
 *   targets included); the bit is cleared after the flush only if gen did
 *   not move.  A target failing during the pass is not written: no bit is
 *   cleared while any leg is failed, nor for a copy that missed a leg.
 * leg failure during resync: copies go only to legs non-failed at the
 *   copy; a bit is cleared only when the copy reached every leg and no leg
 *   is failed when it is cleared; a target that fails is not marked
 *   in-sync; a leg that comes back during a rate-limited resync makes it
 *   start over from the first region.
 * source failing during resync: the pass checks that its source is in
 *   sync before it picks a region, but the copy then waits for the region
 *   (range FIFO) behind writers, and one of them may miss the source and
 *   fail it (mirror_fail_legs, with the range still owned) — then the
 *   source's copy of the region is old while another in-sync leg holds the
 *   acknowledged write.  So copy_region checks the source again once it
 *   owns the region: any writer of the region that missed the source has
 *   recorded that before giving the range back, and none can start while
 *   the copy owns it, so a source still in sync there holds the newest
 *   data for the whole copy.  A failed source copies nothing (-EAGAIN):
 *   the cursor goes back to the region and the next pass picks another
 *   in-sync leg as source (or stops if no target is left).
 * failed leg returning (mirror_probe_failed_legs): with map_lock exclusive (no
 *   I/O of the volume in flight, no bitmap write running) the whole
 *   in-memory bitmap is written to the leg and it is committed stale; from
 *   then on every bitmap write reaches it, so dbits stay true.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../pool/layout.h"
#include "mirror_int.h"
#include "vdreplica.h"

/* A rate-limited resync waits at most this long inside a pass; a longer
 * wait ends the pass and the background thread comes back later. */
#define RATE_SLICE_NS    (100 * 1000000LL)
#define RATE_MAX_WAIT_NS (86400LL * 1000000000LL)
/* ---- resync ------------------------------------------------------------- */
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
    o.done = done > total ? total : done;
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

/* Copy region i from leg src to every non-failed leg in targets, as a leg
 * writer owning the whole region.  Adds i to b when the copy reached every
 * leg.  0, -EAGAIN (src is no longer in sync: nothing copied), or -EIO
 * (the source could not be read or a target failed: legs marked failed). */
static int copy_region(struct vd_vol *v, uint64_t i, int src, uint32_t targets,
                       void *buf, struct batch *b)
{
    struct vd_mirror *m = mirror_of(v);
    uint64_t off = i << m->region_shift, len = region_size(m);
    uint64_t size = mirror_space(v);
    uint32_t written = 0, failed = 0, bf;
    unsigned how = 0;
    struct lw w;
    int r = 0;

    if (off >= size)
        return 0;
    if (len > size - off)
        len = size - off;
    if (mirror_lw_begin(m, &w, off, len) < 0)
        return -EIO;
    /* The source must still be in sync now that the region is ours: a
     * write of this region that missed src recorded src failed before it
     * gave the range back, so from here src holds the region's newest data
     * (checked before the pass chose this region is not enough). */
    if (leg_state(v, (uint32_t)src) != VD_LEG_INSYNC) {
        r = -EAGAIN;
        goto end;
    }
    pthread_rwlock_rdlock(&v->map_lock);
    if ((bf = mirror_bits_durable(m, w.r0, w.r1))) {
        pthread_rwlock_unlock(&v->map_lock);
        mirror_fail_legs(v, bf);
        r = -EIO;
        goto end;
    }
    if (mirror_leg_io(v, (uint32_t)src, buf, len, off, false, 0) < 0) {
        pthread_rwlock_unlock(&v->map_lock);
        mirror_fail_legs(v, 1u << src);
        r = -EIO;
        goto end;
    }
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        if (!(targets & (1u << leg)) || leg_state(v, leg) == VD_LEG_FAILED)
            continue;
        if (mirror_leg_io(v, leg, buf, len, off, true, 0) < 0)
            failed |= 1u << leg;
        else
            written |= 1u << leg;
    }
    pthread_rwlock_unlock(&v->map_lock);
    if (failed) {
        if (mirror_fail_legs(v, failed) < 0)
            how = LW_DIVERGED;
        r = -EIO;
    }
end:
    pthread_mutex_lock(&m->lock);
    if (r == 0 && (written | (1u << src)) == all_legs(v)) {
        /* Equal on every leg now; our own count is the only one (the
         * region is ours), so gen is the copy's. */
        m->diverged[i] = 0;
        if (m->inflight[i] == 1)
            mirror_batch_add_locked(b, i, m->gen[i]);
    }
    pthread_mutex_unlock(&m->lock);
    mirror_lw_end(m, &w, how);
    return r;
}

/* Start or continue the resync of v; returns 0 when it finished, -EAGAIN
 * when it pauses (rate limit, stop, leg replacement, leg change) and goes
 * on at a later call, -EIO on a failure (legs marked failed). */
int mirror_resync_volume(struct vd_vol *v)
{
    struct vd_mirror *m = mirror_of(v);
    vd_pool *p = v->pool;
    uint64_t rs = region_size(m);
    struct batch b = { 0 };
    void *buf = NULL;
    int src, r = 0;
    uint32_t targets;
    bool fresh;

    pthread_mutex_lock(&m->lock);
    if (m->excl ||
        (m->rs_active && mono_ns() < m->rs_next_ns - RATE_SLICE_NS)) {
        pthread_mutex_unlock(&m->lock);
        return -EAGAIN;
    }
    m->bg_busy = 1;
    pthread_mutex_unlock(&m->lock);

    src = source_leg(v);
    targets = src < 0 ? 0 : nonfailed_legs(v) & ~(1u << src);
    if (src < 0 || !targets) {
        /* No source (said once; 'vdlvm resync' asks again), or every other
         * leg is failed: nothing to copy to; the probe that notices a leg
         * coming back asks for the resync again. */
        if (src < 0)
            vd_log(VD_LOG_ERR, "volume '%s/%s': no in-sync leg to resync from",
                   p->name, v->name);
        pthread_mutex_lock(&m->lock);
        m->rs_requested = 0;
        m->rs_active = 0;
        pthread_mutex_unlock(&m->lock);
        r = src < 0 ? -EIO : 0;
        goto out;
    }
    if (posix_memalign(&buf, 4096, rs)) {
        r = -ENOMEM;
        goto out;
    }
    pthread_mutex_lock(&m->lock);
    fresh = !m->rs_active;
    if (!fresh && (targets & ~m->rs_targets))
        m->rs_cursor = 0; /* a leg came back: over again, for it */
    m->rs_targets |= targets;
    uint64_t need = m->dirty * rs;
    pthread_mutex_unlock(&m->lock);
    if (fresh) {
        uint64_t total, done;
        vd_admin_lock(p);
        if (mv_of(v)->rs_running &&
            mv_of(v)->rs_total >= mv_of(v)->rs_done + need) {
            total = mv_of(v)->rs_total; /* resume: progress survives restarts */
            done = mv_of(v)->rs_total - need;
            if (done < mv_of(v)->rs_done)
                done = mv_of(v)->rs_done;
        } else {
            total = need + mv_of(v)->rs_done * !!mv_of(v)->rs_running;
            done = mv_of(v)->rs_running ? mv_of(v)->rs_done : 0;
        }
        vd_admin_unlock(p);
        if (commit_resync(v, 1, total, done, 0) < 0) {
            r = -EIO;
            goto out;
        }
        pthread_mutex_lock(&m->lock);
        m->rs_active = 1;
        m->rs_targets = targets;
        m->rs_cursor = 0;
        m->rs_total = total;
        m->rs_done = m->rs_done0 = done;
        m->rs_t0_ns = m->rs_commit_ns = mono_ns();
        m->rs_next_ns = 0;
        pthread_mutex_unlock(&m->lock);
        vd_log(VD_LOG_INFO,
               "volume '%s/%s': resync of %" PRIu64 " bytes from "
               "leg %d started (%" PRIu64 " done before)",
               p->name, v->name, total - done, src, done);
    }

    for (;;) {
        pthread_mutex_lock(&m->lock);
        uint64_t i = m->rs_cursor;
        while (i < m->nregions && !bit_get(m, i))
            i++;
        m->rs_cursor = i;
        bool end = i >= m->nregions, excl = m->excl;
        int64_t next = m->rs_next_ns;
        pthread_mutex_unlock(&m->lock);
        if (end)
            break;
        if (excl || vd_bg_stopping(p)) {
            r = -EAGAIN;
            break;
        }
        int64_t now = mono_ns();
        if (now < next) {
            if (next - now > RATE_SLICE_NS) {
                r = -EAGAIN; /* the thread comes back for it */
                break;
            }
            vd_bg_sleep(p, next - now);
            continue;
        }
        if (leg_state(v, (uint32_t)src) != VD_LEG_INSYNC) {
            r = -EAGAIN; /* the next pass picks another source */
            break;
        }
        targets = nonfailed_legs(v) & ~(1u << src);
        if (!targets) {
            r = -EAGAIN;
            break;
        }
        pthread_mutex_lock(&m->lock);
        m->rs_cursor = i + 1;
        pthread_mutex_unlock(&m->lock);
        int cr = copy_region(v, i, src, targets, buf, &b);
        if (cr == -EAGAIN) {
            /* src failed meanwhile: region i again, from another source */
            pthread_mutex_lock(&m->lock);
            if (m->rs_cursor > i)
                m->rs_cursor = i;
            pthread_mutex_unlock(&m->lock);
            r = -EAGAIN;
            break;
        }
        if (cr < 0) {
            r = -EIO;
            break;
        }
        uint64_t off = i << m->region_shift, size = mirror_space(v);
        uint64_t n = off >= size ? 0 : size - off < rs ? size - off : rs;
        int64_t t = mono_ns();
        bool commit;
        pthread_mutex_lock(&m->lock);
        m->rs_done += n;
        if (t > m->rs_t0_ns)
            m->rate_bps = (uint64_t)((double)(m->rs_done - m->rs_done0) * 1e9 /
                                     (double)(t - m->rs_t0_ns));
        if (m->rate_limit) {
            double cost = (double)n * 1e9 / (double)m->rate_limit;
            int64_t base = m->rs_next_ns > now ? m->rs_next_ns : now;
            m->rs_next_ns =
                base + (cost > (double)RATE_MAX_WAIT_NS ? RATE_MAX_WAIT_NS
                                                        : (int64_t)cost);
        }
        commit = t - m->rs_commit_ns >= 1000000000LL;
        if (commit)
            m->rs_commit_ns = t;
        uint64_t total = m->rs_total, done = m->rs_done;
        pthread_mutex_unlock(&m->lock);
        if (commit || b.n >= 64) {
            /* the copies durable, then their bits cleared, then progress */
            if (mirror_batch_commit(v, &b, false) < 0) {
                r = -EIO;
                break;
            }
            if (commit)
                commit_resync(v, 1, total, done, 0);
        }
    }
    /* Flush what was copied (every non-failed leg) before any bit goes or
     * any target is marked in-sync. */
    if (mirror_batch_commit(v, &b, false) < 0)
        r = -EIO;
    pthread_mutex_lock(&m->lock);
    uint64_t total = m->rs_total, done = m->rs_done;
    uint32_t rs_targets = m->rs_targets;
    if (r == 0 && m->rs_cursor < m->nregions)
        r = -EAGAIN; /* a write diverged behind the cursor: go on */
    pthread_mutex_unlock(&m->lock);
    if (r == 0) {
        if (commit_resync(v, 0, total, total, rs_targets) < 0) {
            r = -EIO;
        } else {
            vd_log(VD_LOG_INFO,
                   "volume '%s/%s': resync done, %" PRIu64 " bytes", p->name,
                   v->name, done - m->rs_done0);
        }
    } else if (r == -EIO || vd_bg_stopping(p)) {
        commit_resync(v, 1, total, done, 0);
    }
    pthread_mutex_lock(&m->lock);
    if (r == 0) {
        m->rs_active = 0;
        m->rs_targets = 0;
        /* a write that diverged meanwhile asked again: then run again */
        if (m->rs_cursor >= m->nregions)
            m->rs_requested = 0;
    } else if (r == -EIO) {
        m->rs_active = 0;
        m->rs_targets = 0;
    }
    pthread_mutex_unlock(&m->lock);
out:
    pthread_mutex_lock(&m->lock);
    m->bg_busy = 0;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    free(buf);
    free(b.c);
    return r;
}

/* A failed leg whose devices answer again becomes stale and is resynced. */
void mirror_probe_failed_legs(struct vd_vol *v)
{
    struct vd_mirror *m = mirror_of(v);
    vd_pool *p = v->pool;
    time_t now = time(NULL);
    uint32_t back = 0;
    uint64_t *bm = NULL, nb;
    char buf[512];
    int r = 0;

    if (now == m->last_probe)
        return;
    m->last_probe = now;
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        uint64_t doff = 0;
        struct vd_dev *d;
        if (leg_state(v, leg) != VD_LEG_FAILED)
            continue;
        /* device structs stay; bdevs change only on this thread */
        pthread_rwlock_rdlock(&v->map_lock);
        d = vd_leg_bitmap_locate(v, leg, &doff);
        pthread_rwlock_unlock(&v->map_lock);
        if (d && d->bdev && d->state == VD_DEV_OK &&
            vd_dev_pread_raw(d, buf, sizeof(buf), doff) == 0 &&
            mirror_leg_flush(v, leg) == 0)
            back |= 1u << leg;
    }
    if (!back)
        return;

    /* The returning leg's copy missed every bit set while it was away.
     * With map_lock exclusive no I/O of the volume and no bitmap write is
     * in flight: the leg gets the bitmap as it is in memory, then becomes
     * stale (a bitmap-writing target) before any I/O starts again. */
    vd_admin_lock(p);
    pthread_rwlock_wrlock(&v->map_lock);
    pthread_mutex_lock(&m->lock);
    nb = nblocks(m->nregions);
    bm = calloc(nb ? nb * BM_WORDS : 1, 8);
    if (bm)
        memcpy(bm, m->bits, nwords(m->nregions) * 8);
    pthread_mutex_unlock(&m->lock);
    for (uint32_t leg = 0; bm && nb && leg < v->copies; leg++) {
        uint64_t doff;
        struct vd_dev *d;
        if (!(back & (1u << leg)))
            continue;
        d = vd_leg_bitmap_locate(v, leg, &doff);
        if (!d || !d->bdev ||
            vd_dev_pwrite(d, bm, nb * BM_BLOCK, doff, VD_IO_FUA) < 0)
            back &= ~(1u << leg);
    }
    if (!bm)
        back = 0;
    struct vd_opbuf ops = { 0 };
    for (uint32_t leg = 0; leg < v->copies; leg++) {
        struct vd_op_leg ol = { .h.type = VD_OP_LEG_STATE };
        if (!(back & (1u << leg)))
            continue;
        ol.vol = v->id;
        ol.leg = leg;
        ol.state = VD_LEG_STALE;
        if (r == 0)
            r = vd_opbuf_add(&ops, &ol, sizeof(ol));
    }
    if (r == 0 && ops.nops)
        r = vd_md_commit(p, &ops);
    pthread_rwlock_unlock(&v->map_lock);
    vd_admin_unlock(p);
    vd_opbuf_free(&ops);
    free(bm);
    if (r == 0 && back) {
        vd_log(VD_LOG_WARN,
               "volume '%s/%s': failed leg(s) answer again; resync "
               "starts",
               p->name, v->name);
        pthread_mutex_lock(&m->lock);
        m->rs_requested = 1;
        /* missed the copies since it failed: a resync under way starts
         * over for it (mirror_resync_volume sees a new target) */
        m->rs_targets &= ~back;
        pthread_mutex_unlock(&m->lock);
    }
}
int vd_mirror_resync_start(vd_pool *p, const char *name, uint64_t rate_limit)
{
    struct vd_vol *v;

    vd_admin_lock(p);
    v = mirror_find(p, name);
    if (!v) {
        vd_admin_unlock(p);
        return -errno;
    }
    pthread_mutex_lock(&mirror_of(v)->lock);
    mirror_of(v)->rate_limit = rate_limit;
    mirror_of(v)->rs_next_ns = 0; /* the new rate counts from now */
    mirror_of(v)->rs_requested = 1;
    pthread_mutex_unlock(&mirror_of(v)->lock);
    vd_admin_unlock(p);
    vd_bg_kick(p);
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
        v = mirror_find(p, name);
        if (!v) {
            vd_admin_unlock(p);
            return -errno;
        }
        pthread_mutex_lock(&mirror_of(v)->lock);
        busy = mirror_of(v)->rs_active || mirror_of(v)->rs_requested;
        pthread_mutex_unlock(&mirror_of(v)->lock);
        failed_src = source_leg(v) < 0;
        vd_admin_unlock(p);
        if (!busy)
            return 0;
        if (failed_src)
            return -EIO;
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t el = (now.tv_sec - t0.tv_sec) * 1000 +
                      (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (timeout_ms && el >= timeout_ms)
            return -ETIMEDOUT;
        usleep(50000);
    }
}
