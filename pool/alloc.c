/* vdlvm: extent allocation planning for layouts (see pool/layout.h).
 * Reads the pool state, changes nothing: the MAP ops it appends change
 * the state when committed.  Admin thread, admin_lock held.  A device
 * being evacuated (no_alloc, pool/move.c) gets no new extents. */
#include <errno.h>
#include <string.h>

#include "pool_int.h"

uint64_t vd_extent_free_count(const vd_pool *p, const bool *allowed)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (p->devs[i].used && p->devs[i].state == VD_DEV_OK &&
            !p->devs[i].no_alloc && (!allowed || allowed[i]))
            n += p->devs[i].pe_count - p->devs[i].used_count;
    return n;
}

/* Append to ops the MAP runs that give logical extents [le, le+count) of
 * leg `leg` of volume `vol` free physical extents, filling devices in pool
 * order.  Reads the state, changes nothing.  -ENOSPC if too few. */
int vd_extent_plan_on(const vd_pool *p, uint32_t vol, uint32_t leg, uint64_t le,
                      uint64_t count, struct vd_opbuf *ops, const bool *allowed)
{
    int r;

    for (uint32_t di = 0; di < p->ndevs && count; di++) {
        const struct vd_dev *d = &p->devs[di];
        if (!d->used || d->state != VD_DEV_OK || d->no_alloc ||
            (allowed && !allowed[di]))
            continue;
        uint64_t pe = 0;
        while (pe < d->pe_count && count) {
            if (d->used[pe / 8] & (1u << (pe % 8))) {
                pe++;
                continue;
            }
            uint64_t n = 1;
            while (pe + n < d->pe_count && n < count &&
                   !(d->used[(pe + n) / 8] & (1u << ((pe + n) % 8))))
                n++;
            struct vd_op_map om = { .h.type = VD_OP_MAP };
            om.vol = vol;
            om.leg = leg;
            om.le_start = le;
            om.count = n;
            om.dev = di;
            om.pe_start = pe;
            if ((r = vd_opbuf_add(ops, &om, sizeof(om))) < 0)
                return r;
            le += n;
            count -= n;
            pe += n;
        }
    }
    return count ? -ENOSPC : 0;
}

/* Linear placement: the extents are spread over the usable devices in
 * proportion to their free space, so a volume larger than one device takes
 * about equal shares of equal devices (the research's 300 GB volume from
 * 150 GB on each of two 200 GB disks) and its I/O spreads over disks and
 * nodes.  Each device's share is taken first-fit, in device order, and the
 * shares are laid out one device after the other. */
int vd_extent_plan(const vd_pool *p, uint32_t vol, uint32_t leg, uint64_t le,
                   uint64_t count, struct vd_opbuf *ops)
{
    uint64_t fr[VD_MAX_DEVS] = { 0 }, share[VD_MAX_DEVS] = { 0 };
    uint64_t total = 0, given = 0;
    int r;

    for (uint32_t i = 0; i < p->ndevs; i++) {
        const struct vd_dev *d = &p->devs[i];
        if (d->used && d->state == VD_DEV_OK && !d->no_alloc)
            total += fr[i] = d->pe_count - d->used_count;
    }
    if (total < count)
        return -ENOSPC;
    for (uint32_t i = 0; i < p->ndevs && total; i++) {
        share[i] = (uint64_t)((unsigned __int128)count * fr[i] / total);
        given += share[i];
    }
    for (uint32_t i = 0; given < count && i < p->ndevs; i++)
        if (share[i] < fr[i]) {
            share[i]++;
            given++;
        }
    for (uint32_t i = 0; i < p->ndevs; i++) {
        bool only[VD_MAX_DEVS] = { false };
        if (!share[i])
            continue;
        only[i] = true;
        if ((r = vd_extent_plan_on(p, vol, leg, le, share[i], ops, only)) < 0)
            return r;
        le += share[i];
    }
    return 0;
}

int vd_extent_no_space(const vd_pool *p, const char *name, uint64_t need)
{
    uint64_t have = vd_extent_free_count(p, NULL);
    vd_log(
        VD_LOG_ERR,
        "volume '%s/%s': needs %llu extents (%llu MiB) but the "
        "pool has %llu free (%llu MiB); add devices or choose a smaller size",
        p->name, name, (unsigned long long)need,
        (unsigned long long)(need * (p->extent_size >> 20)),
        (unsigned long long)have,
        (unsigned long long)(have * (p->extent_size >> 20)));
    return -ENOSPC;
}
