/**
 * An order's references (a shipment's tracking id, a payment's authorization): 64 bits of its id's
 * SHA-256, so each order's own (32 bits would collide with ~1% chance in 10,000 orders) and the
 * same when its handling runs again. A UUIDv7's first digits are its clock: orders within ~65 s
 * shared them.
 */
import { createHash } from "node:crypto"

/** 16 hex digits of the order id's SHA-256, from digit `from` on (each reference its own part). */
export const of = (orderId: string, from: 0 | 16): string => createHash("sha256").update(orderId).digest("hex").slice(from, from + 16)
