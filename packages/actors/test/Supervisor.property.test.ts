import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Effect, Fiber } from "effect"
import { Policy, Supervisor } from "@baton/actors"

/** A message: its transient failures before it succeeds, a permanent failure instead, how its work waits. */
const message = fc.record({
  transient: fc.integer({ min: 0, max: 4 }),
  permanent: fc.boolean(),
  wait: fc.constantFrom("none", "microtask", "immediate", "timer"),
  /** How the submitter waits before submitting the next message. */
  gap: fc.constantFrom("none", "none", "microtask", "immediate", "timer")
})

const pause = (how: string): Promise<void> =>
  how === "none"
    ? Promise.resolve()
    : how === "microtask"
      ? new Promise<void>((r) => queueMicrotask(r))
      : how === "immediate"
        ? new Promise<void>((r) => setImmediate(r))
        : new Promise<void>((r) => setTimeout(r, 1))

describe("Supervisor, for all message sequences and crash points", () => {
  it("runs one message at a time in mailbox order, a crashed one again first, none lost, each settled as its failures say", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(message, { minLength: 1, maxLength: 25 }), fc.integer({ min: 1, max: 4 }), async (messages, maxAttempts) => {
        const policy: Policy.Policy = { ...Policy.defaults, maxAttempts, initialDelayMs: 1, maxDelayMs: 2, maxRestarts: 1000 }
        const actor = Supervisor.make(Supervisor.system(), "prop", policy)
        const fiber = Effect.runFork(actor.run)
        const trace: Array<number> = []
        let running = 0
        let overlapped = false
        const calls = messages.map(() => 0)
        const outcomes: Array<Promise<Supervisor.Outcome>> = []
        for (const [i, m] of messages.entries()) {
          outcomes.push(
            actor.submit(async () => {
              if (running++ > 0) overlapped = true
              trace.push(i)
              const call = ++calls[i]!
              await pause(m.wait)
              running--
              if (m.permanent) throw Object.assign(new Error(`bad ${i}`), { retryable: false })
              if (call <= m.transient) throw new Error(`crash ${i}.${call}`)
            })
          )
          await pause(m.gap)
        }
        // Last, one that succeeds: it runs on the incarnation after the last crash.
        const last = actor.submit(async () => void trace.push(messages.length))
        const settled = await Promise.all(outcomes)
        expect(await last).toEqual({ _tag: "Done" })
        await Effect.runPromise(Fiber.interrupt(fiber))
        expect(overlapped).toBe(false)
        // Mailbox order: every run of a message before any of the next; a crashed one runs again before the rest.
        expect(trace).toEqual([...trace].sort((a, b) => a - b))
        let crashes = 0
        for (const [i, m] of messages.entries()) {
          const o = settled[i]!
          if (m.permanent) {
            expect(calls[i]).toBe(1)
            expect(o).toMatchObject({ _tag: "Failed", attempts: 1 })
          } else if (m.transient >= maxAttempts) {
            crashes += maxAttempts
            expect(calls[i]).toBe(maxAttempts)
            expect(o).toMatchObject({ _tag: "Failed", attempts: maxAttempts })
          } else {
            crashes += m.transient
            expect(calls[i]).toBe(m.transient + 1)
            expect(o).toEqual({ _tag: "Done" })
          }
        }
        // Each crash restarted the actor once, past the last one too (the restart resumes the rest).
        expect(actor.restarts()).toBe(crashes)
      }),
      { numRuns: 60 }
    )
  }, 60_000)
})
