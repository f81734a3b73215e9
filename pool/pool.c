/* vdlvm: pool create/open/close, the pool lock, and pool/device info.
 * Admin thread only (see vdpool.h), except vd_pool_retry_devices (the
 * pool's background thread, pool/bg.c).
 *
 * Which metadata copy wins at open
 *   Every copy's newest valid chain is scanned.  The copies at the highest
 *   sequence number vote: each chain is replayed into a scratch state and
 *   serialised (canonical whatever the record layout), and the state most
 *   of them hold wins.  The pool opens only when a majority of its copies
 *   (the devices flagged VD_DEVF_MD in that state) is present: holding
 *   the winning state, or an older valid chain (stale: it missed commits,
 *   nothing newer can hide there).  Otherwise a newer state may sit on the
 *   copies we cannot see (another host opened the pool from them): refuse
 *   with -ENODEV naming each missing copy, unless VD_OPEN_PARTIAL.  A copy
 *   at the winning number with another state is split brain: kept out
 *   (VD_DEV_FAILED), never overwritten; stale and corrupt copies (read,
 *   and found older or with no valid chain) are rewritten with a
 *   checkpoint into the half that does not hold their last chain.  A
 *   copy whose header or metadata area cannot be read (one retry) is
 *   missing, not corrupt: it may hold the newest commit, so it does not
 *   count for the majority, is never overwritten at open, and its device
 *   is retried later (below).
 *
 * Quorum intersection (see md.c): n is the number of metadata copies the
 *   pool has (its VD_DEVF_MD devices in the state, present or not).  Open
 *   needs Q = n/2 + 1 of them; a commit is acknowledged only when it
 *   reached W = n - Q + 1 (n=1: 1, n=2: 1, n=3: 2).  Q + W > n, so the
 *   copies open counts always include one holding the newest
 *   acknowledged commit, and the highest sequence number wins.
 *
 * A device that returns (vd_pool_retry_devices, background thread)
 *   Opened and its header and metadata read without any lock (a remote
 *   login may take its timeout), then compared under admin_lock, which
 *   serialises it with every commit: a copy newer than p->seq, or as new
 *   with another state, is split brain (kept out, never retried until the
 *   pool is reopened, never overwritten); an equal copy rejoins as it is;
 *   an older one is repaired by a checkpoint before the device is used.
 *   Exception: at p->seq == p->unacked_seq (our own last commit failed
 *   below W) another state there is that unacknowledged record: the copy
 *   rejoins and gets a checkpoint at the next commit. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypt.h"
#include "pool_int.h"

/* ---- the pool lock ------------------------------------------------------ */
static int pool_lock(const char *name, int *lock_fd)
{
    char path[4096], holder[256] = "";
    const char *dir = vd_rundir();
    int fd;

    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        vd_log(VD_LOG_ERR, "pool '%s': cannot create %s: %s", name, dir,
               strerror(errno));
        return -errno;
    }
    snprintf(path, sizeof(path), "%s/%s.lock", dir, name);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        vd_log(VD_LOG_ERR, "pool '%s': open %s: %s", name, path,
               strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
        holder[n > 0 ? n : 0] = 0;
        holder[strcspn(holder, "\n")] = 0;
        vd_log(VD_LOG_ERR,
               "pool '%s': in use by another process (%s); a pool "
               "has one writer: use the running one or stop it",
               name, *holder ? holder : "unknown");
        close(fd);
        return -EBUSY;
    }
    char comm[64] = "?";
    FILE *f = fopen("/proc/self/comm", "r");
    if (f) {
        if (fgets(comm, sizeof(comm), f))
            comm[strcspn(comm, "\n")] = 0;
        fclose(f);
    }
    int len =
        snprintf(holder, sizeof(holder), "pid %d, %s\n", (int)getpid(), comm);
    if (ftruncate(fd, 0) < 0 || pwrite(fd, holder, len, 0) != len)
        vd_log(VD_LOG_DEBUG, "pool '%s': writing %s (ignored)", name, path);
    *lock_fd = fd;
    return 0;
}

static void pool_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock; the file stays (harmless) */
}

/* ---- helpers ------------------------------------------------------------ */
static uint64_t data_offset(uint64_t extent_size)
{
    uint64_t off = VD_MD_OFFSET + VD_MD_SIZE;
    return vd_div_up(off, VD_DATA_ALIGN) * VD_DATA_ALIGN;
}

static const char *conf_node(const struct vd_conf_dev *c)
{
    return c->node && *c->node ? c->node : "local";
}

/* Choose up to VD_MAX_MD_COPIES devices for metadata, one per node first. */
static void choose_md_devs(const struct vd_conf_pool *conf, uint32_t *flags)
{
    int n = 0;

    for (size_t i = 0; i < conf->ndevs && n < VD_MAX_MD_COPIES; i++) {
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            if ((flags[j] & VD_DEVF_MD) &&
                strcmp(conf_node(&conf->devs[i]), conf_node(&conf->devs[j])) ==
                    0)
                seen = true;
        if (!seen) {
            flags[i] |= VD_DEVF_MD;
            n++;
        }
    }
    for (size_t i = 0; i < conf->ndevs && n < VD_MAX_MD_COPIES; i++)
        if (!(flags[i] & VD_DEVF_MD)) {
            flags[i] |= VD_DEVF_MD;
            n++;
        }
}

static bool hdr_valid(const struct vd_dev_hdr *h)
{
    struct vd_dev_hdr c = *h;

    if (memcmp(h->magic, VD_DEV_MAGIC, 8) || h->hdr_len != VD_HDR_SIZE)
        return false;
    c.crc = 0;
    return vd_crc32c(0, &c, sizeof(c)) == h->crc;
}

static int read_hdr(struct vd_bdev *b, struct vd_dev_hdr *h)
{
    return b->ops->pread(b, h, sizeof(*h), 0);
}

static void conf_dev_free(struct vd_conf_dev *c);

static void pool_free(vd_pool *p);

static vd_pool *pool_alloc(const char *name)
{
    vd_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->devs = calloc(VD_MAX_DEVS, sizeof(*p->devs));
    if (!p->devs) {
        free(p);
        return NULL;
    }
    for (uint32_t i = 0; i < VD_MAX_DEVS; i++) {
        p->devs[i].idx = i;
        p->devs[i].bdev = NULL;
        p->devs[i].state = VD_DEV_MISSING;
        p->devs[i].md_half = -1;
        vd_dev_sync_init(&p->devs[i]);
    }
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->lock_fd = -1;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&p->admin_lock, &a);
    pthread_mutexattr_destroy(&a);
    if (vd_move_init(p) < 0) {
        pool_free(p);
        return NULL;
    }
    return p;
}

void vd_admin_lock(vd_pool *p)
{
    pthread_mutex_lock(&p->admin_lock);
}

void vd_admin_unlock(vd_pool *p)
{
    pthread_mutex_unlock(&p->admin_lock);
}

static void pool_free(vd_pool *p)
{
    if (!p)
        return;
    vd_state_free(p);
    vd_crypt_free(p);
    for (uint32_t i = 0; i < VD_MAX_DEVS; i++) {
        if (p->devs[i].bdev)
            p->devs[i].bdev->ops->close(p->devs[i].bdev);
        free(p->devs[i].path);
        conf_dev_free(p->devs[i].conf);
        vd_dev_sync_destroy(&p->devs[i]);
    }
    free(p->devs);
    pool_unlock(p->lock_fd);
    pthread_mutex_destroy(&p->admin_lock);
    vd_move_free(p);
    free(p);
}

/* ---- create ------------------------------------------------------------- */
struct cdev {
    struct vd_bdev *b;
    bool created, hdr_written;
    uint64_t size;
};

