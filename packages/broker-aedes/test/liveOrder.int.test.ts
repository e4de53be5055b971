/**
 * Live QoS 1 messages of one topic, published one at a time (each after its PUBACK), reach an
 * online persistent session in publish order, on every store. Aedes writes each message to the
 * session's store (its enqueue, then its update with the packet id) before it sends it, and on
 * LevelDB concurrent writes complete in any order (the thread pool): the messages went out in the
 * order their writes completed (red on disk in 8 of 17 runs here before the fix, 0 of 10 after,
 * interleaved; writing the enqueues one after another, tried on 2026-12-03, made it rare, not
 * gone: the updates remained). The fix (patches/aedes-persistence-level@9.2.0.patch, #inOrder):
 * the disk store's operations of one client id (enqueues, updates, clears) settle in the order
 * they were submitted, the writes still side by side; levelOrder.int.test.ts checks that against
 * an adversarial completion order. See README, "Delivery guarantees".
 */
import { afterAll, describe, expect, it } from "vitest"
import { aedesBroker, aedesPersistence, arrivalOrder, type Kind } from "./sessions.ts"

const cleanup: Array<() => unknown> = []
afterAll(async () => {
  for (const c of cleanup) await c()
})

const kinds: ReadonlyArray<Kind> = ["memory", "redis", "disk"]
describe.each(kinds)("live QoS 1 messages to a persistent session, %s store", (kind) => {
  it("arrive in publish order, whatever the order the store's writes complete in", async () => {
    const { url, close } = await aedesBroker({ persistence: aedesPersistence(kind, cleanup) }, true)
    try {
      expect(await arrivalOrder(url, { clientId: `ordered-${kind}`, clean: false, filter: "p/#", topic: "p/x", n: 1_500 })).toBe("in order")
    } finally {
      await close()
    }
  }, 60_000)
})
