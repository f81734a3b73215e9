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

#define VD_NAME_MAX 63          /* pool, device, volume, node names */
#define VD_EXTENT_SIZE_DEFAULT (4ULL << 20)
#define VD_EXTENT_SIZE_MIN (1ULL << 20)

/* One device of a pool.  Exactly one of path / iscsi_url is set. */
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
    int line, column;       /* where the device was defined (1-based) */
};

struct vd_conf_pool {
    char *file;             /* path the definition was read from */
    char *name;             /* pool name */
    uint64_t extent_size;   /* bytes, power of two >= 1 MiB; default 4 MiB */
    size_t ndevs;
    struct vd_conf_dev *devs;
};

/* Parse "200MiB", "4M", "1GiB", "512", "3T", "10B".  Units B, KiB, MiB, GiB,
 * TiB and K, M, G, T (all binary), case-sensitive as written here; no unit
 * means bytes.  Returns 0, -EINVAL (syntax) or -ERANGE (overflow). */
int vd_size_parse(const char *s, uint64_t *out);

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
