/* vdlvm: pool metadata — the op log, its records and the in-memory state.
 *
 * The state is only ever changed by applying ops (vd_state_apply), both when
 * replaying the log at open and after a commit, so what is on disk and what
 * is in memory cannot drift apart.  A checkpoint is the state written as the
 * ops that rebuild it from nothing.
 *
 * Admin thread only, except that vd_state_apply takes a volume's map_lock
 * exclusively when it replaces a live volume's mapping.
 *
 * A commit (admin_lock held throughout): zero the extents the ops newly map
 * and flush them (so a crash after the commit never shows old data through
 * the new mapping), write the record to every copy (FUA; all copies at
 * once, one thread each, joined before the result is counted), then apply.
 *
 * Quorum intersection.  n is the number of metadata copies the pool has:
 * its devices flagged VD_DEVF_MD in the state, present or not (at most
 * VD_MAX_MD_COPIES).  Open needs Q = n/2 + 1 of them (pool.c); a commit is
 * acknowledged (0, then applied) only when its record reached
 * W = n - Q + 1 copies (vd_md_write_quorum: n=1: 1, n=2: 1, n=3: 2).
 * Q + W > n, so every set of copies that can open the pool holds every
 * acknowledged commit, and open sees the newest acknowledged state.  With
 * n = 2 a commit to the one live copy is acknowledged (a 2-node mirror
 * stays writable when a node dies); reopening then needs both copies or
 * VD_OPEN_PARTIAL, which is what protects it.
 *
 * A commit below W fails (-EIO, naming the copies it did not reach) and
 * the in-memory state is not changed.  It still uses up its sequence
 * number: the record may have landed on some copies, and two different
 * records must never carry one number.  Every copy then gets a
 * checkpoint at the next commit (the copies that took the record hold
 * ops the state does not have; the others have a gap), written into the
 * half that does not hold the copy's last chain.  A record that landed
 * on fewer than W copies may win at a later open (it is newest there):
 * an unacknowledged commit may or may not survive, as after a crash
 * during a commit; an acknowledged one always does.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypt.h"
#include "pool_int.h"
#include "tier.h"

/* Physical extents of one device at most (its extent map: 512 MiB). */
#define VD_MAX_PE (1ull << 32)

void vd_opbuf_free(struct vd_opbuf *b)
{
    free(b->buf);
    memset(b, 0, sizeof(*b));
}

int vd_opbuf_add(struct vd_opbuf *b, const void *op, size_t len)
{
    /* an op's length field is 16 bits and a reader refuses a length that
     * is not a multiple of 8 (docs/format.md section 4): never write one */
    if (len < sizeof(struct vd_op_hdr) || len > 0xfff8 || len % 8)
        return -EINVAL;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *n = realloc(b->buf, cap);
        if (!n)
            return -ENOMEM;
        b->buf = n;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, op, len);
    ((struct vd_op_hdr *)(b->buf + b->len))->len = (uint16_t)len;
    b->len += len;
    b->nops++;
    return 0;
}

struct vd_vol *vd_vol_find(const vd_pool *p, const char *name)
{
    for (uint32_t i = 0; i < p->nvols; i++)
        if (strcmp(p->vols[i]->name, name) == 0)
            return p->vols[i];
    return NULL;
}

struct vd_vol *vd_vol_find_id(const vd_pool *p, uint32_t id)
{
    for (uint32_t i = 0; i < p->nvols; i++)
        if (p->vols[i]->id == id)
            return p->vols[i];
    return NULL;
}

static void vol_free(struct vd_vol *v)
{
    if (!v)
        return;
    vd_vol_dtr(v);
    if (v->upper && v->upper->fini)
        v->upper->fini(v);
    if (v->lops && v->lops->fini)
        v->lops->fini(v);
    pthread_rwlock_destroy(&v->map_lock);
    pthread_rwlock_destroy(&v->write_lock);
    free(v->map);
    free(v);
}

void vd_state_free(vd_pool *p)
{
    for (uint32_t i = 0; i < p->nvols; i++)
        vol_free(p->vols[i]);
    free(p->vols);
    p->vols = NULL;
    p->nvols = 0;
    for (uint32_t i = 0; i < p->ndevs; i++)
        free(p->devs[i].used);
    vd_tier_free(p);
}

/* ---- applying ops ----------------------------------------------------- */
static bool pe_used(const struct vd_dev *d, uint64_t pe)
{
    return d->used[pe / 8] & (1u << (pe % 8));
}

static void pe_set(struct vd_dev *d, uint64_t pe, bool on)
{
    if (on) {
        d->used[pe / 8] |= 1u << (pe % 8);
        d->used_count++;
    } else {
        d->used[pe / 8] &= ~(1u << (pe % 8));
        d->used_count--;
    }
}