int vd_pool_create(const struct vd_conf_pool *conf, int force)
{
    uint64_t es =
        conf->extent_size ? conf->extent_size : VD_EXTENT_SIZE_DEFAULT;
    uint64_t doff = data_offset(es);
    struct cdev *cd = NULL;
    uint32_t *flags = NULL;
    struct vd_opbuf ops = { 0 };
    vd_pool *p = NULL;
    char msg[512];
    int r = 0;

    if (!vd_name_is_valid(conf->name) || conf->ndevs == 0 ||
        conf->ndevs > VD_MAX_DEVS || (es & (es - 1)) ||
        es < VD_EXTENT_SIZE_MIN) {
        vd_log(VD_LOG_ERR, "pool '%s': invalid definition in %s", conf->name,
               conf->file ? conf->file : "?");
        return -EINVAL;
    }
    p = pool_alloc(conf->name);
    cd = calloc(conf->ndevs, sizeof(*cd));
    flags = calloc(conf->ndevs, sizeof(*flags));
    if (!p || !cd || !flags) {
        r = -ENOMEM;
        goto out;
    }
    if ((r = pool_lock(conf->name, &p->lock_fd)) < 0)
        goto out;

    /* Phase 1: check every device; write nothing. */
    for (size_t i = 0; i < conf->ndevs; i++) {
        const struct vd_conf_dev *c = &conf->devs[i];
        struct stat st;
        if (c->path && stat(c->path, &st) < 0) {
            if (errno != ENOENT) {
                vd_log(VD_LOG_ERR, "device '%s': stat %s: %s", c->name, c->path,
                       strerror(errno));
                r = -errno;
                goto out;
            }
            if (!c->size) {
                vd_log(VD_LOG_ERR,
                       "device '%s': %s does not exist; create it or "
                       "give size: to create a sparse file",
                       c->name, c->path);
                r = -ENOENT;
                goto out;
            }
            char *dup = strdup(c->path);
            if (!dup) {
                r = -ENOMEM;
                goto out;
            }
            int ok = access(dirname(dup), W_OK) == 0;
            free(dup);
            if (!ok) {
                vd_log(VD_LOG_ERR, "device '%s': cannot create %s: %s", c->name,
                       c->path, strerror(errno));
                r = -errno;
                goto out;
            }
            cd[i].size = c->size;
            continue;
        }
        r = vd_bdev_open(c, 0, 0, &cd[i].b, msg, sizeof(msg));
        if (r < 0) {
            vd_log(VD_LOG_ERR, "device '%s': %s", c->name, msg);
            goto out;
        }
        cd[i].size = cd[i].b->size;
        if (c->path && c->size && S_ISREG(st.st_mode) &&
            c->size != cd[i].size) {
            vd_log(VD_LOG_ERR,
                   "device '%s': %s exists with %llu bytes but size: "
                   "says %llu; size: is only for a file to be created",
                   c->name, c->path, (unsigned long long)cd[i].size,
                   (unsigned long long)c->size);
            r = -EINVAL;
            goto out;
        }
        struct vd_dev_hdr h;
        if ((r = read_hdr(cd[i].b, &h)) < 0) {
            vd_log(VD_LOG_ERR, "device '%s': read header: %s", c->name,
                   strerror(-r));
            goto out;
        }
        if (!memcmp(h.magic, VD_DEV_MAGIC, 8) && !force) {
            char u[37];
            vd_uuid_str(h.pool_uuid, u);
            h.pool_name[sizeof(h.pool_name) - 1] = 0;
            vd_log(VD_LOG_ERR,
                   "device '%s': %s already belongs to pool '%s' "
                   "(%s); use --force to overwrite it",
                   c->name, c->path ? c->path : c->iscsi_url, h.pool_name, u);
            r = -EEXIST;
            goto out;
        }
    }
    for (size_t i = 0; i < conf->ndevs; i++) {
        if (cd[i].size < doff + es) {
            vd_log(VD_LOG_ERR,
                   "device '%s': %llu bytes is too small; a device "
                   "needs at least %llu (metadata and one extent)",
                   conf->devs[i].name, (unsigned long long)cd[i].size,
                   (unsigned long long)(doff + es));
            r = -ENOSPC;
            goto out;
        }
    }

    /* Phase 2: build the state, then write metadata, then headers. */
    vd_uuid_gen(p->uuid);
    p->extent_size = es;
    p->seq = 0;
    choose_md_devs(conf, flags);
    {
        struct vd_op_pool op = { .h.type = VD_OP_POOL };
        memcpy(op.uuid, p->uuid, 16);
        op.extent_size = es;
        vd_name_copy(op.name, sizeof(op.name), p->name);
        if ((r = vd_opbuf_add(&ops, &op, sizeof(op))) < 0)
            goto out;
    }
    for (size_t i = 0; i < conf->ndevs; i++) {
        const struct vd_conf_dev *c = &conf->devs[i];
        struct vd_op_dev od = { .h.type = VD_OP_DEV_ADD };
        od.idx = i;
        od.flags = flags[i] | vd_crypt_dev_flags(c);
        vd_uuid_gen(od.uuid);
        od.size = cd[i].size;
        od.pe_count = (cd[i].size - doff) / es;
        od.data_offset = doff;
        vd_name_copy(od.name, sizeof(od.name), c->name);
        vd_name_copy(od.node, sizeof(od.node), conf_node(c));
        if ((r = vd_opbuf_add(&ops, &od, sizeof(od))) < 0)
            goto out;
    }
    if ((r = vd_crypt_create_ops(conf, p->uuid, &ops)) < 0)
        goto out;
    p->ndevs = conf->ndevs;
    if ((r = vd_state_apply(p, ops.buf, ops.len, ops.nops)) < 0)
        goto out;
    for (size_t i = 0; i < conf->ndevs; i++) {
        struct vd_dev *d = &p->devs[i];
        if (!cd[i].b) {
            r = vd_bdev_open(&conf->devs[i], 1, cd[i].size, &cd[i].b, msg,
                             sizeof(msg));
            if (r < 0) {
                vd_log(VD_LOG_ERR, "device '%s': %s", d->name, msg);
                goto out;
            }
            cd[i].created = true;
        }
        d->bdev = cd[i].b;
        d->state = VD_DEV_OK;
    }
    {
        uint8_t *rec, *zero = calloc(1, VD_BLOCK);
        size_t rec_len;
        if (!zero) {
            r = -ENOMEM;
            goto out;
        }
        p->seq = 1;
        r = vd_md_encode(p, VD_REC_CHECKPOINT, 1, &ops, &rec, &rec_len);
        for (size_t i = 0; r == 0 && i < conf->ndevs; i++) {
            struct vd_dev *d = &p->devs[i];
            /* Every device's metadata area is cleared of an older pool's
             * records; copies get the first checkpoint. */
            r = vd_dev_pwrite(d, zero, VD_BLOCK, VD_MD_OFFSET + VD_MD_SIZE / 2,
                              0);
            if (r == 0)
                r = (d->flags & VD_DEVF_MD)
                        ? vd_dev_pwrite(d, rec, rec_len, VD_MD_OFFSET, 0)
                        : vd_dev_pwrite(d, zero, VD_BLOCK, VD_MD_OFFSET, 0);
        }
        if (r == 0)
            free(rec);
        free(zero);
        if (r < 0)
            goto out;
    }
    for (size_t i = 0; i < conf->ndevs; i++) {
        struct vd_dev *d = &p->devs[i];
        struct vd_dev_hdr h;
        memset(&h, 0, sizeof(h));
        memcpy(h.magic, VD_DEV_MAGIC, 8);
        h.major = VD_FMT_MAJOR;
        h.minor = VD_FMT_MINOR;
        h.hdr_len = VD_HDR_SIZE;
        memcpy(h.pool_uuid, p->uuid, 16);
        memcpy(h.dev_uuid, d->uuid, 16);
        h.dev_size = d->size;
        h.extent_size = es;
        h.md_offset = VD_MD_OFFSET;
        h.md_size = VD_MD_SIZE;
        h.data_offset = doff;
        h.pe_count = d->pe_count;
        h.dev_index = i;
        vd_name_copy(h.pool_name, sizeof(h.pool_name), p->name);
        vd_name_copy(h.dev_name, sizeof(h.dev_name), d->name);
        h.ctime = time(NULL);
        h.crc = vd_crc32c(0, &h, sizeof(h));
        /* data first durable, header last: a device without a header is
         * not part of any pool */
        if ((r = vd_dev_flush(d)) < 0 ||
            (r = vd_dev_pwrite(d, &h, sizeof(h), 0, VD_IO_FUA)) < 0)
            goto out;
        cd[i].hdr_written = true;
    }
    vd_log(VD_LOG_INFO, "pool '%s': created on %zu devices", p->name,
           conf->ndevs);

out:
    if (r < 0 && cd) {
        /* Undo: nothing half-created. */
        static const uint8_t zero_hdr[VD_HDR_SIZE];
        for (size_t i = 0; i < conf->ndevs; i++) {
            if (cd[i].hdr_written &&
                cd[i].b->ops->pwrite(cd[i].b, zero_hdr, sizeof(zero_hdr), 0,
                                     VD_IO_FUA) < 0)
                vd_log(VD_LOG_WARN, "device '%s': could not clear header",
                       conf->devs[i].name);
            if (cd[i].created)
                unlink(conf->devs[i].path);
        }
    }
    if (p) {
        for (size_t i = 0; i < conf->ndevs; i++)
            p->devs[i].bdev = NULL;
    }
    if (cd)
        for (size_t i = 0; i < conf->ndevs; i++)
            if (cd[i].b)
                cd[i].b->ops->close(cd[i].b);
    vd_opbuf_free(&ops);
    free(cd);
    free(flags);
    pool_free(p);
    return r;
}

