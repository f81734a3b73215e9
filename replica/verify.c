/* vdlvm: mirror verify and repair — comparing the legs region by region
 * (SHA-256), rewriting differing regions from the source, and rewriting a
 * leg after a read error from the leg that served the read (replica/, see
 * mirror.c for the whole and the leg writers).
 *
 * ---- Interleavings ---------------------------------------------------------
 *
 * read-repair vs write: the rewrite after a read error is a leg writer: it
 *   owns the range, re-reads the good leg under it and writes that, so an
 *   overlapping write is wholly before or after it on every leg, and its
 *   bit is durable first.
 * read-repair vs replace or leg failure: the read chose the good leg (in
 *   sync) under map_lock, but the repair takes its range after dropping
 *   map_lock; meanwhile that leg may have been replaced (its new device is
 *   empty, the leg stale) or failed.  Re-reading it then would write empty
 *   or old data over the leg that had the read error, perhaps the only in
 *   sync one.  So the repair re-reads good only if it is still in sync
 *   once the range is owned and map_lock held (as resync checks its
 *   source); otherwise it repairs nothing (the bad sector stays until a
 *   write or resync rewrites it).  Verify takes its legs and source under
 *   map_lock for the same reason.
 * verify vs write: verify owns each region while it reads the legs, so it
 *   never compares a half-written region; its repair is a leg writer.
 * CAW vs read-repair: COMPARE AND WRITE holds write_lock exclusive; the
 *   mirror read path never touches write_lock, and range owners never wait
 *   for write_lock, so CAW's read (and its repair) and write finish.
 *
 * ---- Progress (status, the progress bar) -----------------------------------
 *
 * Each running verify has a struct verify_run on its own stack, linked in
 * g_runs from its first region to its return.  The verifying thread owns it
 * and is its only writer: it updates done and differ under g_runs_lock
 * once per region (a region is at least one read per leg of 64 KiB or
 * more, so one uncontended lock per region costs nothing measurable).
 * vd_mirror_verify_progress (status, on a control-socket thread) copies
 * the entries under the same lock.  g_runs_lock is a leaf: taken with no
 * other lock held, nothing called under it, never held across I/O, so
 * status never waits for a verify's reads.  The progress callback of
 * vd_mirror_verify_cb runs on the verifying thread with no lock held.
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../pool/layout.h"
#include "mirror_int.h"
#include "vdreplica.h"

struct verify_run {
    struct verify_run *next;   /* g_runs, under g_runs_lock */
    const vd_pool *pool;       /* constant while linked */
    char vol[VD_NAME_MAX + 1]; /* the name it had when verify started */
    int repair;
    uint64_t done, total, differ; /* bytes, bytes, regions; g_runs_lock */
    int64_t t0_ms;
};

/* g_runs: the verifies running in this process, newest first */
static pthread_mutex_t g_runs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct verify_run *g_runs;

static void run_link(struct verify_run *run)
{
    pthread_mutex_lock(&g_runs_lock);
    run->next = g_runs;
    g_runs = run;
    pthread_mutex_unlock(&g_runs_lock);
}

static void run_unlink(struct verify_run *run)
{
    pthread_mutex_lock(&g_runs_lock);
    for (struct verify_run **pp = &g_runs; *pp; pp = &(*pp)->next)
        if (*pp == run) {
            *pp = run->next;
            break;
        }
    pthread_mutex_unlock(&g_runs_lock);
}

static void run_update(struct verify_run *run, uint64_t done, uint64_t differ)
{
    pthread_mutex_lock(&g_runs_lock);
    run->done = done;
    run->differ = differ;
    pthread_mutex_unlock(&g_runs_lock);
}

