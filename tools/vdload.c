/*
 * vdload: iSCSI load generator and write verifier over libiscsi.
 *
 *   vdload [read|write|rw] [options] iscsi://HOST[:PORT]/IQN/LUN
 *   vdload verify --journal FILE [options] iscsi://HOST[:PORT]/IQN/LUN
 *
 * Load mode keeps --qd commands in flight with the libiscsi async API driven
 * by our own poll() loop and reports IOPS, MB/s (10^6 bytes) and latency
 * percentiles.
 *
 * Verify mode (write/rw with --verify JOURNAL) stamps every LUN block it
 * writes with a header (magic, LBA, write sequence number, run id) and fills
 * the rest of the block with bytes derived from (run id, LBA, seq), then a
 * crc32c over the whole block.  A journal record is appended only after the
 * target returned GOOD ("ack"); writes that failed, timed out or were cut off
 * by a lost connection get a "doubt" record.  `vdload verify` reads back
 * every block the journal mentions and classifies it:
 *
 *   ok       holds the newest acknowledged write, or a newer in-doubt one
 *   lost     all zeros, or a stamp from a run this journal does not know,
 *            while an acknowledged write exists
 *   stale    a valid stamp older than the newest acknowledged write
 *   corrupt  non-zero data without a valid stamp (bad magic or checksum),
 *            or a valid stamp for another LBA
 *
 * A block whose only writes were in doubt may hold anything that is not a
 * stamp for another LBA.  Sequence numbers continue across runs appended to
 * the same journal, so "newest" is well defined across runs.
 *
 * Exit codes: 0 success / all blocks ok, 1 operational failure, 2 usage,
 * 3 verify found lost, stale or corrupt blocks.
 *
 * Single-threaded: libiscsi callbacks run inside iscsi_service() or
 * iscsi_destroy_context() on the main thread and only record results;
 * commands are issued only from the main loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define EXIT_USAGE    2
#define EXIT_BAD_DATA 3

#define BLOCK_MAGIC 0x314b4c4244445644ULL /* "DVDDBLK1" little-endian */
#define JREC_MAGIC  0x314a4456U           /* "VDJ1" */
#define JREC_SIZE   40
#define JREC_RUN    1
#define JREC_ACK    2
#define JREC_DOUBT  3

/* Block stamp, little-endian, at the start of every LUN block written in
 * verify mode.  The crc covers the whole block with the crc field zeroed. */
#define STAMP_MAGIC_OFF 0
#define STAMP_LBA_OFF   8
#define STAMP_SEQ_OFF   16
#define STAMP_RUN_OFF   24
#define STAMP_CRC_OFF   32
#define STAMP_SIZE      36

/* Journal record (JREC_SIZE bytes, little-endian):
 *   0 u32 magic  4 u8 type  5 u8[3] zero
 *   8 u64 lba      (RUN: LUN capacity in blocks)
 *  16 u64 seq      (RUN: first sequence number of the run)
 *  24 u64 run id
 *  32 u32 nblocks  (RUN: LUN block size)
 *  36 u32 crc32c of bytes 0..35
 */