/* ---- devices that join later --------------------------------------------- */
static int write_checkpoint(vd_pool *p, struct vd_dev *d, int half);
static int newest_half(const uint64_t seq[2]);
static int chain_state(const char *name, const uint8_t *uuid, uint64_t es,
                       const uint8_t *half, size_t end, struct vd_opbuf *out);
static bool same_state(const struct vd_opbuf *a, const struct vd_opbuf *b);

static void conf_dev_free(struct vd_conf_dev *c)
{
    if (!c)
        return;
    free(c->name), free(c->path), free(c->iscsi_url), free(c->node);
    free(c->chap_user), free(c->chap_secret_file);
    free(c->rbd_pool), free(c->rbd_image), free(c->rbd_conf), free(c->rbd_id);
    free(c);
}

static struct vd_conf_dev *conf_dev_dup(const struct vd_conf_dev *c)
{
    struct vd_conf_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    *d = *c;
#define DUP(f) d->f = c->f ? strdup(c->f) : NULL
    DUP(name), DUP(path), DUP(iscsi_url), DUP(node), DUP(chap_user);
    DUP(chap_secret_file), DUP(rbd_pool), DUP(rbd_image), DUP(rbd_conf);
    DUP(rbd_id);
#undef DUP
    return d;
}

void vd_pool_retry_devices(vd_pool *p)
{
    int64_t now = vd_now_ms();

    for (uint32_t i = 0; i < p->ndevs; i++) {
        struct vd_dev *d = &p->devs[i];
        struct vd_bdev *b = NULL;
        struct vd_dev_hdr h;
        char msg[256];

        if (!d->used || !d->conf ||
            __atomic_load_n(&d->state, __ATOMIC_ACQUIRE) == VD_DEV_OK ||
            now < d->retry_next_ms)
            continue;
        d->retry_delay_ms =
            d->retry_delay_ms < 15000 ? d->retry_delay_ms * 2 : 30000;
        d->retry_next_ms = now + d->retry_delay_ms;
        /* no lock held: a remote login may take up to its timeout */
        if (vd_bdev_open(d->conf, 0, 0, &b, msg, sizeof(msg)) < 0)
            continue;
        if (read_hdr(b, &h) < 0 || !hdr_valid(&h) ||
            memcmp(h.pool_uuid, p->uuid, 16) ||
            memcmp(h.dev_uuid, d->uuid, 16) || h.dev_index != d->idx) {
            b->ops->close(b);
            continue;
        }
        /* A metadata copy is compared with the pool's before it is
         * touched: newer (or as new with another state) means another
         * host wrote the pool while this device was away from us. */
        uint8_t *md = NULL;
        uint64_t seq[2] = { 0, 0 }, ck;
        size_t end[2] = { 0, 0 };
        struct vd_opbuf cs = { 0 }, ps = { 0 };
        if (d->flags & VD_DEVF_MD) {
            md = malloc(VD_MD_SIZE);
            if (!md || b->ops->pread(b, md, VD_MD_SIZE, VD_MD_OFFSET) < 0) {
                free(md);
                b->ops->close(b);
                continue;
            }
            for (int k = 0; k < 2; k++)
                seq[k] = vd_md_scan_half(p->uuid, md + k * (VD_MD_SIZE / 2),
                                         VD_MD_SIZE / 2, &ck, &end[k]);
        }
        int nh = newest_half(seq);
        vd_admin_lock(p);
        bool split = seq[nh] > p->seq;
        bool same = false, ours = false;
        if (md && seq[nh] == p->seq && seq[nh] == p->unacked_seq) {
            /* our own commit that failed below the write quorum: every
             * copy gets a checkpoint at the next commit (md.c) */
            ours = true;
        } else if (md && seq[nh] == p->seq && seq[nh] > 0) {
            if (chain_state(p->name, p->uuid, p->extent_size,
                            md + nh * (VD_MD_SIZE / 2), end[nh], &cs) < 0 ||
                vd_state_serialize(p, &ps) < 0) {
                vd_admin_unlock(p);
                vd_opbuf_free(&cs);
                vd_opbuf_free(&ps);
                free(md);
                b->ops->close(b);
                continue; /* out of memory: try again later */
            }
            same = same_state(&cs, &ps);
            split = !same;
        }
        if (split) {
            snprintf(d->state_msg, sizeof(d->state_msg),
                     "its metadata (seq %llu) is %s the pool's (seq %llu): "
                     "another host wrote the pool (split brain); kept out and "
                     "not overwritten",
                     (unsigned long long)seq[nh],
                     seq[nh] > p->seq ? "newer than" : "another state at",
                     (unsigned long long)p->seq);
            __atomic_store_n(&d->state, VD_DEV_FAILED, __ATOMIC_RELEASE);
            d->retry_next_ms = INT64_MAX; /* until the pool is reopened */
            vd_admin_unlock(p);
            vd_log(VD_LOG_ERR,
                   "pool '%s': device '%s' (%s) answers again but "
                   "%s; stop every other host using the pool, then reopen it",
                   p->name, d->name, d->path ? d->path : "?", d->state_msg);
            b->ops->close(b);
        } else {
            /* the device came back: one reconnect (stats), on the new
             * handle, which counts the driver's own reconnects from there
             * on (the slot had no handle: nothing is lost) */
            __atomic_add_fetch(&b->n_reconnects, 1, __ATOMIC_RELAXED);
            d->bdev = b;
            d->state_msg[0] = 0;
            __atomic_store_n(&d->state, VD_DEV_OK, __ATOMIC_RELEASE);
            if (same) {
                d->md_half = nh;
                d->md_pos = end[nh];
            } else if (ours) {
                d->md_half = nh;
                d->md_pos = VD_MD_SIZE / 2 + 1;
            } else if (d->flags & VD_DEVF_MD) {
                /* stale: a checkpoint into the half that does not hold
                 * its newest chain */
                write_checkpoint(p, d, seq[nh] ? !nh : 0);
            }
            vd_admin_unlock(p);
            vd_log(VD_LOG_WARN,
                   "pool '%s': device '%s' answers again and "
                   "rejoins the pool",
                   p->name, d->name);
        }
        vd_opbuf_free(&cs);
        vd_opbuf_free(&ps);
        free(md);
    }
}

/* ---- open --------------------------------------------------------------- */
struct odev {
    struct vd_bdev *b;
    struct vd_dev_hdr h;
    bool valid;
    int err; /* vd_bdev_open's result (-EBUSY: another host) */
    char msg[256];
    uint64_t seq[2], ckpt[2];
    size_t end[2];
    uint8_t *md;           /* both halves */
    struct vd_opbuf state; /* newest chain's state, serialised (copies at
                              the newest sequence number only) */
    int votes;             /* copies whose state equals this one's */
    bool agrees;           /* holds the chain the pool opened from */
};

/* Devices refused because another host holds their reservation: say that
 * the pool has another owner (the per-device messages name it). */
static bool held_elsewhere(const struct vd_conf_pool *conf,
                           const struct odev *od)
{
    for (size_t i = 0; i < conf->ndevs; i++)
        if (od[i].err == -EBUSY && conf->devs[i].iscsi_url) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': another host owns the pool (it "
                   "holds the reservation of device '%s'); if that host is "
                   "gone, take the pool over with 'vdlvm pool takeover %s'",
                   conf->name, conf->devs[i].name, conf->name);
            return true;
        }
    return false;
}

/* The half holding a copy's newest chain. */
static int newest_half(const uint64_t seq[2])
{
    return seq[1] > seq[0];
}

/* The state a copy's chain describes, serialised canonically, so that two
 * copies can be compared whatever their record layout (a checkpoint on
 * one where the other has deltas).  0 or a negative errno. */
static int chain_state(const char *name, const uint8_t *uuid, uint64_t es,
                       const uint8_t *half, size_t end, struct vd_opbuf *out)
{
    vd_pool *s = pool_alloc(name);
    int r;

    if (!s)
        return -ENOMEM;
    memcpy(s->uuid, uuid, 16);
    s->extent_size = es;
    s->ndevs = VD_MAX_DEVS;
    r = vd_md_replay_half(s, half, end);
    if (r == 0) {
        s->ndevs = 0;
        for (uint32_t i = 0; i < VD_MAX_DEVS; i++)
            if (s->devs[i].used)
                s->ndevs = i + 1;
        r = vd_state_serialize(s, out);
    }
    pool_free(s);
    return r;
}

static bool same_state(const struct vd_opbuf *a, const struct vd_opbuf *b)
{
    return a->len == b->len && a->nops == b->nops &&
           (a->len == 0 || !memcmp(a->buf, b->buf, a->len));
}

