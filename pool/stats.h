/* vdlvm: per-volume I/O counters of the process that serves LUNs (pool/).
 *
 * Who counts.  bs_vdlvm.so (inside tgtd) takes one vd_vol_stats per LU it
 * exports (vd_vol_stats_get in bs_open, vd_vol_stats_put in bs_close) and
 * counts every SCSI command it serves with vd_vol_stats_account: on tgtd's
 * main thread for the inline fast path, on a worker thread otherwise.  The
 * `vdlvm stats` command, run inside that tgtd through the control socket
 * (admin/stats.c), reads them with vd_vol_stats_snapshot.  In a process
 * that exports nothing (the vdlvm command) the registry is empty, and
 * stats says so.
 *
 * Cost and concurrency.  No lock per I/O: each counter is a uint64_t
 * updated with a relaxed atomic add (one `lock xadd` each), because
 * several workers of one pool serve the same volume at once.  A snapshot
 * reads each counter with a relaxed atomic load: every counter is exact
 * and monotonic, but counters of one command may be seen half-updated (a
 * read counted whose bytes are not yet added); the next scrape sees both.
 * The histogram's count and sum are derived from its buckets in the
 * snapshot, so they always agree with each other.
 *
 * The registry (a list of entries, one per pool/volume, under g_lock)
 * changes only in bs_open/bs_close (tgtd's main thread) and is read by a
 * snapshot (a control-socket thread); the lock is held for list walks and
 * memcpy only, never across I/O, so the main thread never waits long on
 * it.  An entry stays until the process exits (counters survive a LUN
 * being deleted and added again, as Prometheus counters should; memory is
 * one entry per volume ever exported); `luns` says how many LUNs export it
 * now.  Entries are never freed while the process runs, so a pointer from
 * vd_vol_stats_get stays valid for good.
 *
 * Device counters (vd_pool_dev_get_counters) are not in the registry: they
 * live on the pool's devices (struct vd_dev: failed reads, writes and
 * flushes, relaxed atomic adds in pool/dev.c; struct vd_bdev: sessions
 * re-established, relaxed atomic add by the remote driver, pool/iscsi.c),
 * so they count in whichever process has the pool open, tgtd or the
 * vdlvm command.  They are read with relaxed atomic loads under the
 * pool's admin lock, which keeps the device array and each device's bdev
 * pointer from changing meanwhile (both change only under it); the lock
 * is held for the loads only.  The reconnect counter belongs to the bdev,
 * which never changes while the device is in the pool but for one case: a
 * device missing (or failed) at open has no bdev (reads 0) until
 * vd_pool_retry_devices attaches one, counting that return as its first
 * reconnect, so the counter never goes back.  A slot reused by a device
 * added later (vd_pool_apply) starts at 0 on every counter.
 */
#ifndef VD_POOL_STATS_H
#define VD_POOL_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "vdpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a SCSI command did to the volume.  READ: READ(6/10/12/16);
 * WRITE: WRITE(6/10/12/16), WRITE AND VERIFY; OTHER: everything else the
 * module serves (flush, UNMAP, WRITE SAME, COMPARE AND WRITE, ...). */
enum vd_io_op { VD_IO_OP_READ = 0, VD_IO_OP_WRITE, VD_IO_OP_OTHER, VD_IO_NOPS };

/* Latency histogram: upper bounds in microseconds of the finite buckets;
 * one more bucket (+Inf) follows.  Chosen for a local page-cache hit
 * (tens of us) up to a remote device timing out (seconds). */
#define VD_LAT_NBOUNDS 14
extern const uint64_t vd_lat_bounds_us[VD_LAT_NBOUNDS];

struct vd_io_counters {
    uint64_t ops[VD_IO_NOPS];
    uint64_t bytes[VD_IO_NOPS];  /* data transferred (READ/WRITE only) */
    uint64_t errors[VD_IO_NOPS]; /* commands answered with CHECK CONDITION */
    uint64_t lat_ns_sum[VD_IO_NOPS];
    uint64_t lat[VD_IO_NOPS][VD_LAT_NBOUNDS + 1]; /* per bucket, not
                                                     cumulative; last +Inf */
};

typedef struct vd_vol_stats vd_vol_stats;

/* The counters of pool/vol, created at zero the first time; luns + 1.
 * NULL + errno (ENOMEM, EINVAL for a bad name).  Thread-safe. */
vd_vol_stats *vd_vol_stats_get(const char *pool, const char *vol);
/* luns - 1 (the counters stay).  NULL is fine.  Thread-safe. */
void vd_vol_stats_put(vd_vol_stats *s);
/* Count one command: op, bytes transferred, how long the volume took
 * (ns), failed (non-zero: answered with an error).  s may be NULL (not
 * counted).  Any thread; lock-free. */
void vd_vol_stats_account(vd_vol_stats *s, enum vd_io_op op, uint64_t bytes,
                          uint64_t ns, int failed);
/* Index of the histogram bucket for ns (0 .. VD_LAT_NBOUNDS). */
unsigned vd_lat_bucket(uint64_t ns);

struct vd_vol_stats_snap {
    char vol[VD_NAME_MAX + 1];
    uint32_t luns; /* LUNs exporting it now */
    struct vd_io_counters c;
};
/* Every volume of pool counted by this process, in the order first
 * exported: *out malloc'd (free()), *n entries (0: *out NULL).  Returns
 * 0, or -ENOMEM.  Thread-safe. */
int vd_vol_stats_snapshot(const char *pool, struct vd_vol_stats_snap **out,
                          size_t *n);

/* What went wrong on one device of an open pool, since it was opened. */
struct vd_dev_counters {
    uint64_t read_errors;  /* reads that failed */
    uint64_t write_errors; /* writes and zeroing that failed */
    uint64_t flush_errors; /* cache flushes that failed */
    uint64_t reconnects;   /* remote sessions re-established after a loss,
                              and returns of a device missing or failed
                              (vd_pool_retry_devices; local ones too) */
};
/* The counters of device i (vd_pool_dev_get_info's index): 0, or -ENOENT.
 * Thread-safe (takes the admin lock briefly; never waits on I/O). */
int vd_pool_dev_get_counters(const vd_pool *pool, uint32_t i,
                             struct vd_dev_counters *out);

/* Count one failed device I/O of op (VD_BIO_READ, VD_BIO_WRITE,
 * VD_BIO_FLUSH; pool/pool_int.h) in d's error counters: every failure a
 * caller sees as -EIO, on the synchronous paths (pool/dev.c) and the
 * asynchronous one (vd_dev_submit's completion) alike.  Any thread;
 * relaxed atomic add. */
struct vd_dev;
void vd_dev_count_error(struct vd_dev *d, int op);

#ifdef __cplusplus
}
#endif
#endif
