// admin/qos.c: `vol set` parses and commits QoS limits; bad values are
// refused with a message naming the option and nothing changes; status
// shows the limits (text and JSON).
#include "../admin_fixture.h"

using namespace vdtest_admin;

namespace {

struct vd_qos_limits Get(vd_pool *p, const char *vol)
{
    struct vd_qos_limits l;
    memset(&l, 0xff, sizeof(l));
    EXPECT_EQ(vd_vol_qos_get_by_name(p, vol, &l), 0);
    return l;
}

} // namespace

TEST_F(AdminPool, VolSet_LimitsCommittedSurviveReopenZeroRemoves)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/vol0", "--size", "8MiB" }), 0);

    EXPECT_EQ(Exec(p, { "vol", "set", "pool0/vol0", "--iops-limit", "500",
                        "--bps-limit", "50MiB", "--read-iops-limit=300",
                        "--write-bps-limit", "10MiB/s", "--burst", "2.5" },
                   &out, &err), 0) << err;
    EXPECT_NE(out.find("iops 500 (read 300, write none)"), std::string::npos)
        << out;
    EXPECT_NE(out.find("burst 2.500s"), std::string::npos) << out;
    struct vd_qos_limits l = Get(p, "vol0");
    EXPECT_EQ(l.limit[VD_QOS_IOPS], 500u);
    EXPECT_EQ(l.limit[VD_QOS_RIOPS], 300u);
    EXPECT_EQ(l.limit[VD_QOS_WIOPS], 0u);
    EXPECT_EQ(l.limit[VD_QOS_BPS], 50u << 20);
    EXPECT_EQ(l.limit[VD_QOS_WBPS], 10u << 20);
    EXPECT_EQ(l.burst_ms, 2500u);

    EXPECT_EQ(Exec(p, { "status", "pool0/vol0" }, &out, &err), 0) << err;
    EXPECT_NE(out.find("qos       iops 500"), std::string::npos) << out;
    EXPECT_EQ(Exec(p, { "status", "pool0/vol0", "--json" }, &out, &err), 0);
    EXPECT_NE(out.find("\"qos\":{\"limits\":{\"iops\":500,\"read_iops\":300"),
              std::string::npos) << out;
    EXPECT_NE(out.find("\"rates\":null}}"), std::string::npos) << out;
    EXPECT_EQ(Exec(p, { "status", "pool0", "--json" }, &out, &err), 0);
    EXPECT_NE(out.find("\"burst_ms\":2500"), std::string::npos) << out;
    EXPECT_EQ(out.substr(out.size() - 3), "]}\n") << out;

    // 0 removes one limit; the others stay.
    EXPECT_EQ(Exec(p, { "vol", "set", "pool0/vol0", "--iops-limit", "0" },
                   &out, &err), 0) << err;
    vd_pool_close(p);
    ASSERT_EQ(vd_pool_open(&conf, &p), 0);
    l = Get(p, "vol0");
    EXPECT_EQ(l.limit[VD_QOS_IOPS], 0u);
    EXPECT_EQ(l.limit[VD_QOS_RIOPS], 300u);
    EXPECT_EQ(l.limit[VD_QOS_BPS], 50u << 20);
    vd_pool_close(p);
}

TEST_F(AdminPool, VolSet_BadInput_RefusedWithMessageNothingChanged)
{
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/vol0", "--size", "8MiB" }), 0);
    ASSERT_EQ(Exec(p, { "vol", "set", "pool0/vol0", "--iops-limit", "100" }),
              0);
    struct vd_pool_info pi;
    ASSERT_EQ(vd_pool_get_info(p, &pi), 0);
    uint64_t seq = pi.seq;

    struct {
        std::initializer_list<const char *> argv;
        const char *msg;
    } bad[] = {
        { { "vol", "set", "pool0/vol0", "--iops-limit", "-5" }, "--iops-limit '-5'" },
        { { "vol", "set", "pool0/vol0", "--iops-limit", "12abc" }, "not a number" },
        { { "vol", "set", "pool0/vol0", "--iops-limit", "" }, "--iops-limit ''" },
        { { "vol", "set", "pool0/vol0", "--iops-limit", "1000000000" }, "0 (no limit) to" },
        { { "vol", "set", "pool0/vol0", "--bps-limit", "10XB" }, "--bps-limit '10XB'" },
        { { "vol", "set", "pool0/vol0", "--bps-limit", "-1MiB" }, "not a number of bytes" },
        { { "vol", "set", "pool0/vol0", "--write-bps-limit", "2PiB" }, "--write-bps-limit" },
        { { "vol", "set", "pool0/vol0", "--burst", "abc" }, "--burst 'abc'" },
        { { "vol", "set", "pool0/vol0", "--burst", "1.2345" }, "--burst" },
        { { "vol", "set", "pool0/vol0", "--burst", "-1" }, "--burst" },
        { { "vol", "set", "pool0/vol0" }, "nothing to set" },
        { { "vol", "set", "pool0/vol0", "--iops-limit", "5", "--iops-limit", "6" }, "given twice" },
        { { "vol", "set", "pool0/vol0", "--size", "5" }, "unknown option" },
        { { "vol", "extend", "pool0/vol0", "--iops-limit", "5" }, "unknown option" },
        // Good values, but one bad option in the same command: nothing set.
        { { "vol", "set", "pool0/vol0", "--iops-limit", "7", "--bps-limit", "x" }, "--bps-limit 'x'" },
    };
    for (auto &b : bad) {
        int rc = Exec(p, b.argv, &out, &err);
        EXPECT_EQ(rc, VD_EXIT_USAGE) << *(b.argv.begin() + 3);
        EXPECT_NE(err.find(b.msg), std::string::npos) << err;
    }
    EXPECT_EQ(Exec(p, { "vol", "set", "pool0/nosuch", "--iops-limit", "5" },
                   &out, &err), VD_EXIT_FAIL);
    EXPECT_NE(err.find("not found"), std::string::npos) << err;

    ASSERT_EQ(vd_pool_get_info(p, &pi), 0);
    EXPECT_EQ(pi.seq, seq); // nothing committed
    struct vd_qos_limits l = Get(p, "vol0");
    EXPECT_EQ(l.limit[VD_QOS_IOPS], 100u);
    EXPECT_EQ(l.limit[VD_QOS_BPS], 0u);
    EXPECT_EQ(l.burst_ms, 0u);
    vd_pool_close(p);
}