int vd_mirror_verify_progress(const vd_pool *pool, const char *vol,
                              struct vd_verify_progress **out, size_t *n)
{
    struct vd_verify_progress *v = NULL;
    size_t cnt = 0, i;
    int64_t now = vd_now_ms();

    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&g_runs_lock);
    for (struct verify_run *r = g_runs; r; r = r->next)
        cnt += r->pool == pool && (!vol || !strcmp(vol, r->vol));
    if (cnt && !(v = calloc(cnt, sizeof(*v)))) {
        pthread_mutex_unlock(&g_runs_lock);
        return -ENOMEM;
    }
    i = cnt; /* newest first in g_runs: oldest first out */
    for (struct verify_run *r = g_runs; r && i; r = r->next) {
        if (r->pool != pool || (vol && strcmp(vol, r->vol)))
            continue;
        i--;
        snprintf(v[i].vol, sizeof(v[i].vol), "%s", r->vol);
        v[i].repair = r->repair;
        v[i].done_bytes = r->done;
        v[i].total_bytes = r->total;
        v[i].differ = r->differ;
        v[i].elapsed_ms = now > r->t0_ms ? (uint64_t)(now - r->t0_ms) : 0;
    }
    pthread_mutex_unlock(&g_runs_lock);
    *out = v;
    *n = cnt;
    return 0;
}

/* After a read error on the legs in bad, rewrite them from leg good, as a
 * leg writer: the good leg is read again under the range, so a write that
 * overlaps lands wholly before or after the rewrite on every leg.  Never
 * touches write_lock (COMPARE AND WRITE may hold it).  No lock held. */
