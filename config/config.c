/* vdlvm: pool definition from YAML.
 *
 * The file is loaded with libyaml's document API and then walked against a
 * fixed schema.  The first problem found, in document order, is reported as
 * one line "FILE:LINE:COL: what[; fix]" and nothing else is returned.
 * No global state: every call owns its parser, document and result.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "vdconfig.h"

#define VD_DEFAULT_TIMEOUT_MS 30000u
#define VD_ISCSI_PORT_DEFAULT 3260u
#define VD_ISCSI_LUN_MAX      16383u     /* flat space addressing */
#define CONF_FILE_MAX         (1u << 20) /* a pool definition is a few KiB */
#define CONF_DEVS_MAX         1024u

#define NAME_RULE \
    "use 1-63 characters of A-Z a-z 0-9 _ . - not starting with '.' or '-'"
#define SIZE_RULE VD_SIZE_RULE
#define TOP_KEYS  "pool, extent_size, devices"
/* every key the top level takes (TOP_KEYS: the usual ones, for messages
 * about the shape of the file) */
#define TOP_KEYS_ALL TOP_KEYS ", chunk_size, read_policy, encryption, tiering"
#define DEV_KEYS                                                         \
    "name, path, size, node, iscsi, chap, timeout, rbd, encrypt, tier, " \
    "direct"
#define RBD_KEYS   "pool, image, conf, id"
#define CHAP_KEYS  "user, secret_file"
#define CRYPT_KEYS "key_file, sector_size"

static char *resolve_path(const char *path);

/* ---- sizes, durations, names ---------------------------------------- */

