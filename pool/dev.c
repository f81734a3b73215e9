/* vdlvm: device access — the local file driver, and the logging wrappers
 * the pool uses for every device I/O.  Thread-safe.
 *
 * Flush generations (SYNCHRONIZE CACHE under concurrency)
 *   d->wgen counts completed non-FUA writes (and zeroings) of the device:
 *   each is bumped atomically (release) after the bdev's write returned.
 *   vd_dev_flush notes target = wgen (acquire) when it is called: every
 *   write its caller saw complete is <= target.  It returns 0 only once a
 *   bdev flush that *started* after wgen reached target has completed
 *   successfully; d->flushed_gen records the start generation of the
 *   newest successful flush.  Under flush_lock:
 *   - flushed_gen >= target: nothing to do (no I/O when nothing was
 *     written since the last good flush).
 *   - a flush is running that started at flush_start_gen >= target: wait
 *     for it and share its result; if it failed, fail too (nothing the
 *     caller depends on is known durable).
 *   - a flush is running that started earlier: wait for it to end, then
 *     decide again (it does not cover our writes).
 *   - no flush running: start one, noting flush_start_gen = wgen now,
 *     unlock, flush the bdev, lock, publish (flushed_gen = start on
 *     success), wake every waiter.
 *   So concurrent flushers share one fdatasync, a second SYNCHRONIZE
 *   CACHE never returns before the data it covers is durable (the old
 *   `touched` flag was cleared before the fdatasync), and a failed flush
 *   fails every waiter that depended on it; the next flush retries.
 *   Waiting is on flush_cond only (pthread; simulator-friendly).
 *
 * Read-modify-write of partial blocks (bounce_io on block-only devices)
 *   Two short writes into one block each read the block, patch it and
 *   write it back; unserialised, the second write-back loses the first
 *   patch.  A bounced write registers its block range [a0, a1) in the
 *   device's small range table (rmw_lock) before its read and removes it
 *   after its write; an overlapping bounced write waits on rmw_cond.
 *   Aligned I/O never takes rmw_lock (no cost); an aligned write racing a
 *   bounced write to the same block is ordered by neither (as two
 *   overlapping SCSI writes in flight are not).
 *
 * Encrypted devices (d->crypt set, pool/crypt.c)
 *   Every I/O to the data area goes through blk_read / blk_write: a read
 *   decrypts in the caller's buffer after the device read; a write
 *   encrypts into a crypt worker's bounce buffer (the caller's buffer is
 *   never modified) and writes that.  XTS works on sectors of 512 bytes
 *   (or 4096: encryption.sector_size), so an encrypted device's I/O is
 *   bounced (read-modify-write, as above) unless it is sector-aligned,
 *   also on local files.  The header and the
 *   metadata area (below data_offset) are never encrypted; zeroing stays
 *   raw (all-zero ciphertext reads as zeros: crypt.c says why).
 *   vd_dev_pread_raw stays raw (it only probes a device).
 *
 * Direct I/O (`direct:` on a device, issue 14)
 *   A device with direct: true, and a block device unless direct: false,
 *   is opened O_DIRECT (set with F_SETFL after the open, then checked with
 *   one aligned read: a file system that refuses it fails the open with a
 *   clear message for direct: true; a block device falls back to buffered
 *   and says so).  O_DIRECT needs the buffer address aligned to mem_align
 *   and offset and length to off_align (statx STATX_DIOALIGN; a block
 *   device's logical block size; else 4096).  Every request stays
 *   correct whatever its alignment:
 *   - vd_dev_pread / vd_dev_pwrite bounce a request whose offset or length
 *     is not aligned (io_block = off_align: the read-modify-write above,
 *     serialised by rmw_lock);
 *   - the driver itself (file_pread / file_pwrite, reached also by the
 *     callers that use the bdev ops directly: headers, metadata, probes)
 *     copies a misaligned buffer through an aligned one, reads the
 *     covering blocks of an unaligned read, and read-modify-writes an
 *     unaligned write under its own dio_lock (a leaf, held across that
 *     device I/O only; no other lock is taken under it);
 *   - the NOWAIT (inline, tgtd's main thread) calls answer -EAGAIN: a
 *     direct read or write always waits for the device;
 *   - the submit op (io_uring) takes aligned requests only (-EAGAIN
 *     otherwise: the thread path above does it).
 *
 * Lock order: flush_lock and rmw_lock are leaves (no other lock is taken
 * while holding them); neither is held across device I/O. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "crypt.h"
#include "pool_int.h"
#include "stats.h"
#include "uring.h"

/* ---- local files and block devices -------------------------------------- */
struct file_bdev {
    struct vd_bdev b;
    int fd;
    /* A file on tmpfs has no I/O to wait for: NOWAIT requests are served
     * by plain pread/pwrite.  Otherwise RWF_NOWAIT, until the filesystem
     * answers EOPNOTSUPP once (then never tried again; atomic). */
    int in_memory;
    int nowait_read, nowait_write;
    bool is_blk; /* block device: BLKZEROOUT */
    bool sparse; /* file with holes at open: zero by punching holes */
    /* opened O_DIRECT (set at open, then constant): the asynchronous
     * path pays (vd_dev_async_ok).  A buffered file keeps the thread
     * path: buffered I/O through io_uring is slower than the worker
     * threads (io_uring punts buffered writes to one regular file to its
     * worker queue, which serialises them; bench/results/async-*.md).
     * mem_align / off_align: the O_DIRECT alignment of buffer addresses
     * and of offsets and lengths (1 when buffered); dio_lock: the
     * driver's own read-modify-writes (header comment). */
    bool direct;
    uint32_t mem_align, off_align;
    pthread_mutex_t dio_lock;
    /* io_uring (pool/uring.c), made at the first submit: ring_state 0
     * not tried, 1 ring set, -1 none (thread path); under ring_lock until
     * set, then read with acquire. */
    pthread_mutex_t ring_lock;
    int ring_state;
    struct vd_uring *ring;
    char *path; /* for the io_uring message */
};

