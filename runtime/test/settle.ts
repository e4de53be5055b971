/** Waiting for local processors to finish what their inbox holds, in the consumer tests. */
import type { Store } from "@baton/store"

interface Busy {
  readonly idle: () => Promise<void>
  readonly inFlight: () => number
}

/** How long the inbox may hold the same pending rows with no consumer running anything (`BATON_TEST_STUCK_MS`). */
const stuckMs = Number(process.env.BATON_TEST_STUCK_MS ?? 5_000)

/**
 * Waits until the inbox has no pending row and no consumer has a message in flight. `before`
 * runs first in each round (what is still being handed over); `stalled` when rows are pending
 * and no consumer has a message in flight (a recovery, say), before waiting again. When the same
 * rows stay pending with nothing in flight for `stuckMs`, it fails naming them: a local delivery
 * lost (a row written pending that no consumer was told of) fails the test by name instead of
 * leaving it to hang until its timeout.
 */
export const settle = async (store: Store, consumers: Iterable<Busy>, options: { readonly before?: () => Promise<unknown>; readonly stalled?: () => Promise<unknown> } = {}): Promise<void> => {
  const all = [...consumers]
  let last = ""
  let since = Date.now()
  for (;;) {
    await options.before?.()
    await Promise.all(all.map((c) => c.idle()))
    const rows = await store.run(store.query("SELECT processor, envelope_id FROM inbox WHERE status = 'pending' ORDER BY processor, envelope_id").all())
    const busy = all.some((c) => c.inFlight() > 0)
    if (rows.length === 0 && !busy) return
    const now = rows.map((r) => `${r.processor} ${r.envelope_id}`).join(", ")
    if (busy || now !== last) {
      last = now
      since = Date.now()
    } else if (Date.now() - since > stuckMs) {
      throw new Error(`a local delivery was lost: ${rows.length} inbox row(s) pending with no consumer running them for ${stuckMs} ms: ${now}`)
    }
    if (!busy) await options.stalled?.()
    await new Promise((r) => setTimeout(r, 2))
  }
}
