/* vdlvm admin internals: shared by the files of admin/ only (not installed, not
 * included outside admin/).  Everything here runs on the thread of the
 * vd_admin_exec call it serves; nothing here is shared state.
 */
#ifndef VD_ADMIN_INT_H
#define VD_ADMIN_INT_H

#include <stdint.h>
#include <stdio.h>

#include "../replica/vdreplica.h"
#include "vdadmin.h"

struct cmd_args;

/* 1: pool/vdpool.h has vd_vol_opts.thin and .chunk_size (the thin layout);
 * 0 makes `vol create --thin` say it is not supported by this build. */
#ifndef VD_HAVE_THIN_OPTS
#define VD_HAVE_THIN_OPTS 1
#endif

/* Which target argument a command takes. */
enum { T_POOL, T_VOL, T_ANY_OPT /* [POOL[/VOL]] */ };

enum {
    O_SIZE = 1u << 0,
    O_LAYOUT = 1u << 1,
    O_COPIES = 1u << 2,
    O_SAME_NODE = 1u << 3,
    O_JSON = 1u << 4,
    O_RATE = 1u << 5,
    O_REPLACE = 1u << 6,
    O_WITH = 1u << 7,
    O_REPAIR = 1u << 8,
    O_WAIT = 1u << 9,
    O_REGION = 1u << 10,
    O_THIN = 1u << 11,
    O_CHUNK = 1u << 12,
    O_PNG = 1u << 13,     /* tier status --png FILE (admin/tier.c) */
    O_DRY_RUN = 1u << 14, /* tier run --dry-run */
};

enum { F_SIZE_REL = 1u << 0 /* --size takes +SIZE */ };

/* One admin command: its words, arguments, help, and the two functions
 * that are all a new command needs (cmd.c lists them in g_cmds). */
struct cmd_spec {
    const char *w1, *w2; /* command words; w2 NULL for one word */
    int target;
    unsigned opts;        /* O_* allowed */
    unsigned required;    /* O_* required */
    const char *synopsis; /* after "vdlvm " */
    const char *help;
    unsigned flags; /* F_* */
    /* The command's own rules once every option is parsed (NULL: none):
     * 0, or VD_EXIT_USAGE after a message. */
    int (*check)(struct cmd_args *a, const char *cmdname, FILE *err);
    /* Run it against pool (vol.c, status.c); a VD_EXIT_* code. */
    int (*exec)(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
};

struct cmd_args {
    const struct cmd_spec *spec;
    char pool[VD_NAME_MAX + 1];
    char vol[VD_NAME_MAX + 1]; /* "" when the target names no volume */
    int has_target;
    uint64_t size;
    int size_rel; /* --size +SIZE */
    enum vd_layout layout;
    uint32_t copies;
    unsigned given; /* O_* seen */
    uint64_t rate;
    uint64_t region_size;
    uint64_t chunk_size; /* --chunk-size; 0: the pool's chunk_size */
    const char *replace, *with;
    const char *png; /* --png FILE */
};

/* "vdlvm: " + the message + newline on err. */
void admin_msg(FILE *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A library call failed with r: print our own message (fmt: strerror)
 * unless the library already told the user; returns the exit code. */
int admin_lib_fail(FILE *err, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A volume call (verb) failed with r: a message from the errno unless the
 * library already told the user; returns the exit code. */
int admin_vol_fail(FILE *err, int r, const char *pool, const char *vol,
                   const char *verb);

/* Parse argv into a: -1 when a holds a well-formed command, else a
 * VD_EXIT_* code (help printed on out, or usage error printed on err). */
int admin_parse_cmd(int argc, char **argv, struct cmd_args *a, FILE *out,
                    FILE *err);

/* The commands (vol.c, status.c): run a parsed command against pool; VD_EXIT_*. */
int admin_cmd_vol_create(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err);
int admin_cmd_vol_list(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
int admin_cmd_vol_remove(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err);
int admin_cmd_vol_extend(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err);
int admin_cmd_resync(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
int admin_cmd_verify(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
int admin_cmd_vol_repair(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err);
/* tier status, tier run (tier.c) and their rules. */
int admin_cmd_tier_status(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err);
int admin_cmd_tier_run(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
int admin_tier_check(struct cmd_args *a, const char *cmdname, FILE *err);
int admin_status_vol(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
int admin_status_pool(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);

/* ---- output helpers (output.c) ---- */
/* A text table: columns padded to their widest cell, last one unpadded. */
#define TBL_MAXCOLS 10
struct table {
    int ncols;
    size_t nrows, cap;
    char **cells; /* nrows * ncols, malloc'd */
};
void admin_tbl_cell(struct table *t, int col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void admin_tbl_print(struct table *t, FILE *out, const char *indent);
void admin_tbl_free(struct table *t);
/* "12MiB": b in the largest binary unit that divides it. */
void admin_fmt_size(uint64_t b, char *buf, size_t len);
/* "50MiB/s", or "unlimited" for 0. */
void admin_fmt_rate(uint64_t bps, char *buf, size_t len);
const char *admin_dev_state_str(enum vd_dev_state s);
/* s as a JSON string (escaped; invalid UTF-8 becomes U+FFFD). */
void admin_jstr(FILE *f, const char *s);
/* The mirror info of vol when it is a mirror: 0 with *has set (0 for a
 * volume of another layout), or the failure. */
int admin_mirror_get(vd_pool *pool, const char *vol, struct vd_mirror_info *mi,
                     int *has);
/* "le 0-47 -> d0 pe 0-47, ..."; malloc'd, or NULL. */
char *admin_runs_brief(const vd_pool *pool, const struct vd_run *runs, size_t n,
                       uint32_t copies);
/* A volume's JSON object (extents when runs, legs when mi; allocated
 * bytes when st). */
void admin_json_vol(FILE *out, const vd_pool *pool,
                    const struct vd_vol_info *vi, const struct vd_run *runs,
                    size_t nruns, const struct vd_mirror_info *mi,
                    const struct vd_vol_status *st);
/* "12MiB (0.1%)": allocated bytes and their share of size. */
void admin_fmt_alloc(uint64_t allocated, uint64_t size, char *buf, size_t len);
/* The allocation thresholds (percent of the pool) the status lists as
 * crossed when vd_pool_info.threshold_pct is at least one of them. */
extern const uint32_t admin_thresholds[3];
/* "in-sync", "degraded (leg 1 failed)", "resyncing 45%". */
void admin_mirror_brief(const struct vd_mirror_info *mi, char *buf, size_t len);
/* A mirror's legs and resync, as text. */
void admin_print_mirror(FILE *out, const struct vd_mirror_info *mi);

#endif
