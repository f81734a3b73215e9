// Unit tests for admin/cmd.c: argument parsing and usage errors, help, exit
// codes, message routing.
// Shared fixtures: tests/unit/admin_fixture.h.
#include "tests/unit/admin_fixture.h"

using namespace vdtest_admin;

namespace {

static int Parse(std::initializer_list<const char *> a, std::string *pool,
                 std::string *out, std::string *err)
{
    Argv av(a);
    Output o;
    char name[VD_NAME_MAX + 1] = "?";
    int rc = vd_admin_parse(av.argc(), av.argv(), name, sizeof(name), o.out,
                            o.err);
    if (pool)
        *pool = name;
    if (out)
        *out = o.Out();
    if (err)
        *err = o.Err();
    return rc;
}

TEST(AdminParse, BadUsage_Exit2WithMessage)
{
    struct {
        std::initializer_list<const char *> argv;
        const char *needle;
    } cases[] = {
        { { "vol" }, "no command given" },
        { { "vol", "frob" }, "unknown command 'frob'" },
        { { "frob" }, "unknown command 'frob'" },
        { { "vol", "create", "pool0/v" }, "missing --size" },
        { { "vol", "create", "pool0", "--size", "1G" }, "names no volume" },
        { { "vol", "create", "pool0/v", "--size", "abc" }, "not a size" },
        { { "vol", "create", "pool0/v", "--size", "0" }, "not a size" },
        { { "vol", "create", "pool0/v", "--size" }, "needs a value" },
        { { "vol", "create", "pool0/v", "--size", "1M", "--size", "2M" },
          "given twice" },
        { { "vol", "create", "pool0/v", "--size", "1M", "--copies", "2" },
          "applies to --layout mirror" },
        { { "vol", "create", "pool0/v", "--size", "1M", "--layout", "mirror",
            "--copies", "4" }, "not 2 or 3" },
        { { "vol", "create", "pool0/v", "--size", "1M", "--layout", "raid5" },
          "unknown; use linear or mirror" },
        { { "vol", "create", "pool0/v", "--size", "1M", "--json" },
          "unknown option '--json'" },
        { { "vol", "create", "bad name/v", "--size", "1M" }, "not a pool name" },
        { { "vol", "create", "pool0/", "--size", "1M" }, "not a volume name" },
        { { "vol", "list" }, "missing POOL" },
        { { "vol", "list", "pool0/v" }, "give a pool" },
        { { "vol", "list", "pool0", "extra" }, "unexpected argument 'extra'" },
        { { "vol", "remove", "pool0/v", "--force" }, "unknown option" },
        { { "vol", "extend", "pool0/v" }, "missing --size" },
        { { "status", "--json=1" }, "takes no value" },
        { { "vol", "repair", "pool0/v", "--replace", "d0", "--with", "d0" },
          "same device" },
        { { "pool", "create", "x.yaml" }, "unknown command 'create'" },
    };
    for (auto &c : cases) {
        std::string out, err;
        EXPECT_EQ(Parse(c.argv, nullptr, &out, &err), VD_EXIT_USAGE)
            << *c.argv.begin();
        EXPECT_NE(err.find(c.needle), std::string::npos) << err;
        EXPECT_EQ(err.rfind("vdlvm: ", 0), 0u) << err;
        EXPECT_EQ(out, "");
    }
}

TEST(AdminParse, Help_Exit0OnOut)
{
    std::string out, err;
    EXPECT_EQ(Parse({ "vol", "create", "--help" }, nullptr, &out, &err), 0);
    EXPECT_NE(out.find("Usage: vdlvm [-c FILE] vol create POOL/VOL --size"),
              std::string::npos);
    EXPECT_EQ(err, "");
    // Help wins over otherwise bad arguments.
    EXPECT_EQ(Parse({ "vol", "extend", "bad/name/x", "-h" }, nullptr, &out,
                    &err), 0);
    EXPECT_EQ(Parse({ "vol", "--help" }, nullptr, &out, &err), 0);
    EXPECT_NE(out.find("vol list POOL"), std::string::npos);
    EXPECT_EQ(Parse({ "status", "-h" }, nullptr, &out, &err), 0);
}

TEST(AdminParse, WellFormed_ReturnsPoolName)
{
    std::string pool;
    EXPECT_EQ(Parse({ "vol", "create", "p1/v", "--size=8MiB" }, &pool, nullptr,
                    nullptr), -1);
    EXPECT_EQ(pool, "p1");
    EXPECT_EQ(Parse({ "vol", "extend", "p2/v", "--size", "+1G" }, &pool,
                    nullptr, nullptr), -1);
    EXPECT_EQ(pool, "p2");
    EXPECT_EQ(Parse({ "status", "--json" }, &pool, nullptr, nullptr), -1);
    EXPECT_EQ(pool, "");
    EXPECT_EQ(Parse({ "status", "p3/v", "--json" }, &pool, nullptr, nullptr), -1);
    EXPECT_EQ(pool, "p3");
    EXPECT_EQ(Parse({ "vol", "create", "p4/v", "--size", "4M", "--layout",
                      "mirror", "--allow-same-node" }, &pool, nullptr, nullptr),
              -1);
}

static void ElsewhereLog(int, const char *) {}

TEST_F(AdminPool, LibraryLogElsewhere_OwnMessagesStillClear)
{
    // As inside a tgtd whose module sends library messages to its own log.
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;
    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/vol0", "--size", "8M" }), 0);
    vd_vol *v = vd_vol_open(p, "vol0");
    ASSERT_NE(v, nullptr);
    vd_log_set_fn(ElsewhereLog);
    EXPECT_EQ(Exec(p, { "vol", "remove", "pool0/vol0" }, &out, &err),
              VD_EXIT_BUSY);
    EXPECT_EQ(err, "vdlvm: volume 'pool0/vol0': in use (exported); delete its "
                   "LUN first\n");
    EXPECT_EQ(Exec(p, { "vol", "extend", "pool0/nope", "--size", "1G" }, &out,
                   &err), VD_EXIT_FAIL);
    EXPECT_EQ(err, "vdlvm: volume 'pool0/nope': not found; list volumes with "
                   "'vdlvm vol list pool0'\n");
    EXPECT_EQ(Exec(p, { "vol", "create", "pool0/big", "--size", "1T" }, &out,
                   &err), VD_EXIT_FAIL);
    EXPECT_NE(err.find("not enough free space"), std::string::npos) << err;
    vd_admin_log_init(nullptr);
    vd_vol_close(v);
    vd_pool_close(p);
}

// The one exit-code table: the same kind of failure, the same code.
TEST(AdminExit, ExitCodes_OneTable)
{
    EXPECT_EQ(vd_exit_code(0), VD_EXIT_OK);
    EXPECT_EQ(vd_exit_code(-EINVAL), VD_EXIT_USAGE);
    EXPECT_EQ(vd_exit_code(-EBUSY), VD_EXIT_BUSY);
    EXPECT_EQ(vd_exit_code(-ENOSPC), VD_EXIT_FAIL);
    EXPECT_EQ(vd_exit_code(-ENOENT), VD_EXIT_FAIL);
    EXPECT_EQ(vd_exit_code(-EIO), VD_EXIT_FAIL);
    std::string help = VD_EXIT_HELP;
    for (const char *l : { "  0  success", "  1  the command failed",
                           "  2  bad usage", "  3  verify", "  4  in use" })
        EXPECT_NE(help.find(l), std::string::npos) << l;
}

}  // namespace
