// Unit tests for admin/progress.c: rate and time-left arithmetic, the
// line, one line per step when not on a terminal, in-place redraw on one.
#include <algorithm>
#include <sstream>

#include "tests/unit/admin_fixture.h"

extern "C" {
#include "admin/admin_int.h"
#include "admin/progress_jobs.h"
}

using namespace vdtest_admin;

namespace {

const uint64_t MiB = 1ull << 20;

size_t Count(const std::string &s, const std::string &what)
{
    size_t n = 0;
    for (size_t p = s.find(what); p != std::string::npos;
         p = s.find(what, p + what.size()))
        n++;
    return n;
}

TEST(Progress, Eta_RoundsUpAndUnknownWithoutRate)
{
    EXPECT_EQ(admin_progress_eta(0, 100 * MiB, 10 * MiB), 10u);
    EXPECT_EQ(admin_progress_eta(95 * MiB, 100 * MiB, 10 * MiB), 1u);
    EXPECT_EQ(admin_progress_eta(100 * MiB, 100 * MiB, 0), 0u);
    EXPECT_EQ(admin_progress_eta(1, 100, 0), UINT64_MAX);
    // No overflow near the top of the range.
    EXPECT_EQ(admin_progress_eta(0, UINT64_MAX, UINT64_MAX), 1u);
}

TEST(Progress, Line_BarPercentBytesRateEta)
{
    char buf[256];
    admin_progress_line(buf, sizeof(buf), 72 * MiB, 160 * MiB, 50 * MiB, 10);
    EXPECT_STREQ(buf, "[####......]  45%  72MiB of 160MiB  50MiB/s  0:02 left");
    admin_progress_line(buf, sizeof(buf), 0, 4096ull << 30, 1 * MiB, 0);
    EXPECT_STREQ(buf, "  0%  0B of 4TiB  1MiB/s  1165:05:04 left");
    admin_progress_line(buf, sizeof(buf), 5, 10, 0, 0);
    EXPECT_STREQ(buf, " 50%  5B of 10B  -  time left unknown");
    // Done beyond total (a shrinking total) shows 100 %, never more.
    admin_progress_line(buf, sizeof(buf), 20, 10, 1, 4);
    EXPECT_STREQ(buf, "[####] 100%  10B of 10B  1B/s  0:00 left");
    // A short buffer is cut, never overrun.
    char small[8];
    admin_progress_line(small, sizeof(small), 1, 2, 1, 30);
    EXPECT_EQ(strlen(small), 7u);
}

TEST(Progress, Rate_OverAWindowOfSamples)
{
    struct admin_progress p;
    admin_progress_start(&p, nullptr, "x", 1000 * MiB, 0);
    int64_t t = p.t0_ms;
    // 10 MiB per second in bursts of 10 MiB each second, sampled every
    // 250 ms: the rate stays near 10 MiB/s instead of jumping.
    double lo = 1e18, hi = 0;
    for (int i = 0; i <= 40; i++) {
        admin_progress_update_at(&p, (i / 4) * 10 * MiB, 1000 * MiB,
                                 t + i * 250);
        if (i >= 16) {
            lo = std::min(lo, p.rate);
            hi = std::max(hi, p.rate);
        }
    }
    EXPECT_GT(lo, 7.0 * MiB);
    EXPECT_LT(hi, 14.0 * MiB);
    // A steady rate is measured exactly.
    admin_progress_start(&p, nullptr, "x", 1000 * MiB, 0);
    t = p.t0_ms;
    for (int i = 0; i <= 20; i++)
        admin_progress_update_at(&p, i * 5 * MiB, 1000 * MiB, t + i * 500);
    EXPECT_NEAR(p.rate, 10.0 * MiB, 1.0);
    // A stall: the rate falls within the window, not at once.
    admin_progress_update_at(&p, 100 * MiB, 1000 * MiB, t + 11000);
    EXPECT_GT(p.rate, 5.0 * MiB);
    for (int i = 1; i <= 10; i++)
        admin_progress_update_at(&p, 100 * MiB, 1000 * MiB, t + 11000 + i * 500);
    EXPECT_EQ(p.rate, 0.0);
}

TEST(Progress, NotATerminal_OneLinePerStep)
{
    Output o;
    struct admin_progress p;
    admin_progress_start(&p, o.err, "resync p0/v0", 100 * MiB, 0);
    int64_t t = p.t0_ms;
    for (int i = 0; i <= 100; i++)
        admin_progress_update_at(&p, i * MiB, 100 * MiB, t + i * 100);
    admin_progress_end_at(&p, "done", t + 10000);
    std::string s = o.Err();
    // 0 %, 10 %, ..., 100 %: 11 step lines and the end line.
    EXPECT_EQ(Count(s, "\n"), 12u) << s;
    EXPECT_EQ(Count(s, "resync p0/v0: "), 12u) << s;
    EXPECT_EQ(s.find('\r'), std::string::npos) << s;
    EXPECT_EQ(s.find('['), std::string::npos) << s; // no bar in a log
    EXPECT_NE(s.find("resync p0/v0:  50%  50MiB of 100MiB  10MiB/s  0:05 left\n"),
              std::string::npos)
        << s;
    EXPECT_NE(s.find("resync p0/v0: done (100MiB in 10.0 s, 10MiB/s)\n"),
              std::string::npos)
        << s;
}

TEST(Progress, Terminal_RedrawsInPlaceThrottled)
{
    Output o;
    struct admin_progress p;
    admin_progress_start(&p, o.err, "rebuild p0/v0", 100 * MiB, 1);
    int64_t t = p.t0_ms;
    // 1000 updates within 1 s: at most one redraw per 100 ms.
    for (int i = 0; i < 1000; i++)
        admin_progress_update_at(&p, i * 100 * 1024, 100 * MiB, t + i);
    admin_progress_end_at(&p, "done", t + 1000);
    std::string s = o.Err();
    size_t draws = Count(s, "\rrebuild p0/v0: [");
    EXPECT_GE(draws, 1u) << s;
    EXPECT_LE(draws, 11u) << s;
    EXPECT_EQ(Count(s, "\n"), 1u) << s; // only the end line ends a line
    EXPECT_NE(s.find("\033[K"), std::string::npos);
    EXPECT_EQ(s.rfind("\r\033[Krebuild p0/v0: done"), s.rfind('\r') - 0) << s;
}

// Inside tgtd (err a memory stream, tty left to progress.c) a progress
// naming POOL/OBJ is published as a job for stats and the client, and
// nothing is drawn into the stream; the job leaves at the end.
TEST(Progress, InsideTgtd_PublishedAsAJobNotDrawn)
{
    Output o;
    struct admin_progress p;
    struct admin_job j[ADMIN_JOBS_MAX];
    admin_progress_start(&p, o.err, "import p0/v0", 100 * MiB, -1);
    int64_t t = p.t0_ms;
    ASSERT_EQ(admin_jobs_list("p0", nullptr, j, ADMIN_JOBS_MAX), 1u);
    EXPECT_STREQ(j[0].what, "import");
    EXPECT_STREQ(j[0].object, "p0/v0");
    EXPECT_EQ(j[0].total, 100 * MiB);
    EXPECT_EQ(j[0].done, 0u);
    for (int i = 0; i <= 40; i++)
        admin_progress_update_at(&p, i * MiB, 100 * MiB, t + i * 100);
    ASSERT_EQ(admin_jobs_list("p0", "v0", j, ADMIN_JOBS_MAX), 1u);
    EXPECT_EQ(j[0].done, 40 * MiB);
    EXPECT_EQ(j[0].rate, 10 * MiB);
    EXPECT_EQ(j[0].elapsed_ms, 4000u);
    EXPECT_EQ(admin_jobs_list("p1", nullptr, j, ADMIN_JOBS_MAX), 0u);
    EXPECT_EQ(admin_jobs_list("p0", "v1", j, ADMIN_JOBS_MAX), 0u);
    EXPECT_EQ(admin_jobs_list("p", nullptr, j, ADMIN_JOBS_MAX), 0u);
    EXPECT_EQ(admin_jobs_list(nullptr, nullptr, j, ADMIN_JOBS_MAX), 1u);
    // What stats and status show of it.
    {
        Output v;
        admin_jobs_json(v.out, "p0", nullptr);
        admin_jobs_text(v.err, "p0", "v0");
        EXPECT_EQ(v.Out(),
                  "\"jobs\":[{\"job\":\"import\",\"object\":\"p0/v0\","
                  "\"done_bytes\":41943040,\"total_bytes\":104857600,"
                  "\"rate_bytes_per_s\":10485760,\"elapsed_ms\":4000,"
                  "\"eta_s\":6}]");
        EXPECT_EQ(v.Err(), "  import p0/v0: [############..................]  "
                           "40%  40MiB of 100MiB  10MiB/s  0:06 left\n");
    }
    admin_progress_end_at(&p, "imported", t + 5000);
    EXPECT_EQ(admin_jobs_list(nullptr, nullptr, j, ADMIN_JOBS_MAX), 0u);
    EXPECT_EQ(o.Err(), "");
}

// A label without POOL/OBJ (qemu-img's conversion of a file), or a tty
// given by the caller, is drawn as before and not published.
TEST(Progress, InsideTgtd_LabelWithoutObjectIsDrawn)
{
    struct admin_job j[ADMIN_JOBS_MAX];
    {
        Output o;
        struct admin_progress p;
        admin_progress_start(&p, o.err, "convert /tmp/a.qcow2 (qcow2)",
                             10 * MiB, -1);
        EXPECT_EQ(admin_jobs_list(nullptr, nullptr, j, ADMIN_JOBS_MAX), 0u);
        admin_progress_update(&p, 10 * MiB, 10 * MiB);
        admin_progress_end(&p, "converted");
        EXPECT_NE(o.Err().find("convert /tmp/a.qcow2 (qcow2): 100%"),
                  std::string::npos)
            << o.Err();
    }
    {
        Output o;
        struct admin_progress p;
        admin_progress_start(&p, o.err, "resync p0/v0", 10 * MiB, 0);
        EXPECT_EQ(admin_jobs_list(nullptr, nullptr, j, ADMIN_JOBS_MAX), 0u);
        admin_progress_end(&p, "done");
        EXPECT_NE(o.Err().find("resync p0/v0: done"), std::string::npos);
    }
}

} // namespace
