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
enum {
    T_POOL,
    T_VOL,
    T_ANY_OPT /* [POOL[/VOL]] */,
    T_SNAP /* POOL/VOL@SNAP */,
    T_VOL_SNAP /* POOL/VOL or POOL/VOL@SNAP (snap "" for a volume) */
};

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
    O_PROMETHEUS = 1u << 13, /* stats */
    O_KEY_FILE = 1u << 16,
    /* vol set: QoS limits (admin/qos.c) */
    O_IOPS_LIMIT = 1u << 20,
    O_RIOPS_LIMIT = 1u << 21,
    O_WIOPS_LIMIT = 1u << 22,
    O_BPS_LIMIT = 1u << 23,
    O_RBPS_LIMIT = 1u << 24,
    O_WBPS_LIMIT = 1u << 25,
    O_BURST = 1u << 26,
    O_TO = 1u << 14,      /* dev evacuate --to DEV,... */
    O_DRY_RUN = 1u << 15, /* pool apply --dry-run */
    O_FORCE = 1u << 18,   /* vol revert */
    O_PNG = 1u << 17,     /* tier status --png FILE (admin/tier.c) */
    O_TIERING = 1u << 19, /* vol set --tiering on|off */
    O_FORMAT = 1u << 28,  /* vol import/export --format FMT (admin/image.c) */
};
#define O_QOS_ALL                                                 \
    (O_IOPS_LIMIT | O_RIOPS_LIMIT | O_WIOPS_LIMIT | O_BPS_LIMIT | \
     O_RBPS_LIMIT | O_WBPS_LIMIT | O_BURST)

enum {
    F_SIZE_REL = 1u << 0, /* --size takes +SIZE */
    F_FILE = 1u << 1      /* a FILE argument after the target (a->file) */
};

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
    const char *key_file;       /* --key-file (absolute) */
    struct vd_qos_limits qos;   /* vol set (admin/qos.c) */
    unsigned qos_mask;          /* vd_vol_qos_set's mask */
    const char *to;             /* --to DEV,... (admin/dev.c splits it) */
    char snap[VD_NAME_MAX + 1]; /* T_SNAP: the part after '@' */
    const char *png;            /* --png FILE */
    int tiering;                /* vol set --tiering: 1 on, 0 off */
    const char *file;           /* F_FILE: the FILE argument (argv's) */
    const char *format;         /* --format FMT */
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
/* QoS (qos.c): vol set's option parser, check and command; status. */
int admin_qos_opt(const char *cmdname, const char *name, const char *val,
                  struct cmd_args *a, FILE *err);