static int write_checkpoint(vd_pool *p, struct vd_dev *d, int half)
{
    struct vd_opbuf b = { 0 };
    uint8_t *rec = NULL;
    size_t len;
    int r = vd_state_serialize(p, &b);

    if (r == 0)
        r = vd_md_encode(p, VD_REC_CHECKPOINT, p->seq, &b, &rec, &len);
    if (r == 0) {
        r = vd_dev_pwrite(d, rec, len, VD_MD_OFFSET + half * (VD_MD_SIZE / 2),
                          VD_IO_FUA);
        if (r == 0) {
            d->md_half = half;
            d->md_pos = len;
        }
    }
    free(rec);
    vd_opbuf_free(&b);
    return r;
}

/* Why metadata copy d (conf device i, or -1) does not count for the
 * majority, into buf. */
static void copy_why(const vd_pool *p, const struct vd_dev *d,
                     const struct vd_conf_pool *conf, const struct odev *od,
                     int i, char *buf, size_t len)
{
    const struct vd_conf_dev *c = i >= 0 ? &conf->devs[i] : NULL;
    const char *path = c ? (c->path ? c->path : c->iscsi_url) : NULL;
    uint64_t seq = i >= 0 ? od[i].seq[newest_half(od[i].seq)] : 0;

    if (!c)
        snprintf(buf, len, "device '%s' (not in %s)", d->name,
                 conf->file ? conf->file : "the pool definition");
    else if (!od[i].valid)
        snprintf(buf, len, "device '%s' (%s): %s", d->name, path, od[i].msg);
    else if (memcmp(od[i].h.dev_uuid, d->uuid, 16) ||
             od[i].h.dev_index != d->idx)
        snprintf(buf, len, "device '%s' (%s): holds another device of the pool",
                 d->name, path);
    else if (seq == 0)
        snprintf(buf, len,
                 "device '%s' (%s): no valid metadata copy "
                 "(corrupt or never written)",
                 d->name, path);
    else
        snprintf(buf, len,
                 "device '%s' (%s): differs from the newest copy at "
                 "seq %llu (another host wrote the pool?)",
                 d->name, path, (unsigned long long)seq);
}

static int conf_index(const struct vd_conf_pool *conf, const char *name)
{
    for (size_t i = 0; i < conf->ndevs; i++)
        if (!strcmp(conf->devs[i].name, name))
            return (int)i;
    return -1;
}

int vd_pool_open(const struct vd_conf_pool *conf, vd_pool **out)
{
    return vd_pool_open_flags(conf, 0, out);
}

