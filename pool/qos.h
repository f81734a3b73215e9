/* vdlvm QoS: per-volume I/O limits (issue 17).  Included by vdpool.h.
 *
 * Two halves:
 * - Limits, persistent: each volume carries a struct vd_qos_limits, set by
 *   vd_vol_qos_set (a metadata commit, op VD_OP_QOS = 13) and read by
 *   vd_vol_qos_get.  Both are thread-safe; vd_vol_qos_get never waits on
 *   the admin lock (tgtd's main thread calls it).
 * - The limiter, in memory: struct vd_qos is a set of token buckets (total,
 *   read and write IOPS and bytes per second).  It has no lock: its owner
 *   (in tgtd, the LU's main thread) is the only thread that touches it.
 *   It allocates nothing.
 *
 * Bucket rules (pool/qos.c has the arithmetic):
 * - depth = rate * burst_ms / 1000 tokens (at least one command's worth for
 *   IOPS, at least 1 byte for bytes); a bucket starts full, so a volume idle
 *   for burst seconds may run at any speed until depth is used up.
 * - A command is admitted when every bucket it draws from (IOPS: total and
 *   its direction, one token each; bytes: total and its direction, its
 *   length) holds at least min(cost, depth) tokens; then its cost is taken,
 *   possibly leaving a bucket negative (a command larger than the depth
 *   runs once the bucket is full and is paid back at the rate), so the
 *   long-run rate is exact for any command size.
 * - A limit of 0 means none; changing a limit keeps the tokens a bucket
 *   holds (cut to the new depth); a newly limited bucket starts full.
 */
#ifndef VD_QOS_H
#define VD_QOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum vd_qos_kind {
    VD_QOS_IOPS = 0, /* commands per second, read + write */
    VD_QOS_RIOPS,
    VD_QOS_WIOPS,
    VD_QOS_BPS, /* bytes per second, read + write */
    VD_QOS_RBPS,
    VD_QOS_WBPS,
    VD_QOS_NLIMITS
};

#define VD_QOS_BURST_MS_DEFAULT 1000u
#define VD_QOS_BURST_MS_MAX     (3600u * 1000u)
/* Limits above these are refused (a typo, not a limit). */
#define VD_QOS_IOPS_MAX (100ull * 1000 * 1000)
#define VD_QOS_BPS_MAX  (1ull << 50) /* 1 PiB/s */

struct vd_qos_limits {
    uint64_t limit[VD_QOS_NLIMITS]; /* per second; 0: none */
    uint32_t burst_ms;              /* 0: VD_QOS_BURST_MS_DEFAULT */
};

/* Rates measured by the limiter's owner (tgtd) and published for status. */
struct vd_qos_rates {
    uint64_t rate[VD_QOS_NLIMITS]; /* per second, over the last interval */
    uint32_t queued;               /* commands waiting for tokens */
    int64_t at_ms;                 /* vd_now_ms of the publication; 0: never */
};

/* Option names, for messages and status ("iops-limit", ...). */
const char *vd_qos_name(enum vd_qos_kind k);
/* 1 if any limit is set. */
bool vd_qos_limits_any(const struct vd_qos_limits *l);
/* 0, or -EINVAL after a message naming the volume `what` into msg. */
int vd_qos_limits_check(const struct vd_qos_limits *l, char *msg, size_t len);

/* ---- persistent limits (thread-safe) ---------------------------------- */
struct vd_pool;
struct vd_vol;
/* Set the limits of volume `name` whose bit (1 << kind) is in mask, and
 * the burst when mask has VD_QOS_MASK_BURST; others keep their values.
 * One metadata commit.  0, -ENOENT, -EINVAL (logged; nothing changed). */
#define VD_QOS_MASK_BURST (1u << VD_QOS_NLIMITS)
int vd_vol_qos_set(struct vd_pool *p, const char *name,
                   const struct vd_qos_limits *l, unsigned mask);
/* The limits of an open volume; takes only a leaf lock (never the admin
 * lock), so tgtd's main thread may call it. */
void vd_vol_qos_get(struct vd_vol *v, struct vd_qos_limits *l);
/* By name: 0 or -ENOENT (admin lock). */
int vd_vol_qos_get_by_name(struct vd_pool *p, const char *name,
                           struct vd_qos_limits *l);
/* Published rates: set by the limiter's owner, read by status. */
void vd_vol_qos_publish(struct vd_vol *v, const struct vd_qos_rates *r);
int vd_vol_qos_rates(struct vd_pool *p, const char *name,
                     struct vd_qos_rates *r);

/* ---- the limiter (one owner thread, no lock, no allocation) ----------- */
struct vd_qos_bucket {
    uint64_t rate;    /* tokens per second; 0: unlimited */
    int64_t depth;    /* tokens when full */
    int64_t tokens;   /* <= depth; negative: paying back a large command */
    uint64_t rem;     /* refill remainder, in 1e-9 tokens */
    uint64_t last_ns; /* time of the last refill */
};

struct vd_qos {
    struct vd_qos_bucket b[VD_QOS_NLIMITS];
    bool active; /* any bucket limited */
};

/* Apply limits at time now_ns (CLOCK_MONOTONIC ns); q zeroed = no limits. */
void vd_qos_configure(struct vd_qos *q, const struct vd_qos_limits *l,
                      uint64_t now_ns);
/* Admit a command (write or read, bytes long) at now_ns: true, with its
 * cost taken; or false, with *wait_ns the time until it would be admitted
 * if nothing else changed (at least 1). */
bool vd_qos_admit(struct vd_qos *q, bool write, uint64_t bytes, uint64_t now_ns,
                  uint64_t *wait_ns);

#ifdef __cplusplus
}
#endif
#endif