static void vol_release_extents(vd_pool *p, struct vd_vol *v, uint64_t from_le)
{
    for (uint64_t le = from_le; le < v->le_count; le++)
        for (uint32_t leg = 0; leg < v->copies; leg++) {
            struct vd_pe *e = &v->map[le * v->copies + leg];
            if (e->dev != VD_NO_DEV && e->dev < p->ndevs)
                pe_set(&p->devs[e->dev], e->pe, false);
            e->dev = VD_NO_DEV;
        }
}

#define BAD(...)                         \
    do {                                 \
        vd_log(VD_LOG_ERR, __VA_ARGS__); \
        return -EINVAL;                  \
    } while (0)

static int apply_dev(vd_pool *p, const struct vd_op_dev *o)
{
    struct vd_dev *d;

    if (o->idx >= p->ndevs) {
        /* Only the pool's device table sized at open may hold devices. */
        BAD("pool '%s': metadata names device index %u beyond %u devices",
            p->name, o->idx, p->ndevs);
    }
    d = &p->devs[o->idx];
    if (d->used)
        BAD("pool '%s': metadata adds device index %u twice", p->name, o->idx);
    /* Bounds what the device's extent map costs in memory: the extents
     * must fit in the bytes the device claims, and there are at most
     * VD_MAX_PE of them (metadata written by another host is not
     * trusted). */
    if (o->data_offset > o->size || !p->extent_size ||
        o->pe_count > (o->size - o->data_offset) / p->extent_size ||
        o->pe_count > VD_MAX_PE)
        BAD("pool '%s': metadata gives device index %u %llu extents, more "
            "than its %llu bytes hold",
            p->name, o->idx, (unsigned long long)o->pe_count,
            (unsigned long long)o->size);
    memcpy(d->uuid, o->uuid, 16);
    memcpy(d->name, o->name, VD_NAME_MAX);
    d->name[VD_NAME_MAX] = 0;
    memcpy(d->node, o->node, VD_NAME_MAX);
    d->node[VD_NAME_MAX] = 0;
    d->flags = o->flags;
    d->no_alloc = !!(o->flags & VD_DEVF_DRAIN);
    d->size = o->size;
    d->pe_count = o->pe_count;
    d->data_offset = o->data_offset;
    d->used = calloc(vd_div_up(o->pe_count ? o->pe_count : 1, 8), 1);
    d->used_count = 0;
    if (!d->used)
        return -ENOMEM;
    return 0;
}

/* Extents of every device of the pool: no thick volume maps more. */
static uint64_t pool_pe_total(const vd_pool *p)
{
    uint64_t n = 0;

    for (uint32_t i = 0; i < p->ndevs; i++)
        if (p->devs[i].used)
            n += p->devs[i].pe_count;
    return n;
}

/* A volume's extent count as metadata gives it: le_count extents per leg
 * (meta extents first) on at most the pool's extents.  Its size is checked
 * against its data extents once the whole op list is applied
 * (vols_size_ok): a thin volume's VD_OP_STACK follows its
 * VD_OP_VOL_CREATE, and only a volume with nothing stacked on it must fit
 * its size in its extents. */
static bool vol_les_ok(const vd_pool *p, uint64_t le_count, uint32_t copies,
                       uint32_t meta)
{
    return le_count >= meta && copies >= 1 &&
           le_count <= pool_pe_total(p) / copies;
}

/* The I/O paths of linear and mirror index the map by offset /
 * extent_size without another check: a volume they serve directly must
 * hold its size in its data extents. */
static int vols_size_ok(const vd_pool *p)
{
    if (p->nvols && !p->extent_size)
        BAD("pool '%s': metadata has volumes but no extent size", p->name);
    for (uint32_t i = 0; i < p->nvols; i++) {
        const struct vd_vol *v = p->vols[i];
        uint64_t les =
            v->size / p->extent_size + (v->size % p->extent_size != 0);
        if (!v->upper && les > v->le_count - v->data_le0)
            BAD("pool '%s': volume '%s': metadata gives %llu bytes on %llu "
                "data extents per leg, which cannot hold them",
                p->name, v->name, (unsigned long long)v->size,
                (unsigned long long)(v->le_count - v->data_le0));
    }
    return 0;
}