void mirror_read_repair(struct vd_vol *v, size_t len, uint64_t off,
                        uint32_t good, uint32_t bad)
{
    struct vd_mirror *m = mirror_of(v);
    struct lw w;
    void *tmp;
    bool io = false;
    int r;

    if (posix_memalign(&tmp, 4096, len ? len : 1))
        return;
    if (mirror_lw_begin(m, &w, off, len) < 0) {
        free(tmp);
        return;
    }
    pthread_rwlock_rdlock(&v->map_lock);
    /* good was in sync when the read was served, with map_lock held; since
     * then it may have been replaced (a new, empty device: stale) or have
     * failed.  Now that the range is ours and map_lock held, an in-sync
     * good holds the range's newest data (see "read-repair" at the top). */
    r = leg_state(v, good) == VD_LEG_INSYNC
            ? mirror_leg_io(v, good, tmp, len, off, false, 0)
            : -EAGAIN;
    pthread_rwlock_unlock(&v->map_lock);
    if (r == 0)
        r = mirror_lw_write(v, &w, tmp, len, off, VD_IO_FUA, bad, &io);
    mirror_lw_end(m, &w, r < 0 && io ? LW_DIVERGED : 0);
    if (r == 0)
        vd_log(VD_LOG_WARN,
               "volume '%s/%s': read error at %" PRIu64 " repaired from leg %u",
               v->pool->name, v->name, off, good);
    free(tmp);
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

/* Verify one region, owning it (no leg writer runs in it meanwhile); with
 * repair, the differing legs are rewritten from src as a leg writer.
 * *differ gets the differing legs.  0 or -EIO. */
static int verify_region(struct vd_vol *v, uint64_t i, int repair,
                         uint8_t **buf, uint32_t *differ)
{
    struct vd_mirror *m = mirror_of(v);
    uint64_t off = i << m->region_shift, len = region_size(m),
             size = mirror_space(v);
    unsigned char dg[3][32];
    struct lw w;
    uint32_t legs, written = 0, failed = 0;
    int src, r = 0;

    *differ = 0;
    if (off >= size)
        return 0;
    if (len > size - off)
        len = size - off;
    w.r0 = w.r1 = i;
    pthread_mutex_lock(&m->lock);
    if ((r = mirror_cover_region_locked(m, i)) < 0) {
        pthread_mutex_unlock(&m->lock);
        return -EIO;
    }
    mirror_range_wait_locked(m, &w.e, off, off + len);
    pthread_mutex_unlock(&m->lock);
    /* the legs and the source under map_lock: a replacement switches a
     * leg to a new, empty device (stale) only with map_lock exclusive */
    pthread_rwlock_rdlock(&v->map_lock);
    legs = nonfailed_legs(v);
    src = source_leg(v);
    for (uint32_t leg = 0; leg < v->copies && r == 0; leg++)
        if ((legs & (1u << leg)) &&
            (mirror_leg_io(v, leg, buf[leg], len, off, false, 0) < 0 ||
             sha256(buf[leg], len, dg[leg]) < 0))
            r = -EIO;
    for (uint32_t leg = 0; r == 0 && src >= 0 && leg < v->copies; leg++)
        if ((legs & (1u << leg)) && memcmp(dg[leg], dg[src], 32))
            *differ |= 1u << leg;
    if (r == 0 && *differ && repair) {
        pthread_mutex_lock(&m->lock);
        m->inflight[i]++;
        m->gen[i]++;
        pthread_mutex_unlock(&m->lock);
        if ((failed = mirror_bits_durable(m, i, i))) {
            r = -EIO;
        } else {
            for (uint32_t leg = 0; leg < v->copies; leg++)
                if ((*differ & (1u << leg)) &&
                    leg_state(v, leg) != VD_LEG_FAILED) {
                    if (mirror_leg_io(v, leg, buf[src], len, off, true,
                                      VD_IO_FUA) < 0)
                        failed |= 1u << leg;
                    else
                        written |= 1u << leg;
                }
            if (failed)
                r = -EIO;
        }
        pthread_mutex_lock(&m->lock);
        m->inflight[i]--;
        if (r == 0)
            m->diverged[i] = 0;
        else if (written)
            mirror_diverged_locked(m, i, i);
        pthread_mutex_unlock(&m->lock);
    }
    pthread_rwlock_unlock(&v->map_lock);
    pthread_mutex_lock(&m->lock);
    mirror_range_remove_locked(m, &w.e);
    pthread_mutex_unlock(&m->lock);
    if (failed)
        mirror_fail_legs(v, failed);
    return r;
}

int vd_mirror_verify(vd_pool *p, const char *name, int repair,
                     struct vd_verify_result *res)
{
    return vd_mirror_verify_cb(p, name, repair, res, NULL, NULL);
}

int vd_mirror_verify_cb(
    vd_pool *p, const char *name, int repair, struct vd_verify_result *res,
    void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg)
{
    struct vd_vol *v;
    struct vd_mirror *m;
    struct verify_run run = { .pool = p, .repair = repair };
    uint8_t *buf[3] = { NULL, NULL, NULL };
    uint64_t space;
    int r = 0;

    memset(res, 0, sizeof(*res));
    vd_admin_lock(p);
    v = mirror_find(p, name);
    if (v)
        v->open_count++; /* keeps it from being removed meanwhile */
    vd_admin_unlock(p);
    if (!v)
        return -errno;
    m = mirror_of(v);
    res->region_size = region_size(m);
    for (uint32_t leg = 0; leg < v->copies; leg++)
        if (posix_memalign((void **)&buf[leg], 4096, res->region_size)) {
            r = -ENOMEM;
            goto out;
        }
    pthread_mutex_lock(&m->lock);
    res->regions = m->nregions;
    pthread_mutex_unlock(&m->lock);
    space = mirror_space(v);
    snprintf(run.vol, sizeof(run.vol), "%s", name);
    run.total = space;
    run.t0_ms = vd_now_ms();
    run_link(&run);
    if (progress)
        progress(arg, 0, space);
    for (uint64_t i = 0; i < res->regions; i++) {
        uint32_t differ;
        uint64_t end;
        r = verify_region(v, i, repair, buf, &differ);
        if (r < 0) {
            vd_log(VD_LOG_ERR,
                   "volume '%s/%s': verify stopped at region %" PRIu64
                   ": I/O error",
                   p->name, v->name, i);
            break;
        }
        if (differ && repair)
            res->repaired++;
        if (differ) {
            if (res->ndiff % 64 == 0) {
                uint64_t *d =
                    realloc(res->diff, (res->ndiff + 64) * sizeof(*d));
                if (!d) {
                    r = -ENOMEM;
                    break;
                }
                res->diff = d;
            }
            res->diff[res->ndiff++] = i;
        }
        end = (i + 1) * res->region_size;
        if (end > space)
            end = space;
        run_update(&run, end, res->ndiff);
        if (progress)
            progress(arg, end, space);
    }
    run_unlink(&run);
out:
    for (uint32_t leg = 0; leg < 3; leg++)
        free(buf[leg]);
    mirror_put(v);
    return r;
}
