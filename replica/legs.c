/* vdlvm: mirror legs — placement of the legs on nodes or devices at
 * create and extend (the layout's check/plan ops), and leg replacement
 * (replica/, see mirror.c for the whole).
 *
 * ---- Interleavings ---------------------------------------------------------
 *
 * replace vs resync: vd_mirror_replace_leg sets excl, waits until no pass
 *   of the background thread runs (bg_busy, without the admin_lock), and
 *   passes do not start while excl is set.  The replaced leg becomes stale
 *   with every bit set (durable on the other legs, and on its new device
 *   before the map switches); the next resync starts from scratch from an
 *   in-sync leg.  So a new, empty leg is never a source nor marked in-sync
 *   before every region was copied to it.  The only in-sync leg is never
 *   replaced.
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

/* Wait until no background pass runs on m and none starts until
 * excl_end: leg replacement is exclusive with resync and the cleaner.  No
 * lock held (the passes take the admin_lock). */
static void excl_begin(struct vd_vol *v)
{
    struct vd_mirror *m = mirror_of(v);

    pthread_mutex_lock(&m->lock);
    while (m->excl)
        pthread_cond_wait(&m->cond, &m->lock);
    m->excl = 1;
    if (m->bg_busy) {
        mirror_hook(v, "replace-wait");
        vd_log(VD_LOG_DEBUG,
               "volume '%s/%s': replace waits for the running "
               "resync or clean pass",
               v->pool->name, v->name);
        while (m->bg_busy)
            pthread_cond_wait(&m->cond, &m->lock);
    }
    pthread_mutex_unlock(&m->lock);
}

static void excl_end(struct vd_vol *v)
{
    struct vd_mirror *m = mirror_of(v);

    pthread_mutex_lock(&m->lock);
    m->excl = 0;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

int vd_mirror_replace_leg(vd_pool *p, const char *name, const char *old_dev,
                          const char *new_dev)
{
    struct vd_vol *v;
    struct vd_mirror *m;
    struct vd_opbuf ops = { 0 };
    int leg = -1, nd = -1, r = 0;
    uint32_t lf = 0;
    uint64_t *bm = NULL, nb = 0;

    vd_admin_lock(p);
    v = mirror_find(p, name);
    if (v)
        v->open_count++; /* keeps it from being removed meanwhile */
    vd_admin_unlock(p);
    if (!v)
        return -errno;
    m = mirror_of(v);
    excl_begin(v);
    vd_admin_lock(p);
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (p->devs[i].used && !strcmp(p->devs[i].name, new_dev))
            nd = (int)i;
    if (nd < 0 || p->devs[nd].state != VD_DEV_OK || !p->devs[nd].bdev) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': device '%s' %s", p->name, name,
               new_dev, nd < 0 ? "is not in the pool" : "is not available");
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
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': no leg uses device '%s'; see 'vdlvm "
               "status %s/%s'",
               p->name, name, old_dev, p->name, name);
        r = -ENOENT;
        goto out;
    }
    bool other_insync = false;
    for (uint32_t k = 0; k < v->copies; k++)
        if ((int)k != leg && leg_state(v, k) == VD_LEG_INSYNC)
            other_insync = true;
    if (!other_insync) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': leg %d on device '%s' is the only "
               "in-sync leg: replacing it would lose the volume's data; bring "
               "another leg in sync first (see 'vdlvm status %s/%s')",
               p->name, name, leg, old_dev, p->name, name);
        r = -EBUSY;
        goto out;
    }
    for (uint64_t le = 0; le < v->le_count; le++)
        for (uint32_t k = 0; k < v->copies; k++)
            if ((int)k != leg &&
                v->map[le * v->copies + k].dev == (uint32_t)nd) {
                vd_log(VD_LOG_ERR,
                       "volume '%s/%s': device '%s' already holds "
                       "another leg; choose another device",
                       p->name, name, new_dev);
                r = -EINVAL;
                goto out;
            }
    if (p->devs[nd].pe_count - p->devs[nd].used_count < v->le_count) {
        vd_log(
            VD_LOG_ERR,
            "volume '%s/%s': device '%s' has %llu free extents, "
            "the leg needs %llu",
            p->name, name, new_dev,
            (unsigned long long)(p->devs[nd].pe_count - p->devs[nd].used_count),
            (unsigned long long)v->le_count);
        r = -ENOSPC;
        goto out;
    }
    /* 1. every region may differ: durable on the legs that stay */
    pthread_mutex_lock(&m->lock);
    for (uint64_t i = 0; i < m->nregions; i++)
        mirror_bit_set_locked(m, i, true);
    nb = nblocks(m->nregions);
    bm = calloc(nb ? nb * BM_WORDS : 1, 8);
    if (bm)
        memcpy(bm, m->bits, nwords(m->nregions) * 8);
    pthread_mutex_unlock(&m->lock);
    if (!bm) {
        r = -ENOMEM;
        goto out;
    }
    for (int tries = 0; tries < 2; tries++) {
        pthread_rwlock_rdlock(&v->map_lock);
        lf = mirror_bm_flush(m);
        pthread_rwlock_unlock(&v->map_lock);
        if (lf != (1u << leg))
            break;
        /* only the leg being replaced missed it: it goes anyway (another
         * leg is in sync), and then the blocks are complete without it */
        mirror_fail_legs(v, lf);
    }
    if (lf) {
        r = -EIO;
        goto out;
    }
    /* 2. the new extents, the first (the bitmap extent) written with every
     * bit set before the map switches to them */
    uint64_t pe = 0, le = 0, pe0 = UINT64_MAX;
    struct vd_dev *d = &p->devs[nd];
    while (le < v->le_count && r == 0) {
        while (pe < d->pe_count && (d->used[pe / 8] & (1u << (pe % 8))))
            pe++;
        uint64_t n = 0;
        while (pe + n < d->pe_count && le + n < v->le_count &&
               !(d->used[(pe + n) / 8] & (1u << ((pe + n) % 8))))
            n++;
        if (pe0 == UINT64_MAX)
            pe0 = pe;
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
    if (r == 0 && nb &&
        vd_dev_pwrite(d, bm, nb * BM_BLOCK,
                      d->data_offset + pe0 * p->extent_size, VD_IO_FUA) < 0) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': cannot write the bitmap to device "
               "'%s'; nothing changed",
               p->name, name, new_dev);
        r = -EIO;
    }
    /* 3. the leg moves to the new device, stale (apply waits for the
     * volume's I/O in flight through map_lock).  keep_data: the bitmap
     * extent holds what it must (every bit set), and the data extents are
     * never read before resync has copied every region onto them (the leg
     * is stale, every bit is set), so they are not zeroed. */
    ops.keep_data = true;
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
    /* 4. a resync from scratch, from a leg that stayed in sync */
    pthread_mutex_lock(&m->lock);
    m->rs_active = 0;
    m->rs_targets = 0;
    m->rs_cursor = 0;
    m->rs_requested = 1;
    pthread_mutex_unlock(&m->lock);
    vd_log(VD_LOG_INFO,
           "volume '%s/%s': leg %d moved from '%s' to '%s'; "
           "rebuilding",
           p->name, name, leg, old_dev, new_dev);