int admin_qos_check(struct cmd_args *a, const char *cmdname, FILE *err);
int admin_cmd_vol_set(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
void admin_qos_status_text(FILE *out, vd_pool *pool, const char *vol);
/* obj: a volume's JSON object (len bytes); written with "qos" added. */
void admin_qos_json_vol(FILE *out, vd_pool *pool, const char *vol,
                        const char *obj, size_t len);
/* admin/snap.c: snapshots */
int admin_cmd_snap_create(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err);
int admin_cmd_snap_list(vd_pool *pool, struct cmd_args *a, FILE *out,
                        FILE *err);
int admin_cmd_snap_remove(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err);
int admin_cmd_vol_clone(vd_pool *pool, struct cmd_args *a, FILE *out,
                        FILE *err);
int admin_cmd_vol_revert(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err);
int admin_cmd_pool_check(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err);
/* admin/image.c: vol import, vol export and their rules */
int admin_cmd_vol_import(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err);
int admin_cmd_vol_export(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err);
int admin_image_check(struct cmd_args *a, const char *cmdname, FILE *err);
int admin_opt_format(const char *cmdname, const char *name, const char *val,
                     struct cmd_args *a, FILE *err);
/* tier status, tier run (tier.c) and their rules. */
int admin_cmd_tier_status(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err);
int admin_cmd_tier_run(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
int admin_tier_check(struct cmd_args *a, const char *cmdname, FILE *err);
int admin_status_vol(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
/* key add / key remove and their --key-file option (key.c) */
int admin_cmd_key_add(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
int admin_cmd_key_remove(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err);
int admin_cmd_key_rotate(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err);
/* vol encrypt and its part of status (key.c) */
int admin_cmd_vol_encrypt(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err);
void admin_crypt_status_text(FILE *out, vd_pool *pool);
void admin_crypt_status_json(FILE *out, vd_pool *pool);
int admin_opt_key_file(const char *cmdname, const char *name, const char *val,
                       struct cmd_args *a, FILE *err);
int admin_status_pool(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
/* admin/dev.c: dev evacuate; the extent mover's part of status */
int admin_cmd_dev_evacuate(vd_pool *pool, struct cmd_args *a, FILE *out,
                           FILE *err);
/* admin/dev.c: pool rebalance */
int admin_cmd_pool_rebalance(vd_pool *pool, struct cmd_args *a, FILE *out,
                             FILE *err);
void admin_move_status_json(FILE *out, vd_pool *pool);
void admin_move_status_text(FILE *out, vd_pool *pool);
/* A running verify in status (admin/vol.c): "\"verify\":[...]," of the
 * pool's; obj (one JSON object of len bytes) with "verify" (or null)
 * added; text lines with a bar, of vol's (NULL: every volume's). */
void admin_verify_status_json(FILE *out, vd_pool *pool);
void admin_verify_json_vol(FILE *out, vd_pool *pool, const char *vol,
                           const char *obj, size_t len);
void admin_verify_status_text(FILE *out, vd_pool *pool, const char *vol);
/* ",\"errors\":{...},\"reconnects\":N" of device i (admin/stats.c). */
void admin_dev_counters_json(FILE *out, vd_pool *pool, uint32_t i);
/* admin/apply.c: pool apply */
int admin_cmd_pool_apply(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err);

/* ---- progress of long commands (progress.c) ---- */
/* For every command that waits for long work (resync --wait, vol repair
 * --wait, and evacuate, rebalance, tier run, import/export when they come):
 *
 *   struct admin_progress pg;
 *   admin_progress_start(&pg, err, "evacuate pool0/d1", total_bytes, -1);
 *   while (!finished)
 *       admin_progress_update(&pg, done_bytes, total_bytes);  // any rate
 *   admin_progress_end(&pg, "done");                         // or the failure
 *
 * On a terminal (tty -1: isatty(fileno(f)); 1/0 force it) one line redrawn
 * in place, at most every 100 ms: "LABEL: [####....]  45%  72MiB of 160MiB
 * 50MiB/s  0:02 left"; otherwise one such line (without the bar) per 10 %
 * step.  The end line gives the result, bytes, time and mean rate.  Write
 * progress to the err stream, never to out (out may be JSON).  total may
 * change between updates (a resync that grows).  One admin_progress per
 * command, on its thread; f NULL draws nothing. */
struct admin_progress {
    FILE *f;
    int tty;
    char label[160];
    uint64_t total, done;
    int64_t t0_ms, last_ms; /* start, last line drawn */
    int64_t sample_ms;      /* last rate sample */
#define PROGRESS_WINDOW 8
    int64_t win_ms[PROGRESS_WINDOW]; /* rate samples: time, done */
    uint64_t win_done[PROGRESS_WINDOW];
    int nwin, win_head; /* samples held, oldest once full */
    double rate;        /* bytes/s over the window */
    int have_rate, shown;
    int step; /* lines: last step printed */
};
void admin_progress_start(struct admin_progress *p, FILE *f, const char *label,
                          uint64_t total, int tty);
void admin_progress_update(struct admin_progress *p, uint64_t done,
                           uint64_t total);
void admin_progress_end(struct admin_progress *p, const char *result);
/* The same at a given CLOCK_MONOTONIC time in ms (tests). */
void admin_progress_update_at(struct admin_progress *p, uint64_t done,
                              uint64_t total, int64_t now_ms);
void admin_progress_end_at(struct admin_progress *p, const char *result,
                           int64_t now_ms);
/* Seconds left at rate bytes/s (rounded up); 0 when done, UINT64_MAX when
 * the rate is 0 (unknown). */
uint64_t admin_progress_eta(uint64_t done, uint64_t total, uint64_t rate);
/* "[####......]  45%  72MiB of 160MiB  50MiB/s  0:02 left" (bar: width of
 * the bar, 0 for none) into buf; `status` draws a resync with it too. */
void admin_progress_line(char *buf, size_t len, uint64_t done, uint64_t total,
                         uint64_t rate, int bar);
/* Wait for the resync of pool/vol (what: "resync", "rebuild") with
 * progress on err; vd_mirror_resync_wait's result. */
int admin_resync_wait(vd_pool *pool, const char *pool_name, const char *vol,
                      const char *what, FILE *err);

/* ---- stats (stats.c) ---- */
int admin_cmd_stats(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err);
int admin_check_stats(struct cmd_args *a, const char *cmdname, FILE *err);
/* Prometheus text exposition, one family at a time: the HELP and TYPE
 * lines, then its samples.  labels: NULL-terminated key, value, ...
 * (values escaped: backslash, double quote, newline). */
void admin_prom_family(FILE *out, const char *name, const char *type,
                       const char *help);
void admin_prom_label_value(FILE *out, const char *v);
void admin_prom_sample(FILE *out, const char *name, const char *const *labels,
                       uint64_t value);
/* name_bucket{...,le="..."} cumulative over buckets[0..nbounds] (the last
 * one +Inf, not cumulative on input), then name_sum (seconds) and
 * name_count (= the +Inf bucket). */
void admin_prom_histogram(FILE *out, const char *name,
                          const char *const *labels, const uint64_t *bounds_us,
                          size_t nbounds, const uint64_t *buckets,
                          uint64_t sum_ns);

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
