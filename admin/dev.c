/* vdlvm admin: device commands (`vdlvm dev evacuate`), `vdlvm pool
 * rebalance`, and the extent
 * mover's part of `vdlvm status` (text and JSON from one structure,
 * vd_pool_move_status).  Runs on the thread of vd_admin_exec; the moves
 * themselves run on the pool's background thread (pool/move.c), so a
 * command only starts them and, with --wait, polls their status with no
 * lock held between polls.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin_int.h"

#define MAX_TO 32

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --wait for the mover's job (evacuation, or rebalance when rebal): a
 * progress bar on err when it is a terminal, else a line per 10 %
 * (progress.c); nothing when err is not a file (the command runs inside
 * tgtd: the vdlvm client draws the bar from `status POOL --json`,
 * progress.c).  Give up after 10 minutes without progress.  *s: the last
 * status. */
static int wait_job(vd_pool *pool, struct cmd_args *a, FILE *err, int rebal,
                    struct vd_move_status *s)
{
    struct admin_progress pg;
    char label[200];
    int started = 0;
    uint64_t last_done = UINT64_MAX;
    int64_t last_progress = now_ms();

    if (rebal)
        snprintf(label, sizeof(label), "rebalance %s", a->pool);
    else
        snprintf(label, sizeof(label), "evacuate %s/%s", a->pool, a->vol);
    for (;;) {
        vd_pool_move_status(pool, s);
        int running = rebal ? s->rebalancing : s->evacuating;
        uint64_t done = rebal ? s->reb_done_bytes
                              : s->evac_total_bytes - s->evac_left_bytes;
        uint64_t total = rebal ? s->reb_total_bytes : s->evac_total_bytes;
        if (!running && !s->active)
            break;
        if (running && total && err && fileno(err) >= 0) {
            if (!started++)
                admin_progress_start(&pg, err, label, total, -1);
            admin_progress_update(&pg, done, total);
        }
        if (done != last_done) {
            last_done = done;
            last_progress = now_ms();
        } else if (now_ms() - last_progress > 600000) {
            if (started)
                admin_progress_end(&pg, "stalled");
            admin_msg(err,
                      "pool '%s': the %s made no progress for 10 minutes; "
                      "see 'vdlvm status %s'",
                      a->pool, rebal ? "rebalance" : "evacuation", a->pool);
            return VD_EXIT_FAIL;
        }
        vd_move_wait(pool, 200); /* runs the copier if no thread does */
    }
    if (started) {
        admin_progress_update(&pg, pg.total, pg.total);
        admin_progress_end(&pg, "done");
    }
    return VD_EXIT_OK;
}

int admin_cmd_dev_evacuate(vd_pool *pool, struct cmd_args *a, FILE *out,
                           FILE *err)
{
    const char *to[MAX_TO];
    char list[1024] = "";
    size_t nto = 0;
    struct vd_move_status s;
    int r;

    if (a->to) {
        snprintf(list, sizeof(list), "%s", a->to);
        for (char *sv, *tok = strtok_r(list, ",", &sv); tok;
             tok = strtok_r(NULL, ",", &sv)) {
            if (nto == MAX_TO) {
                admin_msg(err, "dev evacuate: --to names more than %d devices",
                          MAX_TO);
                return VD_EXIT_USAGE;
            }
            to[nto++] = tok;
        }
    }
    vd_pool_move_status(pool, &s);
    uint64_t aborted0 = s.stats.moves_aborted;
    r = vd_dev_evacuate(pool, a->vol, to, nto, a->rate);
    if (r < 0)
        return admin_lib_fail(err, r, "device '%s/%s': evacuate failed",
                              a->pool, a->vol);
    if (!(a->given & O_WAIT)) {
        fprintf(out,
                "device '%s/%s': evacuation started; it runs in the "
                "background of the process holding the pool (and resumes "
                "after a restart); follow it with 'vdlvm status %s'\n",
                a->pool, a->vol, a->pool);
        return VD_EXIT_OK;
    }
    r = wait_job(pool, a, err, 0, &s);
    if (r != VD_EXIT_OK)
        return r;
    uint64_t n = vd_pool_dev_extents(pool, a->vol);
    if (s.stats.moves_aborted != aborted0 || n) {
        admin_msg(err,
                  "device '%s/%s': evacuation stopped with %llu extents "
                  "left: %s; see 'vdlvm status %s'",
                  a->pool, a->vol, (unsigned long long)n,
                  s.stats.last_error[0] ? s.stats.last_error
                                        : "a move was abandoned",
                  a->pool);
        return VD_EXIT_FAIL;
    }
    fprintf(out,
            "device '%s/%s': evacuated, it holds no extent (%llu moves, "
            "%llu bytes copied); remove it from the pool's definition and "
            "run 'vdlvm pool apply %s'\n",
            a->pool, a->vol, (unsigned long long)s.stats.moves_done,
            (unsigned long long)s.stats.bytes_copied, a->pool);
    return VD_EXIT_OK;
}