static int raw_pread(struct file_bdev *fb, void *buf, size_t len, uint64_t off)
{
    char *p = buf;

    while (len) {
        ssize_t n = pread(fb->fd, p, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        /* beyond the end of a short file: zeros (O_DIRECT: a read that
         * ended at an unaligned end of file cannot go on) */
        if (n == 0 || (fb->direct && (off + n) % fb->off_align)) {
            memset(p + n, 0, len - n);
            return 0;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

static bool dio_aligned(const struct file_bdev *fb, const void *buf, size_t len,
                        uint64_t off)
{
    return !fb->direct ||
           ((uintptr_t)buf % fb->mem_align == 0 && len % fb->off_align == 0 &&
            off % fb->off_align == 0);
}

/* An aligned buffer of n bytes for O_DIRECT on fb; NULL: no memory. */
static void *dio_alloc(const struct file_bdev *fb, size_t n)
{
    void *t = NULL;
    size_t a = fb->mem_align > 4096 ? fb->mem_align : 4096;

    return posix_memalign(&t, a, n ? n : 1) ? NULL : t;
}

static int file_pread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    struct file_bdev *fb = (struct file_bdev *)b;
    uint64_t a0, a1;
    uint8_t *t;
    int r;

    if (dio_aligned(fb, buf, len, off))
        return raw_pread(fb, buf, len, off);
    a0 = off - off % fb->off_align;
    a1 = vd_div_up(off + len, fb->off_align) * fb->off_align;
    if (!(t = dio_alloc(fb, a1 - a0)))
        return -ENOMEM;
    r = raw_pread(fb, t, a1 - a0, a0);
    if (r == 0)
        memcpy(buf, t + (off - a0), len);
    free(t);
    return r;
}

static int file_pread_nowait(struct vd_bdev *b, void *buf, size_t len,
                             uint64_t off)
{
    struct file_bdev *fb = (struct file_bdev *)b;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    ssize_t n;

    if (fb->direct)
        return -EAGAIN; /* a direct read waits for the device */
    if (fb->in_memory)
        return file_pread(b, buf, len, off);
    if (!__atomic_load_n(&fb->nowait_read, __ATOMIC_RELAXED))
        return -EAGAIN;
    n = preadv2(fb->fd, &iov, 1, off, RWF_NOWAIT);
    if (n < 0 && errno == EOPNOTSUPP)
        __atomic_store_n(&fb->nowait_read, 0, __ATOMIC_RELAXED);
    /* a short read is a partial cache hit (or the end of a short file):
     * let the blocking path do it */
    return n == (ssize_t)len ? 0 : -EAGAIN;
}

static int raw_pwrite(struct file_bdev *fb, const void *buf, size_t len,
                      uint64_t off, int rwf)
{
    const char *p = buf;

    while (len) {
        struct iovec iov = { .iov_base = (void *)p, .iov_len = len };
        ssize_t n = pwritev2(fb->fd, &iov, 1, off, rwf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -ENOSPC;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* O_DIRECT write of a request that is not aligned (header comment). */
static int dio_pwrite_unaligned(struct file_bdev *fb, const void *buf,
                                size_t len, uint64_t off, int rwf)
{
    uint64_t bs = fb->off_align, a0 = off - off % bs;
    uint64_t a1 = vd_div_up(off + len, bs) * bs, n = a1 - a0;
    uint8_t *t = dio_alloc(fb, n);
    int r = 0;

    if (!t)
        return -ENOMEM;
    if (off == a0 && n == len) { /* only the buffer is misaligned */
        memcpy(t, buf, len);
        r = raw_pwrite(fb, t, len, off, rwf);
        free(t);
        return r;
    }
    pthread_mutex_lock(&fb->dio_lock);
    if (off != a0)
        r = raw_pread(fb, t, bs, a0);
    if (r == 0 && off + len != a1 && (a1 - bs != a0 || off == a0))
        r = raw_pread(fb, t + n - bs, bs, a1 - bs);
    if (r == 0) {
        memcpy(t + (off - a0), buf, len);
        r = raw_pwrite(fb, t, n, a0, rwf);
    }
    pthread_mutex_unlock(&fb->dio_lock);
    free(t);
    return r;
}

static int file_pwrite(struct vd_bdev *b, const void *buf, size_t len,
                       uint64_t off, unsigned flags)
{
    struct file_bdev *fb = (struct file_bdev *)b;
    int fd = fb->fd;
    const char *p = buf;
    int rwf = (flags & VD_IO_FUA) ? RWF_DSYNC : 0;

    if (fb->direct) {
        if (flags & VD_IO_NOWAIT)
            return -EAGAIN; /* a direct write waits for the device */
        if (!dio_aligned(fb, buf, len, off))
            return dio_pwrite_unaligned(fb, buf, len, off, rwf);
        return raw_pwrite(fb, buf, len, off, rwf);
    }
    if (flags & VD_IO_NOWAIT) {
        struct file_bdev *fb = (struct file_bdev *)b;
        if (!fb->in_memory) {
            struct iovec iov = { .iov_base = (void *)p, .iov_len = len };
            if (!__atomic_load_n(&fb->nowait_write, __ATOMIC_RELAXED))
                return -EAGAIN;
            ssize_t n = pwritev2(fd, &iov, 1, off, rwf | RWF_NOWAIT);
            if (n < 0 && errno == EOPNOTSUPP)
                __atomic_store_n(&fb->nowait_write, 0, __ATOMIC_RELAXED);
            return n == (ssize_t)len ? 0 : -EAGAIN;
        }
    }
    return raw_pwrite(fb, p, len, off, rwf);
}

static int file_flush(struct vd_bdev *b)
{
    return fdatasync(((struct file_bdev *)b)->fd) < 0 ? -errno : 0;
}

/* Zero a range: a sparse file gets a hole (reads zeroes, frees space), a
 * preallocated file unwritten extents (ZERO_RANGE keeps the allocation),
 * a block device BLKZEROOUT.  -EOPNOTSUPP: the pool writes zero buffers. */
static int file_zero(struct vd_bdev *b, uint64_t off, uint64_t len)
{
    struct file_bdev *fb = (struct file_bdev *)b;
    int modes[2], r = -EOPNOTSUPP;

    if (fb->is_blk) {
        uint64_t range[2] = { off, len };
        return ioctl(fb->fd, BLKZEROOUT, range) < 0 ? -errno : 0;
    }
    modes[0] = fb->sparse ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                          : FALLOC_FL_ZERO_RANGE;
    modes[1] = fb->sparse ? FALLOC_FL_ZERO_RANGE
                          : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    for (int i = 0; i < 2; i++) {
        if (fallocate(fb->fd, modes[i], (off_t)off, (off_t)len) == 0)
            return 0;
        r = -errno;
        if (r != -EOPNOTSUPP && r != -EINVAL)
            return r;
    }
    return -EOPNOTSUPP;
}

/* The bdev submit op: through the device's ring; -EAGAIN (the thread
 * path) when io_uring is off or unavailable. */
static int file_submit(struct vd_bdev *b, struct vd_bio *bio)
{
    struct file_bdev *fb = (struct file_bdev *)b;
    int st = __atomic_load_n(&fb->ring_state, __ATOMIC_ACQUIRE);

    if (bio->op != VD_BIO_FLUSH &&
        !dio_aligned(fb, bio->buf, bio->len, bio->off))
        return -EAGAIN; /* the thread path bounces it */
    if (st == 0) {
        pthread_mutex_lock(&fb->ring_lock);
        if (fb->ring_state == 0) {
            fb->ring = vd_uring_open(fb->fd, fb->path ? fb->path : "?");
            __atomic_store_n(&fb->ring_state, fb->ring ? 1 : -1,
                             __ATOMIC_RELEASE);
        }
        st = fb->ring_state;
        pthread_mutex_unlock(&fb->ring_lock);
    }
    return st > 0 ? vd_uring_submit(fb->ring, bio) : -EAGAIN;
}

static void file_close(struct vd_bdev *b)
{
    if (b) {
        struct file_bdev *fb = (struct file_bdev *)b;
        vd_uring_close(fb->ring); /* completes what is in flight */
        pthread_mutex_destroy(&fb->ring_lock);
        pthread_mutex_destroy(&fb->dio_lock);
        close(fb->fd);
        free(fb->path);
        free(b);
    }
}

static const struct vd_bdev_ops file_ops = {
    .kind = "file",
    .pread = file_pread,
    .pread_nowait = file_pread_nowait,
    .pwrite = file_pwrite,
    .flush = file_flush,
    .close = file_close,
    .zero = file_zero,
    .submit = file_submit,
};

/* The O_DIRECT alignment of fd: buffer address and offset/length. */
static void dio_align(int fd, bool blk, uint32_t *mem, uint32_t *off)
{
    int ss = 0;

    *mem = *off = 4096;
#ifdef STATX_DIOALIGN
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align) {
        *off = sx.stx_dio_offset_align;
        *mem = sx.stx_dio_mem_align ? sx.stx_dio_mem_align : 1;
        return;
    }
#endif
    if (blk && ioctl(fd, BLKSSZGET, &ss) == 0 && ss > 0)
        *mem = *off = (uint32_t)ss;
}

/* Turn O_DIRECT on for fd and check it with one aligned read of its first
 * block.  0, or -errno with O_DIRECT off again. */
static int dio_enable(int fd, uint64_t size, uint32_t mem, uint32_t off)
{
    int fl = fcntl(fd, F_GETFL), e = 0;
    void *t = NULL;

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT) < 0)
        return -errno;
    if (size >= off) {
        if (posix_memalign(&t, mem > 4096 ? mem : 4096, off))
            e = ENOMEM;
        else if (pread(fd, t, off, 0) < 0)
            e = errno;
        free(t);
    }
    if (e) {
        fcntl(fd, F_SETFL, fl);
        return -e;
    }
    return 0;
}

static int file_open(const char *path, int direct, int create,
                     uint64_t create_size, struct vd_bdev **out, char *msg,
                     size_t msglen)
{
    struct file_bdev *fb;
    struct stat st;
    uint64_t size;
    int fd, e;

    fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0600);
    if (fd < 0) {
        e = errno;
        snprintf(msg, msglen, "open %s: %s", path, strerror(e));
        return -e;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(msg, msglen, "%s is in use by another process", path);
        close(fd);
        return -EBUSY;
    }
    if (create && ftruncate(fd, create_size) < 0) {
        e = errno;
        snprintf(msg, msglen, "create %s of %llu bytes: %s", path,
                 (unsigned long long)create_size, strerror(e));
        close(fd);
        unlink(path);
        return -e;
    }
    if (fstat(fd, &st) < 0) {
        e = errno;
        snprintf(msg, msglen, "stat %s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
            e = errno;
            snprintf(msg, msglen, "size of %s: %s", path, strerror(e));
            close(fd);
            return -e;
        }
    } else if (S_ISREG(st.st_mode)) {
        size = st.st_size;
    } else {
        snprintf(msg, msglen, "%s is neither a file nor a block device", path);
        close(fd);
        return -EINVAL;
    }
    /* direct: true, or a block device unless direct: false */
    uint32_t mem_align = 1, off_align = 1;
    bool dio = false;
    if (direct > 0 || (direct == 0 && S_ISBLK(st.st_mode))) {
        dio_align(fd, S_ISBLK(st.st_mode), &mem_align, &off_align);
        e = -dio_enable(fd, size, mem_align, off_align);
        if (e && direct > 0) {
            snprintf(msg, msglen,
                     "%s: direct: true, but its file system or device "
                     "refuses O_DIRECT (%s); remove direct: true (or say "
                     "direct: false) to use it buffered",
                     path, strerror(e));
            close(fd);
            if (create)
                unlink(path);
            return -EINVAL;
        }
        if (e)
            vd_log(VD_LOG_WARN,
                   "%s: block device refuses O_DIRECT (%s); used buffered "
                   "(direct: false says so and keeps this quiet)",
                   path, strerror(e));
        dio = !e;
        if (!dio)
            mem_align = off_align = 1;
    }
    fb = calloc(1, sizeof(*fb));
    if (!fb) {
        close(fd);
        return -ENOMEM;
    }
    struct statfs sfs;
    fb->in_memory = S_ISREG(st.st_mode) && fstatfs(fd, &sfs) == 0 &&
                    sfs.f_type == TMPFS_MAGIC;
    fb->nowait_read = fb->nowait_write = 1;
    fb->is_blk = S_ISBLK(st.st_mode);
    fb->direct = dio;
    fb->mem_align = mem_align;
    fb->off_align = off_align;
    if (dio)
        fb->in_memory = 0; /* O_DIRECT bypasses the page cache */
    fb->sparse = S_ISREG(st.st_mode) &&
                 (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size;
    fb->b.ops = &file_ops;
    fb->b.size = size;
    fb->b.block_size = dio && off_align > 512 ? off_align : 512;
    fb->fd = fd;
    pthread_mutex_init(&fb->ring_lock, NULL);
    pthread_mutex_init(&fb->dio_lock, NULL);
    fb->path = strdup(path);
    *out = &fb->b;
    return 0;
}

int vd_bdev_open(const struct vd_conf_dev *c, int create, uint64_t create_size,
                 struct vd_bdev **out, char *msg, size_t msglen)
{
    if (c->iscsi_url)
        return vd_bdev_iscsi_open(c, out, msg, msglen);
    if (c->rbd_image)
        return vd_bdev_rbd_open(c, out, msg, msglen);
    return file_open(c->path, c->direct, create, create_size, out, msg, msglen);
}

/* ---- pool-level wrappers: log once, naming the device ------------------- */
/* At most one I/O error line per device per second: a dead peer fails
 * every command at once, and tgtd's log must stay readable. */
int vd_dev_log_ok(struct vd_dev *d)
{
    int64_t now = vd_now_ms();
    if (now < d->log_next_ms) {
        d->log_suppressed++;
        return 0;
    }
    d->log_next_ms = now + 1000;
    return 1;
}

static void io_error(struct vd_dev *d, const char *what, size_t len,
                     uint64_t off, int err)
{
    if (!vd_dev_log_ok(d))
        return;
    if (d->log_suppressed)
        vd_log(VD_LOG_ERR,
               "device '%s': %s of %zu bytes at %llu failed: %s "
               "(and %llu more I/O errors in the last second)",
               d->name, what, len, (unsigned long long)off, strerror(-err),
               (unsigned long long)d->log_suppressed);
    else
        vd_log(VD_LOG_ERR, "device '%s': %s of %zu bytes at %llu failed: %s",
               d->name, what, len, (unsigned long long)off, strerror(-err));
    d->log_suppressed = 0;
}

/* A request that does not start and end on the device's block boundaries
 * (an initiator's data-out shorter than its CDB says, as in libiscsi's
 * iSCSIResiduals tests) goes through a bounce buffer covering whole blocks:
 * a read reads the blocks and copies the asked part; a write reads the
 * partial first and last blocks, patches them and writes the blocks.  The
 * bytes of those blocks outside the request keep their contents, as with
 * a plain file.  Local files take any size and are never bounced, unless
 * encrypted (then 512-byte sectors, below). */
/* The block size I/O to d must be aligned to (1: any): the bdev's, and
 * at least the XTS sector for an encrypted device. */
static uint64_t io_block(const struct vd_dev *d)
{
    const struct vd_bdev *b = d->bdev;
    uint64_t bs = b->ops != &file_ops                     ? b->block_size
                  : ((const struct file_bdev *)b)->direct ? b->block_size
                                                          : 1;

    if (d->crypt && bs < vd_crypt_sector(d->crypt))
        bs = vd_crypt_sector(d->crypt);
    return bs ? bs : 1;
}

static bool unaligned(const struct vd_dev *d, size_t len, uint64_t off)
{
    uint64_t bs = io_block(d);
    return bs > 1 && (off % bs || len % bs);
}

/* Whether [off, off+len) of d is encrypted: 1, 0, or -EINVAL for a range
 * that straddles the start of the data area (no caller does that). */
static int crypted(const struct vd_dev *d, size_t len, uint64_t off)
{
    if (!d->crypt || off + len <= d->data_offset)
        return 0;
    return off >= d->data_offset ? 1 : -EINVAL;
}

/* Whole-block I/O on the bdev with encryption; nowait: page-cache only. */
static int blk_read(struct vd_dev *d, void *buf, size_t len, uint64_t off,
                    bool nowait)
{
    struct vd_bdev *b = d->bdev;
    int c = crypted(d, len, off), r;

    if (c < 0)
        return c;
    r = nowait ? b->ops->pread_nowait(b, buf, len, off)
               : b->ops->pread(b, buf, len, off);
    if (r == 0 && c)
        r = vd_crypt_read(d->crypt, buf, len, off);
    return r;
}

static int blk_write(struct vd_dev *d, const void *buf, size_t len,
                     uint64_t off, unsigned flags)
{
    struct vd_bdev *b = d->bdev;
    struct vd_crypt_worker *w;
    int c = crypted(d, len, off), r = 0;

    if (c <= 0)
        return c < 0 ? c : b->ops->pwrite(b, buf, len, off, flags);
    if (!(w = vd_crypt_worker_get(d->crypt)))
        return -ENOMEM;
    for (size_t o = 0; r == 0 && o < len; o += VD_CRYPT_BOUNCE_MAX) {
        size_t n =
            len - o < VD_CRYPT_BOUNCE_MAX ? len - o : VD_CRYPT_BOUNCE_MAX;
        const void *ct =
            vd_crypt_encrypt(w, (const uint8_t *)buf + o, n, off + o);
        r = ct ? b->ops->pwrite(b, ct, n, off + o, flags) : -ENOMEM;
    }
    vd_crypt_worker_put(d->crypt, w);
    return r;
}

#define RMW_SLOTS (sizeof(((struct vd_dev *)0)->rmw_start) / sizeof(uint64_t))

/* Take the block range [a0, a1) for a read-modify-write: waits while an
 * overlapping one is in progress (or the table is full).  Returns the
 * slot for rmw_put. */
static unsigned rmw_get(struct vd_dev *d, uint64_t a0, uint64_t a1)
{
    unsigned slot;

    pthread_mutex_lock(&d->rmw_lock);
    for (;;) {
        bool busy = false;
        slot = RMW_SLOTS;
        for (unsigned i = 0; i < RMW_SLOTS; i++) {
            if (!d->rmw_end[i]) {
                if (slot == RMW_SLOTS)
                    slot = i;
            } else if (d->rmw_start[i] < a1 && a0 < d->rmw_end[i]) {
                busy = true;
            }
        }
        if (!busy && slot < RMW_SLOTS)
            break;
        d->rmw_waiters++;
        pthread_cond_wait(&d->rmw_cond, &d->rmw_lock);
        d->rmw_waiters--;
    }
    d->rmw_start[slot] = a0;
    d->rmw_end[slot] = a1;
    pthread_mutex_unlock(&d->rmw_lock);
    return slot;
}

static void rmw_put(struct vd_dev *d, unsigned slot)
{
    pthread_mutex_lock(&d->rmw_lock);
    d->rmw_end[slot] = 0;
    pthread_cond_broadcast(&d->rmw_cond);
    pthread_mutex_unlock(&d->rmw_lock);
}

static int bounce_io(struct vd_dev *d, void *buf, size_t len, uint64_t off,
                     bool write, unsigned flags)
{
    uint64_t bs = io_block(d), a0 = off - off % bs;
    uint64_t a1 = vd_div_up(off + len, bs) * bs, n = a1 - a0;
    unsigned slot = 0;
    uint8_t *t;
    int r = 0;

    if (posix_memalign((void **)&t, 4096, n))
        return -ENOMEM;
    if (write)
        slot = rmw_get(d, a0, a1);
    if (!write) {
        r = blk_read(d, t, n, a0, false);
        if (r == 0)
            memcpy(buf, t + (off - a0), len);
    } else {
        if (off != a0)
            r = blk_read(d, t, bs, a0, false);
        if (r == 0 && off + len != a1 && (a1 - bs != a0 || off == a0))
            r = blk_read(d, t + n - bs, bs, a1 - bs, false);
        if (r == 0) {
            memcpy(t + (off - a0), buf, len);
            r = blk_write(d, t, n, a0, flags);
        }
        rmw_put(d, slot);
    }
    free(t);
    return r;
}

/* ---- asynchronous device I/O (vd_dev_submit; pool_int.h) ----------------
 * Where it pays: a remote device (iSCSI: the device's event thread; RBD:
 * librbd's aio), where the thread path costs two extra wake-ups per I/O,
 * and a local device opened O_DIRECT.  A buffered local file keeps the
 * thread path (the inline page-cache path and the workers) unless
 * VDLVM_ASYNC=all (vd_async_local, pool/uring.c: tests, comparisons).
 * Decided per piece: the caller (linear_submit) refuses the whole request
 * with -EAGAIN when one piece is not eligible. */
static bool bdev_async_pays(struct vd_bdev *b)
{
    if (b->ops->pread != file_pread)
        return true; /* remote */
    return ((struct file_bdev *)b)->direct || vd_async_local();
}

bool vd_dev_async_ok(struct vd_dev *d, uint64_t off, size_t len, int op)
{
    struct vd_bdev *b = d->bdev;

    if (!b || !b->ops->submit || d->crypt ||
        __atomic_load_n(&d->state, __ATOMIC_ACQUIRE) != VD_DEV_OK ||
        !bdev_async_pays(b))
        return false;
    if (op != VD_BIO_READ && __atomic_load_n(&d->move, __ATOMIC_ACQUIRE))
        return false; /* the mover's hook (vd_dev_pwrite, pool/move.c) */
    return off % b->block_size == 0 && len % b->block_size == 0;
}

/* The driver's thread: what vd_dev_pwrite / vd_dev_flush do after the
 * bdev call, then the submitter's done. */
static void dev_bio_done(struct vd_bio *bio, int r)
{
    struct vd_dev_bio *db = (struct vd_dev_bio *)bio;
    struct vd_dev *d = db->d;
    static const char *const what[] = { "read", "write", "flush" };

    if (r == 0) {
        if (bio->op == VD_BIO_WRITE && !(bio->flags & VD_IO_FUA))
            __atomic_add_fetch(&d->wgen, 1, __ATOMIC_RELEASE);
        if (bio->op == VD_BIO_FLUSH) {
            /* raises flushed_gen only; flush_count and flushing belong
             * to vd_dev_flush's waiters */
            pthread_mutex_lock(&d->flush_lock);
            if (db->gen > d->flushed_gen)
                d->flushed_gen = db->gen;
            pthread_mutex_unlock(&d->flush_lock);
        }
    } else if (r != -EAGAIN) {
        vd_dev_count_error(d, bio->op);
        io_error(d, what[bio->op % 3], bio->len, bio->off, r);
        r = -EIO;
    }
    db->done(db, r);
}

int vd_dev_submit(struct vd_dev_bio *db)
{
    struct vd_dev *d = db->d;
    struct vd_bdev *b = d->bdev;

    if (!b || !b->ops->submit)
        return -EAGAIN;
    if (db->bio.op == VD_BIO_FLUSH)
        db->gen = __atomic_load_n(&d->wgen, __ATOMIC_ACQUIRE);
    db->bio.done = dev_bio_done;
    /* the contract is 0 or -EAGAIN; anything else started nothing either:
     * the synchronous path meets (and counts) the error */
    return b->ops->submit(b, &db->bio) == 0 ? 0 : -EAGAIN;
}

int vd_dev_pread_raw(struct vd_dev *d, void *buf, size_t len, uint64_t off)
{
    struct vd_bdev *b = d->bdev;
    return b ? b->ops->pread(b, buf, len, off) : -ENODEV;
}

int vd_dev_pread(struct vd_dev *d, void *buf, size_t len, uint64_t off)
{
    int r = unaligned(d, len, off) ? bounce_io(d, buf, len, off, false, 0)
                                   : blk_read(d, buf, len, off, false);
    if (r < 0) {
        vd_dev_count_error(d, VD_BIO_READ);
        io_error(d, "read", len, off, r);
        return -EIO;
    }
    return 0;
}

int vd_dev_pwrite(struct vd_dev *d, const void *buf, size_t len, uint64_t off,
                  unsigned flags)
{
    /* a PE of d is moving: pool/move.c writes both places */
    if (!(flags & VD_IO_MOVER) && __atomic_load_n(&d->move, __ATOMIC_ACQUIRE))
        return vd_move_dev_pwrite(d, buf, len, off, flags);
    flags &= ~VD_IO_MOVER;
    int r = unaligned(d, len, off)
                ? bounce_io(d, (void *)buf, len, off, true, flags)
                : blk_write(d, buf, len, off, flags);
    if (r < 0) {
        vd_dev_count_error(d, VD_BIO_WRITE);
        io_error(d, "write", len, off, r);
        return -EIO;
    }
    if (!(flags & VD_IO_FUA))
        __atomic_add_fetch(&d->wgen, 1, __ATOMIC_RELEASE);
    return 0;
}

int vd_dev_io_nowait(struct vd_dev *d, void *buf, size_t len, uint64_t off,
                     bool write, unsigned flags)
{
    const struct vd_bdev_ops *ops = d->bdev->ops;

    if (write && !vd_move_nowait_ok(d, off, len)) /* pool/move.c */
        return -EAGAIN;
    /* an encrypted device's unaligned I/O needs the bounce (blocking) */
    if (!ops->pread_nowait || (d->crypt && unaligned(d, len, off)) ||
        (write ? blk_write(d, buf, len, off, flags | VD_IO_NOWAIT)
               : blk_read(d, buf, len, off, true)) < 0)
        return -EAGAIN;
    if (write && !(flags & VD_IO_FUA))
        __atomic_add_fetch(&d->wgen, 1, __ATOMIC_RELEASE);
    return 0;
}

void vd_dev_sync_init(struct vd_dev *d)
{
    pthread_mutex_init(&d->flush_lock, NULL);
    pthread_cond_init(&d->flush_cond, NULL);
    pthread_mutex_init(&d->rmw_lock, NULL);
    pthread_cond_init(&d->rmw_cond, NULL);
    d->sync_init = true;
}

void vd_dev_sync_destroy(struct vd_dev *d)
{
    if (!d->sync_init)
        return;
    pthread_mutex_destroy(&d->flush_lock);
    pthread_cond_destroy(&d->flush_cond);
    pthread_mutex_destroy(&d->rmw_lock);
    pthread_cond_destroy(&d->rmw_cond);
    d->sync_init = false;
}

/* The protocol is in the header comment. */
int vd_dev_flush(struct vd_dev *d)
{
    uint64_t target = __atomic_load_n(&d->wgen, __ATOMIC_ACQUIRE);
    int r = 0;

    /* a move's target too (pool/move.c); it fails the flush only when
     * the target, about to become the extent, could not be flushed */
    if (__atomic_load_n(&d->move, __ATOMIC_ACQUIRE) && vd_move_dev_flush(d) < 0)
        return -EIO;
    pthread_mutex_lock(&d->flush_lock);
    for (;;) {
        if (d->flushed_gen >= target) {
            r = 0;
            break;
        }
        if (d->flushing) {
            uint64_t seen = d->flush_count;
            bool covers = d->flush_start_gen >= target;
            d->flush_waiters++;
            while (d->flush_count == seen)
                pthread_cond_wait(&d->flush_cond, &d->flush_lock);
            d->flush_waiters--;
            if (covers && d->flushed_gen < target) {
                r = -EIO; /* the flush we depended on failed (logged) */
                break;
            }
            continue;
        }
        uint64_t start = __atomic_load_n(&d->wgen, __ATOMIC_ACQUIRE);
        d->flushing = true;
        d->flush_start_gen = start;
        pthread_mutex_unlock(&d->flush_lock);
        r = d->bdev->ops->flush(d->bdev);
        pthread_mutex_lock(&d->flush_lock);
        d->flushing = false;
        d->flush_count++;
        if (r == 0 && start > d->flushed_gen)
            d->flushed_gen = start;
        pthread_cond_broadcast(&d->flush_cond);
        if (r < 0) {
            vd_dev_count_error(d, VD_BIO_FLUSH);
            vd_log(VD_LOG_ERR, "device '%s': flush failed: %s", d->name,
                   strerror(-r));
            r = -EIO;
            break;
        }
    }
    pthread_mutex_unlock(&d->flush_lock);
    return r;
}

int vd_dev_zero(struct vd_dev *d, uint64_t off, uint64_t len)
{
    static const size_t chunk = 1u << 20;
    const struct vd_bdev_ops *ops = d->bdev->ops;
    int r = ops->zero ? ops->zero(d->bdev, off, len) : -EOPNOTSUPP;

    if (r == -EOPNOTSUPP) {
        uint8_t *z = NULL;
        r = posix_memalign((void **)&z, 4096, chunk) ? -ENOMEM : 0;
        if (z)
            memset(z, 0, chunk);
        for (uint64_t o = 0; r == 0 && o < len; o += chunk) {
            size_t n = len - o < chunk ? (size_t)(len - o) : chunk;
            r = ops->pwrite(d->bdev, z, n, off + o, 0);
        }
        free(z);
    }
    if (r < 0) {
        vd_dev_count_error(d, VD_BIO_WRITE);
        vd_log(VD_LOG_ERR, "device '%s': zeroing %llu bytes at %llu failed: %s",
               d->name, (unsigned long long)len, (unsigned long long)off,
               strerror(-r));
        return -EIO;
    }
    __atomic_add_fetch(&d->wgen, 1, __ATOMIC_RELEASE);
    return 0;
}