static int apply_vol_create(vd_pool *p, const struct vd_op_vol *o)
{
    struct vd_vol *v, **nv;
    const struct vd_layout_ops *lops = vd_layout_get(o->layout);
    char name[VD_NAME_MAX + 1];

    memcpy(name, o->name, VD_NAME_MAX);
    name[VD_NAME_MAX] = 0;
    if (vd_vol_find_id(p, o->id) || vd_vol_find(p, name))
        BAD("pool '%s': metadata creates volume '%s' (id %u) twice", p->name,
            name, o->id);
    if (o->copies < 1 || o->copies > 3 || !lops || lops->stack)
        BAD("pool '%s': volume '%s': bad layout %u copies %u", p->name, name,
            o->layout, o->copies);
    if (!vol_les_ok(p, o->le_count, o->copies, lops->meta_extents))
        BAD("pool '%s': volume '%s': metadata gives it %llu extents per leg, "
            "more than the pool has",
            p->name, name, (unsigned long long)o->le_count);
    v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->pool = p;
    v->id = o->id;
    strcpy(v->name, name);
    v->size = o->size;
    v->layout = o->layout;
    v->copies = o->copies;
    v->le_count = o->le_count;
    v->flags = o->flags;
    v->data_le0 = lops->meta_extents;
    v->lops = lops;
    if (lops->init) {
        int r = lops->init(v, o);
        if (r < 0) {
            free(v);
            return r; /* -EINVAL logged by the layout, or -ENOMEM */
        }
    }
    v->map =
        malloc((o->le_count ? o->le_count : 1) * o->copies * sizeof(*v->map));
    nv = realloc(p->vols, (p->nvols + 1) * sizeof(*nv));
    if (!v->map || !nv) {
        if (lops->fini)
            lops->fini(v);
        free(v->map);
        free(v);
        if (nv)
            p->vols = nv;
        return -ENOMEM;
    }
    p->vols = nv;
    for (uint64_t i = 0; i < o->le_count * o->copies; i++)
        v->map[i] = (struct vd_pe){ .dev = VD_NO_DEV };
    /* Writer-preferring: compare-and-write (write_lock exclusive) and
     * extend (map_lock exclusive) must not starve behind a stream of
     * readers.  The price: nothing may take either read lock twice in one
     * thread (the second rdlock would wait behind a queued writer that
     * waits for the first), which pool/ never does. */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&v->map_lock, &ra);
    pthread_rwlock_init(&v->write_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    p->vols[p->nvols++] = v;
    return 0;
}

static int apply_vol_remove(vd_pool *p, const struct vd_op_vol *o)
{
    for (uint32_t i = 0; i < p->nvols; i++) {
        struct vd_vol *v = p->vols[i];
        if (v->id != o->id)
            continue;
        if (v->open_count)
            BAD("pool '%s': volume '%s' removed while open", p->name, v->name);
        vol_release_extents(p, v, 0);
        vol_free(v);
        p->vols[i] = p->vols[--p->nvols];
        return 0;
    }
    BAD("pool '%s': metadata removes unknown volume id %u", p->name, o->id);
}

static int apply_vol_resize(vd_pool *p, const struct vd_op_vol *o)
{
    struct vd_vol *v = vd_vol_find_id(p, o->id);
    struct vd_pe *map;

    if (!v)
        BAD("pool '%s': metadata resizes unknown volume id %u", p->name, o->id);
    if (o->le_count < v->le_count || o->size < v->size)
        BAD("pool '%s': volume '%s': metadata shrinks it", p->name, v->name);
    if (!vol_les_ok(p, o->le_count, v->copies, v->data_le0))
        BAD("pool '%s': volume '%s': metadata gives it %llu extents per leg, "
            "more than the pool has",
            p->name, v->name, (unsigned long long)o->le_count);
    map = malloc((o->le_count ? o->le_count : 1) * v->copies * sizeof(*map));
    if (!map)
        return -ENOMEM;
    memcpy(map, v->map, v->le_count * v->copies * sizeof(*map));
    for (uint64_t i = v->le_count * v->copies; i < o->le_count * v->copies; i++)
        map[i] = (struct vd_pe){ .dev = VD_NO_DEV };
    /* I/O threads hold map_lock shared for the whole request. */
    pthread_rwlock_wrlock(&v->map_lock);
    free(v->map);
    v->map = map;
    v->le_count = o->le_count;
    __atomic_store_n(&v->size, o->size, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&v->map_lock);
    return 0;
}