int admin_cmd_pool_rebalance(vd_pool *pool, struct cmd_args *a, FILE *out,
                             FILE *err)
{
    struct vd_move_status s;
    uint64_t moves = 0;
    int r;

    vd_pool_move_status(pool, &s);
    uint64_t aborted0 = s.stats.moves_aborted, done0 = s.stats.moves_done;
    r = vd_pool_rebalance(pool, a->rate, &moves);
    if (r < 0)
        return admin_lib_fail(err, r, "pool '%s': rebalance failed", a->pool);
    vd_pool_move_status(pool, &s);
    if (!s.rebalancing && !s.active) {
        fprintf(out,
                "pool '%s': balanced: every device's use is within one "
                "extent of the mean\n",
                a->pool);
        return VD_EXIT_OK;
    }
    if (!(a->given & O_WAIT)) {
        fprintf(out,
                "pool '%s': rebalance started (about %llu extents to move); "
                "it runs in the background of the process holding the pool "
                "(and resumes after a restart); follow it with 'vdlvm "
                "status %s'\n",
                a->pool, (unsigned long long)moves, a->pool);
        return VD_EXIT_OK;
    }
    if ((r = wait_job(pool, a, err, 1, &s)) != VD_EXIT_OK)
        return r;
    if (s.stats.moves_aborted != aborted0) {
        admin_msg(
            err, "pool '%s': rebalance stopped: %s; see 'vdlvm status %s'",
            a->pool,
            s.stats.last_error[0] ? s.stats.last_error : "a move was abandoned",
            a->pool);
        return VD_EXIT_FAIL;
    }
    fprintf(out,
            "pool '%s': rebalanced (%llu extents moved, %llu bytes copied in "
            "all)\n",
            a->pool, (unsigned long long)(s.stats.moves_done - done0),
            (unsigned long long)s.stats.bytes_copied);
    return VD_EXIT_OK;
}

/* ---- status ------------------------------------------------------------- */
void admin_move_status_json(FILE *out, vd_pool *pool)
{
    struct vd_move_status s;

    vd_pool_move_status(pool, &s);
    fprintf(out, "\"move\":{\"active\":%s", s.active ? "true" : "false");
    if (s.active) {
        fputs(",\"volume\":", out);
        admin_jstr(out, s.vol);
        fprintf(out, ",\"extent\":%llu,\"leg\":%u,\"from\":",
                (unsigned long long)s.le, s.leg);
        admin_jstr(out, s.src);
        fputs(",\"to\":", out);
        admin_jstr(out, s.dst);
        fprintf(out, ",\"done_bytes\":%llu,\"total_bytes\":%llu",
                (unsigned long long)s.done, (unsigned long long)s.total);
    }
    fputs(",\"evacuating\":", out);
    if (s.evacuating) {
        admin_jstr(out, s.evac_dev);
        fprintf(out, ",\"evac_done_bytes\":%llu,\"evac_total_bytes\":%llu",
                (unsigned long long)(s.evac_total_bytes - s.evac_left_bytes),
                (unsigned long long)s.evac_total_bytes);
    } else {
        fputs("null", out);
    }
    fprintf(out, ",\"rebalancing\":%s", s.rebalancing ? "true" : "false");
    if (s.rebalancing)
        fprintf(out, ",\"reb_done_bytes\":%llu,\"reb_total_bytes\":%llu",
                (unsigned long long)s.reb_done_bytes,
                (unsigned long long)s.reb_total_bytes);
    fprintf(out,
            ",\"rate_bps\":%llu,\"rate_limit\":%llu,\"eta_s\":%llu,"
            "\"moves_done\":%llu,\"moves_abandoned\":%llu,"
            "\"bytes_copied\":%llu,\"bytes_compared\":%llu,\"error\":",
            (unsigned long long)s.rate_bps, (unsigned long long)s.rate_limit,
            (unsigned long long)s.eta_s, (unsigned long long)s.stats.moves_done,
            (unsigned long long)s.stats.moves_aborted,
            (unsigned long long)s.stats.bytes_copied,
            (unsigned long long)s.stats.bytes_compared);
    admin_jstr(out, s.stats.last_error);
    fputs(",\"drained\":", out);
    admin_jstr(out, s.drained);
    fputs("},", out);
}

void admin_move_status_text(FILE *out, vd_pool *pool)
{
    struct vd_move_status s;
    char d[32], t[32], r[40], line[200];

    vd_pool_move_status(pool, &s);
    /* the bar of `dev evacuate --wait` / `pool rebalance --wait` */
    if (s.evacuating) {
        admin_progress_line(line, sizeof(line),
                            s.evac_total_bytes - s.evac_left_bytes,
                            s.evac_total_bytes, s.rate_bps, 30);
        fprintf(out, "  evacuating '%s': %s\n", s.evac_dev, line);
    }
    if (s.rebalancing) {
        admin_progress_line(line, sizeof(line), s.reb_done_bytes,
                            s.reb_total_bytes, s.rate_bps, 30);
        fprintf(out, "  rebalancing: %s\n", line);
    }
    if (s.active) {
        admin_fmt_size(s.done, d, sizeof(d));
        admin_fmt_size(s.total, t, sizeof(t));
        admin_fmt_rate(s.rate_limit, r, sizeof(r));
        fprintf(out,
                "  moving extent %llu leg %u of volume '%s': '%s' -> '%s', "
                "%s of %s, rate limit %s\n",
                (unsigned long long)s.le, s.leg, s.vol, s.src, s.dst, d, t, r);
    }
    if (s.stats.last_error[0])
        fprintf(out, "  last move abandoned: %s\n", s.stats.last_error);
    if (s.drained[0] && !s.evacuating)
        fprintf(out,
                "  drained (no new extents; remove from the definition and "
                "run 'vdlvm pool apply'): %s\n",
                s.drained);
}
