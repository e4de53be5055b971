/**
 * The aedes patch's `defer` (write.js): deliveries and write callbacks run as microtasks within a
 * budget a turn of the loop, the rest at the next check phase. For random programs deferring from
 * synchronous code, microtasks, immediates and timers, and from deferred functions themselves,
 * past the budget or not: every deferred function runs once, in the order `defer` was called
 * (a naive mix of microtasks and setImmediate fails this at once).
 */
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { pathToFileURL } from "node:url"
import { expect, it } from "vitest"
import fc from "fast-check"

const aedesDir = dirname(createRequire(import.meta.url).resolve("aedes"))
const { defer } = (await import(pathToFileURL(join(aedesDir, "lib", "write.js")).href)) as { defer: (fn: () => void) => void }

it("runs every deferred function once, in the order defer was called", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 15 }), { minLength: 1, maxLength: 1500 }), async (choices) => {
      let next = 0
      const pick = () => choices[next++ % choices.length]!
      let ticket = 0
      const ran: Array<number> = []
      let pending = 0
      let budget = 2000
      await new Promise<void>((done) => {
        const d = () => {
          if (budget-- <= 0) return
          const t = ticket++
          pending++
          defer(() => {
            ran.push(t)
            pending--
            for (let i = pick() % 3; i > 0; i--) spawn()
            if (pending === 0) setTimeout(done, 5)
          })
        }
        const spawn = () => {
          pending++
          const go = () => {
            pending--
            d()
            if (pending === 0) setTimeout(done, 5)
          }
          const how = pick() % 4
          if (how === 0) go()
          else if (how === 1) queueMicrotask(go)
          else if (how === 2) setImmediate(go)
          else setTimeout(go, pick() % 3)
        }
        for (const _ of choices) spawn()
      })
      await new Promise((r) => setTimeout(r, 20))
      expect(ran).toEqual(Array.from({ length: ticket }, (_, i) => i))
    }),
    { numRuns: 100 }
  )
}, 120_000)