static int apply_map(vd_pool *p, const struct vd_op_map *o)
{
    struct vd_vol *v = vd_vol_find_id(p, o->vol);
    struct vd_dev *d = NULL;

    if (!v)
        BAD("pool '%s': metadata maps unknown volume id %u", p->name, o->vol);
    if (o->leg >= v->copies || o->le_start > v->le_count ||
        o->count > v->le_count - o->le_start)
        BAD("pool '%s': volume '%s': map of extents %llu+%llu leg %u out of range",
            p->name, v->name, (unsigned long long)o->le_start,
            (unsigned long long)o->count, o->leg);
    if (o->dev != VD_NO_DEV) {
        if (o->dev >= p->ndevs || !p->devs[o->dev].used)
            BAD("pool '%s': volume '%s': maps to unknown device %u", p->name,
                v->name, o->dev);
        d = &p->devs[o->dev];
        if (o->pe_start > d->pe_count || o->count > d->pe_count - o->pe_start)
            BAD("pool '%s': volume '%s': extents %llu+%llu beyond device '%s'",
                p->name, v->name, (unsigned long long)o->pe_start,
                (unsigned long long)o->count, d->name);
        for (uint64_t i = 0; i < o->count; i++) {
            struct vd_pe *e = &v->map[(o->le_start + i) * v->copies + o->leg];
            if (pe_used(d, o->pe_start + i) &&
                !(e->dev == o->dev && e->pe == o->pe_start + i))
                BAD("pool '%s': volume '%s': extent %llu of device '%s' is "
                    "already in use",
                    p->name, v->name, (unsigned long long)(o->pe_start + i),
                    d->name);
        }
    }
    /* A live volume's I/O holds map_lock shared for each request. */
    pthread_rwlock_wrlock(&v->map_lock);
    for (uint64_t i = 0; i < o->count; i++) {
        struct vd_pe *e = &v->map[(o->le_start + i) * v->copies + o->leg];
        if (e->dev != VD_NO_DEV)
            pe_set(&p->devs[e->dev], e->pe, false);
        if (d) {
            /* Publish the extent before the entry, for lock-free readers
             * of unmapped (thin) entries in later layouts. */
            pe_set(d, o->pe_start + i, true);
            e->pe = o->pe_start + i;
            __atomic_store_n(&e->dev, o->dev, __ATOMIC_RELEASE);
        } else {
            e->dev = VD_NO_DEV;
        }
    }
    pthread_rwlock_unlock(&v->map_lock);
    return 0;
}

/* VD_OP_STACK: an upper layout on top of v's (once, at creation). */
static int apply_stack(vd_pool *p, struct vd_vol *v, const struct vd_op_hdr *h)
{
    const struct vd_op_stack *o = (const void *)h;
    const struct vd_layout_ops *up;

    if (h->len < sizeof(*o))
        BAD("pool '%s': metadata op stack too short", p->name);
    up = vd_layout_get(o->layout);
    if (!up || !up->stack || v->upper)
        BAD("pool '%s': volume '%s': cannot stack layout %u on it", p->name,
            v->name, o->layout);
    v->upper = up;
    int r = up->stack(v, o);
    if (r < 0)
        v->upper = NULL;
    return r;
}

/* A layout's own record: handed to the volume's layout, whose md_apply
 * returns -ENOENT for a type it does not know. */
static int apply_layout_rec(vd_pool *p, const struct vd_op_hdr *h, uint32_t n)
{
    const struct vd_op_lhdr *o = (const void *)h;
    struct vd_vol *v;
    int r = -ENOENT;

    if (h->len < sizeof(*o))
        BAD("pool '%s': metadata op %u too short", p->name, n);
    v = vd_vol_find_id(p, o->vol);
    if (!v)
        BAD("pool '%s': metadata op type %u names unknown volume %u", p->name,
            h->type, o->vol);
    if (h->type == VD_OP_STACK)
        return apply_stack(p, v, h);
    if (v->upper && v->upper->md_apply)
        r = v->upper->md_apply(v, h);
    if (r == -ENOENT && v->lops->md_apply)
        r = v->lops->md_apply(v, h);
    if (r == -ENOENT)
        BAD("pool '%s': metadata op type %u unknown (written by a newer "
            "vdlvm?)",
            p->name, h->type);
    return r;
}

