/* vdlvm admin: `tier status POOL/VOL [--json] [--png FILE]` and `tier run
 * POOL/VOL [--wait] [--dry-run]` (tiering, pool/tier.c; docs/tiering.md).
 *
 * Runs on the thread of vd_admin_exec (inside tgtd: the control socket's
 * thread, never tgtd's main thread), so --png may start gnuplot and wait
 * for it (a few hundred milliseconds; its input is a small file).
 */
#include <errno.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin_int.h"

extern char **environ;

struct tier_st {
    struct vd_tier_info ti;
    struct vd_tier_ext *ext;
    size_t n;
    uint32_t *hist;
    char (*dev)[VD_NAME_MAX + 1]; /* device names by index */
    uint32_t ndevs;
};

static void st_free(struct tier_st *s)
{
    free(s->ext);
    free(s->hist);
    free(s->dev);
}

static int st_get(vd_pool *pool, const char *vol, struct tier_st *s)
{
    struct vd_pool_info pi;
    int r;

    memset(s, 0, sizeof(*s));
    if ((r = vd_tier_get(pool, vol, &s->ti, &s->ext, &s->n, &s->hist)) < 0)
        return r;
    if ((r = vd_pool_get_info(pool, &pi)) < 0)
        return r;
    s->dev = calloc(pi.ndevs + 1, sizeof(*s->dev));
    if (!s->dev)
        return -ENOMEM;
    s->ndevs = pi.ndevs;
    for (uint32_t i = 0; i < pi.ndevs; i++) {
        struct vd_dev_info di;
        if (vd_pool_dev_get_info(pool, i, &di) == 0)
            snprintf(s->dev[i], sizeof(s->dev[i]), "%s", di.name);
    }
    return 0;
}

static const char *dev_name(const struct tier_st *s, uint32_t d)
{
    return d < s->ndevs ? s->dev[d] : "-";
}

static const char *tier_str(uint32_t t)
{
    return t == VD_CONF_TIER_FAST ? "fast" : "slow";
}

static void print_text(FILE *out, const char *pool, const char *vol,
                       const struct tier_st *s)
{
    const struct vd_tier_info *ti = &s->ti;
    char rate[32], es[32];
    struct table t = { .ncols = 7 };

    admin_fmt_rate(ti->rate, rate, sizeof(rate));
    admin_fmt_size(ti->extent_size, es, sizeof(es));
    fprintf(out, "volume '%s/%s': tiering %s\n", pool, vol,
            ti->vol_on ? "on" : "off");
    fprintf(out,
            "pool passes: %s, every %us, rate %s, fast space kept free "
            "%u%%\n",
            ti->pool_enabled ? "enabled" : "disabled", ti->interval_ms / 1000,
            rate, ti->fast_free_pct);
    fprintf(out, "fast tier: %llu extents of %s, %llu free\n",
            (unsigned long long)ti->fast_extents, es,
            (unsigned long long)ti->fast_free);
    if (ti->pass_running) {
        /* the bar of a tier run --wait (progress.c), without a rate */
        char line[200];
        admin_progress_line(line, sizeof(line), ti->pass_done, ti->pass_total,
                            0, 30);
        fprintf(out, "pass: %s\n", line);
    }
    admin_tbl_cell(&t, 0, "EXTENT");
    admin_tbl_cell(&t, 1, "OFFSET");
    admin_tbl_cell(&t, 2, "LEG");
    admin_tbl_cell(&t, 3, "DEVICE");
    admin_tbl_cell(&t, 4, "TIER");
    admin_tbl_cell(&t, 5, "READS");
    admin_tbl_cell(&t, 6, "WRITES");
    for (size_t i = 0; i < s->n; i++) {
        const struct vd_tier_ext *x = &s->ext[i];
        char off[32];
        admin_fmt_size(x->le * ti->extent_size, off, sizeof(off));
        admin_tbl_cell(&t, 0, "%llu", (unsigned long long)x->le);
        admin_tbl_cell(&t, 1, "%s", x->le ? off : "0");
        admin_tbl_cell(&t, 2, "%u", x->leg);
        admin_tbl_cell(&t, 3, "%s", dev_name(s, x->dev));
        admin_tbl_cell(&t, 4, "%s",
                       x->dev == UINT32_MAX ? "-" : tier_str(x->tier));
        admin_tbl_cell(&t, 5, "%u", x->reads);
        admin_tbl_cell(&t, 6, "%u", x->writes);
    }
    admin_tbl_print(&t, out, "");
    admin_tbl_free(&t);
}

