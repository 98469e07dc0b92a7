/*
 * Unit tests for datanode/peers: one connection per address, addresses
 * that need no name lookup, and a bounded pool that closes only idle
 * connections (busy ones are never dropped: -EBUSY instead).
 */
#include "datanode/peers.h"
#include "rpc.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL 256 /* peers.c's bound */

static uv_loop_t loop;
static rpc_server *server;
static int port;
static rpc_req *held[POOL + 1];
static int nheld;

static void h_hold(rpc_req *req, void *ctx)
{
    held[nheld++] = req;
}

static const rpc_handler handlers[] = {{KEEL__ENVELOPE__BODY_READ_REQ, "read", h_hold}};
static rpc_service service = {handlers, 1, NULL, NULL, NULL};

static void setup(void)
{
    char addr[64];

    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(rpc_listen(&loop, "0.0.0.0:0", &service, NULL, &server), 0);
    rpc_server_addr(server, addr, sizeof(addr));
    port = atoi(strrchr(addr, ':') + 1);
    nheld = 0;
}

static void teardown(void)
{
    for (int i = 0; i < nheld; i++)
        rpc_reply_error(held[i], -EIO, "over");
    rpc_server_close(server);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

/* The i-th loopback address of the test server. */
static const char *addr_of(int i)
{
    static char buf[64];

    snprintf(buf, sizeof(buf), "127.0.%d.%d:%d", i / 250, 1 + i % 250, port);
    return buf;
}

static void ignore(int status, rpc_msg *m, void *arg)
{
    (*(int *)arg)++;
}

START_TEST(addresses_are_checked_and_connections_shared)
{
    struct peers *p;
    rpc_conn *a, *b;

    ck_assert_int_eq(peers_new(&loop, 1000, &p), 0);
    ck_assert_int_eq(peers_check_addr("127.0.0.1:5"), 0);
    ck_assert_int_eq(peers_check_addr("localhost:5"), -EINVAL); /* no lookups */
    ck_assert_int_eq(peers_check_addr("127.0.0.1"), -EINVAL);
    ck_assert_int_eq(peers_check_addr("127.0.0.1:0"), -EINVAL);
    ck_assert_int_eq(peers_check_addr("127.0.0.1:70000"), -EINVAL);
    ck_assert_int_eq(peers_check_addr("127.0.0.1:5x"), -EINVAL);
    ck_assert_int_eq(peers_check_addr(":5"), -EINVAL);
    ck_assert_int_eq(peers_get(p, "nowhere:1", &a), -EINVAL);
    ck_assert_int_eq(peers_get(p, addr_of(0), &a), 0);
    ck_assert_int_eq(peers_get(p, addr_of(0), &b), 0);
    ck_assert_ptr_eq(a, b);
    ck_assert_int_eq(peers_get(p, addr_of(1), &b), 0);
    ck_assert_ptr_ne(a, b);
    ck_assert_uint_eq(peers_timeout(p), 1000);
    peers_close(p);
}
END_TEST

START_TEST(a_full_pool_drops_only_idle_connections)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__ReadReq q = KEEL__READ_REQ__INIT;
    struct peers *p;
    rpc_conn *c;
    int answered = 0;

    env.body_case = KEEL__ENVELOPE__BODY_READ_REQ;
    env.read_req = &q;
    ck_assert_int_eq(peers_new(&loop, 10000, &p), 0);
    /* Every slot busy with a call the server holds. */
    for (int i = 0; i < POOL; i++) {
        ck_assert_int_eq(peers_get(p, addr_of(i), &c), 0);
        ck_assert_int_eq(rpc_call(c, &env, RPC_NO_PAYLOAD, NULL, ignore, &answered), 0);
    }
    for (int guard = 0; nheld < POOL && guard < 100000; guard++)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(nheld, POOL);
    ck_assert_int_eq(peers_get(p, addr_of(POOL), &c), -EBUSY);
    ck_assert_int_eq(answered, 0);
    /* One call answered: its connection is idle and may give way. */
    rpc_reply_error(held[0], -EIO, "done");
    held[0] = held[--nheld];
    for (int guard = 0; answered < 1 && guard < 100000; guard++)
        uv_run(&loop, UV_RUN_ONCE);
    ck_assert_int_eq(peers_get(p, addr_of(POOL), &c), 0);
    /* The busy calls were left alone. */
    ck_assert_int_eq(answered, 1);
    peers_close(p); /* fails the held calls */
    ck_assert_int_eq(answered, POOL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("peers");
    TCase *tc = tcase_create("peers");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, addresses_are_checked_and_connections_shared);
    tcase_add_test(tc, a_full_pool_drops_only_idle_connections);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
