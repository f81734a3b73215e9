/* vdlvm: extent allocation planning for layouts (see pool/layout.h).
 * Reads the pool state, changes nothing: the MAP ops it appends change
 * the state when committed.  Admin thread, admin_lock held.  A device
 * being evacuated (no_alloc, pool/move.c) gets no new extents.
 *
 * Placement: new extents go where the use is lowest by percentage, nodes
 * first: each extent in turn goes to the node whose devices have the
 * lowest share of their extents in use (counting the extents already
 * given), and there to the device with the lowest share.  So a volume
 * larger than one device takes about equal shares of equal devices (the
 * research's 300 GB volume from 150 GB on each of two 200 GB disks), its
 * I/O spreads over nodes and disks, and an emptier device (one just added)
 * fills first; the pool tends to the balance `pool rebalance` restores.
 * Each device's share is taken first-fit and the shares are laid out one
 * device after the other, so a volume stays a few runs (MAP ops), not one
 * per extent.
 */
#include <errno.h>
#include <string.h>

#include "pool_int.h"

static bool usable(const struct vd_dev *d, const bool *allowed, uint32_t i)
{
    return d->used && d->state == VD_DEV_OK && !d->no_alloc &&
           (!allowed || allowed[i]);
}

uint64_t vd_extent_free_count(const vd_pool *p, const bool *allowed)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (usable(&p->devs[i], allowed, i))
            n += p->devs[i].pe_count - p->devs[i].used_count;
    return n;
}

/* a/b < c/d, for use shares (b, d > 0) */
static bool less(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    return (unsigned __int128)a * d < (unsigned __int128)c * b;
}

/* share[i]: how many of count extents device i takes (see the header).
 * -ENOSPC if the usable devices lack room. */
static int shares(const vd_pool *p, const bool *allowed, uint64_t count,
                  uint64_t *share)
{
    uint32_t node[VD_MAX_DEVS];
    uint64_t nused[VD_MAX_DEVS] = { 0 }, npe[VD_MAX_DEVS] = { 0 };

    memset(share, 0, sizeof(*share) * VD_MAX_DEVS);
    if (vd_extent_free_count(p, allowed) < count)
        return -ENOSPC;
    for (uint32_t i = 0; i < p->ndevs; i++) {
        const struct vd_dev *d = &p->devs[i];
        node[i] = i;
        if (!usable(d, allowed, i) || !d->pe_count)
            continue;
        for (uint32_t j = 0; j < i; j++)
            if (usable(&p->devs[j], allowed, j) &&
                !strcmp(p->devs[j].node, d->node)) {
                node[i] = node[j];
                break;
            }
        nused[node[i]] += d->used_count;
        npe[node[i]] += d->pe_count;
    }
    while (count) {
        uint32_t bn = VD_NO_DEV, bd = VD_NO_DEV;
        /* the node with the lowest use that has room */
        for (uint32_t i = 0; i < p->ndevs; i++) {
            const struct vd_dev *d = &p->devs[i];
            if (!usable(d, allowed, i) ||
                d->used_count + share[i] >= d->pe_count)
                continue;
            uint32_t n = node[i];
            if (bn == VD_NO_DEV || less(nused[n], npe[n], nused[bn], npe[bn]))
                bn = n;
        }
        if (bn == VD_NO_DEV)
            return -ENOSPC;
        /* there, the device with the lowest use that has room */
        for (uint32_t i = 0; i < p->ndevs; i++) {
            const struct vd_dev *d = &p->devs[i];
            if (node[i] != bn || !usable(d, allowed, i) ||
                d->used_count + share[i] >= d->pe_count)
                continue;
            if (bd == VD_NO_DEV ||
                less(d->used_count + share[i], d->pe_count,
                     p->devs[bd].used_count + share[bd], p->devs[bd].pe_count))
                bd = i;
        }
        share[bd]++;
        nused[bn]++;
        count--;
    }
    return 0;
}

/* Append MAP runs giving [le, le+count) of leg `leg` of volume vol free
 * PEs of device di, first fit. */
static int plan_dev(const vd_pool *p, uint32_t vol, uint32_t leg, uint64_t le,
                    uint64_t count, struct vd_opbuf *ops, uint32_t di)
{
    const struct vd_dev *d = &p->devs[di];
    uint64_t pe = 0;
    int r;

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
    return count ? -ENOSPC : 0;
}

/* Append to ops the MAP runs that give logical extents [le, le+count) of
 * leg `leg` of volume `vol` free physical extents of the allowed devices
 * (NULL: any usable one), placed as the header says.  Reads the state,
 * changes nothing.  -ENOSPC if too few. */
int vd_extent_plan_on(const vd_pool *p, uint32_t vol, uint32_t leg, uint64_t le,
                      uint64_t count, struct vd_opbuf *ops, const bool *allowed)
{
    uint64_t share[VD_MAX_DEVS];
    int r;

    if ((r = shares(p, allowed, count, share)) < 0)
        return r;
    for (uint32_t i = 0; i < p->ndevs; i++) {
        if (!share[i])
            continue;
        if ((r = plan_dev(p, vol, leg, le, share[i], ops, i)) < 0)
            return r;
        le += share[i];
    }
    return 0;
}

int vd_extent_plan(const vd_pool *p, uint32_t vol, uint32_t leg, uint64_t le,
                   uint64_t count, struct vd_opbuf *ops)
{
    return vd_extent_plan_on(p, vol, leg, le, count, ops, NULL);
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
