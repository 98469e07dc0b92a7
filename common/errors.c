/*
 * errors: wire status <-> errno, and messages for humans.
 */
#include "errors.h"

#include <errno.h>
#include <string.h>

/* The wire codes Keel sends. Add here, never renumber. */
static const struct {
    int wire;
    int host;
} codes[] = {
    {1, EPERM},       {2, ENOENT},      {4, EINTR},       {5, EIO},
    {7, E2BIG},       {9, EBADF},       {11, EAGAIN},     {12, ENOMEM},
    {13, EACCES},     {16, EBUSY},      {17, EEXIST},     {18, EXDEV},
    {20, ENOTDIR},    {21, EISDIR},     {22, EINVAL},     {23, ENFILE},
    {24, EMFILE},     {26, ETXTBSY},    {27, EFBIG},      {28, ENOSPC},
    {30, EROFS},      {31, EMLINK},     {32, EPIPE},      {34, ERANGE},
    {36, ENAMETOOLONG}, {38, ENOSYS},   {39, ENOTEMPTY},  {40, ELOOP},
    {61, ENODATA},    {71, EPROTO},     {74, EBADMSG},    {75, EOVERFLOW},
    {90, EMSGSIZE},   {95, EOPNOTSUPP}, {98, EADDRINUSE}, {103, ECONNABORTED},
    {104, ECONNRESET}, {107, ENOTCONN}, {110, ETIMEDOUT}, {111, ECONNREFUSED},
    {113, EHOSTUNREACH}, {116, ESTALE}, {122, EDQUOT},    {125, ECANCELED},
};

#define NCODES (sizeof(codes) / sizeof(codes[0]))

int err_to_wire(int err)
{
    if (err >= 0)
        return 0;
    for (unsigned i = 0; i < NCODES; i++)
        if (codes[i].host == -err)
            return -codes[i].wire;
    return -5;
}

int err_from_wire(int status)
{
    if (status >= 0)
        return 0;
    for (unsigned i = 0; i < NCODES; i++)
        if (codes[i].wire == -status)
            return -codes[i].host;
    return -EIO;
}

const char *err_str(int err)
{
    switch (-err) {
    case 0:
        return "success";
    case ESTALE:
        return "stale chunk version";
    case EBUSY:
        return "file is being written by another client";
    case EPROTO:
        return "protocol error";
    case ETIMEDOUT:
        return "timed out";
    case ECONNRESET:
        return "connection lost";
    default:
        return strerror(-err);
    }
}