out:
    vd_admin_unlock(p);
    excl_end(v);
    vd_opbuf_free(&ops);
    free(bm);
    mirror_put(v);
    if (r == 0)
        vd_bg_kick(p);
    return r;
}
/* ---- the layout: creation, extension, metadata records ------------------ */
/* A mirror's bitmap is one extent: extent_size * 8 regions.  Checked before
 * the commit, so a create or extend beyond it changes nothing. */
static int bitmap_too_small(const vd_pool *p, const char *name, uint64_t size,
                            uint32_t region_shift, uint64_t capacity)
{
    uint64_t nregions = vd_div_up(size, 1ull << region_shift);

    if (nregions <= capacity)
        return 0;
    vd_log(VD_LOG_ERR,
           "volume '%s/%s': size %llu needs %llu regions, more than "
           "the %llu the bitmap extent holds; use a larger --region-size",
           p->name, name, (unsigned long long)size,
           (unsigned long long)nregions, (unsigned long long)capacity);
    return -EFBIG;
}

static uint64_t free_on(const vd_pool *p, const bool *allowed)
{
    return vd_extent_free_count(p, allowed);
}

/* Mirror placement: leg k gets the devices of one node (or, with
 * allow_same_node, one device) no other leg uses, choosing the group with
 * the most free extents that can hold the whole leg.  Fills leg_devs[k]
 * (per device: allowed) and returns 0, or logs what is missing. */
