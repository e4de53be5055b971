import { describe, expect, it } from "vitest"
import { Effect, Exit, Fiber } from "effect"
import { Policy, Supervisor } from "@baton/actors"

const fast: Policy.Policy = { ...Policy.defaults, initialDelayMs: 5, maxDelayMs: 40, maxAttempts: 3, maxRestarts: 50, windowMs: 60_000 }

const boom = () => Promise.reject(new Error("boom"))

describe("Supervisor", () => {
  it("restarts a crashed actor with back-off and sends the crashed message to the error path after maxAttempts", async () => {
    const crashes: Array<{ attempt: number; delayMs: number }> = []
    const actor = Supervisor.make(Supervisor.system(), "flaky", fast, { onCrash: (c) => crashes.push({ attempt: c.attempt, delayMs: c.delayMs }) })
    const fiber = Effect.runFork(actor.run)
    let calls = 0
    const poisoned = await actor.submit(() => {
      calls++
      return boom()
    })
    expect(poisoned).toMatchObject({ _tag: "Failed", attempts: 3 })
    expect(calls).toBe(3)
    expect(crashes.map((c) => c.attempt)).toEqual([1, 2, 3])
    expect(crashes.map((c) => c.delayMs)).toEqual([5, 10, 20])
    // The restarted actor serves the next message.
    expect(await actor.submit(async () => {})).toEqual({ _tag: "Done" })
    expect(actor.restarts()).toBe(3)
    await Effect.runPromise(Fiber.interrupt(fiber))
  })

  it("keeps the messages queued behind a crash and runs them on the new incarnation, in order", async () => {
    const actor = Supervisor.make(Supervisor.system(), "queue", fast)
    const fiber = Effect.runFork(actor.run)
    const done: Array<number> = []
    let failOnce = true
    const results = await Promise.all([
      actor.submit(async () => {
        if (failOnce) {
          failOnce = false
          throw new Error("transient")
        }
        done.push(0)
      }),
      ...[1, 2, 3, 4].map((n) => actor.submit(async () => void done.push(n)))
    ])
    expect(results.every((r) => r._tag === "Done")).toBe(true)
    expect(done).toEqual([0, 1, 2, 3, 4])
    await Effect.runPromise(Fiber.interrupt(fiber))
  })

  it("settles a non-retryable failure at once, without a restart", async () => {
    const actor = Supervisor.make(Supervisor.system(), "reject", fast)
    const fiber = Effect.runFork(actor.run)
    const error = Object.assign(new Error("bad data"), { retryable: false })
    expect(await actor.submit(() => Promise.reject(error))).toMatchObject({ _tag: "Failed", attempts: 1, error })
    expect(actor.restarts()).toBe(0)
    await Effect.runPromise(Fiber.interrupt(fiber))
  })

  it("escalates when the restart limit is exceeded", async () => {
    const actor = Supervisor.make(Supervisor.system(), "loop", { ...fast, maxAttempts: 100, maxRestarts: 4 })
    const fiber = Effect.runFork(actor.run)
    const outcome = await actor.submit(boom)
    expect(outcome._tag).toBe("Failed")
    const exit = await Effect.runPromise(Fiber.await(fiber))
    expect(Exit.isFailure(exit)).toBe(true)
    expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain("RestartLimitExceeded")
    expect(await actor.submit(async () => {})).toMatchObject({ _tag: "Failed" })
  })
})
