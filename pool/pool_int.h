/* vdlvm pool internals: on-disk format and in-memory state.
 * Only the pool sources and unit tests include this. */
#ifndef POOL_INT_H
#define POOL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vdpool.h"

#ifdef __cplusplus
#define _Static_assert static_assert
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- on-disk format, version 1.0 (all little-endian) ------------------
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
#define VD_DEV_MAGIC "VDLVMDV1"
#define VD_MD_MAGIC "VDLVMMD1"
#define VD_FMT_MAJOR 1
#define VD_FMT_MINOR 0
#define VD_HDR_SIZE 4096u
#define VD_BLOCK 4096u
#define VD_MD_OFFSET (1ull << 20)
#define VD_MD_SIZE (4ull << 20)
#define VD_DATA_ALIGN (1ull << 20)
#define VD_MAX_MD_COPIES 3
#define VD_NO_DEV 0xffffffffu
#define VD_MAX_DEVS 256

struct vd_dev_hdr {
    char magic[8];          /*   0 */
    uint16_t major;         /*   8 */
    uint16_t minor;         /*  10 */
    uint32_t hdr_len;       /*  12: VD_HDR_SIZE */
    uint32_t crc;           /*  16: crc32c of the 4 KiB, this field 0 */
    uint32_t flags;         /*  20 */
    uint8_t pool_uuid[16];  /*  24 */
    uint8_t dev_uuid[16];   /*  40 */
    uint64_t dev_size;      /*  56 */
    uint64_t extent_size;   /*  64 */
    uint64_t md_offset;     /*  72 */
    uint64_t md_size;       /*  80 */
    uint64_t data_offset;   /*  88 */
    uint64_t pe_count;      /*  96 */
    uint32_t dev_index;     /* 104 */
    uint32_t pad0;          /* 108 */
    char pool_name[64];     /* 112 */
    char dev_name[64];      /* 176 */
    uint64_t ctime;         /* 240 */
    uint8_t reserved[VD_HDR_SIZE - 248]; /* 248 */
};
_Static_assert(sizeof(struct vd_dev_hdr) == VD_HDR_SIZE, "dev hdr size");

enum { VD_REC_CHECKPOINT = 1, VD_REC_DELTA = 2 };

struct vd_md_rec {
    char magic[8];          /*  0 */
    uint16_t major;         /*  8 */
    uint16_t minor;         /* 10 */
    uint32_t hdr_len;       /* 12: sizeof(struct vd_md_rec) */
    uint32_t crc;           /* 16: crc32c of header (crc 0) + payload */
    uint32_t kind;          /* 20 */
    uint64_t seq;           /* 24 */
    uint64_t payload_len;   /* 32 */
    uint8_t pool_uuid[16];  /* 40 */
    uint32_t nops;          /* 56 */
    uint32_t pad0;          /* 60 */
};
_Static_assert(sizeof(struct vd_md_rec) == 64, "md rec size");