int vd_pool_open_flags(const struct vd_conf_pool *conf, unsigned flags,
                       vd_pool **out)
{
    vd_pool *p = pool_alloc(conf->name);
    struct odev *od = calloc(conf->ndevs ? conf->ndevs : 1, sizeof(*od));
    const uint8_t *uuid = NULL;
    int r = 0, best = -1, best_half = 0;
    uint64_t best_seq = 0;
    size_t half_size = VD_MD_SIZE / 2;

    if (!p || !od) {
        r = -ENOMEM;
        goto out;
    }
    if ((r = pool_lock(conf->name, &p->lock_fd)) < 0)
        goto out;
    for (size_t i = 0; i < conf->ndevs; i++) {
        const struct vd_conf_dev *c = &conf->devs[i];
        if ((od[i].err = vd_bdev_open(c, 0, 0, &od[i].b, od[i].msg,
                                      sizeof(od[i].msg))) < 0)
            continue;
        int hr = read_hdr(od[i].b, &od[i].h);
        if (hr < 0)
            hr = read_hdr(od[i].b, &od[i].h); /* one retry */
        if (hr < 0) {
            snprintf(od[i].msg, sizeof(od[i].msg),
                     "its header cannot be read: %s", strerror(-hr));
            continue;
        }
        if (!hdr_valid(&od[i].h)) {
            snprintf(od[i].msg, sizeof(od[i].msg),
                     "%s has no valid vdlvm header",
                     c->path ? c->path : c->iscsi_url);
            continue;
        }
        od[i].h.pool_name[sizeof(od[i].h.pool_name) - 1] = 0;
        /* Written by another host, maybe hostile: every division and
         * shift by the extent size relies on this. */
        uint64_t hes = od[i].h.extent_size;
        if (hes < VD_EXTENT_SIZE_MIN || (hes & (hes - 1))) {
            snprintf(od[i].msg, sizeof(od[i].msg),
                     "its header gives extent size %llu (not a power of two "
                     "of at least 1 MiB)",
                     (unsigned long long)hes);
            continue;
        }
        if (od[i].h.major != VD_FMT_MAJOR) {
            snprintf(od[i].msg, sizeof(od[i].msg),
                     "format version %u.%u is not supported (this is %u.%u)",
                     od[i].h.major, od[i].h.minor, VD_FMT_MAJOR, VD_FMT_MINOR);
            continue;
        }
        if (strcmp(od[i].h.pool_name, conf->name) != 0) {
            snprintf(od[i].msg, sizeof(od[i].msg), "%s belongs to pool '%s'",
                     c->path ? c->path : c->iscsi_url, od[i].h.pool_name);
            continue;
        }
        od[i].valid = true;
    }
    /* The pool's identity: the uuid the most devices agree on. */
    {
        int best_votes = 0;
        for (size_t i = 0; i < conf->ndevs; i++) {
            int votes = 0;
            if (!od[i].valid)
                continue;
            for (size_t j = 0; j < conf->ndevs; j++)
                votes += od[j].valid &&
                         !memcmp(od[i].h.pool_uuid, od[j].h.pool_uuid, 16);
            if (votes > best_votes) {
                best_votes = votes;
                uuid = od[i].h.pool_uuid;
            }
        }
    }
    if (!uuid) {
        for (size_t i = 0; i < conf->ndevs; i++)
            vd_log(VD_LOG_ERR, "pool '%s': device '%s': %s", conf->name,
                   conf->devs[i].name, od[i].msg);
        if (held_elsewhere(conf, od)) {
            r = -EBUSY;
            goto out;
        }
        vd_log(VD_LOG_ERR,
               "pool '%s': no device of %s carries the pool; create "
               "it with 'vdlvm pool create %s'",
               conf->name, conf->file ? conf->file : "the definition",
               conf->file ? conf->file : "FILE");
        r = -ENOENT;
        goto out;
    }
    memcpy(p->uuid, uuid, 16);
    for (size_t i = 0; i < conf->ndevs; i++) {
        if (!od[i].valid)
            continue;
        if (memcmp(od[i].h.pool_uuid, uuid, 16)) {
            char u[37];
            vd_uuid_str(od[i].h.pool_uuid, u);
            snprintf(od[i].msg, sizeof(od[i].msg),
                     "carries another pool named '%s' (%s)", conf->name, u);
            od[i].valid = false;
            continue;
        }
        p->extent_size = od[i].h.extent_size;
        p->chunk_size = conf->chunk_size;
        p->read_policy = conf->read_policy;
        od[i].md = malloc(VD_MD_SIZE);
        if (!od[i].md) {
            r = -ENOMEM;
            goto out;
        }
        /* A copy that cannot be read is missing, not corrupt: it may
         * hold the newest commit.  It does not count for the majority
         * and is never overwritten here (the device is retried later and
         * compared before it is touched: vd_pool_retry_devices). */
        int e =
            od[i].b->ops->pread(od[i].b, od[i].md, VD_MD_SIZE, VD_MD_OFFSET);
        if (e < 0)
            e = od[i].b->ops->pread(od[i].b, od[i].md, VD_MD_SIZE,
                                    VD_MD_OFFSET);
        if (e < 0) {
            snprintf(od[i].msg, sizeof(od[i].msg),
                     "its metadata area cannot be read: %s", strerror(-e));
            od[i].valid = false;
            free(od[i].md);
            od[i].md = NULL;
            continue;
        }
        for (int h = 0; h < 2; h++) {
            od[i].seq[h] =
                vd_md_scan_half(uuid, od[i].md + h * half_size, half_size,
                                &od[i].ckpt[h], &od[i].end[h]);
            if (od[i].seq[h] > best_seq)
                best_seq = od[i].seq[h];
        }
    }
    if (best_seq == 0) {
        vd_log(VD_LOG_ERR, "pool '%s': no valid metadata copy on any device",
               conf->name);
        r = -EIO;
        goto out;
    }
    /* The copies at the newest sequence number vote: the state most of
     * them describe wins (two hosts that each committed the same number
     * leave equal numbers with different states). */
    for (size_t i = 0; i < conf->ndevs; i++) {
        int h = newest_half(od[i].seq);
        if (!od[i].valid || od[i].seq[h] != best_seq)
            continue;
        r = chain_state(conf->name, uuid, p->extent_size,
                        od[i].md + h * half_size, od[i].end[h], &od[i].state);
        if (r == -ENOMEM)
            goto out;
        if (r < 0) {
            vd_opbuf_free(&od[i].state);
            continue; /* a chain that cannot be replayed has no vote */
        }
        od[i].votes = 1;
    }
    for (size_t i = 0; i < conf->ndevs; i++) {
        for (size_t j = 0; od[i].votes && j < conf->ndevs; j++)
            if (j != i && od[j].votes && same_state(&od[i].state, &od[j].state))
                od[i].votes++;
        if (od[i].votes && (best < 0 || od[i].votes > od[best].votes))
            best = (int)i;
    }
    if (best < 0) {
        vd_log(VD_LOG_ERR,
               "pool '%s': the newest metadata (seq %llu) cannot be "
               "replayed on any device",
               conf->name, (unsigned long long)best_seq);
        r = -EIO;
        goto out;
    }
    best_half = newest_half(od[best].seq);
    for (size_t i = 0; i < conf->ndevs; i++)
        od[i].agrees = od[i].votes && same_state(&od[i].state, &od[best].state);
    p->ndevs = 0;
    for (size_t i = 0; i < conf->ndevs; i++)
        if (od[i].valid && od[i].h.dev_index + 1 > p->ndevs)
            p->ndevs = od[i].h.dev_index + 1;
    p->ndevs = VD_MAX_DEVS; /* the log may name devices beyond those present */
    r = vd_md_replay_half(p, od[best].md + best_half * half_size,
                          od[best].end[best_half]);
    if (r < 0) {
        vd_log(VD_LOG_ERR,
               "pool '%s': metadata on device '%s' cannot be "
               "replayed",
               conf->name, conf->devs[best].name);
        goto out;
    }
    p->ndevs = 0;
    for (uint32_t i = 0; i < VD_MAX_DEVS; i++)
        if (p->devs[i].used)
            p->ndevs = i + 1;

    /* A majority of the pool's metadata copies must be readable and hold
     * the newest state, else another host may have written a newer one
     * to the copies we cannot see.  VD_OPEN_PARTIAL opens anyway. */
    {
        uint32_t ncopies = 0, nagree = 0;
        char list[2048] = "";
        size_t ll = 0;
        for (uint32_t k = 0; k < p->ndevs; k++) {
            struct vd_dev *d = &p->devs[k];
            if (!d->used || !(d->flags & VD_DEVF_MD))
                continue;
            ncopies++;
            int i = conf_index(conf, d->name);
            /* present: holds the newest state, or an older valid chain
             * (stale: it missed commits, nothing newer hides there) */
            uint64_t cs = i >= 0 ? od[i].seq[newest_half(od[i].seq)] : 0;
            if (i >= 0 && od[i].valid &&
                !memcmp(od[i].h.dev_uuid, d->uuid, 16) &&
                od[i].h.dev_index == d->idx &&
                (od[i].agrees || (cs > 0 && cs < p->seq))) {
                nagree++;
                continue;
            }
            char why[600];
            copy_why(p, d, conf, od, i, why, sizeof(why));
            if (ll < sizeof(list))
                ll += snprintf(list + ll, sizeof(list) - ll, "%s%s",
                               ll ? "; " : "", why);
        }
        if (nagree * 2 <= ncopies && !(flags & VD_OPEN_PARTIAL)) {
            vd_log(VD_LOG_ERR,
                   "pool '%s': only %u of %u metadata copies are "
                   "readable and agree, not a majority; missing: %s; bring "
                   "them back, or open from what is there with --partial (the "
                   "newest readable copy wins and the others are rewritten "
                   "from it)",
                   conf->name, nagree, ncopies, list);
            r = held_elsewhere(conf, od) ? -EBUSY : -ENODEV;
            goto out;
        }
        if (nagree * 2 <= ncopies)
            vd_log(VD_LOG_WARN,
                   "pool '%s': opened with --partial from %u of %u "
                   "metadata copies (seq %llu); missing: %s",
                   conf->name, nagree, ncopies, (unsigned long long)p->seq,
                   list);
    }

    /* Check the definition's encryption and unwrap the data key before
     * anything is written or read from the data areas. */
    if ((r = vd_crypt_pool_open(p, conf)) < 0)
        goto out;

    /* Attach opened devices to the metadata's devices. */
    for (size_t i = 0; i < conf->ndevs; i++) {
        const struct vd_conf_dev *c = &conf->devs[i];
        struct vd_dev *d = NULL;
        for (uint32_t k = 0; k < p->ndevs; k++)
            if (p->devs[k].used && strcmp(p->devs[k].name, c->name) == 0)
                d = &p->devs[k];
        if (!d) {
            vd_log(VD_LOG_WARN,
                   "pool '%s': device '%s' of %s is not part of the "
                   "pool (ignored)",
                   conf->name, c->name,
                   conf->file ? conf->file : "the definition");
            continue;
        }
        free(d->path);
        if (!c->rbd_image ||
            asprintf(&d->path, "rbd:%s/%s", c->rbd_pool, c->rbd_image) < 0)
            d->path = strdup(c->path        ? c->path
                             : c->iscsi_url ? c->iscsi_url
                                            : "");
        d->remote = !c->path;
        if (!od[i].valid) {
            d->conf = conf_dev_dup(c);
            d->retry_delay_ms = 2000;
            d->retry_next_ms = vd_now_ms() + d->retry_delay_ms;
            d->state = od[i].b ? VD_DEV_FAILED : VD_DEV_MISSING;
            snprintf(d->state_msg, sizeof(d->state_msg), "%s", od[i].msg);
            vd_log(VD_LOG_WARN, "pool '%s': device '%s': %s", conf->name,
                   c->name, od[i].msg);
            continue;
        }
        if (memcmp(od[i].h.dev_uuid, d->uuid, 16) ||
            od[i].h.dev_index != d->idx) {
            d->state = VD_DEV_FAILED;
            snprintf(d->state_msg, sizeof(d->state_msg),
                     "%s holds another device of the pool (index %u)", d->path,
                     od[i].h.dev_index);
            vd_log(VD_LOG_WARN, "pool '%s': device '%s': %s", conf->name,
                   c->name, d->state_msg);
            continue;
        }
        d->bdev = od[i].b;
        od[i].b = NULL;
        d->state = VD_DEV_OK;
        d->state_msg[0] = 0;
        if (!(d->flags & VD_DEVF_MD))
            continue;
        /* Metadata copy: current, stale/corrupt and repaired, or holding
         * another state at the newest number (split brain): kept out,
         * never overwritten. */
        int h = newest_half(od[i].seq);
        if (od[i].agrees) {
            d->md_half = h;
            d->md_pos = od[i].end[h];
        } else if (od[i].seq[h] >= p->seq) {
            od[i].b = d->bdev;
            d->bdev = NULL;
            d->state = VD_DEV_FAILED;
            snprintf(d->state_msg, sizeof(d->state_msg),
                     "its metadata (seq %llu) differs from the pool's newest: "
                     "another host wrote the pool (split brain); kept out and "
                     "not overwritten",
                     (unsigned long long)od[i].seq[h]);
            vd_log(VD_LOG_ERR, "pool '%s': device '%s' (%s): %s", conf->name,
                   d->name, d->path, d->state_msg);
        } else {
            int other = od[i].seq[h] ? !h : 0;
            if (write_checkpoint(p, d, other) == 0)
                vd_log(VD_LOG_WARN,
                       "pool '%s': metadata copy on device '%s' was "
                       "%s (seq %llu, newest %llu); repaired",
                       conf->name, d->name,
                       od[i].seq[h] ? "stale" : "corrupt (no valid chain)",
                       (unsigned long long)od[i].seq[h],
                       (unsigned long long)p->seq);
        }
    }
    for (uint32_t k = 0; k < p->ndevs; k++) {
        struct vd_dev *d = &p->devs[k];
        if (d->used && d->state == VD_DEV_MISSING && !d->state_msg[0]) {
            snprintf(d->state_msg, sizeof(d->state_msg), "not in %s",
                     conf->file ? conf->file : "the pool definition");
            vd_log(VD_LOG_WARN, "pool '%s': device '%s': %s", conf->name,
                   d->name, d->state_msg);
        }
    }
    for (uint32_t i = 0; i < p->nvols; i++)
        if ((r = vd_vol_ctr(p->vols[i])) < 0)
            goto out;
    vd_move_opened(p);
    if ((r = vd_bg_start(p)) < 0)
        goto out;
    *out = p;
    p = NULL;
out:
    if (od)
        for (size_t i = 0; i < conf->ndevs; i++) {
            if (od[i].b)
                od[i].b->ops->close(od[i].b);
            free(od[i].md);
            vd_opbuf_free(&od[i].state);
        }
    free(od);
    pool_free(p);
    return r;
}

