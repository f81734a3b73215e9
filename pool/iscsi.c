/* vdlvm: remote devices over iSCSI (libiscsi).
 *
 * Design
 * - One libiscsi context (one session, one TCP connection) per device,
 *   owned by one event thread per device that drives libiscsi's async API:
 *   any number of commands are in flight on the connection.
 * - I/O callers (any thread) queue a request, wake the event thread through
 *   an eventfd and sleep on the request's condition variable.  The event
 *   thread splits a request into commands of at most the target's maximum
 *   transfer length, issues them, and completes the request when the last
 *   command completes.  It completes every request, with an error if need
 *   be, before its deadline (now + the device's timeout) has passed by more
 *   than one poll slice, so a caller never waits longer than the timeout.
 * - Connection states:
 *     CONNECTED     requests are issued;
 *     RECONNECTING  the peer did not answer within the timeout or the
 *                   connection broke: commands in flight failed
 *                   (-ETIMEDOUT / -EIO), new requests fail at once
 *                   (-ENOTCONN); the event thread logs in again with
 *                   backoff (0.5 s doubling to 5 s) and goes back to
 *                   CONNECTED by itself;
 *     FAILED        like RECONNECTING, but the last attempt reached the peer
 *                   and was refused (login refused, no such LUN, block size
 *                   or size changed): it needs an administrator, retried
 *                   every 5 s.  A device that was fenced (another host took
 *                   the pool over, below) stays FAILED and is never retried:
 *                   only a new open brings it back.
 *   A timed-out command cannot be aborted reliably on a dead peer, so a
 *   timeout tears the whole session down (the initiator's session
 *   recovery); the device keeps its ISID, so the next login reinstates the
 *   session on the target and the target drops the old one.
 * - While idle, a NOP-Out every keepalive interval finds a dead peer before
 *   the next I/O does, so status is current.
 * - The CHAP secret is read from chap.secret_file at every login and wiped
 *   after it has been handed to libiscsi; it is never logged or kept here.
 *
 * Old commands never overtake new ones (issue 8, defect 5)
 *   A command of a session we gave up on (timeout, broken connection,
 *   killed process) may still be executing on the peer, or still be on its
 *   way there, and land after a newer write to the same blocks.  So no
 *   command of a new session is issued before three things are done, in
 *   this order, at every login (first open and every reconnect):
 *   1. Teardown discards what we had not sent: the old socket is closed
 *      with SO_LINGER 0 (a RST), so the kernel does not keep retransmitting
 *      the old session's data after we closed it.
 *   2. The new session takes over our own reservation (below): PREEMPT with
 *      our own key moves the reservation to the new I_T nexus and removes
 *      the registrations of every earlier nexus of ours, so a command that
 *      reaches the target on an old connection from now on gets RESERVATION
 *      CONFLICT instead of writing (the target checks at queue time).
 *   3. LOGICAL UNIT RESET through the new session.  SAM-5 5.8.7: a LU reset
 *      aborts the tasks of every I_T nexus, and the target answers it only
 *      when those tasks are gone.  tgt cannot abort a command that its
 *      backing store is executing; it answers the reset when that command
 *      has completed (target.c abort_cmd: the TMF response waits for it).
 *      Either way, when the reset's answer arrives nothing of an earlier
 *      session is still pending on the LU.  ABORT TASK SET would not do:
 *      it only covers the nexus that sends it, and the old tasks belong to
 *      another nexus.  If the reset itself gets no answer within the
 *      timeout (the old command is stuck on the peer), the new session is
 *      dropped like any other, and the next attempt sends another reset:
 *      the device stays unavailable until the peer is drained.
 *   The unit attention the reset leaves is consumed by TEST UNIT READY
 *   before the device goes CONNECTED.  A target without persistent
 *   reservations still gets 1 and 3 (the gap that remains there: a command
 *   still in the network after the reset; it needs a peer that holds a
 *   segment for longer than timeout + backoff).
 *
 * One writer per pool, across hosts (issue 8)
 *   Every remote device carries a SCSI-3 persistent reservation of type
 *   Write Exclusive - Registrants Only, under the key of the host that owns
 *   the pool (owner.h: derived from the host name, so the same host gets
 *   the same key after a restart and re-opens without a takeover).
 *   Why this type: reads stay open to everyone (another host can read the
 *   pool's headers and name the holder); writes need a registration, and
 *   every session of the owner registers with the owner's key, so a
 *   reconnect (new ISID, new I_T nexus) keeps writing after re-registering,
 *   without moving the reservation between hosts.  Exclusive Access would
 *   also block reads; Write Exclusive (holder nexus only) would need the
 *   reservation moved at every reconnect anyway (we do that, step 2, but
 *   the registrants-only type keeps a half-done login harmless).
 *   At login: READ RESERVATION.  Held under another key: the open is
 *   refused (-EBUSY, message naming the holder from its key; tgt has no
 *   READ FULL STATUS).  Held under our key, or not held: REGISTER AND
 *   IGNORE EXISTING KEY, RESERVE if free (a RESERVATION CONFLICT there
 *   means another host was faster: unregister, refuse), PREEMPT our own key
 *   (step 2 above), PREEMPT every other registered key (a host that died
 *   between REGISTER and its refusal could otherwise write), then READ
 *   RESERVATION again to check.  A refused host writes nothing and sends no
 *   reset.
 *   Takeover (vd_bdev_iscsi_takeover, `vdlvm pool takeover`) does the same
 *   but PREEMPTs the holder's key (tgt has no PREEMPT AND ABORT; the LU
 *   reset that follows drains what the old owner had in flight).  The old
 *   owner's next command gets the unit attention RESERVATIONS PREEMPTED, a
 *   write RESERVATION CONFLICT; either fails the device, fenced for good
 *   (a reconnect would find another holder, and must not come back by
 *   itself if the peer restarted and forgot the reservation: tgt keeps
 *   reservations in memory only, and a peer restart loses them; the first
 *   host to log in after it takes the reservation).
 *   The reservation is kept when the pool is closed: a crashed or restarted
 *   owner re-opens without a takeover, and closing a pool to restart tgtd
 *   never lets another host slip in.  Moving a pool to another host is an
 *   explicit `vdlvm pool takeover` there.  One exception: a handle that
 *   found the LUN free, reserved it and wrote nothing gives it back at
 *   close (give_back), so that a `pool create` refused for a mistyped URL
 *   or a read-only look at a pool nobody holds leaves no reservation.
 *
 * Asynchronous requests (submit, issue 14)
 *   submit (the bdev op, pool_int.h) queues a request on the same queue as
 *   pread/pwrite/flush, wakes the event thread and returns: no wait on the
 *   network, and ib->lock is held only to link the request (never across
 *   I/O; the event thread never holds it across a libiscsi call either).
 *   The request (struct req with bio set) is malloc'd by submit and owned
 *   by the event thread from then on; the event thread completes it
 *   exactly once, in one of two places, and frees it:
 *   - req_put, when its last command completes (split at max_chunk like a
 *     synchronous request: one done for all of its commands);
 *   - fail_queue, while it was still queued (teardown, close, the device
 *     not connected when the event thread took the queue).
 *   A request is in exactly one of: the queue (under ib->lock), the event
 *   thread's local list taken from the queue, or issued (left > 0, its
 *   commands on ib->inflight); each of these paths takes it from where it
 *   is, so no request is completed twice.  bio->done runs on the event
 *   thread only, never with ib->lock held, never inside submit.
 *   What submit refuses with -EAGAIN (nothing started; the caller's
 *   synchronous fallback then decides): a length of 0, an offset or length
 *   not a multiple of 512 bytes or past the end (the synchronous path
 *   returns -EINVAL for those), an op other than read/write/flush, more
 *   than ASYNC_MAX requests outstanding, and a device that is not
 *   CONNECTED or is closing.  The last is the pool_int.h contract
 *   ("reconnecting, device failed") and costs nothing: the synchronous
 *   path fails at once with -ENOTCONN in that state too (new requests fail
 *   at once until the reconnect succeeds), so the caller's answer is the
 *   same and no failed request is queued only to be failed by the event
 *   thread.  A request accepted while CONNECTED that meets a teardown
 *   (timeout sweep, broken connection, fencing, close) fails through done
 *   like a synchronous one: in flight -ETIMEDOUT / -EIO, still queued
 *   -ENOTCONN.
 *   Races: (a) submit vs. a reconnect or fencing: state is read and the
 *   request linked under one hold of ib->lock; conn_lost changes state and
 *   takes the queue under one hold too, so a request is either taken (and
 *   failed) by conn_lost or refused by submit.  (b) submit vs. the timeout
 *   sweep: the sweep runs on the event thread, which alone issues and
 *   completes; a request's deadline is fixed at submit (now + timeout), so
 *   a silent peer fails it within the timeout plus one poll slice.  (c)
 *   submit vs. close: close sets stopping under ib->lock; the event thread
 *   reads stopping and takes the queue under one hold, fails what it took,
 *   and conn_lost at its exit fails every command in flight; submit refuses
 *   once stopping is set.  close joins the event thread, so every done has
 *   returned before close returns.  (d) submit vs. a synchronous pwrite on
 *   the same device: both are requests on the one queue; nothing is shared
 *   between them.
 *   Wake-ups: the submitter that makes the queue non-empty writes the
 *   eventfd, later ones do not: the event thread drains the eventfd only
 *   just before it takes the queue (the loop's next turn), so a write that
 *   is consumed is always followed by a take that sees every request
 *   linked before the write.
 *
 * Threads: pread/pwrite/flush/zero/get_state/submit are thread-safe.  The
 * event thread blocks all signals (tgtd's SIGUSR2 must not reach it).
 * close joins it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "owner.h"
#include "pool_int.h"

#define BLOCK          512u
#define MAX_CHUNK      (1u << 20) /* largest command we issue */
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 5000
#define POLL_SLICE_MS  100 /* the event loop's longest sleep */
#define UA_RETRIES     5
#define SECRET_MAX     256
#define WS_MAX_CHUNK \
    (8u << 20)           /* largest WRITE SAME we issue (tgt writes
                                    it block by block: keep it short) */
#define PR_KEYS_MAX 64   /* registrations read with READ KEYS */
#define ASYNC_MAX   1024 /* submitted requests outstanding per device */

