/* vdlvm admin: `vol set` (QoS limits, issue 17) and the QoS part of
 * `status`.  Runs on the thread of the vd_admin_exec call it serves (the
 * vdlvm process, or a control-socket job inside tgtd); no shared state of
 * its own.  The limits live in the pool (pool/qos.c); inside tgtd the module
 * picks them up after the command returns (bs_vdlvm.c, QoS).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin_int.h"

static const struct {
    const char *opt;
    unsigned bit;
    int kind; /* enum vd_qos_kind, or -1 for --burst */
} g_qos_opts[] = {
    { "--iops-limit", O_IOPS_LIMIT, VD_QOS_IOPS },
    { "--read-iops-limit", O_RIOPS_LIMIT, VD_QOS_RIOPS },
    { "--write-iops-limit", O_WIOPS_LIMIT, VD_QOS_WIOPS },
    { "--bps-limit", O_BPS_LIMIT, VD_QOS_BPS },
    { "--read-bps-limit", O_RBPS_LIMIT, VD_QOS_RBPS },
    { "--write-bps-limit", O_WBPS_LIMIT, VD_QOS_WBPS },
    { "--burst", O_BURST, -1 },
};
#define NQOS_OPTS (sizeof(g_qos_opts) / sizeof(g_qos_opts[0]))