static void print_json(FILE *out, const char *pool, const char *vol,
                       const struct tier_st *s)
{
    const struct vd_tier_info *ti = &s->ti;

    fputs("{\"pool\":", out);
    admin_jstr(out, pool);
    fputs(",\"volume\":", out);
    admin_jstr(out, vol);
    fprintf(out,
            ",\"tiering\":{\"volume_on\":%s,\"supported\":%s,"
            "\"pool_enabled\":%s,\"interval_ms\":%u,\"rate\":%llu,"
            "\"fast_free_pct\":%u,\"mover\":%s},\"extent_size\":%llu,"
            "\"fast_extents\":%llu,\"fast_free\":%llu",
            ti->vol_on ? "true" : "false", ti->supported ? "true" : "false",
            ti->pool_enabled ? "true" : "false", ti->interval_ms,
            (unsigned long long)ti->rate, ti->fast_free_pct,
            ti->mover ? "true" : "false", (unsigned long long)ti->extent_size,
            (unsigned long long)ti->fast_extents,
            (unsigned long long)ti->fast_free);
    if (ti->pass_running)
        fprintf(out,
                ",\"pass\":{\"running\":true,\"done_bytes\":%llu,"
                "\"total_bytes\":%llu}",
                (unsigned long long)ti->pass_done,
                (unsigned long long)ti->pass_total);
    else
        fputs(",\"pass\":null", out);
    fputs(",\"extents\":[", out);
    for (size_t i = 0; i < s->n; i++) {
        const struct vd_tier_ext *x = &s->ext[i];
        fprintf(out, "%s{\"le\":%llu,\"offset\":%llu,\"leg\":%u,\"device\":",
                i ? "," : "", (unsigned long long)x->le,
                (unsigned long long)(x->le * ti->extent_size), x->leg);
        if (x->dev == UINT32_MAX)
            fputs("null,\"tier\":null", out);
        else {
            admin_jstr(out, dev_name(s, x->dev));
            fprintf(out, ",\"tier\":\"%s\"", tier_str(x->tier));
        }
        fprintf(out, ",\"reads\":%u,\"writes\":%u,\"heat\":%llu}", x->reads,
                x->writes, (unsigned long long)x->reads + x->writes);
    }
    fputs("]}\n", out);
}

/* ---- the heat map ---------------------------------------------------------
 * One image: volume offset across; down, the history rows (oldest at the
 * top, one per decay) and the current heat; below it a strip per leg
 * whose colour says where each extent is (fast red, slow blue). */