void vd_pool_close(vd_pool *p)
{
    if (!p)
        return;
    vd_bg_stop(p);
    for (uint32_t i = 0; i < p->ndevs; i++)
        if (p->devs[i].bdev)
            vd_dev_flush(&p->devs[i]);
    pool_free(p);
}

const char *vd_pool_name(const vd_pool *p)
{
    return p->name;
}

/* Allocated share of the pool's data space, in per cent (admin lock). */
static uint32_t alloc_pct(vd_pool *p)
{
    uint64_t total = 0, alloc = 0;
    for (uint32_t i = 0; i < p->ndevs; i++)
        total += p->devs[i].pe_count * p->extent_size;
    for (uint32_t i = 0; i < p->nvols; i++)
        alloc += vd_vol_allocated(p->vols[i]);
    return total ? (uint32_t)(alloc * 100 / total) : 0;
}

static const uint32_t g_thresholds[] = { 80, 90, 95 };

static uint32_t threshold_pct(vd_pool *p)
{
    uint32_t pct = alloc_pct(p), t = 0;
    for (size_t i = 0; i < 3; i++)
        if (pct >= g_thresholds[i])
            t = g_thresholds[i];
    return t;
}

void vd_pool_check_thresholds(vd_pool *p)
{
    uint32_t pct = alloc_pct(p);
    for (uint32_t i = 0; i < 3; i++) {
        bool over = pct >= g_thresholds[i], logged = p->thr_logged & (1u << i);
        if (over && !logged)
            vd_log(VD_LOG_WARN,
                   "pool '%s': %u%% of the data space allocated (threshold "
                   "%u%% crossed); add a device or free space (UNMAP, remove "
                   "a volume)",
                   p->name, pct, g_thresholds[i]);
        if (over)
            p->thr_logged |= 1u << i;
        else
            p->thr_logged &= ~(1u << i);
    }
}

int vd_pool_get_info(const vd_pool *cp, struct vd_pool_info *info)
{
    vd_pool *p = (vd_pool *)cp;
    vd_admin_lock(p);
    memset(info, 0, sizeof(*info));
    snprintf(info->name, sizeof(info->name), "%s", p->name);
    vd_uuid_str(p->uuid, info->uuid);
    info->extent_size = p->extent_size;
    info->seq = p->seq;
    info->ndevs = p->ndevs;
    info->nvols = p->nvols;
    for (uint32_t i = 0; i < p->ndevs; i++) {
        info->total_bytes += p->devs[i].pe_count * p->extent_size;
        info->used_bytes += p->devs[i].used_count * p->extent_size;
    }
    info->free_bytes = info->total_bytes - info->used_bytes;
    for (uint32_t i = 0; i < p->nvols; i++) {
        info->provisioned_bytes += p->vols[i]->size;
        info->allocated_bytes += vd_vol_allocated(p->vols[i]);
    }
    info->threshold_pct = threshold_pct(p);
    vd_admin_unlock(p);
    return 0;
}

int vd_pool_dev_get_info(const vd_pool *cp, uint32_t i,
                         struct vd_dev_info *info)
{
    vd_pool *p = (vd_pool *)cp;
    const struct vd_dev *d;

    if (i >= p->ndevs)
        return -ENOENT;
    vd_admin_lock(p);
    d = &p->devs[i];
    if (!d->used) { /* a device that left the pool (pool apply) */
        vd_admin_unlock(p);
        return -ENOENT;
    }
    memset(info, 0, sizeof(*info));
    snprintf(info->name, sizeof(info->name), "%s", d->name);
    snprintf(info->node, sizeof(info->node), "%s", d->node);
    snprintf(info->path, sizeof(info->path), "%s", d->path ? d->path : "");
    vd_uuid_str(d->uuid, info->uuid);
    info->state = d->state;
    snprintf(info->state_msg, sizeof(info->state_msg), "%s", d->state_msg);
    /* A remote device's live connection state ("connected", "reconnecting
     * since T: cause", "failed: cause") overrides the state found at open. */
    if (d->state == VD_DEV_OK && d->bdev && d->bdev->ops->get_state) {
        char s[sizeof(info->state_msg)];
        if (!d->bdev->ops->get_state(d->bdev, s, sizeof(s)))
            info->state = VD_DEV_FAILED;
        snprintf(info->state_msg, sizeof(info->state_msg), "%s", s);
    }
    info->size = d->size;
    info->extents = d->pe_count;
    info->used_extents = d->used_count;
    info->has_md = !!(d->flags & VD_DEVF_MD);
    vd_admin_unlock(p);
    return 0;
}

/* ---- pool apply: the definition's devices join the live pool --------------
 * Admin lock held throughout.  Everything is checked before anything is
 * written; a new device gets its header (durable) before the VD_OP_DEV_ADD
 * commit that makes it part of the pool, and loses it again if the commit
 * fails, so a crash leaves either a pool without the device (its header
 * names this pool: apply takes it again) or a pool with it.
 *
 * A device left out of the definition leaves when it holds nothing (no
 * extent of any volume, none reserved by a move, not being evacuated):
 * if it holds a metadata copy, another device takes the copy first
 * (VD_OP_DEV_FLAGS: the next commit writes it a checkpoint; a crash in
 * between leaves one copy more, and open needs a quorum of them all),
 * then VD_OP_DEV_REMOVE, then its vdlvm header and metadata area are
 * cleared.  Like LVM's vgreduce the device is then free for another use;
 * unlike vgreduce (which leaves an orphan PV label) nothing of vdlvm stays
 * on it, since vdlvm has no orphan state and a header naming the pool
 * would make 'pool create' and other pools refuse the device.  A crash
 * after the commit and before the clearing leaves a header naming this
 * pool: harmless (the pool no longer lists the device; apply may add it
 * again).  The slot stays empty (indices are what the mapping names); its
 * open handle is kept until the pool closes or the slot is reused, in case
 * a flush that chose its devices before the last move off it still comes
 * (a device with no extent gets no other I/O). */
int vd_pool_dev_md_apply(vd_pool *p, const struct vd_op_hdr *h)
{
    const struct vd_op_dev_set *o = (const void *)h;
    struct vd_dev *d;

    if (h->len < sizeof(*o) || o->idx >= p->ndevs || !p->devs[o->idx].used) {
        vd_log(VD_LOG_ERR, "pool '%s': metadata op %u names no device", p->name,
               h->type);
        return -EINVAL;
    }
    d = &p->devs[o->idx];
    if (h->type == VD_OP_DEV_FLAGS) {
        if (!(d->flags & VD_DEVF_MD) && (o->flags & VD_DEVF_MD)) {
            d->md_half = -1; /* a checkpoint first */
            d->md_pos = VD_MD_SIZE / 2 + 1;
        }
        d->flags = o->flags;
        return 0;
    }
    if (d->used_count) {
        vd_log(VD_LOG_ERR,
               "pool '%s': metadata removes device '%s' which holds %llu "
               "extents",
               p->name, d->name, (unsigned long long)d->used_count);
        return -EINVAL;
    }
    free(d->used);
    d->used = NULL;
    d->used_count = d->pe_count = d->size = d->data_offset = 0;
    d->flags = 0;
    d->no_alloc = false;
    free(d->path);
    d->path = NULL;
    conf_dev_free(d->conf);
    d->conf = NULL;
    memset(d->name, 0, sizeof(d->name));
    memset(d->node, 0, sizeof(d->node));
    memset(d->uuid, 0, sizeof(d->uuid));
    __atomic_store_n(&d->state, VD_DEV_MISSING, __ATOMIC_RELEASE);
    snprintf(d->state_msg, sizeof(d->state_msg), "removed from the pool");
    return 0;
}

/* The volumes with extents on dev, "'a' (3), 'b' (1)", into buf. */
static void dev_holders(const vd_pool *p, uint32_t dev, char *buf, size_t len)
{
    size_t pos = 0;

    buf[0] = 0;
    for (uint32_t i = 0; i < p->nvols && pos < len; i++) {
        const struct vd_vol *v = p->vols[i];
        uint64_t n = 0;
        for (uint64_t k = 0; k < v->le_count * v->copies; k++)
            n += v->map[k].dev == dev;
        if (n) {
            int w = snprintf(buf + pos, len - pos, "%svolume '%s' (%llu)",
                             pos ? ", " : "", v->name, (unsigned long long)n);
            if (w > 0)
                pos += (size_t)w;
        }
    }
}

/* The device that takes over the metadata copy of leaving device x: in
 * the pool, not leaving, without a copy, usable; on a node without a copy
 * first.  VD_NO_DEV if none. */
