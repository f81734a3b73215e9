/* vdlvm admin: `key add`, `key remove`, `key rotate` (the key slots of an
 * encrypted pool) and `vol encrypt` with its part of `vdlvm status`
 * (pool/crypt.c does the work; docs/encryption.md).  Runs on the thread of
 * the vd_admin_exec call it serves, in vdlvm or inside tgtd; no shared
 * state here.  Key file contents never reach a message. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "admin_int.h"

int admin_opt_key_file(const char *cmdname, const char *name, const char *val,
                       struct cmd_args *a, FILE *err)
{
    if (val[0] != '/') {
        admin_msg(err,
                  "%s: %s '%s' is not an absolute path; the command may run "
                  "inside the tgtd holding the pool, give the full path",
                  cmdname, name, val);
        return VD_EXIT_USAGE;
    }
    a->key_file = val;
    return 0;
}

int admin_cmd_key_add(vd_pool *pool, struct cmd_args *a, FILE *out, FILE *err)
{
    int r = vd_pool_key_add(pool, a->key_file);

    if (r < 0)
        return admin_lib_fail(err, r, "pool '%s': key add", a->pool);
    fprintf(out,
            "pool '%s': key file %s added in key slot %d (%d key slots in "
            "use)\n",
            a->pool, a->key_file, r, vd_pool_key_slots(pool));
    return VD_EXIT_OK;
}

int admin_cmd_key_remove(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    int r = vd_pool_key_remove(pool, a->key_file);

    if (r < 0)
        return admin_lib_fail(err, r, "pool '%s': key remove", a->pool);
    fprintf(out,
            "pool '%s': key slot %d (key file %s) removed (%d key slots in "
            "use)\n",
            a->pool, r, a->key_file, vd_pool_key_slots(pool));
    return VD_EXIT_OK;
}

int admin_cmd_key_rotate(vd_pool *pool, struct cmd_args *a, FILE *out,
                         FILE *err)
{
    int r = vd_pool_key_rotate(pool, a->key_file);

    if (r < 0)
        return admin_lib_fail(err, r, "pool '%s': key rotate", a->pool);
    fprintf(out,
            "pool '%s': key rotated: key file %s in key slot %d, the previous "
            "key file no longer opens the pool (%d key slots in use); point "
            "encryption.key_file at %s now\n",
            a->pool, a->key_file, r, vd_pool_key_slots(pool), a->key_file);
    return VD_EXIT_OK;
}

/* ---- vol encrypt ---------------------------------------------------------- */
static void crypt_line(FILE *out, const struct vd_crypt_status *s)
{
    uint64_t done = s->total - s->left;

    fprintf(out,
            "encrypting volume '%s': %llu of %llu extents moved (%u%%), "
            "%llu freed extents zeroed\n",
            s->vol, (unsigned long long)done, (unsigned long long)s->total,
            s->total ? (unsigned)(done * 100 / s->total) : 100,
            (unsigned long long)s->scrubbed);
}

int admin_cmd_vol_encrypt(vd_pool *pool, struct cmd_args *a, FILE *out,
                          FILE *err)
{
    struct vd_crypt_status s;
    struct admin_progress pg;
    char label[200];
    int r = vd_vol_encrypt(pool, a->vol, a->rate);

    if (r == -EALREADY)
        return VD_EXIT_FAIL; /* the library said so */
    if (r < 0)
        return admin_vol_fail(err, r, a->pool, a->vol, "encrypt");
    if (!(a->given & O_WAIT)) {
        fprintf(out,
                "volume '%s/%s': encryption started: its extents move to "
                "devices with encrypt: true in the background of the process "
                "holding the pool (and resume after a restart); follow it "
                "with 'vdlvm status %s'\n",
                a->pool, a->vol, a->pool);
        return VD_EXIT_OK;
    }
    snprintf(label, sizeof(label), "encrypt %s/%s", a->pool, a->vol);
    vd_vol_encrypt_status(pool, &s);
    admin_progress_start(&pg, err, label, s.total, -1);
    while (vd_vol_encrypt_step(pool)) {
        vd_vol_encrypt_status(pool, &s);
        admin_progress_update(&pg, s.total - s.left, s.total);
    }
    vd_vol_encrypt_status(pool, &s);
    if (s.error[0]) {
        admin_progress_end(&pg, "stopped");
        admin_msg(err, "volume '%s/%s': encryption stopped: %s", a->pool,
                  a->vol, s.error);
        return VD_EXIT_FAIL;
    }
    admin_progress_update(&pg, s.total, s.total);
    admin_progress_end(&pg, "done");
    fprintf(out,
            "volume '%s/%s': encrypted (%llu extents moved, %llu freed "
            "extents zeroed)\n",
            a->pool, a->vol, (unsigned long long)s.moved,
            (unsigned long long)s.scrubbed);
    return VD_EXIT_OK;
}

void admin_crypt_status_text(FILE *out, vd_pool *pool)
{
    struct vd_crypt_status s;

    vd_vol_encrypt_status(pool, &s);
    if (s.active) {
        fputs("  ", out);
        crypt_line(out, &s);
    } else if (s.error[0]) {
        fprintf(out, "  vol encrypt stopped: %s\n", s.error);
    }
}

void admin_crypt_status_json(FILE *out, vd_pool *pool)
{
    struct vd_crypt_status s;

    vd_vol_encrypt_status(pool, &s);
    fputs("\"encrypting\":", out);
    if (s.active) {
        fputs("{\"volume\":", out);
        admin_jstr(out, s.vol);
        fprintf(out,
                ",\"extents_left\":%llu,\"extents_total\":%llu,"
                "\"extents_zeroed\":%llu}",
                (unsigned long long)s.left, (unsigned long long)s.total,
                (unsigned long long)s.scrubbed);
    } else {
        fputs("null", out);
    }
    fputs(",\"encrypt_error\":", out);
    admin_jstr(out, s.error);
    fputc(',', out);
}