static int write_png(const struct tier_st *s, const char *vol, const char *png,
                     FILE *err)
{
    const struct vd_tier_info *ti = &s->ti;
    uint32_t copies = ti->copies ? ti->copies : 1;
    uint64_t units = s->n / copies;
    double es_mib = (double)ti->extent_size / (1 << 20);
    char dir[] = "/tmp/vdlvm-tier.XXXXXX", heat[64], tier[64], gp[64];
    FILE *f;
    int r = -EIO, status = 0;
    pid_t pid;

    if (!units) {
        admin_msg(err, "tier status: --png: volume '%s' has no extents", vol);
        return VD_EXIT_FAIL;
    }
    if (!mkdtemp(dir)) {
        admin_msg(err,
                  "tier status: --png: cannot make a temporary directory: %s",
                  strerror(errno));
        return VD_EXIT_FAIL;
    }
    snprintf(heat, sizeof(heat), "%s/heat.dat", dir);
    snprintf(tier, sizeof(tier), "%s/tier.dat", dir);
    snprintf(gp, sizeof(gp), "%s/map.gp", dir);
    /* heat.dat: "x y value" per cell (history rows, then now) */
    if (!(f = fopen(heat, "w")))
        goto out;
    for (uint32_t row = 0; row <= ti->hist_rows; row++) {
        for (uint64_t e = 0; e < units; e++) {
            uint64_t v = 0;
            if (row < ti->hist_rows && e < ti->units)
                v = s->hist[(uint64_t)row * ti->units + e];
            else if (row == ti->hist_rows)
                v = (uint64_t)s->ext[e * copies].reads +
                    s->ext[e * copies].writes;
            fprintf(f, "%g %u %llu\n", (e + 0.5) * es_mib, row,
                    (unsigned long long)v);
        }
        fputc('\n', f);
    }
    if (fclose(f))
        goto out;
    if (!(f = fopen(tier, "w")))
        goto out;
    for (uint32_t leg = 0; leg < copies; leg++) {
        for (uint64_t e = 0; e < units; e++) {
            const struct vd_tier_ext *x = &s->ext[e * copies + leg];
            fprintf(f, "%g %u %d\n", (e + 0.5) * es_mib, leg,
                    x->dev == UINT32_MAX ? -1 : (int)x->tier);
        }
        fputc('\n', f);
    }
    if (fclose(f))
        goto out;
    if (!(f = fopen(gp, "w")))
        goto out;
    fprintf(f,
            "set terminal png size 1000,600\n"
            "set output '%s'\n"
            "set multiplot title 'vdlvm heat map: %s (I/Os per %gMiB extent; "
            "rows: one per %us decay, oldest on top, now at the bottom)'\n"
            "set lmargin at screen 0.1\nset rmargin at screen 0.85\n"
            "set tmargin at screen 0.9\nset bmargin at screen 0.3\n"
            "set xrange [0:%g]\nset yrange [%g:-0.5]\n"
            "set ylabel 'decays (now at the bottom)'\nset format x ''\n"
            "set ytics 1\n"
            "set palette defined (0 'white', 1 'yellow', 2 'orange', 3 'red', "
            "4 'black')\n"
            "set cbrange [0:*]\nset cblabel 'heat'\n"
            "set style fill solid noborder\n"
            "plot '%s' using 1:2:(%g):(0.5):3 with boxxyerror fc palette "
            "notitle\n"
            "set tmargin at screen 0.25\nset bmargin at screen 0.12\n"
            "set yrange [%g:-0.5]\nset ylabel 'leg'\nset format x '%%g'\n"
            "set xlabel 'volume offset (MiB); strip: red fast, blue slow, "
            "grey unmapped'\n"
            "plot '%s' using 1:2:(%g):(0.5):($3 > 0 ? 0xdd0000 : $3 == 0 ? "
            "0x2040c0 : 0xa0a0a0) with boxxyerror fc rgb variable notitle\n"
            "unset multiplot\n",
            png, vol, es_mib, ti->interval_ms / 1000, (double)units * es_mib,
            ti->hist_rows + 0.5, heat, es_mib / 2, copies - 0.5, tier,
            es_mib / 2);
    if (fclose(f))
        goto out;
    char *argv[] = { "gnuplot", gp, NULL };
    if ((r = posix_spawnp(&pid, "gnuplot", NULL, NULL, argv, environ))) {
        admin_msg(err,
                  "tier status: --png: cannot run gnuplot: %s; install "
                  "gnuplot-nox",
                  strerror(r));
        r = -r;
        goto out_quiet;
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        admin_msg(err, "tier status: --png: gnuplot failed writing '%s'", png);
        r = -EIO;
        goto out_quiet;
    }
    r = 0;
out:
    if (r < 0)
        admin_msg(err, "tier status: --png: temporary files in %s: %s", dir,
                  strerror(errno));
out_quiet:
    unlink(heat);
    unlink(tier);
    unlink(gp);
    rmdir(dir);
    return r < 0 ? VD_EXIT_FAIL : VD_EXIT_OK;
}

int admin_tier_check(struct cmd_args *a, const char *cmdname, FILE *err)
{
    if (a->png && a->png[0] != '/') {
        admin_msg(err,
                  "%s: --png '%s' is not an absolute path; the process holding "
                  "the pool (tgtd) writes it, give the full path",
                  cmdname, a->png);
        return VD_EXIT_USAGE;
    }
    if ((a->given & O_WAIT) && (a->given & O_DRY_RUN)) {
        admin_msg(err, "%s: --wait and --dry-run exclude each other", cmdname);
        return VD_EXIT_USAGE;
    }
    return 0;
}

