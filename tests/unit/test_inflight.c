/*
 * Unit tests for datanode/inflight: the accounting of bytes in progress,
 * the pause past the limit and the resume at three quarters of it, the
 * peak, and a connection watched while paused being paused at once (seen
 * through a real connection that then reads nothing).
 */
#include "datanode/inflight.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST(pauses_past_the_limit_and_resumes_at_three_quarters)
{
    struct inflight *f;

    ck_assert_int_eq(inflight_new(1000, &f), 0);
    inflight_take(f, 600);
    ck_assert(!inflight_paused(f));
    inflight_take(f, 400); /* at the limit is not past it */
    ck_assert(!inflight_paused(f));
    inflight_take(f, 100);
    ck_assert(inflight_paused(f));
    ck_assert_uint_eq(inflight_bytes(f), 1100);
    inflight_give(f, 300); /* 800: still above 750 */
    ck_assert(inflight_paused(f));
    inflight_take(f, 50);
    inflight_give(f, 100); /* 750 */
    ck_assert(!inflight_paused(f));
    ck_assert_uint_eq(inflight_peak(f), 1100);
    inflight_give(f, 750);
    ck_assert_uint_eq(inflight_bytes(f), 0);
    inflight_free(f);
}
END_TEST

START_TEST(no_limit_never_pauses)
{
    struct inflight *f;

    ck_assert_int_eq(inflight_new(0, &f), 0);
    inflight_take(f, 1ull << 40);
    ck_assert(!inflight_paused(f));
    ck_assert_uint_eq(inflight_peak(f), 1ull << 40);
    inflight_give(f, 1ull << 40);
    inflight_free(f);
}
END_TEST

/* ------------------------------------------- a watched connection, for real */

static uv_loop_t loop;
static int served;
static rpc_conn *accepted;
static struct inflight *bound;

static void h_stat(rpc_req *req, void *ctx)
{
    served++;
    rpc_reply(req, NULL, RPC_NO_PAYLOAD);
}

static void on_open(rpc_conn *c, void *ctx)
{
    accepted = c;
    inflight_watch(bound, c);
}

static void on_close(rpc_conn *c, int err, void *ctx)
{
    inflight_unwatch(bound, c);
}

static const rpc_handler handlers[] = {{KEEL__ENVELOPE__BODY_STAT_REQ, "stat", h_stat}};
static rpc_service service = {handlers, 1, NULL, on_open, on_close};

static int answers;

static void answered(int status, rpc_msg *m, void *arg)
{
    answers++;
}

static void call(rpc_conn *c)
{
    Keel__Envelope env = KEEL__ENVELOPE__INIT;
    Keel__StatReq q = KEEL__STAT_REQ__INIT;

    q.path = (char *)"/";
    env.body_case = KEEL__ENVELOPE__BODY_STAT_REQ;
    env.stat_req = &q;
    ck_assert_int_eq(rpc_call(c, &env, RPC_NO_PAYLOAD, NULL, answered, NULL), 0);
}

/* Runs the loop for about ms milliseconds. */
static void spin(int ms)
{
    for (int i = 0; i < ms; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

START_TEST(connections_are_not_read_while_over)
{
    rpc_server *srv;
    rpc_conn *c;
    char addr[64];

    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(inflight_new(1u << 20, &bound), 0);
    ck_assert_int_eq(rpc_listen(&loop, "127.0.0.1:0", &service, NULL, &srv), 0);
    rpc_server_addr(srv, addr, sizeof(addr));
    inflight_take(bound, 2u << 20); /* over before the connection exists */
    ck_assert_int_eq(rpc_connect(&loop, addr, NULL, NULL, &c), 0);
    call(c);
    spin(300);
    ck_assert_ptr_nonnull(accepted);
    ck_assert_int_eq(served, 0); /* paused as it was accepted */
    inflight_give(bound, 2u << 20);
    for (int i = 0; i < 2000 && answers < 1; i++)
        spin(1);
    ck_assert_int_eq(served, 1);
    ck_assert_int_eq(answers, 1);
    inflight_take(bound, 2u << 20); /* over again: this open connection pauses */
    call(c);
    spin(300);
    ck_assert_int_eq(served, 1);
    inflight_give(bound, 2u << 20);
    for (int i = 0; i < 2000 && answers < 2; i++)
        spin(1);
    ck_assert_int_eq(answers, 2);
    rpc_conn_close(c);
    rpc_server_close(srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    inflight_free(bound);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("inflight");
    TCase *tc = tcase_create("inflight");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, pauses_past_the_limit_and_resumes_at_three_quarters);
    tcase_add_test(tc, no_limit_never_pauses);
    tcase_add_test(tc, connections_are_not_read_while_over);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