enum conn_state { ST_CONNECTED, ST_RECONNECTING, ST_FAILED };
enum req_op { OP_READ, OP_WRITE, OP_FLUSH, OP_ZERO };

struct req {
    enum req_op op;
    unsigned char *buf;
    size_t len;
    uint64_t off;
    unsigned flags;
    uint64_t deadline;  /* monotonic ms */
    struct vd_bio *bio; /* submit: completed through bio->done, and the
                           request is malloc'd (freed when completed);
                           NULL: a synchronous caller waits on cond */
    /* event thread only */
    uint32_t left; /* commands not yet completed */
    int err;       /* first error */
    /* under ib->lock */
    bool done;
    pthread_cond_t cond;
    struct req *next;
};

/* One SCSI command of a request; event thread only. */
struct chunk {
    struct iscsi_bdev *ib;
    struct req *req;
    struct scsi_task *task;
    uint64_t off;
    uint32_t len;
    int retries;
    uint64_t deadline;
    struct scsi_iovec iov; /* the caller's buffer, until completion */
    struct chunk *prev, *next;
};

struct sync_cmd {
    bool done;
    int status;
    uint32_t tmf_response; /* task management: RFC 7143 11.6.1 */
    struct scsi_task *task;
};

struct iscsi_bdev {
    struct vd_bdev b;
    char name[VD_NAME_MAX + 1];
    char *url; /* as configured; never carries a secret */
    char *portal, *target;
    int lun;
    char *chap_user, *chap_secret_file;
    char initiator[256];
    uint32_t timeout_ms, keepalive_ms;
    uint32_t max_chunk; /* bytes, multiple of BLOCK */
    uint32_t isid;      /* kept across reconnects */
    char host[64];      /* vd_owner_host() */
    uint64_t pr_key;    /* vd_owner_key(host); set before any login */
    int ws_unsupported; /* atomic: WRITE SAME refused, write zeroes */
    int wrote;          /* atomic: a write or zero was submitted */

    int n_async; /* atomic: submitted requests not completed */

    /* lock protects state, since, cause, queue, stopping and req->done */
    pthread_mutex_t lock;
    enum conn_state state;
    time_t since; /* wall clock of the first failure */
    char cause[200];
    struct req *qhead, *qtail;
    bool stopping;

    int wake_fd; /* eventfd: queue or stopping changed */
    pthread_t thread;
    bool thread_started;

    /* event thread only (before the thread starts: the opening thread) */
    struct iscsi_context *ctx;
    struct chunk *inflight; /* commands issued, not completed */
    struct chunk *inflight_tail;
    int down_err; /* error for commands cancelled by teardown */
    uint32_t backoff_ms;
    uint64_t next_retry;
    uint64_t last_activity;
    bool nop_pending;
    uint64_t nop_deadline;
    int sock_err;      /* socket error seen while logging in */
    bool connect_done; /* full_connect_async callback */
    int connect_status;
    /* event thread only (opening thread before it starts), set by
     * session_open */
    uint32_t ws_max;         /* bytes per WRITE SAME */
    bool ws_unmap;           /* the LUN reads unmapped blocks as zeroes */
    bool pr_unsupported;     /* the target has no persistent reservations */
    bool reset_unsupported;  /* the target refused LOGICAL UNIT RESET */
    bool conflict;           /* a command met RESERVATION CONFLICT */
    bool fenced;             /* another host owns the LUN: never reconnect */
    bool took;               /* the last claim reserved a free LUN */
    bool closing;            /* giving a reservation back at close */
    char claim_msg[300];     /* what the last claim did (takeover) */
    struct scsi_task *stray; /* task of a failed probe, freed after the
                                context is destroyed */
    struct sync_cmd probe;   /* the claim's synchronous command (outlives
                                the context: destroy calls back) */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake(struct iscsi_bdev *ib)
{
    uint64_t one = 1;
    ssize_t n = write(ib->wake_fd, &one, sizeof(one));
    (void)n; /* a full counter already wakes the thread */
}

/* ---- CHAP secret -------------------------------------------------------- */
/* Read the secret file into buf.  Line 1: the initiator's secret.
 * Optional line 2: "TARGET_USER TARGET_SECRET" for mutual CHAP (the target
 * authenticates itself too).  *tuser / *tsecret point into buf or are NULL.
 * msg says why not. */
static int read_secret(const char *file, char *buf, size_t len, char **tuser,
                       char **tsecret, char *msg, size_t msglen)
{
    struct stat st;
    ssize_t n;
    int fd, e;

    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        e = errno;
        snprintf(msg, msglen, "chap.secret_file %s: %s", file, strerror(e));
        return -e;
    }
    if (fstat(fd, &st) < 0) {
        e = errno;
        snprintf(msg, msglen, "chap.secret_file %s: %s", file, strerror(e));
        close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(msg, msglen, "chap.secret_file %s is not a regular file",
                 file);
        close(fd);
        return -EINVAL;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        snprintf(msg, msglen,
                 "chap.secret_file %s is owned by uid %u, not by "
                 "root; chown root %s",
                 file, (unsigned)st.st_uid, file);
        close(fd);
        return -EPERM;
    }
    if (st.st_mode & 077) {
        snprintf(msg, msglen,
                 "chap.secret_file %s is accessible by others "
                 "(mode %03o); chmod 600 %s",
                 file, (unsigned)(st.st_mode & 0777), file);
        close(fd);
        return -EPERM;
    }
    n = read(fd, buf, len - 1);
    e = errno;
    close(fd);
    if (n < 0) {
        snprintf(msg, msglen, "chap.secret_file %s: %s", file, strerror(e));
        return -e;
    }
    buf[n] = 0;
    *tuser = *tsecret = NULL;
    {
        char *nl = buf + strcspn(buf, "\r\n");
        if (*nl) {
            char *l2 = nl + 1 + strspn(nl + 1, "\r\n");
            *nl = 0;
            l2[strcspn(l2, "\r\n")] = 0;
            if (*l2) {
                char *sp = strchr(l2, ' ');
                if (!sp || !sp[1 + strspn(sp + 1, " ")]) {
                    snprintf(msg, msglen,
                             "chap.secret_file %s: line 2 must be "
                             "\"TARGET_USER TARGET_SECRET\" (mutual CHAP)",
                             file);
                    return -EINVAL;
                }
                *sp = 0;
                *tuser = l2;
                *tsecret = sp + 1 + strspn(sp + 1, " ");
            }
        }
    }
    if (!buf[0]) {
        snprintf(msg, msglen,
                 "chap.secret_file %s is empty; write the secret "
                 "on its first line",
                 file);
        return -EINVAL;
    }
    return 0;
}

/* ---- connecting ---------------------------------------------------------- */
/* Drive ctx until *done, the deadline, or close.  Returns 0, -ETIMEDOUT,
 * -ECANCELED (closing) or -EIO (the connection failed; iscsi_get_error). */
static int ctx_wait(struct iscsi_bdev *ib, struct iscsi_context *ctx,
                    bool *done, uint64_t deadline)
{
    while (!*done) {
        uint64_t now = now_ms();
        struct pollfd pfd[2];
        int n = 1, r;

        if (now >= deadline)
            return -ETIMEDOUT;
        if (ib->thread_started && !ib->closing) {
            pthread_mutex_lock(&ib->lock);
            bool stop = ib->stopping;
            pthread_mutex_unlock(&ib->lock);
            if (stop)
                return -ECANCELED;
            pfd[1] = (struct pollfd){ .fd = ib->wake_fd, .events = POLLIN };
            n = 2;
        }
        pfd[0] = (struct pollfd){ .fd = iscsi_get_fd(ctx),
                                  .events = iscsi_which_events(ctx) };
        uint64_t wait = deadline - now;
        r = poll(pfd, n, wait < POLL_SLICE_MS ? (int)wait : POLL_SLICE_MS);
        if (r < 0 && errno != EINTR)
            return -errno;
        if (n == 2 && (pfd[1].revents & POLLIN)) {
            uint64_t v;
            ssize_t k = read(ib->wake_fd, &v, sizeof(v));
            (void)k;
        }
        if (r > 0 && (pfd[0].revents & (POLLERR | POLLHUP))) {
            /* Keep the socket's own error (e.g. connection refused):
             * libiscsi's message for it is not helpful. */
            int e = 0;
            socklen_t l = sizeof(e);
            if (getsockopt(pfd[0].fd, SOL_SOCKET, SO_ERROR, &e, &l) == 0 && e)
                ib->sock_err = e;
            else if (!ib->sock_err)
                ib->sock_err = ECONNRESET;
        }
        if (r > 0 && pfd[0].revents && iscsi_service(ctx, pfd[0].revents) < 0)
            return -EIO;
    }
    return 0;
}

static void sync_cb(struct iscsi_context *ctx, int status, void *data,
                    void *priv)
{
    struct sync_cmd *s = priv;
    (void)ctx;
    (void)data;
    s->status = status;
    s->done = true;
}

static void connect_cb(struct iscsi_context *ctx, int status, void *data,
                       void *priv)
{
    struct iscsi_bdev *ib = priv;
    (void)ctx;
    (void)data;
    /* Called a second time when an established connection fails; the event
     * loop notices that through iscsi_service, so only the first counts. */
    if (!ib->connect_done) {
        ib->connect_status = status;
        ib->connect_done = true;
    }
}

static void sense_str(const struct scsi_task *t, char *buf, size_t len)
{
    if (t->status == SCSI_STATUS_CHECK_CONDITION)
        snprintf(buf, len, "%s (%s)", scsi_sense_key_str(t->sense.key),
                 scsi_sense_ascq_str(t->sense.ascq));
    else
        snprintf(buf, len, "SCSI status 0x%x", t->status);
}

/* Run one probe command synchronously.  Returns 0 with s->task to free,
 * -EIO when the command failed (msg set, task freed), or -ETIMEDOUT /
 * -ECANCELED / -ENOTCONN when the session is unusable: the caller destroys
 * the context, then frees s->task. */