/* "N": a whole number 0..max, digits only. */
static int parse_count(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        if (v > (UINT64_MAX - 9) / 10)
            return -ERANGE;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

/* "S[.fff]" seconds, at most millisecond precision: milliseconds. */
static int parse_seconds_ms(const char *s, uint64_t *ms)
{
    uint64_t whole = 0, frac = 0;
    const char *dot = strchr(s, '.');
    char ip[24];
    size_t il = dot ? (size_t)(dot - s) : strlen(s);
    size_t fl = dot ? strlen(dot + 1) : 0;

    if (il == 0 || il >= sizeof(ip) || (dot && (fl == 0 || fl > 3)))
        return -EINVAL;
    memcpy(ip, s, il);
    ip[il] = 0;
    if (parse_count(ip, VD_QOS_BURST_MS_MAX / 1000, &whole) < 0)
        return -EINVAL;
    if (dot) {
        if (parse_count(dot + 1, 999, &frac) < 0)
            return -EINVAL;
        for (size_t i = fl; i < 3; i++)
            frac *= 10;
    }
    *ms = whole * 1000 + frac;
    return 0;
}

int admin_qos_opt(const char *cmdname, const char *name, const char *val,
                  struct cmd_args *a, FILE *err)
{
    char m[384];
    uint64_t v = 0;
    size_t i;

    for (i = 0; i < NQOS_OPTS; i++)
        if (!strcmp(name, g_qos_opts[i].opt))
            break;
    if (i == NQOS_OPTS) { /* the table in cmd.c and ours disagree */
        admin_msg(err, "%s: unknown option '%s'", cmdname, name);
        return VD_EXIT_USAGE;
    }
    if (g_qos_opts[i].kind < 0) {
        if (parse_seconds_ms(val, &v) < 0) {
            admin_msg(err,
                      "%s: --burst '%s' is not a number of seconds; use e.g. "
                      "1, 0.5 or 10 (at most %u, millisecond precision; 0: "
                      "the default of 1 second)",
                      cmdname, val, VD_QOS_BURST_MS_MAX / 1000);
            return VD_EXIT_USAGE;
        }
        a->qos.burst_ms = (uint32_t)v;
        a->qos_mask |= VD_QOS_MASK_BURST;
        return 0;
    }
    int k = g_qos_opts[i].kind;
    if (k <= VD_QOS_WIOPS) {
        int r = parse_count(val, VD_QOS_IOPS_MAX, &v);
        if (r < 0) {
            admin_msg(err,
                      "%s: %s '%s' is not a number of commands per second; "
                      "give a whole number from 0 (no limit) to %llu",
                      cmdname, name, val, (unsigned long long)VD_QOS_IOPS_MAX);
            return VD_EXIT_USAGE;
        }
    } else {
        /* "50MiB" or "50MiB/s" */
        char buf[64];
        size_t n = strlen(val);
        if (n >= 2 && n < sizeof(buf) && !strcmp(val + n - 2, "/s")) {
            memcpy(buf, val, n - 2);
            buf[n - 2] = 0;
        } else {
            snprintf(buf, sizeof(buf), "%s", val);
        }
        if (n >= sizeof(buf) ||
            vd_size_parse_max(buf, VD_QOS_BPS_MAX, &v, m, sizeof(m)) < 0) {
            admin_msg(err,
                      "%s: %s '%s' is not a number of bytes per second; %s "
                      "(0: no limit, at most 1PiB)",
                      cmdname, name, val, VD_SIZE_RULE);
            return VD_EXIT_USAGE;
        }
    }
    a->qos.limit[k] = v;
    a->qos_mask |= 1u << k;
    return 0;
}

int admin_qos_check(struct cmd_args *a, const char *cmdname, FILE *err)
{
    if (!a->qos_mask && !(a->given & O_TIERING)) {
        admin_msg(err,
                  "%s: nothing to set; give --iops-limit N, --bps-limit SIZE, "
                  "--read-/--write-iops-limit, --read-/--write-bps-limit, "
                  "--burst SECONDS or --tiering on|off (see 'vdlvm vol set "
                  "--help')",
                  cmdname);
        return VD_EXIT_USAGE;
    }
    return 0;
}

static void fmt_limit(int k, uint64_t v, char *buf, size_t len)
{
    if (!v)
        snprintf(buf, len, "none");
    else if (k <= VD_QOS_WIOPS)
        snprintf(buf, len, "%" PRIu64, v);
    else
        admin_fmt_rate(v, buf, len);
}

static void print_limits(FILE *out, const char *indent,
                         const struct vd_qos_limits *l)
{
    char b[6][48];

    for (int k = 0; k < VD_QOS_NLIMITS; k++)
        fmt_limit(k, l->limit[k], b[k], sizeof(b[k]));
    fprintf(out,
            "%sqos       iops %s (read %s, write %s), bandwidth %s (read %s, "
            "write %s), burst %u.%03us\n",
            indent, b[VD_QOS_IOPS], b[VD_QOS_RIOPS], b[VD_QOS_WIOPS],
            b[VD_QOS_BPS], b[VD_QOS_RBPS], b[VD_QOS_WBPS],
            (l->burst_ms ? l->burst_ms : VD_QOS_BURST_MS_DEFAULT) / 1000,
            (l->burst_ms ? l->burst_ms : VD_QOS_BURST_MS_DEFAULT) % 1000);
}

int admin_cmd_vol_set(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    struct vd_qos_limits l;
    int r = 0;

    /* tiering first: when it fails, nothing else is set */
    if ((a->given & O_TIERING) &&
        (r = vd_vol_set_tiering(pool, a->vol, a->tiering)) < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "set");
    if (a->qos_mask &&
        (r = vd_vol_qos_set(pool, a->vol, &a->qos, a->qos_mask)) < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "set");
    if (a->given & O_TIERING)
        fprintf(out, "volume '%s/%s': tiering %s\n", a->pool, a->vol,
                a->tiering ? "on" : "off");
    if (!a->qos_mask)
        return VD_EXIT_OK;
    if (vd_vol_qos_get_by_name(pool, a->vol, &l) == 0) {
        fprintf(out, "volume '%s/%s'\n", a->pool, a->vol);
        print_limits(out, "  ", &l);
    }
    return VD_EXIT_OK;
}

static int64_t now_ms(void) /* as vd_now_ms (CLOCK_MONOTONIC) */
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Rates are those tgtd published within the last 3 s (none when the pool
 * is opened by vdlvm itself, or the volume is not exported). */
static int rates_fresh(vd_pool *pool, const char *vol, struct vd_qos_rates *r)
{
    memset(r, 0, sizeof(*r));
    if (vd_vol_qos_rates(pool, vol, r) < 0 || !r->at_ms)
        return 0;
    return now_ms() - r->at_ms <= 3000;
}

void admin_qos_status_text(FILE *out, vd_pool *pool, const char *vol)
{
    struct vd_qos_limits l;
    struct vd_qos_rates r;
    char bw[32], rb[32], wb[32];

    if (vd_vol_qos_get_by_name(pool, vol, &l) < 0)
        return;
    print_limits(out, "  ", &l);
    if (!rates_fresh(pool, vol, &r))
        return;
    admin_fmt_rate(r.rate[VD_QOS_BPS], bw, sizeof(bw));
    admin_fmt_rate(r.rate[VD_QOS_RBPS], rb, sizeof(rb));
    admin_fmt_rate(r.rate[VD_QOS_WBPS], wb, sizeof(wb));
    /* admin_fmt_rate says "unlimited" for 0 */
    fprintf(out,
            "  rate      %" PRIu64 " iops (read %" PRIu64 ", write %" PRIu64
            "), %s (read %s, write %s), %u waiting\n",
            r.rate[VD_QOS_IOPS], r.rate[VD_QOS_RIOPS], r.rate[VD_QOS_WIOPS],
            r.rate[VD_QOS_BPS] ? bw : "0B/s", r.rate[VD_QOS_RBPS] ? rb : "0B/s",
            r.rate[VD_QOS_WBPS] ? wb : "0B/s", r.queued);
}

void admin_qos_json_vol(FILE *out, vd_pool *pool, const char *vol,
                        const char *obj, size_t len)
{
    struct vd_qos_limits l;
    struct vd_qos_rates r;
    static const char *const keys[VD_QOS_NLIMITS] = {
        "iops", "read_iops", "write_iops", "bps", "read_bps", "write_bps"
    };

    /* obj is one JSON object: add "qos" before its closing brace */
    while (len && obj[len - 1] != '}')
        len--;
    if (!len || vd_vol_qos_get_by_name(pool, vol, &l) < 0) {
        fwrite(obj, 1, len, out);
        return;
    }
    fwrite(obj, 1, len - 1, out);
    fputs(",\"qos\":{\"limits\":{", out);
    for (int k = 0; k < VD_QOS_NLIMITS; k++)
        fprintf(out, "%s\"%s\":%" PRIu64, k ? "," : "", keys[k], l.limit[k]);
    fprintf(out, ",\"burst_ms\":%u}",
            l.burst_ms ? l.burst_ms : VD_QOS_BURST_MS_DEFAULT);
    if (rates_fresh(pool, vol, &r)) {
        fputs(",\"rates\":{", out);
        for (int k = 0; k < VD_QOS_NLIMITS; k++)
            fprintf(out, "%s\"%s\":%" PRIu64, k ? "," : "", keys[k], r.rate[k]);
        fprintf(out, ",\"queued\":%u}", r.queued);
    } else {
        fputs(",\"rates\":null", out);
    }
    fputs("}}", out);
}