int vd_state_apply(vd_pool *p, const uint8_t *ops, size_t len, uint32_t nops)
{
    size_t pos = 0;
    int r;

    for (uint32_t n = 0; n < nops; n++) {
        const struct vd_op_hdr *h = (const void *)(ops + pos);
        if (len - pos < sizeof(*h) || h->len < sizeof(*h) || h->len > len - pos)
            BAD("pool '%s': metadata op %u is truncated", p->name, n);
        /* Every op is a multiple of 8 bytes, so the next one is aligned
         * for its 64-bit fields (the payload starts 8-aligned). */
        if (h->len % 8)
            BAD("pool '%s': metadata op %u has length %u, not a multiple "
                "of 8",
                p->name, n, h->len);
        switch (h->type) {
#define CASE(T, S, F)                                               \
    case T:                                                         \
        if (h->len < sizeof(S))                                     \
            BAD("pool '%s': metadata op %u too short", p->name, n); \
        r = F(p, (const S *)h);                                     \
        break;
            CASE(VD_OP_DEV_ADD, struct vd_op_dev, apply_dev)
            CASE(VD_OP_VOL_CREATE, struct vd_op_vol, apply_vol_create)
            CASE(VD_OP_VOL_REMOVE, struct vd_op_vol, apply_vol_remove)
            CASE(VD_OP_VOL_RESIZE, struct vd_op_vol, apply_vol_resize)
            CASE(VD_OP_MAP, struct vd_op_map, apply_map)
#undef CASE
        case VD_OP_MOVE_BEGIN:
        case VD_OP_MOVE_PROGRESS:
        case VD_OP_MOVE_END:
        case VD_OP_MOVE_ABORT:
        case VD_OP_MOVE_JOB:
            r = vd_move_md_apply(p, h); /* pool/move.c */
            break;
        case VD_OP_DEV_REMOVE:
        case VD_OP_DEV_FLAGS:
            r = vd_pool_dev_md_apply(p, h); /* pool/pool.c */
            break;
        case VD_OP_POOL: {
            const struct vd_op_pool *o = (const void *)h;
            if (h->len < sizeof(*o))
                BAD("pool '%s': metadata op %u too short", p->name, n);
            if (memcmp(o->uuid, p->uuid, 16) ||
                o->extent_size != p->extent_size)
                BAD("pool '%s': metadata describes another pool", p->name);
            r = 0;
            break;
        }
        case VD_OP_KEY_SLOT:
        case VD_OP_KEY_REMOVE:
        case VD_OP_CRYPT_JOB:
            r = vd_crypt_md_apply(p, h, n);
            break;
        case VD_OP_QOS:
            r = vd_qos_md_apply(p, h);
            break;
        case VD_OP_TIER: /* pool/tier.c */
            r = vd_tier_md_apply(p, h);
            break;
        default:
            if (h->type >= VD_OP_LAYOUT_FIRST) {
                r = apply_layout_rec(p, h, n);
                break;
            }
            BAD("pool '%s': metadata op type %u unknown (written by a newer "
                "vdlvm?)",
                p->name, h->type);
        }
        if (r < 0)
            return r;
        pos += h->len;
    }
    return vols_size_ok(p);
}

/* ---- serialising the state -------------------------------------------- */
int vd_state_serialize(const vd_pool *p, struct vd_opbuf *b)
{
    struct vd_op_pool op = { .h.type = VD_OP_POOL };
    int r;

    memcpy(op.uuid, p->uuid, 16);
    op.extent_size = p->extent_size;
    vd_name_copy(op.name, sizeof(op.name), p->name);
    if ((r = vd_opbuf_add(b, &op, sizeof(op))) < 0)
        return r;
    for (uint32_t i = 0; i < p->ndevs; i++) {
        const struct vd_dev *d = &p->devs[i];
        struct vd_op_dev od = { .h.type = VD_OP_DEV_ADD };
        if (!d->used)
            continue;
        od.idx = d->idx;
        od.flags = d->flags;
        memcpy(od.uuid, d->uuid, 16);
        od.size = d->size;
        od.pe_count = d->pe_count;
        od.data_offset = d->data_offset;
        vd_name_copy(od.name, sizeof(od.name), d->name);
        vd_name_copy(od.node, sizeof(od.node), d->node);
        if ((r = vd_opbuf_add(b, &od, sizeof(od))) < 0)
            return r;
    }
    if ((r = vd_crypt_md_serialize(p, b)) < 0)
        return r;
    for (uint32_t i = 0; i < p->nvols; i++) {
        const struct vd_vol *v = p->vols[i];
        struct vd_op_vol ov = { .h.type = VD_OP_VOL_CREATE };
        ov.id = v->id;
        ov.layout = v->layout;
        ov.copies = v->copies;
        ov.size = v->size;
        ov.le_count = v->le_count;
        ov.flags = v->flags;
        vd_name_copy(ov.name, sizeof(ov.name), v->name);
        if ((r = vd_opbuf_add(b, &ov, sizeof(ov))) < 0)
            return r;
        if (v->lops->md_serialize && (r = v->lops->md_serialize(v, b)) < 0)
            return r;
        if (v->upper && (r = v->upper->md_serialize(v, b)) < 0)
            return r;
        if ((r = vd_qos_md_serialize(v, b)) < 0)
            return r;
        for (uint32_t leg = 0; leg < v->copies; leg++) {
            uint64_t le = 0;
            while (le < v->le_count) {
                const struct vd_pe *e = &v->map[le * v->copies + leg];
                uint64_t n = 1;
                if (e->dev == VD_NO_DEV) {
                    le++;
                    continue;
                }
                while (le + n < v->le_count) {
                    const struct vd_pe *f = &v->map[(le + n) * v->copies + leg];
                    if (f->dev != e->dev || f->pe != e->pe + n)
                        break;
                    n++;
                }
                struct vd_op_map om = { .h.type = VD_OP_MAP };
                om.vol = v->id;
                om.leg = leg;
                om.le_start = le;
                om.count = n;
                om.dev = e->dev;
                om.pe_start = e->pe;
                if ((r = vd_opbuf_add(b, &om, sizeof(om))) < 0)
                    return r;
                le += n;
            }
        }
    }
    if ((r = vd_tier_md_serialize(p, b)) < 0) /* after the volumes */
        return r;
    return vd_move_serialize(p, b); /* after the volumes it names */
}

