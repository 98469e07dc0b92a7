/*
 * Unit tests for namenode/registry: node states (unknown after a restart,
 * alive on registration, dead after the timeout, told to register again
 * when it heartbeats after that), heartbeats only on the registered
 * connection, decommissioning states across registrations, the queue of
 * delete commands (deduplicated, taken in bounded batches) and of copy
 * commands (sent first, withdrawn when a copy ends).
 */
#include "registry.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uv_loop_t loop;
static rpc_conn *c1, *c2;
static struct registry *reg;

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    /* Connections never used for I/O: only their identity matters here. */
    ck_assert_int_eq(rpc_connect(&loop, "127.0.0.1:9", NULL, NULL, &c1), 0);
    ck_assert_int_eq(rpc_connect(&loop, "127.0.0.1:9", NULL, NULL, &c2), 0);
    reg = registry_new(1000);
}

static void teardown(void)
{
    registry_free(reg);
    rpc_conn_close(c1);
    rpc_conn_close(c2);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static struct store_node node(uint64_t id)
{
    struct store_node n = {.id = id, .capacity = 1000};

    snprintf(n.addr, sizeof(n.addr), "127.0.0.1:%u", 4000 + (unsigned)id);
    snprintf(n.domain, sizeof(n.domain), "rack%u", (unsigned)id);
    return n;
}

START_TEST(states)
{
    struct store_node a = node(1), b = node(2);
    struct reg_heartbeat hb = {.capacity = 2000, .used = 10, .load = 3};
    struct reg_node *n;

    registry_load(reg, &a, 0);
    n = registry_get(reg, 1);
    ck_assert_int_eq(n->state, REG_UNKNOWN);
    ck_assert(!registry_node_live(n));
    registry_tick(reg, 1000, NULL, NULL);
    ck_assert_int_eq(n->state, REG_UNKNOWN);
    registry_tick(reg, 1001, NULL, NULL);
    ck_assert_int_eq(n->state, REG_DEAD);

    n = registry_register(reg, &b, c1, 2000);
    ck_assert_int_eq(n->state, REG_ALIVE);
    ck_assert_ptr_eq(n->conn, c1);
    /* Only the registered connection may heartbeat. */
    ck_assert_ptr_null(registry_heartbeat(reg, 2, c2, &hb, 2500));
    ck_assert_ptr_null(registry_heartbeat(reg, 9, c1, &hb, 2500));
    ck_assert_ptr_eq(registry_heartbeat(reg, 2, c1, &hb, 2500), n);
    ck_assert_uint_eq(n->capacity, 2000);
    ck_assert_uint_eq(n->load, 3);
    registry_tick(reg, 3500, NULL, NULL);
    ck_assert_int_eq(n->state, REG_ALIVE);
    registry_tick(reg, 3501, NULL, NULL);
    ck_assert_int_eq(n->state, REG_DEAD);
    ck_assert(!registry_node_live(n));
    /* Its replicas were forgotten: it must register (and report) again. */
    ck_assert_ptr_null(registry_heartbeat(reg, 2, c1, &hb, 4000));
    ck_assert_int_eq(n->state, REG_DEAD);
    ck_assert(n->reregister);
    ck_assert_ptr_null(registry_heartbeat(reg, 2, c1, &hb, 4001));
    n = registry_register(reg, &b, c1, 4002);
    ck_assert_int_eq(n->state, REG_ALIVE);
    ck_assert(!n->reregister);
    ck_assert_ptr_eq(registry_heartbeat(reg, 2, c1, &hb, 4003), n);

    /* The connection closing does not kill the node, but it can no longer
     * heartbeat until it registers again. */
    registry_detach(reg, 2, c2); /* not its connection: ignored */
    ck_assert_ptr_eq(n->conn, c1);
    registry_detach(reg, 2, c1);
    ck_assert_ptr_null(n->conn);
    ck_assert_int_eq(n->state, REG_ALIVE);
    ck_assert_ptr_null(registry_heartbeat(reg, 2, c1, &hb, 4100));
    n = registry_register(reg, &b, c2, 4200);
    ck_assert_ptr_eq(n->conn, c2);
    ck_assert_uint_eq(registry_count(reg), 2);
}
END_TEST

START_TEST(delete_commands)
{
    struct store_node a = node(1);
    struct reg_cmd out[4];
    struct reg_node *n = registry_register(reg, &a, c1, 0);
    size_t got, total = 0;

    for (uint64_t chunk = 1; chunk <= 10; chunk++)
        registry_order_delete(reg, 1, chunk, 1);
    registry_order_delete(reg, 1, 5, 7);  /* again, higher version */
    registry_order_delete(reg, 1, 5, 2);  /* lower: keeps 7 */
    registry_order_delete(reg, 42, 1, 1); /* unknown node: ignored */
    while ((got = registry_take_commands(n, out, 4)) > 0) {
        ck_assert_uint_le(got, 4);
        for (size_t i = 0; i < got; i++) {
            ck_assert_uint_eq(out[i].kind, REG_CMD_DELETE);
            if (out[i].chunk_id == 5)
                ck_assert_uint_eq(out[i].version, 7);
        }
        total += got;
    }
    ck_assert_uint_eq(total, 10);
}
END_TEST

START_TEST(decommission_states)
{
    struct store_node a = node(1);
    struct reg_heartbeat hb = {.capacity = 2000};
    struct reg_node *n = registry_register(reg, &a, c1, 0);

    ck_assert_ptr_eq(registry_set_flags(reg, 1, STORE_NODE_DECOMMISSIONING), n);
    ck_assert_int_eq(n->state, REG_DECOMMISSIONING);
    ck_assert(registry_node_live(n));
    registry_tick(reg, 1001, NULL, NULL); /* silent: dead like any other */
    ck_assert_int_eq(n->state, REG_DEAD);
    /* Registration gets the flags the store keeps. */
    a.flags = STORE_NODE_DECOMMISSIONING;
    n = registry_register(reg, &a, c1, 1100);
    ck_assert_int_eq(n->state, REG_DECOMMISSIONING);
    registry_set_flags(reg, 1, STORE_NODE_DECOMMISSIONED);
    a.flags = STORE_NODE_DECOMMISSIONED;
    ck_assert_int_eq(n->state, REG_DECOMMISSIONED);
    ck_assert(!registry_node_live(n));
    registry_tick(reg, 5000, NULL, NULL); /* drained nodes do not die */
    ck_assert_int_eq(n->state, REG_DECOMMISSIONED);
    n = registry_register(reg, &a, c1, 5100);
    ck_assert_int_eq(n->state, REG_DECOMMISSIONED);
    /* Recommissioned: back in service, after a full report. */
    registry_set_flags(reg, 1, 0);
    a.flags = 0;
    ck_assert_int_eq(n->state, REG_ALIVE);
    ck_assert_ptr_null(registry_heartbeat(reg, 1, c1, &hb, 5200));
    n = registry_register(reg, &a, c1, 5300);
    ck_assert_ptr_eq(registry_heartbeat(reg, 1, c1, &hb, 5400), n);
    ck_assert_ptr_null(registry_set_flags(reg, 77, 0));
}
END_TEST

START_TEST(copy_commands)
{
    struct store_node a = node(1);
    struct reg_node *n = registry_register(reg, &a, c1, 0);
    struct reg_cmd out[3];
    size_t got;

    registry_order_delete(reg, 1, 100, 1);
    registry_order_delete(reg, 1, 101, 1);
    registry_order_copy(reg, 1, &(struct reg_cmd){.chunk_id = 5, .version = 2, .target = 3});
    registry_order_copy(reg, 1, &(struct reg_cmd){.chunk_id = 5, .version = 3, .target = 3});
    registry_order_copy(reg, 1, &(struct reg_cmd){.chunk_id = 5, .version = 3, .target = 4});
    registry_order_copy(reg, 1, &(struct reg_cmd){.chunk_id = 6, .target = 4, .delta = true});
    registry_cancel_copy(reg, 1, 5, 4);
    registry_cancel_copy(reg, 1, 5, 9); /* not queued: ignored */
    got = registry_take_commands(n, out, 3);
    ck_assert_uint_eq(got, 3);
    ck_assert_uint_eq(out[0].kind, REG_CMD_REPLICATE);
    ck_assert_uint_eq(out[0].chunk_id, 5);
    ck_assert_uint_eq(out[0].version, 3); /* queued twice: the later one */
    ck_assert_uint_eq(out[1].kind, REG_CMD_REPLICATE);
    ck_assert_uint_eq(out[1].chunk_id, 6);
    ck_assert(out[1].delta);
    ck_assert_uint_eq(out[2].kind, REG_CMD_DELETE);
    ck_assert_uint_eq(registry_take_commands(n, out, 3), 1);
    ck_assert_uint_eq(registry_take_commands(n, out, 3), 0);
    /* A node that dies loses what waited for it. */
    registry_order_copy(reg, 1, &(struct reg_cmd){.chunk_id = 7, .target = 2});
    registry_order_delete(reg, 1, 102, 1);
    registry_drop_commands(reg, 1);
    ck_assert_uint_eq(registry_take_commands(n, out, 3), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("registry");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, states);
    tcase_add_test(tc, delete_commands);
    tcase_add_test(tc, decommission_states);
    tcase_add_test(tc, copy_commands);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