static int run_probe(struct iscsi_bdev *ib, struct iscsi_context *ctx,
                     struct sync_cmd *s, const char *what, uint64_t deadline,
                     char *msg, size_t msglen)
{
    int r;

    if (!s->task) {
        snprintf(msg, msglen, "%s of %s: %s", what, ib->url,
                 iscsi_get_error(ctx));
        return -ENOTCONN;
    }
    r = ctx_wait(ib, ctx, &s->done, deadline);
    if (r < 0) {
        if (r == -ETIMEDOUT)
            snprintf(msg, msglen, "%s of %s: no answer within %u ms", what,
                     ib->url, ib->timeout_ms);
        else if (r == -ECANCELED)
            snprintf(msg, msglen, "%s of %s: device is closing", what, ib->url);
        else
            snprintf(msg, msglen, "%s of %s: %s", what, ib->url,
                     iscsi_get_error(ctx));
        return r == -EIO ? -ENOTCONN : r;
    }
    if (s->status != SCSI_STATUS_GOOD) {
        char sense[128];
        sense_str(s->task, sense, sizeof(sense));
        snprintf(msg, msglen, "%s of %s failed: %s", what, ib->url, sense);
        scsi_free_scsi_task(s->task);
        s->task = NULL;
        return -EIO;
    }
    return 0;
}

/* ---- claiming the LUN: reservation, reset (see the header comment) ----- */
enum { CMD_GOOD = 0, CMD_CONFLICT = 1, CMD_ILLEGAL = 2, CMD_UA = 3 };

/* Wait for s's command.  Returns CMD_GOOD with s->task kept, CMD_CONFLICT /
 * CMD_ILLEGAL / CMD_UA (task freed), -EIO with msg for another answer, or
 * -ETIMEDOUT / -ECANCELED / -ENOTCONN when the session is unusable (the
 * task, if any, is left in ib->stray for after the context's end). */
static int cmd_wait(struct iscsi_bdev *ib, struct iscsi_context *ctx,
                    struct sync_cmd *s, const char *what, uint64_t deadline,
                    char *msg, size_t msglen)
{
    int r;

    if (!s->task) {
        snprintf(msg, msglen, "%s of %s: %s", what, ib->url,
                 iscsi_get_error(ctx));
        return -ENOTCONN;
    }
    r = ctx_wait(ib, ctx, &s->done, deadline);
    if (r < 0) {
        if (r == -ETIMEDOUT)
            snprintf(msg, msglen, "%s of %s: no answer within %u ms", what,
                     ib->url, ib->timeout_ms);
        else if (r == -ECANCELED)
            snprintf(msg, msglen, "%s of %s: device is closing", what, ib->url);
        else
            snprintf(msg, msglen, "%s of %s: %s", what, ib->url,
                     iscsi_get_error(ctx));
        ib->stray = s->task;
        s->task = NULL;
        return r == -EIO ? -ENOTCONN : r;
    }
    if (s->status == SCSI_STATUS_GOOD)
        return CMD_GOOD;
    r = -EIO;
    if (s->status == SCSI_STATUS_RESERVATION_CONFLICT)
        r = CMD_CONFLICT;
    else if (s->status == SCSI_STATUS_CHECK_CONDITION &&
             s->task->sense.key == SCSI_SENSE_ILLEGAL_REQUEST)
        r = CMD_ILLEGAL;
    else if (s->status == SCSI_STATUS_CHECK_CONDITION &&
             s->task->sense.key == SCSI_SENSE_UNIT_ATTENTION)
        r = CMD_UA;
    if (r == -EIO || r == CMD_ILLEGAL) {
        char sense[128];
        sense_str(s->task, sense, sizeof(sense));
        snprintf(msg, msglen, "%s of %s failed: %s", what, ib->url, sense);
    }
    scsi_free_scsi_task(s->task);
    s->task = NULL;
    return r;
}

/* PERSISTENT RESERVE IN: data into buf (at most cap bytes, *len). */
static int pr_in(struct iscsi_bdev *ib, struct iscsi_context *ctx, int sa,
                 uint8_t *buf, size_t cap, size_t *len, uint64_t deadline,
                 char *msg, size_t msglen)
{
    /* In ib, not on the stack: libiscsi calls the callbacks of pending
     * commands when the caller destroys the context, after we return. */
    struct sync_cmd *sp = &ib->probe;
    int r;

    for (int i = 0;; i++) {
        memset(sp, 0, sizeof(*sp));
        sp->task = iscsi_persistent_reserve_in_task(ctx, ib->lun, sa,
                                                    (uint16_t)cap, sync_cb, sp);
        r = cmd_wait(ib, ctx, sp, "PERSISTENT RESERVE IN", deadline, msg,
                     msglen);
        if (r != CMD_UA || i >= UA_RETRIES)
            break;
    }
    if (r == CMD_UA) {
        snprintf(msg, msglen,
                 "PERSISTENT RESERVE IN of %s: unit attention "
                 "after %d retries",
                 ib->url, UA_RETRIES);
        return -EIO;
    }
    if (r != CMD_GOOD)
        return r;
    *len = sp->task->datain.size > 0 ? (size_t)sp->task->datain.size : 0;
    if (*len > cap)
        *len = cap;
    if (*len)
        memcpy(buf, sp->task->datain.data, *len);
    scsi_free_scsi_task(sp->task);
    return CMD_GOOD;
}

static int pr_out(struct iscsi_bdev *ib, struct iscsi_context *ctx, int sa,
                  int type, uint64_t key, uint64_t sa_key, uint64_t deadline,
                  char *msg, size_t msglen)
{
    struct scsi_persistent_reserve_out_basic p = {
        .reservation_key = key,
        .service_action_reservation_key = sa_key,
    };
    /* In ib, not on the stack: libiscsi calls the callbacks of pending
     * commands when the caller destroys the context, after we return. */
    struct sync_cmd *sp = &ib->probe;
    int r;

    for (int i = 0;; i++) {
        memset(sp, 0, sizeof(*sp));
        sp->task = iscsi_persistent_reserve_out_task(
            ctx, ib->lun, sa, SCSI_PERSISTENT_RESERVE_SCOPE_LU, type, &p,
            sync_cb, sp);
        r = cmd_wait(ib, ctx, sp, "PERSISTENT RESERVE OUT", deadline, msg,
                     msglen);
        if (r != CMD_UA || i >= UA_RETRIES)
            break;
    }
    if (r == CMD_UA) {
        snprintf(msg, msglen,
                 "PERSISTENT RESERVE OUT of %s: unit attention "
                 "after %d retries",
                 ib->url, UA_RETRIES);
        return -EIO;
    }
    if (r == CMD_GOOD)
        scsi_free_scsi_task(sp->task);
    return r;
}

static int read_reservation(struct iscsi_bdev *ib, struct iscsi_context *ctx,
                            int *held, uint64_t *key, uint8_t *type,
                            uint64_t deadline, char *msg, size_t msglen)
{
    uint8_t buf[24];
    size_t len = 0;
    int r = pr_in(ib, ctx, SCSI_PERSISTENT_RESERVE_READ_RESERVATION, buf,
                  sizeof(buf), &len, deadline, msg, msglen);
    if (r != CMD_GOOD)
        return r;
    if (vd_pr_parse_reservation(buf, len, held, key, type) < 0) {
        snprintf(msg, msglen,
                 "PERSISTENT RESERVE IN of %s: short answer "
                 "(%zu bytes)",
                 ib->url, len);
        return -EIO;
    }
    return CMD_GOOD;
}

static bool all_registrants(uint8_t type)
{
    return type == VD_PR_WE_ALL_REGISTRANTS || type == VD_PR_EA_ALL_REGISTRANTS;
}

static void holder_str(uint64_t key, uint8_t type, char *buf, size_t len)
{
    if (all_registrants(type))
        snprintf(buf, len,
                 "every registered initiator (an all-registrants "
                 "reservation, type %u, not made by vdlvm)",
                 type);
    else
        vd_owner_key_describe(key, buf, len);
}

#define PR_FAIL(what)                                                         \
    do {                                                                      \
        if (r >= 0 && r != CMD_GOOD) {                                        \
            if (r == CMD_CONFLICT)                                            \
                snprintf(msg, msglen, "%s on %s: RESERVATION CONFLICT", what, \
                         ib->url);                                            \
            r = -EIO;                                                         \
        }                                                                     \
        if (r < 0)                                                            \
            return r;                                                         \
    } while (0)

/* Take or check this host's reservation on the LUN (takeover: preempt
 * another holder).  0, or -EBUSY (another host holds it; *permanent) or
 * another negative errno, with msg. */