static int place_legs(const vd_pool *p, const char *name, uint32_t copies,
                      uint64_t need, int same_node,
                      bool leg_devs[3][VD_MAX_DEVS])
{
    bool taken[VD_MAX_DEVS] = { false };

    for (uint32_t k = 0; k < copies; k++) {
        uint64_t best_free = 0;
        int best = -1;
        for (uint32_t i = 0; i < p->ndevs; i++) {
            bool grp[VD_MAX_DEVS] = { false };
            const struct vd_dev *d = &p->devs[i];
            if (!d->used || d->state != VD_DEV_OK || taken[i])
                continue;
            for (uint32_t j = 0; j < p->ndevs; j++)
                grp[j] =
                    p->devs[j].used && !taken[j] &&
                    (same_node ? j == i : !strcmp(p->devs[j].node, d->node));
            /* with distinct nodes, a node some leg already uses is out */
            bool node_used = false;
            for (uint32_t j = 0; !same_node && j < p->ndevs; j++)
                if (taken[j] && !strcmp(p->devs[j].node, d->node))
                    node_used = true;
            if (node_used)
                continue;
            uint64_t f = free_on(p, grp);
            if (f >= need && f > best_free) {
                best_free = f;
                best = i;
                memcpy(leg_devs[k], grp, sizeof(grp));
            }
        }
        if (best < 0) {
            vd_log(
                VD_LOG_ERR,
                "volume '%s/%s': a mirror with %u copies needs %u "
                "%s with %llu free extents each, the pool has %u; add devices%s",
                p->name, name, copies, copies,
                same_node ? "devices" : "distinct nodes",
                (unsigned long long)need, k,
                same_node ? "" : " on other nodes or use --allow-same-node");
            return -ENOSPC;
        }
        for (uint32_t j = 0; j < p->ndevs; j++)
            if (leg_devs[k][j])
                taken[j] = true;
    }
    return 0;
}

static uint64_t opts_region_size(const struct vd_vol_opts *opts)
{
    return opts->region_size ? opts->region_size : VD_REGION_SIZE_DEFAULT;
}

int mirror_check(vd_pool *p, const char *name, const struct vd_vol_opts *opts,
                 struct vd_op_vol *ov)
{
    uint64_t rs = opts_region_size(opts);

    if (opts->copies < 2 || opts->copies > 3) {
        vd_log(VD_LOG_ERR, "volume '%s/%s': a mirror has 2 or 3 copies, not %u",
               p->name, name, opts->copies);
        return -EINVAL;
    }
    if ((rs & (rs - 1)) || rs < (64u << 10) || rs > p->extent_size) {
        vd_log(VD_LOG_ERR,
               "volume '%s/%s': region size %llu must be a power of "
               "two from 64KiB to the extent size",
               p->name, name, (unsigned long long)rs);
        return -EINVAL;
    }
    int r = bitmap_too_small(p, name, ov->size, (uint32_t)__builtin_ctzll(rs),
                             mirror_bm_capacity(p->extent_size));
    if (r < 0)
        return r;
    ov->copies = opts->copies;
    ov->flags = (uint32_t)__builtin_ctzll(rs);
    return 0;
}

/* Each leg on its own node (or device), the bitmap extent first. */
int mirror_plan(vd_pool *p, const char *name, const struct vd_vol_opts *opts,
                const struct vd_op_vol *ov, struct vd_opbuf *ops)
{
    bool legs[3][VD_MAX_DEVS];
    int r;

    memset(legs, 0, sizeof(legs));
    r = place_legs(p, name, ov->copies, ov->le_count, opts->allow_same_node,
                   legs);
    for (uint32_t k = 0; r == 0 && k < ov->copies; k++)
        r = vd_extent_plan_on(p, ov->id, k, 0, ov->le_count, ops, legs[k]);
    return r;
}

int mirror_check_extend(struct vd_vol *v, uint64_t new_size)
{
    struct vd_mirror *m = mirror_of(v);

    return bitmap_too_small(
        v->pool, v->name, new_size, v->flags & VD_VOLF_REGION_SHIFT_MASK,
        m ? mirror_max_regions(m) : mirror_bm_capacity(v->pool->extent_size));
}

/* A leg grows on its own node, never onto another leg's devices. */
int mirror_plan_extend(struct vd_vol *v, uint64_t le_count,
                       struct vd_opbuf *ops)
{
    vd_pool *p = v->pool;
    int r = 0;

    for (uint32_t leg = 0; leg < v->copies && r == 0; leg++) {
        bool allowed[VD_MAX_DEVS] = { false };
        const char *node = p->devs[v->map[leg].dev].node;
        for (uint32_t i = 0; i < p->ndevs; i++)
            allowed[i] = !strcmp(p->devs[i].node, node);
        for (uint64_t le = 0; le < v->le_count; le++)
            for (uint32_t k = 0; k < v->copies; k++) {
                uint32_t dv = v->map[le * v->copies + k].dev;
                if (k != leg && dv != VD_NO_DEV)
                    allowed[dv] = false;
            }
        r = vd_extent_plan_on(p, v->id, leg, v->le_count,
                              le_count - v->le_count, ops, allowed);
    }
    return r;
}