/* Ops: each starts with this header; len covers header and body. */
enum {
    VD_OP_POOL = 1,       /* struct vd_op_pool */
    VD_OP_DEV_ADD = 2,    /* struct vd_op_dev */
    VD_OP_VOL_CREATE = 3, /* struct vd_op_vol */
    VD_OP_VOL_REMOVE = 4, /* struct vd_op_vol (id only) */
    VD_OP_VOL_RESIZE = 5, /* struct vd_op_vol (id, size, le_count) */
    VD_OP_MAP = 6,        /* struct vd_op_map; dev VD_NO_DEV = unmap */
    VD_OP_LEG_STATE = 7,  /* struct vd_op_leg */
    VD_OP_RESYNC = 8,     /* struct vd_op_resync: persistent progress */
};
struct vd_op_hdr {
    uint16_t type;          /* 0 */
    uint16_t len;           /* 2 */
    uint32_t pad0;          /* 4 */
};
struct vd_op_pool {
    struct vd_op_hdr h;     /*  0 */
    uint8_t uuid[16];       /*  8 */
    uint64_t extent_size;   /* 24 */
    char name[64];          /* 32 */
};
_Static_assert(sizeof(struct vd_op_pool) == 96, "op pool");
struct vd_op_dev {
    struct vd_op_hdr h;     /*   0 */
    uint32_t idx;           /*   8 */
    uint32_t flags;         /*  12: VD_DEVF_* */
    uint8_t uuid[16];       /*  16 */
    uint64_t size;          /*  32 */
    uint64_t pe_count;      /*  40 */
    uint64_t data_offset;   /*  48 */
    uint64_t reserved;      /*  56 */
    char name[64];          /*  64 */
    char node[64];          /* 128 */
};
_Static_assert(sizeof(struct vd_op_dev) == 192, "op dev");
#define VD_DEVF_MD 1u       /* holds a metadata copy */
struct vd_op_vol {
    struct vd_op_hdr h;     /*  0 */
    uint32_t id;            /*  8 */
    uint32_t layout;        /* 12 */
    uint32_t copies;        /* 16 */
    uint32_t flags;         /* 20 */
    uint64_t size;          /* 24 */
    uint64_t le_count;      /* 32 */
    char name[64];          /* 40 */
};
_Static_assert(sizeof(struct vd_op_vol) == 104, "op vol");
struct vd_op_map {
    struct vd_op_hdr h;     /*  0 */
    uint32_t vol;           /*  8 */
    uint32_t leg;           /* 12 */
    uint64_t le_start;      /* 16 */
    uint64_t count;         /* 24 */
    uint32_t dev;           /* 32 */
    uint32_t pad0;          /* 36 */
    uint64_t pe_start;      /* 40 */
};
_Static_assert(sizeof(struct vd_op_map) == 48, "op map");
struct vd_op_leg {
    struct vd_op_hdr h;     /*  0 */
    uint32_t vol;           /*  8 */
    uint32_t leg;           /* 12 */
    uint32_t state;         /* 16: enum vd_leg_state */
    uint32_t pad0;          /* 20 */
};
_Static_assert(sizeof(struct vd_op_leg) == 24, "op leg");
struct vd_op_resync {
    struct vd_op_hdr h;     /*  0 */
    uint32_t vol;           /*  8 */
    uint32_t running;       /* 12: 1 while a resync is under way */
    uint64_t total;         /* 16: bytes to copy in this resync */
    uint64_t done;          /* 24: bytes copied so far */
};
_Static_assert(sizeof(struct vd_op_resync) == 32, "op resync");
/* Mirror volumes: struct vd_op_vol.flags bits 0-7 hold log2(region size);
 * logical extent 0 of every leg holds that leg's copy of the write-intent
 * bitmap, data starts at logical extent 1 (VD_MIRROR_LE0). */
#define VD_VOLF_REGION_SHIFT_MASK 0xffu
#define VD_MIRROR_LE0 1u

/* ---- device drivers ---------------------------------------------------- */
/* An open backing device: a local file/block device or a remote LUN.
 * pread/pwrite/flush are thread-safe and return 0 or a negative errno
 * (-EIO: the device failed the command; -ETIMEDOUT / -ENOTCONN: a remote
 * device did not answer in time or is known to be unreachable); they never
 * block longer than the device's timeout.  Offsets and lengths are
 * multiples of block_size.  close frees the handle. */
struct vd_bdev;
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
};
struct vd_bdev {
    const struct vd_bdev_ops *ops;
    uint64_t size;        /* bytes */
    uint32_t block_size;  /* bytes */
};
/* Open the device a definition names (local path or iscsi URL).  For a
 * local path that does not exist and create set: create a sparse file of
 * create_size.  A local device is locked exclusively (flock): -EBUSY when
 * another process holds it.  On failure msg says why (no secrets). */
int vd_bdev_open(const struct vd_conf_dev *c, int create, uint64_t create_size,
                 struct vd_bdev **out, char *msg, size_t msglen);
/* Remote devices (pool/iscsi.c). */
int vd_bdev_iscsi_open(const struct vd_conf_dev *c, struct vd_bdev **out,
                       char *msg, size_t msglen);
/* Preempt every other host's persistent reservation on the remote device c
 * and take it for this host (vdlvm pool takeover).  0 or a negative errno
 * with msg saying why. */
int vd_bdev_iscsi_takeover(const struct vd_conf_dev *c, char *msg,
                           size_t msglen);

/* ---- in-memory state -------------------------------------------------- */
struct vd_pe {
    uint32_t dev;   /* VD_NO_DEV = unmapped */
    uint32_t pad;
    uint64_t pe;
};