static int pr_claim(struct iscsi_bdev *ib, struct iscsi_context *ctx,
                    bool takeover, uint64_t deadline, char *msg, size_t msglen,
                    bool *permanent)
{
    const int WERO =
        SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
    uint8_t kbuf[8 + 8 * PR_KEYS_MAX];
    uint64_t keys[PR_KEYS_MAX], hkey = 0;
    size_t klen = 0, nkeys = 0;
    uint8_t htype = 0;
    int held = 0, r;
    bool other;
    char who[160];

    ib->claim_msg[0] = 0;
    ib->took = false;
    r = read_reservation(ib, ctx, &held, &hkey, &htype, deadline, msg, msglen);
    if (r == CMD_ILLEGAL) {
        if (!ib->pr_unsupported)
            vd_log(VD_LOG_WARN,
                   "device '%s': %s does not support persistent "
                   "reservations (%s): nothing stops another host from "
                   "opening this pool at the same time",
                   ib->name, ib->url, msg);
        ib->pr_unsupported = true;
        msg[0] = 0;
        snprintf(ib->claim_msg, sizeof(ib->claim_msg),
                 "%s has no persistent "
                 "reservations: nothing to take over",
                 ib->url);
        return 0;
    }
    PR_FAIL("READ RESERVATION");
    other = held && (all_registrants(htype) || hkey != ib->pr_key);
    holder_str(hkey, htype, who, sizeof(who));
    if (other && !takeover) {
        /* No URL: callers name the device, and pool.c keeps 256 bytes. */
        snprintf(msg, msglen,
                 "reserved by %s, the owner of the pool (one "
                 "host writes a pool at a time); if that host is gone for "
                 "good, run 'vdlvm pool takeover POOL' on this host",
                 who);
        *permanent = true;
        return -EBUSY;
    }
    r = pr_out(ib, ctx,
               SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0,
               ib->pr_key, deadline, msg, msglen);
    PR_FAIL("REGISTER");
    if (other) {
        r = pr_out(ib, ctx, SCSI_PERSISTENT_RESERVE_PREEMPT, WERO, ib->pr_key,
                   all_registrants(htype) ? 0 : hkey, deadline, msg, msglen);
        PR_FAIL("PREEMPT");
        snprintf(ib->claim_msg, sizeof(ib->claim_msg),
                 "took the reservation "
                 "of %s over from %s",
                 ib->url, who);
    } else if (!held) {
        r = pr_out(ib, ctx, SCSI_PERSISTENT_RESERVE_RESERVE, WERO, ib->pr_key,
                   0, deadline, msg, msglen);
        if (r == CMD_CONFLICT) {
            /* Another host reserved it since we looked: leave. */
            int r2 = read_reservation(ib, ctx, &held, &hkey, &htype, deadline,
                                      msg, msglen);
            if (r2 == CMD_GOOD)
                holder_str(hkey, htype, who, sizeof(who));
            else
                snprintf(who, sizeof(who), "another host");
            if (r2 >= 0) /* unregister: a refused host must not write */
                pr_out(ib, ctx, SCSI_PERSISTENT_RESERVE_REGISTER, 0, ib->pr_key,
                       0, deadline, msg, msglen);
            snprintf(msg, msglen,
                     "%s is reserved by %s, which owns the pool "
                     "(it took it while this host was opening it)",
                     ib->url, who);
            *permanent = true;
            return -EBUSY;
        }
        PR_FAIL("RESERVE");
        ib->took = true;
        snprintf(ib->claim_msg, sizeof(ib->claim_msg),
                 "reserved %s (it had "
                 "no holder)",
                 ib->url);
    } else {
        snprintf(ib->claim_msg, sizeof(ib->claim_msg),
                 "this host holds the "
                 "reservation of %s already",
                 ib->url);
    }
    /* Move the reservation to this nexus and drop our earlier ones. */
    r = pr_out(ib, ctx, SCSI_PERSISTENT_RESERVE_PREEMPT, WERO, ib->pr_key,
               ib->pr_key, deadline, msg, msglen);
    PR_FAIL("PREEMPT (own earlier sessions)");
    r = pr_in(ib, ctx, SCSI_PERSISTENT_RESERVE_READ_KEYS, kbuf, sizeof(kbuf),
              &klen, deadline, msg, msglen);
    PR_FAIL("READ KEYS");
    if (vd_pr_parse_keys(kbuf, klen, keys, PR_KEYS_MAX, &nkeys) < 0)
        nkeys = 0;
    for (size_t i = 0; i < nkeys; i++) {
        bool seen = keys[i] == ib->pr_key || keys[i] == 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = keys[j] == keys[i];
        if (seen)
            continue;
        r = pr_out(ib, ctx, SCSI_PERSISTENT_RESERVE_PREEMPT, WERO, ib->pr_key,
                   keys[i], deadline, msg, msglen);
        if (r == CMD_CONFLICT) /* unregistered meanwhile, or we lost it */
            continue;
        PR_FAIL("PREEMPT (other registrations)");
    }
    r = read_reservation(ib, ctx, &held, &hkey, &htype, deadline, msg, msglen);
    PR_FAIL("READ RESERVATION");
    if (!held || hkey != ib->pr_key || all_registrants(htype)) {
        if (held)
            holder_str(hkey, htype, who, sizeof(who));
        snprintf(msg, msglen,
                 "%s is reserved by %s, which owns the pool "
                 "(it took it while this host was opening it)",
                 ib->url, held ? who : "nobody after all");
        *permanent = true;
        return -EBUSY;
    }
    return 0;
}
#undef PR_FAIL

static void tmf_cb(struct iscsi_context *ctx, int status, void *data,
                   void *priv)
{
    struct sync_cmd *s = priv;
    (void)ctx;
    s->status = status;
    s->tmf_response = data ? *(uint32_t *)data : ISCSI_TMR_FUNC_REJECTED;
    s->done = true;
}

/* LOGICAL UNIT RESET: returns when nothing of an earlier session is
 * pending on the LU (see the header comment). */
static int lun_reset(struct iscsi_bdev *ib, struct iscsi_context *ctx,
                     uint64_t deadline, char *msg, size_t msglen)
{
    /* In ib, not on the stack: libiscsi calls the callbacks of pending
     * commands when the caller destroys the context, after we return. */
    struct sync_cmd *sp = &ib->probe;
    int r;

    memset(sp, 0, sizeof(*sp));
    if (iscsi_task_mgmt_lun_reset_async(ctx, ib->lun, tmf_cb, sp) < 0) {
        snprintf(msg, msglen, "LOGICAL UNIT RESET of %s: %s", ib->url,
                 iscsi_get_error(ctx));
        return -ENOTCONN;
    }
    r = ctx_wait(ib, ctx, &sp->done, deadline);
    if (r < 0) {
        if (r == -ETIMEDOUT)
            snprintf(msg, msglen,
                     "LOGICAL UNIT RESET of %s (it waits for "
                     "the commands of an earlier session): no answer within "
                     "%u ms",
                     ib->url, ib->timeout_ms);
        else if (r == -ECANCELED)
            snprintf(msg, msglen,
                     "LOGICAL UNIT RESET of %s: device is "
                     "closing",
                     ib->url);
        else
            snprintf(msg, msglen, "LOGICAL UNIT RESET of %s: %s", ib->url,
                     iscsi_get_error(ctx));
        return r == -EIO ? -ENOTCONN : r;
    }
    if (sp->status != SCSI_STATUS_GOOD) {
        snprintf(msg, msglen, "LOGICAL UNIT RESET of %s: %s", ib->url,
                 iscsi_get_error(ctx));
        return -ENOTCONN;
    }
    if (sp->tmf_response != ISCSI_TMR_FUNC_COMPLETE) {
        if (!ib->reset_unsupported)
            vd_log(VD_LOG_WARN,
                   "device '%s': %s refused LOGICAL UNIT RESET "
                   "(response %u): a write of an earlier session that is still "
                   "pending there could land after newer writes",
                   ib->name, ib->url, sp->tmf_response);
        ib->reset_unsupported = true;
    }
    return 0;
}

/* TEST UNIT READY until the unit attentions of a new session or a reset
 * are consumed.  0, or a negative errno with msg (*permanent: the LUN
 * answered and is not usable). */
static int tur_clear(struct iscsi_bdev *ib, struct iscsi_context *ctx,
                     uint64_t deadline, char *msg, size_t msglen,
                     bool *permanent)
{
    /* In ib, not on the stack: libiscsi calls the callbacks of pending
     * commands when the caller destroys the context, after we return. */
    struct sync_cmd *sp = &ib->probe;
    int r;

    for (int i = 0;; i++) {
        memset(sp, 0, sizeof(*sp));
        sp->task = iscsi_testunitready_task(ctx, ib->lun, sync_cb, sp);
        r = run_probe(ib, ctx, sp, "TEST UNIT READY", deadline, msg, msglen);
        if (r == 0) {
            scsi_free_scsi_task(sp->task);
            return 0;
        }
        if (r != -EIO) {
            ib->stray = sp->task;
            return r == -ENOTCONN ? -EIO : r;
        }
        /* run_probe freed the task; its sense is in msg. */
        if (strstr(msg, "UNIT_ATTENTION") && i < UA_RETRIES)
            continue;
        if (strstr(msg, "LOGICAL_UNIT_NOT_SUPPORTED")) {
            snprintf(msg, msglen,
                     "login to %s: target has no LUN %d (no such "
                     "LUN); check the LUN number in the URL",
                     ib->url, ib->lun);
            r = -ENXIO;
        }
        *permanent = true;
        return r;
    }
}

/* After login and the probes: reservation, then reset (header comment). */
static int session_claim(struct iscsi_bdev *ib, struct iscsi_context *ctx,
                         bool takeover, char *msg, size_t msglen,
                         bool *permanent)
{
    uint64_t deadline = now_ms() + ib->timeout_ms;
    int r;

    r = pr_claim(ib, ctx, takeover, deadline, msg, msglen, permanent);
    if (r < 0)
        return r;
    /* The reset may wait for a slow old command: a full timeout of its own. */
    r = lun_reset(ib, ctx, now_ms() + ib->timeout_ms, msg, msglen);
    if (r < 0)
        return r;
    return tur_clear(ib, ctx, now_ms() + ib->timeout_ms, msg, msglen,
                     permanent);
}

enum login_fail { LF_OTHER, LF_AUTH, LF_TARGET, LF_LUN, LF_REFUSED };

static enum login_fail login_fail_kind(const char *err)
{
    if (strstr(err, "uthentication") || strstr(err, "uthorization") ||
        strstr(err, "CHAP"))
        return LF_AUTH;
    if (strstr(err, "arget not found") || strstr(err, "arget removed"))
        return LF_TARGET;
    if (strstr(err, "LOGICAL_UNIT_NOT_SUPPORTED") ||
        strstr(err, "LOGICAL UNIT NOT SUPPORTED"))
        return LF_LUN;
    if (strstr(err, "refused"))
        return LF_REFUSED;
    return LF_OTHER;
}

static const char *const login_fail_hint[] = {
    [LF_OTHER] = "",
    [LF_AUTH] = "; check chap.user and chap.secret_file",
    [LF_TARGET] = "; check the target name in the URL",
    [LF_LUN] = " (no such LUN); check the LUN number in the URL",
    [LF_REFUSED] = "; is the target running and listening on that portal?",
};
static const int login_fail_errno[] = {
    [LF_OTHER] = -EIO, [LF_AUTH] = -EACCES,          [LF_TARGET] = -ENXIO,
    [LF_LUN] = -ENXIO, [LF_REFUSED] = -ECONNREFUSED,
};

/* Log in, check the LUN (READ CAPACITY 16 for size and block size, block
 * limits for the largest transfer).  On success *out is a logged-in context
 * and *size the device size.  *permanent is set when the peer answered and
 * refused (no point retrying fast).  Runs in the opening thread, then in
 * the event thread. */