/* ------------------------------------------------------------------ */
/* small helpers */

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void err(const char *fmt, ...)
{
    va_list ap;
    fputs("vdload: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* crc32c (Castagnoli), slice-by-8 tables built on first use. */
static uint32_t g_crc_tab[8][256];
static bool g_crc_ready;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78U : c >> 1;
        g_crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            g_crc_tab[t][i] = (g_crc_tab[t - 1][i] >> 8) ^
                              g_crc_tab[0][g_crc_tab[t - 1][i] & 0xff];
    g_crc_ready = true;
}

static uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    if (!g_crc_ready)
        crc32c_init();
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo = crc ^ get_le32(p);
        uint32_t hi = get_le32(p + 4);
        crc = g_crc_tab[7][lo & 0xff] ^ g_crc_tab[6][(lo >> 8) & 0xff] ^
              g_crc_tab[5][(lo >> 16) & 0xff] ^ g_crc_tab[4][lo >> 24] ^
              g_crc_tab[3][hi & 0xff] ^ g_crc_tab[2][(hi >> 8) & 0xff] ^
              g_crc_tab[1][(hi >> 16) & 0xff] ^ g_crc_tab[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ g_crc_tab[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

/* xoshiro256** seeded through splitmix64: reproducible offsets from --seed. */
struct rng {
    uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* Uniform in [0, n), n > 0, without modulo bias worth mentioning (n < 2^40). */
static uint64_t rng_below(struct rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *s == '-')
        return -EINVAL;
    uint64_t mul = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mul = 1ULL << 10;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1ULL << 20;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1ULL << 30;
        end++;
        break;
    case 't':
    case 'T':
        mul = 1ULL << 40;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'i' || *end == 'B')
        end++;
    if (*end == 'B')
        end++;
    if (*end != '\0' || (v && mul > UINT64_MAX / v))
        return -EINVAL;
    *out = v * mul;
    return 0;
}

/* ------------------------------------------------------------------ */
/* latency histogram: log-linear buckets over nanoseconds, <1.6% error */

#define HIST_SUB 64
#define HIST_EXP 40
struct hist {
    uint64_t b[HIST_EXP][HIST_SUB];
    uint64_t n, sum_ns, max_ns;
};

static void hist_add(struct hist *h, uint64_t ns)
{
    int e = 0;
    uint64_t v = ns;
    while (v >= 2 * HIST_SUB && e < HIST_EXP - 2) {
        v >>= 1;
        e++;
    }
    if (v >= 2 * HIST_SUB)
        v = 2 * HIST_SUB - 1;
    /* e == 0 holds 0..127 exactly in two rows; fold into sub index */
    if (e == 0) {
        h->b[v / HIST_SUB][v % HIST_SUB]++;
    } else {
        h->b[e + 1][v - HIST_SUB]++;
    }
    h->n++;
    h->sum_ns += ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

static uint64_t hist_bucket_value(int row, int sub)
{
    if (row <= 1)
        return (uint64_t)row * HIST_SUB + (uint64_t)sub;
    /* row = e + 1, value = (HIST_SUB + sub) << e, report the middle */
    int e = row - 1;
    return (((uint64_t)HIST_SUB + (uint64_t)sub) << e) + (1ULL << (e - 1));
}

static double hist_pct_us(const struct hist *h, double pct)
{
    if (h->n == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(pct / 100.0 * (double)h->n), seen = 0;
    if (want == 0)
        want = 1;
    for (int r = 0; r < HIST_EXP; r++)
        for (int s = 0; s < HIST_SUB; s++) {
            seen += h->b[r][s];
            if (seen >= want) {
                uint64_t v = hist_bucket_value(r, s);
                return (double)(v < h->max_ns ? v : h->max_ns) / 1000.0;
            }
        }
    return (double)h->max_ns / 1000.0;
}

static void hist_merge(struct hist *d, const struct hist *s)
{
    for (int r = 0; r < HIST_EXP; r++)
        for (int i = 0; i < HIST_SUB; i++)
            d->b[r][i] += s->b[r][i];
    d->n += s->n;
    d->sum_ns += s->sum_ns;
    if (s->max_ns > d->max_ns)
        d->max_ns = s->max_ns;
}

/* ------------------------------------------------------------------ */
/* options */

enum mode { MODE_READ, MODE_WRITE, MODE_RW, MODE_VERIFY };

struct opts {
    enum mode mode;
    bool rand;
    bool shuffle;    /* every unit once, in a seeded order */
    uint64_t stride; /* bytes between units' starts; 0: bs */
    uint64_t bs;
    int qd;
    double time_s;
    uint64_t count;
    uint64_t seed;
    bool seed_set;
    bool range_set;
    uint64_t range_start, range_len; /* bytes */
    bool json;
    int rwmix; /* percent reads */
    const char *journal;
    bool cont;
    int io_timeout;
    int reconnect_timeout;
    int sync_ms;
    bool fua;
    bool quiet;
    const char *started; /* created once the first command completed */
    const char *url;
    /* --hot PCT:FRAC[:REGION]: PCT % of random commands fall on FRAC % of
     * the range (hot_frac in 1/100 %), cut into regions of hot_region
     * bytes, the hot ones spread evenly over the range; 0: uniform. */
    int hot_pct;
    uint64_t hot_frac;
    uint64_t hot_region;
};

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: vdload [read|write|rw] [options] iscsi://HOST[:PORT]/TARGET-IQN/LUN\n"
        "       vdload verify --journal FILE [--qd N] [--json] iscsi://HOST[:PORT]/TARGET-IQN/LUN\n"
        "       vdload locate [--block-size N] FILE LBA...   (byte offsets of stamped blocks)\n"
        "\n"
        "  --mode read|write|rw      workload (or give it as the first word)\n"
        "  --rwmix PCT               percentage of reads in rw mode (default 50)\n"
        "  --pattern rand|seq|shuffle offsets (default rand, aligned to --bs);\n"
        "                            shuffle: each offset once, in an order\n"
        "                            fixed by --seed (first writes to fresh space)\n"
        "  --stride SIZE             distance between offsets (default --bs), e.g.\n"
        "                            a thin volume's chunk: one I/O per chunk\n"
        "  --bs SIZE                 transfer size, multiple of the LUN block size (default 4k)\n"
        "  --qd N                    commands in flight (default 32)\n"
        "  --time SECONDS            run time (default 10 unless --count is given)\n"
        "  --count N                 stop after N completed commands\n"
        "  --seed N                  offset generator seed (default: random, printed)\n"
        "  --range START:LEN         byte range of the LUN to use (default: whole LUN)\n"
        "  --hot PCT:FRAC[:REGION]   rand: PCT %% of commands fall on FRAC %% of the\n"
        "                            range, cut into REGION-sized pieces (default\n"
        "                            4M) of which every (100/FRAC)th is hot: the\n"
        "                            same set in every run (a working set)\n"
        "  --fua                     set FUA on writes\n"
        "  --verify JOURNAL          stamp written blocks, journal acknowledged writes\n"
        "  --journal JOURNAL         (verify) journal to check against\n"
        "  --continue-on-error       count I/O errors and connection loss, reconnect\n"
        "  --io-timeout SECONDS      per-command timeout (default 30)\n"
        "  --reconnect-timeout SEC   give up after this long without a session (default 60)\n"
        "  --sync-ms MS              fdatasync the journal at least this often (default 100)\n"
        "  --json                    print results as one JSON object\n"
        "  --quiet                   no progress messages on stderr\n"
        "  --started FILE            create FILE once the first command completed\n"
        "                            (scripts poll for it instead of sleeping)\n"
        "\n"
        "exit: 0 ok, 1 failure, 2 usage, 3 verify found lost/stale/corrupt blocks\n");
}

static int parse_mode(const char *s, enum mode *m)
{
    if (!strcmp(s, "read"))
        *m = MODE_READ;
    else if (!strcmp(s, "write"))
        *m = MODE_WRITE;
    else if (!strcmp(s, "rw"))
        *m = MODE_RW;
    else if (!strcmp(s, "verify"))
        *m = MODE_VERIFY;
    else
        return -EINVAL;
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        { "mode", required_argument, 0, 'm' },
        { "rwmix", required_argument, 0, 'x' },
        { "pattern", required_argument, 0, 'p' },
        { "bs", required_argument, 0, 'b' },
        { "qd", required_argument, 0, 'q' },
        { "time", required_argument, 0, 't' },
        { "count", required_argument, 0, 'n' },
        { "seed", required_argument, 0, 's' },
        { "range", required_argument, 0, 'r' },
        { "json", no_argument, 0, 'j' },
        { "verify", required_argument, 0, 'V' },
        { "journal", required_argument, 0, 'J' },
        { "continue-on-error", no_argument, 0, 'c' },
        { "io-timeout", required_argument, 0, 'T' },
        { "reconnect-timeout", required_argument, 0, 'R' },
        { "sync-ms", required_argument, 0, 'S' },
        { "fua", no_argument, 0, 'F' },
        { "quiet", no_argument, 0, 'Q' },
        { "started", required_argument, 0, 'W' },
        { "stride", required_argument, 0, 'D' },
        { "hot", required_argument, 0, 'H' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    char *end;
    int c;

    memset(o, 0, sizeof(*o));
    o->mode = MODE_READ;
    o->rand = true;
    o->bs = 4096;
    o->qd = 32;
    o->rwmix = 50;
    o->io_timeout = 30;
    o->reconnect_timeout = 60;
    o->sync_ms = 100;

    if (argc > 1 && argv[1][0] != '-' && parse_mode(argv[1], &o->mode) == 0) {
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (parse_mode(optarg, &o->mode) || o->mode == MODE_VERIFY) {
                err("--mode '%s': unknown mode; use read, write or rw", optarg);
                return -EINVAL;
            }
            break;
        case 'x':
            o->rwmix = (int)strtol(optarg, &end, 10);
            if (*end || o->rwmix < 0 || o->rwmix > 100) {
                err("--rwmix '%s': not a percentage 0..100", optarg);
                return -EINVAL;
            }
            break;
        case 'p':
            o->shuffle = false;
            if (!strcmp(optarg, "rand"))
                o->rand = true;
            else if (!strcmp(optarg, "seq"))
                o->rand = false;
            else if (!strcmp(optarg, "shuffle")) {
                o->rand = false;
                o->shuffle = true;
            } else {
                err("--pattern '%s': unknown pattern; use rand, seq or shuffle",
                    optarg);
                return -EINVAL;
            }
            break;
        case 'D':
            if (parse_size(optarg, &o->stride) || o->stride == 0 ||
                o->stride > (1ULL << 40)) {
                err("--stride '%s': not a size between 1 and 1T", optarg);
                return -EINVAL;
            }
            break;
        case 'b':
            if (parse_size(optarg, &o->bs) || o->bs == 0 ||
                o->bs > (64ULL << 20)) {
                err("--bs '%s': not a size between 1 and 64M", optarg);
                return -EINVAL;
            }
            break;
        case 'q':
            o->qd = (int)strtol(optarg, &end, 10);
            if (*end || o->qd < 1 || o->qd > 1024) {
                err("--qd '%s': not a number 1..1024", optarg);
                return -EINVAL;
            }
            break;
        case 't':
            o->time_s = strtod(optarg, &end);
            if (*end || !(o->time_s > 0) || o->time_s > 1e7) {
                err("--time '%s': not a positive number of seconds", optarg);
                return -EINVAL;
            }
            break;
        case 'n':
            if (parse_size(optarg, &o->count) || o->count == 0) {
                err("--count '%s': not a positive number", optarg);
                return -EINVAL;
            }
            break;
        case 's':
            errno = 0;
            o->seed = strtoull(optarg, &end, 0);
            if (errno || *end || end == optarg) {
                err("--seed '%s': not a number", optarg);
                return -EINVAL;
            }
            o->seed_set = true;
            break;
        case 'r': {
            char *colon = strchr(optarg, ':');
            if (!colon) {
                err("--range '%s': expected START:LEN in bytes", optarg);
                return -EINVAL;
            }
            *colon = '\0';
            if (parse_size(optarg, &o->range_start) ||
                parse_size(colon + 1, &o->range_len) || o->range_len == 0) {
                *colon = ':';
                err("--range '%s': expected START:LEN in bytes (suffixes k, M, G)",
                    optarg);
                return -EINVAL;
            }
            *colon = ':';
            o->range_set = true;
            break;
        }
        case 'H': {
            /* PCT:FRAC[:REGION], FRAC may have up to two decimals */
            char *a = optarg, *b = strchr(a, ':'), *c2, *end;
            double frac;
            long pct;
            o->hot_region = 4u << 20;
            if (!b)
                goto bad_hot;
            pct = strtol(a, &end, 10);
            if (end != b || pct < 1 || pct > 100)
                goto bad_hot;
            frac = strtod(b + 1, &end);
            c2 = strchr(b + 1, ':');
            if (end != (c2 ? c2 : b + 1 + strlen(b + 1)) || !(frac > 0) ||
                frac > 100)
                goto bad_hot;
            if (c2 && (parse_size(c2 + 1, &o->hot_region) || !o->hot_region))
                goto bad_hot;
            o->hot_pct = (int)pct;
            o->hot_frac = (uint64_t)(frac * 100 + 0.5);
            break;
        bad_hot:
            err("--hot '%s': expected PCT:FRAC[:REGION], e.g. 90:10 (90%% of "
                "the I/O on 10%% of the range, 4 MiB regions)",
                optarg);
            return -EINVAL;
        }
        case 'j':
            o->json = true;
            break;
        case 'V':
            o->journal = optarg;
            break;
        case 'J':
            o->journal = optarg;
            break;
        case 'c':
            o->cont = true;
            break;
        case 'T':
            o->io_timeout = (int)strtol(optarg, &end, 10);
            if (*end || o->io_timeout < 1 || o->io_timeout > 3600) {
                err("--io-timeout '%s': not a number of seconds 1..3600",
                    optarg);
                return -EINVAL;
            }
            break;
        case 'R':
            o->reconnect_timeout = (int)strtol(optarg, &end, 10);
            if (*end || o->reconnect_timeout < 0) {
                err("--reconnect-timeout '%s': not a number of seconds",
                    optarg);
                return -EINVAL;
            }
            break;
        case 'S':
            o->sync_ms = (int)strtol(optarg, &end, 10);
            if (*end || o->sync_ms < 0) {
                err("--sync-ms '%s': not a number of milliseconds", optarg);
                return -EINVAL;
            }
            break;
        case 'F':
            o->fua = true;
            break;
        case 'Q':
            o->quiet = true;
            break;
        case 'W':
            o->started = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind != argc - 1) {
        err("expected exactly one iscsi:// URL after the options");
        usage(stderr);
        return -EINVAL;
    }
    o->url = argv[optind];
    if (o->mode == MODE_VERIFY && !o->journal) {
        err("verify: --journal FILE is required");
        return -EINVAL;
    }
    if (o->mode == MODE_READ && o->journal) {
        err("--verify: only write and rw runs write a journal");
        return -EINVAL;
    }
    if (o->mode == MODE_VERIFY) {
        /* verify reads every journalled block, however long it takes */
        o->time_s = 0;
        o->count = 0;
    } else if (o->time_s == 0 && o->count == 0) {
        o->time_s = 10;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* connection */

struct conn {
    struct iscsi_context *iscsi;
    int lun;
    char portal[512];
    char target[512];
    uint32_t block_size;
    uint64_t nblocks;
    uint64_t connects;
};

static int conn_open(struct conn *c, const struct opts *o, bool verbose)
{
    char initiator[128];
    struct iscsi_url *u;
    struct scsi_task *t;
    struct scsi_readcapacity16 *rc;
    uint32_t bs;
    uint64_t nb;

    snprintf(initiator, sizeof(initiator), "iqn.2024-01.org.vdlvm:vdload-%d",
             (int)getpid());
    c->iscsi = iscsi_create_context(initiator);
    if (!c->iscsi) {
        err("target '%s': cannot create iSCSI context: out of memory", o->url);
        return -ENOMEM;
    }
    u = iscsi_parse_full_url(c->iscsi, o->url);
    if (!u) {
        err("target '%s': bad URL: %s", o->url, iscsi_get_error(c->iscsi));
        goto fail_einval;
    }
    snprintf(c->portal, sizeof(c->portal), "%s", u->portal);
    snprintf(c->target, sizeof(c->target), "%s", u->target);
    c->lun = u->lun;
    iscsi_destroy_url(u);
    iscsi_set_session_type(c->iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(c->iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
    iscsi_set_noautoreconnect(c->iscsi, 1);
    iscsi_set_timeout(c->iscsi, o->io_timeout);
    if (iscsi_full_connect_sync(c->iscsi, c->portal, c->lun) != 0) {
        if (verbose)
            err("target '%s': login failed: %s", o->url,
                iscsi_get_error(c->iscsi));
        goto fail_eio;
    }
    t = iscsi_readcapacity16_sync(c->iscsi, c->lun);
    if (!t || t->status != SCSI_STATUS_GOOD) {
        if (verbose)
            err("target '%s': READ CAPACITY(16) failed: %s", o->url,
                iscsi_get_error(c->iscsi));
        if (t)
            scsi_free_scsi_task(t);
        goto fail_eio;
    }
    rc = scsi_datain_unmarshall(t);
    if (!rc || rc->block_length == 0 || rc->block_length % 512) {
        err("target '%s': READ CAPACITY(16) returned no usable block size",
            o->url);
        scsi_free_scsi_task(t);
        goto fail_eio;
    }
    bs = rc->block_length;
    nb = rc->returned_lba + 1;
    scsi_free_scsi_task(t);
    if (c->block_size && (bs != c->block_size || nb != c->nblocks)) {
        err("target '%s': LUN geometry changed across reconnect: %" PRIu64
            "x%u, was %" PRIu64 "x%u",
            o->url, nb, bs, c->nblocks, c->block_size);
        goto fail_eio;
    }
    c->block_size = bs;
    c->nblocks = nb;
    c->connects++;
    return 0;

fail_einval:
    iscsi_destroy_context(c->iscsi);
    c->iscsi = NULL;
    return -EINVAL;
fail_eio:
    iscsi_destroy_context(c->iscsi);
    c->iscsi = NULL;
    return -EIO;
}

/* ------------------------------------------------------------------ */
/* journal */

struct journal {
    int fd;
    const char *path;
    uint8_t *buf;
    size_t used, cap;
    uint64_t last_sync_ns;
    uint64_t records;
    bool failed;
};

static void jrec_fill(uint8_t *r, int type, uint64_t lba, uint64_t seq,
                      uint64_t run, uint32_t nblocks)
{
    memset(r, 0, JREC_SIZE);
    put_le32(r, JREC_MAGIC);
    r[4] = (uint8_t)type;
    put_le64(r + 8, lba);
    put_le64(r + 16, seq);
    put_le64(r + 24, run);
    put_le32(r + 32, nblocks);
    put_le32(r + 36, crc32c(0, r, 36));
}

static bool jrec_valid(const uint8_t *r)
{
    return get_le32(r) == JREC_MAGIC && r[4] >= JREC_RUN &&
           r[4] <= JREC_DOUBT && get_le32(r + 36) == crc32c(0, r, 36);
}

/* Scan a journal, calling fn for each valid record up to the first invalid one
 * (a torn tail).  Sets *valid_len to the byte length of the valid prefix. */
typedef int (*jrec_fn)(const uint8_t *rec, void *arg);

static int journal_scan(int fd, const char *path, jrec_fn fn, void *arg,
                        off_t *valid_len, uint64_t *torn)
{
    static uint8_t buf[JREC_SIZE * 4096];
    off_t off = 0;
    size_t have = 0;
    bool stop = false;

    *torn = 0;
    for (;;) {
        ssize_t n =
            pread(fd, buf + have, sizeof(buf) - have, off + (off_t)have);
        if (n < 0) {
            err("journal '%s': read failed: %s", path, strerror(errno));
            return -errno;
        }
        have += (size_t)n;
        size_t i = 0;
        for (; i + JREC_SIZE <= have; i += JREC_SIZE) {
            if (!jrec_valid(buf + i)) {
                stop = true;
                break;
            }
            int rc = fn ? fn(buf + i, arg) : 0;
            if (rc)
                return rc;
        }
        off += (off_t)i;
        if (stop || n == 0) {
            struct stat st;
            if (fstat(fd, &st) == 0 && st.st_size > off)
                *torn = (uint64_t)(st.st_size - off);
            break;
        }
        memmove(buf, buf + i, have - i);
        have -= i;
    }
    *valid_len = off;
    return 0;
}

struct jinfo {
    uint64_t max_seq;
    uint32_t block_size;
    uint64_t runs;
};

static int jinfo_rec(const uint8_t *r, void *arg)
{
    struct jinfo *ji = arg;
    uint64_t seq = get_le64(r + 16);
    if (r[4] == JREC_RUN) {
        ji->block_size = get_le32(r + 32);
        ji->runs++;
    }
    if (seq > ji->max_seq)
        ji->max_seq = seq;
    return 0;
}

/* Open (or create) a journal for appending.  A torn tail from an earlier
 * crashed run is cut off so new records follow the valid prefix. */
static int journal_open(struct journal *j, const char *path,
                        uint32_t block_size, uint64_t *next_seq)
{
    struct jinfo ji = { 0 };
    off_t len;
    uint64_t torn;
    int rc;

    memset(j, 0, sizeof(*j));
    j->path = path;
    j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (j->fd < 0) {
        rc = -errno;
        err("journal '%s': open failed: %s", path, strerror(errno));
        return rc;
    }
    if (flock(j->fd, LOCK_EX | LOCK_NB) != 0) {
        rc = -errno;
        err("journal '%s': in use by another vdload (%s); use another journal",
            path, strerror(errno));
        goto fail;
    }
    rc = journal_scan(j->fd, path, jinfo_rec, &ji, &len, &torn);
    if (rc)
        goto fail;
    if (ji.runs && ji.block_size != block_size) {
        err("journal '%s': written for block size %u, LUN has %u; use a new journal",
            path, ji.block_size, block_size);
        rc = -EINVAL;
        goto fail;
    }
    if (torn) {
        err("journal '%s': ignoring %" PRIu64 " bytes of torn tail", path,
            torn);
        if (ftruncate(j->fd, len) != 0) {
            rc = -errno;
            err("journal '%s': truncate failed: %s", path, strerror(errno));
            goto fail;
        }
    }
    if (lseek(j->fd, len, SEEK_SET) < 0) {
        rc = -errno;
        goto fail;
    }
    j->cap = JREC_SIZE * 8192;
    j->buf = malloc(j->cap);
    if (!j->buf) {
        rc = -ENOMEM;
        goto fail;
    }
    *next_seq = ji.max_seq + 1;
    j->last_sync_ns = now_ns();
    return 0;
fail:
    close(j->fd);
    j->fd = -1;
    return rc;
}

static int journal_flush(struct journal *j, bool sync)
{
    size_t off = 0;
    if (j->fd < 0 || j->failed)
        return -EIO;
    while (off < j->used) {
        ssize_t n = write(j->fd, j->buf + off, j->used - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err("journal '%s': write failed: %s", j->path, strerror(errno));
            j->failed = true;
            return -errno;
        }
        off += (size_t)n;
    }
    j->used = 0;
    if (sync) {
        if (fdatasync(j->fd) != 0) {
            err("journal '%s': fdatasync failed: %s", j->path, strerror(errno));
            j->failed = true;
            return -EIO;
        }
        j->last_sync_ns = now_ns();
    }
    return 0;
}

static void journal_add(struct journal *j, int type, uint64_t lba, uint64_t seq,
                        uint64_t run, uint32_t nblocks)
{
    if (j->used + JREC_SIZE > j->cap)
        journal_flush(j, false);
    jrec_fill(j->buf + j->used, type, lba, seq, run, nblocks);
    j->used += JREC_SIZE;
    j->records++;
}

static void journal_close(struct journal *j)
{
    if (j->fd < 0)
        return;
    journal_flush(j, true);
    close(j->fd);
    j->fd = -1;
    free(j->buf);
    j->buf = NULL;
}

/* ------------------------------------------------------------------ */
/* block stamps */

static void stamp_block(uint8_t *b, uint32_t bsz, uint64_t lba, uint64_t seq,
                        uint64_t run)
{
    uint64_t x = run ^ (lba * 0x9e3779b97f4a7c15ULL) ^ (seq << 17);
    put_le64(b + STAMP_MAGIC_OFF, BLOCK_MAGIC);
    put_le64(b + STAMP_LBA_OFF, lba);
    put_le64(b + STAMP_SEQ_OFF, seq);
    put_le64(b + STAMP_RUN_OFF, run);
    put_le32(b + STAMP_CRC_OFF, 0);
    for (uint32_t i = 40; i + 8 <= bsz; i += 8)
        put_le64(b + i, splitmix64(&x));
    memset(b + STAMP_SIZE, 0, 4);
    put_le32(b + STAMP_CRC_OFF, crc32c(0, b, bsz));
}

enum bstate { B_OK, B_LOST, B_STALE, B_CORRUPT, B_NSTATES };
static const char *const g_bstate_name[B_NSTATES] = { "ok", "lost", "stale",
                                                      "corrupt" };

struct runset {
    uint64_t *ids;
    size_t n, cap;
};

static bool runset_has(const struct runset *s, uint64_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->ids[i] == id)
            return true;
    return false;
}

static int runset_add(struct runset *s, uint64_t id)
{
    if (runset_has(s, id))
        return 0;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        uint64_t *p = realloc(s->ids, nc * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->ids = p;
        s->cap = nc;
    }
    s->ids[s->n++] = id;
    return 0;
}

/* acked == 0: no acknowledged write, only in-doubt ones. */
static enum bstate check_block(uint8_t *b, uint32_t bsz, uint64_t lba,
                               uint64_t acked, const struct runset *runs)
{
    bool zero = true;
    for (uint32_t i = 0; i < bsz; i += 8)
        if (get_le64(b + i)) {
            zero = false;
            break;
        }
    if (zero)
        return acked ? B_LOST : B_OK;
    uint32_t crc = get_le32(b + STAMP_CRC_OFF);
    put_le32(b + STAMP_CRC_OFF, 0);
    bool valid = get_le64(b + STAMP_MAGIC_OFF) == BLOCK_MAGIC &&
                 crc32c(0, b, bsz) == crc;
    put_le32(b + STAMP_CRC_OFF, crc);
    if (!valid)
        return acked ? B_CORRUPT : B_OK;
    if (get_le64(b + STAMP_LBA_OFF) != lba)
        return B_CORRUPT;
    if (!acked)
        return B_OK;
    if (!runset_has(runs, get_le64(b + STAMP_RUN_OFF)))
        return B_LOST;
    if (get_le64(b + STAMP_SEQ_OFF) < acked)
        return B_STALE;
    return B_OK;
}

/* Set of --bs units whose newest write is in doubt.  A timed-out command may
 * still be executed by the target later; writing such a unit again could let
 * the late, older write land over a newer acknowledged one, which verify
 * would rightly call stale.  So a run never writes an in-doubt unit again. */
struct uset {
    uint64_t *v; /* value + 1; 0 = empty slot */
    size_t n, cap;
};

static bool uset_has(const struct uset *u, uint64_t x)
{
    if (!u->cap)
        return false;
    size_t i = (size_t)((x * 0x9e3779b97f4a7c15ULL) >> 20) & (u->cap - 1);
    while (u->v[i]) {
        if (u->v[i] == x + 1)
            return true;
        i = (i + 1) & (u->cap - 1);
    }
    return false;
}

static int uset_add(struct uset *u, uint64_t x)
{
    if (uset_has(u, x))
        return 0;
    if ((u->n + 1) * 2 > u->cap) {
        size_t nc = u->cap ? u->cap * 2 : 1024;
        uint64_t *nv = calloc(nc, sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        struct uset t = { nv, 0, nc };
        for (size_t i = 0; i < u->cap; i++)
            if (u->v[i])
                uset_add(&t, u->v[i] - 1);
        free(u->v);
        *u = t;
    }
    size_t i = (size_t)((x * 0x9e3779b97f4a7c15ULL) >> 20) & (u->cap - 1);
    while (u->v[i])
        i = (i + 1) & (u->cap - 1);
    u->v[i] = x + 1;
    u->n++;
    return 0;
}

/* ------------------------------------------------------------------ */
/* the I/O engine shared by load and verify */

struct slot {
    struct engine *e;
    bool busy;
    bool is_write;
    uint64_t lba;
    uint32_t nblocks;
    uint64_t seq;
    uint64_t t0;
    uint8_t *buf;
    struct scsi_iovec iov;
    struct scsi_task *task;
};

struct dirstats {
    struct hist h;
    uint64_t ios, bytes;
};

struct engine {
    const struct opts *o;
    struct conn c;
    struct slot *slots;
    int inflight;
    struct rng rng;
    uint64_t seed;
    uint64_t run_id;
    uint64_t next_seq;
    uint64_t first_seq;
    /* LBA range in blocks, and its size in --bs units */
    uint64_t r_lba, r_nblocks, units, seq_next_unit;
    uint64_t stride_blocks; /* blocks between units (>= bs_blocks) */
    /* --hot: units per region, regions in the range, hot regions */
    uint64_t hot_upr, hot_nreg, hot_n;
    uint64_t perm_a, perm_b; /* shuffle: unit i = (a * i + b) mod units */
    uint32_t bs_blocks;
    struct journal j;
    bool verify_writes;
    struct uset doubt_units;
    uint8_t *pattern; /* non-verify write payload */
    /* counters */
    struct dirstats rd, wr;
    uint64_t issued, completed;
    uint64_t errors, timeouts, cancelled, in_doubt, reconnects, lost_conn;
    bool need_reconnect;
    bool fatal;
    char first_error[256];
    /* verify mode */
    uint64_t *idx; /* per LBA: acked seq << 1 | mentioned */
    size_t idx_bytes;
    struct runset runs;
    uint64_t vcount[B_NSTATES];
    uint64_t *bad[B_NSTATES];
    size_t nbad[B_NSTATES], capbad[B_NSTATES];
    uint64_t vscan; /* next LBA to look at */
    struct retry {
        uint64_t lba;
        uint32_t n, tries;
        bool queued;
    } * retries;
    size_t nretry, capretry;
    uint64_t blocks_checked;
};

static volatile sig_atomic_t g_stop;
static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void note_error(struct engine *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note_error(struct engine *e, const char *fmt, ...)
{
    va_list ap;
    char msg[256];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!e->first_error[0])
        snprintf(e->first_error, sizeof(e->first_error), "%s", msg);
    if (!e->o->quiet && (e->errors <= 10 || !e->o->cont))
        err("target '%s': %s", e->o->url, msg);
    if (!e->o->cont)
        e->fatal = true;
}

static void bad_add(struct engine *e, enum bstate s, uint64_t lba)
{
    e->vcount[s]++;
    if (s == B_OK || e->nbad[s] >= 1000000)
        return;
    if (e->nbad[s] == e->capbad[s]) {
        size_t nc = e->capbad[s] ? e->capbad[s] * 2 : 256;
        uint64_t *p = realloc(e->bad[s], nc * sizeof(*p));
        if (!p)
            return;
        e->bad[s] = p;
        e->capbad[s] = nc;
    }
    e->bad[s][e->nbad[s]++] = lba;
}

static void mark_in_doubt(struct engine *e, struct slot *s)
{
    journal_add(&e->j, JREC_DOUBT, s->lba, s->seq, e->run_id, s->nblocks);
    e->in_doubt++;
    if (uset_add(&e->doubt_units, (s->lba - e->r_lba) / e->stride_blocks) &&
        !e->o->quiet)
        err("out of memory for the in-doubt set; verify may report stale blocks");
}

/* Verify with --continue-on-error: a read that failed is tried again (after
 * the reconnect, if any) up to VERIFY_TRIES times; then its blocks count as
 * unreadable, reported as lost rather than silently ok. */
#define VERIFY_TRIES 3
static void retry_add(struct engine *e, uint64_t lba, uint32_t n)
{
    struct retry *r = NULL;
    uint32_t tries = 1;
    for (size_t i = 0; i < e->nretry; i++)
        if (e->retries[i].lba == lba && e->retries[i].n == n &&
            e->retries[i].queued == false) {
            r = &e->retries[i];
            break;
        }
    if (r) {
        tries = r->tries + 1;
    } else {
        if (e->nretry == e->capretry) {
            size_t nc = e->capretry ? e->capretry * 2 : 64;
            struct retry *p = realloc(e->retries, nc * sizeof(*p));
            if (!p) {
                for (uint32_t i = 0; i < n; i++)
                    bad_add(e, B_LOST, lba + i);
                return;
            }
            e->retries = p;
            e->capretry = nc;
        }
        r = &e->retries[e->nretry++];
        r->lba = lba;
        r->n = n;
    }
    r->tries = tries;
    r->queued = true;
    if (tries > VERIFY_TRIES) {
        r->queued = false;
        err("target '%s': read lba %" PRIu64
            " +%u failed %d times; counting the blocks as lost",
            e->o->url, lba, n, VERIFY_TRIES);
        for (uint32_t i = 0; i < n; i++)
            bad_add(e, B_LOST, lba + i);
    }
}

/* --started FILE: tell a waiting script that the load runs. */
static void mark_started(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

    if (fd < 0) {
        err("--started '%s': cannot create it: %s", path, strerror(errno));
        return;
    }
    close(fd);
}

static void io_done(struct iscsi_context *iscsi, int status, void *data,
                    void *priv)
{
    struct slot *s = priv;
    struct engine *e = s->e;
    struct scsi_task *task = data ? data : s->task;
    uint64_t lat = now_ns() - s->t0;
    const char *what = s->is_write ? "write" : "read";
    uint64_t bytes = (uint64_t)s->nblocks * e->c.block_size;
    (void)iscsi;

    if (status == SCSI_STATUS_GOOD) {
        struct dirstats *d = s->is_write ? &e->wr : &e->rd;
        hist_add(&d->h, lat);
        d->ios++;
        d->bytes += bytes;
        e->completed++;
        if (e->completed == 1 && e->o->started)
            mark_started(e->o->started);
        if (s->is_write && e->verify_writes)
            journal_add(&e->j, JREC_ACK, s->lba, s->seq, e->run_id, s->nblocks);
        if (e->o->mode == MODE_VERIFY) {
            for (uint32_t i = 0; i < s->nblocks; i++) {
                uint64_t lba = s->lba + i;
                enum bstate st = check_block(
                    s->buf + (size_t)i * e->c.block_size, e->c.block_size, lba,
                    e->idx[lba] >> 1, &e->runs);
                bad_add(e, st, lba);
                e->blocks_checked++;
            }
        }
    } else {
        e->errors++;
        if (status == SCSI_STATUS_TIMEOUT) {
            e->timeouts++;
            e->need_reconnect = true;
            note_error(e, "%s lba %" PRIu64 " +%u: timed out after %d s", what,
                       s->lba, s->nblocks, e->o->io_timeout);
        } else if (status == SCSI_STATUS_CANCELLED) {
            e->cancelled++;
            /* libiscsi without auto-reconnect cancels every task
			 * when the connection drops ("deferred reconnect") */
            e->need_reconnect = true;
            note_error(e,
                       "%s lba %" PRIu64 " +%u: cancelled by lost connection",
                       what, s->lba, s->nblocks);
        } else if (status == SCSI_STATUS_CHECK_CONDITION && task) {
            note_error(e, "%s lba %" PRIu64 " +%u: CHECK CONDITION %s/%s", what,
                       s->lba, s->nblocks, scsi_sense_key_str(task->sense.key),
                       scsi_sense_ascq_str(task->sense.ascq));
        } else {
            note_error(e, "%s lba %" PRIu64 " +%u: status 0x%x: %s", what,
                       s->lba, s->nblocks, (unsigned)status,
                       iscsi_get_error(iscsi));
            if (status == SCSI_STATUS_ERROR)
                e->need_reconnect = true;
        }
        if (s->is_write && e->verify_writes)
            mark_in_doubt(e, s);
        if (e->o->mode == MODE_VERIFY && e->o->cont)
            retry_add(e, s->lba, s->nblocks);
    }
    if (task)
        scsi_free_scsi_task(task);
    s->task = NULL;
    s->busy = false;
    e->inflight--;
}

static bool overlaps_inflight(struct engine *e, uint64_t lba, uint32_t n)
{
    for (int i = 0; i < e->o->qd; i++) {
        struct slot *s = &e->slots[i];
        if (s->busy && lba < s->lba + s->nblocks && s->lba < lba + n)
            return true;
    }
    return false;
}

/* Pick the next command for load mode.  Returns false when nothing can be
 * issued right now (every candidate overlaps an in-flight write). */
static bool pick_load(struct engine *e, struct slot *s)
{
    const struct opts *o = e->o;
    bool w =
        o->mode == MODE_WRITE ||
        (o->mode == MODE_RW && rng_below(&e->rng, 100) >= (uint64_t)o->rwmix);
    for (int tries = 0; tries < 8; tries++) {
        uint64_t unit;
        if (o->rand && e->hot_n &&
            rng_below(&e->rng, 100) < (uint64_t)o->hot_pct) {
            /* hot region i of hot_n sits at region i * nreg / hot_n */
            uint64_t i = rng_below(&e->rng, e->hot_n);
            uint64_t reg = i * e->hot_nreg / e->hot_n;
            unit = reg * e->hot_upr + rng_below(&e->rng, e->hot_upr);
            if (unit >= e->units)
                unit = e->units - 1;
        } else if (o->rand)
            unit = rng_below(&e->rng, e->units);
        else if (o->shuffle) /* a bijection of [0, units): gcd(a, units) = 1 */
            unit = (uint64_t)(((unsigned __int128)e->perm_a * e->seq_next_unit +
                               e->perm_b) %
                              e->units);
        else
            unit = e->seq_next_unit;
        uint64_t lba = e->r_lba + unit * e->stride_blocks;
        /* Two writes in flight to one block would make the newest
		 * acknowledged one ambiguous: never overlap in-flight I/O. */
        if (overlaps_inflight(e, lba, e->bs_blocks)) {
            if (!o->rand)
                return false;
            continue;
        }
        if (!o->rand)
            e->seq_next_unit = (e->seq_next_unit + 1) % e->units;
        if (w && e->verify_writes && uset_has(&e->doubt_units, unit))
            continue;
        s->lba = lba;
        s->nblocks = e->bs_blocks;
        s->is_write = w;
        return true;
    }
    return false;
}

/* Verify mode: next run of mentioned LBAs, at most bs_blocks long. */
static bool pick_verify(struct engine *e, struct slot *s)
{
    uint64_t end = e->c.nblocks;
    for (size_t i = 0; i < e->nretry; i++) {
        struct retry *r = &e->retries[i];
        if (r->queued) {
            r->queued = false;
            s->lba = r->lba;
            s->nblocks = r->n;
            s->is_write = false;
            return true;
        }
    }
    while (e->vscan < end) {
        /* skip whole untouched index pages quickly */
        if ((e->vscan & 511) == 0 && e->vscan + 512 <= end) {
            bool any = false;
            for (int i = 0; i < 512; i++)
                if (e->idx[e->vscan + (uint64_t)i]) {
                    any = true;
                    break;
                }
            if (!any) {
                e->vscan += 512;
                continue;
            }
        }
        if (!e->idx[e->vscan]) {
            e->vscan++;
            continue;
        }
        uint64_t start = e->vscan;
        uint32_t n = 0;
        while (e->vscan < end && n < e->bs_blocks && e->idx[e->vscan]) {
            e->vscan++;
            n++;
        }
        s->lba = start;
        s->nblocks = n;
        s->is_write = false;
        return true;
    }
    return false;
}

static int issue(struct engine *e, struct slot *s)
{
    struct iscsi_context *ic = e->c.iscsi;
    uint32_t bsz = e->c.block_size;
    uint32_t len = s->nblocks * bsz;

    s->iov.iov_len = len;
    if (s->is_write) {
        if (e->verify_writes) {
            s->seq = e->next_seq++;
            for (uint32_t i = 0; i < s->nblocks; i++)
                stamp_block(s->buf + (size_t)i * bsz, bsz, s->lba + i, s->seq,
                            e->run_id);
            s->iov.iov_base = s->buf;
        } else {
            s->iov.iov_base = e->pattern;
        }
        s->t0 = now_ns();
        s->task =
            iscsi_write16_iov_task(ic, e->c.lun, s->lba, NULL, len, (int)bsz, 0,
                                   0, e->o->fua, 0, 0, io_done, s, &s->iov, 1);
    } else {
        s->iov.iov_base = s->buf;
        s->t0 = now_ns();
        s->task = iscsi_read16_iov_task(ic, e->c.lun, s->lba, len, (int)bsz, 0,
                                        0, 0, 0, 0, io_done, s, &s->iov, 1);
    }
    if (!s->task) {
        e->errors++;
        e->need_reconnect = true;
        note_error(e, "cannot queue %s lba %" PRIu64 ": %s",
                   s->is_write ? "write" : "read", s->lba, iscsi_get_error(ic));
        if (s->is_write && e->verify_writes)
            mark_in_doubt(e, s);
        return -EIO;
    }
    s->busy = true;
    e->inflight++;
    e->issued++;
    return 0;
}

/* Drop the session: every in-flight command completes as CANCELLED (writes
 * become in doubt).  Then log in again with backoff until the deadline. */
static int reconnect(struct engine *e, uint64_t deadline_ns)
{
    uint64_t backoff_ms = 100;
    uint64_t give_up =
        now_ns() + (uint64_t)e->o->reconnect_timeout * 1000000000ULL;

    if (e->c.iscsi) {
        iscsi_destroy_context(e->c.iscsi);
        e->c.iscsi = NULL;
    }
    e->need_reconnect = false;
    journal_flush(&e->j, true);
    while (!g_stop) {
        uint64_t t = now_ns();
        if ((deadline_ns && t >= deadline_ns) ||
            (e->o->reconnect_timeout && t >= give_up))
            break;
        if (conn_open(&e->c, e->o, false) == 0) {
            e->reconnects++;
            if (!e->o->quiet)
                err("target '%s': reconnected", e->o->url);
            return 0;
        }
        struct timespec ts = { (time_t)(backoff_ms / 1000),
                               (long)(backoff_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
        if (backoff_ms < 2000)
            backoff_ms *= 2;
    }
    if (!g_stop && !(deadline_ns && now_ns() >= deadline_ns))
        err("target '%s': no session for %d s; giving up", e->o->url,
            e->o->reconnect_timeout);
    return -ETIMEDOUT;
}

/* Run the engine until done.  Returns 0 or -errno. */
static int engine_run(struct engine *e)
{
    const struct opts *o = e->o;
    uint64_t t_start = now_ns();
    uint64_t deadline =
        o->time_s > 0 ? t_start + (uint64_t)(o->time_s * 1e9) : 0;
    uint64_t last_tick = t_start;
    uint64_t drain_deadline = 0;
    bool stopping = false;
    int rc = 0;

    for (;;) {
        uint64_t t = now_ns();
        if (!stopping) {
            bool done = g_stop || e->fatal || (deadline && t >= deadline);
            if (o->mode != MODE_VERIFY && o->count && e->issued >= o->count &&
                e->inflight == 0)
                done = true;
            if (o->mode == MODE_VERIFY && e->vscan >= e->c.nblocks &&
                e->inflight == 0) {
                done = true;
                for (size_t i = 0; i < e->nretry; i++)
                    if (e->retries[i].queued)
                        done = false;
            }
            if (done) {
                stopping = true;
                drain_deadline =
                    t + (uint64_t)(o->io_timeout + 5) * 1000000000ULL;
            }
        }
        if (stopping &&
            (e->inflight == 0 || t >= drain_deadline || !e->c.iscsi))
            break;

        if (e->need_reconnect && !stopping) {
            if (!o->cont) {
                e->fatal = true;
                continue;
            }
            e->lost_conn++;
            if (reconnect(e, deadline) != 0) {
                rc = -ETIMEDOUT;
                break;
            }
            continue;
        }

        /* keep the queue full */
        while (!stopping && !e->need_reconnect && e->inflight < o->qd) {
            if (o->mode != MODE_VERIFY && o->count && e->issued >= o->count)
                break;
            struct slot *s = NULL;
            for (int i = 0; i < o->qd; i++)
                if (!e->slots[i].busy) {
                    s = &e->slots[i];
                    break;
                }
            if (!s)
                break;
            bool ok =
                o->mode == MODE_VERIFY ? pick_verify(e, s) : pick_load(e, s);
            if (!ok || issue(e, s) != 0)
                break;
        }

        struct pollfd pfd = { .fd = iscsi_get_fd(e->c.iscsi),
                              .events = (short)iscsi_which_events(e->c.iscsi) };
        int n = poll(&pfd, pfd.events ? 1 : 0, 100);
        if (n < 0 && errno != EINTR) {
            rc = -errno;
            err("poll failed: %s", strerror(errno));
            break;
        }
        t = now_ns();
        if (n > 0 || t - last_tick >= 250000000ULL) {
            /* revents 0 runs libiscsi's timeout scan */
            if (iscsi_service(e->c.iscsi, n > 0 ? pfd.revents : 0) < 0) {
                if (!e->need_reconnect)
                    note_error(e, "connection lost: %s",
                               iscsi_get_error(e->c.iscsi));
                e->need_reconnect = true;
                if (stopping) {
                    iscsi_destroy_context(e->c.iscsi);
                    e->c.iscsi = NULL;
                }
            }
            if (n == 0)
                last_tick = t;
        }
        if (e->verify_writes) {
            bool sync =
                o->sync_ms == 0 ||
                t - e->j.last_sync_ns >= (uint64_t)o->sync_ms * 1000000ULL;
            if (journal_flush(&e->j, sync) != 0) {
                e->fatal = true;
                rc = -EIO;
            }
        }
    }
    if (e->c.iscsi && e->inflight) {
        /* drain timed out: cancel, which turns writes in doubt */
        iscsi_destroy_context(e->c.iscsi);
        e->c.iscsi = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* reporting */

static void print_dir_json(const char *name, const struct dirstats *d,
                           double secs, bool comma)
{
    printf(
        "\"%s\":{\"ios\":%" PRIu64 ",\"bytes\":%" PRIu64
        ",\"iops\":%.1f,\"mbps\":%.2f,"
        "\"lat_us\":{\"mean\":%.1f,\"p50\":%.1f,\"p99\":%.1f,\"p99_9\":%.1f,\"max\":%.1f}}%s",
        name, d->ios, d->bytes, secs > 0 ? (double)d->ios / secs : 0,
        secs > 0 ? (double)d->bytes / secs / 1e6 : 0,
        d->h.n ? (double)d->h.sum_ns / (double)d->h.n / 1000.0 : 0,
        hist_pct_us(&d->h, 50), hist_pct_us(&d->h, 99),
        hist_pct_us(&d->h, 99.9), (double)d->h.max_ns / 1000.0,
        comma ? "," : "");
}

static void print_dir_text(const char *name, const struct dirstats *d,
                           double secs)
{
    printf(
        "%-5s %10" PRIu64
        " IOs %10.0f IOPS %9.2f MB/s  lat us p50 %.0f p99 %.0f p99.9 %.0f max %.0f\n",
        name, d->ios, secs > 0 ? (double)d->ios / secs : 0,
        secs > 0 ? (double)d->bytes / secs / 1e6 : 0, hist_pct_us(&d->h, 50),
        hist_pct_us(&d->h, 99), hist_pct_us(&d->h, 99.9),
        (double)d->h.max_ns / 1000.0);
}

static void report_load(struct engine *e, double secs)
{
    const struct opts *o = e->o;
    static const char *const mname[] = { "read", "write", "rw", "verify" };
    struct dirstats all = { 0 };
    hist_merge(&all.h, &e->rd.h);
    hist_merge(&all.h, &e->wr.h);
    all.ios = e->rd.ios + e->wr.ios;
    all.bytes = e->rd.bytes + e->wr.bytes;

    if (o->json) {
        printf("{\"mode\":\"%s\",\"pattern\":\"%s\",\"bs\":%" PRIu64
               ",\"qd\":%d,"
               "\"seed\":%" PRIu64 ",\"seconds\":%.3f,\"block_size\":%u,",
               mname[o->mode],
               o->rand      ? "rand"
               : o->shuffle ? "shuffle"
                            : "seq",
               o->bs, o->qd, e->seed, secs, e->c.block_size);
        print_dir_json("total", &all, secs, true);
        print_dir_json("read", &e->rd, secs, true);
        print_dir_json("write", &e->wr, secs, true);
        printf("\"errors\":%" PRIu64 ",\"timeouts\":%" PRIu64
               ",\"cancelled\":%" PRIu64 ",\"in_doubt\":%" PRIu64
               ",\"reconnects\":%" PRIu64,
               e->errors, e->timeouts, e->cancelled, e->in_doubt,
               e->reconnects);
        if (e->verify_writes)
            printf(",\"run_id\":\"%016" PRIx64
                   "\",\"journal_records\":%" PRIu64,
                   e->run_id, e->j.records);
        printf("}\n");
    } else {
        printf("%s %s bs=%" PRIu64 " qd=%d seed=%" PRIu64 " %.2f s\n",
               mname[o->mode],
               o->rand      ? "rand"
               : o->shuffle ? "shuffle"
                            : "seq",
               o->bs, o->qd, e->seed, secs);
        if (e->rd.ios)
            print_dir_text("read", &e->rd, secs);
        if (e->wr.ios)
            print_dir_text("write", &e->wr, secs);
        if (e->rd.ios && e->wr.ios)
            print_dir_text("total", &all, secs);
        printf("errors %" PRIu64 " (timeouts %" PRIu64 ", cancelled %" PRIu64
               "), in doubt %" PRIu64 ", reconnects %" PRIu64 "\n",
               e->errors, e->timeouts, e->cancelled, e->in_doubt,
               e->reconnects);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Print sorted LBAs as "1 5-9 12" */
static void print_lbas(uint64_t *v, size_t n, bool json)
{
    if (n == 0)
        return;
    qsort(v, n, sizeof(*v), cmp_u64);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && v[j + 1] == v[j] + 1)
            j++;
        if (json) {
            for (size_t k = i; k <= j; k++)
                printf("%s%" PRIu64, k ? "," : "", v[k]);
        } else if (j > i) {
            printf(" %" PRIu64 "-%" PRIu64, v[i], v[j]);
        } else {
            printf(" %" PRIu64, v[i]);
        }
        i = j + 1;
    }
}

static void report_verify(struct engine *e, double secs, uint64_t acked_blocks,
                          uint64_t doubt_only)
{
    if (e->o->json) {
        printf("{\"blocks\":%" PRIu64 ",\"acked_blocks\":%" PRIu64
               ",\"doubt_only_blocks\":%" PRIu64
               ",\"seconds\":%.3f,\"read_errors\":%" PRIu64,
               e->blocks_checked, acked_blocks, doubt_only, secs, e->errors);
        for (int s = 0; s < B_NSTATES; s++)
            printf(",\"%s\":%" PRIu64, g_bstate_name[s], e->vcount[s]);
        for (int s = B_LOST; s < B_NSTATES; s++) {
            printf(",\"%s_lbas\":[", g_bstate_name[s]);
            print_lbas(e->bad[s], e->nbad[s], true);
            printf("]");
        }
        printf("}\n");
        return;
    }
    printf("verify: %" PRIu64 " blocks checked in %.2f s (%" PRIu64
           " acknowledged, %" PRIu64 " only in doubt): %" PRIu64 " ok, %" PRIu64
           " lost, %" PRIu64 " stale, %" PRIu64 " corrupt\n",
           e->blocks_checked, secs, acked_blocks, doubt_only, e->vcount[B_OK],
           e->vcount[B_LOST], e->vcount[B_STALE], e->vcount[B_CORRUPT]);
    for (int s = B_LOST; s < B_NSTATES; s++) {
        if (!e->nbad[s])
            continue;
        printf("%s:", g_bstate_name[s]);
        print_lbas(e->bad[s], e->nbad[s], false);
        if (e->nbad[s] < e->vcount[s])
            printf(" ... (%" PRIu64 " more)", e->vcount[s] - e->nbad[s]);
        printf("\n");
    }
}

/* ------------------------------------------------------------------ */
/* verify: journal index */

struct idxload {
    struct engine *e;
    uint64_t beyond;
};

static int idx_rec(const uint8_t *r, void *arg)
{
    struct idxload *il = arg;
    struct engine *e = il->e;
    uint64_t lba = get_le64(r + 8), seq = get_le64(r + 16);
    uint32_t n = get_le32(r + 32);

    if (r[4] == JREC_RUN) {
        if (n != e->c.block_size) {
            err("journal '%s': written for block size %u, LUN has %u",
                e->o->journal, n, e->c.block_size);
            return -EINVAL;
        }
        return runset_add(&e->runs, get_le64(r + 24));
    }
    if (runset_add(&e->runs, get_le64(r + 24)))
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t l = lba + i;
        if (l >= e->c.nblocks) {
            il->beyond++;
            continue;
        }
        uint64_t cur = e->idx[l];
        if (r[4] == JREC_ACK && seq > (cur >> 1))
            cur = seq << 1;
        e->idx[l] = cur | 1;
    }
    return 0;
}

static int verify_main(struct engine *e)
{
    struct idxload il = { .e = e };
    off_t len;
    uint64_t torn, acked = 0, doubt_only = 0;
    int fd, rc;

    fd = open(e->o->journal, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err("journal '%s': open failed: %s", e->o->journal, strerror(errno));
        return 1;
    }
    if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
        err("journal '%s': a vdload write run is still using it; verify after it ends",
            e->o->journal);
        close(fd);
        return 1;
    }
    /* One u64 per LBA, sparse: only pages of touched LBAs get memory. */
    e->idx_bytes = (size_t)e->c.nblocks * sizeof(uint64_t);
    e->idx = mmap(NULL, e->idx_bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (e->idx == MAP_FAILED) {
        err("journal '%s': cannot map index for %" PRIu64 " blocks: %s",
            e->o->journal, e->c.nblocks, strerror(errno));
        close(fd);
        return 1;
    }
    rc = journal_scan(fd, e->o->journal, idx_rec, &il, &len, &torn);
    close(fd);
    if (rc)
        return 1;
    if (torn && !e->o->quiet)
        err("journal '%s': ignoring %" PRIu64 " bytes of torn tail",
            e->o->journal, torn);
    if (il.beyond) {
        err("journal '%s': %" PRIu64 " blocks lie beyond the LUN's %" PRIu64
            " blocks; wrong LUN or journal?",
            e->o->journal, il.beyond, e->c.nblocks);
        return 1;
    }
    for (uint64_t l = 0; l < e->c.nblocks; l++) {
        if ((l & 511) == 0 && l + 512 <= e->c.nblocks) {
            bool any = false;
            for (int i = 0; i < 512 && !any; i++)
                any = e->idx[l + (uint64_t)i] != 0;
            if (!any) {
                l += 511;
                continue;
            }
        }
        if (e->idx[l] > 1)
            acked++;
        else if (e->idx[l])
            doubt_only++;
    }
    uint64_t t0 = now_ns();
    rc = engine_run(e);
    double secs = (double)(now_ns() - t0) / 1e9;
    bool pending = e->vscan < e->c.nblocks;
    for (size_t i = 0; i < e->nretry; i++)
        pending |= e->retries[i].queued;
    if (rc || (e->errors && !e->o->cont) || g_stop || pending || e->inflight) {
        err("verify: stopped before reading every block (%s)",
            e->first_error[0] ? e->first_error : "interrupted");
        return 1;
    }
    report_verify(e, secs, acked, doubt_only);
    for (int s = B_LOST; s < B_NSTATES; s++)
        if (e->vcount[s])
            return EXIT_BAD_DATA;
    return 0;
}

/* ------------------------------------------------------------------ */
/* locate: find the byte offsets of stamped blocks in a file (a backing file
 * or pool device), so tests can damage one block behind the target's back
 * without knowing the store's layout.
 *   vdload locate [--block-size N] FILE LBA...
 * Prints "LBA OFFSET" for every valid stamp of a wanted LBA (newest sequence
 * number first if there are several); exit 1 if some LBA was not found. */
static int locate_main(int argc, char **argv)
{
    uint64_t bsz = 512;
    int ai = 2;
    if (ai + 1 < argc && !strcmp(argv[ai], "--block-size")) {
        if (parse_size(argv[ai + 1], &bsz) || bsz < 512 || bsz % 512 ||
            bsz > (1 << 20)) {
            err("locate: --block-size '%s': not a multiple of 512",
                argv[ai + 1]);
            return EXIT_USAGE;
        }
        ai += 2;
    }
    if (argc - ai < 2) {
        err("usage: vdload locate [--block-size N] FILE LBA...");
        return EXIT_USAGE;
    }
    const char *path = argv[ai++];
    int nw = argc - ai;
    uint64_t *want = calloc((size_t)nw, sizeof(*want));
    uint64_t *found = calloc((size_t)nw, sizeof(*found));
    uint64_t *fseq = calloc((size_t)nw, sizeof(*fseq));
    bool *have = calloc((size_t)nw, sizeof(*have));
    uint8_t *buf = malloc(1 << 20);
    int rc = 0, fd = -1;
    if (!want || !found || !fseq || !have || !buf) {
        err("out of memory");
        rc = 1;
        goto out;
    }
    for (int i = 0; i < nw; i++) {
        char *end;
        errno = 0;
        want[i] = strtoull(argv[ai + i], &end, 0);
        if (errno || *end || end == argv[ai + i]) {
            err("locate: LBA '%s': not a number", argv[ai + i]);
            rc = EXIT_USAGE;
            goto out;
        }
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err("locate: file '%s': open failed: %s", path, strerror(errno));
        rc = 1;
        goto out;
    }
    size_t chunk = (size_t)((1 << 20) / bsz * bsz);
    for (off_t off = 0;; off += (off_t)chunk) {
        ssize_t n = pread(fd, buf, chunk, off);
        if (n < 0) {
            err("locate: file '%s': read failed: %s", path, strerror(errno));
            rc = 1;
            goto out;
        }
        if (n == 0)
            break;
        /* stamps sit at LUN-block boundaries of the LUN, which a store
		 * may place at any 512-byte boundary of its files */
        for (size_t i = 0; i + bsz <= (size_t)n; i += 512) {
            uint8_t *b = buf + i;
            if (get_le64(b) != BLOCK_MAGIC)
                continue;
            uint64_t lba = get_le64(b + STAMP_LBA_OFF),
                     seq = get_le64(b + STAMP_SEQ_OFF);
            for (int w = 0; w < nw; w++) {
                if (want[w] != lba || (have[w] && fseq[w] >= seq))
                    continue;
                uint32_t crc = get_le32(b + STAMP_CRC_OFF);
                put_le32(b + STAMP_CRC_OFF, 0);
                bool ok = crc32c(0, b, bsz) == crc;
                put_le32(b + STAMP_CRC_OFF, crc);
                if (ok) {
                    have[w] = true;
                    fseq[w] = seq;
                    found[w] = (uint64_t)off + i;
                }
            }
        }
        if ((size_t)n < chunk)
            break;
    }
    for (int w = 0; w < nw; w++) {
        if (have[w]) {
            printf("%" PRIu64 " %" PRIu64 "\n", want[w], found[w]);
        } else {
            err("locate: file '%s': no valid stamp for LBA %" PRIu64, path,
                want[w]);
            rc = 1;
        }
    }
out:
    if (fd >= 0)
        close(fd);
    free(want);
    free(found);
    free(fseq);
    free(have);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct engine e;
    int rc, exit_code = 0;

    if (argc > 1 && !strcmp(argv[1], "locate"))
        return locate_main(argc, argv);
    if (parse_opts(argc, argv, &o))
        return EXIT_USAGE;
    memset(&e, 0, sizeof(e));
    e.o = &o;
    e.j.fd = -1;

    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (conn_open(&e.c, &o, true) != 0)
        return 1;

    uint32_t bsz = e.c.block_size;
    if (o.bs % bsz) {
        err("--bs %" PRIu64 ": not a multiple of the LUN block size %u", o.bs,
            bsz);
        exit_code = EXIT_USAGE;
        goto out;
    }
    e.bs_blocks = (uint32_t)(o.bs / bsz);
    if (o.range_set) {
        if (o.range_start % bsz || o.range_len % bsz) {
            err("--range: start and length must be multiples of the LUN block size %u",
                bsz);
            exit_code = EXIT_USAGE;
            goto out;
        }
        e.r_lba = o.range_start / bsz;
        e.r_nblocks = o.range_len / bsz;
        if (e.r_lba >= e.c.nblocks || e.r_nblocks > e.c.nblocks - e.r_lba) {
            err("--range: %" PRIu64 ":%" PRIu64
                " lies beyond the LUN's %" PRIu64 " bytes",
                o.range_start, o.range_len, e.c.nblocks * bsz);
            exit_code = EXIT_USAGE;
            goto out;
        }
    } else {
        e.r_lba = 0;
        e.r_nblocks = e.c.nblocks;
    }
    if (o.stride % bsz || (o.stride && o.stride < o.bs)) {
        err("--stride %" PRIu64 ": not a multiple of the LUN block size %u of "
            "at least --bs",
            o.stride, bsz);
        exit_code = EXIT_USAGE;
        goto out;
    }
    e.stride_blocks = o.stride ? o.stride / bsz : e.bs_blocks;
    e.units = e.r_nblocks >= e.bs_blocks
                  ? (e.r_nblocks - e.bs_blocks) / e.stride_blocks + 1
                  : 0;
    if (o.mode != MODE_VERIFY && e.units == 0) {
        err("--bs %" PRIu64 ": larger than the range of %" PRIu64 " bytes",
            o.bs, e.r_nblocks * bsz);
        exit_code = EXIT_USAGE;
        goto out;
    }
    if (o.hot_pct) {
        uint64_t unit_bytes = e.stride_blocks * bsz;
        if (!o.rand || o.hot_region < unit_bytes) {
            err("--hot: needs --pattern rand and a REGION of at least one "
                "--stride/--bs (%" PRIu64 " bytes)",
                unit_bytes);
            exit_code = EXIT_USAGE;
            goto out;
        }
        e.hot_upr = o.hot_region / unit_bytes;
        e.hot_nreg = (e.units + e.hot_upr - 1) / e.hot_upr;
        e.hot_n = (e.hot_nreg * o.hot_frac + 9999) / 10000;
        if (e.hot_n == 0)
            e.hot_n = 1;
    }
    if (o.mode == MODE_VERIFY) {
        /* read back in 128 KiB pieces unless --bs says otherwise */
        if (o.bs == 4096)
            e.bs_blocks = (uint32_t)((128u << 10) / bsz);
        if (e.bs_blocks == 0)
            e.bs_blocks = 1;
    }

    if (o.seed_set) {
        e.seed = o.seed;
    } else if (getrandom(&e.seed, sizeof(e.seed), 0) !=
               (ssize_t)sizeof(e.seed)) {
        e.seed = now_ns() ^ ((uint64_t)getpid() << 32);
    }
    rng_seed(&e.rng, e.seed);
    if (o.shuffle && e.units) {
        /* a multiplier coprime with units (1 always is), and an offset */
        e.perm_a = 1;
        for (int i = 0; i < 64; i++) {
            uint64_t a = rng_next(&e.rng) % e.units, x = a, y = e.units;
            while (y) {
                uint64_t t = x % y;
                x = y;
                y = t;
            }
            if (a > 1 && x == 1) {
                e.perm_a = a;
                break;
            }
        }
        e.perm_b = rng_next(&e.rng) % e.units;
    }
    while (e.run_id == 0 && getrandom(&e.run_id, sizeof(e.run_id), 0) !=
                                (ssize_t)sizeof(e.run_id))
        e.run_id = now_ns() ^ ((uint64_t)getpid() << 40);
    if (e.run_id == 0)
        e.run_id = 1;

    e.slots = calloc((size_t)o.qd, sizeof(*e.slots));
    if (!e.slots) {
        err("out of memory");
        exit_code = 1;
        goto out;
    }
    size_t buflen = (size_t)e.bs_blocks * bsz;
    for (int i = 0; i < o.qd; i++) {
        e.slots[i].e = &e;
        if (posix_memalign((void **)&e.slots[i].buf, 4096, buflen)) {
            err("out of memory for %d buffers of %zu bytes", o.qd, buflen);
            exit_code = 1;
            goto out;
        }
        memset(e.slots[i].buf, 0, buflen);
    }
    if (o.mode == MODE_VERIFY) {
        exit_code = verify_main(&e);
        goto out;
    }

    if (o.mode != MODE_READ) {
        if (posix_memalign((void **)&e.pattern, 4096, buflen)) {
            err("out of memory");
            exit_code = 1;
            goto out;
        }
        uint64_t x = e.run_id;
        for (size_t i = 0; i + 8 <= buflen; i += 8)
            put_le64(e.pattern + i, splitmix64(&x));
    }
    if (o.journal) {
        if (journal_open(&e.j, o.journal, bsz, &e.next_seq)) {
            exit_code = 1;
            goto out;
        }
        e.verify_writes = true;
        e.first_seq = e.next_seq;
        journal_add(&e.j, JREC_RUN, e.c.nblocks, e.next_seq, e.run_id, bsz);
        if (journal_flush(&e.j, true)) {
            exit_code = 1;
            goto out;
        }
    }

    uint64_t t0 = now_ns();
    rc = engine_run(&e);
    double secs = (double)(now_ns() - t0) / 1e9;
    if (e.verify_writes) {
        if (journal_flush(&e.j, true))
            rc = -EIO;
        journal_close(&e.j);
    }
    report_load(&e, secs);
    if (rc || e.fatal)
        exit_code = 1;
    if (e.errors && !o.cont)
        exit_code = 1;

out:
    if (e.c.iscsi) {
        if (e.inflight == 0)
            iscsi_logout_sync(e.c.iscsi);
        iscsi_destroy_context(e.c.iscsi);
    }
    if (e.j.fd >= 0)
        journal_close(&e.j);
    if (e.slots)
        for (int i = 0; i < o.qd; i++)
            free(e.slots[i].buf);
    free(e.slots);
    free(e.pattern);
    free(e.runs.ids);
    free(e.doubt_units.v);
    free(e.retries);
    for (int s = 0; s < B_NSTATES; s++)
        free(e.bad[s]);
    if (e.idx && e.idx != MAP_FAILED)
        munmap(e.idx, e.idx_bytes);
    return exit_code;
}