int admin_cmd_tier_status(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err)
{
    struct tier_st s;
    int r = st_get(pool, a->vol, &s), rc = VD_EXIT_OK;

    if (r < 0) {
        st_free(&s);
        return admin_vol_fail(err, r, a->pool, a->vol, "tier status");
    }
    if (a->given & O_JSON)
        print_json(out, a->pool, a->vol, &s);
    else
        print_text(out, a->pool, a->vol, &s);
    if (a->png) {
        fflush(out);
        rc = write_png(&s, a->vol, a->png, err);
        if (rc == VD_EXIT_OK && !(a->given & O_JSON))
            fprintf(out, "heat map written to %s\n", a->png);
    }
    st_free(&s);
    return rc;
}

/* tier run --wait: the progress of the pass on err (progress.c: a bar on
 * a terminal, a line per 10 % otherwise), drawn from the pass's
 * callback on this thread; nothing when the pass moves nothing, or when
 * err is not a file (the command runs inside tgtd: the client polls the
 * pass's progress in `tier status --json` and draws it). */
struct tier_pg {
    FILE *err;
    char label[160];
    struct admin_progress pg;
    int started;
};

static void tier_pg_cb(void *arg, uint64_t done, uint64_t total)
{
    struct tier_pg *tp = arg;

    if (!total || !tp->err)
        return;
    if (!tp->started) {
        admin_progress_start(&tp->pg, tp->err, tp->label, total, -1);
        tp->started = 1;
    }
    admin_progress_update(&tp->pg, done, total);
}

int admin_cmd_tier_run(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vd_tier_move *mv = NULL;
    size_t n = 0, moved = 0, up = 0;
    struct tier_st s;
    int r;

    if (!(a->given & O_DRY_RUN)) {
        int wait = (a->given & O_WAIT) != 0;
        /* inside tgtd (err a memory stream) the client draws the bar
         * from `tier status --json` (progress.c) */
        struct tier_pg tp = { .err = err && fileno(err) >= 0 ? err : NULL };
        if (wait) {
            snprintf(tp.label, sizeof(tp.label), "tier run %s/%s", a->pool,
                     a->vol);
            r = vd_tier_run_wait(pool, a->vol, tier_pg_cb, &tp, &moved);
            if (tp.started)
                admin_progress_end(&tp.pg, r < 0 ? "failed" : "done");
        } else {
            r = vd_tier_run(pool, a->vol, 0, &moved);
        }
        if (r < 0)
            return admin_vol_fail(err, r, a->pool, a->vol, "tier run");
        if (wait)
            fprintf(out, "volume '%s/%s': tiering pass moved %zu extents\n",
                    a->pool, a->vol, moved);
        else
            fprintf(out,
                    "volume '%s/%s': tiering pass started: %zu extents to "
                    "move; see 'vdlvm status %s'\n",
                    a->pool, a->vol, moved, a->pool);
        return VD_EXIT_OK;
    }
    r = vd_tier_plan_vol(pool, a->vol, &mv, &n);
    if (r == 0)
        r = st_get(pool, a->vol, &s);
    else
        memset(&s, 0, sizeof(s));
    if (r < 0) {
        free(mv);
        st_free(&s);
        return admin_vol_fail(err, r, a->pool, a->vol, "tier run");
    }
    for (size_t i = 0; i < n; i++) {
        char off[32];
        admin_fmt_size(mv[i].le * s.ti.extent_size, off, sizeof(off));
        fprintf(
            out, "%s extent %llu (offset %s) leg %u: %s -> %s (heat %llu)\n",
            mv[i].promote ? "promote" : "demote ", (unsigned long long)mv[i].le,
            mv[i].le ? off : "0", mv[i].leg, dev_name(&s, mv[i].from),
            dev_name(&s, mv[i].to), (unsigned long long)mv[i].heat);
        up += mv[i].promote != 0;
    }
    fprintf(out,
            "volume '%s/%s': plan: %zu promotions, %zu demotions (dry run: "
            "nothing moved)\n",
            a->pool, a->vol, up, n - up);
    free(mv);
    st_free(&s);
    return VD_EXIT_OK;
}