static int session_open(struct iscsi_bdev *ib, bool takeover,
                        struct iscsi_context **out, uint64_t *size,
                        uint32_t *max_chunk, bool *permanent, char *msg,
                        size_t msglen)
{
    uint64_t deadline = now_ms() + ib->timeout_ms;
    struct iscsi_context *ctx;
    struct scsi_task *t;
    struct sync_cmd s;
    char secret[SECRET_MAX];
    int r, err = -EIO;

    *permanent = false;
    ctx = iscsi_create_context(ib->initiator);
    if (!ctx) {
        snprintf(msg, msglen, "cannot create an iSCSI context");
        return -ENOMEM;
    }
    iscsi_set_isid_random(ctx, ib->isid, 0);
    iscsi_set_targetname(ctx, ib->target);
    iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C);
    iscsi_set_noautoreconnect(ctx, 1);
    if (ib->chap_user) {
        char *tuser = NULL, *tsecret = NULL;
        r = read_secret(ib->chap_secret_file, secret, sizeof(secret), &tuser,
                        &tsecret, msg, msglen);
        if (r < 0) {
            explicit_bzero(secret, sizeof(secret));
            iscsi_destroy_context(ctx);
            *permanent = true;
            return r;
        }
        r = iscsi_set_initiator_username_pwd(ctx, ib->chap_user, secret);
        if (r == 0 && tuser)
            r = iscsi_set_target_username_pwd(ctx, tuser, tsecret);
        explicit_bzero(secret, sizeof(secret));
        if (r < 0) {
            snprintf(msg, msglen, "CHAP set-up: %s", iscsi_get_error(ctx));
            iscsi_destroy_context(ctx);
            return -EINVAL;
        }
    }
    /* Connect, log in, then TEST UNIT READY ourselves: libiscsi's
     * full_connect leaks its state when the context is destroyed before it
     * completes, which a peer that never answers would make unbounded. */
    ib->connect_done = false;
    ib->sock_err = 0;
    memset(&s, 0, sizeof(s));
    if (iscsi_connect_async(ctx, ib->portal, connect_cb, ib) < 0) {
        snprintf(msg, msglen, "connect to %s: %s", ib->portal,
                 iscsi_get_error(ctx));
        iscsi_destroy_context(ctx);
        return -EIO;
    }
    r = ctx_wait(ib, ctx, &ib->connect_done, deadline);
    if (r == 0 && ib->connect_status != SCSI_STATUS_GOOD)
        r = -EIO;
    if (r == 0) {
        if (iscsi_login_async(ctx, sync_cb, &s) < 0)
            r = -EIO;
        else
            r = ctx_wait(ib, ctx, &s.done, deadline);
        if (r == 0 && s.status != SCSI_STATUS_GOOD)
            r = -EIO;
    }
    if (r < 0) {
        const char *e = iscsi_get_error(ctx);
        if (r == -ETIMEDOUT) {
            snprintf(msg, msglen,
                     "login to %s: no answer within %u ms (peer "
                     "unreachable or not answering)",
                     ib->url, ib->timeout_ms);
            err = -ETIMEDOUT;
        } else if (r == -ECANCELED) {
            snprintf(msg, msglen, "login to %s: device is closing", ib->url);
            err = -ECANCELED;
        } else if (ib->sock_err) {
            snprintf(msg, msglen, "connect to %s: %s%s", ib->portal,
                     strerror(ib->sock_err),
                     ib->sock_err == ECONNREFUSED ? login_fail_hint[LF_REFUSED]
                                                  : "");
            err = -ib->sock_err;
        } else {
            enum login_fail k = login_fail_kind(e ? e : "");
            snprintf(msg, msglen, "login to %s failed: %s%s", ib->url,
                     e && *e ? e : "connection failed",
                     k == LF_AUTH && !ib->chap_user
                         ? "; the target requires CHAP: set chap.user and "
                           "chap.secret_file"
                         : login_fail_hint[k]);
            *permanent = k == LF_AUTH || k == LF_TARGET || k == LF_LUN;
            err = login_fail_errno[k];
        }
        iscsi_destroy_context(ctx);
        return err;
    }
    /* The LUN exists and is ready; a unit attention (new session, reset)
     * is expected once and retried. */
    r = tur_clear(ib, ctx, deadline, msg, msglen, permanent);
    if (r < 0) {
        iscsi_destroy_context(ctx);
        if (ib->stray)
            scsi_free_scsi_task(ib->stray);
        ib->stray = NULL;
        return r;
    }

    memset(&s, 0, sizeof(s));
    s.task = iscsi_readcapacity16_task(ctx, ib->lun, sync_cb, &s);
    r = run_probe(ib, ctx, &s, "READ CAPACITY(16)", deadline, msg, msglen);
    if (r < 0) {
        *permanent = r == -EIO;
        iscsi_destroy_context(ctx);
        if (s.task)
            scsi_free_scsi_task(s.task);
        return r == -ENOTCONN ? -EIO : r;
    }
    t = s.task;
    {
        struct scsi_readcapacity16 *rc = scsi_datain_unmarshall(t);
        if (!rc) {
            snprintf(msg, msglen, "READ CAPACITY(16) of %s: unreadable answer",
                     ib->url);
            scsi_free_scsi_task(t);
            iscsi_destroy_context(ctx);
            *permanent = true;
            return -EIO;
        }
        if (rc->block_length != BLOCK) {
            snprintf(msg, msglen,
                     "%s has a block size of %u bytes; vdlvm "
                     "needs 512-byte blocks",
                     ib->url, rc->block_length);
            scsi_free_scsi_task(t);
            iscsi_destroy_context(ctx);
            *permanent = true;
            return -EINVAL;
        }
        if (rc->returned_lba >= UINT64_MAX / BLOCK) {
            snprintf(msg, msglen,
                     "READ CAPACITY(16) of %s: %llu blocks is beyond what "
                     "vdlvm can address",
                     ib->url, (unsigned long long)rc->returned_lba);
            scsi_free_scsi_task(t);
            iscsi_destroy_context(ctx);
            *permanent = true;
            return -EIO;
        }
        *size = (rc->returned_lba + 1) * (uint64_t)BLOCK;
        ib->ws_unmap = rc->lbpme && rc->lbprz;
        scsi_free_scsi_task(t);
    }

    /* Block limits (optional): the target's maximum transfer length. */
    *max_chunk = MAX_CHUNK;
    ib->ws_max = WS_MAX_CHUNK;
    memset(&s, 0, sizeof(s));
    s.task = iscsi_inquiry_task(
        ctx, ib->lun, 1, SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS, 255, sync_cb, &s);
    {
        char m2[200];
        r = run_probe(ib, ctx, &s, "INQUIRY", deadline, m2, sizeof(m2));
        if (r < 0 && r != -EIO) {
            snprintf(msg, msglen, "%s", m2);
            iscsi_destroy_context(ctx);
            if (s.task)
                scsi_free_scsi_task(s.task);
            return r == -ENOTCONN ? -EIO : r;
        }
    }
    if (r == 0) {
        struct scsi_inquiry_block_limits *bl = scsi_datain_unmarshall(s.task);
        if (bl && bl->max_xfer_len) {
            uint64_t m = (uint64_t)bl->max_xfer_len * BLOCK;
            if (m < *max_chunk)
                *max_chunk = m < BLOCK ? BLOCK : (uint32_t)m;
        }
        /* Compared in blocks: max_ws_len is a 64-bit field of the
         * target's, and a product that wraps would give ws_max 0, i.e.
         * WRITE SAME commands of 0 blocks ("to the end of the LUN"). */
        if (bl && bl->max_ws_len && bl->max_ws_len < ib->ws_max / BLOCK)
            ib->ws_max = (uint32_t)bl->max_ws_len * BLOCK;
        scsi_free_scsi_task(s.task);
    }
    r = session_claim(ib, ctx, takeover, msg, msglen, permanent);
    if (r < 0) {
        iscsi_destroy_context(ctx);
        if (ib->stray)
            scsi_free_scsi_task(ib->stray);
        ib->stray = NULL;
        return r == -ENOTCONN ? -EIO : r;
    }
    *out = ctx;
    return 0;
}

/* ---- the event thread ----------------------------------------------------- */
static void chunk_issue(struct iscsi_bdev *ib, struct chunk *ch);
static const uint8_t zero_block[BLOCK];

/* Complete a request (event thread; ib->lock not held): wake its
 * synchronous caller, or call the submitter's done and free it. */
static void req_complete(struct iscsi_bdev *ib, struct req *rq)
{
    struct vd_bio *bio = rq->bio;

    if (bio) {
        int err = rq->err;
        free(rq);
        __atomic_sub_fetch(&ib->n_async, 1, __ATOMIC_RELAXED);
        bio->done(bio, err);
        return;
    }
    pthread_mutex_lock(&ib->lock);
    rq->done = true;
    pthread_cond_signal(&rq->cond);
    pthread_mutex_unlock(&ib->lock);
}

static void req_put(struct iscsi_bdev *ib, struct req *rq, int err)
{
    if (err && !rq->err)
        rq->err = err;
    if (--rq->left == 0)
        req_complete(ib, rq);
}

static void inflight_unlink(struct iscsi_bdev *ib, struct chunk *ch)
{
    if (ch->prev)
        ch->prev->next = ch->next;
    else
        ib->inflight = ch->next;
    if (ch->next)
        ch->next->prev = ch->prev;
    else
        ib->inflight_tail = ch->prev;
    ch->prev = ch->next = NULL;
}

static void inflight_append(struct iscsi_bdev *ib, struct chunk *ch)
{
    ch->prev = ib->inflight_tail;
    ch->next = NULL;
    if (ib->inflight_tail)
        ib->inflight_tail->next = ch;
    else
        ib->inflight = ch;
    ib->inflight_tail = ch;
}

static void chunk_done(struct iscsi_bdev *ib, struct chunk *ch, int err)
{
    inflight_unlink(ib, ch);
    if (ch->task)
        scsi_free_scsi_task(ch->task);
    req_put(ib, ch->req, err);
    free(ch);
}