static const struct {
    const char *suffix;
    unsigned shift;
} size_units[] = {
    { "", 0 },     { "B", 0 },  { "K", 10 },   { "KiB", 10 }, { "M", 20 },
    { "MiB", 20 }, { "G", 30 }, { "GiB", 30 }, { "T", 40 },   { "TiB", 40 },
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A fraction ("1.5GiB") is accepted when it is a whole number of bytes, so
 * that every string vd_size_format() prints parses back to the same value. */
static int size_parse(const char *s, uint64_t *out, bool *inexact)
{
    const char *p = s, *ip, *fp = NULL;
    size_t ilen, flen = 0, i;
    unsigned shift = 0;
    bool found = false;
    uint64_t v = 0;

    if (!s)
        return -EINVAL;
    ip = p;
    while (is_digit(*p))
        p++;
    ilen = (size_t)(p - ip);
    if (ilen == 0)
        return -EINVAL;
    if (*p == '.') {
        fp = ++p;
        while (is_digit(*p))
            p++;
        flen = (size_t)(p - fp);
        if (flen == 0)
            return -EINVAL;
    }
    for (i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
        if (strcmp(p, size_units[i].suffix) == 0) {
            shift = size_units[i].shift;
            found = true;
            break;
        }
    }
    if (!found)
        return -EINVAL;

    for (i = 0; i < ilen; i++) {
        if (v > (UINT64_MAX - (uint64_t)(ip[i] - '0')) / 10)
            return -ERANGE;
        v = v * 10 + (uint64_t)(ip[i] - '0');
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    v <<= shift;

    if (fp) {
        /* value of the fraction in bytes: digits * 2^shift / 10^flen,
         * which must be exact.  2^40 * 10^k fits 128 bits for k <= 25. */
        unsigned __int128 num = 0, den = 1;

        while (flen > 0 && fp[flen - 1] == '0')
            flen--;
        if (flen > 25)
            return -EINVAL;
        for (i = 0; i < flen; i++) {
            num = num * 10 + (unsigned)(fp[i] - '0');
            den *= 10;
        }
        num <<= shift;
        if (num % den) {
            *inexact = true;
            return -EINVAL;
        }
        num /= den;
        if (num > UINT64_MAX - v)
            return -ERANGE;
        v += (uint64_t)num;
    }
    *out = v;
    return 0;
}

int vd_size_parse(const char *s, uint64_t *out)
{
    bool inexact = false;

    return size_parse(s, out, &inexact);
}

void vd_size_exact(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    unsigned u = 0;

    if (!buf || len == 0)
        return;
    while (u + 1 < sizeof(units) / sizeof(units[0]) && bytes &&
           bytes % (1ULL << (10 * (u + 1))) == 0)
        u++;
    if (u == 0)
        snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
    else
        snprintf(buf, len, "%llu%s", (unsigned long long)(bytes >> (10 * u)),
                 units[u]);
}

int vd_size_parse_max(const char *s, uint64_t max, uint64_t *out, char *msg,
                      size_t msglen)
{
    bool inexact = false;
    uint64_t v = 0;
    char m[64];
    int rc = size_parse(s, &v, &inexact);

    if (rc == 0 && v > max)
        rc = -ERANGE;
    if (rc == 0) {
        *out = v;
        if (msg && msglen)
            msg[0] = 0;
        return 0;
    }
    if (!msg || !msglen)
        return rc;
    /* user text in a one-line message: at most 64 bytes, printable only */
    char q[72];
    size_t o = 0;
    for (size_t i = 0; s && s[i] && i < 64; i++)
        q[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s && o == 64 && s[64])
        q[o++] = '.', q[o++] = '.', q[o++] = '.';
    q[o] = 0;
    if (rc == -ERANGE) {
        vd_size_exact(max, m, sizeof(m));
        snprintf(msg, msglen, "'%s' is too large (at most %s)", q, m);
    } else {
        snprintf(msg, msglen, "'%s' is not %s; " VD_SIZE_RULE, q,
                 inexact ? "a whole number of bytes" : "a size");
    }
    return rc;
}

void vd_size_format(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    unsigned u = 0;
    uint64_t unit, whole, frac, hundredths;

    if (!buf || len == 0)
        return;
    while (u + 1 < sizeof(units) / sizeof(units[0]) &&
           bytes >= (1ULL << (10 * (u + 1))))
        u++;
    unit = 1ULL << (10 * u);
    whole = bytes >> (10 * u);
    frac = bytes & (unit - 1);
    if (frac == 0) {
        snprintf(buf, len, "%llu%s", (unsigned long long)whole, units[u]);
        return;
    }
    /* frac < 2^40, so frac * 100 cannot overflow */
    hundredths = (frac * 100 + unit / 2) >> (10 * u);
    if (hundredths == 100) {
        whole++;
        hundredths = 0;
        if (whole == 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
            whole = 1; /* 1023.999KiB reads better as 1MiB */
            u++;
        }
    }
    if (hundredths == 0)
        snprintf(buf, len, "%llu%s", (unsigned long long)whole, units[u]);
    else if (hundredths % 10 == 0)
        snprintf(buf, len, "%llu.%llu%s", (unsigned long long)whole,
                 (unsigned long long)(hundredths / 10), units[u]);
    else
        snprintf(buf, len, "%llu.%02llu%s", (unsigned long long)whole,
                 (unsigned long long)hundredths, units[u]);
}

int vd_duration_parse(const char *s, uint32_t *out_ms)
{
    const char *p = s;
    uint64_t v = 0, mult;

    if (!s || !is_digit(*p))
        return -EINVAL;
    for (; is_digit(*p); p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX)
            return -EINVAL;
    }
    if (strcmp(p, "ms") == 0)
        mult = 1;
    else if (*p == '\0' || strcmp(p, "s") == 0)
        mult = 1000;
    else if (strcmp(p, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(p, "h") == 0)
        mult = 3600 * 1000;
    else
        return -EINVAL;
    if (v > UINT32_MAX / mult)
        return -EINVAL;
    *out_ms = (uint32_t)(v * mult);
    return 0;
}

static bool name_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > VD_NAME_MAX || s[0] == '.' || s[0] == '-')
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

int vd_name_is_valid(const char *s)
{
    return s && name_ok(s, strnlen(s, VD_NAME_MAX + 1));
}

/* ---- the walk ------------------------------------------------------- */

struct ctx {
    const char *file;
    char *err;
    size_t errlen;
    yaml_document_t *doc;
};

/* Per-device facts used only for the duplicate checks. */
struct devkey {
    const char *name;
    int name_line, name_col;
    char *real; /* realpath() or the literal path */
    bool have_st;
    dev_t st_dev;
    ino_t st_ino;
    char *url_key;         /* host:port/target/lun, host lowercased */
    int key_line, key_col; /* where path / iscsi was given */
};

__attribute__((format(printf, 4, 5))) static int
fail_at(struct ctx *c, int line, int col, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!c->err || c->errlen == 0)
        return -EINVAL;
    n = snprintf(c->err, c->errlen, "%s:%d:%d: ", c->file, line, col);
    if (n >= 0 && (size_t)n < c->errlen) {
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

#define fail(c, node, ...)                         \
    fail_at((c), (int)(node)->start_mark.line + 1, \
            (int)(node)->start_mark.column + 1, __VA_ARGS__)

/* Quote user text for a one-line message: at most 64 characters, control
 * and non-ASCII bytes shown as '?'. */
static const char *show(const yaml_node_t *n, char *buf, size_t len)
{
    const unsigned char *s = n->data.scalar.value;
    size_t slen = n->data.scalar.length, i, o = 0;

    for (i = 0; i < slen && o + 4 < len && i < 64; i++)
        buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    if (i < slen && o + 4 < len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}
#define SHOW(n) show((n), (char[80]){ 0 }, 80)

static const char *kind_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a sequence";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "nothing";
    }
}

static bool is_null(const yaml_node_t *n)
{
    const char *v;

    if (n->type != YAML_SCALAR_NODE ||
        n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || !strcmp(v, "~") ||
           !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static yaml_node_t *node(struct ctx *c, int id)
{
    return yaml_document_get_node(c->doc, id);
}

static bool key_is(const yaml_node_t *k, const char *name)
{
    return k->data.scalar.length == strlen(name) &&
           !memcmp(k->data.scalar.value, name, k->data.scalar.length);
}

/* Walk the pairs of a mapping: every key must be a scalar from `keys`
 * (NULL-terminated) and appear once.  vals[i] receives the value of keys[i]
 * and kn[i] its key node, or NULL when absent. */
static int map_get(struct ctx *c, yaml_node_t *map, const char *what,
                   const char *const *keys, const char *allowed,
                   yaml_node_t **kn, yaml_node_t **vals)
{
    yaml_node_pair_t *p;
    size_t i;

    for (i = 0; keys[i]; i++)
        kn[i] = vals[i] = NULL;
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(c, p->key), *v = node(c, p->value);

        if (!k || !v)
            return fail(c, map, "%smalformed mapping", what);
        if (k->type != YAML_SCALAR_NODE)
            return fail(c, k, "%sa key must be a scalar, not %s", what,
                        kind_name(k));
        for (i = 0; keys[i]; i++)
            if (key_is(k, keys[i]))
                break;
        if (!keys[i])
            return fail(c, k, "%sunknown key '%s'; allowed keys: %s", what,
                        SHOW(k), allowed);
        if (kn[i])
            return fail(c, k,
                        "%sduplicate key '%s' (first at line %d, column "
                        "%d); give each key once",
                        what, keys[i], (int)kn[i]->start_mark.line + 1,
                        (int)kn[i]->start_mark.column + 1);
        kn[i] = k;
        vals[i] = v;
    }
    return 0;
}

/* The value of `key` as a NUL-free string, or an error naming the key. */
static int get_scalar(struct ctx *c, const char *what, yaml_node_t *k,
                      yaml_node_t *v, const char *fix, const char **out)
{
    if (is_null(v))
        return fail(c, k, "%s%s has no value; %s", what,
                    (const char *)k->data.scalar.value, fix);
    if (v->type != YAML_SCALAR_NODE)
        return fail(c, v, "%s%s must be a scalar, not %s; %s", what,
                    (const char *)k->data.scalar.value, kind_name(v), fix);
    if (strlen((const char *)v->data.scalar.value) != v->data.scalar.length)
        return fail(c, v, "%s%s contains a NUL character", what,
                    (const char *)k->data.scalar.value);
    *out = (const char *)v->data.scalar.value;
    return 0;
}

static int get_name(struct ctx *c, const char *what, yaml_node_t *k,
                    yaml_node_t *v, const char **out)
{
    int rc = get_scalar(c, what, k, v, NAME_RULE, out);

    if (rc)
        return rc;
    if (!name_ok(*out, v->data.scalar.length))
        return fail(c, v, "%sinvalid %s%s '%s'; " NAME_RULE, what,
                    (const char *)k->data.scalar.value,
                    key_is(k, "name") ? "" : " name", SHOW(v));
    return 0;
}

static int get_path(struct ctx *c, const char *what, yaml_node_t *k,
                    yaml_node_t *v, const char **out)
{
    int rc = get_scalar(c, what, k, v, "give an absolute path", out);

    if (rc)
        return rc;
    if ((*out)[0] != '/')
        return fail(c, v,
                    "%s%s '%s' is not an absolute path; tgtd does not run "
                    "in this directory, give the full path",
                    what, (const char *)k->data.scalar.value, SHOW(v));
    if (v->data.scalar.length >= PATH_MAX)
        return fail(c, v, "%s%s is longer than %d bytes", what,
                    (const char *)k->data.scalar.value, PATH_MAX - 1);
    return 0;
}

static int get_size(struct ctx *c, const char *what, yaml_node_t *k,
                    yaml_node_t *v, uint64_t *out)
{
    const char *s = NULL;
    char m[512];
    int rc = get_scalar(c, what, k, v, SIZE_RULE, &s);

    if (rc)
        return rc;
    rc = vd_size_parse_max(s, UINT64_MAX, out, m, sizeof(m));
    if (rc)
        return fail(c, v, "%s%s %s", what, (const char *)k->data.scalar.value,
                    m);
    return 0;
}

static int dup_str(const char *s, char **out)
{
    *out = strdup(s);
    return *out ? 0 : -ENOMEM;
}

/* iscsi://host[:port]/target/lun.  Fills the node default (host) and the
 * key used to spot the same LUN written two ways (default port, host
 * case). */
static int parse_url(struct ctx *c, const char *what, yaml_node_t *v,
                     const char *url, char **host_out, char **key_out)
{
    static const char pfx[] = "iscsi://";
    const char *h, *he, *p, *t, *te, *l;
    char hostbuf[256];
    size_t hlen, i;
    unsigned long port = VD_ISCSI_PORT_DEFAULT, lun = 0;
    int n;

#define BAD_URL(why)                                                         \
    fail(c, v,                                                               \
         "%sbad iscsi URL '%s': %s; use iscsi://host[:port]/target-iqn/lun", \
         what, SHOW(v), why)

    if (strncmp(url, pfx, sizeof(pfx) - 1) != 0)
        return BAD_URL("it does not start with iscsi://");
    h = url + sizeof(pfx) - 1;
    p = strchr(h, '/');
    if (!p)
        return BAD_URL("no target");
    if (memchr(h, '@', (size_t)(p - h)))
        return BAD_URL("credentials do not belong in the URL, use chap");
    if (*h == '[') {
        he = memchr(h, ']', (size_t)(p - h));
        if (!he || he == h + 1)
            return BAD_URL("unterminated IPv6 address");
        hlen = (size_t)(he - h - 1);
        memcpy(hostbuf, h + 1, hlen < sizeof(hostbuf) ? hlen : 0);
        he++;
    } else {
        he = h;
        while (he < p && *he != ':')
            he++;
        hlen = (size_t)(he - h);
        if (hlen == 0)
            return BAD_URL("no host");
        memcpy(hostbuf, h, hlen < sizeof(hostbuf) ? hlen : 0);
    }
    if (hlen >= sizeof(hostbuf))
        return BAD_URL("host name too long");
    hostbuf[hlen] = '\0';
    for (i = 0; i < hlen; i++) {
        char ch = hostbuf[i];

        if (ch >= 'A' && ch <= 'Z')
            hostbuf[i] = (char)(ch - 'A' + 'a');
        else if (!((ch >= 'a' && ch <= 'z') || is_digit(ch) || ch == '-' ||
                   ch == '.' || ch == '_' || ch == ':'))
            return BAD_URL("bad character in host");
    }
    if (he < p) {
        if (*he != ':' || he + 1 == p)
            return BAD_URL("bad port");
        port = 0;
        for (he++; he < p; he++) {
            if (!is_digit(*he))
                return BAD_URL("bad port");
            port = port * 10 + (unsigned long)(*he - '0');
            if (port > 65535)
                return BAD_URL("port out of range 1-65535");
        }
        if (port == 0)
            return BAD_URL("port out of range 1-65535");
    }
    t = p + 1;
    te = strchr(t, '/');
    if (!te || te == t)
        return BAD_URL("no target name or no LUN");
    if (!(strncmp(t, "iqn.", 4) == 0 || strncmp(t, "eui.", 4) == 0 ||
          strncmp(t, "naa.", 4) == 0))
        return BAD_URL("the target name must start with iqn., eui. or naa.");
    for (i = 0; t + i < te; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
            return BAD_URL("bad character in target name");
    l = te + 1;
    if (!is_digit(*l))
        return BAD_URL("the LUN must be a number");
    for (; is_digit(*l); l++) {
        lun = lun * 10 + (unsigned long)(*l - '0');
        if (lun > VD_ISCSI_LUN_MAX)
            return BAD_URL("LUN out of range 0-16383");
    }
    if (*l)
        return BAD_URL("unexpected text after the LUN");
#undef BAD_URL

    n = asprintf(key_out, "%s:%lu/%.*s/%lu", hostbuf, port, (int)(te - t), t,
                 lun);
    if (n < 0) {
        *key_out = NULL;
        return -ENOMEM;
    }
    return dup_str(hostbuf, host_out);
}

static int default_node(struct ctx *c, yaml_node_t *devnode, const char *what,
                        char **out)
{
    char host[HOST_NAME_MAX + 2] = "";
    char *dot;

    if (gethostname(host, sizeof(host) - 1) != 0)
        return fail(c, devnode,
                    "%sno node given and gethostname failed; add node: NAME",
                    what);
    host[sizeof(host) - 1] = '\0';
    if (!vd_name_is_valid(host) && (dot = strchr(host, '.')))
        *dot = '\0';
    if (!vd_name_is_valid(host))
        return fail(c, devnode,
                    "%sno node given and host name '%s' is not a valid node "
                    "name; add node: NAME",
                    what, host);
    return dup_str(host, out);
}

static void dev_clear(struct vd_conf_dev *d)
{
    free(d->name);
    free(d->path);
    free(d->iscsi_url);
    free(d->node);
    free(d->chap_user);
    free(d->chap_secret_file);
    free(d->rbd_pool), free(d->rbd_image), free(d->rbd_conf), free(d->rbd_id);
    memset(d, 0, sizeof(*d));
}

static int parse_chap(struct ctx *c, const char *what, yaml_node_t *k,
                      yaml_node_t *v, struct vd_conf_dev *d)
{
    static const char *const keys[] = { "user", "secret_file", NULL };
    yaml_node_t *kn[2], *vals[2];
    char w[160];
    const char *s = NULL;
    int rc;

    if (is_null(v) || v->type != YAML_MAPPING_NODE)
        return fail(c, is_null(v) ? k : v,
                    "%schap must be a mapping, not %s; use chap: {user: "
                    "NAME, secret_file: PATH}",
                    what, is_null(v) ? "empty" : kind_name(v));
    snprintf(w, sizeof(w), "%schap: ", what);
    rc = map_get(c, v, w, keys, CHAP_KEYS, kn, vals);
    if (rc)
        return rc;
    if (!kn[0])
        return fail(c, v, "%smissing required key 'user'", w);
    if (!kn[1])
        return fail(c, v, "%smissing required key 'secret_file'", w);
    rc = get_scalar(c, w, kn[0], vals[0], "give the CHAP user name", &s);
    if (rc)
        return rc;
    if (!*s)
        return fail(c, vals[0], "%suser is empty", w);
    rc = dup_str(s, &d->chap_user);
    if (rc)
        return rc;
    rc = get_path(c, w, kn[1], vals[1], &s);
    if (rc)
        return rc;
    return dup_str(s, &d->chap_secret_file);
}

/* `encrypt: true|false` (a plain scalar; YAML 1.1's yes/no/on/off are
 * refused as ambiguous). */
static int get_bool(struct ctx *c, const char *what, yaml_node_t *k,
                    yaml_node_t *v, int *out)
{
    const char *s = NULL;
    int rc = get_scalar(c, what, k, v, "use true or false", &s);

    if (rc)
        return rc;
    if (v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (!strcmp(s, "true") || !strcmp(s, "false"))) {
        *out = !strcmp(s, "true");
        return 0;
    }
    return fail(c, v, "%s%s '%s' is not a boolean; use true or false", what,
                (const char *)k->data.scalar.value, SHOW(v));
}

/* encryption: {key_file: PATH} */
static int parse_encryption(struct ctx *c, yaml_node_t *k, yaml_node_t *v,
                            struct vd_conf_pool *conf)
{
    static const char *const keys[] = { "key_file", "sector_size", NULL };
    yaml_node_t *kn[2], *vals[2];
    uint64_t ss = 512;
    const char *s = NULL;
    int rc;

    if (is_null(v) || v->type != YAML_MAPPING_NODE)
        return fail(c, is_null(v) ? k : v,
                    "encryption must be a mapping, not %s; use encryption: "
                    "{key_file: PATH}",
                    is_null(v) ? "empty" : kind_name(v));
    rc = map_get(c, v, "encryption: ", keys, CRYPT_KEYS, kn, vals);
    if (rc)
        return rc;
    if (!kn[0])
        return fail(c, v,
                    "encryption: missing required key 'key_file'; add "
                    "key_file: PATH (a root-only file of 16 to 4096 random "
                    "bytes)");
    rc = get_path(c, "encryption: ", kn[0], vals[0], &s);
    if (rc)
        return rc;
    if (kn[1]) {
        rc = get_size(c, "encryption: ", kn[1], vals[1], &ss);
        if (rc)
            return rc;
        if (ss != 512 && ss != 4096)
            return fail(c, vals[1],
                        "encryption: sector_size %s is not 512 or 4096; use "
                        "512 (default) or 4096 (fewer cipher calls, "
                        "read-modify-write for smaller writes)",
                        SHOW(vals[1]));
    }
    conf->crypt_sector = (uint32_t)ss;
    return dup_str(s, &conf->key_file);
}

/* An RBD pool or image name: what `rbd` accepts in POOL/IMAGE. */
static int get_rbd_name(struct ctx *c, const char *w, yaml_node_t *k,
                        yaml_node_t *v, char **out)
{
    const char *s = NULL;
    int rc = get_scalar(c, w, k, v, "give the name as rbd ls shows it", &s);

    if (rc)
        return rc;
    if (!*s || strlen(s) > 255 || strpbrk(s, "/@ \t\n\r"))
        return fail(c, v,
                    "%s%s '%s' is not an RBD name; give 1-255 characters "
                    "without '/', '@' or spaces",
                    w, (const char *)k->data.scalar.value, SHOW(v));
    return dup_str(s, out);
}

/* The fsid in the [global] part of a ceph.conf (the node default of an
 * RBD device), or NULL. */
static char *conf_fsid(const char *path)
{
    FILE *f = fopen(path, "re");
    char line[512], *fsid = NULL;
    bool global = true;

    if (!f)
        return NULL;
    while (!fsid && fgets(line, sizeof(line), f)) {
        char *p = line + strspn(line, " \t"), *e;
        if (*p == '[') {
            global = !strncmp(p, "[global]", 8);
            continue;
        }
        if (!global || strncmp(p, "fsid", 4))
            continue;
        p += 4 + strspn(p + 4, " \t");
        if (*p++ != '=')
            continue;
        p += strspn(p, " \t");
        e = p + strcspn(p, " \t\r\n#;");
        *e = 0;
        if (vd_name_is_valid(p))
            fsid = strdup(p);
    }
    fclose(f);
    return fsid;
}

static int parse_rbd(struct ctx *c, const char *what, yaml_node_t *k,
                     yaml_node_t *v, struct vd_conf_dev *d)
{
    static const char *const keys[] = { "pool", "image", "conf", "id", NULL };
    yaml_node_t *kn[4], *vals[4];
    char w[160];
    const char *s = NULL;
    int rc;

    if (is_null(v) || v->type != YAML_MAPPING_NODE)
        return fail(c, is_null(v) ? k : v,
                    "%srbd must be a mapping, not %s; use rbd: {pool: POOL, "
                    "image: IMAGE, conf: /etc/ceph/ceph.conf, id: admin}",
                    what, is_null(v) ? "empty" : kind_name(v));
    snprintf(w, sizeof(w), "%srbd: ", what);
    rc = map_get(c, v, w, keys, RBD_KEYS, kn, vals);
    if (rc)
        return rc;
    if (!kn[0])
        return fail(c, v, "%smissing required key 'pool'; add pool: POOL", w);
    if (!kn[1])
        return fail(c, v,
                    "%smissing required key 'image'; add image: IMAGE "
                    "(the image must exist: rbd create)",
                    w);
    if ((rc = get_rbd_name(c, w, kn[0], vals[0], &d->rbd_pool)) ||
        (rc = get_rbd_name(c, w, kn[1], vals[1], &d->rbd_image)))
        return rc;
    if (kn[2]) {
        rc = get_path(c, w, kn[2], vals[2], &s);
        if (rc)
            return rc;
    }
    rc = dup_str(kn[2] ? s : "/etc/ceph/ceph.conf", &d->rbd_conf);
    if (rc)
        return rc;
    if (kn[3]) {
        rc = get_name(c, w, kn[3], vals[3], &s);
        if (rc)
            return rc;
        if (!strncmp(s, "client.", 7))
            return fail(c, vals[3],
                        "%sid '%s' names the client without 'client.'; "
                        "give id: %s",
                        w, s, s + 7);
    }
    return dup_str(kn[3] ? s : "admin", &d->rbd_id);
}

/* `tier: slow|fast` (tiering, pool/tier.c) */
static int parse_tier(struct ctx *c, const char *what, yaml_node_t *k,
                      yaml_node_t *v, struct vd_conf_dev *d)
{
    const char *s = NULL;
    int rc = get_scalar(c, what, k, v, "use tier: fast or tier: slow", &s);

    if (rc)
        return rc;
    if (!strcmp(s, "fast"))
        d->tier = VD_CONF_TIER_FAST;
    else if (!strcmp(s, "slow"))
        d->tier = VD_CONF_TIER_SLOW;
    else
        return fail(c, v, "%sunknown tier '%s'; use fast or slow", what,
                    SHOW(v));
    return 0;
}

/* The `tiering:` section: enabled, interval, rate, fast_free. */
static int parse_tiering(struct ctx *c, yaml_node_t *k, yaml_node_t *v,
                         struct vd_conf_tiering *t)
{
    static const char *const keys[] = { "enabled", "interval", "rate",
                                        "fast_free", NULL };
    yaml_node_t *kn[4], *vv[4];
    const char *s = NULL;
    char *end;
    int rc;

    t->given = 1;
    if (v->type != YAML_MAPPING_NODE)
        return fail(c, is_null(v) ? k : v,
                    "tiering must be a mapping with keys enabled, interval, "
                    "rate, fast_free, not %s",
                    is_null(v) ? "empty" : kind_name(v));
    rc = map_get(c, v, "tiering: ", keys, "enabled, interval, rate, fast_free",
                 kn, vv);
    if (rc)
        return rc;
    if (kn[0]) {
        if ((rc = get_scalar(c, "tiering: ", kn[0], vv[0], "use true or false",
                             &s)))
            return rc;
        if (!strcmp(s, "true") || !strcmp(s, "on") || !strcmp(s, "yes"))
            t->enabled = 1;
        else if (!strcmp(s, "false") || !strcmp(s, "off") || !strcmp(s, "no"))
            t->enabled = 0;
        else
            return fail(c, vv[0],
                        "tiering: enabled '%s' is not a boolean; "
                        "use true or false",
                        SHOW(vv[0]));
    }
    if (kn[1]) {
        if ((rc = get_scalar(c, "tiering: ", kn[1], vv[1],
                             "give a duration such as 60s", &s)))
            return rc;
        if (vd_duration_parse(s, &t->interval_ms) || t->interval_ms < 1000)
            return fail(c, vv[1],
                        "tiering: interval '%s' is not a duration of at least "
                        "1s; use e.g. 60s or 5m",
                        SHOW(vv[1]));
    }
    if (kn[2] && (rc = get_size(c, "tiering: ", kn[2], vv[2], &t->rate)))
        return rc;
    if (kn[3]) {
        if ((rc = get_scalar(c, "tiering: ", kn[3], vv[3],
                             "give a percentage such as 10%", &s)))
            return rc;
        errno = 0;
        unsigned long pct = strtoul(s, &end, 10);
        if (end == s || errno || (*end && strcmp(end, "%")) || pct > 90 ||
            *s == '-' || *s == '+')
            return fail(c, vv[3],
                        "tiering: fast_free '%s' is not a percentage from 0%% "
                        "to 90%%; use e.g. 10%%",
                        SHOW(vv[3]));
        t->fast_free_pct = (uint32_t)pct;
    }
    return 0;
}

enum {
    K_NAME,
    K_PATH,
    K_SIZE,
    K_NODE,
    K_ISCSI,
    K_CHAP,
    K_TIMEOUT,
    K_RBD,
    K_ENCRYPT,
    K_TIER,
    K_DIRECT,
    K_NKEYS
};

static int parse_dev(struct ctx *c, yaml_node_t *dn, size_t idx,
                     struct vd_conf_dev *d, struct devkey *dk)
{
    static const char *const keys[] = { "name",    "path", "size",    "node",
                                        "iscsi",   "chap", "timeout", "rbd",
                                        "encrypt", "tier", "direct",  NULL };
    yaml_node_t *kn[K_NKEYS], *v[K_NKEYS];
    yaml_node_pair_t *pp;
    char what[128];
    const char *s = NULL;
    int rc;

    d->line = (int)dn->start_mark.line + 1;
    d->column = (int)dn->start_mark.column + 1;
    if (dn->type != YAML_MAPPING_NODE)
        return fail(c, dn,
                    "device %zu: must be a mapping with keys " DEV_KEYS
                    ", not %s",
                    idx + 1, is_null(dn) ? "empty" : kind_name(dn));
    snprintf(what, sizeof(what), "device %zu: ", idx + 1);
    /* name the device in every message when its name is usable */
    for (pp = dn->data.mapping.pairs.start; pp < dn->data.mapping.pairs.top;
         pp++) {
        yaml_node_t *k = node(c, pp->key), *val = node(c, pp->value);

        if (k && val && k->type == YAML_SCALAR_NODE && key_is(k, "name") &&
            val->type == YAML_SCALAR_NODE &&
            name_ok((const char *)val->data.scalar.value,
                    val->data.scalar.length)) {
            snprintf(what, sizeof(what),
                     "device '%s': ", (const char *)val->data.scalar.value);
            break;
        }
    }
    rc = map_get(c, dn, what, keys, DEV_KEYS, kn, v);
    if (rc)
        return rc;

    /* the name first, so that later messages can use it */
    if (!kn[K_NAME])
        return fail(c, dn, "%smissing required key 'name'; add name: NAME",
                    what);
    rc = get_name(c, what, kn[K_NAME], v[K_NAME], &s);
    if (rc)
        return rc;
    rc = dup_str(s, &d->name);
    if (rc)
        return rc;
    snprintf(what, sizeof(what), "device '%s': ", d->name);
    dk->name = d->name;
    dk->name_line = (int)v[K_NAME]->start_mark.line + 1;
    dk->name_col = (int)v[K_NAME]->start_mark.column + 1;

    if (kn[K_RBD] && (kn[K_PATH] || kn[K_ISCSI])) {
        yaml_node_t *o = kn[K_PATH] ? kn[K_PATH] : kn[K_ISCSI];
        return fail(
            c,
            o->start_mark.index > kn[K_RBD]->start_mark.index ? o : kn[K_RBD],
            "%shas both %s and rbd; give exactly one", what,
            kn[K_PATH] ? "path" : "iscsi");
    }
    if (kn[K_RBD]) {
        if (kn[K_CHAP])
            return fail(c, kn[K_CHAP],
                        "%schap is only valid for an iscsi device; an RBD "
                        "device authenticates with its conf and id",
                        what);
        if (kn[K_SIZE])
            return fail(c, kn[K_SIZE],
                        "%ssize is only valid for a local device (path); the "
                        "size of an RBD image is read from the cluster, "
                        "remove it",
                        what);
        rc = parse_rbd(c, what, kn[K_RBD], v[K_RBD], d);
        if (rc)
            return rc;
        if (asprintf(&dk->url_key, "rbd://%s/%s@%s", d->rbd_pool, d->rbd_image,
                     d->rbd_conf) < 0) {
            dk->url_key = NULL;
            return -ENOMEM;
        }
        dk->key_line = (int)v[K_RBD]->start_mark.line + 1;
        dk->key_col = (int)v[K_RBD]->start_mark.column + 1;
        if (!kn[K_NODE] && !(d->node = conf_fsid(d->rbd_conf)))
            return fail(c, v[K_RBD],
                        "%sno node given and no fsid found in %s; add "
                        "node: NAME (devices of one Ceph cluster share it)",
                        what, d->rbd_conf);
    }
    if (kn[K_PATH] && kn[K_ISCSI]) {
        yaml_node_t *second =
            kn[K_PATH]->start_mark.index > kn[K_ISCSI]->start_mark.index
                ? kn[K_PATH]
                : kn[K_ISCSI];
        return fail(c, second, "%shas both path and iscsi; give exactly one",
                    what);
    }
    if (!kn[K_PATH] && !kn[K_ISCSI] && !kn[K_RBD])
        return fail(c, dn,
                    "%smissing required key 'path' or 'iscsi' (or 'rbd'); "
                    "add path: FILE for a local device, iscsi: URL for a "
                    "remote one or rbd: {pool: P, image: I} for a Ceph image",
                    what);
    if (kn[K_PATH]) {
        if (kn[K_CHAP])
            return fail(c, kn[K_CHAP],
                        "%schap is only valid for an iscsi device; remove "
                        "it",
                        what);
        if (kn[K_TIMEOUT])
            return fail(c, kn[K_TIMEOUT],
                        "%stimeout is only valid for an iscsi device (or an "
                        "rbd one); remove it",
                        what);
    } else if (kn[K_SIZE]) {
        return fail(c, kn[K_SIZE],
                    "%ssize is only valid for a local device (path); the "
                    "size of an iscsi LUN is read from the target, remove it",
                    what);
    }

    if (kn[K_PATH]) {
        struct stat st;
        char *real;

        rc = get_path(c, what, kn[K_PATH], v[K_PATH], &s);
        if (rc)
            return rc;
        rc = dup_str(s, &d->path);
        if (rc)
            return rc;
        real = resolve_path(s);
        if (!real)
            return -ENOMEM;
        dk->real = real;
        if (stat(s, &st) == 0) {
            dk->have_st = true;
            /* two nodes of one block device are the same device */
            dk->st_dev = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
            dk->st_ino = S_ISBLK(st.st_mode) ? 0 : st.st_ino;
        }
        dk->key_line = (int)v[K_PATH]->start_mark.line + 1;
        dk->key_col = (int)v[K_PATH]->start_mark.column + 1;
        if (kn[K_SIZE]) {
            rc = get_size(c, what, kn[K_SIZE], v[K_SIZE], &d->size);
            if (rc)
                return rc;
            if (d->size == 0)
                return fail(c, v[K_SIZE],
                            "%ssize must be greater than 0; give the size "
                            "of the file to create or remove size",
                            what);
        }
    } else if (kn[K_ISCSI]) {
        char *host = NULL;

        rc = get_scalar(c, what, kn[K_ISCSI], v[K_ISCSI],
                        "give iscsi://host[:port]/target-iqn/lun", &s);
        if (rc)
            return rc;
        rc = parse_url(c, what, v[K_ISCSI], s, &host, &dk->url_key);
        if (rc)
            return rc;
        rc = dup_str(s, &d->iscsi_url);
        if (!rc && !kn[K_NODE]) {
            if (!vd_name_is_valid(host))
                rc = fail(c, v[K_ISCSI],
                          "%shost '%s' of the URL is not a valid node "
                          "name; add node: NAME",
                          what, host);
            else
                d->node = host, host = NULL;
        }
        free(host);
        if (rc)
            return rc;
        dk->key_line = (int)v[K_ISCSI]->start_mark.line + 1;
        dk->key_col = (int)v[K_ISCSI]->start_mark.column + 1;
        if (kn[K_CHAP]) {
            rc = parse_chap(c, what, kn[K_CHAP], v[K_CHAP], d);
            if (rc)
                return rc;
        }
    }
    if (!kn[K_PATH]) {
        d->timeout_ms = VD_DEFAULT_TIMEOUT_MS;
        if (kn[K_TIMEOUT]) {
            rc = get_scalar(c, what, kn[K_TIMEOUT], v[K_TIMEOUT],
                            "give a duration such as 30s or 500ms", &s);
            if (rc)
                return rc;
            if (vd_duration_parse(s, &d->timeout_ms) != 0)
                return fail(c, v[K_TIMEOUT],
                            "%sbad timeout '%s'; use a whole number with "
                            "unit ms, s, m or h (plain = seconds), e.g. 30s",
                            what, SHOW(v[K_TIMEOUT]));
            if (d->timeout_ms == 0)
                return fail(c, v[K_TIMEOUT],
                            "%stimeout must be greater than 0; a command "
                            "must never wait forever",
                            what);
        }
    }

    if (kn[K_ENCRYPT]) {
        rc = get_bool(c, what, kn[K_ENCRYPT], v[K_ENCRYPT], &d->encrypt);
        if (rc)
            return rc;
        d->encrypt_line = (int)kn[K_ENCRYPT]->start_mark.line + 1;
        d->encrypt_col = (int)kn[K_ENCRYPT]->start_mark.column + 1;
    }
    if (kn[K_TIER] && (rc = parse_tier(c, what, kn[K_TIER], v[K_TIER], d)))
        return rc;
    if (kn[K_DIRECT]) {
        /* O_DIRECT on a local file or block device (pool/dev.c) */
        int on = 0;
        if (!kn[K_PATH])
            return fail(c, kn[K_DIRECT],
                        "%sdirect is only valid for a local device (path); "
                        "remove it",
                        what);
        rc = get_bool(c, what, kn[K_DIRECT], v[K_DIRECT], &on);
        if (rc)
            return rc;
        d->direct = on ? 1 : -1;
    }
    if (kn[K_NODE]) {
        rc = get_name(c, what, kn[K_NODE], v[K_NODE], &s);
        if (rc)
            return rc;
        rc = dup_str(s, &d->node);
    } else if (!d->node) {
        rc = default_node(c, dn, what, &d->node);
    }
    return rc;
}

/* Append component c of length n to the normalised absolute path out
 * (capacity cap): "." is dropped, ".." removes the last component. */
static void path_push(char *out, size_t cap, const char *c, size_t n)
{
    size_t l = strlen(out);

    if (n == 0 || (n == 1 && c[0] == '.'))
        return;
    if (n == 2 && c[0] == '.' && c[1] == '.') {
        while (l > 1 && out[l - 1] != '/')
            l--;
        if (l > 1)
            l--; /* the slash, except the root's */
        out[l] = 0;
        return;
    }
    if (l + 1 + n + 1 > cap)
        return; /* longer than PATH_MAX: compared as far as it goes */
    if (l > 1)
        out[l++] = '/';
    memcpy(out + l, c, n);
    out[l + n] = 0;
}

/* The canonical form of an absolute path for the duplicate check:
 * realpath() of the path when it exists; otherwise realpath() of its
 * longest existing ancestor (so symlinks and ".." of existing
 * directories are resolved) with the rest appended, "." and ".."
 * applied by name (those components do not exist, so no symlink can
 * change what they mean).  Returns malloc'd, or NULL (out of memory). */
static char *resolve_path(const char *path)
{
    char *real = realpath(path, NULL), *out, *pre;
    size_t n = strlen(path), i;

    if (real || errno == ENOMEM)
        return real;
    out = calloc(1, PATH_MAX + 1);
    pre = strdup(path);
    if (!out || !pre) {
        free(out);
        free(pre);
        return NULL;
    }
    strcpy(out, "/");
    for (i = n; i-- > 0;) {
        if (path[i] != '/')
            continue;
        pre[i ? i : 1] = 0; /* "/a/b/c" -> "/a/b", ..., "/" */
        real = realpath(pre, NULL);
        if (!real && errno == ENOMEM)
            break;
        if (real) {
            snprintf(out, PATH_MAX + 1, "%s", real);
            free(real);
            break;
        }
    }
    /* out is the resolved ancestor path[0..i); apply the rest by name */
    for (size_t a = i + 1, b = a; b <= n; b++)
        if (b == n || path[b] == '/') {
            path_push(out, PATH_MAX + 1, path + a, b - a);
            a = b + 1;
        }
    free(pre);
    return out;
}

/* Device i against the devices before it, so that the first repetition in
 * file order is the one reported. */
static int check_dups(struct ctx *c, const struct devkey *dk, size_t i)
{
    size_t j;

    for (j = 0; j < i; j++)
        if (!strcmp(dk[i].name, dk[j].name))
            return fail_at(c, dk[i].name_line, dk[i].name_col,
                           "duplicate device name '%s' (first at line %d); "
                           "give each device its own name",
                           dk[i].name, dk[j].name_line);
    for (j = 0; j < i; j++) {
        bool same = false;

        if (dk[i].real && dk[j].real)
            same =
                !strcmp(dk[i].real, dk[j].real) ||
                (dk[i].have_st && dk[j].have_st &&
                 dk[i].st_dev == dk[j].st_dev && dk[i].st_ino == dk[j].st_ino);
        else if (dk[i].url_key && dk[j].url_key)
            same = !strcmp(dk[i].url_key, dk[j].url_key);
        if (same)
            return fail_at(c, dk[i].key_line, dk[i].key_col,
                           "device '%s': same device as device '%s' (line "
                           "%d); list each device once",
                           dk[i].name, dk[j].name, dk[j].key_line);
    }
    return 0;
}

static int parse_pool(struct ctx *c, yaml_node_t *root,
                      struct vd_conf_pool *conf)
{
    static const char *const keys[] = { "pool",        "extent_size",
                                        "devices",     "chunk_size",
                                        "read_policy", "encryption",
                                        "tiering",     NULL };
    yaml_node_t *kn[7], *v[7], *devs;
    struct devkey *dk = NULL;
    const char *s = NULL;
    size_t n, i;
    int rc;

    if (root->type != YAML_MAPPING_NODE)
        return fail(c, root,
                    "the top level must be a mapping with keys " TOP_KEYS
                    ", not %s",
                    is_null(root) ? "empty" : kind_name(root));
    rc = map_get(c, root, "", keys, TOP_KEYS_ALL, kn, v);
    if (rc)
        return rc;
    if (!kn[0])
        return fail(c, root, "missing required key 'pool'; add pool: NAME");
    rc = get_name(c, "", kn[0], v[0], &s);
    if (rc)
        return rc;
    if ((rc = dup_str(s, &conf->name)))
        return rc;

    conf->extent_size = VD_EXTENT_SIZE_DEFAULT;
    if (kn[1]) {
        rc = get_size(c, "", kn[1], v[1], &conf->extent_size);
        if (rc)
            return rc;
        if (conf->extent_size & (conf->extent_size - 1) ||
            conf->extent_size == 0)
            return fail(c, v[1],
                        "extent_size %s is not a power of two; use e.g. "
                        "4MiB",
                        SHOW(v[1]));
        if (conf->extent_size < VD_EXTENT_SIZE_MIN)
            return fail(c, v[1],
                        "extent_size %s is less than 1MiB; use at least 1MiB",
                        SHOW(v[1]));
    }

    /* Thin volumes' unit of allocation and of UNMAP (vol create
     * --chunk-size overrides it per volume). */
    conf->chunk_size = VD_CHUNK_SIZE_DEFAULT;
    if (kn[3]) {
        rc = get_size(c, "", kn[3], v[3], &conf->chunk_size);
        if (rc)
            return rc;
        if (conf->chunk_size & (conf->chunk_size - 1) || conf->chunk_size == 0)
            return fail(c, v[3],
                        "chunk_size %s is not a power of two; use e.g. "
                        "64KiB",
                        SHOW(v[3]));
        if (conf->chunk_size < VD_CHUNK_SIZE_MIN)
            return fail(c, v[3],
                        "chunk_size %s is less than 4KiB; use a power of two "
                        "from 4KiB to the extent size",
                        SHOW(v[3]));
        if (conf->chunk_size > conf->extent_size) {
            char es[32];
            vd_size_exact(conf->extent_size, es, sizeof(es));
            return fail(c, v[3],
                        "chunk_size %s is larger than the extent size %s; use "
                        "a power of two from 4KiB to %s",
                        SHOW(v[3]), es, es);
        }
    }

    /* Mirror reads: from a local in-sync leg first, or spread. */
    conf->read_policy = VD_READ_LOCAL;
    if (kn[4]) {
        rc = get_scalar(c, "", kn[4], v[4], "use local or spread", &s);
        if (rc)
            return rc;
        if (!strcmp(s, "spread"))
            conf->read_policy = VD_READ_SPREAD;
        else if (strcmp(s, "local"))
            return fail(c, v[4],
                        "read_policy '%s' is not local or spread; use local "
                        "(a local in-sync leg first) or spread (every "
                        "in-sync leg in turn)",
                        SHOW(v[4]));
    }

    if (kn[5] && (rc = parse_encryption(c, kn[5], v[5], conf)))
        return rc;

    /* tiering (pool/tier.c): off unless the section is given */
    conf->tiering.interval_ms = 60000;
    conf->tiering.rate = 64ull << 20;
    conf->tiering.fast_free_pct = 10;
    if (kn[6]) {
        conf->tiering.enabled = 1;
        if ((rc = parse_tiering(c, kn[6], v[6], &conf->tiering)))
            return rc;
    }

    if (!kn[2])
        return fail(c, root,
                    "missing required key 'devices'; list the devices of the "
                    "pool");
    devs = v[2];
    if (is_null(devs))
        return fail(c, kn[2], "devices has no value; list at least one device");
    if (devs->type != YAML_SEQUENCE_NODE)
        return fail(c, devs,
                    "devices must be a sequence of device mappings, not %s",
                    kind_name(devs));
    n = (size_t)(devs->data.sequence.items.top -
                 devs->data.sequence.items.start);
    if (n == 0)
        return fail(c, devs, "devices is empty; list at least one device");
    if (n > CONF_DEVS_MAX)
        return fail(c, devs, "too many devices (%zu); at most %u per pool", n,
                    CONF_DEVS_MAX);
    conf->devs = calloc(n, sizeof(*conf->devs));
    dk = calloc(n, sizeof(*dk));
    if (!conf->devs || !dk) {
        rc = -ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        yaml_node_t *dn = node(c, devs->data.sequence.items.start[i]);

        conf->ndevs = i + 1;
        if (!dn) {
            rc = fail(c, devs, "malformed device list");
            goto out;
        }
        rc = parse_dev(c, dn, i, &conf->devs[i], &dk[i]);
        if (!rc)
            rc = check_dups(c, dk, i);
        if (!rc && conf->devs[i].encrypt && !conf->key_file)
            rc = fail_at(c, conf->devs[i].encrypt_line,
                         conf->devs[i].encrypt_col,
                         "device '%s': encrypt: true needs the pool's key; "
                         "add encryption: {key_file: PATH} at the top level",
                         conf->devs[i].name);
        if (rc)
            goto out;
    }
out:
    if (dk)
        for (i = 0; i < n; i++) {
            free(dk[i].real);
            free(dk[i].url_key);
        }
    free(dk);
    return rc;
}

/* Line and column of a byte offset, for reader errors (bad UTF-8 etc.),
 * which libyaml reports only as an offset. */
static void offset_mark(const char *buf, size_t len, size_t off, int *line,
                        int *col)
{
    size_t i;

    *line = 1;
    *col = 1;
    for (i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
            (*col)++;
        }
    }
}

static int syntax_error(struct ctx *c, yaml_parser_t *p, const char *buf,
                        size_t len)
{
    int line, col;

    if (p->error == YAML_MEMORY_ERROR) {
        if (c->err && c->errlen)
            snprintf(c->err, c->errlen, "%s: out of memory", c->file);
        return -ENOMEM;
    }
    if (p->error == YAML_READER_ERROR) {
        offset_mark(buf, len, p->problem_offset, &line, &col);
        return fail_at(c, line, col, "invalid YAML: %s",
                       p->problem ? p->problem : "unreadable input");
    }
    line = (int)p->problem_mark.line + 1;
    col = (int)p->problem_mark.column + 1;
    if (p->context)
        return fail_at(c, line, col,
                       "invalid YAML: %s (%s at line %d, "
                       "column %d)",
                       p->problem ? p->problem : "syntax error", p->context,
                       (int)p->context_mark.line + 1,
                       (int)p->context_mark.column + 1);
    return fail_at(c, line, col, "invalid YAML: %s",
                   p->problem ? p->problem : "syntax error");
}

void vd_conf_free(struct vd_conf_pool *conf)
{
    size_t i;

    if (!conf)
        return;
    for (i = 0; i < conf->ndevs; i++)
        dev_clear(&conf->devs[i]);
    free(conf->devs);
    free(conf->name);
    free(conf->file);
    free(conf->key_file);
    free(conf);
}

int vd_conf_parse(const char *file, const char *buf, size_t len,
                  struct vd_conf_pool **out, char *err, size_t errlen)
{
    struct ctx c = { .file = file ? file : "<config>",
                     .err = err,
                     .errlen = errlen };
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    struct vd_conf_pool *conf = NULL;
    yaml_node_t *root;
    bool have_doc = false;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!buf || !out)
        return -EINVAL;
    if (!yaml_parser_initialize(&parser))
        return -ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = syntax_error(&c, &parser, buf, len);
        goto out;
    }
    have_doc = true;
    c.doc = &doc;
    root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = fail_at(
            &c, 1, 1,
            "the file is empty; expected a mapping with keys " TOP_KEYS);
        goto out;
    }
    /* one pool per file: a second document is an error, not ignored */
    if (!yaml_parser_load(&parser, &extra)) {
        rc = syntax_error(&c, &parser, buf, len);
        goto out;
    }
    if (yaml_document_get_root_node(&extra)) {
        rc = fail_at(&c, (int)extra.start_mark.line + 1,
                     (int)extra.start_mark.column + 1,
                     "a second YAML document; put one pool in each file");
        yaml_document_delete(&extra);
        goto out;
    }
    yaml_document_delete(&extra);

    conf = calloc(1, sizeof(*conf));
    if (!conf) {
        rc = -ENOMEM;
        goto out;
    }
    rc = dup_str(c.file, &conf->file);
    if (!rc)
        rc = parse_pool(&c, root, conf);