/* ---- records ---------------------------------------------------------- */
static uint32_t rec_crc(const struct vd_md_rec *r, const uint8_t *payload)
{
    struct vd_md_rec h = *r;
    h.crc = 0;
    return vd_crc32c(vd_crc32c(0, &h, sizeof(h)), payload, r->payload_len);
}

int vd_md_encode(const vd_pool *p, uint32_t kind, uint64_t seq,
                 const struct vd_opbuf *ops, uint8_t **out, size_t *outlen)
{
    size_t len =
        vd_div_up(sizeof(struct vd_md_rec) + ops->len, VD_BLOCK) * VD_BLOCK;
    uint8_t *buf = calloc(1, len);
    struct vd_md_rec *r = (struct vd_md_rec *)buf;

    if (!buf)
        return -ENOMEM;
    memcpy(r->magic, VD_MD_MAGIC, 8);
    r->major = VD_FMT_MAJOR;
    r->minor = VD_FMT_MINOR;
    r->hdr_len = sizeof(*r);
    r->kind = kind;
    r->seq = seq;
    r->payload_len = ops->len;
    memcpy(r->pool_uuid, p->uuid, 16);
    r->nops = ops->nops;
    if (ops->len)
        memcpy(buf + sizeof(*r), ops->buf, ops->len);
    r->crc = rec_crc(r, buf + sizeof(*r));
    *out = buf;
    *outlen = len;
    return 0;
}

static const struct vd_md_rec *rec_at(const uint8_t *pool_uuid,
                                      const uint8_t *half, size_t half_len,
                                      size_t pos)
{
    const struct vd_md_rec *r = (const void *)(half + pos);

    if (half_len - pos < sizeof(*r) || memcmp(r->magic, VD_MD_MAGIC, 8) ||
        r->major != VD_FMT_MAJOR || r->hdr_len != sizeof(*r) ||
        memcmp(r->pool_uuid, pool_uuid, 16) ||
        r->payload_len > half_len - pos - sizeof(*r) ||
        rec_crc(r, half + pos + sizeof(*r)) != r->crc)
        return NULL;
    return r;
}

uint64_t vd_md_scan_half(const uint8_t *pool_uuid, const uint8_t *half,
                         size_t half_len, uint64_t *ckpt_seq, size_t *end_pos)
{
    const struct vd_md_rec *r = rec_at(pool_uuid, half, half_len, 0);
    uint64_t seq;
    size_t pos;

    *end_pos = 0;
    *ckpt_seq = 0;
    if (!r || r->kind != VD_REC_CHECKPOINT)
        return 0;
    seq = *ckpt_seq = r->seq;
    pos = vd_div_up(sizeof(*r) + r->payload_len, VD_BLOCK) * VD_BLOCK;
    while (pos < half_len) {
        r = rec_at(pool_uuid, half, half_len, pos);
        if (!r || r->kind != VD_REC_DELTA || r->seq != seq + 1)
            break;
        seq = r->seq;
        pos += vd_div_up(sizeof(*r) + r->payload_len, VD_BLOCK) * VD_BLOCK;
    }
    *end_pos = pos;
    return seq;
}

int vd_md_replay_half(vd_pool *p, const uint8_t *half, size_t end_pos)
{
    size_t pos = 0;

    while (pos < end_pos) {
        const struct vd_md_rec *r = (const void *)(half + pos);
        int e =
            vd_state_apply(p, half + pos + sizeof(*r), r->payload_len, r->nops);
        if (e < 0)
            return e;
        p->seq = r->seq;
        pos += vd_div_up(sizeof(*r) + r->payload_len, VD_BLOCK) * VD_BLOCK;
    }
    return 0;
}

/* ---- commit ------------------------------------------------------------ */
static int write_rec(struct vd_dev *d, const uint8_t *buf, size_t len, int half,
                     uint64_t pos)
{
    uint64_t half_size = VD_MD_SIZE / 2;
    int r = vd_dev_pwrite(d, buf, len, VD_MD_OFFSET + half * half_size + pos,
                          VD_IO_FUA);
    if (r < 0)
        return r;
    d->md_half = half;
    d->md_pos = pos + len;
    return 0;
}

static int md_commit_locked(vd_pool *p, struct vd_opbuf *ops);

/* One copy's record write.  The copies are written at once, each by its
 * own thread (the caller's takes the first): a commit costs one FUA write
 * (a journal commit on a file, a round trip to a remote copy) instead of
 * one per copy, one after the other.  Each job touches only its own
 * device (write_rec sets that device's md_half/md_pos on success); the
 * caller holds the admin lock across md_write_all, so no other commit
 * and nothing else reading md_half/md_pos runs meanwhile. */
