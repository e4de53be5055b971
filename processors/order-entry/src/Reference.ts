/**
 * An order's references (a shipment's tracking id, a payment's authorization): 64 bits of its id's
 * SHA-256, so each order's own (32 bits would collide with ~1% chance in 10,000 orders) and the
 * same when its handling runs again. A UUIDv7's first digits are its clock: orders within ~65 s
 * shared them.
 */
import { hash } from "node:crypto"

/**
 * 16 hex digits of the order id's SHA-256, from digit `from` on (each reference its own part). By
 * `crypto.hash`, one call, where `createHash(...).update(...).digest(...)` made a `Hash` object and
 * crossed into C++ three times: 0.23 against 0.52-0.57 us a reference in a loop of its own; the
 * payment's and the shipment's were 1.25% of the order flow's CPU samples (`profile.ts`, 20,000
 * orders), 0.69% so. The same digest.
 */
export const of = (orderId: string, from: 0 | 16): string => hash("sha256", orderId, "hex").slice(from, from + 16)
