/*
 * errors: one vocabulary for failures across the wire.
 *
 * Inside Keel every fallible function returns 0 or a negative errno. On the
 * wire a status is 0 or a negative *wire* code. The wire codes are fixed by
 * this table (they happen to equal Linux's numbers), so peers built for other
 * systems agree on meaning; an errno with no wire code travels as -EIO.
 */
#ifndef KEEL_ERRORS_H
#define KEEL_ERRORS_H

/* Host errno (negative or 0) -> wire status (negative or 0). */
int err_to_wire(int err);

/* Wire status (negative or 0) -> host errno (negative or 0). Unknown: -EIO. */
int err_from_wire(int status);

/* A short message for a negative errno; never NULL, static storage. */
const char *err_str(int err);

#endif