static void chunk_cb(struct iscsi_context *ctx, int status, void *data,
                     void *priv)
{
    struct chunk *ch = priv;
    struct iscsi_bdev *ib = ch->ib;
    struct scsi_task *t = ch->task;
    (void)ctx;
    (void)data;

    ib->last_activity = now_ms();
    if (status == SCSI_STATUS_GOOD) {
        chunk_done(ib, ch, 0);
        return;
    }
    if (status == SCSI_STATUS_CANCELLED || status == SCSI_STATUS_ERROR ||
        status == SCSI_STATUS_TIMEOUT || !t) {
        chunk_done(ib, ch, ib->down_err ? ib->down_err : -EIO);
        return;
    }
    /* RESERVATIONS PREEMPTED (2A/03): another host's PREEMPT removed our
     * registration.  Fenced too, whatever the command: tgt 1.0.85 does not
     * check reservations for WRITE SAME (no conflict bits in sbc.c), so the
     * unit attention is the only thing that stops a zero op there. */
    if (status == SCSI_STATUS_CHECK_CONDITION &&
        t->sense.key == SCSI_SENSE_UNIT_ATTENTION && t->sense.ascq == 0x2a03)
        status = SCSI_STATUS_RESERVATION_CONFLICT;
    if (status == SCSI_STATUS_RESERVATION_CONFLICT) {
        /* Another host took the pool over (vdlvm pool takeover): this
         * device is fenced; the event loop drops the session for good. */
        if (!ib->conflict)
            vd_log(VD_LOG_ERR,
                   "device '%s': %s on %s: %s: another host "
                   "took this pool over; the device fails from now on "
                   "(fenced)",
                   ib->name, ch->req->op == OP_READ ? "read" : "write", ib->url,
                   t && t->status == SCSI_STATUS_CHECK_CONDITION
                       ? "RESERVATIONS PREEMPTED"
                       : "RESERVATION CONFLICT");
        ib->conflict = true;
        chunk_done(ib, ch, -EIO);
        return;
    }
    if (ch->req->op == OP_ZERO && status == SCSI_STATUS_CHECK_CONDITION &&
        t->sense.key == SCSI_SENSE_ILLEGAL_REQUEST) {
        /* No WRITE SAME (or not with UNMAP): the caller writes zeroes. */
        __atomic_store_n(&ib->ws_unsupported, 1, __ATOMIC_RELAXED);
        chunk_done(ib, ch, -EOPNOTSUPP);
        return;
    }
    /* The target answered.  A unit attention (e.g. after a new login) or a
     * busy target is worth retrying; anything else is a device error. */
    if ((status == SCSI_STATUS_BUSY || status == SCSI_STATUS_TASK_SET_FULL ||
         (status == SCSI_STATUS_CHECK_CONDITION &&
          t->sense.key == SCSI_SENSE_UNIT_ATTENTION)) &&
        ch->retries++ < UA_RETRIES && ib->ctx) {
        scsi_free_scsi_task(t);
        ch->task = NULL;
        inflight_unlink(ib, ch);
        chunk_issue(ib, ch);
        return;
    }
    {
        char sense[128];
        sense_str(t, sense, sizeof(sense));
        vd_log(VD_LOG_ERR,
               "device '%s': %s of %u bytes at %" PRIu64 " on %s: %s", ib->name,
               ch->req->op == OP_READ    ? "read"
               : ch->req->op == OP_WRITE ? "write"
               : ch->req->op == OP_ZERO  ? "WRITE SAME"
                                         : "cache flush",
               ch->len, ch->off, ib->url, sense);
    }
    chunk_done(ib, ch, -EIO);
}

/* Issue (or re-issue) one command; on failure to queue it, complete it. */
static void chunk_issue(struct iscsi_bdev *ib, struct chunk *ch)
{
    struct req *rq = ch->req;
    struct scsi_task *t = NULL;

    inflight_append(ib, ch);
    switch (rq->op) {
    case OP_READ:
        /* Data goes straight into the caller's buffer (the iovec is set
         * before the command is queued). */
        ch->iov.iov_base = rq->buf + (ch->off - rq->off);
        ch->iov.iov_len = ch->len;
        t = iscsi_read16_iov_task(ib->ctx, ib->lun, ch->off / BLOCK, ch->len,
                                  BLOCK, 0, 0, 0, 0, 0, chunk_cb, ch, &ch->iov,
                                  1);
        break;
    case OP_WRITE:
        ch->iov.iov_base = rq->buf + (ch->off - rq->off);
        ch->iov.iov_len = ch->len;
        t = iscsi_write16_iov_task(
            ib->ctx, ib->lun, ch->off / BLOCK, NULL, ch->len, BLOCK, 0, 0,
            !!(rq->flags & VD_IO_FUA), 0, 0, chunk_cb, ch, &ch->iov, 1);
        break;
    case OP_FLUSH:
        t = iscsi_synchronizecache16_task(ib->ctx, ib->lun, 0, 0, 0, 0,
                                          chunk_cb, ch);
        break;
    case OP_ZERO:
        /* libiscsi only reads the data-out block. */
        t = iscsi_writesame16_task(
            ib->ctx, ib->lun, ch->off / BLOCK, (unsigned char *)zero_block,
            BLOCK, ch->len / BLOCK, 0, ib->ws_unmap, 0, 0, chunk_cb, ch);
        break;
    }
    if (!t) {
        vd_log(VD_LOG_ERR, "device '%s': cannot queue a command: %s", ib->name,
               iscsi_get_error(ib->ctx));
        chunk_done(ib, ch, -EIO);
        return;
    }
    ch->task = t;
}

static void req_issue(struct iscsi_bdev *ib, struct req *rq)
{
    uint64_t off = rq->off, end = rq->off + rq->len;

    rq->left = 1; /* guard: the request cannot complete while being split */
    do {
        struct chunk *ch = calloc(1, sizeof(*ch));
        if (!ch) {
            rq->err = -ENOMEM;
            break;
        }
        ch->ib = ib;
        ch->req = rq;
        ch->off = off;
        uint32_t max = rq->op == OP_ZERO ? ib->ws_max : ib->max_chunk;
        ch->len = rq->op == OP_FLUSH ? 0
                  : end - off < max  ? (uint32_t)(end - off)
                                     : max;
        ch->deadline = rq->deadline;
        rq->left++;
        chunk_issue(ib, ch);
        off += ch->len ? ch->len : 1;
    } while (off < end);
    req_put(ib, rq, 0);
}

/* Complete the requests of a queue taken from ib->qhead (event thread). */
static void fail_queue(struct iscsi_bdev *ib, struct req *q, int err)
{
    while (q) {
        struct req *next = q->next; /* q may be gone once completed */
        q->err = err;
        req_complete(ib, q);
        q = next;
    }
}

static void nop_cb(struct iscsi_context *ctx, int status, void *data,
                   void *priv)
{
    struct iscsi_bdev *ib = priv;
    (void)ctx;
    (void)data;
    (void)status;
    ib->nop_pending = false;
    ib->last_activity = now_ms();
}

/* Tear the session down: every command in flight and every queued request
 * fails with err; new requests fail at once until the reconnect succeeds. */
