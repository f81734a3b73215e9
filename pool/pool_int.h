/* vdlvm pool internals: on-disk format and in-memory state.
 * Only the pool sources and unit tests include this. */
#ifndef POOL_INT_H
#define POOL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "vdpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- on-disk format, version 1.2 (all little-endian; docs/format.md) ---
 * 1.1 adds the mirror bitmap's own header (replica/bitmap.c); 1.2 thin
 * volumes (VD_OP_STACK, chunk maps in the data extents: pool/thin.c);
 * older pools are read as they are (a reader accepts every minor of its
 * major; a 1.1 reader refuses a pool holding a thin volume, op 9).
 *
 * Device layout:
 *   [0, 4 KiB)              device header (struct vd_dev_hdr)
 *   [md_offset, +md_size)   metadata area: two halves of md_size/2 each
 *   [data_offset, ...)      physical extents of extent_size bytes
 *
 * Metadata is a log of records, each starting on a 4 KiB boundary within
 * a half.  A half holds one checkpoint record at offset 0 (the whole pool
 * state as a list of ops) followed by delta records (the ops of one commit
 * each) with consecutive sequence numbers.  A commit appends one delta to
 * the current half of every metadata copy; when the half is full, a new
 * checkpoint (state + the commit's ops) goes to offset 0 of the other half,
 * so the only good copy is never overwritten.  At open, the valid chain
 * with the highest sequence number over all copies wins.  The cost of a
 * commit is the size of the change, except one checkpoint per half-fill.
 */
#define VD_DEV_MAGIC     "VDLVMDV1"
#define VD_MD_MAGIC      "VDLVMMD1"
#define VD_FMT_MAJOR     1
#define VD_FMT_MINOR     3
#define VD_HDR_SIZE      4096u
#define VD_BLOCK         4096u
#define VD_MD_OFFSET     (1ull << 20)
#define VD_MD_SIZE       (4ull << 20)
#define VD_DATA_ALIGN    (1ull << 20)
#define VD_MAX_MD_COPIES 3

struct vd_dev_hdr {
    char magic[8];         /*   0 */
    uint16_t major;        /*   8 */
    uint16_t minor;        /*  10 */
    uint32_t hdr_len;      /*  12: VD_HDR_SIZE */
    uint32_t crc;          /*  16: crc32c of the 4 KiB, this field 0 */
    uint32_t flags;        /*  20 */
    uint8_t pool_uuid[16]; /*  24 */
    uint8_t dev_uuid[16];  /*  40 */
    uint64_t dev_size;     /*  56 */
    uint64_t extent_size;  /*  64 */
    uint64_t md_offset;    /*  72 */
    uint64_t md_size;      /*  80 */
    uint64_t data_offset;  /*  88 */
    uint64_t pe_count;     /*  96 */
    uint32_t dev_index;    /* 104 */
    uint32_t pad0;         /* 108 */
    char pool_name[64];    /* 112 */
    char dev_name[64];     /* 176 */
    uint64_t ctime;        /* 240 */
    uint8_t reserved[VD_HDR_SIZE - 248]; /* 248 */
};
_Static_assert(sizeof(struct vd_dev_hdr) == VD_HDR_SIZE, "dev hdr size");

enum { VD_REC_CHECKPOINT = 1, VD_REC_DELTA = 2 };

struct vd_md_rec {
    char magic[8];         /*  0 */
    uint16_t major;        /*  8 */
    uint16_t minor;        /* 10 */
    uint32_t hdr_len;      /* 12: sizeof(struct vd_md_rec) */
    uint32_t crc;          /* 16: crc32c of header (crc 0) + payload */
    uint32_t kind;         /* 20 */
    uint64_t seq;          /* 24 */
    uint64_t payload_len;  /* 32 */
    uint8_t pool_uuid[16]; /* 40 */
    uint32_t nops;         /* 56 */
    uint32_t pad0;         /* 60 */
};
_Static_assert(sizeof(struct vd_md_rec) == 64, "md rec size");

/* Ops: the core's records; the op header, VD_OP_* numbers, struct
 * vd_op_vol and struct vd_op_map are in layout.h. */
struct vd_op_pool {
    struct vd_op_hdr h;   /*  0 */
    uint8_t uuid[16];     /*  8 */
    uint64_t extent_size; /* 24 */
    char name[64];        /* 32 */
};
_Static_assert(sizeof(struct vd_op_pool) == 96, "op pool");
struct vd_op_dev {
    struct vd_op_hdr h;   /*   0 */
    uint32_t idx;         /*   8 */
    uint32_t flags;       /*  12: VD_DEVF_* */
    uint8_t uuid[16];     /*  16 */
    uint64_t size;        /*  32 */
    uint64_t pe_count;    /*  40 */
    uint64_t data_offset; /*  48 */
    uint64_t reserved;    /*  56 */
    char name[64];        /*  64 */
    char node[64];        /* 128 */
};
_Static_assert(sizeof(struct vd_op_dev) == 192, "op dev");
#define VD_DEVF_MD      1u /* holds a metadata copy */
#define VD_DEVF_ENCRYPT 2u /* data area encrypted (pool/crypt.c) */
/* evacuated or being evacuated: no new extents (pool/move.c); set with
 * the evacuation, kept after it until the device leaves the pool */
#define VD_DEVF_DRAIN 4u

/* ---- device drivers ---------------------------------------------------- */
/* An open backing device: a local file/block device or a remote LUN.
 * pread/pwrite/flush are thread-safe and return 0 or a negative errno
 * (-EIO: the device failed the command; -ETIMEDOUT / -ENOTCONN: a remote
 * device did not answer in time or is known to be unreachable); they never
 * block longer than the device's timeout.  Offsets and lengths are
 * multiples of block_size.  close frees the handle. */
struct vd_bdev;
/* An asynchronous device request (the optional submit op below; issue 14).
 * The submitter owns the struct until done runs; buf stays valid until
 * then.  done runs exactly once, with 0 or a negative errno (as pread/
 * pwrite/flush return), on a thread of the driver's choosing (io_uring's
 * reaper, the device's libiscsi event thread, librbd's callback thread),
 * possibly before submit has returned, but never inside submit on the
 * submitting thread's stack.  done must not block and must not call into
 * the same device: it hands the completion on (a done list + eventfd) and
 * returns.  A write is complete, not durable: durability is a VD_BIO_FLUSH
 * (or VD_IO_FUA), exactly as for pwrite. */
#define VD_BIO_READ  0
#define VD_BIO_WRITE 1
#define VD_BIO_FLUSH 2
struct vd_bio {
    int op;         /* VD_BIO_* */
    unsigned flags; /* VD_IO_FUA for writes */
    void *buf;      /* READ: filled; WRITE: read by the driver until done */
    size_t len;     /* bytes, multiple of block_size (0 for FLUSH) */
    uint64_t off;   /* bytes, multiple of block_size */
    void (*done)(struct vd_bio *bio, int result);
    void *priv; /* the submitter's */
};
struct vd_bdev_ops {
    const char *kind; /* "file", "iscsi" */
    int (*pread)(struct vd_bdev *b, void *buf, size_t len, uint64_t off);
    int (*pwrite)(struct vd_bdev *b, const void *buf, size_t len, uint64_t off,
                  unsigned flags /* VD_IO_FUA */);
    int (*flush)(struct vd_bdev *b);
    void (*close)(struct vd_bdev *b);
    /* Optional: a read that never blocks (page-cache hits only); -EAGAIN
     * otherwise.  Devices without it get no VD_IO_NOWAIT I/O at all, and
     * devices with it accept VD_IO_NOWAIT in pwrite flags. */
    int (*pread_nowait)(struct vd_bdev *b, void *buf, size_t len, uint64_t off);
    /* Optional: connection state for status ("connected", "reconnecting
     * since ...", "failed: cause"); returns 1 when usable, 0 when not. */
    int (*get_state)(struct vd_bdev *b, char *buf, size_t len);
    /* Optional: make [off, off+len) read as zeroes (file: fallocate,
     * block device: BLKZEROOUT, iscsi: WRITE SAME); block aligned.  Without
     * it the pool writes zero buffers. */
    int (*zero)(struct vd_bdev *b, uint64_t off, uint64_t len);
    /* Optional: start bio and return at once, never blocking (no wait on
     * the network, the device, or a lock held across I/O).  0: started,
     * bio->done will run exactly once.  -EAGAIN: cannot start now without
     * waiting (queue or ring full, reconnecting, device failed, op not
     * supported): nothing was started and done will not run; the caller
     * uses pread/pwrite/flush instead.  Thread-safe. */
    int (*submit)(struct vd_bdev *b, struct vd_bio *bio);
};
struct vd_bdev {
    const struct vd_bdev_ops *ops;
    uint64_t size;       /* bytes */
    uint32_t block_size; /* bytes */
    /* Sessions re-established after the connection was lost (remote
     * drivers; relaxed atomic add by the driver, read by stats). */
    uint64_t n_reconnects;
};
/* Asynchronous device I/O (pool/dev.c): one piece of a volume request.
 * vd_dev_async_ok: d's submit path pays (a remote device, or a local one
 * opened O_DIRECT; buffered local files keep the thread path unless
 * VDLVM_ASYNC=all) and can take op on [off, off+len) now.  vd_dev_submit:
 * 0, and db->done runs exactly once on the driver's thread with 0, -EIO
 * (counted in d's error counters and logged) or -EAGAIN (not started:
 * redo synchronously); or -EAGAIN at once (nothing started, done will not
 * run).  It keeps d's write and flush generations as vd_dev_pwrite and
 * vd_dev_flush do. */
struct vd_dev_bio {
    struct vd_bio bio; /* first; bio.done is vd_dev_submit's */
    struct vd_dev *d;
    uint64_t gen; /* FLUSH: d->wgen when it was started */
    void (*done)(struct vd_dev_bio *db, int result);
    void *priv; /* the submitter's */
};
bool vd_dev_async_ok(struct vd_dev *d, uint64_t off, size_t len, int op);
int vd_dev_submit(struct vd_dev_bio *db);
/* Open the device a definition names (local path or iscsi URL).  For a
 * local path that does not exist and create set: create a sparse file of
 * create_size.  A local device is locked exclusively (flock): -EBUSY when
 * another process holds it.  On failure msg says why (no secrets). */
int vd_bdev_open(const struct vd_conf_dev *c, int create, uint64_t create_size,
                 struct vd_bdev **out, char *msg, size_t msglen);
/* Remote devices (pool/iscsi.c). */
int vd_bdev_iscsi_open(const struct vd_conf_dev *c, struct vd_bdev **out,
                       char *msg, size_t msglen);
/* Ceph RBD images (pool/rbd.c): the image must exist; its size is the
 * device's. */
int vd_bdev_rbd_open(const struct vd_conf_dev *c, struct vd_bdev **out,
                     char *msg, size_t msglen);
/* Preempt every other host's persistent reservation on the remote device c
 * and take it for this host (vdlvm pool takeover).  0 or a negative errno
 * with msg saying why. */
int vd_bdev_iscsi_takeover(const struct vd_conf_dev *c, char *msg,
                           size_t msglen);

/* device helpers (dev.c; the I/O calls are in layout.h) */
/* Make [off, off+len) of d read as zeroes (the bdev's zero op, or zero
 * buffers); not durable until vd_dev_flush.  0 or -EIO (logged). */
int vd_dev_zero(struct vd_dev *d, uint64_t off, uint64_t len);
/* Initialise / destroy the per-device locks (pool_alloc / pool_free). */
void vd_dev_sync_init(struct vd_dev *d);
void vd_dev_sync_destroy(struct vd_dev *d);
void vd_uuid_gen(uint8_t uuid[16]);
void vd_uuid_str(const uint8_t uuid[16], char out[37]);

/* metadata (md.c) */
int vd_state_serialize(const vd_pool *p, struct vd_opbuf *b);
/* Apply one op list to the pool state; -EINVAL (message logged) if it is
 * inconsistent with the state. */
int vd_state_apply(vd_pool *p, const uint8_t *ops, size_t len, uint32_t nops);
/* Open needs Q = n/2 + 1 of the n metadata copies (the pool's VD_DEVF_MD
 * devices, present or not); a commit (vd_md_commit, layout.h) is
 * acknowledged when it reached W = n - Q + 1 of them (n=1: 1, n=2: 1,
 * n=3: 2), so Q + W > n: every quorum that can open the pool holds every
 * acknowledged commit. */
static inline int vd_md_write_quorum(int n)
{
    return n <= 1 ? 1 : n - (n / 2 + 1) + 1;
}
/* Read all copies and build the state (pool devs must have fds/uuids from
 * the headers).  Repairs stale copies. */
int vd_md_load(vd_pool *p);
/* Encode one record (padded to VD_BLOCK) into *out (malloc'd). */
int vd_md_encode(const vd_pool *p, uint32_t kind, uint64_t seq,
                 const struct vd_opbuf *ops, uint8_t **out, size_t *outlen);
/* Scan one half buffer: returns the end sequence of its valid chain (0 if
 * none) and sets *end_pos to the offset after the last valid record. */
uint64_t vd_md_scan_half(const uint8_t *pool_uuid, const uint8_t *half,
                         size_t half_len, uint64_t *ckpt_seq, size_t *end_pos);
/* Replay a half's valid chain into state. */
int vd_md_replay_half(vd_pool *p, const uint8_t *half, size_t end_pos);

void vd_state_free(vd_pool *p);
/* QoS (qos.c): a VD_OP_QOS record; a volume's limits as a record (none
 * when it has no limits). */
int vd_qos_md_apply(vd_pool *p, const struct vd_op_hdr *h);
int vd_qos_md_serialize(const struct vd_vol *v, struct vd_opbuf *b);
/* A volume's runtime state (vol.c): lops->ctr then upper->ctr (after open
 * or create); vd_vol_dtr the reverse (idempotent as the ops are). */
int vd_vol_ctr(struct vd_vol *v);
void vd_vol_dtr(struct vd_vol *v);
/* Try again to attach devices that were missing or failed at open (a peer
 * that was down): every few seconds at most, called by the background
 * thread.  A device that answers with the right header joins the pool and
 * gets a fresh metadata copy if it holds one. */
void vd_pool_retry_devices(vd_pool *p);

/* The extent mover (move.c).  VD_IO_MOVER: a write the mover issues
 * itself (dev.c does not hand it back to the mover). */
#define VD_IO_MOVER 0x100u
int vd_move_init(vd_pool *p);
void vd_move_free(vd_pool *p);
int vd_move_md_apply(vd_pool *p, const struct vd_op_hdr *h);
int vd_move_serialize(const vd_pool *p, struct vd_opbuf *b);
/* dev.c hooks, on a device with d->move set */
int vd_move_dev_pwrite(struct vd_dev *d, const void *buf, size_t len,
                       uint64_t off, unsigned flags);
bool vd_move_nowait_ok(struct vd_dev *d, uint64_t off, size_t len);
int vd_move_dev_flush(struct vd_dev *d);
/* after open (before I/O): a resumed move compares its copied part first */
void vd_move_opened(vd_pool *p);
/* after open: remove volumes whose import was interrupted (snap.c) */
void vd_snap_opened(vd_pool *p);
/* the background thread's pass */
void vd_move_tick(vd_pool *p);
/* Is dev the device of the pending evacuation (admin lock held)? */
bool vd_move_evacuating(const vd_pool *p, uint32_t dev);
/* Run the copier in this thread for up to budget_ns or max_bytes copied
 * (0: no limit): 1 work left, 0 idle, -EBUSY another thread runs it. */
int vd_move_run(vd_pool *p, int64_t budget_ns, uint64_t max_bytes);
/* VD_OP_DEV_REMOVE and VD_OP_DEV_FLAGS (pool.c, pool apply). */
int vd_pool_dev_md_apply(vd_pool *p, const struct vd_op_hdr *h);
/* The rebalance planner: the next move (leg `leg` of extent le of volume
 * id vol onto PE dpe of device dst), 1; 0 when balanced (or nothing can
 * move).  Admin lock held; changes nothing. */
struct vd_rebal_move {
    uint32_t vol, leg, src, dst;
    uint64_t le, dpe;
};
int vd_rebalance_next(const vd_pool *p, struct vd_rebal_move *mv);
/* Moves the rebalance planner would make from the current state. */
uint64_t vd_rebalance_count(const vd_pool *p);
/* tests: the background thread leaves moves alone while set */
extern bool g_move_test_hold;

/* The pool's background thread (bg.c): started by vd_pool_open, stopped
 * (then every volume quiesced) by vd_pool_close. */
int vd_bg_start(vd_pool *p);
void vd_bg_stop(vd_pool *p);

#ifdef __cplusplus
}
#endif
#endif