struct md_write {
    struct vd_dev *d;
    uint32_t idx;
    const uint8_t *buf;
    size_t len;
    int half;
    uint64_t pos;
    int r;
};

static void *md_write_main(void *arg)
{
    struct md_write *w = arg;
    w->r = write_rec(w->d, w->buf, w->len, w->half, w->pos);
    return NULL;
}

static void md_write_all(struct md_write *jobs, int n)
{
    pthread_t t[VD_MAX_DEVS];
    bool started[VD_MAX_DEVS] = { false };

    for (int j = 1; j < n; j++)
        started[j] = pthread_create(&t[j], NULL, md_write_main, &jobs[j]) == 0;
    for (int j = 0; j < n; j++)
        if (j == 0 || !started[j]) /* no thread: written here */
            md_write_main(&jobs[j]);
    for (int j = 1; j < n; j++)
        if (started[j])
            pthread_join(t[j], NULL);
}

/* Zero every extent that ops newly map (free in the current state), then
 * flush those devices: the zeroes are durable before the commit makes the
 * extents reachable, so no crash can expose old data through the new
 * mapping.  Every allocation (volume create, extend, mirror legs and
 * bitmap extents, leg replacement) commits through here.  An extent freed
 * by an earlier op of the same list counts as used (no caller does both
 * in one commit).  0, or -EIO with nothing committed. */
static int zero_new_extents(vd_pool *p, const struct vd_opbuf *ops)
{
    bool touched[VD_MAX_DEVS] = { false };
    uint64_t es = p->extent_size;
    size_t pos = 0;

    if (ops->keep_data)
        return 0;
    for (uint32_t n = 0; n < ops->nops && pos < ops->len; n++) {
        const struct vd_op_hdr *h = (const void *)(ops->buf + pos);
        const struct vd_op_map *o = (const void *)h;
        struct vd_dev *d;

        pos += h->len;
        if (h->type != VD_OP_MAP || h->len < sizeof(*o) ||
            o->dev == VD_NO_DEV || o->dev >= p->ndevs || !p->devs[o->dev].used)
            continue; /* vd_state_apply refuses what is malformed */
        d = &p->devs[o->dev];
        if (o->pe_start > d->pe_count || o->count > d->pe_count - o->pe_start)
            continue;
        if (!d->bdev ||
            __atomic_load_n(&d->state, __ATOMIC_ACQUIRE) != VD_DEV_OK) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': device '%s' is unavailable; new "
                   "extents cannot be zeroed, nothing changed",
                   p->name, d->name);
            return -EIO;
        }
        for (uint64_t i = 0; i < o->count;) {
            uint64_t k = 0;
            while (i + k < o->count && !pe_used(d, o->pe_start + i + k))
                k++;
            if (k && vd_dev_zero(d, d->data_offset + (o->pe_start + i) * es,
                                 k * es) < 0) {
                vd_log(VD_LOG_ERR,
                       "pool '%s': zeroing new extents on device "
                       "'%s' failed; nothing changed",
                       p->name, d->name);
                return -EIO;
            }
            touched[o->dev] |= k > 0;
            i += k ? k : 1;
        }
    }
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (touched[i] && vd_dev_flush(&p->devs[i]) < 0) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': zeroed extents on device '%s' could "
                   "not be made durable; nothing changed",
                   p->name, p->devs[i].name);
            return -EIO;
        }
    return 0;
}

int vd_md_commit(vd_pool *p, struct vd_opbuf *ops)
{
    int r;
    vd_admin_lock(p);
    r = md_commit_locked(p, ops);
    vd_admin_unlock(p);
    return r;
}