out:
    if (rc == -ENOMEM && err && errlen && !err[0])
        snprintf(err, errlen, "%s: out of memory", c.file);
    if (rc) {
        vd_conf_free(conf);
        conf = NULL;
    } else {
        *out = conf;
    }
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int vd_conf_load(const char *path, struct vd_conf_pool **out, char *err,
                 size_t errlen)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    FILE *f;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!path || !out)
        return -EINVAL;
    f = fopen(path, "re");
    if (!f) {
        rc = -errno;
        goto fail;
    }
    for (;;) {
        size_t got;

        if (len == cap) {
            char *nb;

            if (cap >= CONF_FILE_MAX) {
                fclose(f);
                free(buf);
                if (err && errlen)
                    snprintf(err, errlen,
                             "%s: larger than %u bytes; is this a pool "
                             "definition?",
                             path, CONF_FILE_MAX);
                return -EFBIG;
            }
            cap = cap ? cap * 2 : 4096;
            nb = realloc(buf, cap + 1);
            if (!nb) {
                fclose(f);
                free(buf);
                rc = -ENOMEM;
                goto fail;
            }
            buf = nb;
        }
        errno = 0;
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                rc = errno ? -errno : -EIO;
                fclose(f);
                free(buf);
                goto fail;
            }
            break;
        }
    }
    fclose(f);
    rc = vd_conf_parse(path, buf ? buf : "", len, out, err, errlen);
    free(buf);
    return rc;
fail:
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", path, strerrordesc_np(-rc));
    return rc;
}
