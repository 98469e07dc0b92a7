/*
 * Stand-ins for system calls, for the unit tests that include this header
 * once: their build links them in place of the real ones
 * (-Wl,--wrap=syncfs,--wrap=fdatasync,--wrap=pread; tests/CMakeLists.txt).
 *
 *   syncfs      fails with syncfs_errno while it is set;
 *   fdatasync   fails once with fdatasync_errno when it is set, on inode
 *               fail_ino (0: any); after hold_sync(ino), the next one of
 *               that inode (0: any) waits until release_sync();
 *   pread       fails with EIO at offset pread_fails_at.
 */
#ifndef KEEL_TESTS_SYSWRAP_H
#define KEEL_TESTS_SYSWRAP_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

static int syncfs_errno, fdatasync_errno;
static off_t pread_fails_at = -1;
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static bool hold_next, holding, released;
static ino_t hold_ino, fail_ino;

/* Whether fd is of inode ino (0: any). */
static inline bool is_inode(int fd, ino_t ino)
{
    struct stat st;

    return ino == 0 || (fstat(fd, &st) == 0 && st.st_ino == ino);
}

int __real_syncfs(int fd);
int __wrap_syncfs(int fd);
int __real_fdatasync(int fd);
int __wrap_fdatasync(int fd);
ssize_t __real_pread(int fd, void *buf, size_t len, off_t off);
ssize_t __wrap_pread(int fd, void *buf, size_t len, off_t off);

int __wrap_syncfs(int fd)
{
    if (syncfs_errno) {
        errno = syncfs_errno;
        return -1;
    }
    return __real_syncfs(fd);
}

int __wrap_fdatasync(int fd)
{
    int e = 0;

    pthread_mutex_lock(&hold_lock);
    if (fdatasync_errno && is_inode(fd, fail_ino)) {
        e = fdatasync_errno;
        fdatasync_errno = 0;
    }
    if (!e && hold_next && is_inode(fd, hold_ino)) {
        hold_next = false;
        holding = true;
        pthread_cond_broadcast(&hold_cond);
        while (!released)
            pthread_cond_wait(&hold_cond, &hold_lock);
    }
    pthread_mutex_unlock(&hold_lock);
    if (e) {
        errno = e;
        return -1;
    }
    return __real_fdatasync(fd);
}

ssize_t __wrap_pread(int fd, void *buf, size_t len, off_t off)
{
    if (off == pread_fails_at) {
        errno = EIO;
        return -1;
    }
    return __real_pread(fd, buf, len, off);
}

/* Holds the next fdatasync of inode ino (0: any) until release_sync(). */
static inline void hold_sync(ino_t ino)
{
    pthread_mutex_lock(&hold_lock);
    holding = released = false;
    hold_ino = ino;
    hold_next = true;
    pthread_mutex_unlock(&hold_lock);
}

/* Waits until that fdatasync has begun, and holds. */
static inline void wait_sync_held(void)
{
    pthread_mutex_lock(&hold_lock);
    while (!holding)
        pthread_cond_wait(&hold_cond, &hold_lock);
    pthread_mutex_unlock(&hold_lock);
}

static inline void release_sync(void)
{
    pthread_mutex_lock(&hold_lock);
    released = true;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_lock);
}

#endif