static uint32_t md_heir(const vd_pool *p, uint32_t x, const bool *leaving)
{
    uint32_t best = VD_NO_DEV;

    for (uint32_t i = 0; i < p->ndevs; i++) {
        const struct vd_dev *d = &p->devs[i];
        if (i == x || !d->used || leaving[i] || (d->flags & VD_DEVF_MD) ||
            !d->bdev || d->state != VD_DEV_OK)
            continue;
        bool node_has = false;
        for (uint32_t j = 0; j < p->ndevs; j++)
            if (j != x && !leaving[j] && p->devs[j].used &&
                (p->devs[j].flags & VD_DEVF_MD) &&
                !strcmp(p->devs[j].node, d->node))
                node_has = true;
        if (!node_has)
            return i;
        if (best == VD_NO_DEV)
            best = i;
    }
    return best;
}

/* Device x leaves (see above); admin lock held, everything checked. */
static int dev_leave(vd_pool *p, uint32_t x, const bool *leaving)
{
    struct vd_dev *d = &p->devs[x];
    struct vd_bdev *b = d->bdev;
    struct vd_op_dev_set o;
    struct vd_opbuf ops = { 0 };
    char name[VD_NAME_MAX + 1];
    int r;

    snprintf(name, sizeof(name), "%s", d->name);
    if (d->flags & VD_DEVF_MD) {
        uint32_t h = md_heir(p, x, leaving);
        if (h != VD_NO_DEV) {
            memset(&o, 0, sizeof(o));
            o.h.type = VD_OP_DEV_FLAGS;
            o.idx = h;
            o.flags = p->devs[h].flags | VD_DEVF_MD;
            if ((r = vd_opbuf_add(&ops, &o, sizeof(o))) == 0)
                r = vd_md_commit(p, &ops);
            vd_opbuf_free(&ops);
            if (r < 0)
                return r;
            vd_log(VD_LOG_INFO,
                   "pool '%s': device '%s' takes the metadata copy of '%s'",
                   p->name, p->devs[h].name, name);
        }
    }
    memset(&o, 0, sizeof(o));
    o.h.type = VD_OP_DEV_REMOVE;
    o.idx = x;
    if ((r = vd_opbuf_add(&ops, &o, sizeof(o))) == 0)
        r = vd_md_commit(p, &ops);
    vd_opbuf_free(&ops);
    if (r < 0)
        return r;
    while (p->ndevs && !p->devs[p->ndevs - 1].used)
        p->ndevs--;
    vd_log(VD_LOG_INFO, "pool '%s': device '%s' removed", p->name, name);
    if (b) {
        static const uint8_t zero[VD_HDR_SIZE];
        static const uint8_t zb[VD_BLOCK];
        if (b->ops->pwrite(b, zb, VD_BLOCK, VD_MD_OFFSET, 0) < 0 ||
            b->ops->pwrite(b, zb, VD_BLOCK, VD_MD_OFFSET + VD_MD_SIZE / 2, 0) <
                0 ||
            b->ops->flush(b) < 0 ||
            b->ops->pwrite(b, zero, sizeof(zero), 0, VD_IO_FUA) < 0)
            vd_log(VD_LOG_WARN,
                   "device '%s': clearing its vdlvm header failed; it is no "
                   "longer part of pool '%s' (wipe it before another use)",
                   name, p->name);
    }
    return 0;
}
static int plan_add(char *plan, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int plan_add(char *plan, size_t len, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    if (*pos >= len)
        return 0;
    va_start(ap, fmt);
    int n = vsnprintf(plan + *pos, len - *pos, fmt, ap);
    va_end(ap);
    if (n > 0)
        *pos += (size_t)n;
    return 0;
}

static uint64_t dev_extents(const vd_pool *p, uint32_t dev)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < p->nvols; i++) {
        const struct vd_vol *v = p->vols[i];
        for (uint64_t k = 0; k < v->le_count * v->copies; k++)
            n += v->map[k].dev == dev;
    }
    return n;
}