struct vd_dev {
    uint32_t idx;
    char name[VD_NAME_MAX + 1];
    char node[VD_NAME_MAX + 1];
    char *path;              /* from the pool definition, or NULL */
    uint8_t uuid[16];
    uint32_t flags;          /* VD_DEVF_* */
    uint64_t size, pe_count, data_offset;
    uint8_t *used;           /* bitmap of allocated PEs */
    uint64_t used_count;
    struct vd_bdev *bdev;    /* NULL when missing/failed */
    enum vd_dev_state state;
    char state_msg[256];
    int touched;             /* unused (kept for compatibility); see
                                the flush generations below */
    /* Flush generations (protocol in dev.c).  wgen: atomic, bumped after
     * every completed non-FUA write or zero.  The rest is owned by
     * vd_dev_flush under flush_lock. */
    uint64_t wgen;
    pthread_mutex_t flush_lock;
    pthread_cond_t flush_cond;
    uint64_t flushed_gen;    /* every write up to this generation durable */
    uint64_t flush_start_gen; /* wgen when the running flush started */
    uint64_t flush_count;    /* flushes completed (success or not) */
    bool flushing;           /* a flush of the bdev is in progress */
    uint32_t flush_waiters;  /* callers waiting for a running flush */
    /* Read-modify-write of partial blocks (dev.c bounce_io): the block
     * ranges being patched, under rmw_lock; rmw_waiters counts bounced
     * writes waiting for an overlapping one (for tests). */
    pthread_mutex_t rmw_lock;
    pthread_cond_t rmw_cond;
    uint64_t rmw_start[8], rmw_end[8]; /* end 0: free slot */
    uint32_t rmw_waiters;
    bool sync_init;          /* the locks above are initialised */
    /* I/O error log rate limit (racy by design: only counts) */
    int64_t log_next_ms;
    uint64_t log_suppressed;
    /* a device that could not be attached at open is retried from its
     * definition (deep copy) by vd_pool_retry_devices */
    struct vd_conf_dev *conf;
    int64_t retry_next_ms;
    uint32_t retry_delay_ms;
    /* metadata log position of this copy (admin thread only) */
    int md_half;             /* current half, or -1: needs a checkpoint */
    uint64_t md_pos;         /* next free offset within the half */
};

struct vd_vol {
    vd_pool *pool;
    uint32_t id;
    char name[VD_NAME_MAX + 1];
    uint64_t size;           /* bytes; read atomically by I/O threads */
    uint32_t layout, copies;
    uint64_t le_count;
    /* map_lock protects map and le_count against extend; I/O holds it
     * shared for the duration of a request.  map_lock and write_lock are
     * writer-preferring: never take either shared twice in one thread. */
    pthread_rwlock_t map_lock;
    struct vd_pe *map;       /* le_count * copies, [le * copies + leg] */
    /* write_lock: writes hold it shared, compare-and-write exclusive. */
    pthread_rwlock_t write_lock;
    uint32_t open_count;     /* under the pool's admin_lock */
    /* mirror only */
    uint32_t flags;          /* VD_VOLF_* as on disk */
    uint32_t data_le0;       /* first data extent: 0 linear, 1 mirror */
    uint32_t leg_state[3];   /* enum vd_leg_state; atomic reads */
    uint32_t rs_running;     /* persisted resync progress (admin_lock) */
    uint64_t rs_total, rs_done;
    struct vd_mirror *mirror; /* runtime state (replica/), NULL if linear */
};

struct vd_pool {
    char name[VD_NAME_MAX + 1];
    uint8_t uuid[16];
    uint64_t extent_size;
    uint64_t seq;            /* last committed sequence number */
    /* seq of a commit that failed below the write quorum, while it is
     * still p->seq (0: none): a copy holding that number with another
     * state holds our own unacknowledged record, not another host's.
     * Written and read under admin_lock (md.c, vd_pool_retry_devices). */
    uint64_t unacked_seq;
    uint32_t ndevs;
    struct vd_dev *devs;     /* by idx */
    uint32_t nvols;
    struct vd_vol **vols;
    int lock_fd;
    bool loading;            /* replay in progress */
    /* admin_lock (recursive) serialises every state change and metadata
     * commit, and the admin API.  Never taken while holding a volume's
     * map_lock. */
    pthread_mutex_t admin_lock;
    struct vd_replica *replica; /* background thread (replica/), or NULL */
};

/* crc32c (Castagnoli) */
uint32_t vd_crc32c(uint32_t crc, const void *buf, size_t len);

/* device I/O helpers (dev.c) */
int vd_dev_pread(struct vd_dev *d, void *buf, size_t len, uint64_t off);
int vd_dev_pwrite(struct vd_dev *d, const void *buf, size_t len,
                  uint64_t off, unsigned flags);
int vd_dev_flush(struct vd_dev *d);
/* Make [off, off+len) of d read as zeroes (the bdev's zero op, or zero
 * buffers); not durable until vd_dev_flush.  0 or -EIO (logged). */
int vd_dev_zero(struct vd_dev *d, uint64_t off, uint64_t len);
/* Initialise / destroy the per-device locks (pool_alloc / pool_free). */
void vd_dev_sync_init(struct vd_dev *d);
void vd_dev_sync_destroy(struct vd_dev *d);
/* VD_IO_NOWAIT I/O: page-cache hits only, nothing logged; -EAGAIN when the
 * device cannot serve it without blocking (the caller's blocking path
 * redoes it). */
int vd_dev_io_nowait(struct vd_dev *d, void *buf, size_t len, uint64_t off,
                     bool write, unsigned flags);
