// Unit tests for admin/status.c: status as text and as well-formed JSON.
// Shared fixtures: tests/unit/admin_fixture.h.
#include "tests/unit/admin_fixture.h"

using namespace vdtest_admin;

namespace {

TEST_F(AdminPool, Status_HumanRunsAndWellFormedJson)
{
    // A path with a quote, a backslash and a non-UTF-8 byte.
    Define({ "d\"0\\x.img", "d1\xff.img" });
    vd_pool *p = CreateOpen();
    ASSERT_NE(p, nullptr);
    std::string out, err;

    ASSERT_EQ(Exec(p, { "vol", "create", "pool0/vol0", "--size", "100M" }), 0);
    ASSERT_EQ(Exec(p, { "status", "pool0" }, &out, &err), 0) << err;
    EXPECT_NE(out.find("le 0-"), std::string::npos) << out;
    EXPECT_NE(out.find("-> d1 pe 0-"), std::string::npos) << out;

    ASSERT_EQ(Exec(p, { "status", "--json" }, &out, &err), 0) << err;
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_NE(out.find("d\\\"0\\\\x.img"), std::string::npos) << out;
    EXPECT_NE(out.find("d1\\ufffd.img"), std::string::npos) << out;
    EXPECT_NE(out.find("\"volume\":\"pool0/vol0\""), std::string::npos) << out;

    ASSERT_EQ(Exec(p, { "status", "pool0/vol0", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;
    EXPECT_EQ(out.rfind("{\"volume\":\"pool0/vol0\"", 0), 0u) << out;

    ASSERT_EQ(Exec(p, { "vol", "list", "pool0", "--json" }, &out, &err), 0);
    EXPECT_TRUE(Json::Valid(out)) << out;

    EXPECT_EQ(Exec(p, { "status", "pool0/nope" }, &out, &err), VD_EXIT_FAIL);
    EXPECT_NE(err.find("not found"), std::string::npos);
    vd_pool_close(p);
}

}  // namespace