int vd_pool_apply(vd_pool *p, const struct vd_conf_pool *conf, int dry_run,
                  char *plan, size_t plan_len)
{
    const char *file = conf->file ? conf->file : "the definition";
    struct vd_bdev *nb[VD_MAX_DEVS] = { NULL };
    bool created[VD_MAX_DEVS] = { false }, leaving[VD_MAX_DEVS] = { false };
    size_t pos = 0, nadd = 0, nleave = 0;
    char msg[512];
    int r = 0;

    if (plan_len)
        plan[0] = 0;
    vd_admin_lock(p);
    if (strcmp(conf->name, p->name)) {
        vd_log(VD_LOG_ERR, "%s: defines pool '%s', not '%s'", file, conf->name,
               p->name);
        r = -EINVAL;
        goto out;
    }
    if (conf->extent_size && conf->extent_size != p->extent_size) {
        vd_log(VD_LOG_ERR,
               "%s: extent_size %llu differs from the pool's %llu; it cannot "
               "change",
               file, (unsigned long long)conf->extent_size,
               (unsigned long long)p->extent_size);
        r = -EINVAL;
        goto out;
    }
    /* devices of the pool: each must be in the file, unchanged */
    for (uint32_t i = 0; i < p->ndevs; i++) {
        struct vd_dev *d = &p->devs[i];
        const struct vd_conf_dev *c = NULL;
        if (!d->used)
            continue;
        for (size_t k = 0; k < conf->ndevs; k++)
            if (!strcmp(conf->devs[k].name, d->name))
                c = &conf->devs[k];
        if (!c) {
            uint64_t n = dev_extents(p, i);
            struct vd_move_status ms;
            char who[512];
            /* the same path under a new name: a rename */
            for (size_t k = 0; k < conf->ndevs && d->path; k++) {
                const struct vd_conf_dev *o = &conf->devs[k];
                const char *op = o->path        ? o->path
                                 : o->iscsi_url ? o->iscsi_url
                                                : "";
                if (!strcmp(op, d->path)) {
                    vd_log(VD_LOG_ERR,
                           "%s:%d: device '%s': %s is device '%s' of the "
                           "pool; a device cannot be renamed",
                           file, o->line, o->name, op, d->name);
                    r = -EINVAL;
                    goto out;
                }
            }
            if (n) {
                dev_holders(p, i, who, sizeof(who));
                vd_log(VD_LOG_ERR,
                       "%s: device '%s' is not in it but holds %llu extents "
                       "(%s); move them off first (vdlvm dev evacuate "
                       "%s/%s), or put the device back",
                       file, d->name, (unsigned long long)n, who, p->name,
                       d->name);
                r = -EINVAL;
                goto out;
            }
            vd_pool_move_status(p, &ms);
            if (d->used_count ||
                (ms.evacuating && !strcmp(ms.evac_dev, d->name))) {
                vd_log(VD_LOG_ERR,
                       "%s: device '%s' is not in it but an extent move "
                       "still uses it; wait for it (vdlvm status %s)",
                       file, d->name, p->name);
                r = -EBUSY;
                goto out;
            }
            leaving[i] = true;
            nleave++;
            plan_add(plan, plan_len, &pos,
                     "remove device '%s' (it holds no extent)%s\n", d->name,
                     d->flags & VD_DEVF_MD ? "; its metadata copy moves to "
                                             "another device"
                                           : "");
            continue;
        }
        const char *cp = c->path ? c->path : c->iscsi_url ? c->iscsi_url : "";
        if (d->path && strcmp(d->path, cp)) {
            vd_log(VD_LOG_ERR,
                   "%s:%d: device '%s': path '%s' differs from the pool's "
                   "'%s'; a device's path cannot change (a renamed device "
                   "is a new one: add it under a new name)",
                   file, c->line, d->name, cp, d->path);
            r = -EINVAL;
            goto out;
        }
        if (strcmp(conf_node(c), d->node)) {
            vd_log(VD_LOG_ERR,
                   "%s:%d: device '%s': node '%s' differs from the pool's "
                   "'%s'; it cannot change",
                   file, c->line, d->name, conf_node(c), d->node);
            r = -EINVAL;
            goto out;
        }
    }
    /* new devices: check each, write nothing */
    uint64_t doff = data_offset(p->extent_size);
    for (size_t k = 0; k < conf->ndevs; k++) {
        const struct vd_conf_dev *c = &conf->devs[k];
        bool known = false;
        for (uint32_t i = 0; i < p->ndevs; i++)
            if (p->devs[i].used && !strcmp(p->devs[i].name, c->name))
                known = true;
        if (known)
            continue;
        const char *cp = c->path ? c->path : c->iscsi_url ? c->iscsi_url : "";
        if ((r = vd_crypt_dev_check(p, c, file)) < 0) /* pool/crypt.c */
            goto out;
        for (uint32_t i = 0; i < p->ndevs; i++)
            if (p->devs[i].used && p->devs[i].path &&
                !strcmp(p->devs[i].path, cp)) {
                vd_log(VD_LOG_ERR,
                       "%s:%d: device '%s': %s is device '%s' of the pool; a "
                       "device cannot be renamed",
                       file, c->line, c->name, cp, p->devs[i].name);
                r = -EINVAL;
                goto out;
            }
        uint64_t size;
        struct stat st;
        if (c->path && stat(c->path, &st) < 0 && errno == ENOENT) {
            if (!c->size) {
                vd_log(VD_LOG_ERR,
                       "%s:%d: device '%s': %s does not exist; create it or "
                       "give size: to create a sparse file",
                       file, c->line, c->name, c->path);
                r = -ENOENT;
                goto out;
            }
            size = c->size;
        } else {
            char what[256];
            int f = vd_dev_probe_foreign(c, what, sizeof(what));
            if (f != 0) {
                vd_log(VD_LOG_ERR, "%s:%d: device '%s': %s", file, c->line,
                       c->name, f > 0 ? what : what);
                r = f > 0 ? -EEXIST : f;
                goto out;
            }
            r = vd_bdev_open(c, 0, 0, &nb[nadd], msg, sizeof(msg));
            if (r < 0) {
                vd_log(VD_LOG_ERR, "device '%s': %s", c->name, msg);
                goto out;
            }
            struct vd_dev_hdr h;
            if ((r = read_hdr(nb[nadd], &h)) < 0)
                goto out;
            if (!memcmp(h.magic, VD_DEV_MAGIC, 8) &&
                memcmp(h.pool_uuid, p->uuid, 16)) {
                h.pool_name[sizeof(h.pool_name) - 1] = 0;
                vd_log(VD_LOG_ERR,
                       "%s:%d: device '%s': %s belongs to pool '%s'; remove "
                       "it from there first (vdlvm pool remove)",
                       file, c->line, c->name, cp, h.pool_name);
                r = -EEXIST;
                goto out;
            }
            size = nb[nadd]->size;
        }
        if (size < doff + p->extent_size) {
            vd_log(VD_LOG_ERR,
                   "%s:%d: device '%s': %llu bytes is too small (at least "
                   "%llu)",
                   file, c->line, c->name, (unsigned long long)size,
                   (unsigned long long)(doff + p->extent_size));
            r = -ENOSPC;
            goto out;
        }
        char sz[32];
        vd_size_format(size, sz, sizeof(sz));
        plan_add(plan, plan_len, &pos,
                 "add device '%s' (%s, node %s): %s, %llu extents%s\n", c->name,
                 cp, conf_node(c), sz,
                 (unsigned long long)((size - doff) / p->extent_size),
                 c->encrypt ? ", encrypted" : "");
        nadd++;
    }
    {
        uint32_t stay = 0;
        for (uint32_t i = 0; i < p->ndevs; i++)
            stay += p->devs[i].used && !leaving[i];
        if (!stay && !nadd) {
            vd_log(VD_LOG_ERR,
                   "%s: names none of the pool's devices; a "
                   "pool keeps at least one (vdlvm pool remove %s removes "
                   "the pool)",
                   file, p->name);
            r = -EINVAL;
            goto out;
        }
    }
    if (!nadd && !nleave)
        plan_add(plan, plan_len, &pos, "nothing to change\n");
    if (dry_run || (!nadd && !nleave))
        goto out;

    /* apply: one device at a time, header then commit */
    size_t n = 0;
    for (size_t k = 0; k < conf->ndevs && r == 0; k++) {
        const struct vd_conf_dev *c = &conf->devs[k];
        bool known = false;
        for (uint32_t i = 0; i < p->ndevs; i++)
            if (p->devs[i].used && !strcmp(p->devs[i].name, c->name))
                known = true;
        if (known)
            continue;
        struct vd_bdev *b = nb[n];
        if (!b) {
            r = vd_bdev_open(c, 1, c->size, &b, msg, sizeof(msg));
            if (r < 0) {
                vd_log(VD_LOG_ERR, "device '%s': %s", c->name, msg);
                break;
            }
            created[n] = true;
        }
        nb[n] = NULL;
        uint32_t idx = 0;
        while (idx < VD_MAX_DEVS && p->devs[idx].used)
            idx++;
        if (idx == VD_MAX_DEVS) {
            vd_log(VD_LOG_ERR, "pool '%s': %d devices at most", p->name,
                   VD_MAX_DEVS);
            b->ops->close(b);
            r = -ENOSPC;
            break;
        }
        struct vd_dev *d = &p->devs[idx];
        struct vd_op_dev od = { .h.type = VD_OP_DEV_ADD };
        if (d->bdev) { /* the handle of a device that left (see above) */
            struct vd_bdev *old = d->bdev;
            d->bdev = NULL;
            old->ops->close(old);
        }
        od.idx = idx;
        vd_uuid_gen(od.uuid);
        od.size = b->size;
        od.pe_count = (b->size - doff) / p->extent_size;
        od.data_offset = doff;
        od.flags = vd_crypt_dev_flags(c);
        vd_name_copy(od.name, sizeof(od.name), c->name);
        vd_name_copy(od.node, sizeof(od.node), conf_node(c));
        /* the header, durable, after a cleared metadata area */
        struct vd_dev_hdr h;
        static const uint8_t zero[VD_BLOCK];
        memset(&h, 0, sizeof(h));
        memcpy(h.magic, VD_DEV_MAGIC, 8);
        h.major = VD_FMT_MAJOR;
        h.minor = VD_FMT_MINOR;
        h.hdr_len = VD_HDR_SIZE;
        memcpy(h.pool_uuid, p->uuid, 16);
        memcpy(h.dev_uuid, od.uuid, 16);
        h.dev_size = od.size;
        h.extent_size = p->extent_size;
        h.md_offset = VD_MD_OFFSET;
        h.md_size = VD_MD_SIZE;
        h.data_offset = doff;
        h.pe_count = od.pe_count;
        h.dev_index = idx;
        vd_name_copy(h.pool_name, sizeof(h.pool_name), p->name);
        vd_name_copy(h.dev_name, sizeof(h.dev_name), c->name);
        h.ctime = time(NULL);
        h.crc = vd_crc32c(0, &h, sizeof(h));
        if ((r = b->ops->pwrite(b, zero, VD_BLOCK, VD_MD_OFFSET, 0)) < 0 ||
            (r = b->ops->pwrite(b, zero, VD_BLOCK,
                                VD_MD_OFFSET + VD_MD_SIZE / 2, 0)) < 0 ||
            (r = b->ops->flush(b)) < 0 ||
            (r = b->ops->pwrite(b, &h, sizeof(h), 0, VD_IO_FUA)) < 0) {
            vd_log(VD_LOG_ERR, "device '%s': writing its header failed: %s",
                   c->name, strerror(-r));
            b->ops->close(b);
            break;
        }
        struct vd_opbuf ops = { 0 };
        uint32_t ndevs0 = p->ndevs;
        if (idx + 1 > p->ndevs)
            p->ndevs = idx + 1;
        if ((r = vd_opbuf_add(&ops, &od, sizeof(od))) == 0)
            r = vd_md_commit(p, &ops);
        vd_opbuf_free(&ops);
        if (r < 0) {
            static const uint8_t zero_hdr[VD_HDR_SIZE];
            p->ndevs = ndevs0;
            b->ops->pwrite(b, zero_hdr, sizeof(zero_hdr), 0, VD_IO_FUA);
            b->ops->close(b);
            break;
        }
        free(d->path);
        d->path = strdup(c->path ? c->path : c->iscsi_url ? c->iscsi_url : "");
        d->conf = conf_dev_dup(c);
        /* a reused slot: the device that left it counted its own errors
         * (pool/stats.h); the new one starts from 0 */
        __atomic_store_n(&d->n_read_errors, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&d->n_write_errors, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&d->n_flush_errors, 0, __ATOMIC_RELAXED);
        vd_crypt_dev_attach(p, d); /* before its first extent (admin lock) */
        d->bdev = b;
        __atomic_store_n(&d->state, VD_DEV_OK, __ATOMIC_RELEASE);
        d->state_msg[0] = 0;
        vd_log(VD_LOG_INFO, "pool '%s': device '%s' added (%llu extents)",
               p->name, c->name, (unsigned long long)od.pe_count);
        n++;
    }
    /* then the devices that leave (new ones may take metadata copies) */
    for (uint32_t i = 0; i < p->ndevs && r == 0; i++)
        if (leaving[i])
            r = dev_leave(p, i, leaving);
out:
    for (size_t i = 0; i < VD_MAX_DEVS; i++)
        if (nb[i])
            nb[i]->ops->close(nb[i]);
    (void)created;
    vd_admin_unlock(p);
    return r;
}
