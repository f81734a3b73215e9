/* vdlvm admin: device commands (`vdlvm dev evacuate`) and the extent
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

static void progress_line(FILE *out, const struct vd_move_status *s)
{
    char d[32], t[32], r[40];
    uint64_t done = s->evac_total_bytes - s->evac_left_bytes;

    admin_fmt_size(done, d, sizeof(d));
    admin_fmt_size(s->evac_total_bytes, t, sizeof(t));
    admin_fmt_rate(s->rate_bps, r, sizeof(r));
    fprintf(out, "evacuating '%s': %s of %s moved (%u%%), %s", s->evac_dev, d,
            t,
            s->evac_total_bytes ? (unsigned)(done * 100 / s->evac_total_bytes)
                                : 100,
            r);
    if (s->rate_bps)
        fprintf(out, ", %llu s left", (unsigned long long)s->eta_s);
    fputc('\n', out);
    fflush(out);
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
    /* --wait: a line per extent moved (at most one a second); give up
     * after 10 minutes without progress */
    uint64_t last_done = UINT64_MAX;
    int64_t last_progress = now_ms(), last_line = 0;
    for (;;) {
        vd_pool_move_status(pool, &s);
        uint64_t left = s.evacuating ? s.evac_left_bytes : 0;
        if (!s.evacuating && !s.active)
            break;
        if (left != last_done) {
            last_done = left;
            last_progress = now_ms();
            if (now_ms() - last_line >= 1000 && s.evacuating) {
                progress_line(out, &s);
                last_line = now_ms();
            }
        } else if (now_ms() - last_progress > 600000) {
            admin_msg(err,
                      "device '%s/%s': the evacuation made no progress for "
                      "10 minutes; see 'vdlvm status %s'",
                      a->pool, a->vol, a->pool);
            return VD_EXIT_FAIL;
        }
        vd_move_wait(pool, 200); /* runs the copier if no thread does */
    }
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
    fputs("},", out);
}

void admin_move_status_text(FILE *out, vd_pool *pool)
{
    struct vd_move_status s;
    char d[32], t[32], r[40];

    vd_pool_move_status(pool, &s);
    if (s.evacuating) {
        fputs("  ", out);
        progress_line(out, &s);
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
}
