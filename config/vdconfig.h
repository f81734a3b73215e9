/* vdlvm: pool definition from YAML (config/).
 *
 * Knows nothing of I/O: it turns a YAML file into a validated
 * struct vd_conf_pool.  Thread-safe (no global state); call from any thread.
 */
#ifndef VDCONFIG_H
#define VDCONFIG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VD_NAME_MAX            63 /* pool, device, volume, node names */
#define VD_EXTENT_SIZE_DEFAULT (4ULL << 20)
#define VD_EXTENT_SIZE_MIN     (1ULL << 20)
/* Thin volumes' chunk: a power of two from VD_CHUNK_SIZE_MIN to the extent
 * size (`chunk_size:` in the definition, `vol create --chunk-size`). */
#define VD_CHUNK_SIZE_DEFAULT (64ULL << 10)
#define VD_CHUNK_SIZE_MIN     (4ULL << 10)

/* One device of a pool.  Exactly one of path / iscsi_url / rbd_image is
 * set. */
struct vd_conf_dev {
    char *name;             /* [A-Za-z0-9_.-]{1,63} */
    char *path;             /* local file or block device, or NULL */
    uint64_t size;          /* bytes; 0 = not given (only for a file that
                               does not exist yet: created sparse) */
    char *iscsi_url;        /* iscsi://host[:port]/iqn/lun, or NULL */
    char *node;             /* owning node; default: URL host for remote,
                               gethostname() for local */
    char *chap_user;        /* optional, remote only */
    char *chap_secret_file; /* optional, remote only */
    uint32_t timeout_ms;    /* per-command limit, remote only; default 30000 */
    int encrypt;            /* `encrypt: true`: data area encrypted with the
                               pool's key (needs key_file) */
    uint32_t tier;          /* `tier:` VD_CONF_TIER_*; 0 (slow) by default */
    int direct;             /* `direct:` local devices only: 1 true (open
                               O_DIRECT), -1 false (buffered), 0 not given
                               (block devices O_DIRECT, files buffered) */
    int line, column;       /* where the device was defined (1-based) */

    /* Ceph RBD image (pool/rbd.c), `rbd: {pool, image, conf, id}`; all NULL
     * otherwise.  node defaults to the fsid in the conf file. */
    char *rbd_pool, *rbd_image;
    char *rbd_conf; /* ceph.conf path; default /etc/ceph/ceph.conf */
    char *rbd_id;   /* client id (client.ID's keyring); default admin */
    int encrypt_line, encrypt_col; /* where encrypt: was given */
};

/* Which in-sync mirror leg serves a read (read_policy:): local prefers a
 * leg whose extent is on a local device (not iscsi:), spread takes every
 * in-sync leg in turn. */
enum { VD_READ_LOCAL = 0, VD_READ_SPREAD = 1 };
/* Device tiers (`tier: slow|fast`; docs/tiering.md), ordered: a higher
 * number is faster; 0 (slow) is the default of a zeroed struct. */
enum { VD_CONF_TIER_SLOW = 0, VD_CONF_TIER_FAST = 1, VD_CONF_NTIERS = 2 };

/* The pool's `tiering:` section (pool/tier.c); defaults when absent. */
struct vd_conf_tiering {
    int given;              /* the section is in the file */
    int enabled;            /* `enabled:`, default 1 when given, else 0 */
    uint32_t interval_ms;   /* `interval:` between passes, default 60s */
    uint64_t rate;          /* `rate:` bytes/s moved, 0 = unlimited; 64MiB */
    uint32_t fast_free_pct; /* `fast_free:` share of fast space kept free,
                               0-90 %, default 10 */
};

struct vd_conf_pool {
    char *file;           /* path the definition was read from */
    char *name;           /* pool name */
    uint64_t extent_size; /* bytes, power of two >= 1 MiB; default 4 MiB */
    uint64_t chunk_size;  /* thin volumes' default chunk: bytes, power of
                             two, 4 KiB .. extent_size; default 64 KiB */
    int read_policy;      /* VD_READ_LOCAL (default) or VD_READ_SPREAD */
    size_t ndevs;
    struct vd_conf_dev *devs;
    char *key_file; /* `encryption: {key_file: PATH}`, absolute, or NULL */
    uint32_t crypt_sector; /* encryption.sector_size: 512 (default) or 4096 */
    struct vd_conf_tiering tiering;
};

/* Sizes: one rule for the YAML definition and the command line.
 *
 *   A number of bytes: digits, optionally followed by a unit B, KiB, MiB,
 *   GiB, TiB or K, M, G, T (all binary: K = KiB = 1024; case as written,
 *   no space, nothing else).  A decimal fraction is allowed when the value
 *   comes to a whole number of bytes: "1.5GiB" and "0.5KiB" are sizes,
 *   "1.3KiB" (1331.2 bytes) is not.  No sign, no exponent, no hex.
 *
 * VD_SIZE_RULE says it in one line for messages and --help. */
#define VD_SIZE_RULE                                                         \
    "use a whole number of bytes or a number with a unit B, KiB, MiB, GiB, " \
    "TiB (or K, M, G, T; binary), e.g. 200MiB or 1.5GiB (a fraction must "   \
    "come to whole bytes)"

/* Parse s by the rule above.  Returns 0 (*out set), -EINVAL (not a size)
 * or -ERANGE (more than 2^64 - 1 bytes); *out is untouched on error. */
int vd_size_parse(const char *s, uint64_t *out);

/* vd_size_parse with an upper bound and a message, for every front end.
 * Returns 0 with *out set, or:
 *   -EINVAL  msg = "'S' is not a size; <VD_SIZE_RULE>"
 *            (or "'S' is not a whole number of bytes; <VD_SIZE_RULE>")
 *   -ERANGE  msg = "'S' is too large (at most M)", M exact (vd_size_exact)
 *            when S is above max (or above 2^64 - 1).
 * msg names neither the option nor the file: the caller prefixes it
 * ("--size ", "pool.yaml:3:9: size ").  msg may be NULL.  *out is
 * untouched on error.  Thread-safe. */
int vd_size_parse_max(const char *s, uint64_t max, uint64_t *out, char *msg,
                      size_t msglen);

/* Format bytes exactly: "4MiB" when a unit divides it, else "N bytes"
 * (unlike vd_size_format, never rounded; for limits in messages). */
void vd_size_exact(uint64_t bytes, char *buf, size_t len);

/* Format bytes as "4MiB", "1.5GiB" into buf (always NUL-terminated). */
void vd_size_format(uint64_t bytes, char *buf, size_t len);

/* Parse a duration "30s", "500ms", "2m", "30" (seconds).  0 or -EINVAL. */
int vd_duration_parse(const char *s, uint32_t *out_ms);

/* Load and validate a pool definition.  On error returns a negative errno
 * and writes one message "FILE:LINE:COL: what is wrong[; fix]" into err
 * (or "FILE: cause" when the file cannot be read).  *out is freed with
 * vd_conf_free(). */
int vd_conf_load(const char *path, struct vd_conf_pool **out, char *err,
                 size_t errlen);

/* Same, from a buffer; `file` names it in messages. */
int vd_conf_parse(const char *file, const char *buf, size_t len,
                  struct vd_conf_pool **out, char *err, size_t errlen);

void vd_conf_free(struct vd_conf_pool *conf);

/* 1 if s is a valid pool/device/volume name, else 0. */
int vd_name_is_valid(const char *s);

#ifdef __cplusplus
}
#endif
#endif