static int md_commit_locked(vd_pool *p, struct vd_opbuf *ops)
{
    uint8_t *delta = NULL, *ckpt = NULL;
    size_t delta_len, ckpt_len = 0;
    struct vd_opbuf cb = { 0 };
    uint64_t seq = p->seq + 1, half_size = VD_MD_SIZE / 2;
    int ok = 0, n = 0, need, r, njobs = 0;
    uint64_t reached[(VD_MAX_DEVS + 63) / 64] = { 0 };
    struct md_write jobs[VD_MAX_DEVS];

    for (uint32_t i = 0; i < p->ndevs; i++)
        n += p->devs[i].used && (p->devs[i].flags & VD_DEVF_MD);
    need = vd_md_write_quorum(n);
    if ((r = zero_new_extents(p, ops)) < 0)
        return r;
    r = vd_md_encode(p, VD_REC_DELTA, seq, ops, &delta, &delta_len);
    if (r < 0)
        goto out;
    /* First what goes where (the checkpoint, when some copy needs one, is
     * built once), then the writes to every copy at once (md_write_all),
     * then their results in device order. */
    for (uint32_t i = 0; i < p->ndevs; i++) {
        struct vd_dev *d = &p->devs[i];
        if (!(d->flags & VD_DEVF_MD) || !d->bdev || d->state != VD_DEV_OK)
            continue;
        struct md_write *w = &jobs[njobs++];
        w->d = d;
        w->idx = i;
        if (d->md_half >= 0 && d->md_pos + delta_len <= half_size) {
            w->buf = delta;
            w->len = delta_len;
            w->half = d->md_half;
            w->pos = d->md_pos;
            continue;
        }
        if (!ckpt) {
            /* A checkpoint of the state this commit produces: the
             * current state followed by the commit's ops. */
            if ((r = vd_state_serialize(p, &cb)) < 0)
                goto out;
            if (cb.len + ops->len > cb.cap) {
                uint8_t *n = realloc(cb.buf, cb.len + ops->len);
                if (!n) {
                    r = -ENOMEM;
                    goto out;
                }
                cb.buf = n;
                cb.cap = cb.len + ops->len;
            }
            memcpy(cb.buf + cb.len, ops->buf, ops->len);
            cb.len += ops->len;
            cb.nops += ops->nops;
            if ((r = vd_md_encode(p, VD_REC_CHECKPOINT, seq, &cb, &ckpt,
                                  &ckpt_len)) < 0)
                goto out;
            if (ckpt_len > half_size) {
                vd_log(VD_LOG_ERR,
                       "pool '%s': metadata of %zu bytes does not "
                       "fit the %llu-byte metadata area",
                       p->name, ckpt_len, (unsigned long long)half_size);
                r = -ENOSPC;
                goto out;
            }
        }
        w->buf = NULL; /* the checkpoint: set below (ckpt is final) */
        w->len = 0;
        w->half = d->md_half >= 0 ? !d->md_half : 0;
        w->pos = 0;
    }
    for (int j = 0; j < njobs; j++)
        if (!jobs[j].buf) {
            jobs[j].buf = ckpt;
            jobs[j].len = ckpt_len;
        }
    md_write_all(jobs, njobs);
    for (int j = 0; j < njobs; j++) {
        struct vd_dev *d = jobs[j].d;
        uint32_t i = jobs[j].idx;
        if (jobs[j].r < 0) {
            /* The copy's last valid chain is still in md_half (write_rec
             * moves it only on success): the next commit writes a
             * checkpoint to the other half, never over that chain. */
            d->md_pos = half_size + 1;
            vd_log(VD_LOG_WARN,
                   "pool '%s': metadata copy on device '%s' not "
                   "updated",
                   p->name, d->name);
            continue;
        }
        reached[i / 64] |= 1ull << (i % 64);
        ok++;
    }
    if (ok < need) {
        /* Below W: not acknowledged, the in-memory state is unchanged.
         * The record may still have landed on some copy (those that took
         * it, a write that reported failure, a timed-out remote write
         * that completes later): its sequence number is used up.  Every
         * copy gets a checkpoint at the next commit (seq + 1, into the
         * half that does not hold its last chain): a delta would chain
         * onto this record's ops, which the state does not have, or onto
         * a gap.  Had the next commit reused seq, a copy could hold two
         * different records with one number and open would pick either. */
        char miss[1024] = "";
        size_t ml = 0;
        for (uint32_t i = 0; i < p->ndevs; i++) {
            struct vd_dev *d = &p->devs[i];
            if (!d->used || !(d->flags & VD_DEVF_MD))
                continue;
            if (!(reached[i / 64] & (1ull << (i % 64))) && ml < sizeof(miss))
                ml += snprintf(miss + ml, sizeof(miss) - ml, "%s'%s'",
                               ml ? ", " : "", d->name);
            d->md_pos = half_size + 1;
        }
        p->seq = p->unacked_seq = seq;
        vd_log(VD_LOG_ERR,
               "pool '%s': metadata commit (seq %llu) reached %d of "
               "%d metadata copies, %d needed; not reached: %s; nothing "
               "changed",
               p->name, (unsigned long long)seq, ok, n, need, miss);
        r = -EIO;
        goto out;
    }
    r = vd_state_apply(p, ops->buf, ops->len, ops->nops);
    if (r < 0) {
        /* The ops were checked against the state before the commit; this
         * is a bug, and the log already holds them. */
        vd_log(VD_LOG_ERR, "pool '%s': committed metadata could not be applied",
               p->name);
        /* The record is on the copies but not in the state: as for a
         * commit below W, its number is used up and every copy gets a
         * checkpoint of the state at the next commit, which supersedes
         * it (a delta would chain onto ops the state does not have). */
        for (uint32_t i = 0; i < p->ndevs; i++)
            if (p->devs[i].flags & VD_DEVF_MD)
                p->devs[i].md_pos = half_size + 1;
        p->seq = p->unacked_seq = seq;
        goto out;
    }
    p->seq = seq;
out:
    free(delta);
    free(ckpt);
    vd_opbuf_free(&cb);
    return r;
}