static void conn_lost(struct iscsi_bdev *ib, int err, enum conn_state st,
                      const char *cause)
{
    struct req *q;
    bool was_connected;

    pthread_mutex_lock(&ib->lock);
    was_connected = ib->state == ST_CONNECTED;
    if (was_connected)
        ib->since = time(NULL);
    ib->state = st;
    snprintf(ib->cause, sizeof(ib->cause), "%s", cause);
    q = ib->qhead;
    ib->qhead = ib->qtail = NULL;
    pthread_mutex_unlock(&ib->lock);
    if (was_connected)
        vd_log(VD_LOG_WARN,
               "device '%s': connection to %s lost: %s; commands "
               "to it fail until it is back (reconnecting in the background)",
               ib->name, ib->url, cause);

    ib->down_err = err;
    if (ib->ctx) {
        struct iscsi_context *ctx = ib->ctx;
        /* Close with a RST: data of this session that the kernel has not
         * delivered yet must not reach the peer later (defect 5). */
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        int fd = iscsi_get_fd(ctx);
        if (fd >= 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        ib->ctx = NULL; /* callbacks must not re-issue */
        iscsi_destroy_context(ctx);
    }
    /* Commands libiscsi did not call back (none expected) fail here. */
    while (ib->inflight)
        chunk_done(ib, ib->inflight, err);
    ib->down_err = 0;
    ib->nop_pending = false;
    fail_queue(ib, q, -ENOTCONN);
    if (was_connected)
        ib->backoff_ms = BACKOFF_MIN_MS;
    ib->next_retry = now_ms() + ib->backoff_ms;
}

static void try_reconnect(struct iscsi_bdev *ib)
{
    struct iscsi_context *ctx = NULL;
    uint64_t size = 0;
    uint32_t max_chunk = 0;
    bool permanent = false;
    char msg[200];
    int r;

    r = session_open(ib, false, &ctx, &size, &max_chunk, &permanent, msg,
                     sizeof(msg));
    if (r == -EBUSY) {
        /* Another host holds the reservation: we were taken over while
         * away.  Never come back by ourselves (header comment). */
        ib->fenced = true;
        vd_log(VD_LOG_ERR, "device '%s': fenced: %s", ib->name, msg);
    }
    if (r == 0 && size < ib->b.size) {
        snprintf(msg, sizeof(msg),
                 "%s now has %" PRIu64 " bytes, less than the "
                 "%" PRIu64 " it had",
                 ib->url, size, ib->b.size);
        iscsi_destroy_context(ctx);
        r = -EINVAL;
        permanent = true;
    }
    if (r == 0) {
        ib->ctx = ctx;
        ib->max_chunk = max_chunk < ib->max_chunk ? max_chunk : ib->max_chunk;
        ib->last_activity = now_ms();
        pthread_mutex_lock(&ib->lock);
        ib->state = ST_CONNECTED;
        ib->cause[0] = 0;
        pthread_mutex_unlock(&ib->lock);
        __atomic_add_fetch(&ib->b.n_reconnects, 1, __ATOMIC_RELAXED);
        vd_log(VD_LOG_WARN, "device '%s': reconnected to %s", ib->name,
               ib->url);
        ib->backoff_ms = BACKOFF_MIN_MS;
        return;
    }
    if (r == -ECANCELED)
        return;
    pthread_mutex_lock(&ib->lock);
    ib->state = permanent ? ST_FAILED : ST_RECONNECTING;
    snprintf(ib->cause, sizeof(ib->cause), "%s", msg);
    pthread_mutex_unlock(&ib->lock);
    ib->backoff_ms = permanent                             ? BACKOFF_MAX_MS
                     : ib->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                           : ib->backoff_ms * 2;
    ib->next_retry = now_ms() + ib->backoff_ms;
}

static void drain_wake(struct iscsi_bdev *ib)
{
    uint64_t v;
    ssize_t n = read(ib->wake_fd, &v, sizeof(v));
    (void)n;
}

/* Closing a handle that reserved a free LUN and wrote nothing (a pool
 * create refused for that device, a read-only look at a pool nobody
 * holds): release the reservation and unregister, so that a mistyped URL
 * in a definition does not leave someone else's LUN reserved.  A handle
 * that wrote keeps the reservation (header comment). */
static void give_back(struct iscsi_bdev *ib)
{
    /* close may run on tgtd's main thread: a short, bounded wait, and none
     * at all for a peer that has been quiet (the reservation then stays). */
    uint64_t deadline =
        now_ms() + (ib->timeout_ms < 500 ? ib->timeout_ms : 500);
    char msg[200];
    int r;

    if (now_ms() - ib->last_activity > ib->keepalive_ms)
        return;

    ib->closing = true; /* ctx_wait: do not stop for `stopping` */
    r = pr_out(ib, ib->ctx, SCSI_PERSISTENT_RESERVE_RELEASE,
               SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
               ib->pr_key, 0, deadline, msg, sizeof(msg));
    if (r == CMD_GOOD)
        r = pr_out(ib, ib->ctx, SCSI_PERSISTENT_RESERVE_REGISTER, 0, ib->pr_key,
                   0, deadline, msg, sizeof(msg));
    ib->closing = false;
    if (r != CMD_GOOD)
        vd_log(VD_LOG_DEBUG,
               "device '%s': giving the reservation of %s back "
               "failed (ignored)",
               ib->name, ib->url);
    /* A task a failed command left behind goes with the context. */
    if (ib->stray) {
        struct iscsi_context *ctx = ib->ctx;
        ib->ctx = NULL;
        iscsi_destroy_context(ctx);
        scsi_free_scsi_task(ib->stray);
        ib->stray = NULL;
    }
}

static void *event_thread(void *arg)
{
    struct iscsi_bdev *ib = arg;

    for (;;) {
        struct req *q;
        bool stop, connected;
        uint64_t now;

        pthread_mutex_lock(&ib->lock);
        stop = ib->stopping;
        connected = ib->state == ST_CONNECTED;
        q = ib->qhead;
        ib->qhead = ib->qtail = NULL;
        pthread_mutex_unlock(&ib->lock);
        if (stop) {
            fail_queue(ib, q, -ENOTCONN);
            if (ib->ctx && connected && ib->took &&
                !__atomic_load_n(&ib->wrote, __ATOMIC_RELAXED))
                give_back(ib);
            break;
        }
        if (!connected) {
            fail_queue(ib, q, -ENOTCONN);
            now = now_ms();
            if (ib->fenced)
                ib->next_retry = now + BACKOFF_MAX_MS; /* only close wakes */
            else if (now >= ib->next_retry) {
                try_reconnect(ib);
                continue;
            }
            struct pollfd pfd = { .fd = ib->wake_fd, .events = POLLIN };
            uint64_t wait = ib->next_retry - now;
            if (poll(&pfd, 1, wait < 1000 ? (int)wait : 1000) > 0)
                drain_wake(ib);
            continue;
        }
        while (q) {
            struct req *next = q->next;
            req_issue(ib, q);
            q = next;
        }
        if (!ib->ctx) /* a callback found the session unusable */
            continue;

        now = now_ms();
        /* Keepalive: an idle session is probed with a NOP-Out. */
        if (!ib->inflight && !ib->nop_pending &&
            now - ib->last_activity >= ib->keepalive_ms) {
            if (iscsi_nop_out_async(ib->ctx, nop_cb, NULL, 0, ib) == 0) {
                ib->nop_pending = true;
                ib->nop_deadline = now + ib->timeout_ms;
            }
        }
        /* Re-issued commands keep their deadline: scan, not just the head. */
        uint64_t next_deadline = UINT64_MAX;
        for (struct chunk *c = ib->inflight; c; c = c->next)
            if (c->deadline < next_deadline)
                next_deadline = c->deadline;
        if (ib->nop_pending && ib->nop_deadline < next_deadline)
            next_deadline = ib->nop_deadline;
        if (next_deadline <= now) {
            char cause[160];
            snprintf(cause, sizeof(cause), "no answer within %u ms",
                     ib->timeout_ms);
            conn_lost(ib, -ETIMEDOUT, ST_RECONNECTING, cause);
            continue;
        }
        uint64_t wait = POLL_SLICE_MS * 5;
        if (next_deadline - now < wait)
            wait = next_deadline - now;
        if (!ib->inflight && !ib->nop_pending &&
            ib->last_activity + ib->keepalive_ms - now < wait)
            wait = ib->last_activity + ib->keepalive_ms - now;
        struct pollfd pfd[2] = {
            { .fd = iscsi_get_fd(ib->ctx),
              .events = iscsi_which_events(ib->ctx) },
            { .fd = ib->wake_fd, .events = POLLIN },
        };
        int r = poll(pfd, 2, (int)wait);
        if (r < 0 && errno != EINTR) {
            char cause[160];
            snprintf(cause, sizeof(cause), "poll: %s", strerror(errno));
            conn_lost(ib, -EIO, ST_RECONNECTING, cause);
            continue;
        }
        if (r > 0 && (pfd[1].revents & POLLIN))
            drain_wake(ib);
        if (r > 0 && pfd[0].revents &&
            iscsi_service(ib->ctx, pfd[0].revents) < 0) {
            char cause[200];
            const char *e = iscsi_get_error(ib->ctx);
            snprintf(cause, sizeof(cause), "%s",
                     e && *e ? e : "connection failed");
            conn_lost(ib, -EIO, ST_RECONNECTING, cause);
        }
        if (ib->conflict && ib->ctx) {
            char cause[300];
            snprintf(cause, sizeof(cause),
                     "fenced: RESERVATION CONFLICT on "
                     "%s: another host took this pool over (vdlvm pool "
                     "takeover); reopen the pool on this host only after "
                     "taking it back",
                     ib->url);
            ib->fenced = true;
            conn_lost(ib, -EIO, ST_FAILED, cause);
        }
    }
    /* Closing: commands still in flight (submitted requests the caller
     * did not wait for) fail here, before close returns. */
    pthread_mutex_lock(&ib->lock);
    ib->state = ST_FAILED;
    snprintf(ib->cause, sizeof(ib->cause), "device closed");
    pthread_mutex_unlock(&ib->lock);
    conn_lost(ib, -ENOTCONN, ST_FAILED, "device closed");
    return NULL;
}

/* ---- driver operations --------------------------------------------------- */
/* Link rq at the queue's tail (ib->lock held); true when the queue was
 * empty: the caller wakes the event thread after unlocking (header). */
static bool enqueue_locked(struct iscsi_bdev *ib, struct req *rq)
{
    bool was_empty = !ib->qhead;

    rq->next = NULL;
    if (ib->qtail)
        ib->qtail->next = rq;
    else
        ib->qhead = rq;
    ib->qtail = rq;
    return was_empty;
}

static int submit(struct iscsi_bdev *ib, enum req_op op, void *buf, size_t len,
                  uint64_t off, unsigned flags)
{
    bool wake_unlocked = false;
    struct req rq = {
        .op = op,
        .buf = buf,
        .len = len,
        .off = off,
        .flags = flags,
    };
    int r;

    if (op != OP_FLUSH) {
        if (len == 0)
            return 0;
        if (op != OP_READ)
            __atomic_store_n(&ib->wrote, 1, __ATOMIC_RELAXED);
        if (off % BLOCK || len % BLOCK || off > ib->b.size ||
            len > ib->b.size - off)
            return -EINVAL;
    }
    rq.deadline = now_ms() + ib->timeout_ms;
    pthread_cond_init(&rq.cond, NULL);
    pthread_mutex_lock(&ib->lock);
    if (ib->state != ST_CONNECTED || ib->stopping) {
        pthread_mutex_unlock(&ib->lock);
        pthread_cond_destroy(&rq.cond);
        return -ENOTCONN;
    }
    if (enqueue_locked(ib, &rq))
        wake_unlocked = true;
    pthread_mutex_unlock(&ib->lock);
    if (wake_unlocked)
        wake(ib);
    pthread_mutex_lock(&ib->lock);
    while (!rq.done)
        pthread_cond_wait(&rq.cond, &ib->lock);
    r = rq.err;
    pthread_mutex_unlock(&ib->lock);
    pthread_cond_destroy(&rq.cond);
    return r;
}

/* The asynchronous op (header: "Asynchronous requests"). */
static int iscsi_submit(struct vd_bdev *b, struct vd_bio *bio)
{
    struct iscsi_bdev *ib = (struct iscsi_bdev *)b;
    enum req_op op;
    struct req *rq;
    bool need_wake;

    switch (bio->op) {
    case VD_BIO_READ:
        op = OP_READ;
        break;
    case VD_BIO_WRITE:
        op = OP_WRITE;
        break;
    case VD_BIO_FLUSH:
        op = OP_FLUSH;
        break;
    default:
        return -EAGAIN;
    }
    if (op != OP_FLUSH &&
        (bio->len == 0 || bio->off % BLOCK || bio->len % BLOCK ||
         bio->off > ib->b.size || bio->len > ib->b.size - bio->off))
        return -EAGAIN;
    if (__atomic_add_fetch(&ib->n_async, 1, __ATOMIC_RELAXED) > ASYNC_MAX) {
        __atomic_sub_fetch(&ib->n_async, 1, __ATOMIC_RELAXED);
        return -EAGAIN;
    }
    rq = calloc(1, sizeof(*rq));
    if (!rq) {
        __atomic_sub_fetch(&ib->n_async, 1, __ATOMIC_RELAXED);
        return -EAGAIN;
    }
    rq->op = op;
    rq->buf = bio->buf;
    rq->len = op == OP_FLUSH ? 0 : bio->len;
    rq->off = op == OP_FLUSH ? 0 : bio->off;
    rq->flags = op == OP_WRITE ? (bio->flags & VD_IO_FUA) : 0;
    rq->bio = bio;
    if (op == OP_WRITE)
        __atomic_store_n(&ib->wrote, 1, __ATOMIC_RELAXED);
    rq->deadline = now_ms() + ib->timeout_ms;
    pthread_mutex_lock(&ib->lock);
    if (ib->state != ST_CONNECTED || ib->stopping) {
        pthread_mutex_unlock(&ib->lock);
        free(rq);
        __atomic_sub_fetch(&ib->n_async, 1, __ATOMIC_RELAXED);
        return -EAGAIN;
    }
    need_wake = enqueue_locked(ib, rq);
    pthread_mutex_unlock(&ib->lock);
    /* From here the event thread owns rq (it may be freed already). */
    if (need_wake)
        wake(ib);
    return 0;
}

static int iscsi_pread(struct vd_bdev *b, void *buf, size_t len, uint64_t off)
{
    return submit((struct iscsi_bdev *)b, OP_READ, buf, len, off, 0);
}

static int iscsi_pwrite(struct vd_bdev *b, const void *buf, size_t len,
                        uint64_t off, unsigned flags)
{
    /* libiscsi only reads a write's buffer. */
    return submit((struct iscsi_bdev *)b, OP_WRITE, (void *)buf, len, off,
                  flags);
}

static int iscsi_flush(struct vd_bdev *b)
{
    return submit((struct iscsi_bdev *)b, OP_FLUSH, NULL, 0, 0, 0);
}

/* WRITE SAME(16) of a zero block (UNMAP too when the LUN reads unmapped
 * blocks as zeroes), split at the target's limit; zero buffers written
 * when the target refuses WRITE SAME. */
static int iscsi_zero(struct vd_bdev *b, uint64_t off, uint64_t len)
{
    struct iscsi_bdev *ib = (struct iscsi_bdev *)b;
    size_t buflen;
    void *buf;
    int r;

    if (!__atomic_load_n(&ib->ws_unsupported, __ATOMIC_RELAXED)) {
        r = submit(ib, OP_ZERO, NULL, len, off, 0);
        if (r != -EOPNOTSUPP)
            return r;
    }
    buflen = len < MAX_CHUNK ? (size_t)len : MAX_CHUNK;
    buf = calloc(1, buflen ? buflen : 1);
    if (!buf)
        return -ENOMEM;
    r = 0;
    for (uint64_t done = 0; done < len && r == 0;) {
        size_t n = len - done < buflen ? (size_t)(len - done) : buflen;
        r = submit(ib, OP_WRITE, buf, n, off + done, 0);
        done += n;
    }
    free(buf);
    return r;
}

static int iscsi_get_state(struct vd_bdev *b, char *buf, size_t len)
{
    struct iscsi_bdev *ib = (struct iscsi_bdev *)b;
    int ok;

    pthread_mutex_lock(&ib->lock);
    ok = ib->state == ST_CONNECTED;
    if (ok) {
        snprintf(buf, len, "connected");
    } else if (ib->state == ST_RECONNECTING) {
        char t[32];
        struct tm tm;
        gmtime_r(&ib->since, &tm);
        strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(buf, len, "reconnecting since %s: %s", t, ib->cause);
    } else {
        snprintf(buf, len, "failed: %s", ib->cause);
    }
    pthread_mutex_unlock(&ib->lock);
    return ok;
}

static void ib_free(struct iscsi_bdev *ib)
{
    if (!ib)
        return;
    if (ib->ctx)
        iscsi_destroy_context(ib->ctx);
    if (ib->wake_fd >= 0)
        close(ib->wake_fd);
    pthread_mutex_destroy(&ib->lock);
    free(ib->url);
    free(ib->portal);
    free(ib->target);
    free(ib->chap_user);
    free(ib->chap_secret_file);
    free(ib);
}

static void iscsi_close(struct vd_bdev *b)
{
    struct iscsi_bdev *ib = (struct iscsi_bdev *)b;

    if (!ib)
        return;
    if (ib->thread_started) {
        pthread_mutex_lock(&ib->lock);
        ib->stopping = true;
        pthread_mutex_unlock(&ib->lock);
        wake(ib);
        pthread_join(ib->thread, NULL);
    }
    ib_free(ib);
}

static const struct vd_bdev_ops iscsi_ops = {
    .kind = "iscsi",
    .pread = iscsi_pread,
    .pwrite = iscsi_pwrite,
    .flush = iscsi_flush,
    .close = iscsi_close,
    .get_state = iscsi_get_state,
    .zero = iscsi_zero,
    .submit = iscsi_submit,
};

/* ---- open ------------------------------------------------------------------ */
/* A device handle from its definition, not logged in yet.  On failure msg
 * says why. */
static int ib_new(const struct vd_conf_dev *c, struct iscsi_bdev **out,
                  char *msg, size_t msglen)
{
    struct iscsi_bdev *ib = NULL;
    struct iscsi_context *pctx = NULL;
    struct iscsi_url *u = NULL;
    int r;

    *out = NULL;
    /* A password in the URL would end up in status output and logs. */
    {
        const char *rest = strncmp(c->iscsi_url, "iscsi://", 8) == 0
                               ? c->iscsi_url + 8
                               : c->iscsi_url;
        const char *slash = strchr(rest, '/');
        const char *at = strchr(rest, '@');
        if (at && (!slash || at < slash)) {
            snprintf(msg, msglen,
                     "the URL carries user credentials; put the "
                     "user in chap.user and the secret in chap.secret_file");
            return -EINVAL;
        }
    }
    if (c->chap_user && !c->chap_secret_file) {
        snprintf(msg, msglen, "chap.user is set but chap.secret_file is not");
        return -EINVAL;
    }
    ib = calloc(1, sizeof(*ib));
    if (!ib)
        return -ENOMEM;
    ib->wake_fd = -1;
    pthread_mutex_init(&ib->lock, NULL);
    snprintf(ib->name, sizeof(ib->name), "%s", c->name ? c->name : "?");
    ib->timeout_ms = c->timeout_ms ? c->timeout_ms : 30000;
    ib->keepalive_ms = ib->timeout_ms / 2 < 5000 ? ib->timeout_ms / 2 : 5000;
    if (ib->keepalive_ms < 100)
        ib->keepalive_ms = 100;
    vd_owner_host(ib->host, sizeof(ib->host));
    ib->pr_key = vd_owner_key(ib->host);
    snprintf(ib->initiator, sizeof(ib->initiator), "iqn.2026-11.org.vdlvm:%s",
             ib->host);
    if (getrandom(&ib->isid, sizeof(ib->isid), 0) != sizeof(ib->isid))
        ib->isid = (uint32_t)getpid() ^ (uint32_t)time(NULL);
    ib->isid &= 0xffffff;

    pctx = iscsi_create_context(ib->initiator);
    if (!pctx) {
        r = -ENOMEM;
        goto fail;
    }
    u = iscsi_parse_full_url(pctx, c->iscsi_url);
    if (!u) {
        snprintf(msg, msglen,
                 "%s is not an iSCSI URL (%s); use "
                 "iscsi://HOST[:PORT]/TARGET-IQN/LUN",
                 c->iscsi_url, iscsi_get_error(pctx));
        r = -EINVAL;
        goto fail;
    }
    ib->url = strdup(c->iscsi_url);
    ib->portal = strdup(u->portal);
    ib->target = strdup(u->target);
    ib->lun = u->lun;
    ib->chap_user = c->chap_user ? strdup(c->chap_user) : NULL;
    ib->chap_secret_file =
        c->chap_secret_file ? strdup(c->chap_secret_file) : NULL;
    if (!ib->url || !ib->portal || !ib->target ||
        (c->chap_user && (!ib->chap_user || !ib->chap_secret_file))) {
        r = -ENOMEM;
        goto fail;
    }
    iscsi_destroy_url(u);
    iscsi_destroy_context(pctx);
    *out = ib;
    return 0;

fail:
    if (u)
        iscsi_destroy_url(u);
    if (pctx)
        iscsi_destroy_context(pctx);
    ib_free(ib);
    return r;
}

int vd_bdev_iscsi_open(const struct vd_conf_dev *c, struct vd_bdev **out,
                       char *msg, size_t msglen)
{
    struct iscsi_bdev *ib = NULL;
    uint64_t size = 0;
    uint32_t max_chunk = 0;
    bool permanent;
    sigset_t all, old;
    int r;

    *out = NULL;
    r = ib_new(c, &ib, msg, msglen);
    if (r < 0)
        return r;
    r = session_open(ib, false, &ib->ctx, &size, &max_chunk, &permanent, msg,
                     msglen);
    if (r < 0)
        goto fail;
    ib->b.ops = &iscsi_ops;
    ib->b.size = size;
    ib->b.block_size = BLOCK;
    ib->max_chunk = max_chunk;
    ib->state = ST_CONNECTED;
    ib->backoff_ms = BACKOFF_MIN_MS;
    ib->last_activity = now_ms();
    ib->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ib->wake_fd < 0) {
        r = -errno;
        snprintf(msg, msglen, "eventfd: %s", strerror(-r));
        goto fail;
    }
    /* The event thread must receive no signal (tgtd uses SIGUSR2 for its
     * own threads): it inherits a fully blocked mask. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    r = -pthread_create(&ib->thread, NULL, event_thread, ib);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        snprintf(msg, msglen, "cannot start the I/O thread: %s", strerror(-r));
        goto fail;
    }
    ib->thread_started = true;
    *out = &ib->b;
    return 0;

fail:
    ib_free(ib);
    return r;
}

int vd_bdev_iscsi_takeover(const struct vd_conf_dev *c, char *msg,
                           size_t msglen)
{
    struct iscsi_bdev *ib = NULL;
    struct iscsi_context *ctx = NULL;
    uint64_t size = 0;
    uint32_t max_chunk = 0;
    bool permanent;
    int r;

    if (!c->iscsi_url) {
        snprintf(msg, msglen, "not a remote device: nothing to take over");
        return -EINVAL;
    }
    r = ib_new(c, &ib, msg, msglen);
    if (r < 0)
        return r;
    /* session_open preempts the holder and then resets the LU: when it
     * returns, nothing of the old owner is pending there and its next
     * command meets RESERVATION CONFLICT. */
    r = session_open(ib, true, &ctx, &size, &max_chunk, &permanent, msg,
                     msglen);
    if (r == 0) {
        snprintf(msg, msglen, "%s", ib->claim_msg);
        /* The reservation outlives this session (tgt keeps the
         * registration of a nexus that logged out). */
        iscsi_destroy_context(ctx);
    }
    ib_free(ib);
    return r;
}