/* 1 if an error about d may be logged now (at most one per second). */
int vd_dev_log_ok(struct vd_dev *d);
void vd_uuid_gen(uint8_t uuid[16]);
void vd_uuid_str(const uint8_t uuid[16], char out[37]);

/* metadata (md.c) */
struct vd_opbuf {
    uint8_t *buf;
    size_t len, cap;
    uint32_t nops;
    /* vd_md_commit zeroes every physical extent that a MAP op of the
     * list maps and that is free before the commit (a new extent must not
     * show a removed volume's data, and a new mirror's legs must agree),
     * durably, before the record is written.  keep_data: the new extents
     * already hold the data they must (an extent mover copied it there);
     * do not zero them. */
    bool keep_data;
};
void vd_opbuf_free(struct vd_opbuf *b);
int vd_opbuf_add(struct vd_opbuf *b, const void *op, size_t len);
int vd_state_serialize(const vd_pool *p, struct vd_opbuf *b);
/* Apply one op list to the pool state; -EINVAL (message logged) if it is
 * inconsistent with the state. */
int vd_state_apply(vd_pool *p, const uint8_t *ops, size_t len, uint32_t nops);
/* Commit ops durably to every metadata copy, then apply them.  Extents
 * the ops newly map are zeroed first (see struct vd_opbuf.keep_data).
 * 0 only when the record reached vd_md_write_quorum(n) of the pool's n
 * metadata copies; else -EIO (or another negative errno) and the state
 * is unchanged (the sequence number is used up; see md.c). */
int vd_md_commit(vd_pool *p, struct vd_opbuf *ops);
/* Open needs Q = n/2 + 1 of the n metadata copies (the pool's VD_DEVF_MD
 * devices, present or not); a commit is acknowledged when it reached
 * W = n - Q + 1 of them (n=1: 1, n=2: 1, n=3: 2), so Q + W > n: every
 * quorum that can open the pool holds every acknowledged commit. */
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
/* Try again to attach devices that were missing or failed at open (a peer
 * that was down): every few seconds at most, called by the background
 * thread.  A device that answers with the right header joins the pool and
 * gets a fresh metadata copy if it holds one. */
void vd_pool_retry_devices(vd_pool *p);
int64_t vd_now_ms(void);
void vd_admin_lock(vd_pool *p);
void vd_admin_unlock(vd_pool *p);

/* replica/ hooks called by the pool */
int vd_mirror_attach(struct vd_vol *v);       /* after open/create: bitmap */
void vd_mirror_detach(struct vd_vol *v);
int vd_mirror_grow(struct vd_vol *v);          /* after extend */
int vd_mirror_pread(struct vd_vol *v, void *buf, size_t len, uint64_t off);
int vd_mirror_pread_flags(struct vd_vol *v, void *buf, size_t len,
                          uint64_t off, unsigned flags);
int vd_mirror_pwrite(struct vd_vol *v, const void *buf, size_t len,
                     uint64_t off, unsigned flags);
/* SYNCHRONIZE CACHE of a mirror: every write completed before the call is
 * durable on every leg that is not failed when it returns 0.  A failed leg
 * does not fail the flush; -EIO only when no leg could be flushed. */
int vd_mirror_flush(struct vd_vol *v);
int vd_replica_start(vd_pool *p);              /* background thread */
void vd_replica_stop(vd_pool *p);
/* Per-leg extent access for replica/: device and byte offset of byte `off`
 * of leg `leg` (off counts from the start of the volume's data; the
 * bitmap extent is reached with vd_leg_bitmap_locate).  Caller holds
 * map_lock shared.  Returns the device or NULL if unmapped/unavailable. */
struct vd_dev *vd_leg_locate(struct vd_vol *v, uint32_t leg, uint64_t off,
                             uint64_t *dev_off);
struct vd_dev *vd_leg_bitmap_locate(struct vd_vol *v, uint32_t leg,
                                    uint64_t *dev_off);
struct vd_vol *vd_vol_find(const vd_pool *p, const char *name);
struct vd_vol *vd_vol_find_id(const vd_pool *p, uint32_t id);

/* Copy a NUL-terminated name into a fixed on-disk field of n bytes,
 * NUL-padded and always terminated. */
static inline void vd_name_copy(char *dst, size_t n, const char *src)
{
    size_t l = 0;
    while (l + 1 < n && src[l])
        l++;
    for (size_t i = 0; i < n; i++)
        dst[i] = i < l ? src[i] : 0;
}

/* ceil(a / b) without overflow for any a (a + b - 1 wraps near 2^64). */
static inline uint64_t vd_div_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

#ifdef __cplusplus
}
#endif
#endif
